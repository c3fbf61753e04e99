//! The scheduler: one schedule per (tenant, source), at most one run in
//! flight per source, a per-tenant and a global concurrency cap, jitter, and
//! exponential backoff after failures. Config changes apply without a
//! restart: new sources start, removed ones stop (a run in flight finishes),
//! changed ones restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sr_proto::sync_config::{SourceConfig, SyncConfigDocument};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::config::Scheduling;
use super::run::{RunEnv, RunResult, run_source};
use super::schedule;

/// Observable state of one source, for status and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// Tenant slug.
    pub tenant: String,
    /// Source name.
    pub name: String,
    /// Source type.
    pub source_type: String,
    /// Whether a run is in flight.
    pub running: bool,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Devices acknowledged by the last run.
    pub last_devices: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Observable state of the scheduler.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SchedulerStatus {
    /// Config version in force.
    pub config_version: String,
    /// Sources by key.
    pub sources: BTreeMap<String, SourceStatus>,
}

struct Slot {
    source: Arc<SourceConfig>,
    generation: u64,
    next_due: Instant,
    running: bool,
    consecutive_failures: u32,
    runs: u64,
}

impl Slot {
    /// Whether the slot may start a run (not running; in `once` mode, not
    /// yet run).
    fn idle(&self, once: bool) -> bool {
        !self.running && (!once || self.runs == 0)
    }
}

struct Completion {
    key: String,
    generation: u64,
    result: RunResult,
}

/// Drives runs until `shutdown` flips to true. With `once`, runs every
/// source once and returns when all have finished.
pub async fn run(
    env: Arc<RunEnv>,
    scheduling: Scheduling,
    mut configs: watch::Receiver<Option<(String, Arc<SyncConfigDocument>)>>,
    status: watch::Sender<SchedulerStatus>,
    mut shutdown: watch::Receiver<bool>,
    once: bool,
) {
    let global = Arc::new(Semaphore::new(scheduling.max_concurrent_runs));
    let mut per_tenant: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
    let mut current: BTreeMap<String, SourceConfig> = BTreeMap::new();
    let mut generation = 0u64;
    let mut have_config = false;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
    let mut in_flight = 0usize;

    loop {
        // Start every due source that capacity allows.
        let now = Instant::now();
        let due: Vec<String> = {
            let mut due: Vec<(&String, &Slot)> = slots
                .iter()
                .filter(|(_, s)| s.idle(once) && s.next_due <= now)
                .collect();
            due.sort_by_key(|(_, s)| s.next_due);
            due.into_iter().map(|(k, _)| k.clone()).collect()
        };
        for key in due {
            let Some(slot) = slots.get_mut(&key) else {
                continue;
            };
            let tenant = per_tenant
                .entry(slot.source.tenant_id.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(scheduling.max_runs_per_tenant)))
                .clone();
            let Ok(tenant_permit) = tenant.try_acquire_owned() else {
                continue;
            };
            let Ok(global_permit) = global.clone().try_acquire_owned() else {
                break;
            };
            slot.running = true;
            in_flight += 1;
            status.send_modify(|st| {
                if let Some(s) = st.sources.get_mut(&key) {
                    s.running = true;
                }
            });
            spawn_run(
                env.clone(),
                key,
                slot,
                tenant_permit,
                global_permit,
                done_tx.clone(),
            );
        }

        if once && have_config && in_flight == 0 && slots.values().all(|s| s.runs > 0) {
            return;
        }

        let next_due = slots
            .values()
            .filter(|s| s.idle(once))
            .map(|s| s.next_due)
            .min();
        // Re-check at least every second: capacity may have freed up.
        let wake = next_due
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
            .min(Instant::now() + Duration::from_secs(1))
            .max(Instant::now() + Duration::from_millis(5));

        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
            changed = configs.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some((version, document)) = configs.borrow_and_update().clone() else { continue };
                have_config = true;
                generation += 1;
                apply_config(&mut slots, &mut current, &document, generation, &scheduling, once);
                publish(&status, &version, &slots, &current);
            }
            Some(done) = done_rx.recv() => {
                in_flight -= 1;
                finish(&mut slots, &status, done, &scheduling);
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

fn spawn_run(
    env: Arc<RunEnv>,
    key: String,
    slot: &Slot,
    tenant_permit: OwnedSemaphorePermit,
    global_permit: OwnedSemaphorePermit,
    done: mpsc::UnboundedSender<Completion>,
) {
    let source = slot.source.clone();
    let generation = slot.generation;
    tokio::spawn(async move {
        let result = run_source(&env, &source).await;
        drop((tenant_permit, global_permit));
        let _ = done.send(Completion {
            key,
            generation,
            result,
        });
    });
}

fn apply_config(
    slots: &mut BTreeMap<String, Slot>,
    current: &mut BTreeMap<String, SourceConfig>,
    document: &SyncConfigDocument,
    generation: u64,
    scheduling: &Scheduling,
    once: bool,
) {
    let changes = schedule::diff_sources(current, &document.sources);
    let batch = changes.added.len() + changes.changed.len();
    let now = Instant::now();
    for key in &changes.removed {
        // A run in flight finishes; its completion finds no slot.
        slots.remove(key);
        tracing::info!(source = %key, "source removed");
    }
    for key in changes.added.iter().chain(&changes.changed) {
        let Some(source) = document.sources.get(key) else {
            continue;
        };
        let (running, runs) = slots.get(key).map_or((false, 0), |s| (s.running, s.runs));
        let spread = schedule::first_run_delay(batch, once, rand::random());
        slots.insert(
            key.clone(),
            Slot {
                source: Arc::new(source.clone()),
                generation,
                next_due: now + spread,
                running,
                consecutive_failures: 0,
                runs,
            },
        );
        let verb = if changes.added.contains(key) {
            "added"
        } else {
            "changed"
        };
        tracing::info!(source = %key, interval = ?schedule::interval(source, scheduling), "source {verb}");
    }
    *current = document.sources.clone();
}

fn finish(
    slots: &mut BTreeMap<String, Slot>,
    status: &watch::Sender<SchedulerStatus>,
    done: Completion,
    scheduling: &Scheduling,
) {
    let Some(slot) = slots.get_mut(&done.key) else {
        status.send_modify(|st| {
            st.sources.remove(&done.key);
        });
        return;
    };
    slot.running = false;
    slot.runs += 1;
    let stale = slot.generation != done.generation;
    let delay = if done.result.succeeded() {
        slot.consecutive_failures = 0;
        schedule::jittered(
            schedule::interval(&slot.source, scheduling),
            scheduling.jitter_percent,
            rand::random(),
        )
    } else {
        slot.consecutive_failures += 1;
        schedule::backoff(
            slot.consecutive_failures,
            scheduling.backoff_initial,
            scheduling.backoff_max,
            done.result.retry_after,
        )
    };
    // A source whose config changed during the run restarts right away.
    slot.next_due = if stale {
        Instant::now()
    } else {
        Instant::now() + delay
    };
    let failures = slot.consecutive_failures;
    status.send_modify(|st| {
        if let Some(s) = st.sources.get_mut(&done.key) {
            s.running = false;
            s.consecutive_failures = failures;
            s.last_devices = done.result.devices;
            if done.result.succeeded() {
                s.succeeded += 1;
                s.last_error = None;
            } else {
                s.failed += 1;
                s.last_error = done.result.error.clone();
            }
        }
    });
}

fn publish(
    status: &watch::Sender<SchedulerStatus>,
    version: &str,
    slots: &BTreeMap<String, Slot>,
    current: &BTreeMap<String, SourceConfig>,
) {
    status.send_modify(|st| {
        st.config_version = version.to_string();
        st.sources.retain(|k, _| current.contains_key(k));
        for (key, source) in current {
            let entry = st.sources.entry(key.clone()).or_default();
            entry.tenant = source.tenant_slug.clone();
            entry.name = source.name.clone();
            entry.source_type = source.source_type.clone();
            entry.running = slots.get(key).is_some_and(|s| s.running);
        }
    });
}
