//! Checking that a component implements the adapter world, with an error
//! that names what is missing instead of a linker message.

use std::fmt;

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// Functions every adapter exports.
pub const REQUIRED_EXPORTS: [&str; 3] = ["describe", "validate", "discover"];

/// Import namespaces the host provides: all of WASI 0.2 (granting nothing
/// but policed HTTP) and the adapter host interface.
const PROVIDED_IMPORT_PREFIXES: [&str; 2] = ["wasi:", "serviceradar:adapter/"];

/// The names a component imports and exports, for `adapter inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ComponentInterface {
    /// Imported interfaces and functions.
    pub imports: Vec<String>,
    /// Exported interfaces and functions.
    pub exports: Vec<String>,
}

impl ComponentInterface {
    /// Reads the import and export names of a compiled component.
    pub fn of(component: &Component, engine: &Engine) -> Self {
        let ty = component.component_type();
        let mut imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let mut exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, item)| match item.ty {
                ComponentItem::ComponentFunc(_) => format!("{name} (func)"),
                _ => name.to_string(),
            })
            .collect();
        imports.sort();
        exports.sort();
        Self { imports, exports }
    }
}

/// How a component falls short of the adapter world.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorldMismatch {
    /// Required exports that are absent.
    pub missing_exports: Vec<String>,
    /// Required names exported as something other than a function.
    pub not_functions: Vec<String>,
    /// Imports the host does not provide.
    pub unknown_imports: Vec<String>,
    /// What the component does export, to help the reader.
    pub exports: Vec<String>,
}

impl WorldMismatch {
    fn is_empty(&self) -> bool {
        self.missing_exports.is_empty()
            && self.not_functions.is_empty()
            && self.unknown_imports.is_empty()
    }
}

impl fmt::Display for WorldMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |names: &[String]| {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.missing_exports.is_empty() {
            parts.push(format!(
                "missing export(s) {}",
                quote(&self.missing_exports)
            ));
        }
        if !self.not_functions.is_empty() {
            parts.push(format!(
                "{} must be exported as functions",
                quote(&self.not_functions)
            ));
        }
        if !self.unknown_imports.is_empty() {
            parts.push(format!(
                "imports {} which the host does not provide (adapters may import only WASI 0.2 and serviceradar:adapter/host)",
                quote(&self.unknown_imports)
            ));
        }
        write!(f, "{}", parts.join("; "))?;
        if !self.missing_exports.is_empty() {
            if self.exports.is_empty() {
                write!(f, "; the component exports nothing")?;
            } else {
                write!(f, "; the component exports {}", quote(&self.exports))?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for WorldMismatch {}

/// Checks exports and imports against the adapter world. Signatures are
/// checked afterwards by the typed bindings.
pub fn check(component: &Component, engine: &Engine) -> Result<(), WorldMismatch> {
    let ty = component.component_type();
    let exports: Vec<(String, bool)> = ty
        .exports(engine)
        .map(|(name, item)| {
            (
                name.to_string(),
                matches!(item.ty, ComponentItem::ComponentFunc(_)),
            )
        })
        .collect();
    let mut mismatch = WorldMismatch {
        exports: exports.iter().map(|(n, _)| n.clone()).collect(),
        ..Default::default()
    };
    for required in REQUIRED_EXPORTS {
        match exports.iter().find(|(name, _)| name == required) {
            None => mismatch.missing_exports.push(required.to_string()),
            Some((_, false)) => mismatch.not_functions.push(required.to_string()),
            Some((_, true)) => {}
        }
    }
    for (name, _) in ty.imports(engine) {
        if !PROVIDED_IMPORT_PREFIXES.iter().any(|p| name.starts_with(p)) {
            mismatch.unknown_imports.push(name.to_string());
        }
    }
    if mismatch.is_empty() {
        Ok(())
    } else {
        Err(mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_message_names_missing_and_present() {
        let m = WorldMismatch {
            missing_exports: vec!["discover".into()],
            exports: vec!["describe".into(), "validate".into()],
            ..Default::default()
        };
        let text = m.to_string();
        assert!(text.contains("missing export(s) `discover`"), "{text}");
        assert!(text.contains("exports `describe`, `validate`"), "{text}");
    }

    #[test]
    fn unknown_imports_are_named() {
        let m = WorldMismatch {
            unknown_imports: vec!["acme:evil/net".into()],
            ..Default::default()
        };
        assert!(m.to_string().contains("`acme:evil/net`"));
    }
}
