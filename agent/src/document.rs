//! The `sweep.json` document as the agent reads and writes it, and the
//! lenient validation every incoming section goes through: entries that are
//! not valid (a target without a usable network, an unknown mode, a port
//! out of range) are skipped with a warning, so what is written is always a
//! well-formed file. A section whose structure is wrong (e.g. `networks` is
//! not a list) is refused as a whole.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sr_proto::monitoring::SweepConfig;
use thiserror::Error;

/// Sweep modes agents understand; others are ignored.
pub const KNOWN_MODES: [&str; 3] = ["icmp", "tcp", "tcp_connect"];

/// Metadata keys under which a target's typed fields travel in the file
/// (the gateway's document uses the same keys).
pub const META_DEVICE_ID: &str = "device_id";
/// See [`META_DEVICE_ID`].
pub const META_HOSTNAME: &str = "hostname";
/// See [`META_DEVICE_ID`]; comma-separated ports.
pub const META_PORTS: &str = "ports";

/// A sweep configuration in the `sweep.json` shape. Keys this agent does
/// not know are kept (`extra`) and written back unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SweepDocument {
    /// CIDRs (or bare IPs) to sweep.
    #[serde(default)]
    pub networks: Vec<String>,
    /// TCP ports.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `icmp`, `tcp`, `tcp_connect`.
    #[serde(default)]
    pub sweep_modes: Vec<String>,
    /// Individual devices.
    #[serde(default)]
    pub device_targets: Vec<DeviceTarget>,
    /// Go duration, e.g. `5m`; absent: the agent's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Probes in flight; absent: the agent's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Go duration, e.g. `3s`; absent: the agent's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Change detection; empty for hand-written files.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_hash: String,
    /// Keys this agent does not know.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One device target.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceTarget {
    /// CIDR; a bare IP means /32 (/128).
    pub network: String,
    /// Modes for this target; empty: the document's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep_modes: Vec<String>,
    /// Query that found the device.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query_label: String,
    /// Integration type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Identifiers, `device_id`, `hostname`, `ports`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Keys this agent does not know.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl SweepDocument {
    /// Whether the document sweeps nothing (no networks, no targets).
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.device_targets.is_empty()
    }
}

/// A validated document and what was skipped on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Validated {
    /// The well-formed document.
    pub document: SweepDocument,
    /// One line per skipped or ignored entry, naming it.
    pub warnings: Vec<String>,
}

/// A sweep section whose structure is wrong: refused whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("sweep config refused: {field}: {message}")]
pub struct SectionError {
    /// The offending key (`sweep`, `networks`, ...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn section_error(field: &str, message: impl Into<String>) -> SectionError {
    SectionError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Validates a sweep section (`null` is an empty section).
pub fn validate(value: &Value) -> Result<Validated, SectionError> {
    let empty = Map::new();
    let object = match value {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            return Err(section_error(
                "sweep",
                format!("expected an object, got {}", kind(other)),
            ));
        }
    };
    let mut warnings = Vec::new();
    let mut document = SweepDocument::default();
    for (key, value) in object {
        match key.as_str() {
            "networks" => {
                for (i, item) in list(key, value)?.iter().enumerate() {
                    match item.as_str().map(str::trim) {
                        Some(text) if valid_network(text) => {
                            document.networks.push(text.to_string())
                        }
                        _ => warnings.push(format!(
                            "networks[{i}]: {item} is not a CIDR or an IP; skipped"
                        )),
                    }
                }
            }
            "ports" => {
                for (i, item) in list(key, value)?.iter().enumerate() {
                    match item.as_u64().and_then(|p| u16::try_from(p).ok()) {
                        Some(port) if port != 0 => document.ports.push(port),
                        _ => warnings.push(format!(
                            "ports[{i}]: {item} is not a TCP port (1-65535); skipped"
                        )),
                    }
                }
            }
            "sweep_modes" => {
                document.sweep_modes = modes(key, list(key, value)?, &mut warnings);
            }
            "device_targets" => {
                for (i, item) in list(key, value)?.iter().enumerate() {
                    if let Some(target) = target(i, item, &mut warnings) {
                        document.device_targets.push(target);
                    }
                }
            }
            "interval" | "timeout" => {
                let parsed = match value {
                    Value::Null => None,
                    Value::String(text) => match sr_proto::duration::parse(text) {
                        Ok(_) => Some(text.trim().to_string()),
                        Err(e) => {
                            warnings.push(format!("{key}: {e}; the agent's default applies"));
                            None
                        }
                    },
                    other => {
                        warnings.push(format!(
                            "{key}: expected a duration string, got {}; the agent's default applies",
                            kind(other)
                        ));
                        None
                    }
                };
                if key == "interval" {
                    document.interval = parsed;
                } else {
                    document.timeout = parsed;
                }
            }
            "concurrency" => match value.as_u64().and_then(|c| u32::try_from(c).ok()) {
                Some(c) if c > 0 => document.concurrency = Some(c),
                _ if value.is_null() => {}
                _ => warnings.push(format!(
                    "concurrency: {value} is not a positive integer; the agent's default applies"
                )),
            },
            "config_hash" => match value {
                Value::String(hash) => document.config_hash = hash.trim().to_string(),
                Value::Null => {}
                other => {
                    return Err(section_error(
                        "config_hash",
                        format!("expected a string, got {}", kind(other)),
                    ));
                }
            },
            _ => {
                document.extra.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Validated { document, warnings })
}

/// A list key: `null` is empty; anything but an array refuses the section.
fn list<'a>(key: &str, value: &'a Value) -> Result<&'a [Value], SectionError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(&[]),
        other => Err(section_error(
            key,
            format!("expected a list, got {}", kind(other)),
        )),
    }
}

fn modes(field: &str, items: &[Value], warnings: &mut Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let known = item
            .as_str()
            .map(|m| m.trim().to_ascii_lowercase())
            .filter(|m| KNOWN_MODES.contains(&m.as_str()));
        match known {
            Some(mode) if !out.contains(&mode) => out.push(mode),
            Some(_) => {}
            None => warnings.push(format!("{field}: unknown sweep mode {item} ignored")),
        }
    }
    out
}

fn target(index: usize, item: &Value, warnings: &mut Vec<String>) -> Option<DeviceTarget> {
    let at = format!("device_targets[{index}]");
    let Value::Object(object) = item else {
        warnings.push(format!(
            "{at}: expected an object, got {}; skipped",
            kind(item)
        ));
        return None;
    };
    let network = object.get("network").and_then(Value::as_str).map(str::trim);
    let Some(network) = network.filter(|n| valid_network(n)) else {
        let shown = object.get("network").cloned().unwrap_or(Value::Null);
        warnings.push(format!(
            "{at}: network {shown} is not a CIDR or an IP; target skipped"
        ));
        return None;
    };
    let mut target = DeviceTarget {
        network: network.to_string(),
        ..DeviceTarget::default()
    };
    for (key, value) in object {
        match key.as_str() {
            "network" => {}
            "sweep_modes" => match value {
                Value::Array(items) => {
                    target.sweep_modes = modes(&format!("{at}.sweep_modes"), items, warnings)
                }
                Value::Null => {}
                other => warnings.push(format!(
                    "{at}.sweep_modes: expected a list, got {}; ignored",
                    kind(other)
                )),
            },
            "query_label" | "source" => match value {
                Value::String(text) => {
                    if key == "source" {
                        target.source = text.clone();
                    } else {
                        target.query_label = text.clone();
                    }
                }
                Value::Null => {}
                other => warnings.push(format!(
                    "{at}.{key}: expected a string, got {}; ignored",
                    kind(other)
                )),
            },
            "metadata" => match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        match v {
                            Value::String(s) => {
                                target.metadata.insert(k.clone(), s.clone());
                            }
                            Value::Number(_) | Value::Bool(_) => {
                                target.metadata.insert(k.clone(), v.to_string());
                            }
                            other => warnings.push(format!(
                                "{at}.metadata.{k}: expected a string, got {}; ignored",
                                kind(other)
                            )),
                        }
                    }
                }
                Value::Null => {}
                other => warnings.push(format!(
                    "{at}.metadata: expected an object, got {}; ignored",
                    kind(other)
                )),
            },
            _ => {
                target.extra.insert(key.clone(), value.clone());
            }
        }
    }
    Some(target)
}

fn valid_network(text: &str) -> bool {
    text.parse::<IpNet>().is_ok() || text.parse::<IpAddr>().is_ok()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The typed `SweepConfig` (GetConfig field 10) in the `sweep.json` shape,
/// ready for [`validate`]. A target's IP becomes a host CIDR; its device id,
/// hostname and ports go into metadata under [`META_DEVICE_ID`],
/// [`META_HOSTNAME`] and [`META_PORTS`] unless already there.
pub fn typed_to_value(config: &SweepConfig) -> Value {
    let targets: Vec<Value> = config
        .device_targets
        .iter()
        .map(|t| {
            let ip = t.ip.trim();
            let network = ip
                .parse::<IpAddr>()
                .map(|a| IpNet::from(a).to_string())
                .unwrap_or_else(|_| ip.to_string());
            let mut metadata: BTreeMap<String, String> = t
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut lift = |key: &str, value: String| {
                if !value.is_empty() {
                    metadata.entry(key.to_string()).or_insert(value);
                }
            };
            lift(META_DEVICE_ID, t.device_id.clone());
            lift(META_HOSTNAME, t.hostname.clone());
            lift(
                META_PORTS,
                t.ports
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
            let mut target = serde_json::json!({
                "network": network,
                "sweep_modes": t.sweep_modes,
                "source": t.source,
                "metadata": metadata,
            });
            if let Some(label) = metadata_label(&t.metadata) {
                target["query_label"] = Value::String(label);
            }
            target
        })
        .collect();
    let mut value = serde_json::json!({
        "networks": config.networks,
        "ports": config.ports,
        "sweep_modes": config.sweep_modes,
        "device_targets": targets,
        "config_hash": config.config_hash,
    });
    if config.sweep_interval_sec > 0 {
        let interval = std::time::Duration::from_secs(config.sweep_interval_sec as u64);
        value["interval"] = Value::String(sr_proto::duration::format(interval));
    }
    value
}

fn metadata_label(metadata: &std::collections::BTreeMap<String, String>) -> Option<String> {
    metadata
        .get("query_label")
        .filter(|l| !l.is_empty())
        .cloned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sr_proto::monitoring;

    use super::*;

    #[test]
    fn a_good_document_passes_unchanged() {
        let value = json!({
            "networks": ["10.0.0.0/24", "2001:db8::1/128"],
            "ports": [22, 443],
            "sweep_modes": ["icmp", "tcp"],
            "device_targets": [{"network": "10.0.0.1/32", "sweep_modes": ["icmp"],
                                "query_label": "all", "source": "armis",
                                "metadata": {"armis_device_id": "1"}}],
            "interval": "5m", "concurrency": 100, "timeout": "3s",
            "config_hash": "abc",
            "icmp_settings": {"rate_limit": 1000}
        });
        let validated = validate(&value).unwrap();
        assert!(validated.warnings.is_empty(), "{:?}", validated.warnings);
        let written = serde_json::to_value(&validated.document).unwrap();
        assert_eq!(written, value);
    }

    #[test]
    fn bad_entries_are_skipped_with_a_warning() {
        let value = json!({
            "networks": ["10.0.0.0/33", "10.1.0.0/16", 5],
            "ports": [0, 22, 70000, "80"],
            "sweep_modes": ["icmp", "udp", "ICMP"],
            "device_targets": [
                {"network": "nonsense"},
                "10.0.0.9",
                {"sweep_modes": ["icmp"]},
                {"network": "10.0.0.7", "sweep_modes": ["arp", "tcp"], "metadata": {"n": 1, "x": [1]}}
            ],
            "interval": "soon", "concurrency": -1
        });
        let validated = validate(&value).unwrap();
        let doc = &validated.document;
        assert_eq!(doc.networks, vec!["10.1.0.0/16"]);
        assert_eq!(doc.ports, vec![22]);
        assert_eq!(doc.sweep_modes, vec!["icmp"]);
        assert_eq!(doc.device_targets.len(), 1);
        assert_eq!(doc.device_targets[0].network, "10.0.0.7");
        assert_eq!(doc.device_targets[0].sweep_modes, vec!["tcp"]);
        assert_eq!(doc.device_targets[0].metadata["n"], "1");
        assert_eq!(doc.interval, None);
        assert_eq!(doc.concurrency, None);
        // 2 networks, 3 ports, 1 mode, 3 targets, 1 target mode, 1 metadata,
        // interval, concurrency.
        assert_eq!(validated.warnings.len(), 13, "{:#?}", validated.warnings);
        assert!(
            validated
                .warnings
                .iter()
                .any(|w| w.starts_with("device_targets[0]"))
        );
    }

    #[test]
    fn wrong_structure_refuses_the_section() {
        let err = validate(&json!({"networks": "10.0.0.0/8"})).unwrap_err();
        assert_eq!(err.field, "networks");
        assert!(validate(&json!({"device_targets": {}})).is_err());
        assert!(validate(&json!([1, 2])).is_err());
        assert!(validate(&json!({"config_hash": 5})).is_err());
    }

    #[test]
    fn null_and_empty_objects_are_empty_documents() {
        for value in [json!(null), json!({})] {
            let validated = validate(&value).unwrap();
            assert!(validated.document.is_empty());
            assert!(validated.warnings.is_empty());
        }
    }

    #[test]
    fn typed_config_maps_to_the_file_shape() {
        let config = monitoring::SweepConfig {
            networks: vec!["10.0.0.1/32".into(), "2001:db8::1/128".into()],
            device_targets: vec![
                monitoring::DeviceTarget {
                    ip: "10.0.0.1".into(),
                    ports: vec![22, 443],
                    hostname: "web".into(),
                    sweep_modes: vec!["icmp".into()],
                    source: "armis".into(),
                    device_id: "sr:1".into(),
                    metadata: [("query_label".to_string(), "all".to_string())].into(),
                },
                monitoring::DeviceTarget {
                    ip: "2001:db8::1".into(),
                    ..Default::default()
                },
            ],
            sweep_modes: vec!["icmp".into(), "tcp".into()],
            sweep_interval_sec: 90,
            ports: vec![22, 443],
            config_hash: "h".into(),
        };
        let validated = validate(&typed_to_value(&config)).unwrap();
        assert!(validated.warnings.is_empty(), "{:?}", validated.warnings);
        let doc = validated.document;
        assert_eq!(doc.interval.as_deref(), Some("1m30s"));
        assert_eq!(doc.config_hash, "h");
        let first = &doc.device_targets[0];
        assert_eq!(first.network, "10.0.0.1/32");
        assert_eq!(first.query_label, "all");
        assert_eq!(first.metadata[META_DEVICE_ID], "sr:1");
        assert_eq!(first.metadata[META_HOSTNAME], "web");
        assert_eq!(first.metadata[META_PORTS], "22,443");
        assert_eq!(doc.device_targets[1].network, "2001:db8::1/128");
        assert!(doc.device_targets[1].metadata.is_empty());
    }
}
