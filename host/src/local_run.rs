//! Running one adapter locally, outside the daemon: validate, then discover,
//! with every device normalised and handed to a sink as it arrives. Backs
//! `sr-sync adapter run` and the benchmarks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Serialize;
use sr_proto::DeviceUpdate;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::adapter::LoadedAdapter;
use crate::egress::policy::endpoint_host;
use crate::egress::{AddressPermissions, EgressPolicy, HostPattern};
use crate::normalize::{NormalizeContext, NormalizeStats, normalize};
use crate::sandbox::{DiscoverInput, RunError, RunEvent, RunLimits, RunSettings, Sandbox};

/// Batches buffered between the adapter and the sink: the adapter waits
/// (backpressure) when the sink falls this far behind.
pub const EVENT_BUFFER: usize = 4;

/// Why a local run failed before or around the adapter.
#[derive(Debug, Error)]
pub enum LocalRunError {
    /// The config file is not a JSON object.
    #[error("config: {0}")]
    Config(String),
    /// `validate` refused the config.
    #[error("validate failed: {0}")]
    Validate(RunError),
    /// `discover` failed.
    #[error("discover failed: {0}")]
    Discover(RunError),
    /// The sink failed (e.g. stdout closed).
    #[error("writing output: {0}")]
    Sink(String),
}

/// Options of a local run.
#[derive(Debug, Clone, Default)]
pub struct LocalRunOptions {
    /// Extra allowed hosts (beyond the config's `endpoint`).
    pub allow_hosts: Vec<String>,
    /// Address permissions (loopback for mock servers, ...).
    pub permissions: AddressPermissions,
    /// Limits (host defaults when `None`).
    pub limits: Option<RunLimits>,
    /// Run number passed to the adapter.
    pub run_number: u64,
    /// Cursor passed to the adapter.
    pub cursor: Option<String>,
    /// Skip `validate`.
    pub skip_validate: bool,
}

/// What a local run produced.
#[derive(Debug, Clone, Serialize)]
pub struct LocalRunSummary {
    /// `name@version`.
    pub adapter: String,
    /// Component digest.
    pub digest: String,
    /// Devices the adapter emitted.
    pub devices_emitted: u64,
    /// Devices the adapter reported in its summary.
    pub devices_reported: u64,
    /// DeviceUpdates produced after normalisation.
    pub updates: u64,
    /// Whether the run was a complete inventory.
    pub complete: bool,
    /// The cursor the adapter returned.
    pub cursor: Option<String>,
    /// Checkpoints the adapter recorded.
    pub checkpoints: u64,
    /// The last checkpointed cursor.
    pub last_checkpoint: Option<String>,
    /// What normalisation dropped or fixed.
    pub normalization: NormalizeStats,
    /// Egress requests sent.
    pub egress_requests: u64,
    /// Egress requests refused.
    pub egress_denials: u64,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
}

/// Builds the egress policy of a run: the config's endpoint host, plus the
/// operator's extra hosts.
pub fn egress_policy(config: &serde_json::Value, options: &LocalRunOptions) -> EgressPolicy {
    let mut hosts: Vec<HostPattern> = options
        .allow_hosts
        .iter()
        .map(|h| HostPattern::new(h))
        .collect();
    if let Some(host) = config
        .get("endpoint")
        .and_then(|e| e.as_str())
        .and_then(endpoint_host)
    {
        hosts.push(HostPattern::new(&host));
    }
    EgressPolicy::new(hosts, options.permissions.clone())
}

/// The normalisation context a config implies for a local run.
pub fn normalize_context(
    adapter: &LoadedAdapter,
    config: &serde_json::Value,
) -> Result<NormalizeContext, LocalRunError> {
    let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let mut blacklist = Vec::new();
    if let Some(list) = config.get("network_blacklist") {
        let entries = list.as_array().ok_or_else(|| {
            LocalRunError::Config("network_blacklist must be an array of CIDR strings".into())
        })?;
        for (i, entry) in entries.iter().enumerate() {
            let cidr = entry.as_str().unwrap_or_default();
            let net: IpNet = cidr
                .parse()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    LocalRunError::Config(format!(
                        "network_blacklist[{i}]: {entry} is not a CIDR (e.g. 10.0.0.0/8)"
                    ))
                })?;
            blacklist.push(net);
        }
    }
    Ok(NormalizeContext {
        source_type: adapter.description().source_type.clone(),
        integration_source_id: text("id"),
        tenant_id: text("tenant_id"),
        sync_service_id: text("sync_service_id"),
        partition: text("partition").unwrap_or_else(|| "default".to_string()),
        agent_id: text("agent_id").unwrap_or_default(),
        blacklist,
        now: chrono::Utc::now(),
        keep_raw: true,
    })
}

/// Parses a config document: it must be a JSON object.
pub fn parse_config(text: &str) -> Result<serde_json::Value, LocalRunError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| LocalRunError::Config(format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(LocalRunError::Config("must be a JSON object".to_string()));
    }
    Ok(value)
}

/// Runs validate + discover, calling `sink` with every DeviceUpdate in
/// emission order and `progress` after every batch with the update count.
pub async fn run_local<S, P>(
    sandbox: &Arc<Sandbox>,
    adapter: &Arc<LoadedAdapter>,
    config: &serde_json::Value,
    options: &LocalRunOptions,
    mut sink: S,
    mut progress: P,
) -> Result<LocalRunSummary, LocalRunError>
where
    S: FnMut(&DeviceUpdate) -> Result<(), String> + Send,
    P: FnMut(u64) + Send,
{
    let started = Instant::now();
    let ctx = normalize_context(adapter, config)?;
    let settings = RunSettings {
        limits: options.limits.unwrap_or_default(),
        egress: Arc::new(egress_policy(config, options)),
        ..RunSettings::local(uuid::Uuid::new_v4().to_string(), EgressPolicy::deny_all())
    };
    let config_text = config.to_string();
    if !options.skip_validate {
        sandbox
            .validate(adapter, &config_text, &settings)
            .await
            .map_err(LocalRunError::Validate)?;
    }

    let (tx, mut rx) = mpsc::channel::<RunEvent>(EVENT_BUFFER);
    let input = DiscoverInput {
        config: config_text,
        cursor: options.cursor.clone(),
        run_id: settings.label.run_id.clone(),
        run_number: options.run_number,
    };
    // The guest runs in its own task so normalisation and output proceed in
    // parallel with it (the channel bounds how far apart they get).
    let discover = {
        let (sandbox, adapter, settings) = (sandbox.clone(), adapter.clone(), settings.clone());
        tokio::spawn(async move { sandbox.discover(&adapter, input, &settings, tx).await })
    };
    let consume = async {
        let mut stats = NormalizeStats::default();
        let mut checkpoints = 0u64;
        let mut last_checkpoint = None;
        let mut sink_error = None;
        while let Some(event) = rx.recv().await {
            match event {
                RunEvent::Devices(devices) => {
                    for device in devices {
                        if let Some(update) = normalize(device, &ctx, &mut stats)
                            && let Err(e) = sink(&update)
                        {
                            sink_error = Some(e);
                            break;
                        }
                    }
                    if sink_error.is_some() {
                        // Dropping the receiver stops the adapter at its next emit.
                        break;
                    }
                    progress(stats.updates_out);
                }
                RunEvent::Checkpoint(cursor) => {
                    checkpoints += 1;
                    last_checkpoint = Some(cursor);
                }
            }
        }
        drop(rx);
        (stats, checkpoints, last_checkpoint, sink_error)
    };
    let (stats, checkpoints, last_checkpoint, sink_error) = consume.await;
    let outcome = discover
        .await
        .map_err(|e| LocalRunError::Sink(format!("the adapter task failed: {e}")))?;
    if let Some(error) = sink_error {
        return Err(LocalRunError::Sink(error));
    }
    let outcome = outcome.map_err(LocalRunError::Discover)?;
    if stats.has_warnings() {
        tracing::warn!(
            adapter = %adapter.label(),
            invalid_ips = stats.invalid_ips,
            dropped_no_ip = stats.dropped_no_ip,
            dropped_no_source_id = stats.dropped_no_source_id,
            invalid_macs = stats.invalid_macs,
            invalid_timestamps = stats.invalid_timestamps,
            dropped_attributes = stats.dropped_attributes,
            "normalisation dropped or fixed data"
        );
    }
    Ok(LocalRunSummary {
        adapter: adapter.label(),
        digest: adapter.digest().to_string(),
        devices_emitted: outcome.emitted_devices,
        devices_reported: outcome.reported_devices,
        updates: stats.updates_out,
        complete: outcome.complete,
        cursor: outcome.cursor,
        checkpoints,
        last_checkpoint,
        normalization: stats,
        egress_requests: outcome.egress_requests,
        egress_denials: outcome.egress_denials,
        elapsed_secs: round_secs(started.elapsed()),
    })
}

fn round_secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
