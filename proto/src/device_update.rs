//! The DeviceUpdate JSON object: one element of a sync results array.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Partition used when none is given.
pub const DEFAULT_PARTITION: &str = "default";

/// Confidence of updates that come from integrations.
pub const INTEGRATION_CONFIDENCE: i32 = 7;

/// Well-known metadata keys. Identifiers live in metadata, as strings.
pub mod keys {
    /// Integration type (`armis`, `netbox`, `faker`, ...).
    pub const INTEGRATION_TYPE: &str = "integration_type";
    /// The source's own device id (a strong identifier within its type).
    pub const INTEGRATION_ID: &str = "integration_id";
    /// Id of the integration source record the update came from.
    pub const INTEGRATION_SOURCE_ID: &str = "integration_source_id";
    /// Armis device id (strong identifier).
    pub const ARMIS_DEVICE_ID: &str = "armis_device_id";
    /// NetBox device id (strong identifier).
    pub const NETBOX_DEVICE_ID: &str = "netbox_device_id";
    /// Agent id (strongest identifier, except for scanner-like sources).
    pub const AGENT_ID: &str = "agent_id";
    /// Sync service that delivered the update.
    pub const SYNC_SERVICE_ID: &str = "sync_service_id";
    /// Tenant the update belongs to.
    pub const TENANT_ID: &str = "tenant_id";
    /// Label of the integration query that found the device.
    pub const QUERY_LABEL: &str = "query_label";
    /// All IPs of the device, comma-joined, primary first.
    pub const ALL_IPS: &str = "all_ips";
    /// Number of IPs in `all_ips`.
    pub const IP_COUNT: &str = "ip_count";
    /// All MACs of the device, comma-joined, normalised.
    pub const ALL_MACS: &str = "all_macs";
}

/// One device observation, as carried in a sync results chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceUpdate {
    /// Empty from integrations (the gateway assigns one); an `sr:` id is kept.
    #[serde(default)]
    pub device_id: String,
    /// Primary IP.
    pub ip: String,
    /// `armis`, `netbox`, `faker`, `integration`, ...
    pub source: String,
    /// The agent assigned to monitor the device, if any.
    #[serde(default)]
    pub agent_id: String,
    /// The gateway of that agent, if any.
    #[serde(default)]
    pub gateway_id: String,
    /// Partition; `default` when empty.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// When the device was observed.
    pub timestamp: DateTime<Utc>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Primary MAC, upper-case and colon-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Identifiers and attributes, as strings.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Whether the device is reachable, as far as the source knows.
    #[serde(default)]
    pub is_available: bool,
    /// 1–10; integrations send 7.
    #[serde(default = "default_confidence")]
    pub confidence: i32,
    /// Run bookkeeping for the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_meta: Option<SyncMeta>,
    /// The source's raw record, when the adapter kept it (staged for audit,
    /// never used for identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_data: Option<serde_json::Value>,
}

/// Run bookkeeping carried on each DeviceUpdate of a sync run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncMeta {
    /// The sync service that ran the integration.
    pub sync_service_id: String,
    /// The run this update belongs to.
    pub sync_run_id: String,
    /// Index of the chunk within the run (runs may span several streams).
    pub chunk_index: u32,
    /// Chunks in the run; 0 while the run is still going.
    #[serde(default)]
    pub total_chunks: u32,
    /// Devices in the run; 0 while the run is still going.
    #[serde(default)]
    pub total_devices: u64,
    /// True on the last chunk of the run.
    #[serde(default)]
    pub is_final: bool,
}

fn default_partition() -> String {
    DEFAULT_PARTITION.to_string()
}

fn default_confidence() -> i32 {
    INTEGRATION_CONFIDENCE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_minimal_update_with_defaults() {
        let json = r#"{"ip":"10.0.0.1","source":"armis","timestamp":"2025-01-02T03:04:05Z"}"#;
        let update: DeviceUpdate = serde_json::from_str(json).unwrap();
        assert_eq!(update.partition, "default");
        assert_eq!(update.confidence, 7);
        assert!(update.metadata.is_empty());
        assert_eq!(update.device_id, "");
    }

    #[test]
    fn round_trips_and_omits_absent_optionals() {
        let update = DeviceUpdate {
            device_id: String::new(),
            ip: "10.0.0.1".into(),
            source: "faker".into(),
            agent_id: String::new(),
            gateway_id: String::new(),
            partition: "default".into(),
            timestamp: "2025-01-02T03:04:05Z".parse().unwrap(),
            hostname: None,
            mac: Some("AA:BB:CC:DD:EE:FF".into()),
            metadata: BTreeMap::from([("integration_id".into(), "1".into())]),
            is_available: true,
            confidence: 7,
            sync_meta: None,
            raw_data: None,
        };
        let text = serde_json::to_string(&update).unwrap();
        assert!(!text.contains("hostname"));
        assert!(!text.contains("sync_meta"));
        let back: DeviceUpdate = serde_json::from_str(&text).unwrap();
        assert_eq!(back, update);
    }
}
