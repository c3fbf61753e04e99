//! Armis devices mapped onto SDK devices, as the records of an incremental
//! run (merged across queries by the SDK's [`Record`]).
//!
//! Mapping (the reference's): devices without a usable IP are skipped; the
//! IPs are every address of `ipAddress` (comma-separated, the first is the
//! primary) then of `ipv6`; the MACs every parseable address of
//! `macAddress` (separated by `,` `;` space or newline), upper-case colon
//! form, the first parseable one first; hostname `name`; type,
//! manufacturer, model, OS (with its version), serial, tags, first/last
//! seen; attributes `armis_device_id`, `query_label` (the labels of every
//! query that found the device, comma-joined), `risk_level`, `category`,
//! `site`, `site_location`, `boundaries`.

use std::borrow::Cow;

use sr_adapter_sdk::Device;
use sr_adapter_sdk::addr::{normalize_mac, parse_ip};
use sr_adapter_sdk::incremental::Record;
use sr_adapter_sdk::time::Timestamp;

use crate::api::ArmisDevice;

/// Separators between several addresses in one Armis field.
fn is_separator(c: char) -> bool {
    c == ',' || c == ';' || c.is_whitespace()
}

/// Every valid IP in `fields` (each possibly holding several), in order,
/// without repeats, in canonical text form.
pub fn split_ips<'a>(fields: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    for piece in fields.into_iter().flat_map(|f| f.split(is_separator)) {
        let Some(ip) = parse_ip(piece) else { continue };
        // IPv4 text that parses as is is canonical (no leading zeros): keep it.
        let text = match piece.parse::<std::net::Ipv4Addr>() {
            Ok(_) => piece.to_string(),
            Err(_) => ip.to_string(),
        };
        if !ips.contains(&text) {
            ips.push(text);
        }
    }
    ips
}

/// Every parseable MAC in `fields`, upper-case colon form, in order,
/// without repeats.
pub fn split_macs<'a>(fields: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut macs: Vec<String> = Vec::new();
    for piece in fields.into_iter().flat_map(|f| f.split(is_separator)) {
        if let Some(mac) = normalize_mac(piece)
            && !macs.contains(&mac)
        {
            macs.push(mac);
        }
    }
    macs
}

/// A trimmed, non-empty text.
fn text(value: Option<Cow<'_, str>>) -> Option<String> {
    let value = value?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == value.len() {
        Some(value.into_owned())
    } else {
        Some(trimmed.to_string())
    }
}

/// An Armis time as RFC 3339 (the host reads nothing else), or `None`.
fn instant(value: Option<&str>) -> Option<Timestamp> {
    value.and_then(Timestamp::parse)
}

/// Maps an Armis device found by query `label` to a record ordered by
/// `lastSeen` truncated to the second (the granularity of `after:`);
/// `None` when it has no usable IP (the reference skips those).
pub fn from_api(api: ArmisDevice<'_>, label: &str, raw: Option<String>) -> Option<Record> {
    let ips = split_ips(api.ip_address.iter().chain(api.ipv6.iter()));
    if ips.is_empty() {
        return None;
    }
    let last_seen = instant(api.last_seen.as_deref());
    let first_seen = instant(api.first_seen.as_deref());
    let os = match (
        text(api.operating_system),
        text(api.operating_system_version),
    ) {
        (Some(os), Some(version)) if !os.contains(&version) => Some(format!("{os} {version}")),
        (Some(os), _) => Some(os),
        (None, version) => version,
    };
    let mut attributes = Vec::with_capacity(8);
    attributes.push(("armis_device_id".to_string(), api.id.clone()));
    let mut attribute = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            attributes.push((key.to_string(), value));
        }
    };
    attribute(
        "risk_level",
        text(api.risk_level.first().map(Cow::Borrowed)),
    );
    attribute("category", text(api.category));
    if let Some(site) = api.site {
        attribute("site", text(site.name));
        attribute("site_location", text(site.location));
    }
    let boundaries: Vec<&str> = api
        .boundaries
        .iter()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    attribute("boundaries", text(Some(Cow::Owned(boundaries.join(",")))));
    let device = Device {
        source_id: api.id,
        ips,
        macs: split_macs(api.mac_address.iter()),
        hostname: text(api.name),
        device_type: text(api.device_type),
        manufacturer: text(api.manufacturer),
        model: text(api.model),
        os,
        serial: text(api.serial_number),
        tags: api
            .tags
            .iter()
            .filter_map(|t| text(Some(Cow::Borrowed(t))))
            .collect(),
        first_seen: first_seen.map(|t| t.to_rfc3339()),
        last_seen: last_seen.map(|t| t.to_rfc3339()),
        attributes,
        raw,
    };
    // To the second: the granularity of `after:`.
    let at = last_seen.map(Timestamp::truncate_to_seconds);
    Some(Record::new(device, at, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde::Deserialize;
    use sr_adapter_sdk::incremental::Ordered;

    /// Maps a device given as JSON.
    fn map(json: serde_json::Value, label: &str) -> Option<Record> {
        from_api(ArmisDevice::deserialize(&json).unwrap(), label, None)
    }

    #[test]
    fn several_ips_in_one_field() {
        assert_eq!(
            split_ips(["10.0.0.1,10.0.0.2, 10.0.0.3", "10.0.0.2", "fe80::1"]),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fe80::1"]
        );
        assert_eq!(split_ips(["N/A", "", " , "]), Vec::<String>::new());
        assert_eq!(
            split_ips(["10.0.0.9/24;10.0.0.10"]),
            ["10.0.0.9", "10.0.0.10"]
        );
    }

    #[test]
    fn several_macs_with_every_separator() {
        let field = "aa:bb:cc:dd:ee:01,aa-bb-cc-dd-ee-02;aabb.ccdd.ee03 AABBCCDDEE04\naa:bb:cc:dd:ee:05\r\nzz:zz, 00:00:00:00:00:00";
        assert_eq!(
            split_macs([field, "aa:bb:cc:dd:ee:01"]),
            [
                "AA:BB:CC:DD:EE:01",
                "AA:BB:CC:DD:EE:02",
                "AA:BB:CC:DD:EE:03",
                "AA:BB:CC:DD:EE:04",
                "AA:BB:CC:DD:EE:05"
            ]
        );
    }

    #[test]
    fn maps_the_reference_fields() {
        let record = map(serde_json::json!({
                "id": 17, "name": " core-sw-1 ", "ipAddress": "10.1.0.5,10.1.0.6",
                "ipv6": "2001:db8::5", "macAddress": "junk;00:1b:44:00:00:01",
                "type": "Switch", "category": "Network Equipment", "manufacturer": "Cisco",
                "model": "C9300", "operatingSystem": "IOS XE", "operatingSystemVersion": "17.9",
                "serialNumber": "FOC123", "riskLevel": 42, "boundaries": ["Corporate", "Lab"],
                "tags": ["core", " "], "site": {"name": "Berlin", "location": "DE"},
                "firstSeen": "2024-01-01T00:00:00+00:00", "lastSeen": "2025-01-01T10:00:00.750+02:00"
            }), "switches")
        .unwrap();
        assert_eq!(record.at, Timestamp::parse("2025-01-01T08:00:00Z"));
        let d = record.into_device();
        assert_eq!(d.source_id, "17");
        assert_eq!(d.ips, ["10.1.0.5", "10.1.0.6", "2001:db8::5"]);
        assert_eq!(d.macs, ["00:1B:44:00:00:01"]);
        assert_eq!(d.hostname.as_deref(), Some("core-sw-1"));
        assert_eq!(d.os.as_deref(), Some("IOS XE 17.9"));
        assert_eq!(d.serial.as_deref(), Some("FOC123"));
        assert_eq!(d.tags, ["core"]);
        assert_eq!(d.first_seen.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(d.last_seen.as_deref(), Some("2025-01-01T08:00:00.75Z"));
        let attrs: Vec<(&str, &str)> = d
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attrs,
            [
                ("armis_device_id", "17"),
                ("query_label", "switches"),
                ("risk_level", "42"),
                ("category", "Network Equipment"),
                ("site", "Berlin"),
                ("site_location", "DE"),
                ("boundaries", "Corporate,Lab"),
            ]
        );
        assert!(
            d.attributes
                .iter()
                .all(|(k, _)| !k.starts_with("integration_"))
        );
    }

    #[test]
    fn devices_without_an_ip_are_skipped() {
        for ip in [
            serde_json::json!(null),
            serde_json::json!(""),
            serde_json::json!("unknown"),
        ] {
            assert_eq!(
                map(serde_json::json!({"id": 1, "ipAddress": ip}), "a"),
                None
            );
        }
        let v6_only = map(serde_json::json!({"id": 2, "ipv6": "2001:db8::2"}), "a");
        assert_eq!(v6_only.unwrap().device.ips, ["2001:db8::2"]);
    }

    #[test]
    fn merging_unions_ips_labels_and_fills_gaps() {
        let mut a = map(serde_json::json!({"id": 5, "ipAddress": "10.0.0.1", "macAddress": "aa:bb:cc:dd:ee:01"}), "a")
        .unwrap();
        let b = map(serde_json::json!({"id": 5, "ipAddress": "10.0.0.2,10.0.0.1", "name": "h", "riskLevel": 3}), "b")
        .unwrap();
        a.merge_from(b);
        let d = a.into_device();
        assert_eq!(d.ips, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(d.hostname.as_deref(), Some("h"));
        assert!(d.attributes.contains(&("query_label".into(), "a,b".into())));
        assert!(d.attributes.contains(&("risk_level".into(), "3".into())));
    }
}
