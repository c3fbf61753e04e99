//! Scheduling decisions as plain functions: when a source is next due, how
//! long to back off, what a config change means for the running schedule,
//! and how server-provided intervals are clamped.

use std::collections::BTreeMap;
use std::time::Duration;

use sr_proto::sync_config::SourceConfig;

use super::config::Scheduling;

/// The discovery interval of a source: its own, else the default, never
/// below the minimum.
pub fn interval(source: &SourceConfig, scheduling: &Scheduling) -> Duration {
    source
        .discovery_interval
        .or(source.poll_interval)
        .unwrap_or(scheduling.default_interval)
        .max(scheduling.min_interval)
}

/// `interval` spread by up to ±`jitter_percent`, using `unit` ∈ [0, 1) as the
/// random draw (so the decision stays testable).
pub fn jittered(interval: Duration, jitter_percent: u32, unit: f64) -> Duration {
    let spread = interval.as_secs_f64() * f64::from(jitter_percent.min(50)) / 100.0;
    let offset = (unit.clamp(0.0, 1.0) * 2.0 - 1.0) * spread;
    Duration::from_secs_f64((interval.as_secs_f64() + offset).max(0.0))
}

/// How long a source added or changed by a config update waits before its
/// first run, using `unit` ∈ [0, 1) as the random draw. A lone source, and
/// every source of a `--once` pass, starts at once (the concurrency caps
/// already bound how many run together); a batch is spread over up to
/// `START_SPREAD` so its first calls do not all leave in the same instant.
pub fn first_run_delay(batch: usize, once: bool, unit: f64) -> Duration {
    if once || batch <= 1 {
        return Duration::ZERO;
    }
    START_SPREAD.mul_f64(unit.clamp(0.0, 1.0))
}

/// The spread of a batch of sources' first runs.
const START_SPREAD: Duration = Duration::from_millis(500);

/// Delay before retrying after `consecutive_failures` failed runs (≥ 1):
/// exponential from `initial`, capped at `max`, and never shorter than the
/// source's own `retry_after` when it asked for one.
pub fn backoff(
    consecutive_failures: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(20);
    let delay = initial.saturating_mul(1u32 << exponent).min(max);
    retry_after.map_or(delay, |r| delay.max(r))
}

/// What a new config means for the schedule.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SourceChanges {
    /// Sources to start.
    pub added: Vec<String>,
    /// Sources to stop (a run in flight finishes).
    pub removed: Vec<String>,
    /// Sources whose config changed: restart their schedule.
    pub changed: Vec<String>,
}

/// Compares two source sets by key and content.
pub fn diff_sources(
    old: &BTreeMap<String, SourceConfig>,
    new: &BTreeMap<String, SourceConfig>,
) -> SourceChanges {
    let mut changes = SourceChanges::default();
    for (key, source) in new {
        match old.get(key) {
            None => changes.added.push(key.clone()),
            Some(previous) if previous != source => changes.changed.push(key.clone()),
            Some(_) => {}
        }
    }
    changes.removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    changes
}

/// Clamps a server-provided config poll interval (30 s – 24 h, default 300 s).
pub fn config_poll_interval(server_secs: i32) -> Duration {
    clamp_secs(server_secs, 300, 30, 24 * 3600)
}

/// Clamps a server-provided heartbeat interval (10 s – 10 min, default 30 s).
pub fn heartbeat_interval(server_secs: i32) -> Duration {
    clamp_secs(server_secs, 30, 10, 600)
}

fn clamp_secs(value: i32, default: u64, min: u64, max: u64) -> Duration {
    let secs = if value <= 0 {
        default
    } else {
        (value as u64).clamp(min, max)
    };
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduling() -> Scheduling {
        Scheduling {
            max_concurrent_runs: 4,
            max_runs_per_tenant: 2,
            default_interval: Duration::from_secs(3600),
            min_interval: Duration::from_secs(10),
            jitter_percent: 10,
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
        }
    }

    fn source(name: &str, interval: Option<u64>) -> SourceConfig {
        SourceConfig {
            id: name.into(),
            name: name.into(),
            source_type: "faker".into(),
            endpoint: String::new(),
            credentials: Default::default(),
            queries: vec![],
            poll_interval: None,
            discovery_interval: interval.map(Duration::from_secs),
            sweep_interval: None,
            agent_id: String::new(),
            partition: "default".into(),
            network_blacklist: vec![],
            page_size: None,
            tenant_id: "t".into(),
            tenant_slug: "acme".into(),
            sync_service_id: "s".into(),
            adapter: None,
            settings: Default::default(),
        }
    }

    #[test]
    fn source_interval_overrides_the_default_within_bounds() {
        assert_eq!(
            interval(&source("a", Some(600)), &scheduling()),
            Duration::from_secs(600)
        );
        assert_eq!(
            interval(&source("a", None), &scheduling()),
            Duration::from_secs(3600)
        );
        assert_eq!(
            interval(&source("a", Some(1)), &scheduling()),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_lone_source_or_a_once_pass_starts_at_once_and_a_batch_is_spread() {
        assert_eq!(first_run_delay(1, false, 0.9), Duration::ZERO);
        assert_eq!(first_run_delay(0, false, 0.9), Duration::ZERO);
        assert_eq!(first_run_delay(20, true, 0.9), Duration::ZERO);
        assert_eq!(first_run_delay(20, false, 0.5), START_SPREAD / 2);
        assert!(first_run_delay(20, false, 0.999) <= START_SPREAD);
    }

    #[test]
    fn jitter_stays_within_the_spread() {
        let base = Duration::from_secs(100);
        assert_eq!(jittered(base, 10, 0.0), Duration::from_secs(90));
        assert_eq!(jittered(base, 10, 0.5), Duration::from_secs(100));
        assert!(jittered(base, 10, 0.999) <= Duration::from_secs(110));
        assert_eq!(jittered(base, 0, 0.9), base);
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let (i, m) = (Duration::from_secs(30), Duration::from_secs(1800));
        assert_eq!(backoff(1, i, m, None), Duration::from_secs(30));
        assert_eq!(backoff(2, i, m, None), Duration::from_secs(60));
        assert_eq!(backoff(4, i, m, None), Duration::from_secs(240));
        assert_eq!(backoff(30, i, m, None), m);
        assert_eq!(
            backoff(1, i, m, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn diff_finds_added_removed_and_changed() {
        let old = BTreeMap::from([
            ("keep".to_string(), source("keep", Some(60))),
            ("change".to_string(), source("change", Some(60))),
            ("drop".to_string(), source("drop", Some(60))),
        ]);
        let new = BTreeMap::from([
            ("keep".to_string(), source("keep", Some(60))),
            ("change".to_string(), source("change", Some(120))),
            ("add".to_string(), source("add", Some(60))),
        ]);
        let changes = diff_sources(&old, &new);
        assert_eq!(changes.added, vec!["add"]);
        assert_eq!(changes.removed, vec!["drop"]);
        assert_eq!(changes.changed, vec!["change"]);
    }

    #[test]
    fn server_intervals_are_clamped() {
        assert_eq!(config_poll_interval(0), Duration::from_secs(300));
        assert_eq!(config_poll_interval(5), Duration::from_secs(30));
        assert_eq!(config_poll_interval(i32::MAX), Duration::from_secs(86_400));
        assert_eq!(heartbeat_interval(-1), Duration::from_secs(30));
        assert_eq!(heartbeat_interval(1), Duration::from_secs(10));
        assert_eq!(heartbeat_interval(3600), Duration::from_secs(600));
    }
}
