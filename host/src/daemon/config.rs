//! The sync service's config file: the minimal bootstrap the gateway issued
//! (identity and how to reach the gateway) plus optional host settings.
//! Integrations never live here: they arrive over GetConfig.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use thiserror::Error;

use crate::egress::AddressPermissions;
use crate::sandbox::RunLimits;

/// A config file that could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
}

/// Egress settings of the operator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// Allow adapters to reach loopback addresses (mock servers, dev).
    pub allow_loopback: bool,
    /// Allow link-local addresses.
    pub allow_link_local: bool,
    /// Allow cloud metadata endpoints.
    pub allow_metadata: bool,
    /// Networks adapters may never reach.
    pub deny_networks: Vec<String>,
    /// Hosts adapters declared (`describe().hosts`) that the operator
    /// approves; each run may reach its endpoint plus these.
    pub approved_hosts: Vec<String>,
    /// Extra CA certificates (PEM files) trusted for adapter HTTPS.
    pub extra_ca_files: Vec<String>,
}

/// Scheduling settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Runs at once, all tenants together.
    pub max_concurrent_runs: usize,
    /// Runs at once per tenant, so one tenant cannot starve the others.
    pub max_runs_per_tenant: usize,
    /// Discovery interval of sources that set none (Go duration).
    pub default_interval: String,
    /// Shortest interval honoured (Go duration).
    pub min_interval: String,
    /// Random spread added to each interval, percent of it.
    pub jitter_percent: u32,
    /// First retry delay after a failed run (Go duration).
    pub backoff_initial: String,
    /// Longest retry delay (Go duration).
    pub backoff_max: String,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            max_concurrent_runs: 4,
            max_runs_per_tenant: 2,
            default_interval: "1h".into(),
            min_interval: "10s".into(),
            jitter_percent: 10,
            backoff_initial: "30s".into(),
            backoff_max: "30m".into(),
        }
    }
}

/// Delivery settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Target bytes per chunk (the protocol's 1 MiB by default).
    pub chunk_bytes: usize,
    /// Chunks per StreamStatus stream: bounds what is held in memory.
    pub chunks_per_stream: usize,
    /// Streams sent but not yet acknowledged: with more than one, the
    /// gateway receives the next stream while it commits the previous one.
    pub streams_in_flight: usize,
    /// First retry delay of an unacknowledged stream (Go duration).
    pub retry_initial: String,
    /// Longest retry delay (Go duration).
    pub retry_max: String,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            chunk_bytes: sr_proto::limits::CHUNK_TARGET_BYTES,
            chunks_per_stream: 8,
            streams_in_flight: 2,
            retry_initial: "1s".into(),
            retry_max: "30s".into(),
        }
    }
}

/// The file as written by bootstrap/enroll, plus optional host settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    component_id: String,
    gateway_addr: String,
    tls_server_name: String,
    cert_file: String,
    key_file: String,
    ca_file: String,
    #[serde(default)]
    adapters_dir: Option<String>,
    #[serde(default)]
    state_dir: Option<String>,
    #[serde(default)]
    egress: EgressSettings,
    #[serde(default)]
    limits: Option<RunLimits>,
    #[serde(default)]
    scheduler: SchedulerSettings,
    #[serde(default)]
    delivery: DeliverySettings,
}

/// The resolved configuration of a sync service.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Component id (the certificate's).
    pub component_id: String,
    /// Gateway gRPC address, `https://host:port`.
    pub gateway_addr: String,
    /// Name the gateway certificate must carry.
    pub tls_server_name: String,
    /// Client certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Client key (PEM).
    pub key_file: PathBuf,
    /// CA bundle for the gateway (PEM).
    pub ca_file: PathBuf,
    /// Adapter components directory (hot-reloaded).
    pub adapters_dir: PathBuf,
    /// Local state: cursors, run numbers, compiled-adapter cache.
    pub state_dir: PathBuf,
    /// Egress policy settings.
    pub egress: EgressSettings,
    /// Address permissions derived from `egress`.
    pub permissions: AddressPermissions,
    /// Host limits for every run.
    pub limits: RunLimits,
    /// Scheduling.
    pub scheduler: Scheduling,
    /// Delivery.
    pub delivery: Delivery,
}

/// Parsed scheduling settings.
#[derive(Debug, Clone, Copy)]
pub struct Scheduling {
    /// Global concurrent runs.
    pub max_concurrent_runs: usize,
    /// Concurrent runs per tenant.
    pub max_runs_per_tenant: usize,
    /// Interval of sources without one.
    pub default_interval: Duration,
    /// Shortest interval honoured.
    pub min_interval: Duration,
    /// Jitter, percent of the interval.
    pub jitter_percent: u32,
    /// First backoff.
    pub backoff_initial: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
}

/// Parsed delivery settings.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// Target bytes per chunk.
    pub chunk_bytes: usize,
    /// Chunks per stream.
    pub chunks_per_stream: usize,
    /// Streams sent and not yet acknowledged, at most.
    pub streams_in_flight: usize,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl HostConfig {
    /// Reads and validates a config file; relative paths are relative to
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::parse(&text, &base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses config text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))?;
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let duration = |field: &str, text: &str| -> Result<Duration, String> {
            sr_proto::duration::parse(text).map_err(|e| format!("{field}: {e}"))
        };
        if raw.component_id.trim().is_empty() || raw.component_id.contains('.') {
            return Err("component_id: must be non-empty and contain no dots".into());
        }
        if !raw.gateway_addr.starts_with("https://") {
            return Err(format!(
                "gateway_addr: {:?} must be an https:// URL (the gateway requires mTLS)",
                raw.gateway_addr
            ));
        }
        let mut deny_networks = Vec::new();
        for (i, text) in raw.egress.deny_networks.iter().enumerate() {
            let net: IpNet = text
                .parse()
                .map_err(|_| format!("egress.deny_networks[{i}]: {text:?} is not a CIDR"))?;
            deny_networks.push(net);
        }
        let permissions = AddressPermissions {
            allow_loopback: raw.egress.allow_loopback,
            allow_link_local: raw.egress.allow_link_local,
            allow_metadata: raw.egress.allow_metadata,
            deny_networks,
        };
        let s = &raw.scheduler;
        if s.max_concurrent_runs == 0 || s.max_runs_per_tenant == 0 {
            return Err(
                "scheduler: max_concurrent_runs and max_runs_per_tenant must be at least 1".into(),
            );
        }
        if s.jitter_percent > 50 {
            return Err("scheduler.jitter_percent: at most 50".into());
        }
        let scheduler = Scheduling {
            max_concurrent_runs: s.max_concurrent_runs,
            max_runs_per_tenant: s.max_runs_per_tenant,
            default_interval: duration("scheduler.default_interval", &s.default_interval)?,
            min_interval: duration("scheduler.min_interval", &s.min_interval)?,
            jitter_percent: s.jitter_percent,
            backoff_initial: duration("scheduler.backoff_initial", &s.backoff_initial)?,
            backoff_max: duration("scheduler.backoff_max", &s.backoff_max)?,
        };
        let d = &raw.delivery;
        if d.chunk_bytes < 4096 || d.chunk_bytes > sr_proto::limits::MAX_RESULTS_PAYLOAD_BYTES {
            return Err(format!(
                "delivery.chunk_bytes: from 4096 to {} bytes",
                sr_proto::limits::MAX_RESULTS_PAYLOAD_BYTES
            ));
        }
        if d.chunks_per_stream == 0 || d.chunks_per_stream > 256 {
            return Err("delivery.chunks_per_stream: from 1 to 256".into());
        }
        if d.streams_in_flight == 0 || d.streams_in_flight > 8 {
            return Err("delivery.streams_in_flight: from 1 to 8".into());
        }
        let delivery = Delivery {
            chunk_bytes: d.chunk_bytes,
            chunks_per_stream: d.chunks_per_stream,
            streams_in_flight: d.streams_in_flight,
            retry_initial: duration("delivery.retry_initial", &d.retry_initial)?,
            retry_max: duration("delivery.retry_max", &d.retry_max)?,
        };
        Ok(Self {
            component_id: raw.component_id,
            gateway_addr: raw.gateway_addr,
            tls_server_name: raw.tls_server_name,
            cert_file: resolve(&raw.cert_file),
            key_file: resolve(&raw.key_file),
            ca_file: resolve(&raw.ca_file),
            adapters_dir: resolve(raw.adapters_dir.as_deref().unwrap_or("adapters")),
            state_dir: resolve(raw.state_dir.as_deref().unwrap_or("state")),
            egress: raw.egress,
            permissions,
            limits: raw.limits.unwrap_or_default(),
            scheduler,
            delivery,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"component_id": "platform-sync", "gateway_addr": "https://127.0.0.1:50052",
        "tls_server_name": "gateway.serviceradar", "cert_file": "sync.pem", "key_file": "sync-key.pem",
        "ca_file": "ca.pem"}"#;

    #[test]
    fn minimal_bootstrap_file_gets_defaults_and_resolved_paths() {
        let config = HostConfig::parse(MINIMAL, Path::new("/etc/sr")).unwrap();
        assert_eq!(config.cert_file, Path::new("/etc/sr/sync.pem"));
        assert_eq!(config.adapters_dir, Path::new("/etc/sr/adapters"));
        assert_eq!(config.scheduler.default_interval, Duration::from_secs(3600));
        assert_eq!(config.delivery.chunk_bytes, 1 << 20);
        assert!(!config.permissions.allow_loopback);
    }

    #[test]
    fn errors_name_the_field() {
        let bad = MINIMAL.replace(
            "\"ca.pem\"}",
            "\"ca.pem\", \"scheduler\": {\"default_interval\": \"soon\"}}",
        );
        let err = HostConfig::parse(&bad, Path::new("/")).unwrap_err();
        assert!(err.contains("scheduler.default_interval"), "{err}");
        let typo = MINIMAL.replace("\"ca.pem\"}", "\"ca.pem\", \"adapter_dir\": \"x\"}");
        let err = HostConfig::parse(&typo, Path::new("/")).unwrap_err();
        assert!(err.contains("unknown field `adapter_dir`"), "{err}");
        let plain = MINIMAL.replace("https://", "http://");
        assert!(
            HostConfig::parse(&plain, Path::new("/"))
                .unwrap_err()
                .contains("gateway_addr")
        );
        let cidr = MINIMAL.replace(
            "\"ca.pem\"}",
            "\"ca.pem\", \"egress\": {\"deny_networks\": [\"10.0.0.0/33\"]}}",
        );
        assert!(
            HostConfig::parse(&cidr, Path::new("/"))
                .unwrap_err()
                .contains("egress.deny_networks[0]")
        );
    }
}
