//! A DeviceUpdate normalised into what DIRE works with: partition, IP, the
//! update's own id claim, strong identifiers, the device fields it sends, its
//! staging key and its fingerprint.
//!
//! Device fields beyond the top-level ones come from metadata keys named like
//! the adapter contract's device record (`device_type`, `manufacturer`,
//! `model`, `os`, `serial`), with the common aliases listed in
//! [`FIELD_KEYS`].

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use sr_proto::DeviceUpdate;
use sr_proto::device_update::{DEFAULT_PARTITION, keys};
use uuid::Uuid;

use super::canonical_id;
use super::device_record::DeviceFields;
use super::identifiers::{self, Identifier};

/// Metadata keys read into device columns, first present non-blank wins.
pub const FIELD_KEYS: FieldKeys = FieldKeys {
    device_type: &["device_type", "type"],
    vendor_name: &["manufacturer", "vendor"],
    model: &["model"],
    os_name: &["os", "operating_system"],
    serial_number: &["serial", "serial_number"],
};

/// See [`FIELD_KEYS`].
#[derive(Debug, Clone, Copy)]
pub struct FieldKeys {
    /// Keys of `device_type`.
    pub device_type: &'static [&'static str],
    /// Keys of `vendor_name`.
    pub vendor_name: &'static [&'static str],
    /// Keys of `model`.
    pub model: &'static [&'static str],
    /// Keys of `os_name`.
    pub os_name: &'static [&'static str],
    /// Keys of `serial_number`.
    pub serial_number: &'static [&'static str],
}

/// Version of DIRE's reconciliation rules, part of every update
/// fingerprint: changing the rules makes every update "new" once.
const RULES_VERSION: &str = "dire-v1";

/// What the update says its device id is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No usable id: DIRE assigns one.
    None,
    /// A canonical `sr:` id (lower-cased); kept unless strong identifiers
    /// resolve elsewhere.
    Sr(String),
    /// A `serviceradar:` service component: kept as is, never resolved.
    Service(String),
}

/// Key of the update's `discovered_devices` row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StagingKey {
    /// `metadata.integration_source_id`.
    pub integration_source_id: Uuid,
    /// The raw `metadata.integration_id`.
    pub source_device_id: String,
}

/// A normalised update, borrowing the update it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<'u> {
    /// The update.
    pub update: &'u DeviceUpdate,
    /// Partition (`default` when blank).
    pub partition: String,
    /// Primary IP in canonical text form.
    pub ip: Option<String>,
    /// The update's own id.
    pub claim: Claim,
    /// Strong identifiers, highest priority first.
    pub identifiers: Vec<Identifier>,
    /// Device columns the update sends.
    pub fields: DeviceFields,
    /// The update's source, trimmed.
    pub source: Option<String>,
    /// Observation time, truncated to PostgreSQL's microseconds so that
    /// re-reading a stored row compares equal.
    pub at: DateTime<Utc>,
    /// Staging key, when the update comes from an integration source.
    pub staging: Option<StagingKey>,
    /// [`fingerprint`] of the update, for staged updates.
    pub fingerprint: Option<String>,
    /// The id DIRE would create for this update if nothing resolves it;
    /// `None` when the update has neither strong identifiers nor an IP.
    pub derived_id: Option<String>,
    /// True when the update names an `integration_source_id` that is not a
    /// UUID (it is reconciled but not staged).
    pub bad_integration_source_id: bool,
}

fn non_blank(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

fn from_keys(update: &DeviceUpdate, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| non_blank(update.metadata.get(*name).map(String::as_str)))
}

/// Canonical text of an IP (IPv6 spellings collapse to one); text that does
/// not parse is kept trimmed.
pub fn normalize_ip(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    Some(match raw.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => raw.to_string(),
    })
}

fn claim(device_id: &str) -> Claim {
    let device_id = device_id.trim();
    if canonical_id::is_service_id(device_id) {
        Claim::Service(device_id.to_string())
    } else if let Some(id) = canonical_id::parse_sr_id(device_id) {
        Claim::Sr(id)
    } else {
        Claim::None
    }
}

fn staging_key(update: &DeviceUpdate) -> (Option<StagingKey>, bool) {
    let metadata = &update.metadata;
    let Some(source_device_id) = non_blank(metadata.get(keys::INTEGRATION_ID).map(String::as_str))
    else {
        return (None, false);
    };
    let Some(raw_source_id) = non_blank(
        metadata
            .get(keys::INTEGRATION_SOURCE_ID)
            .map(String::as_str),
    ) else {
        return (None, false);
    };
    match Uuid::parse_str(&raw_source_id) {
        Ok(integration_source_id) => (
            Some(StagingKey {
                integration_source_id,
                source_device_id,
            }),
            false,
        ),
        Err(_) => (None, true),
    }
}

struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fingerprint of everything in an update that can change what DIRE does
/// with it (all of it but the run bookkeeping in `sync_meta`). An update
/// whose fingerprint equals the one stored with its staging row, for an
/// active device, was already applied: redelivery and unchanged re-syncs
/// skip it without loading anything else.
pub fn fingerprint(update: &DeviceUpdate) -> String {
    let content = (
        RULES_VERSION,
        &update.device_id,
        &update.ip,
        &update.source,
        &update.agent_id,
        &update.gateway_id,
        &update.partition,
        &update.timestamp,
        &update.hostname,
        &update.mac,
        &update.metadata,
        update.is_available,
        update.confidence,
        &update.raw_data,
    );
    let mut writer = HashWriter(Sha256::new());
    // Serialising plain data into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut writer, &content);
    hex::encode(&writer.0.finalize()[..16])
}

/// Normalises one update.
pub fn observe(update: &DeviceUpdate) -> Observation<'_> {
    let ip = normalize_ip(&update.ip);
    let mac = update.mac.as_deref().and_then(|raw| {
        identifiers::normalize_mac(raw)
            .map(|mac| identifiers::colon_mac(&mac))
            .or_else(|| non_blank(Some(raw)).map(|raw| raw.to_ascii_uppercase()))
    });
    let fields = DeviceFields {
        mac,
        hostname: non_blank(update.hostname.as_deref()),
        device_type: from_keys(update, FIELD_KEYS.device_type),
        vendor_name: from_keys(update, FIELD_KEYS.vendor_name),
        model: from_keys(update, FIELD_KEYS.model),
        os_name: from_keys(update, FIELD_KEYS.os_name),
        serial_number: from_keys(update, FIELD_KEYS.serial_number),
        agent_id: non_blank(Some(&update.agent_id)),
        gateway_id: non_blank(Some(&update.gateway_id)),
        is_available: Some(update.is_available),
        confidence: Some(update.confidence),
    };
    let (staging, bad_integration_source_id) = staging_key(update);
    let partition =
        non_blank(Some(&update.partition)).unwrap_or_else(|| DEFAULT_PARTITION.to_string());
    let identifiers = identifiers::extract(update);
    let derived_id = canonical_id::seed(&partition, &identifiers, ip.as_deref().unwrap_or(""))
        .map(|seed| canonical_id::from_seed(&seed));
    Observation {
        update,
        partition,
        claim: claim(&update.device_id),
        identifiers,
        derived_id,
        fields,
        source: non_blank(Some(&update.source)),
        at: update.timestamp.trunc_subsecs(6),
        fingerprint: staging.as_ref().map(|_| fingerprint(update)),
        staging,
        bad_integration_source_id,
        ip,
    }
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl Observation<'_> {
    /// The update's metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.update.metadata
    }

    /// All IPs: `metadata.all_ips`, else the primary IP.
    pub fn all_ips(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(all) = self.update.metadata.get(keys::ALL_IPS) {
            for item in split_list(all) {
                if let Some(ip) = normalize_ip(item) {
                    push_unique(&mut out, ip);
                }
            }
        }
        if out.is_empty()
            && let Some(ip) = &self.ip
        {
            out.push(ip.clone());
        }
        out
    }

    /// All MACs: `metadata.all_macs`, else the primary MAC.
    pub fn all_macs(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(all) = self.update.metadata.get(keys::ALL_MACS) {
            for item in split_list(all) {
                push_unique(&mut out, item.to_ascii_uppercase());
            }
        }
        if out.is_empty()
            && let Some(mac) = &self.fields.mac
        {
            out.push(mac.clone());
        }
        out
    }

    /// The staging row's `source`: `metadata.integration_type`, else the
    /// update's source.
    pub fn staging_source(&self) -> String {
        non_blank(
            self.update
                .metadata
                .get(keys::INTEGRATION_TYPE)
                .map(String::as_str),
        )
        .or_else(|| self.source.clone())
        .unwrap_or_else(|| "integration".to_string())
    }

    /// `sync_meta.sync_run_id`, when present.
    pub fn sync_run_id(&self) -> Option<String> {
        self.update
            .sync_meta
            .as_ref()
            .and_then(|meta| non_blank(Some(&meta.sync_run_id)))
    }
}

#[cfg(test)]
mod tests {
    use sr_proto::SyncMeta;

    use super::*;

    fn update() -> DeviceUpdate {
        DeviceUpdate {
            device_id: String::new(),
            ip: " 10.0.0.5 ".into(),
            source: "armis".into(),
            agent_id: "agent-1".into(),
            gateway_id: String::new(),
            partition: "  ".into(),
            timestamp: "2025-01-02T03:04:05.123456789Z".parse().unwrap(),
            hostname: Some("  host-1 ".into()),
            mac: Some("00-1b-44-00-00-01".into()),
            metadata: BTreeMap::from([
                ("integration_type".into(), "armis".into()),
                ("integration_id".into(), "17".into()),
                (
                    "integration_source_id".into(),
                    "6f1c9d53-5d1e-4b53-9a43-1c1f5f5e2a10".into(),
                ),
                ("all_ips".into(), "10.0.0.5, 10.0.1.5,,".into()),
                ("manufacturer".into(), "Cisco".into()),
                ("type".into(), "Switch".into()),
            ]),
            is_available: true,
            confidence: 7,
            sync_meta: Some(SyncMeta {
                sync_run_id: "run-1".into(),
                ..SyncMeta::default()
            }),
            raw_data: Some(serde_json::json!({"id": 17})),
        }
    }

    #[test]
    fn normalises_update() {
        let u = update();
        let obs = observe(&u);
        assert_eq!(obs.partition, "default");
        assert_eq!(obs.ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(obs.claim, Claim::None);
        assert_eq!(obs.fields.mac.as_deref(), Some("00:1B:44:00:00:01"));
        assert_eq!(obs.fields.hostname.as_deref(), Some("host-1"));
        assert_eq!(obs.fields.vendor_name.as_deref(), Some("Cisco"));
        assert_eq!(obs.fields.device_type.as_deref(), Some("Switch"));
        assert_eq!(obs.fields.agent_id.as_deref(), Some("agent-1"));
        assert_eq!(obs.fields.gateway_id, None);
        assert_eq!(obs.at.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(obs.identifiers.len(), 2);
        let key = obs.staging.clone().unwrap();
        assert_eq!(key.source_device_id, "17");
        assert_eq!(obs.staging_source(), "armis");
        assert_eq!(obs.all_ips(), vec!["10.0.0.5", "10.0.1.5"]);
        assert_eq!(obs.all_macs(), vec!["00:1B:44:00:00:01"]);
        assert_eq!(obs.sync_run_id().as_deref(), Some("run-1"));
        assert!(obs.fingerprint.is_some());
    }

    #[test]
    fn fingerprint_ignores_run_bookkeeping_only() {
        let a = update();
        let mut b = update();
        b.sync_meta = Some(SyncMeta {
            sync_run_id: "run-2".into(),
            chunk_index: 3,
            ..SyncMeta::default()
        });
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let mut c = update();
        c.raw_data = Some(serde_json::json!({"id": 18}));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let mut d = update();
        d.timestamp += chrono::Duration::seconds(1);
        assert_ne!(fingerprint(&a), fingerprint(&d));
        let mut e = update();
        e.metadata.insert("site".into(), "x".into());
        assert_ne!(fingerprint(&a), fingerprint(&e));
    }

    #[test]
    fn claims() {
        assert_eq!(claim(""), Claim::None);
        assert_eq!(claim("default:10.0.0.1"), Claim::None);
        assert_eq!(
            claim("sr:8C1AB81A-BDF0-4417-AE9A-6678756238B7"),
            Claim::Sr("sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7".into())
        );
        assert_eq!(
            claim("serviceradar:agent:a1"),
            Claim::Service("serviceradar:agent:a1".into())
        );
    }

    #[test]
    fn staging_needs_a_uuid_source_and_an_integration_id() {
        let mut u = update();
        u.metadata
            .insert("integration_source_id".into(), "not-a-uuid".into());
        let obs = observe(&u);
        assert!(obs.staging.is_none());
        assert!(obs.bad_integration_source_id);
        assert!(obs.fingerprint.is_none());
        let mut u = update();
        u.metadata.remove("integration_id");
        let obs = observe(&u);
        assert!(obs.staging.is_none());
        assert!(!obs.bad_integration_source_id);
    }

    #[test]
    fn ip_normalisation() {
        assert_eq!(normalize_ip("  "), None);
        assert_eq!(
            normalize_ip("2001:DB8:0:0::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            normalize_ip("host.example").as_deref(),
            Some("host.example")
        );
    }
}
