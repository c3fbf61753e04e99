//! The gateway config file (TOML), as `sr-gateway bootstrap` writes it and
//! `sr-gateway serve --config <file>` reads it.
//!
//! ```toml
//! gateway_id = "gateway"
//! database_url = "postgres://postgres@127.0.0.1:5432/serviceradar"
//! state_dir = "."                      # relative to this file's directory
//! known_source_types = ["servicenow"]  # adapter source types beyond armis/netbox/faker
//! max_db_connections = 16
//!
//! [listen]
//! grpc = "0.0.0.0:50052"
//! admin = "127.0.0.1:8443"
//!
//! [public]                             # what clients are told; derived from listen when absent
//! grpc_url = "https://gateway.example.com:50052"
//! admin_url = "https://gateway.example.com:8443"
//! tls_server_name = "gateway.example.com"
//!
//! [files]                              # relative to state_dir
//! root_ca_cert = "root-ca.pem"
//! root_ca_key = "root-ca.key"
//! server_cert = "gateway.pem"
//! server_key = "gateway.key"
//! secrets_key = "secrets.key"
//!
//! [intervals]
//! heartbeat = "30s"
//! config_poll = "5m"
//!
//! [onboarding]
//! token_ttl = "24h"                    # enrollment token lifetime
//! cert_validity_days = 365             # edge component certificates
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Default gRPC listen address.
pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:50052";
/// Default admin API listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8443";

/// A config file that could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading gateway config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has wrong/unknown keys.
    #[error("gateway config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("gateway config: {key}: {message}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The whole config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// This gateway's id, stamped in responses (`gateway_id`).
    #[serde(default = "default_gateway_id")]
    pub gateway_id: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Directory holding certificates and keys (relative to the config file).
    pub state_dir: PathBuf,
    /// Source types of installed adapters, beyond the first-party ones.
    #[serde(default)]
    pub known_source_types: Vec<String>,
    /// Listen addresses.
    #[serde(default)]
    pub listen: ListenConfig,
    /// Addresses clients are told to use.
    #[serde(default)]
    pub public: PublicConfig,
    /// Certificate and key files, relative to `state_dir`.
    #[serde(default)]
    pub files: FilesConfig,
    /// Intervals handed to clients.
    #[serde(default)]
    pub intervals: IntervalsConfig,
    /// Edge onboarding.
    #[serde(default)]
    pub onboarding: OnboardingConfig,
    /// Database pool size.
    #[serde(default = "default_max_connections")]
    pub max_db_connections: u32,
}

/// Listen addresses (port 0 picks a free port).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// gRPC (mTLS) listener.
    #[serde(default = "default_grpc_listen")]
    pub grpc: SocketAddr,
    /// Admin HTTPS listener.
    #[serde(default = "default_admin_listen")]
    pub admin: SocketAddr,
}

/// What clients are told; each falls back to the bound listener address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicConfig {
    /// gRPC URL written into onboarding packages, `https://host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_url: Option<String>,
    /// Admin API base URL written into enrollment tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
    /// Name clients verify the gateway certificate against (default: the
    /// host of `grpc_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

/// Certificate and key files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Platform root CA certificate (PEM).
    #[serde(default = "default_root_ca_cert")]
    pub root_ca_cert: PathBuf,
    /// Platform root CA key (PEM, mode 0600).
    #[serde(default = "default_root_ca_key")]
    pub root_ca_key: PathBuf,
    /// Gateway server certificate chain (PEM: leaf then root).
    #[serde(default = "default_server_cert")]
    pub server_cert: PathBuf,
    /// Gateway server key (PEM, mode 0600).
    #[serde(default = "default_server_key")]
    pub server_key: PathBuf,
    /// Credential encryption key (mode 0600).
    #[serde(default = "default_secrets_key")]
    pub secrets_key: PathBuf,
}

/// Intervals handed to clients (Go-style durations).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalsConfig {
    /// Heartbeat interval.
    #[serde(default = "default_heartbeat", with = "go_duration")]
    pub heartbeat: Duration,
    /// Config poll interval.
    #[serde(default = "default_config_poll", with = "go_duration")]
    pub config_poll: Duration,
}

/// Edge onboarding settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingConfig {
    /// How long a download token stays valid.
    #[serde(default = "default_token_ttl", with = "go_duration")]
    pub token_ttl: Duration,
    /// Validity of issued component certificates, in days.
    #[serde(default = "default_cert_days")]
    pub cert_validity_days: u32,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            grpc: default_grpc_listen(),
            admin: default_admin_listen(),
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            root_ca_cert: default_root_ca_cert(),
            root_ca_key: default_root_ca_key(),
            server_cert: default_server_cert(),
            server_key: default_server_key(),
            secrets_key: default_secrets_key(),
        }
    }
}

impl Default for IntervalsConfig {
    fn default() -> Self {
        Self {
            heartbeat: default_heartbeat(),
            config_poll: default_config_poll(),
        }
    }
}

impl Default for OnboardingConfig {
    fn default() -> Self {
        Self {
            token_ttl: default_token_ttl(),
            cert_validity_days: default_cert_days(),
        }
    }
}

impl GatewayConfig {
    /// A config with defaults for everything but the database and state dir.
    pub fn new(database_url: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            gateway_id: default_gateway_id(),
            database_url: database_url.into(),
            state_dir: state_dir.into(),
            known_source_types: Vec::new(),
            listen: ListenConfig::default(),
            public: PublicConfig::default(),
            files: FilesConfig::default(),
            intervals: IntervalsConfig::default(),
            onboarding: OnboardingConfig::default(),
            max_db_connections: default_max_connections(),
        }
    }

    /// Reads a config file; a relative `state_dir` is taken relative to the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text; relative `state_dir` is resolved against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut config: GatewayConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.message().to_string()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })?;
        if config.state_dir.is_relative() {
            config.state_dir = base.join(&config.state_dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Renders the config as TOML.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            key: "config",
            message: e.to_string(),
        })
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.gateway_id.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "gateway_id",
                message: "must not be empty".into(),
            });
        }
        if self.database_url.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "database_url",
                message: "must not be empty".into(),
            });
        }
        if self.onboarding.token_ttl.is_zero() {
            return Err(ConfigError::Invalid {
                key: "onboarding.token_ttl",
                message: "must be longer than 0s".into(),
            });
        }
        if self.onboarding.cert_validity_days == 0 {
            return Err(ConfigError::Invalid {
                key: "onboarding.cert_validity_days",
                message: "must be at least 1".into(),
            });
        }
        for (key, value) in [
            ("public.grpc_url", &self.public.grpc_url),
            ("public.admin_url", &self.public.admin_url),
        ] {
            if let Some(url) = value
                && !url.starts_with("https://")
            {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("{url:?} must be an https:// URL"),
                });
            }
        }
        Ok(())
    }

    /// A file of the state directory.
    pub fn state_file(&self, name: &Path) -> PathBuf {
        if name.is_absolute() {
            name.to_path_buf()
        } else {
            self.state_dir.join(name)
        }
    }
}

/// The host part of an `https://host:port` URL (brackets stripped for IPv6).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next()?;
    let host = if let Some(stripped) = authority.strip_prefix('[') {
        stripped.split(']').next()?.to_string()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_string()
    };
    (!host.is_empty()).then_some(host)
}

/// `https://` URL for a bound socket address (`0.0.0.0` becomes `127.0.0.1`).
pub fn https_url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    format!("https://{ip}:{}", addr.port())
}

fn default_gateway_id() -> String {
    "gateway".to_string()
}
fn default_max_connections() -> u32 {
    16
}
fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 50052))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_root_ca_cert() -> PathBuf {
    PathBuf::from("root-ca.pem")
}
fn default_root_ca_key() -> PathBuf {
    PathBuf::from("root-ca.key")
}
fn default_server_cert() -> PathBuf {
    PathBuf::from("gateway.pem")
}
fn default_server_key() -> PathBuf {
    PathBuf::from("gateway.key")
}
fn default_secrets_key() -> PathBuf {
    PathBuf::from("secrets.key")
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(30)
}
fn default_config_poll() -> Duration {
    Duration::from_secs(300)
}
fn default_token_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_cert_days() -> u32 {
    365
}

/// Serde for a required Go-style duration string.
mod go_duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&sr_proto::duration::format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        sr_proto::duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_gets_defaults_and_relative_state_dir() {
        let config = GatewayConfig::from_toml(
            "database_url = \"postgres://x\"\nstate_dir = \"state\"\n",
            Path::new("/etc/sr"),
        )
        .unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/etc/sr/state"));
        assert_eq!(config.listen.grpc.port(), 50052);
        assert_eq!(config.listen.admin.to_string(), "127.0.0.1:8443");
        assert_eq!(config.intervals.heartbeat, Duration::from_secs(30));
        assert_eq!(config.onboarding.token_ttl, Duration::from_secs(86400));
        assert_eq!(
            config.state_file(&config.files.secrets_key),
            PathBuf::from("/etc/sr/state/secrets.key")
        );
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_named() {
        let err = GatewayConfig::from_toml(
            "database_url = \"x\"\nstate_dir = \".\"\nlisten_grpc = \"1\"\n",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("listen_grpc"), "{err}");
        let err = GatewayConfig::from_toml(
            "database_url = \"x\"\nstate_dir = \".\"\n[intervals]\nheartbeat = \"soon\"\n",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("soon"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() {
        let mut config = GatewayConfig::new("postgres://db", "/var/lib/sr");
        config.public.grpc_url = Some("https://gw.example:50052".into());
        config.known_source_types = vec!["servicenow".into()];
        let text = config.to_toml().unwrap();
        let back = GatewayConfig::from_toml(&text, Path::new("/")).unwrap();
        assert_eq!(back.public.grpc_url, config.public.grpc_url);
        assert_eq!(back.known_source_types, config.known_source_types);
        assert_eq!(back.intervals.config_poll, Duration::from_secs(300));
    }

    #[test]
    fn url_helpers() {
        assert_eq!(
            url_host("https://gw.example:50052").as_deref(),
            Some("gw.example")
        );
        assert_eq!(url_host("https://[::1]:443/x").as_deref(), Some("::1"));
        assert_eq!(url_host("https://h").as_deref(), Some("h"));
        assert_eq!(
            https_url_for("0.0.0.0:50052".parse().unwrap()),
            "https://127.0.0.1:50052"
        );
        assert_eq!(
            https_url_for("[::1]:8443".parse().unwrap()),
            "https://[::1]:8443"
        );
    }
}
