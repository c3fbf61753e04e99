//! NetBox devices mapped onto SDK devices, as the records of an incremental
//! run (merged across queries by the SDK's [`Record`]).
//!
//! Mapping (the reference's): devices without a primary IP are skipped; the
//! IP is `primary_ip4` (then `primary_ip6`, then `primary_ip`) without its
//! prefix length, and the other family's primary follows it; hostname
//! `name`; manufacturer and model from `device_type`; serial; tags (names);
//! MACs from the device's interfaces when asked for; attributes
//! `netbox_device_id`, `query_label` (every label that found the device,
//! comma-joined), `role`, `site`, `asset_tag`, `platform`, `status`,
//! `last_updated`. `created` is the first-seen time; NetBox has no
//! last-seen, so the host's clock stamps the update.

use sr_adapter_sdk::Device;
use sr_adapter_sdk::addr::{normalize_mac, parse_ip};
use sr_adapter_sdk::incremental::Record;
use sr_adapter_sdk::time::Timestamp;

use crate::api::{IpRef, Named, NetboxDevice};

fn text(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn name(value: Option<Named>) -> Option<String> {
    value.and_then(|n| text(n.name))
}

fn address(ip: &Option<IpRef>) -> Option<String> {
    ip.as_ref()
        .and_then(|ip| ip.address.as_deref())
        .and_then(parse_ip)
        .map(|ip| ip.to_string())
}

/// Maps a NetBox device found by query `label` to a record ordered by
/// `last_updated` at full precision (`last_updated__gte` compares it so);
/// `None` without a primary IP.
pub fn from_api(api: NetboxDevice, label: &str, raw: Option<String>) -> Option<Record> {
    let v4 = address(&api.primary_ip4);
    let v6 = address(&api.primary_ip6);
    let mut ips: Vec<String> = v4.into_iter().chain(v6).collect();
    if ips.is_empty() {
        ips.extend(address(&api.primary_ip));
    }
    if ips.is_empty() {
        return None;
    }
    let at = api.last_updated.as_deref().and_then(Timestamp::parse);
    let device_type = api.device_type.unwrap_or_default();
    let id = api.id.to_string();
    let mut attributes = vec![("netbox_device_id".to_string(), id.clone())];
    for (key, value) in [
        ("role", name(api.role)),
        ("site", name(api.site)),
        ("asset_tag", text(api.asset_tag)),
        ("platform", name(api.platform)),
        ("status", api.status.and_then(|s| text(s.value))),
        ("last_updated", at.map(|t| t.to_rfc3339())),
    ] {
        if let Some(value) = value {
            attributes.push((key.to_string(), value));
        }
    }
    let device = Device {
        source_id: id,
        ips,
        macs: Vec::new(),
        hostname: text(api.name),
        device_type: None,
        manufacturer: name(device_type.manufacturer),
        model: text(device_type.model),
        os: None,
        serial: text(api.serial),
        tags: api
            .tags
            .into_iter()
            .filter_map(|t| text(t.name).or(text(t.slug)))
            .collect(),
        first_seen: api
            .created
            .as_deref()
            .and_then(Timestamp::parse)
            .map(|t| t.to_rfc3339()),
        last_seen: None,
        attributes,
        raw,
    };
    Some(Record::new(device, at, label))
}

/// Adds MACs to a record (any notation; unparseable ones are left out).
pub fn add_macs<'a>(record: &mut Record, macs: impl IntoIterator<Item = &'a str>) {
    for mac in macs.into_iter().filter_map(normalize_mac) {
        if !record.device.macs.contains(&mac) {
            record.device.macs.push(mac);
        }
    }
}

#[cfg(test)]
mod tests {
    use sr_adapter_sdk::incremental::Ordered;

    use super::*;

    fn api(json: serde_json::Value) -> NetboxDevice {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn maps_the_reference_fields() {
        let mut record = from_api(
            api(serde_json::json!({
                "id": 42, "name": "edge-rtr-1", "serial": "SN42", "asset_tag": "A-42",
                "device_type": {"manufacturer": {"name": "Juniper"}, "model": "MX204"},
                "role": {"name": "Router"}, "site": {"name": "Berlin"}, "platform": {"name": "Junos"},
                "status": {"value": "active"}, "primary_ip4": {"id": 1, "address": "10.2.0.1/24"},
                "primary_ip6": {"id": 2, "address": "2001:db8::1/64"},
                "tags": [{"name": "edge", "slug": "edge"}], "created": "2024-01-01T00:00:00Z",
                "last_updated": "2025-01-01T00:00:00.123456Z"
            })),
            "routers",
            None,
        )
        .unwrap();
        add_macs(
            &mut record,
            ["aa:bb:cc:00:00:01", "junk", "AA-BB-CC-00-00-01"],
        );
        assert_eq!(record.at, Timestamp::parse("2025-01-01T00:00:00.123456Z"));
        let d = record.into_device();
        assert_eq!(d.source_id, "42");
        assert_eq!(d.ips, ["10.2.0.1", "2001:db8::1"]);
        assert_eq!(d.macs, ["AA:BB:CC:00:00:01"]);
        assert_eq!(d.hostname.as_deref(), Some("edge-rtr-1"));
        assert_eq!(d.manufacturer.as_deref(), Some("Juniper"));
        assert_eq!(d.model.as_deref(), Some("MX204"));
        assert_eq!(d.serial.as_deref(), Some("SN42"));
        assert_eq!(d.tags, ["edge"]);
        assert_eq!(d.first_seen.as_deref(), Some("2024-01-01T00:00:00Z"));
        let attrs: Vec<(&str, &str)> = d
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attrs,
            [
                ("netbox_device_id", "42"),
                ("query_label", "routers"),
                ("role", "Router"),
                ("site", "Berlin"),
                ("asset_tag", "A-42"),
                ("platform", "Junos"),
                ("status", "active"),
                ("last_updated", "2025-01-01T00:00:00.123456Z"),
            ]
        );
    }

    #[test]
    fn primary_ip_fallbacks_and_skips() {
        let v6 = from_api(
            api(serde_json::json!({"id": 1, "primary_ip6": {"address": "2001:db8::9/64"}})),
            "a",
            None,
        );
        assert_eq!(v6.unwrap().device.ips, ["2001:db8::9"]);
        let generic = from_api(
            api(serde_json::json!({"id": 2, "primary_ip": {"address": "10.9.9.9/32"}})),
            "a",
            None,
        );
        assert_eq!(generic.unwrap().device.ips, ["10.9.9.9"]);
        assert!(
            from_api(
                api(serde_json::json!({"id": 3, "primary_ip4": null})),
                "a",
                None
            )
            .is_none()
        );
        assert!(
            from_api(
                api(serde_json::json!({"id": 4, "primary_ip4": {"address": "bogus"}})),
                "a",
                None
            )
            .is_none()
        );
        let empty_serial = from_api(
            api(
                serde_json::json!({"id": 5, "serial": "", "primary_ip4": {"address": "10.0.0.5/8"}}),
            ),
            "a",
            None,
        );
        assert_eq!(empty_serial.unwrap().device.serial, None);
    }

    #[test]
    fn merging_unions_labels() {
        let make = |label| {
            from_api(
                api(serde_json::json!({"id": 9, "primary_ip4": {"address": "10.0.0.9/24"}})),
                label,
                None,
            )
            .unwrap()
        };
        let mut a = make("a");
        a.merge_from(make("b"));
        a.merge_from(make("a"));
        assert_eq!(a.labels, ["a", "b"]);
        assert_eq!(a.device.ips, ["10.0.0.9"]);
    }
}
