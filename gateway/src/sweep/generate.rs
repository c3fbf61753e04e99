//! Sweep generation: one agent's sweep document from the active canonical
//! devices of its tenant assigned to it, the integration sources' sweep
//! settings and the global defaults. Pure: the caller loads the rows.
//!
//! Per device, in order of precedence:
//! - ports: the source data's (`tcp_ports`, else `ports` in metadata), else
//!   the integration's defaults, else the global defaults;
//! - modes: the source data's (`sweep_modes` in metadata), else the
//!   integration query's (by `query_label`), else the integration's, else
//!   the global defaults.
//!
//! Devices without a usable IP, or inside a blacklist, are left out. Of
//! two devices with one IP the smaller device id is kept; a device id seen
//! at two IPs keeps the smaller IP; one device reported twice keeps the
//! smaller copy. Everything skipped or fixed is counted in [`SweepStats`].
//! Targets are ordered by IP (numerically, IPv4 first); the same device
//! set in any order gives a byte-identical document.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;
use sr_proto::device_update::keys;
use sr_proto::sync_config::SourceConfig;
use thiserror::Error;

use super::aggregate::aggregate;
use super::device_metadata::SweepMetadata;
use super::document::{
    DeviceTarget, META_DEVICE_ID, META_HOSTNAME, META_PORTS, SweepDocument, SweepMode,
    content_hash, hash_and_agent_config_json,
};
use super::source_values;

/// Metadata key with ports from the source data (e.g. NetBox).
pub const META_TCP_PORTS: &str = "tcp_ports";
/// Metadata key with modes set by the integration query.
pub const META_SWEEP_MODES: &str = "sweep_modes";

/// One active canonical device assigned to the agent, as loaded from the
/// tenant's `ocsf_devices` (not merged, not deleted).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepDevice {
    /// Canonical `sr:` id (`uid`).
    pub device_id: String,
    /// Primary IP, as stored; validated here.
    pub ip: Option<String>,
    /// Hostname, if known.
    pub hostname: Option<String>,
    /// Partition.
    pub partition: String,
    /// Sources that reported the device (`discovery_sources`).
    pub discovery_sources: Vec<String>,
    /// The integration source record whose settings apply
    /// (`metadata.integration_source_id`).
    pub integration_source_id: Option<String>,
    /// What generation reads from the device's metadata (`metadata`
    /// JSONB): identifiers, `query_label`, and ports / modes from the
    /// source data.
    pub metadata: SweepMetadata,
}

impl SweepDevice {
    /// Builds a device from an `ocsf_devices` row; the integration source
    /// comes from `metadata.integration_source_id`. A metadata value that is
    /// not a JSON object is treated as empty.
    pub fn from_row(
        uid: String,
        ip: Option<String>,
        hostname: Option<String>,
        partition: String,
        discovery_sources: Vec<String>,
        metadata: Value,
    ) -> Self {
        Self::new(
            uid,
            ip,
            hostname,
            partition,
            discovery_sources,
            SweepMetadata::from_value(metadata),
        )
    }

    /// [`Self::from_row`] with the metadata already picked (decoded straight
    /// from the stored JSON).
    pub fn new(
        uid: String,
        ip: Option<String>,
        hostname: Option<String>,
        partition: String,
        discovery_sources: Vec<String>,
        mut metadata: SweepMetadata,
    ) -> Self {
        Self {
            device_id: uid,
            ip,
            hostname,
            partition,
            discovery_sources,
            integration_source_id: metadata.integration_source_id.take(),
            metadata,
        }
    }
}

/// Sweep settings of one integration source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SweepSource {
    /// Integration source record id.
    pub id: String,
    /// Source type (`armis`, `netbox`, `faker`, ...): the targets' `source`.
    pub source_type: String,
    /// Default ports of this integration's devices; empty: global defaults.
    pub ports: Vec<u16>,
    /// Default modes of this integration's devices; empty: global defaults.
    pub sweep_modes: Vec<SweepMode>,
    /// Modes by query label (the queries' `sweep_modes`).
    pub query_sweep_modes: BTreeMap<String, Vec<SweepMode>>,
    /// Devices inside these networks are left out.
    pub network_blacklist: Vec<IpNet>,
    /// How often agents sweep this source's devices.
    pub sweep_interval: Option<Duration>,
}

/// An integration source whose sweep settings are not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct SweepSettingsError {
    /// The offending field, e.g. `network_blacklist[2]`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl SweepSource {
    /// Reads the sweep settings of an integration source config: ports from
    /// `settings.tcp_ports` (else `settings.ports`), modes from
    /// `settings.sweep_modes`, per-query modes, `network_blacklist` (a bare IP
    /// is a host network) and `sweep_interval`. Strict, so the admin API can
    /// refuse bad settings naming the field.
    pub fn from_source_config(source: &SourceConfig) -> Result<Self, SweepSettingsError> {
        let error = |field: String, message: String| SweepSettingsError { field, message };
        let mut ports = Vec::new();
        if let Some((key, value)) = [META_TCP_PORTS, "ports"]
            .iter()
            .find_map(|k| source.settings.get(*k).map(|v| (*k, v)))
        {
            let parsed = source_values::ports(value);
            if let Some(bad) = parsed.rejected.first() {
                return Err(error(
                    format!("settings.{key}"),
                    format!("{bad:?} is not a TCP port (1-65535)"),
                ));
            }
            ports = sorted_unique(parsed.values);
        }
        let mut sweep_modes = Vec::new();
        if let Some(value) = source.settings.get(META_SWEEP_MODES) {
            let parsed = source_values::modes(value);
            if let Some(bad) = parsed.rejected.first() {
                return Err(error(
                    format!("settings.{META_SWEEP_MODES}"),
                    format!("{bad:?} is not a sweep mode ({})", mode_names()),
                ));
            }
            sweep_modes = sorted_unique(parsed.values);
        }
        let mut query_sweep_modes = BTreeMap::new();
        for (i, query) in source.queries.iter().enumerate() {
            let mut modes = Vec::new();
            for (j, text) in query.sweep_modes.iter().enumerate() {
                let mode = SweepMode::parse(text).ok_or_else(|| {
                    error(
                        format!("queries[{i}].sweep_modes[{j}]"),
                        format!("{text:?} is not a sweep mode ({})", mode_names()),
                    )
                })?;
                modes.push(mode);
            }
            if !modes.is_empty() {
                query_sweep_modes.insert(query.label.clone(), sorted_unique(modes));
            }
        }
        let mut network_blacklist = Vec::new();
        for (i, text) in source.network_blacklist.iter().enumerate() {
            let text = text.trim();
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    error(
                        format!("network_blacklist[{i}]"),
                        format!("{text:?} is not a CIDR (e.g. \"10.0.0.0/8\") or an IP"),
                    )
                })?;
            network_blacklist.push(net);
        }
        Ok(Self {
            id: source.id.clone(),
            source_type: source.source_type.clone(),
            ports,
            sweep_modes,
            query_sweep_modes,
            network_blacklist,
            sweep_interval: source.sweep_interval.filter(|d| !d.is_zero()),
        })
    }
}

/// Global sweep defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepDefaults {
    /// Ports of devices whose source and integration set none.
    pub ports: Vec<u16>,
    /// Modes of devices whose source and integration set none.
    pub sweep_modes: Vec<SweepMode>,
    /// Sweep interval when no integration sets one.
    pub interval: Duration,
    /// Probes in flight at once.
    pub concurrency: u32,
    /// Probe timeout.
    pub timeout: Duration,
    /// Networks never swept, whatever the integration.
    pub network_blacklist: Vec<IpNet>,
}

impl Default for SweepDefaults {
    fn default() -> Self {
        Self {
            ports: vec![22, 80, 443, 3306, 5432, 6379, 8080, 8443],
            sweep_modes: vec![SweepMode::Icmp, SweepMode::Tcp],
            interval: Duration::from_secs(300),
            concurrency: 100,
            timeout: Duration::from_secs(3),
            network_blacklist: Vec::new(),
        }
    }
}

/// What generation skipped or fixed, for logs, metrics and the admin
/// preview. Counts do not depend on the input order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepStats {
    /// Devices given.
    pub devices: usize,
    /// Targets in the document.
    pub targets: usize,
    /// Networks in the document.
    pub networks: usize,
    /// Targets with an IPv6 address.
    pub ipv6_targets: usize,
    /// Devices left out: no IP.
    pub missing_ip: usize,
    /// Devices left out: an IP that does not parse or cannot be swept
    /// (unspecified, multicast, broadcast).
    pub invalid_ip: usize,
    /// Devices left out: another device with the same IP was kept.
    pub duplicate_ip: usize,
    /// Devices left out: the same device id appeared with another IP.
    pub duplicate_device: usize,
    /// Devices left out: inside a blacklist.
    pub blacklisted: usize,
    /// Targets without a hostname (kept).
    pub missing_hostname: usize,
    /// Port values in the targets' source data that were dropped (0, above
    /// 65535, not a number).
    pub invalid_ports: usize,
    /// Targets whose source data had ports, none valid: defaults used.
    pub port_fallbacks: usize,
    /// Mode values in the targets' source data that were ignored (unknown).
    pub unknown_modes: usize,
    /// Devices whose integration source has no settings here: global
    /// defaults and blacklist only.
    pub without_source_settings: usize,
}

/// A generated sweep document and what generation skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSweep {
    /// The document, `config_hash` set.
    pub document: SweepDocument,
    /// Counts.
    pub stats: SweepStats,
}

impl GeneratedSweep {
    /// The config version to hand out: the content hash. It changes when,
    /// and only when, the sweep content changes.
    pub fn config_version(&self) -> &str {
        &self.document.config_hash
    }
}

/// A device that passed the address checks, with what ordering needs.
struct Key<'a> {
    ip: IpAddr,
    device: &'a SweepDevice,
    source: Option<&'a Settings<'a>>,
}

impl Key<'_> {
    fn device_id(&self) -> &str {
        self.device.device_id.trim()
    }
}

/// A built target with what the document's totals need.
struct Built<'a> {
    target: DeviceTarget,
    ports: Cow<'a, [u16]>,
    interval: Option<Duration>,
    counts: TargetCounts,
}

/// Source-data problems found while building one target.
#[derive(Default)]
struct TargetCounts {
    invalid_ports: usize,
    port_fallback: bool,
    unknown_modes: usize,
}

/// A source's settings, normalised once per generation (sorted, deduplicated).
struct Settings<'s> {
    source_type: &'s str,
    ports: Vec<u16>,
    ports_text: String,
    modes: Vec<SweepMode>,
    query_modes: BTreeMap<&'s str, Vec<SweepMode>>,
    blacklist: &'s [IpNet],
    interval: Option<Duration>,
}

impl<'s> Settings<'s> {
    fn new(source: &'s SweepSource) -> Self {
        let ports = sorted_unique(source.ports.iter().copied().filter(|&p| p != 0).collect());
        Self {
            source_type: source.source_type.trim(),
            ports_text: join_ports(&ports),
            ports,
            modes: sorted_unique(source.sweep_modes.clone()),
            query_modes: source
                .query_sweep_modes
                .iter()
                .filter(|(_, modes)| !modes.is_empty())
                .map(|(label, modes)| (label.as_str(), sorted_unique(modes.clone())))
                .collect(),
            blacklist: &source.network_blacklist,
            interval: source.sweep_interval.filter(|d| !d.is_zero()),
        }
    }
}

/// The global defaults, normalised.
struct Fallback<'s> {
    ports: Vec<u16>,
    ports_text: String,
    modes: Vec<SweepMode>,
    blacklist: &'s [IpNet],
}

/// Generates the sweep document for one agent. `sources` are the tenant's
/// integration sources (ids are unique; on a repeated id the first wins).
pub fn generate(
    devices: &[SweepDevice],
    sources: &[SweepSource],
    defaults: &SweepDefaults,
) -> GeneratedSweep {
    let (mut document, stats) = document_without_hash(devices, sources, defaults);
    document.config_hash = content_hash(&document);
    GeneratedSweep { document, stats }
}

/// [`generate`], and the agent's `config_json` body
/// ([`SweepDocument::agent_config_json`]) from the same serialisation that
/// gives the hash, for delivery.
pub fn generate_with_config_json(
    devices: &[SweepDevice],
    sources: &[SweepSource],
    defaults: &SweepDefaults,
) -> (GeneratedSweep, Vec<u8>) {
    let (mut document, stats) = document_without_hash(devices, sources, defaults);
    let (hash, config_json) = hash_and_agent_config_json(&document);
    document.config_hash = hash;
    (GeneratedSweep { document, stats }, config_json)
}

/// The document with its `config_hash` left empty, and what was skipped.
fn document_without_hash(
    devices: &[SweepDevice],
    sources: &[SweepSource],
    defaults: &SweepDefaults,
) -> (SweepDocument, SweepStats) {
    let settings: Vec<Settings<'_>> = sources.iter().map(Settings::new).collect();
    let mut by_id: FastMap<&str, &Settings<'_>> = FastMap::default();
    for (source, settings) in sources.iter().zip(&settings) {
        by_id.entry(source.id.as_str()).or_insert(settings);
    }
    let fallback_ports =
        sorted_unique(defaults.ports.iter().copied().filter(|&p| p != 0).collect());
    let fallback = Fallback {
        ports_text: join_ports(&fallback_ports),
        ports: fallback_ports,
        modes: sorted_unique(defaults.sweep_modes.clone()),
        blacklist: &defaults.network_blacklist,
    };
    let mut stats = SweepStats {
        devices: devices.len(),
        ..SweepStats::default()
    };
    // Address checks first, in input order; the targets are then built in
    // output order, so the document is laid out in memory as it is read.
    let mut keys: Vec<Key<'_>> = devices
        .iter()
        .filter_map(|device| key(device, &by_id, &fallback, &mut stats))
        .collect();
    keys.sort_unstable_by(|a, b| {
        a.ip.cmp(&b.ip)
            .then_with(|| a.device_id().cmp(b.device_id()))
    });

    let runs = select(&keys, &mut stats);
    let kept_ips: Vec<IpAddr> = runs.iter().map(|run| run[0].ip).collect();
    let built_targets = build_runs(&runs, &fallback);
    stats.invalid_ports = built_targets.invalid_ports;
    stats.port_fallbacks = built_targets.port_fallbacks;
    stats.unknown_modes = built_targets.unknown_modes;
    stats.ipv6_targets = built_targets.ipv6_targets;
    stats.missing_hostname = built_targets.missing_hostname;
    let targets = built_targets.targets;

    let networks: Vec<String> = aggregate(kept_ips)
        .iter()
        .map(ToString::to_string)
        .collect();
    let interval = built_targets.interval.unwrap_or(defaults.interval);
    let (ports, sweep_modes) = if targets.is_empty() {
        (fallback.ports, fallback.modes)
    } else {
        (built_targets.ports.to_vec(), built_targets.modes.to_vec())
    };
    stats.targets = targets.len();
    stats.networks = networks.len();
    let document = SweepDocument {
        networks,
        ports,
        sweep_modes,
        device_targets: targets,
        interval,
        concurrency: defaults.concurrency,
        timeout: defaults.timeout,
        config_hash: String::new(),
    };
    (document, stats)
}

/// Deduplication over the sorted keys: one run of keys per target (a run
/// longer than one is the same device reported more than once).
fn select<'k, 'a>(keys: &'k [Key<'a>], stats: &mut SweepStats) -> Vec<&'k [Key<'a>]> {
    let mut runs = Vec::with_capacity(keys.len());
    let mut seen_ids: FastSet<&str> = FastSet::default();
    seen_ids.reserve(keys.len());
    let mut last_ip = None;
    let mut i = 0;
    while i < keys.len() {
        let mut end = i + 1;
        while end < keys.len()
            && keys[end].ip == keys[i].ip
            && keys[end].device_id() == keys[i].device_id()
        {
            end += 1;
        }
        let run = &keys[i..end];
        i = end;
        if last_ip == Some(run[0].ip) {
            stats.duplicate_ip += run.len();
            continue;
        }
        let device_id = run[0].device_id();
        if !device_id.is_empty() && !seen_ids.insert(device_id) {
            stats.duplicate_device += run.len();
            continue;
        }
        last_ip = Some(run[0].ip);
        stats.duplicate_ip += run.len() - 1;
        runs.push(run);
    }
    runs
}

/// The targets built, with their totals.
#[derive(Default)]
struct BuiltTargets {
    targets: Vec<DeviceTarget>,
    ports: PortSet,
    modes: ModeSet,
    interval: Option<Duration>,
    invalid_ports: usize,
    port_fallbacks: usize,
    unknown_modes: usize,
    ipv6_targets: usize,
    missing_hostname: usize,
}

fn min_interval(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Builds the targets of `runs`, in order. (Building on several threads
/// was measured slower on a loaded two-core machine, so this stays serial.)
fn build_runs(runs: &[&[Key<'_>]], fallback: &Fallback<'_>) -> BuiltTargets {
    let mut built_targets = BuiltTargets {
        targets: Vec::with_capacity(runs.len()),
        ..BuiltTargets::default()
    };
    for run in runs {
        let built = run.iter().map(|k| build(k, fallback)).min_by(|a, b| {
            a.target
                .cmp(&b.target)
                .then_with(|| a.interval.cmp(&b.interval))
        });
        let Some(built) = built else { continue };
        built_targets.invalid_ports += built.counts.invalid_ports;
        built_targets.port_fallbacks += usize::from(built.counts.port_fallback);
        built_targets.unknown_modes += built.counts.unknown_modes;
        if run[0].ip.is_ipv6() {
            built_targets.ipv6_targets += 1;
        }
        if !built.target.metadata.contains_key(META_HOSTNAME) {
            built_targets.missing_hostname += 1;
        }
        built_targets.ports.extend(&built.ports);
        built_targets.modes.extend(&built.target.sweep_modes);
        built_targets.interval = min_interval(built_targets.interval, built.interval);
        built_targets.targets.push(built.target);
    }
    built_targets
}

/// The address checks: `None` (counted) when the device is left out.
fn key<'a>(
    device: &'a SweepDevice,
    sources: &FastMap<&str, &'a Settings<'a>>,
    fallback: &Fallback<'_>,
    stats: &mut SweepStats,
) -> Option<Key<'a>> {
    let ip = match device.ip.as_deref().map(str::trim) {
        None | Some("") => {
            stats.missing_ip += 1;
            return None;
        }
        Some(text) => match text.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if sweepable(ip) => ip,
            _ => {
                stats.invalid_ip += 1;
                return None;
            }
        },
    };
    let source = device
        .integration_source_id
        .as_deref()
        .and_then(|id| sources.get(id).copied());
    if source.is_none() {
        stats.without_source_settings += 1;
    }
    let blacklisted = fallback
        .blacklist
        .iter()
        .chain(source.map(|s| s.blacklist).unwrap_or_default())
        .any(|net| net.contains(&ip));
    if blacklisted {
        stats.blacklisted += 1;
        return None;
    }
    Some(Key { ip, device, source })
}

/// Builds a device's target by the precedence rules.
fn build<'a>(key: &Key<'a>, fallback: &'a Fallback<'a>) -> Built<'a> {
    let (device, source) = (key.device, key.source);
    let mut counts = TargetCounts::default();
    let meta = &device.metadata;
    let query_label = meta.identifier(keys::QUERY_LABEL).unwrap_or_default();

    let mut parsed_modes = Vec::new();
    if let Some(value) = &meta.sweep_modes {
        let parsed = source_values::modes(value);
        counts.unknown_modes = parsed.rejected.len();
        parsed_modes = sorted_unique(parsed.values);
    }
    let modes = if parsed_modes.is_empty() {
        source
            .and_then(|s| s.query_modes.get(query_label))
            .or(source.map(|s| &s.modes).filter(|m| !m.is_empty()))
            .unwrap_or(&fallback.modes)
            .clone()
    } else {
        parsed_modes
    };

    let mut parsed_ports = Vec::new();
    if let Some(value) = meta.source_ports() {
        let parsed = source_values::ports(value);
        counts.invalid_ports = parsed.rejected.len();
        counts.port_fallback = parsed.values.is_empty() && !parsed.rejected.is_empty();
        parsed_ports = sorted_unique(parsed.values);
    }
    let (ports, ports_text): (Cow<'a, [u16]>, String) = if parsed_ports.is_empty() {
        match source.filter(|s| !s.ports.is_empty()) {
            Some(s) => (Cow::Borrowed(&s.ports), s.ports_text.clone()),
            None => (Cow::Borrowed(&fallback.ports), fallback.ports_text.clone()),
        }
    } else {
        let text = join_ports(&parsed_ports);
        (Cow::Owned(parsed_ports), text)
    };

    let mut metadata: BTreeMap<Cow<'static, str>, String> =
        meta.identifiers.iter().cloned().collect();
    let device_id = key.device_id();
    if !device_id.is_empty() {
        metadata.insert(Cow::Borrowed(META_DEVICE_ID), device_id.to_string());
    }
    if let Some(hostname) = device
        .hostname
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        metadata.insert(Cow::Borrowed(META_HOSTNAME), hostname.to_string());
    }
    metadata.insert(Cow::Borrowed(META_PORTS), ports_text);

    let source_name: Cow<'_, str> = source
        .map(|s| s.source_type)
        .filter(|t| !t.is_empty())
        .map(Cow::Borrowed)
        .or_else(|| meta.identifier(keys::INTEGRATION_TYPE).map(Cow::Borrowed))
        .or_else(|| {
            device
                .discovery_sources
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .min()
                .map(Cow::Borrowed)
        })
        .unwrap_or_default();

    Built {
        target: DeviceTarget {
            network: host_network(key.ip),
            sweep_modes: modes,
            query_label: query_label.to_string(),
            source: source_name.into_owned(),
            metadata,
        },
        ports,
        interval: source.and_then(|s| s.interval),
        counts,
    }
}

/// FNV-1a: device ids and source ids are ours (no untrusted keys), and
/// SipHash costs more than the rest of the lookup.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<Fnv>>;

/// Whether an address can be probed as a host.
fn sweepable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

fn join_ports(ports: &[u16]) -> String {
    let mut out = String::with_capacity(ports.len() * 6);
    for (i, port) in ports.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing into a String cannot fail.
        let _ = write!(out, "{port}");
    }
    out
}

fn host_network(ip: IpAddr) -> String {
    let mut out = String::with_capacity(44);
    let _ = match ip {
        IpAddr::V4(a) => write!(out, "{a}/32"),
        IpAddr::V6(a) => write!(out, "{a}/128"),
    };
    out
}

/// A set of TCP ports as a bitmap: cheap to fill from every target.
struct PortSet(Vec<u64>);

impl Default for PortSet {
    fn default() -> Self {
        Self(vec![0; 1024])
    }
}

impl PortSet {
    fn extend(&mut self, ports: &[u16]) {
        for &port in ports {
            self.0[usize::from(port >> 6)] |= 1 << (port & 63);
        }
    }

    fn to_vec(&self) -> Vec<u16> {
        (0..=u16::MAX)
            .filter(|&p| self.0[usize::from(p >> 6)] & (1 << (p & 63)) != 0)
            .collect()
    }
}

/// A set of sweep modes.
#[derive(Default)]
struct ModeSet([bool; SweepMode::ALL.len()]);

impl ModeSet {
    fn extend(&mut self, modes: &[SweepMode]) {
        for &mode in modes {
            self.0[mode as usize] = true;
        }
    }

    fn to_vec(&self) -> Vec<SweepMode> {
        SweepMode::ALL
            .into_iter()
            .filter(|&mode| self.0[mode as usize])
            .collect()
    }
}

fn sorted_unique<T: Ord>(mut values: Vec<T>) -> Vec<T> {
    values.sort_unstable();
    values.dedup();
    values
}

fn mode_names() -> String {
    SweepMode::ALL.map(SweepMode::as_str).join(", ")
}

#[cfg(test)]
mod tests;
