//! One run of one integration source: pick the adapter, run it in the
//! sandbox, deliver what it emits, commit cursors after acknowledgement,
//! and report the run to the gateway.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use sr_proto::SyncMeta;
use sr_proto::run_report::{RunPhase, RunReport};
use sr_proto::sync_config::SourceConfig;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::HostConfig;
use super::delivery::{Deliverer, DeliveryError};
use super::gateway_client::GatewayClient;
use super::state_store::StateStore;
use crate::adapter::LoadedAdapter;
use crate::egress::policy::endpoint_host;
use crate::egress::{EgressPolicy, HostPattern};
use crate::local_run::EVENT_BUFFER;
use crate::normalize::NormalizeContext;
use crate::registry::Registry;
use crate::sandbox::{
    AdapterFailure, DiscoverInput, RunError, RunEvent, RunLabel, RunSettings, Sandbox,
};

/// Everything a run needs from the daemon.
pub struct RunEnv {
    /// The sandbox.
    pub sandbox: Arc<Sandbox>,
    /// Installed adapters.
    pub registry: Arc<Registry>,
    /// The gateway.
    pub client: GatewayClient,
    /// Local cursor/run-number state.
    pub state: Arc<StateStore>,
    /// Host settings.
    pub config: Arc<HostConfig>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The run id.
    pub run_id: String,
    /// Devices the gateway acknowledged.
    pub devices: u64,
    /// Failure cause, if the run failed.
    pub error: Option<String>,
    /// The source asked us to wait this long before trying again.
    pub retry_after: Option<Duration>,
    /// `name@version` of the adapter, when one was selected.
    pub adapter: String,
}

impl RunResult {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Why a run failed, before it is turned into a report.
enum Failure {
    Setup(String),
    Run(RunError),
    Delivery(DeliveryError),
    State(String),
}

impl Failure {
    fn message(&self) -> String {
        match self {
            Self::Setup(m) | Self::State(m) => m.clone(),
            Self::Run(e) => e.to_string(),
            Self::Delivery(e) => e.to_string(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Run(RunError::Adapter {
                failure:
                    AdapterFailure::RateLimited {
                        retry_after_secs, ..
                    },
                ..
            }) => Some(Duration::from_secs(u64::from(*retry_after_secs))),
            _ => None,
        }
    }
}

/// Runs `source` once and reports it.
pub async fn run_source(env: &RunEnv, source: &SourceConfig) -> RunResult {
    let run_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("run", tenant = %source.tenant_slug, integration = %source.name, run_id = %run_id);
    let _entered = span.enter();
    drop(_entered);

    let mut adapter_label = String::new();
    let outcome = execute(env, source, &run_id, &mut adapter_label).await;
    let (phase, devices, complete, error, retry_after) = match &outcome {
        Ok((devices, complete)) => (RunPhase::Succeeded, *devices, *complete, None, None),
        Err((failure, devices)) => (
            RunPhase::Failed,
            *devices,
            false,
            Some(failure.message()),
            failure.retry_after(),
        ),
    };
    match &error {
        None => {
            tracing::info!(tenant = %source.tenant_slug, integration = %source.name, run_id = %run_id,
            adapter = %adapter_label, devices, "run succeeded")
        }
        Some(error) => {
            tracing::warn!(tenant = %source.tenant_slug, integration = %source.name, run_id = %run_id,
            adapter = %adapter_label, devices, error = %error, "run failed")
        }
    }
    report(
        env,
        source,
        &run_id,
        phase,
        devices,
        complete,
        error.clone(),
        &adapter_label,
    )
    .await;
    RunResult {
        run_id,
        devices,
        error,
        retry_after,
        adapter: adapter_label,
    }
}

async fn execute(
    env: &RunEnv,
    source: &SourceConfig,
    run_id: &str,
    adapter_label: &mut String,
) -> Result<(u64, bool), (Failure, u64)> {
    let started = Instant::now();
    let adapter = env
        .registry
        .select(&source.source_type, source.adapter.as_ref())
        .map_err(|e| (Failure::Setup(e.to_string()), 0))?;
    *adapter_label = adapter.label();
    // The Started report is bookkeeping: it travels while the adapter
    // starts, not before (a round trip the run would otherwise wait for),
    // and is acknowledged before the run's final report is sent.
    let (_, outcome) = tokio::join!(
        report(
            env,
            source,
            run_id,
            RunPhase::Started,
            0,
            false,
            None,
            adapter_label
        ),
        discover_and_deliver(env, source, run_id, adapter, started),
    );
    outcome
}

/// Runs the adapter and delivers what it emits; commits cursors as the
/// gateway acknowledges the devices before them.
async fn discover_and_deliver(
    env: &RunEnv,
    source: &SourceConfig,
    run_id: &str,
    adapter: Arc<LoadedAdapter>,
    started: Instant,
) -> Result<(u64, bool), (Failure, u64)> {
    let blacklist =
        parse_blacklist(&source.network_blacklist).map_err(|m| (Failure::Setup(m), 0))?;
    let limits = env.config.limits;
    let settings = RunSettings {
        label: RunLabel {
            adapter: adapter.label(),
            tenant: source.tenant_slug.clone(),
            integration: source.name.clone(),
            run_id: run_id.to_string(),
        },
        limits,
        egress: Arc::new(egress_policy(env, source, &adapter.description().hosts)),
    };
    let state = env.state.get(&source.id);
    let config = serde_json::to_string(source)
        .map_err(|e| (Failure::Setup(format!("encoding config: {e}")), 0))?;
    let input = DiscoverInput {
        config,
        cursor: state.cursor.clone(),
        run_id: run_id.to_string(),
        run_number: state.run_number,
    };
    let ctx = NormalizeContext {
        source_type: adapter.description().source_type.clone(),
        integration_source_id: Some(source.id.clone()),
        tenant_id: Some(source.tenant_id.clone()),
        sync_service_id: Some(source.sync_service_id.clone()),
        partition: source.partition.clone(),
        agent_id: source.agent_id.clone(),
        blacklist,
        now: chrono::Utc::now(),
        keep_raw: true,
    };
    let meta = SyncMeta {
        sync_service_id: source.sync_service_id.clone(),
        sync_run_id: run_id.to_string(),
        ..Default::default()
    };
    let deadline = started + limits.wall_clock();
    let mut deliverer =
        Deliverer::new(env.client.clone(), env.config.delivery, ctx, meta, deadline);

    let (tx, mut rx) = mpsc::channel::<RunEvent>(EVENT_BUFFER);
    let discover = {
        let (sandbox, adapter, settings) = (env.sandbox.clone(), adapter.clone(), settings.clone());
        tokio::spawn(async move { sandbox.discover(&adapter, input, &settings, tx).await })
    };

    let mut delivery_error = None;
    while let Some(event) = rx.recv().await {
        let result = match event {
            RunEvent::Devices(devices) => deliverer.push_devices(devices).await,
            RunEvent::Checkpoint(cursor) => match deliverer.flush().await {
                // Everything before the checkpoint is acknowledged: commit it.
                Ok(()) => env
                    .state
                    .commit_cursor(&source.id, &cursor)
                    .map_err(|e| DeliveryError::Task(e.to_string())),
                Err(e) => Err(e),
            },
        };
        if let Err(error) = result {
            // Dropping the receiver stops the adapter at its next emit.
            delivery_error = Some(error);
            break;
        }
    }
    drop(rx);
    let outcome = discover.await.map_err(|e| {
        (
            Failure::Setup(format!("adapter task: {e}")),
            deliverer.stats().acknowledged,
        )
    })?;
    if let Some(error) = delivery_error {
        return Err((Failure::Delivery(error), deliverer.stats().acknowledged));
    }
    let outcome = outcome.map_err(|e| (Failure::Run(e), deliverer.stats().acknowledged))?;
    deliverer
        .flush()
        .await
        .map_err(|e| (Failure::Delivery(e), deliverer.stats().acknowledged))?;
    let stats = deliverer.stats();
    if stats.normalization.has_warnings() || stats.oversized > 0 {
        let n = stats.normalization;
        tracing::warn!(
            tenant = %source.tenant_slug, integration = %source.name, run_id,
            invalid_ips = n.invalid_ips, dropped_no_ip = n.dropped_no_ip,
            dropped_no_source_id = n.dropped_no_source_id, invalid_macs = n.invalid_macs,
            invalid_timestamps = n.invalid_timestamps, dropped_attributes = n.dropped_attributes,
            oversized = stats.oversized,
            "normalisation dropped or fixed data"
        );
    }
    env.state
        .finish_run(&source.id, outcome.cursor.clone())
        .map_err(|e| (Failure::State(e.to_string()), stats.acknowledged))?;
    Ok((stats.acknowledged, outcome.complete))
}

/// The run's egress: the source's endpoint host, plus the hosts the adapter
/// declared that the operator approved.
fn egress_policy(env: &RunEnv, source: &SourceConfig, declared: &[String]) -> EgressPolicy {
    let mut hosts = Vec::new();
    if let Some(host) = endpoint_host(&source.endpoint) {
        hosts.push(HostPattern::new(&host));
    }
    for host in declared {
        if env
            .config
            .egress
            .approved_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host))
        {
            hosts.push(HostPattern::new(host));
        }
    }
    EgressPolicy::new(hosts, env.config.permissions.clone())
}

fn parse_blacklist(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("network_blacklist[{i}]: {text:?} is not a CIDR"))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn report(
    env: &RunEnv,
    source: &SourceConfig,
    run_id: &str,
    phase: RunPhase,
    devices: u64,
    complete: bool,
    error: Option<String>,
    adapter: &str,
) {
    let report = RunReport {
        integration_source_id: source.id.clone(),
        tenant_id: source.tenant_id.clone(),
        run_id: run_id.to_string(),
        phase,
        devices,
        complete,
        error,
        adapter: adapter.to_string(),
        at: chrono::Utc::now(),
    };
    // Reports are bookkeeping: a lost one never fails the run.
    for attempt in 0..3u32 {
        match env.client.report_run(&report).await {
            Ok(()) => return,
            Err(e) if e.is_transient() && attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            Err(e) => {
                tracing::warn!(run_id, integration = %source.name, error = %e, "run report not delivered");
                return;
            }
        }
    }
}
