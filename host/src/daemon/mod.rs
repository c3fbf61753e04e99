//! The sync service daemon (`sr-sync run`): connects with its certificate,
//! says Hello, pulls GetConfig, then keeps three loops — config poll
//! (version-aware), heartbeat (PushStatus), and the scheduler.

pub mod config;
pub mod delivery;
pub mod gateway_client;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod state_store;

use std::sync::Arc;
use std::time::Duration;

use sr_proto::sync_config::SyncConfigDocument;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::config::HostConfig;
use self::gateway_client::{GatewayClient, GatewayError};
use self::run::RunEnv;
pub use self::scheduler::{SchedulerStatus, SourceStatus};
use self::state_store::StateStore;
use crate::registry::{Registry, RegistryWatch};
use crate::sandbox::{Sandbox, SandboxConfig};

/// Why the daemon could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// Local setup failed (sandbox, registry, state, certificates).
    #[error("{0}")]
    Setup(String),
    /// The gateway refused the service.
    #[error("{0}")]
    Gateway(#[from] GatewayError),
}

/// A running daemon.
pub struct DaemonHandle {
    status: watch::Receiver<SchedulerStatus>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    scheduler: JoinHandle<()>,
    _watch: Option<RegistryWatch>,
    registry: Arc<Registry>,
}

impl DaemonHandle {
    /// Live status of the scheduled sources.
    pub fn status(&self) -> watch::Receiver<SchedulerStatus> {
        self.status.clone()
    }

    /// The adapter registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Waits for the scheduler to finish (in `once` mode: every source ran).
    pub async fn wait(&mut self) {
        let _ = (&mut self.scheduler).await;
    }

    /// Stops scheduling, lets runs in flight finish for up to `grace`, then
    /// stops everything.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, &mut self.scheduler).await;
        let mut status = self.status.clone();
        let _ = tokio::time::timeout(
            grace,
            status.wait_for(|s| s.sources.values().all(|s| !s.running)),
        )
        .await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Options of a daemon run.
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonOptions {
    /// Run every source once, then stop.
    pub once: bool,
}

/// Starts the daemon: Hello (retried until the gateway answers), the first
/// config, then the config, heartbeat and scheduler loops.
pub async fn start(
    config: HostConfig,
    options: DaemonOptions,
) -> Result<DaemonHandle, DaemonError> {
    let config = Arc::new(config);
    let client = GatewayClient::new(&config)?;
    let mut extra_ca_pem = Vec::new();
    for file in &config.egress.extra_ca_files {
        extra_ca_pem.push(
            std::fs::read(file)
                .map_err(|e| DaemonError::Setup(format!("egress.extra_ca_files {file}: {e}")))?,
        );
    }
    let sandbox = Arc::new(
        Sandbox::new(SandboxConfig {
            extra_ca_pem,
            ..Default::default()
        })
        .map_err(|e| DaemonError::Setup(e.to_string()))?,
    );
    let (registry, report) = Registry::open(
        sandbox.clone(),
        &config.adapters_dir,
        Some(config.state_dir.join("compiled")),
    )
    .await
    .map_err(|e| DaemonError::Setup(e.to_string()))?;
    for refused in &report.refused {
        tracing::error!(refused = %refused, "adapter refused");
    }
    tracing::info!(dir = %config.adapters_dir.display(), adapters = ?registry.source_types(), "adapters loaded");
    let registry_watch = match registry.watch() {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!(error = %error, "adapter directory not watched; restart to pick up new adapters");
            None
        }
    };
    let state = Arc::new(
        StateStore::open(&config.state_dir).map_err(|e| DaemonError::Setup(e.to_string()))?,
    );

    let hello = hello_until_accepted(&client).await?;
    tracing::info!(
        component_id = %config.component_id,
        tenant = %hello.tenant_slug,
        gateway_id = %hello.gateway_id,
        "connected to the gateway"
    );

    let (config_tx, config_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(SchedulerStatus::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        schedule::heartbeat_interval(hello.heartbeat_interval_sec),
        shutdown_rx.clone(),
    ));
    let poll = tokio::spawn(config_loop(client.clone(), config_tx, shutdown_rx.clone()));
    let env = Arc::new(RunEnv {
        sandbox,
        registry: registry.clone(),
        client,
        state,
        config: config.clone(),
    });
    let scheduler = tokio::spawn(scheduler::run(
        env,
        config.scheduler,
        config_rx,
        status_tx,
        shutdown_rx,
        options.once,
    ));
    Ok(DaemonHandle {
        status: status_rx,
        shutdown: shutdown_tx,
        tasks: vec![heartbeat, poll],
        scheduler,
        _watch: registry_watch,
        registry,
    })
}

async fn hello_until_accepted(
    client: &GatewayClient,
) -> Result<sr_proto::monitoring::AgentHelloResponse, DaemonError> {
    let mut delay = Duration::from_secs(1);
    loop {
        match client.hello("").await {
            Ok(response) if response.accepted => return Ok(response),
            Ok(response) => {
                return Err(DaemonError::Setup(format!(
                    "the gateway did not accept this sync service: {}",
                    response.message
                )));
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(error = %error, retry_in = ?delay, "gateway not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

async fn heartbeat_loop(
    client: GatewayClient,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Err(error) = client.heartbeat().await {
            tracing::warn!(error = %error, "heartbeat not delivered");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn config_loop(
    client: GatewayClient,
    configs: watch::Sender<Option<(String, Arc<SyncConfigDocument>)>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut version = String::new();
    let mut interval = schedule::config_poll_interval(0);
    let mut failures = 0u32;
    loop {
        match client.get_config(&version).await {
            Ok(response) => {
                failures = 0;
                interval = schedule::config_poll_interval(response.config_poll_interval_sec);
                if !response.not_modified {
                    match serde_json::from_slice::<SyncConfigDocument>(&response.config_json) {
                        Ok(document) => {
                            tracing::info!(version = %response.config_version, sources = document.sources.len(), "config received");
                            version = response.config_version.clone();
                            let _ =
                                configs.send(Some((response.config_version, Arc::new(document))));
                        }
                        Err(error) => {
                            tracing::error!(version = %response.config_version, error = %error, "config document unreadable; keeping the current one");
                        }
                    }
                }
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(error = %error, "config poll failed; keeping the current config");
            }
        }
        let wait = if failures > 0 {
            schedule::backoff(failures, Duration::from_secs(2), interval, None)
        } else {
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
