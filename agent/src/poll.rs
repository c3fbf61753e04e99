//! Pulling sweep config: Hello, then versioned GetConfig at the server's
//! interval; each response applied by [`crate::apply`] and the effective
//! config written to the sweep file. When the gateway is unreachable the
//! last good config and the file stay as they are.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

use crate::apply::{Decision, KeepReason, decide, sweep_section};
use crate::client::{ClientError, GatewayClient};
use crate::config::AgentConfig;
use crate::document::SweepDocument;
use crate::sweep_file::{self, SweepFileError};

/// Where the effective sweep config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Nothing yet: no file, no gateway config.
    None,
    /// The sweep file as found at start (hand-written or an earlier run's).
    LocalFile,
    /// The gateway, in this run.
    Gateway,
}

impl ConfigSource {
    /// The Hello `config_source` value.
    pub fn hello_value(self) -> &'static str {
        match self {
            Self::None => "default",
            Self::LocalFile => "local",
            Self::Gateway => "remote",
        }
    }
}

/// A poll that failed; the effective config and the file are unchanged.
#[derive(Debug, Error)]
pub enum PollError {
    /// The gateway could not be reached or answered an error.
    #[error(transparent)]
    Gateway(#[from] ClientError),
    /// The gateway refused this agent in Hello.
    #[error("the gateway did not accept this agent: {0}")]
    NotAccepted(String),
    /// The new config could not be written.
    #[error(transparent)]
    File(#[from] SweepFileError),
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// The gateway answered `not_modified`.
    NotModified,
    /// A new version whose sweep section left the config as it was.
    Kept(KeepReason),
    /// The sweep file was rewritten.
    Written {
        /// The new config's hash.
        config_hash: String,
        /// Targets in it.
        targets: usize,
        /// Networks in it.
        networks: usize,
        /// Entries skipped or ignored.
        warnings: Vec<String>,
    },
}

/// One poll's outcome and when to poll next.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    /// What happened.
    pub outcome: PollOutcome,
    /// The server's poll interval, clamped.
    pub next_poll: Duration,
}

/// Clamps a server-provided config poll interval: 30 s – 24 h, 300 s when
/// the server gives none.
pub fn config_poll_interval(server_secs: i32) -> Duration {
    let secs = if server_secs <= 0 {
        300
    } else {
        (server_secs as u64).clamp(30, 24 * 3600)
    };
    Duration::from_secs(secs)
}

/// Delay before retrying after `failures` (≥ 1) failed polls in a row:
/// 2 s doubling, never longer than `cap` (the poll interval).
pub fn retry_delay(failures: u32, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    Duration::from_secs(2)
        .saturating_mul(1u32 << exponent)
        .min(cap)
}

/// The agent's sweep-config state: the effective config, where it came
/// from, and the version last received.
pub struct SweepAgent {
    client: GatewayClient,
    sweep_file: PathBuf,
    version: String,
    current: Option<SweepDocument>,
    source: ConfigSource,
    greeted: bool,
}

impl SweepAgent {
    /// Prepares the client and reads the sweep file as the current config.
    /// A missing file means none; an unusable one is logged and treated as
    /// none (it is left in place until the gateway sends a config).
    pub fn new(config: &AgentConfig) -> Result<Self, ClientError> {
        let client = GatewayClient::new(config)?;
        let (current, source) = match sweep_file::read(&config.sweep_file) {
            Ok(Some(validated)) => {
                for warning in &validated.warnings {
                    tracing::warn!(file = %config.sweep_file.display(), "{warning}");
                }
                (Some(validated.document), ConfigSource::LocalFile)
            }
            Ok(None) => (None, ConfigSource::None),
            Err(error) => {
                tracing::warn!(error = %error, "ignoring the local sweep file");
                (None, ConfigSource::None)
            }
        };
        Ok(Self {
            client,
            sweep_file: config.sweep_file.clone(),
            version: String::new(),
            current,
            source,
            greeted: false,
        })
    }

    /// The effective sweep config, if any.
    pub fn current(&self) -> Option<&SweepDocument> {
        self.current.as_ref()
    }

    /// Where the effective config came from.
    pub fn source(&self) -> ConfigSource {
        self.source
    }

    /// The config version last received from the gateway.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Says Hello (first time, and after a failure), pulls GetConfig with
    /// the current version and applies the answer. On error nothing changed.
    pub async fn poll_once(&mut self) -> Result<Poll, PollError> {
        let result = self.poll_inner().await;
        if result.is_err() {
            // Announce again once the gateway is back.
            self.greeted = false;
        }
        result
    }

    async fn poll_inner(&mut self) -> Result<Poll, PollError> {
        if !self.greeted {
            let hello = self
                .client
                .hello(&self.version, self.source.hello_value())
                .await?;
            if !hello.accepted {
                return Err(PollError::NotAccepted(hello.message));
            }
            tracing::info!(gateway = %hello.gateway_id, tenant = %hello.tenant_slug, "gateway accepted the agent");
            self.greeted = true;
        }
        let response = self.client.get_config(&self.version).await?;
        let next_poll = config_poll_interval(response.config_poll_interval_sec);
        if response.not_modified {
            return Ok(Poll {
                outcome: PollOutcome::NotModified,
                next_poll,
            });
        }
        let section = sweep_section(&response);
        let outcome = match decide(self.current.as_ref(), &section) {
            Decision::Keep(reason) => {
                match &reason {
                    KeepReason::SameHash | KeepReason::Unchanged => {
                        self.source = ConfigSource::Gateway
                    }
                    KeepReason::Refused(why) => {
                        tracing::warn!(version = %response.config_version, reason = %why, "sweep config refused; keeping the current one")
                    }
                    KeepReason::Absent => {}
                }
                PollOutcome::Kept(reason)
            }
            Decision::Replace { document, warnings } => {
                for warning in &warnings {
                    tracing::warn!(version = %response.config_version, "{warning}");
                }
                sweep_file::write(&self.sweep_file, &document)?;
                tracing::info!(
                    version = %response.config_version,
                    config_hash = %document.config_hash,
                    targets = document.device_targets.len(),
                    networks = document.networks.len(),
                    skipped = warnings.len(),
                    file = %self.sweep_file.display(),
                    "sweep config written"
                );
                let outcome = PollOutcome::Written {
                    config_hash: document.config_hash.clone(),
                    targets: document.device_targets.len(),
                    networks: document.networks.len(),
                    warnings,
                };
                self.current = Some(document);
                self.source = ConfigSource::Gateway;
                outcome
            }
        };
        // Only after the file is written: a failed write retries next poll.
        self.version = response.config_version;
        Ok(Poll { outcome, next_poll })
    }

    /// Polls until `shutdown` turns true: at the server's interval, or with
    /// backoff after a failure, keeping the last good config meanwhile.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut interval = config_poll_interval(0);
        let mut failures = 0u32;
        loop {
            let wait = match self.poll_once().await {
                Ok(poll) => {
                    failures = 0;
                    interval = poll.next_poll;
                    interval
                }
                Err(error) => {
                    failures += 1;
                    let wait = retry_delay(failures, interval);
                    tracing::warn!(error = %error, retry_in = ?wait, "sweep config poll failed; keeping the last good config");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_intervals_are_clamped() {
        assert_eq!(config_poll_interval(0), Duration::from_secs(300));
        assert_eq!(config_poll_interval(-5), Duration::from_secs(300));
        assert_eq!(config_poll_interval(5), Duration::from_secs(30));
        assert_eq!(config_poll_interval(600), Duration::from_secs(600));
        assert_eq!(config_poll_interval(i32::MAX), Duration::from_secs(86_400));
    }

    #[test]
    fn retries_back_off_up_to_the_poll_interval() {
        let cap = Duration::from_secs(300);
        assert_eq!(retry_delay(1, cap), Duration::from_secs(2));
        assert_eq!(retry_delay(3, cap), Duration::from_secs(8));
        assert_eq!(retry_delay(40, cap), cap);
    }
}
