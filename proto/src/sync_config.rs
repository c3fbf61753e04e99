//! The sync config document (`config_json` of GetConfig for a sync service)
//! and the minimal bootstrap file a sync service starts from.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which sources a sync service receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The platform sync: sources of every tenant assigned to it, keyed
    /// `<tenant_slug>/<source_name>`.
    Platform,
    /// An edge sync: its own tenant's sources, keyed by source name.
    Tenant,
}

/// The document a sync service receives from GetConfig.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncConfigDocument {
    /// The SyncService record of the caller.
    pub sync_service_id: String,
    /// The caller's component id (from its certificate).
    pub component_id: String,
    /// Platform or tenant scope.
    pub scope: Scope,
    /// Sources by key (see [`Scope`]); a BTreeMap so the document is canonical.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
}

/// One integration source as delivered to a sync service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// Integration source record id.
    pub id: String,
    /// Source name, unique within its tenant.
    pub name: String,
    /// Source type (`armis`, `netbox`, `faker`, or an installed adapter's).
    #[serde(rename = "type")]
    pub source_type: String,
    /// Base URL of the source API; empty for generators.
    #[serde(default)]
    pub endpoint: String,
    /// Decrypted credentials; only ever present in this response.
    #[serde(default)]
    pub credentials: serde_json::Map<String, serde_json::Value>,
    /// Labelled queries.
    #[serde(default)]
    pub queries: Vec<QueryConfig>,
    /// How often to poll for changes.
    #[serde(
        default,
        with = "crate::duration::serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub poll_interval: Option<Duration>,
    /// How often to run discovery.
    #[serde(
        default,
        with = "crate::duration::serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub discovery_interval: Option<Duration>,
    /// How often agents sweep this source's devices.
    #[serde(
        default,
        with = "crate::duration::serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sweep_interval: Option<Duration>,
    /// Agent assigned to monitor this source's devices.
    #[serde(default)]
    pub agent_id: String,
    /// Partition of this source's devices.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// CIDRs whose devices are dropped before delivery.
    #[serde(default)]
    pub network_blacklist: Vec<String>,
    /// Page size the adapter should use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Owning tenant id.
    pub tenant_id: String,
    /// Owning tenant slug.
    pub tenant_slug: String,
    /// Sync service the source is assigned to.
    pub sync_service_id: String,
    /// Pinned adapter, if the operator pinned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterPin>,
    /// Adapter-specific settings.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// A labelled query of an integration source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryConfig {
    /// Label stamped on devices the query finds (`query_label`).
    pub label: String,
    /// The query in the source's language (Armis AQL, NetBox filter, ...).
    pub query: String,
    /// Sweep modes for devices found by this query.
    #[serde(default)]
    pub sweep_modes: Vec<String>,
}

/// Selects one adapter version instead of the newest for the source type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AdapterPin {
    /// Adapter name.
    #[serde(default)]
    pub name: String,
    /// Exact adapter version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `sha256:<hex>` of the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The minimal config a sync service starts from: who it is and how to reach
/// the gateway. Everything else arrives over GetConfig. Relative paths are
/// relative to the file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBootstrap {
    /// Component id, as in the certificate's common name.
    pub component_id: String,
    /// Gateway gRPC address, `https://host:port`.
    pub gateway_addr: String,
    /// Name to verify the gateway's certificate against.
    pub tls_server_name: String,
    /// Component certificate (PEM), with its issuing CA after it.
    pub cert_file: String,
    /// Component private key (PEM).
    pub key_file: String,
    /// CA bundle that issued the gateway certificate (PEM).
    pub ca_file: String,
}

fn default_partition() -> String {
    crate::device_update::DEFAULT_PARTITION.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_uses_go_durations_and_type_key() {
        let json = r#"{
            "id": "s1", "name": "armis-prod", "type": "armis",
            "endpoint": "https://x.armis.com",
            "credentials": {"secret_key": "k"},
            "queries": [{"label": "all", "query": "in:devices", "sweep_modes": ["icmp"]}],
            "discovery_interval": "1h30m",
            "tenant_id": "t", "tenant_slug": "acme", "sync_service_id": "ss"
        }"#;
        let source: SourceConfig = serde_json::from_str(json).unwrap();
        assert_eq!(source.discovery_interval, Some(Duration::from_secs(5400)));
        assert_eq!(source.partition, "default");
        let text = serde_json::to_string(&source).unwrap();
        assert!(text.contains(r#""type":"armis""#));
        assert!(text.contains(r#""discovery_interval":"1h30m""#));
        assert!(!text.contains("poll_interval"));
    }

    #[test]
    fn bad_duration_names_the_value() {
        let json = r#"{"id":"s","name":"n","type":"t","discovery_interval":"soon",
                       "tenant_id":"t","tenant_slug":"a","sync_service_id":"s"}"#;
        let err = serde_json::from_str::<SourceConfig>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"soon\""), "{err}");
    }
}
