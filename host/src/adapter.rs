//! A loaded adapter: what it says it is, the digest of its bytes, and the
//! pre-linked component ready to instantiate for each run.

use std::fmt;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

use crate::sandbox::bindings::AdapterPre;
use crate::sandbox::bindings::serviceradar::adapter::types::Description;
use crate::sandbox::world::ComponentInterface;

/// `sha256:<hex>` of a component's bytes: its identity in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// Parses `sha256:<64 hex>` (or the bare hex).
    pub fn parse(text: &str) -> Option<Self> {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
        (hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(format!("sha256:{}", hex_part.to_ascii_lowercase())))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> &str {
        &self.hex()[..12.min(self.hex().len())]
    }

    /// The full `sha256:<hex>` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an adapter says about itself, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdapterDescription {
    /// Adapter name.
    pub name: String,
    /// Adapter version (semver).
    pub version: semver::Version,
    /// The integration source type it serves.
    pub source_type: String,
    /// One line for humans.
    pub summary: String,
    /// JSON Schema of its configuration.
    pub config_schema: serde_json::Value,
    /// Hosts it needs besides the integration endpoint.
    pub hosts: Vec<String>,
}

fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl AdapterDescription {
    /// Validates the raw description returned by `describe`.
    pub fn from_wit(raw: Description) -> Result<Self, String> {
        if !valid_name(&raw.name) {
            return Err(format!(
                "name {:?} must be 1-64 lower-case letters, digits, '-' or '_'",
                raw.name
            ));
        }
        if !valid_name(&raw.source_type) {
            return Err(format!(
                "source-type {:?} must be 1-64 lower-case letters, digits, '-' or '_'",
                raw.source_type
            ));
        }
        let version = semver::Version::parse(&raw.version)
            .map_err(|e| format!("version {:?} is not semver: {e}", raw.version))?;
        let config_schema: serde_json::Value = if raw.config_schema.trim().is_empty() {
            serde_json::json!({"type": "object"})
        } else {
            serde_json::from_str(&raw.config_schema)
                .map_err(|e| format!("config-schema is not valid JSON: {e}"))?
        };
        if !config_schema.is_object() {
            return Err("config-schema must be a JSON object (a JSON Schema)".to_string());
        }
        for host in &raw.hosts {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if bare.is_empty() || bare.contains('/') || bare.contains(':') || bare.contains('*') {
                return Err(format!(
                    "hosts entry {host:?} must be a host name or `*.domain`, without scheme, port or path"
                ));
            }
        }
        Ok(Self {
            name: raw.name,
            version,
            source_type: raw.source_type,
            summary: raw.summary,
            config_schema,
            hosts: raw.hosts,
        })
    }
}

/// A compiled, linked adapter. Cheap to share (`Arc`); a run holds its
/// adapter for its whole life, so replacing a version never disturbs runs
/// in flight.
pub struct LoadedAdapter {
    description: AdapterDescription,
    digest: Digest,
    pre: AdapterPre<crate::sandbox::RunState>,
    interface: ComponentInterface,
    size_bytes: u64,
    component: Component,
}

impl LoadedAdapter {
    pub(crate) fn new(
        description: AdapterDescription,
        digest: Digest,
        pre: AdapterPre<crate::sandbox::RunState>,
        interface: ComponentInterface,
        size_bytes: u64,
        component: Component,
    ) -> Self {
        Self {
            description,
            digest,
            pre,
            interface,
            size_bytes,
            component,
        }
    }

    /// The adapter's description.
    pub fn description(&self) -> &AdapterDescription {
        &self.description
    }

    /// Digest of the component bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.description.name, self.description.version)
    }

    /// Imports and exports of the component.
    pub fn interface(&self) -> &ComponentInterface {
        &self.interface
    }

    /// Size of the component file.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The compiled component (for caching its machine code).
    pub fn component(&self) -> &Component {
        &self.component
    }

    pub(crate) fn pre(&self) -> &AdapterPre<crate::sandbox::RunState> {
        &self.pre
    }
}

impl fmt::Debug for LoadedAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedAdapter")
            .field("name", &self.description.name)
            .field("version", &self.description.version.to_string())
            .field("digest", &self.digest.as_str())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, version: &str, schema: &str, hosts: &[&str]) -> Description {
        Description {
            name: name.into(),
            version: version.into(),
            source_type: "armis".into(),
            summary: "s".into(),
            config_schema: schema.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn digest_formats_and_parses() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(d.hex()), Some(d.clone()));
        assert_eq!(
            Digest::parse(&d.as_str().to_uppercase().replace("SHA256", "sha256")),
            Some(d)
        );
        assert_eq!(Digest::parse("sha256:xyz"), None);
    }

    #[test]
    fn description_is_validated() {
        assert!(
            AdapterDescription::from_wit(raw("armis", "1.2.3", "{}", &["*.armis.com"])).is_ok()
        );
        let err = AdapterDescription::from_wit(raw("Armis!", "1.0.0", "{}", &[])).unwrap_err();
        assert!(err.contains("name"), "{err}");
        let err = AdapterDescription::from_wit(raw("armis", "one", "{}", &[])).unwrap_err();
        assert!(err.contains("semver"), "{err}");
        let err = AdapterDescription::from_wit(raw("armis", "1.0.0", "{", &[])).unwrap_err();
        assert!(err.contains("config-schema"), "{err}");
        let err = AdapterDescription::from_wit(raw("armis", "1.0.0", "{}", &["https://x.com"]))
            .unwrap_err();
        assert!(err.contains("hosts"), "{err}");
    }
}
