//! The agent's config file: the bootstrap the gateway's onboarding writes
//! for a component of type `agent` (the sync bootstrap's keys plus
//! `sweep_file`). Relative paths are relative to the file's directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// A config file that could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    component_id: String,
    gateway_addr: String,
    tls_server_name: String,
    cert_file: String,
    key_file: String,
    ca_file: String,
    /// Where the effective sweep config is written; `sweep.json` next to the
    /// config file when absent (the file an enrolled agent's config omits).
    #[serde(default = "default_sweep_file")]
    sweep_file: String,
}

fn default_sweep_file() -> String {
    "sweep.json".to_string()
}

/// The resolved agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Component id, as in the certificate's common name.
    pub component_id: String,
    /// Gateway gRPC address, `https://host:port`.
    pub gateway_addr: String,
    /// Name the gateway certificate must carry.
    pub tls_server_name: String,
    /// Agent certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Agent private key (PEM).
    pub key_file: PathBuf,
    /// CA bundle that issued the gateway certificate (PEM).
    pub ca_file: PathBuf,
    /// Where the effective sweep config is written (and the local fallback
    /// read from).
    pub sweep_file: PathBuf,
}

impl AgentConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses config text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        if raw.component_id.trim().is_empty() || raw.component_id.contains('.') {
            return Err("component_id: must be non-empty and contain no dots".into());
        }
        if !raw.gateway_addr.starts_with("https://") {
            return Err(format!(
                "gateway_addr: {:?} must be an https:// URL (the gateway requires mTLS)",
                raw.gateway_addr
            ));
        }
        if raw.tls_server_name.trim().is_empty() {
            return Err("tls_server_name: must name the gateway certificate".into());
        }
        let resolve = |field: &str, p: &str| -> Result<PathBuf, String> {
            if p.trim().is_empty() {
                return Err(format!("{field}: must be a path"));
            }
            let p = Path::new(p);
            Ok(if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            })
        };
        Ok(Self {
            cert_file: resolve("cert_file", &raw.cert_file)?,
            key_file: resolve("key_file", &raw.key_file)?,
            ca_file: resolve("ca_file", &raw.ca_file)?,
            sweep_file: resolve("sweep_file", &raw.sweep_file)?,
            component_id: raw.component_id,
            gateway_addr: raw.gateway_addr,
            tls_server_name: raw.tls_server_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"component_id": "agent-x", "gateway_addr": "https://gw:50052",
        "tls_server_name": "gateway.serviceradar", "cert_file": "agent.pem",
        "key_file": "agent-key.pem", "ca_file": "/etc/ca.pem", "sweep_file": "sweep/sweep.json"}"#;

    #[test]
    fn paths_resolve_against_the_config_directory() {
        let config = AgentConfig::parse(MINIMAL, Path::new("/etc/sr")).unwrap();
        assert_eq!(config.cert_file, Path::new("/etc/sr/agent.pem"));
        assert_eq!(config.ca_file, Path::new("/etc/ca.pem"));
        assert_eq!(config.sweep_file, Path::new("/etc/sr/sweep/sweep.json"));
    }

    #[test]
    fn an_enrolled_config_without_sweep_file_writes_next_to_it() {
        let enrolled = MINIMAL.replace(r#", "sweep_file": "sweep/sweep.json""#, "");
        let config = AgentConfig::parse(&enrolled, Path::new("/etc/sr")).unwrap();
        assert_eq!(config.sweep_file, Path::new("/etc/sr/sweep.json"));
    }

    #[test]
    fn errors_name_the_field() {
        let err = AgentConfig::parse(&MINIMAL.replace("https://", "http://"), Path::new("/"))
            .unwrap_err();
        assert!(err.starts_with("gateway_addr"), "{err}");
        let err = AgentConfig::parse(
            &MINIMAL.replace("\"sweep/sweep.json\"", "\"\""),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(err.starts_with("sweep_file"), "{err}");
        let err = AgentConfig::parse(&MINIMAL.replace("sweep_file", "sweep_path"), Path::new("/"))
            .unwrap_err();
        assert!(err.contains("sweep_path"), "{err}");
    }
}
