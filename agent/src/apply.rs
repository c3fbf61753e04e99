//! Applying a GetConfig response's sweep section (pure).
//!
//! The rules of the sweep reference:
//! - a sweep section replaces the whole sweep configuration;
//! - no sweep section keeps the current configuration (so a local
//!   `sweep.json` stays in force);
//! - a present but empty section clears the targets;
//! - the same `config_hash` as the current one is a no-op;
//! - invalid targets are skipped with a warning, unknown modes ignored.
//!
//! On the wire (AgentConfigResponse):
//! - **present**: `config_json` is an object with a non-null `"sweep"`
//!   object (the `sweep.json` shape, preferred because it carries every
//!   key), or else the typed `sweep` (field 10) is set;
//! - **present but empty**: such a section with no `networks` and no
//!   `device_targets`, e.g. `"sweep": {}` or an empty `SweepConfig`
//!   message (an empty sub-message is still *set* on the wire);
//! - **absent**: field 10 unset and `config_json` empty or without a
//!   `"sweep"` key (`"sweep": null` counts as absent).
//!
//! A `config_json` that is not JSON, with no typed section to fall back on,
//! cannot be told apart from either, so it keeps the current configuration.

use serde_json::Value;
use sr_proto::monitoring::AgentConfigResponse;

use crate::document::{SectionError, SweepDocument, typed_to_value, validate};

/// The sweep section of a response.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepSection {
    /// The response carries no sweep configuration.
    Absent,
    /// A sweep section in the `sweep.json` shape (not yet validated).
    Present(Value),
    /// The response cannot be read; why.
    Unreadable(String),
}

/// Finds the sweep section of a GetConfig response (see the module docs).
pub fn sweep_section(response: &AgentConfigResponse) -> SweepSection {
    let mut unreadable = None;
    if !response.config_json.is_empty() {
        match serde_json::from_slice::<Value>(&response.config_json) {
            Ok(Value::Object(mut map)) => match map.remove("sweep") {
                Some(Value::Null) | None => {}
                Some(section) => return SweepSection::Present(section),
            },
            Ok(_) => unreadable = Some("config_json is not a JSON object".to_string()),
            Err(e) => unreadable = Some(format!("config_json is not valid JSON: {e}")),
        }
    }
    match (&response.sweep, unreadable) {
        (Some(typed), _) => SweepSection::Present(typed_to_value(typed)),
        (None, Some(reason)) => SweepSection::Unreadable(reason),
        (None, None) => SweepSection::Absent,
    }
}

/// Why the current configuration stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// No sweep section: the current (possibly local) configuration stays.
    Absent,
    /// The section has the current `config_hash`.
    SameHash,
    /// The section, once validated, equals the current configuration.
    Unchanged,
    /// The section was refused whole.
    Refused(String),
}

/// What to do with a response's sweep section.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Leave the effective configuration (and the file) as they are.
    Keep(KeepReason),
    /// Make `document` the effective configuration.
    Replace {
        /// The validated document to write.
        document: SweepDocument,
        /// Entries skipped or ignored, one line each.
        warnings: Vec<String>,
    },
}

/// Decides the new effective configuration from the current one and a
/// response's sweep section.
pub fn decide(current: Option<&SweepDocument>, section: &SweepSection) -> Decision {
    let value = match section {
        SweepSection::Absent => return Decision::Keep(KeepReason::Absent),
        SweepSection::Unreadable(reason) => {
            return Decision::Keep(KeepReason::Refused(reason.clone()));
        }
        SweepSection::Present(value) => value,
    };
    let incoming_hash = value
        .get("config_hash")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    if let Some(current) = current
        && !incoming_hash.is_empty()
        && current.config_hash == incoming_hash
    {
        return Decision::Keep(KeepReason::SameHash);
    }
    match validate(value) {
        Err(SectionError { field, message }) => {
            Decision::Keep(KeepReason::Refused(format!("{field}: {message}")))
        }
        Ok(validated) if current == Some(&validated.document) => {
            Decision::Keep(KeepReason::Unchanged)
        }
        Ok(validated) => Decision::Replace {
            document: validated.document,
            warnings: validated.warnings,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sr_proto::monitoring::SweepConfig;

    use super::*;

    fn response(config_json: Value, typed: Option<SweepConfig>) -> AgentConfigResponse {
        AgentConfigResponse {
            config_version: "v1".into(),
            config_json: if config_json.is_null() {
                Vec::new()
            } else {
                serde_json::to_vec(&config_json).unwrap()
            },
            sweep: typed,
            ..Default::default()
        }
    }

    #[test]
    fn sections_on_the_wire() {
        assert_eq!(
            sweep_section(&response(json!(null), None)),
            SweepSection::Absent
        );
        assert_eq!(
            sweep_section(&response(json!({}), None)),
            SweepSection::Absent
        );
        assert_eq!(
            sweep_section(&response(json!({"sweep": null}), None)),
            SweepSection::Absent
        );
        assert_eq!(
            sweep_section(&response(json!({"sweep": {}}), None)),
            SweepSection::Present(json!({}))
        );
        let typed = sweep_section(&response(json!(null), Some(SweepConfig::default())));
        let SweepSection::Present(value) = typed else {
            panic!("typed section not found")
        };
        assert!(validate(&value).unwrap().document.is_empty());
        // config_json wins over the typed field.
        let both = response(
            json!({"sweep": {"networks": ["10.0.0.0/8"]}}),
            Some(SweepConfig::default()),
        );
        assert_eq!(
            sweep_section(&both),
            SweepSection::Present(json!({"networks": ["10.0.0.0/8"]}))
        );
        let mut broken = response(json!(null), None);
        broken.config_json = b"{not json".to_vec();
        assert!(matches!(
            sweep_section(&broken),
            SweepSection::Unreadable(_)
        ));
        broken.sweep = Some(SweepConfig::default());
        assert!(matches!(sweep_section(&broken), SweepSection::Present(_)));
    }
}
