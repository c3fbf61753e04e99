//! The adapter conformance kit behind `sr-sync adapter check`: runs an
//! adapter against its source (a mock or a real URL) through the same
//! sandbox as production and reports pass, fail or skip per check.
//!
//! | check | passes when |
//! |---|---|
//! | `describe` | the description loaded (name, semver, source type, hosts valid), the summary is not empty, and the config schema is a JSON object schema (`"type": "object"` or `properties`) |
//! | `validate` | `validate(config)` succeeds |
//! | `bad-credentials` | `validate` with every `credentials` value replaced by [`INVALID_CREDENTIAL`] fails with `unauthorized` (skipped without credentials) |
//! | `full-discover` | discover without a cursor (run 0) succeeds, reports `complete: true` and the device count the host received, emits at least one device, every device normalises without the host dropping or fixing anything, every DeviceUpdate satisfies [`update_problems`], no source id repeats, the cursor fits 64 KiB |
//! | `incremental` | discover from the full run's cursor (run 1) succeeds, reports `complete: false`, and emits only devices that are new or differ from the full run — against an unchanged source, none (skipped when the adapter returns no cursor) |
//! | `future-cursor` | discover from the full run's cursor with every RFC 3339 timestamp in it moved to [`FUTURE_TIMESTAMP`] (run 2) succeeds with no device and `complete: false` (skipped without a cursor or a timestamp in it) |
//! | `egress` | no discover run had a request refused by the egress policy (which allows only the endpoint's host and the adapter's declared hosts) |
//! | `memory` | discover without a cursor (run 3) under a [`CheckOptions::memory_mb`] linear-memory cap (64 MiB by default) succeeds with the same device count |
//!
//! The kit cannot know an adapter's cursor format, so the "future" cursor
//! is a convention: cursors that carry time as RFC 3339 text get every
//! timestamp moved to 2100. Adapters with other cursor formats see the
//! check skipped, with the reason.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use sr_proto::DeviceUpdate;
use sr_proto::device_update::keys;
use tokio::sync::mpsc;

use crate::adapter::{AdapterDescription, LoadedAdapter};
use crate::egress::policy::endpoint_host;
use crate::egress::{AddressPermissions, EgressPolicy, HostPattern};
use crate::normalize::{NormalizeContext, NormalizeStats, normalize};
use crate::sandbox::{
    AdapterFailure, Device, DiscoverInput, DiscoverOutcome, LimitHit, MAX_CURSOR_BYTES, RunError,
    RunEvent, RunLabel, RunLimits, RunSettings, Sandbox,
};

/// What `bad-credentials` puts in place of every credential.
pub const INVALID_CREDENTIAL: &str = "sr-sync-check-invalid-credential";

/// Where `future-cursor` moves every timestamp of the cursor.
pub const FUTURE_TIMESTAMP: &str = "2100-01-01T00:00:00";

/// Linear-memory cap of the `memory` check by default, MiB.
pub const DEFAULT_MEMORY_MB: u64 = 64;

/// The checks, in the order they run and are reported.
pub const CHECKS: [&str; 8] = [
    "describe",
    "validate",
    "bad-credentials",
    "full-discover",
    "incremental",
    "future-cursor",
    "egress",
    "memory",
];

/// How the kit runs the adapter.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Address classes the runs may reach (loopback for local mocks).
    pub permissions: AddressPermissions,
    /// Linear-memory cap of the `memory` check, MiB.
    pub memory_mb: u64,
    /// Limits of every other run.
    pub limits: RunLimits,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            permissions: AddressPermissions::default(),
            memory_mb: DEFAULT_MEMORY_MB,
            limits: RunLimits::default(),
        }
    }
}

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The adapter did what the contract asks.
    Pass,
    /// It did not; the detail says how.
    Fail,
    /// The check does not apply; the detail says why.
    Skip,
}

impl Outcome {
    /// `pass`, `FAIL` or `skip`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check's name (one of [`CHECKS`]).
    pub name: &'static str,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// What was seen: counts on a pass, the cause on a failure, the reason
    /// for a skip.
    pub detail: String,
}

/// The results of a check run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `name@version`.
    pub adapter: String,
    /// Component digest.
    pub digest: String,
    /// The configuration's `endpoint` (empty for generators).
    pub endpoint: String,
    /// One result per check, in [`CHECKS`] order.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&CheckResult> {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .collect()
    }

    /// The result of check `name`.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

fn pass(name: &'static str, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        name,
        outcome: Outcome::Pass,
        detail: detail.into(),
    }
}

fn fail(name: &'static str, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        name,
        outcome: Outcome::Fail,
        detail: detail.into(),
    }
}

fn skip(name: &'static str, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        name,
        outcome: Outcome::Skip,
        detail: detail.into(),
    }
}

/// Checks a description beyond what loading already enforced; `Ok` is the
/// pass detail.
pub fn describe_problems(description: &AdapterDescription) -> Result<String, String> {
    if description.summary.trim().is_empty() {
        return Err("the summary is empty: say in one line what the adapter reads".into());
    }
    let schema = &description.config_schema;
    let declares_object = schema.get("type").and_then(|t| t.as_str()) == Some("object");
    let properties = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.len());
    if !declares_object && properties.is_none() {
        return Err(
            "the config schema does not describe an object (no \"type\": \"object\" and no \"properties\")"
                .into(),
        );
    }
    let hosts = if description.hosts.is_empty() {
        "no hosts beyond the endpoint".to_string()
    } else {
        format!("hosts {}", description.hosts.join(", "))
    };
    Ok(format!(
        "{}@{} serves `{}`; config schema with {} properties; {hosts}",
        description.name,
        description.version,
        description.source_type,
        properties.unwrap_or(0)
    ))
}

/// The configuration with every credential replaced by
/// [`INVALID_CREDENTIAL`]; `None` when it has no credentials.
pub fn with_bad_credentials(config: &serde_json::Value) -> Option<serde_json::Value> {
    let credentials = config.get("credentials")?.as_object()?;
    if credentials.is_empty() {
        return None;
    }
    let mut bad = config.clone();
    let replaced: serde_json::Map<String, serde_json::Value> = credentials
        .keys()
        .map(|k| (k.clone(), serde_json::Value::from(INVALID_CREDENTIAL)))
        .collect();
    bad["credentials"] = serde_json::Value::Object(replaced);
    Some(bad)
}

/// Whether `bytes[i..]` starts an RFC 3339 date-time; `(end, has_zone)`.
fn timestamp_at(bytes: &[u8], i: usize) -> Option<(usize, bool)> {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    let digits_ok = |at: usize, pattern: &[u8]| {
        pattern.iter().enumerate().all(|(k, p)| {
            let b = bytes.get(at + k).copied();
            match p {
                b'd' => b.is_some_and(|b| b.is_ascii_digit()),
                b'T' => matches!(b, Some(b'T' | b't' | b' ')),
                other => b == Some(*other),
            }
        })
    };
    if !digits_ok(i, shape) {
        return None;
    }
    let mut end = i + shape.len();
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    match bytes.get(end) {
        Some(b'Z' | b'z') => Some((end + 1, true)),
        Some(b'+' | b'-') if digits_ok(end + 1, b"dd:dd") => Some((end + 6, true)),
        Some(b'+' | b'-') if digits_ok(end + 1, b"dddd") => Some((end + 5, true)),
        _ => Some((end, false)),
    }
}

/// The cursor with every RFC 3339 timestamp moved to [`FUTURE_TIMESTAMP`]
/// (a zone written as `Z`); `None` when it has no timestamp.
pub fn future_cursor(cursor: &str) -> Option<String> {
    let bytes = cursor.as_bytes();
    let mut out = String::with_capacity(cursor.len());
    let mut copied = 0;
    let mut found = false;
    let mut i = 0;
    while i < bytes.len() {
        if let Some((end, zone)) = timestamp_at(bytes, i) {
            out.push_str(&cursor[copied..i]);
            out.push_str(FUTURE_TIMESTAMP);
            if zone {
                out.push('Z');
            }
            copied = end;
            i = end;
            found = true;
        } else {
            i += 1;
        }
    }
    out.push_str(&cursor[copied..]);
    found.then_some(out)
}

fn is_normal_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        })
}

/// What is wrong with a DeviceUpdate of an adapter with `source_type`:
/// the invariants every update the host delivers must hold.
pub fn update_problems(
    update: &DeviceUpdate,
    source_type: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let id = update
        .metadata
        .get(keys::INTEGRATION_ID)
        .cloned()
        .unwrap_or_default();
    if id.trim().is_empty() {
        problems.push("metadata.integration_id is empty".to_string());
    }
    if update.ip.parse::<IpAddr>().is_err() {
        problems.push(format!("ip {:?} is not an IP address", update.ip));
    }
    if update.source != source_type {
        problems.push(format!(
            "source {:?} is not the adapter's source type {source_type:?}",
            update.source
        ));
    }
    if update
        .metadata
        .get(keys::INTEGRATION_TYPE)
        .map(String::as_str)
        != Some(source_type)
    {
        problems.push("metadata.integration_type is not the source type".to_string());
    }
    let all_ips = update
        .metadata
        .get(keys::ALL_IPS)
        .map(String::as_str)
        .unwrap_or("");
    if all_ips.split(',').next() != Some(update.ip.as_str()) {
        problems.push(format!(
            "metadata.all_ips {all_ips:?} does not start with the primary IP"
        ));
    }
    if let Some(mac) = &update.mac
        && !is_normal_mac(mac)
    {
        problems.push(format!("mac {mac:?} is not upper-case colon form"));
    }
    if update
        .hostname
        .as_ref()
        .is_some_and(|h| h.trim().is_empty() || h.trim() != h)
    {
        problems.push("hostname is blank or padded".to_string());
    }
    if update.partition.trim().is_empty() {
        problems.push("partition is empty".to_string());
    }
    if !(1..=10).contains(&update.confidence) {
        problems.push(format!("confidence {} is outside 1-10", update.confidence));
    }
    if !update.device_id.is_empty() && !update.device_id.starts_with("sr:") {
        problems.push(format!(
            "device_id {:?} is neither empty nor sr:",
            update.device_id
        ));
    }
    if update.timestamp > now + chrono::Duration::days(1) {
        problems.push(format!(
            "observed at {} (last-seen more than a day in the future)",
            update.timestamp.to_rfc3339()
        ));
    }
    if update.metadata.keys().any(|k| k.trim().is_empty()) {
        problems.push("a metadata key is empty".to_string());
    }
    problems
        .into_iter()
        .map(|p| format!("device {id}: {p}"))
        .collect()
}

/// A hash of everything an adapter emitted for one device: equal hashes
/// mean an unchanged device.
pub fn device_fingerprint(device: &Device) -> u64 {
    let mut hasher = DefaultHasher::new();
    device.source_id.hash(&mut hasher);
    device.ips.hash(&mut hasher);
    device.macs.hash(&mut hasher);
    device.hostname.hash(&mut hasher);
    device.device_type.hash(&mut hasher);
    device.manufacturer.hash(&mut hasher);
    device.model.hash(&mut hasher);
    device.os.hash(&mut hasher);
    device.serial.hash(&mut hasher);
    device.tags.hash(&mut hasher);
    device.first_seen.hash(&mut hasher);
    device.last_seen.hash(&mut hasher);
    device.attributes.hash(&mut hasher);
    device.raw.hash(&mut hasher);
    hasher.finish()
}

/// What one discover run produced, as the checks need it.
struct Discovered {
    outcome: Result<DiscoverOutcome, RunError>,
    /// Source id → fingerprint, and how often each id came.
    fingerprints: HashMap<String, (u64, u32)>,
    stats: NormalizeStats,
    problems: Vec<String>,
}

impl Discovered {
    fn emitted(&self) -> u64 {
        self.fingerprints.values().map(|(_, n)| u64::from(*n)).sum()
    }
}

/// The kit's view of one adapter and configuration.
struct Kit<'a> {
    sandbox: &'a Sandbox,
    adapter: &'a LoadedAdapter,
    config: &'a serde_json::Value,
    options: &'a CheckOptions,
    egress: Arc<EgressPolicy>,
}

impl Kit<'_> {
    fn settings(&self, run: &str, limits: RunLimits) -> RunSettings {
        RunSettings {
            label: RunLabel {
                run_id: format!("check-{run}"),
                ..RunLabel::default()
            },
            limits,
            egress: self.egress.clone(),
        }
    }

    async fn validate(&self, config: &serde_json::Value) -> Result<(), RunError> {
        let settings = self.settings("validate", self.options.limits);
        self.sandbox
            .validate(self.adapter, &config.to_string(), &settings)
            .await
    }

    async fn discover(
        &self,
        name: &str,
        cursor: Option<String>,
        run_number: u64,
        limits: RunLimits,
    ) -> Discovered {
        let settings = self.settings(name, limits);
        let ctx = NormalizeContext {
            source_type: self.adapter.description().source_type.clone(),
            partition: "default".to_string(),
            now: chrono::Utc::now(),
            ..NormalizeContext::default()
        };
        let (tx, mut rx) = mpsc::channel::<RunEvent>(crate::local_run::EVENT_BUFFER);
        let input = DiscoverInput {
            config: self.config.to_string(),
            cursor,
            run_id: settings.label.run_id.clone(),
            run_number,
        };
        let run = self.sandbox.discover(self.adapter, input, &settings, tx);
        let collect = async {
            let mut fingerprints: HashMap<String, (u64, u32)> = HashMap::new();
            let mut stats = NormalizeStats::default();
            let mut problems = Vec::new();
            while let Some(event) = rx.recv().await {
                let RunEvent::Devices(devices) = event else {
                    continue;
                };
                for device in devices {
                    let fingerprint = device_fingerprint(&device);
                    let entry = fingerprints
                        .entry(device.source_id.trim().to_string())
                        .or_insert((fingerprint, 0));
                    entry.0 = fingerprint;
                    entry.1 += 1;
                    if let Some(update) = normalize(device, &ctx, &mut stats)
                        && problems.len() < 5
                    {
                        problems.extend(update_problems(&update, &ctx.source_type, ctx.now));
                    }
                }
            }
            (fingerprints, stats, problems)
        };
        let (outcome, (fingerprints, stats, problems)) = tokio::join!(run, collect);
        Discovered {
            outcome,
            fingerprints,
            stats,
            problems,
        }
    }
}

fn failure_text(error: &RunError) -> String {
    error.to_string()
}

/// Whether a failed run failed because egress was refused.
fn egress_refused(error: &RunError) -> bool {
    match error.adapter_failure() {
        Some(AdapterFailure::InvalidConfig(m)) | Some(AdapterFailure::Unavailable(m)) => {
            m.contains("egress policy") || m.contains("request denied")
        }
        _ => false,
    }
}

fn normalization_warnings(stats: &NormalizeStats) -> Vec<String> {
    let counts = [
        (stats.dropped_no_source_id, "devices without a source id"),
        (stats.dropped_no_ip, "devices without a valid IP"),
        (stats.invalid_ips, "invalid IPs"),
        (stats.invalid_macs, "invalid MACs"),
        (stats.invalid_timestamps, "last-seen values not in RFC 3339"),
        (stats.dropped_attributes, "empty or oversized attributes"),
        (stats.invalid_raw, "raw records that are not JSON"),
    ];
    counts
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect()
}

fn full_discover_result(run: &Discovered) -> CheckResult {
    const NAME: &str = "full-discover";
    let outcome = match &run.outcome {
        Ok(outcome) => outcome,
        Err(error) => return fail(NAME, failure_text(error)),
    };
    if !outcome.complete {
        return fail(
            NAME,
            "a run without a cursor reported complete: false; a full inventory must say complete: true",
        );
    }
    if outcome.reported_devices != outcome.emitted_devices {
        return fail(
            NAME,
            format!(
                "the summary says {} devices but the host received {}",
                outcome.reported_devices, outcome.emitted_devices
            ),
        );
    }
    if outcome.emitted_devices == 0 {
        return fail(
            NAME,
            "no devices emitted: point the check at a source that has devices",
        );
    }
    let warnings = normalization_warnings(&run.stats);
    if !warnings.is_empty() {
        return fail(
            NAME,
            format!(
                "the host had to drop or fix data: {}; emit only what is valid",
                warnings.join(", ")
            ),
        );
    }
    if let Some(problem) = run.problems.first() {
        return fail(NAME, problem.clone());
    }
    let mut repeated: Vec<&String> = run
        .fingerprints
        .iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|(id, _)| id)
        .collect();
    if !repeated.is_empty() {
        repeated.sort();
        return fail(
            NAME,
            format!(
                "{} source ids were emitted more than once in one run (e.g. {}); merge them before emitting",
                repeated.len(),
                repeated[0]
            ),
        );
    }
    if let Some(cursor) = &outcome.cursor
        && cursor.len() > MAX_CURSOR_BYTES
    {
        return fail(
            NAME,
            format!("the cursor is {} bytes, over 64 KiB", cursor.len()),
        );
    }
    pass(
        NAME,
        format!(
            "{} devices, complete, {} cursor, {} requests",
            outcome.emitted_devices,
            if outcome.cursor.is_some() {
                "with a"
            } else {
                "no"
            },
            outcome.egress_requests
        ),
    )
}

fn incremental_result(full: &Discovered, run: &Discovered) -> CheckResult {
    const NAME: &str = "incremental";
    let outcome = match &run.outcome {
        Ok(outcome) => outcome,
        Err(error) => return fail(NAME, failure_text(error)),
    };
    if outcome.complete {
        return fail(
            NAME,
            "a run from a cursor reported complete: true; it must emit only changes and say complete: false",
        );
    }
    let mut unchanged: Vec<&String> = Vec::new();
    let mut new = 0;
    let mut changed = 0;
    for (id, (fingerprint, _)) in &run.fingerprints {
        match full.fingerprints.get(id) {
            None => new += 1,
            Some((before, _)) if before == fingerprint => unchanged.push(id),
            Some(_) => changed += 1,
        }
    }
    if !unchanged.is_empty() {
        unchanged.sort();
        return fail(
            NAME,
            format!(
                "{} devices re-emitted unchanged since the full run (e.g. {}); an incremental run emits only changes",
                unchanged.len(),
                unchanged[0]
            ),
        );
    }
    pass(
        NAME,
        if new + changed == 0 {
            "0 devices: nothing changed at the source since the full run".to_string()
        } else {
            format!("{new} new and {changed} changed devices, nothing unchanged")
        },
    )
}

fn future_result(run: &Discovered) -> CheckResult {
    const NAME: &str = "future-cursor";
    let outcome = match &run.outcome {
        Ok(outcome) => outcome,
        Err(error) => return fail(NAME, failure_text(error)),
    };
    if outcome.emitted_devices > 0 {
        return fail(
            NAME,
            format!(
                "{} devices emitted from a cursor dated {FUTURE_TIMESTAMP}; nothing can have changed after it",
                outcome.emitted_devices
            ),
        );
    }
    if outcome.complete {
        return fail(NAME, "a run from a cursor reported complete: true");
    }
    pass(
        NAME,
        format!("0 devices from a cursor dated {FUTURE_TIMESTAMP}"),
    )
}

fn memory_result(full: &Discovered, run: &Discovered, memory_mb: u64) -> CheckResult {
    const NAME: &str = "memory";
    match &run.outcome {
        Ok(outcome) if full.outcome.is_ok() && outcome.emitted_devices != full.emitted() => fail(
            NAME,
            format!(
                "{} devices under the {memory_mb} MiB cap, {} without it",
                outcome.emitted_devices,
                full.emitted()
            ),
        ),
        Ok(outcome) => pass(
            NAME,
            format!(
                "{} devices within a {memory_mb} MiB memory cap",
                outcome.emitted_devices
            ),
        ),
        Err(RunError::Limit {
            hit: hit @ LimitHit::Memory { .. },
            ..
        }) => fail(
            NAME,
            format!("{hit}; memory must stay bounded by the page size, not the source"),
        ),
        Err(error) => fail(NAME, failure_text(error)),
    }
}

fn egress_result(runs: &[&Discovered], policy: &EgressPolicy) -> CheckResult {
    const NAME: &str = "egress";
    let mut requests = 0;
    let mut denials = 0;
    for run in runs {
        match &run.outcome {
            Ok(outcome) => {
                requests += outcome.egress_requests;
                denials += outcome.egress_denials;
            }
            Err(error) if egress_refused(error) => denials += 1,
            Err(_) => {}
        }
    }
    let allowed: Vec<String> = policy
        .allowed_hosts()
        .iter()
        .map(ToString::to_string)
        .collect();
    let allowed = if allowed.is_empty() {
        "none".to_string()
    } else {
        allowed.join(", ")
    };
    if denials > 0 {
        return fail(
            NAME,
            format!(
                "{denials} requests refused by the egress policy (allowed: {allowed}); declare every host the adapter needs in describe().hosts"
            ),
        );
    }
    pass(
        NAME,
        format!(
            "{requests} requests in {} runs, none refused (allowed: {allowed})",
            runs.len()
        ),
    )
}

/// The egress policy of the checks: the endpoint's host and the adapter's
/// declared hosts.
pub fn check_policy(
    adapter: &LoadedAdapter,
    config: &serde_json::Value,
    permissions: &AddressPermissions,
) -> EgressPolicy {
    let mut hosts: Vec<HostPattern> = adapter
        .description()
        .hosts
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
    EgressPolicy::new(hosts, permissions.clone())
}

/// Runs every check of [`CHECKS`] against `adapter` with `config`.
pub async fn check(
    sandbox: &Sandbox,
    adapter: &LoadedAdapter,
    config: &serde_json::Value,
    options: &CheckOptions,
) -> Report {
    let egress = Arc::new(check_policy(adapter, config, &options.permissions));
    let kit = Kit {
        sandbox,
        adapter,
        config,
        options,
        egress: egress.clone(),
    };
    let mut checks = Vec::with_capacity(CHECKS.len());

    checks.push(match describe_problems(adapter.description()) {
        Ok(detail) => pass("describe", detail),
        Err(problem) => fail("describe", problem),
    });

    checks.push(match kit.validate(config).await {
        Ok(()) => pass(
            "validate",
            "the configuration and its credentials were accepted",
        ),
        Err(error) => fail("validate", failure_text(&error)),
    });

    checks.push(match with_bad_credentials(config) {
        None => skip("bad-credentials", "the configuration has no credentials"),
        Some(bad) => match kit.validate(&bad).await {
            Ok(()) => fail(
                "bad-credentials",
                format!("validate accepted credentials replaced by {INVALID_CREDENTIAL:?}; check them with one authenticated request"),
            ),
            Err(error) => match error.adapter_failure() {
                Some(AdapterFailure::Unauthorized(_)) => {
                    pass("bad-credentials", "refused as unauthorized")
                }
                Some(other) => fail(
                    "bad-credentials",
                    format!("expected unauthorized, got {}: {other}", other.kind()),
                ),
                None => fail("bad-credentials", failure_text(&error)),
            },
        },
    });

    let full = kit.discover("full", None, 0, options.limits).await;
    checks.push(full_discover_result(&full));
    let cursor = full.outcome.as_ref().ok().and_then(|o| o.cursor.clone());

    let incremental = match &cursor {
        None => None,
        Some(cursor) => Some(
            kit.discover("incremental", Some(cursor.clone()), 1, options.limits)
                .await,
        ),
    };
    checks.push(match (&full.outcome, &incremental) {
        (Err(_), _) => skip("incremental", "needs a successful full-discover"),
        (Ok(_), None) => skip(
            "incremental",
            "the adapter returned no cursor: every run is a full inventory",
        ),
        (Ok(_), Some(run)) => incremental_result(&full, run),
    });

    let future = match cursor.as_deref().and_then(future_cursor) {
        None => None,
        Some(cursor) => Some(
            kit.discover("future", Some(cursor), 2, options.limits)
                .await,
        ),
    };
    checks.push(match (&cursor, &future) {
        (None, _) if full.outcome.is_err() => {
            skip("future-cursor", "needs a successful full-discover")
        }
        (None, _) => skip("future-cursor", "the adapter returned no cursor"),
        (Some(_), None) => skip(
            "future-cursor",
            "the cursor has no RFC 3339 timestamp to move into the future",
        ),
        (Some(_), Some(run)) => future_result(run),
    });

    let memory_limits = RunLimits {
        memory_mb: options.memory_mb,
        ..options.limits
    };
    let memory = kit.discover("memory", None, 3, memory_limits).await;

    let mut runs: Vec<&Discovered> = vec![&full];
    runs.extend(incremental.as_ref());
    runs.extend(future.as_ref());
    runs.push(&memory);
    checks.push(egress_result(&runs, &egress));
    checks.push(memory_result(&full, &memory, options.memory_mb));

    Report {
        adapter: adapter.label(),
        digest: adapter.digest().to_string(),
        endpoint: config
            .get("endpoint")
            .and_then(|e| e.as_str())
            .unwrap_or_default()
            .to_string(),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn future_cursor_moves_every_timestamp() {
        assert_eq!(
            future_cursor(r#"{"v":1,"watermark":{"at":"2025-01-01T00:00:05Z","ids":["1"]}}"#)
                .as_deref(),
            Some(r#"{"v":1,"watermark":{"at":"2100-01-01T00:00:00Z","ids":["1"]}}"#)
        );
        assert_eq!(
            future_cursor("since=2025-01-01T00:00:05.123456+02:00;until=2025-02-01 10:00:00")
                .as_deref(),
            Some("since=2100-01-01T00:00:00Z;until=2100-01-01T00:00:00")
        );
        assert_eq!(future_cursor("page-17"), None);
        assert_eq!(future_cursor("2025-01-01"), None);
        assert_eq!(future_cursor(""), None);
    }

    #[test]
    fn bad_credentials_replace_every_value() {
        let config = serde_json::json!({"endpoint": "x", "credentials": {"token": "t", "port": 1}});
        let bad = with_bad_credentials(&config).unwrap();
        assert_eq!(bad["credentials"]["token"], INVALID_CREDENTIAL);
        assert_eq!(bad["credentials"]["port"], INVALID_CREDENTIAL);
        assert_eq!(bad["endpoint"], "x");
        assert!(with_bad_credentials(&serde_json::json!({"settings": {}})).is_none());
        assert!(with_bad_credentials(&serde_json::json!({"credentials": {}})).is_none());
    }

    fn update() -> DeviceUpdate {
        DeviceUpdate {
            device_id: String::new(),
            ip: "10.0.0.1".into(),
            source: "armis".into(),
            agent_id: String::new(),
            gateway_id: String::new(),
            partition: "default".into(),
            timestamp: chrono::Utc::now(),
            hostname: Some("h".into()),
            mac: Some("AA:BB:CC:DD:EE:FF".into()),
            metadata: BTreeMap::from([
                (keys::INTEGRATION_TYPE.to_string(), "armis".to_string()),
                (keys::INTEGRATION_ID.to_string(), "17".to_string()),
                (keys::ALL_IPS.to_string(), "10.0.0.1,10.0.0.2".to_string()),
            ]),
            is_available: true,
            confidence: 7,
            sync_meta: None,
            raw_data: None,
        }
    }

    #[test]
    fn update_invariants() {
        let now = chrono::Utc::now();
        assert!(update_problems(&update(), "armis", now).is_empty());
        let mut bad = update();
        bad.ip = "not-an-ip".into();
        bad.mac = Some("aa:bb:cc:dd:ee:ff".into());
        bad.confidence = 0;
        bad.timestamp = now + chrono::Duration::days(30);
        let problems = update_problems(&bad, "armis", now);
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems.iter().all(|p| p.starts_with("device 17: ")));
        assert_eq!(update_problems(&update(), "netbox", now).len(), 2);
    }

    #[test]
    fn fingerprints_tell_changed_devices_apart() {
        let device = Device {
            source_id: "1".into(),
            ips: vec!["10.0.0.1".into()],
            macs: vec![],
            hostname: None,
            device_type: None,
            manufacturer: None,
            model: None,
            os: None,
            serial: None,
            tags: vec![],
            first_seen: None,
            last_seen: Some("2025-01-01T00:00:00Z".into()),
            attributes: vec![],
            raw: None,
        };
        let mut moved = device.clone();
        moved.ips = vec!["10.0.0.2".into()];
        assert_eq!(
            device_fingerprint(&device),
            device_fingerprint(&device.clone())
        );
        assert_ne!(device_fingerprint(&device), device_fingerprint(&moved));
    }
}
