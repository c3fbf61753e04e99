//! Turning devices emitted by adapters into DeviceUpdates. Pure functions.
//!
//! IPs are parsed (a prefix length is stripped; invalid entries are dropped
//! and counted), blacklisted IPs are removed, a device left without an IP is
//! dropped, MACs are normalised to `AA:BB:CC:DD:EE:FF`, and the integration's
//! identifiers are stamped into metadata as strings.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;
use sr_proto::DeviceUpdate;
use sr_proto::device_update::{INTEGRATION_CONFIDENCE, keys};

use crate::sandbox::Device;

/// Longest attribute value kept; longer ones are dropped and counted.
pub const MAX_ATTRIBUTE_VALUE: usize = 16 * 1024;
/// Longest attribute key kept.
pub const MAX_ATTRIBUTE_KEY: usize = 128;

/// Who the devices belong to and how to filter them.
#[derive(Debug, Clone, Default)]
pub struct NormalizeContext {
    /// The adapter's source type: `source` and `integration_type`.
    pub source_type: String,
    /// Integration source record id.
    pub integration_source_id: Option<String>,
    /// Tenant id.
    pub tenant_id: Option<String>,
    /// Sync service id.
    pub sync_service_id: Option<String>,
    /// Partition of the devices.
    pub partition: String,
    /// Agent assigned to monitor the devices.
    pub agent_id: String,
    /// Networks whose addresses are removed.
    pub blacklist: Vec<IpNet>,
    /// Observation time when the device has no valid `last-seen`.
    pub now: DateTime<Utc>,
    /// Keep the adapter's raw JSON in `raw_data`.
    pub keep_raw: bool,
}

/// What normalisation dropped or fixed, for warnings and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NormalizeStats {
    /// Devices received from the adapter.
    pub devices_in: u64,
    /// DeviceUpdates produced.
    pub updates_out: u64,
    /// IP strings that did not parse.
    pub invalid_ips: u64,
    /// IPs removed by the blacklist.
    pub blacklisted_ips: u64,
    /// Devices dropped because no valid, non-blacklisted IP was left.
    pub dropped_no_ip: u64,
    /// Devices dropped because their source id was empty.
    pub dropped_no_source_id: u64,
    /// MAC strings that did not parse.
    pub invalid_macs: u64,
    /// `last-seen` values that were not RFC 3339 (the host clock was used).
    pub invalid_timestamps: u64,
    /// Attributes dropped (empty or oversized key or value).
    pub dropped_attributes: u64,
    /// Raw records dropped because they were not valid JSON.
    pub invalid_raw: u64,
}

impl NormalizeStats {
    /// Adds another set of counts to this one.
    pub fn add(&mut self, other: &NormalizeStats) {
        self.devices_in += other.devices_in;
        self.updates_out += other.updates_out;
        self.invalid_ips += other.invalid_ips;
        self.blacklisted_ips += other.blacklisted_ips;
        self.dropped_no_ip += other.dropped_no_ip;
        self.dropped_no_source_id += other.dropped_no_source_id;
        self.invalid_macs += other.invalid_macs;
        self.invalid_timestamps += other.invalid_timestamps;
        self.dropped_attributes += other.dropped_attributes;
        self.invalid_raw += other.invalid_raw;
    }

    /// Whether anything was dropped or fixed.
    pub fn has_warnings(&self) -> bool {
        self.invalid_ips
            + self.dropped_no_ip
            + self.dropped_no_source_id
            + self.invalid_macs
            + self.invalid_timestamps
            + self.dropped_attributes
            + self.invalid_raw
            > 0
    }
}

/// Parses one IP as adapters send them: trimmed, an optional prefix length
/// (`10.0.0.5/24`) stripped, an IPv6 zone (`fe80::1%eth0`) refused.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let address = text.split_once('/').map_or(text, |(addr, prefix)| {
        if prefix.parse::<u8>().is_ok() {
            addr
        } else {
            ""
        }
    });
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    address.parse().ok()
}

/// Normalises a MAC to upper-case colon form. Accepts `:`, `-`, `.` and
/// whitespace separators and bare hex; refuses all-zero and broadcast.
pub fn normalize_mac(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.') && !c.is_whitespace())
        .collect();
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_uppercase();
    if hex == "000000000000" || hex == "FFFFFFFFFFFF" {
        return None;
    }
    let pairs: Vec<&str> = (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    Some(pairs.join(":"))
}

fn trimmed(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Turns one emitted device into a DeviceUpdate, or `None` when it must be
/// dropped (the reason is counted in `stats`).
pub fn normalize(
    device: Device,
    ctx: &NormalizeContext,
    stats: &mut NormalizeStats,
) -> Option<DeviceUpdate> {
    stats.devices_in += 1;
    let source_id = device.source_id.trim().to_string();
    if source_id.is_empty() {
        stats.dropped_no_source_id += 1;
        return None;
    }

    let mut seen = HashSet::new();
    let mut ips: Vec<IpAddr> = Vec::with_capacity(device.ips.len());
    for text in &device.ips {
        match parse_ip(text) {
            None => stats.invalid_ips += 1,
            Some(ip) if ctx.blacklist.iter().any(|net| net.contains(&ip)) => {
                stats.blacklisted_ips += 1
            }
            Some(ip) => {
                if seen.insert(ip) {
                    ips.push(ip);
                }
            }
        }
    }
    let Some(primary) = ips.first().copied() else {
        stats.dropped_no_ip += 1;
        return None;
    };

    let mut macs: Vec<String> = Vec::with_capacity(device.macs.len());
    for text in &device.macs {
        match normalize_mac(text) {
            None => stats.invalid_macs += 1,
            Some(mac) => {
                if !macs.contains(&mac) {
                    macs.push(mac);
                }
            }
        }
    }

    let timestamp = match device
        .last_seen
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        None => ctx.now,
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => {
                stats.invalid_timestamps += 1;
                ctx.now
            }
        },
    };

    let mut metadata = BTreeMap::new();
    for (key, value) in device.attributes {
        let key = key.trim().to_string();
        if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY || value.len() > MAX_ATTRIBUTE_VALUE {
            stats.dropped_attributes += 1;
            continue;
        }
        metadata.insert(key, value);
    }
    let descriptive = [
        ("device_type", trimmed(device.device_type)),
        ("manufacturer", trimmed(device.manufacturer)),
        ("model", trimmed(device.model)),
        ("os", trimmed(device.os)),
        ("serial_number", trimmed(device.serial)),
        ("first_seen", trimmed(device.first_seen)),
    ];
    for (key, value) in descriptive {
        if let Some(value) = value {
            metadata.entry(key.to_string()).or_insert(value);
        }
    }
    let tags: Vec<String> = device
        .tags
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if !tags.is_empty() {
        metadata
            .entry("tags".to_string())
            .or_insert_with(|| tags.join(","));
    }

    // Host-stamped identifiers always win over adapter attributes.
    let all_ips: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    metadata.insert(keys::INTEGRATION_TYPE.to_string(), ctx.source_type.clone());
    metadata.insert(keys::INTEGRATION_ID.to_string(), source_id);
    metadata.insert(keys::ALL_IPS.to_string(), all_ips.join(","));
    metadata.insert(keys::IP_COUNT.to_string(), all_ips.len().to_string());
    if !macs.is_empty() {
        metadata.insert(keys::ALL_MACS.to_string(), macs.join(","));
    } else {
        metadata.remove(keys::ALL_MACS);
    }
    let stamps = [
        (keys::INTEGRATION_SOURCE_ID, &ctx.integration_source_id),
        (keys::TENANT_ID, &ctx.tenant_id),
        (keys::SYNC_SERVICE_ID, &ctx.sync_service_id),
    ];
    for (key, value) in stamps {
        match value {
            Some(v) => {
                metadata.insert(key.to_string(), v.clone());
            }
            None => {
                metadata.remove(key);
            }
        }
    }

    let raw_data = match device.raw {
        Some(raw) if ctx.keep_raw => match serde_json::from_str(&raw) {
            Ok(value) => Some(value),
            Err(_) => {
                stats.invalid_raw += 1;
                None
            }
        },
        _ => None,
    };

    stats.updates_out += 1;
    Some(DeviceUpdate {
        device_id: String::new(),
        ip: primary.to_string(),
        source: ctx.source_type.clone(),
        agent_id: ctx.agent_id.clone(),
        gateway_id: String::new(),
        partition: if ctx.partition.is_empty() {
            sr_proto::device_update::DEFAULT_PARTITION.to_string()
        } else {
            ctx.partition.clone()
        },
        timestamp,
        hostname: trimmed(device.hostname),
        mac: macs.into_iter().next(),
        metadata,
        is_available: true,
        confidence: INTEGRATION_CONFIDENCE,
        sync_meta: None,
        raw_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(ips: &[&str], macs: &[&str]) -> Device {
        Device {
            source_id: "42".into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            macs: macs.iter().map(|s| s.to_string()).collect(),
            hostname: Some(" host-1 ".into()),
            device_type: Some("Switch".into()),
            manufacturer: None,
            model: None,
            os: None,
            serial: None,
            tags: vec!["a".into(), " ".into(), "b".into()],
            first_seen: None,
            last_seen: Some("2025-01-02T03:04:05+02:00".into()),
            attributes: vec![
                ("armis_device_id".into(), "42".into()),
                ("integration_type".into(), "spoofed".into()),
                ("".into(), "x".into()),
            ],
            raw: Some(r#"{"id":42}"#.into()),
        }
    }

    fn ctx() -> NormalizeContext {
        NormalizeContext {
            source_type: "armis".into(),
            integration_source_id: Some("src-1".into()),
            tenant_id: Some("tenant-1".into()),
            sync_service_id: Some("sync-1".into()),
            partition: "default".into(),
            agent_id: "agent-7".into(),
            blacklist: vec!["192.168.0.0/16".parse().unwrap()],
            now: "2030-01-01T00:00:00Z".parse().unwrap(),
            keep_raw: true,
        }
    }

    #[test]
    fn parses_ips_the_way_sources_send_them() {
        assert_eq!(parse_ip(" 10.0.0.5 "), "10.0.0.5".parse().ok());
        assert_eq!(parse_ip("10.0.0.5/24"), "10.0.0.5".parse().ok());
        assert_eq!(parse_ip("2001:db8::1/64"), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip("[2001:db8::1]"), "2001:db8::1".parse().ok());
        for bad in [
            "999.1.1.1",
            "not-an-ip",
            "",
            "10.0.0.5/abc",
            "fe80::1%eth0",
            "10.0.0",
        ] {
            assert_eq!(parse_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn normalises_mac_notations() {
        for text in [
            "aa:bb:cc:dd:ee:ff",
            "AA-BB-CC-DD-EE-FF",
            "aabb.ccdd.eeff",
            "AABBCCDDEEFF",
            " aa bb cc dd ee ff ",
        ] {
            assert_eq!(
                normalize_mac(text).as_deref(),
                Some("AA:BB:CC:DD:EE:FF"),
                "{text}"
            );
        }
        for bad in [
            "zz:zz:zz:zz:zz:zz",
            "aa:bb",
            "",
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
        ] {
            assert_eq!(normalize_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn stamps_identifiers_and_keeps_the_primary_first() {
        let mut stats = NormalizeStats::default();
        let update = normalize(
            device(
                &[
                    "not-an-ip",
                    "10.0.0.5/24",
                    "192.168.1.1",
                    "10.0.0.6",
                    "10.0.0.5",
                ],
                &["aa-bb-cc-dd-ee-01", "zz"],
            ),
            &ctx(),
            &mut stats,
        )
        .unwrap();
        assert_eq!(update.ip, "10.0.0.5");
        assert_eq!(update.source, "armis");
        assert_eq!(update.mac.as_deref(), Some("AA:BB:CC:DD:EE:01"));
        assert_eq!(update.hostname.as_deref(), Some("host-1"));
        assert_eq!(update.agent_id, "agent-7");
        assert_eq!(update.timestamp.to_rfc3339(), "2025-01-02T01:04:05+00:00");
        let m = &update.metadata;
        assert_eq!(
            m["integration_type"], "armis",
            "host stamp overrides the adapter's"
        );
        assert_eq!(m["integration_id"], "42");
        assert_eq!(m["armis_device_id"], "42");
        assert_eq!(m["integration_source_id"], "src-1");
        assert_eq!(m["tenant_id"], "tenant-1");
        assert_eq!(m["sync_service_id"], "sync-1");
        assert_eq!(m["all_ips"], "10.0.0.5,10.0.0.6");
        assert_eq!(m["ip_count"], "2");
        assert_eq!(m["all_macs"], "AA:BB:CC:DD:EE:01");
        assert_eq!(m["tags"], "a,b");
        assert_eq!(m["device_type"], "Switch");
        assert!(
            !m.contains_key("agent_id"),
            "the monitoring agent is not an identity"
        );
        assert_eq!(update.raw_data, Some(serde_json::json!({"id": 42})));
        assert_eq!(stats.invalid_ips, 1);
        assert_eq!(stats.blacklisted_ips, 1);
        assert_eq!(stats.invalid_macs, 1);
        assert_eq!(stats.dropped_attributes, 1);
        assert_eq!(stats.updates_out, 1);
    }

    #[test]
    fn drops_devices_without_usable_ip_or_id() {
        let mut stats = NormalizeStats::default();
        assert!(normalize(device(&["bad", "192.168.4.4"], &[]), &ctx(), &mut stats).is_none());
        assert_eq!(stats.dropped_no_ip, 1);
        let mut nameless = device(&["10.0.0.1"], &[]);
        nameless.source_id = "  ".into();
        assert!(normalize(nameless, &ctx(), &mut stats).is_none());
        assert_eq!(stats.dropped_no_source_id, 1);
        assert_eq!(stats.updates_out, 0);
        assert!(stats.has_warnings());
    }

    #[test]
    fn invalid_timestamp_falls_back_to_now_and_is_counted() {
        let mut stats = NormalizeStats::default();
        let mut d = device(&["10.0.0.1"], &[]);
        d.last_seen = Some("yesterday".into());
        let update = normalize(d, &ctx(), &mut stats).unwrap();
        assert_eq!(update.timestamp, ctx().now);
        assert_eq!(stats.invalid_timestamps, 1);
    }
}
