//! What sweep generation reads from a device's `metadata`, picked out once
//! when the device is loaded: its integration source, its identifiers and
//! the ports and modes its source data gave. Metadata holds much more
//! (`all_ips`, `tenant_id`, a source's own fields, …); decoding it straight
//! from the stored JSON into this keeps none of that, and generation looks
//! fields up here instead of in a map of every key.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::DeserializeSeed};
use serde_json::Value;
use sr_proto::device_update::keys;

use super::document::META_PORTS;
use super::generate::{META_SWEEP_MODES, META_TCP_PORTS};

/// The parts of a device's metadata that sweep generation uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepMetadata {
    /// `integration_source_id`: the source whose settings apply (a
    /// non-empty string, trimmed).
    pub integration_source_id: Option<String>,
    /// Identifiers copied into the target's metadata, sorted by key:
    /// `integration_type`, `integration_id`, `armis_device_id`,
    /// `netbox_device_id`, `query_label` and any other `*_device_id` (a
    /// third-party adapter's source id), as text (strings trimmed, numbers
    /// written out; empty and other values left out).
    pub identifiers: Vec<(Cow<'static, str>, String)>,
    /// `sweep_modes` from the source data, as given.
    pub sweep_modes: Option<Value>,
    /// `tcp_ports` from the source data, as given.
    pub tcp_ports: Option<Value>,
    /// `ports` from the source data, as given (`tcp_ports` wins).
    pub ports: Option<Value>,
}

impl SweepMetadata {
    /// Picks the fields out of a decoded metadata value; anything but a
    /// JSON object is treated as empty.
    pub fn from_value(metadata: Value) -> Self {
        let mut picked = Self::default();
        if let Value::Object(map) = metadata {
            for (key, value) in map {
                picked.set(Field::of(&key), value);
            }
        }
        picked.finish()
    }

    /// The identifier `key`'s text, if the metadata had one.
    pub fn identifier(&self, key: &str) -> Option<&str> {
        self.identifiers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The ports the source data gave: `tcp_ports`, else `ports`.
    pub fn source_ports(&self) -> Option<&Value> {
        self.tcp_ports.as_ref().or(self.ports.as_ref())
    }

    fn set(&mut self, field: Field, value: Value) {
        match field {
            Field::IntegrationSourceId => {
                self.integration_source_id = value
                    .as_str()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
            }
            Field::SweepModes => self.sweep_modes = Some(value),
            Field::TcpPorts => self.tcp_ports = Some(value),
            Field::Ports => self.ports = Some(value),
            Field::Identifier(key) => {
                // A repeated key: the last one counts, as in a JSON object.
                self.identifiers.retain(|(k, _)| *k != key);
                if let Some(text) = identifier_text(&value) {
                    self.identifiers.push((key, text));
                }
            }
            Field::Other => {}
        }
    }

    fn finish(mut self) -> Self {
        self.identifiers.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self
    }
}

/// A metadata key, classified.
enum Field {
    IntegrationSourceId,
    SweepModes,
    TcpPorts,
    Ports,
    Identifier(Cow<'static, str>),
    Other,
}

impl Field {
    fn of(key: &str) -> Self {
        match key {
            keys::INTEGRATION_SOURCE_ID => Self::IntegrationSourceId,
            META_SWEEP_MODES => Self::SweepModes,
            META_TCP_PORTS => Self::TcpPorts,
            META_PORTS => Self::Ports,
            keys::INTEGRATION_TYPE => Self::Identifier(Cow::Borrowed(keys::INTEGRATION_TYPE)),
            keys::INTEGRATION_ID => Self::Identifier(Cow::Borrowed(keys::INTEGRATION_ID)),
            keys::ARMIS_DEVICE_ID => Self::Identifier(Cow::Borrowed(keys::ARMIS_DEVICE_ID)),
            keys::NETBOX_DEVICE_ID => Self::Identifier(Cow::Borrowed(keys::NETBOX_DEVICE_ID)),
            keys::QUERY_LABEL => Self::Identifier(Cow::Borrowed(keys::QUERY_LABEL)),
            other if other.ends_with("_device_id") => Self::Identifier(Cow::Owned(other.into())),
            _ => Self::Other,
        }
    }
}

/// An identifier's text: a non-empty string (trimmed) or a number.
fn identifier_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decodes stored metadata JSON without building a value for the keys
/// generation does not read.
impl<'de> Deserialize<'de> for SweepMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MetadataVisitor)
    }
}

struct MetadataVisitor;

impl<'de> Visitor<'de> for MetadataVisitor {
    type Value = SweepMetadata;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("device metadata")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut picked = SweepMetadata::default();
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            match field {
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
                field => picked.set(field, map.next_value::<Value>()?),
            }
        }
        Ok(picked.finish())
    }

    // Metadata that is not an object is treated as empty.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(SweepMetadata::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(SweepMetadata::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(SweepMetadata::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(SweepMetadata::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(SweepMetadata::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(SweepMetadata::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(SweepMetadata::default())
    }
}

/// Classifies a key without allocating (except for a third-party
/// `*_device_id` key, which is kept).
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metadata key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Field, E> {
        Ok(Field::of(key))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decoding_and_picking_from_a_value_agree() {
        let cases = [
            json!({"integration_type": " armis ", "integration_id": 17, "armis_device_id": "17",
                   "integration_source_id": " src-1 ", "query_label": "servers",
                   "tenant_id": "t", "all_ips": "10.0.0.1,10.0.0.2", "nested": {"a": [1, 2]},
                   "tcp_ports": "22,80", "ports": [443], "sweep_modes": ["icmp"],
                   "acme_device_id": "a-1", "empty_device_id": "  ", "bool_device_id": true}),
            json!({"netbox_device_id": 4.5, "integration_source_id": 3}),
            json!([1, 2, 3]),
            json!(null),
            json!("text"),
            json!({}),
        ];
        for case in cases {
            let decoded: SweepMetadata = serde_json::from_str(&case.to_string()).unwrap();
            assert_eq!(decoded, SweepMetadata::from_value(case.clone()), "{case}");
        }
    }

    #[test]
    fn picks_identifiers_sorted_and_as_text() {
        let picked = SweepMetadata::from_value(json!({
            "query_label": "servers", "integration_id": 17, "armis_device_id": " 17 ",
            "integration_source_id": " src-1 ", "tenant_id": "t", "acme_device_id": "a-1",
            "empty_device_id": "", "tcp_ports": "22", "ports": [80]
        }));
        let keys: Vec<&str> = picked.identifiers.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(
            keys,
            [
                "acme_device_id",
                "armis_device_id",
                "integration_id",
                "query_label"
            ]
        );
        assert_eq!(picked.identifier("integration_id"), Some("17"));
        assert_eq!(picked.identifier("armis_device_id"), Some("17"));
        assert_eq!(picked.identifier("tenant_id"), None);
        assert_eq!(picked.integration_source_id.as_deref(), Some("src-1"));
        assert_eq!(picked.source_ports(), Some(&json!("22")));
    }

    #[test]
    fn the_last_of_a_repeated_key_counts() {
        let decoded: SweepMetadata =
            serde_json::from_str(r#"{"query_label": "a", "query_label": "b"}"#).unwrap();
        assert_eq!(decoded.identifier("query_label"), Some("b"));
        assert_eq!(decoded.identifiers.len(), 1);
    }
}
