//! The NetBox REST API's answers, as far as the adapter reads them.
//! Lenient where NetBox versions differ: `role` vs `device_role`, nested
//! objects as null, interfaces with `mac_address` and/or `mac_addresses`.

use serde::{Deserialize, Deserializer};

/// A paginated list: `{"count", "next", "previous", "results"}`.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub struct List<T> {
    /// Absolute URL of the next page, `None` on the last.
    #[serde(default)]
    pub next: Option<String>,
    /// This page's objects.
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub results: Vec<T>,
}

/// An object with a name (`site`, `role`, `platform`, `manufacturer`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Named {
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its slug.
    #[serde(default)]
    pub slug: Option<String>,
}

/// `device_type`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeviceType {
    /// Its manufacturer.
    #[serde(default)]
    pub manufacturer: Option<Named>,
    /// Model name.
    #[serde(default)]
    pub model: Option<String>,
}

/// `status`: `{"value": "active", "label": "Active"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Status {
    /// Machine value.
    #[serde(default)]
    pub value: Option<String>,
}

/// `primary_ip4` / `primary_ip6` / `primary_ip`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpRef {
    /// CIDR form, `10.0.0.5/24`.
    #[serde(default)]
    pub address: Option<String>,
}

/// A device as `/api/dcim/devices/` returns it.
#[derive(Debug, Default, Deserialize)]
pub struct NetboxDevice {
    /// NetBox id.
    pub id: u64,
    /// Name (may be null).
    #[serde(default)]
    pub name: Option<String>,
    /// Serial number ("" when unset).
    #[serde(default)]
    pub serial: Option<String>,
    /// Asset tag.
    #[serde(default)]
    pub asset_tag: Option<String>,
    /// Device type (manufacturer and model).
    #[serde(default)]
    pub device_type: Option<DeviceType>,
    /// Role (`device_role` before NetBox 3.6).
    #[serde(default, alias = "device_role")]
    pub role: Option<Named>,
    /// Site.
    #[serde(default)]
    pub site: Option<Named>,
    /// Platform.
    #[serde(default)]
    pub platform: Option<Named>,
    /// Status.
    #[serde(default)]
    pub status: Option<Status>,
    /// Primary IPv4.
    #[serde(default)]
    pub primary_ip4: Option<IpRef>,
    /// Primary IPv6.
    #[serde(default)]
    pub primary_ip6: Option<IpRef>,
    /// Primary IP (either family).
    #[serde(default)]
    pub primary_ip: Option<IpRef>,
    /// Tags.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tags: Vec<Named>,
    /// Last change, ISO 8601 with microseconds.
    #[serde(default)]
    pub last_updated: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created: Option<String>,
}

/// `{"id": ...}` of a related object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IdRef {
    /// The id.
    pub id: u64,
}

/// `{"mac_address": "..."}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MacRef {
    /// The MAC.
    #[serde(default)]
    pub mac_address: Option<String>,
}

/// An interface as `/api/dcim/interfaces/` returns it.
#[derive(Debug, Default, Deserialize)]
pub struct Interface {
    /// Its device.
    #[serde(default)]
    pub device: Option<IdRef>,
    /// The (primary) MAC; read-only on NetBox 4.2+.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// Every MAC of the interface (NetBox 4.2+).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub mac_addresses: Vec<MacRef>,
}

/// What a MAC address object is assigned to.
#[derive(Debug, Default, Deserialize)]
pub struct AssignedInterface {
    /// The interface's device.
    #[serde(default)]
    pub device: Option<IdRef>,
}

/// A MAC address object (`/api/dcim/mac-addresses/`, NetBox 4.2+).
#[derive(Debug, Default, Deserialize)]
pub struct MacAddress {
    /// The MAC.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// The interface it is assigned to.
    #[serde(default)]
    pub assigned_object: Option<AssignedInterface>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_read_across_versions() {
        let d: NetboxDevice = serde_json::from_value(serde_json::json!({
            "id": 7, "name": null, "device_role": {"name": "Core"}, "tags": null,
            "primary_ip4": null, "primary_ip6": {"address": "2001:db8::7/64"}, "custom_fields": {}
        }))
        .unwrap();
        assert_eq!(d.id, 7);
        assert_eq!(d.role.unwrap().name.as_deref(), Some("Core"));
        assert!(d.primary_ip4.is_none() && d.tags.is_empty());
        assert_eq!(
            d.primary_ip6.unwrap().address.as_deref(),
            Some("2001:db8::7/64")
        );
        let list: List<NetboxDevice> =
            serde_json::from_str(r#"{"count": 0, "next": null, "previous": null, "results": []}"#)
                .unwrap();
        assert!(list.next.is_none() && list.results.is_empty());
    }

    #[test]
    fn interfaces_carry_macs_old_and_new_style() {
        let i: Interface = serde_json::from_value(serde_json::json!({
            "device": {"id": 3, "name": "x"}, "mac_address": "AA:BB:CC:00:00:01",
            "mac_addresses": [{"id": 1, "mac_address": "AA:BB:CC:00:00:02"}]
        }))
        .unwrap();
        assert_eq!(i.device.unwrap().id, 3);
        assert_eq!(
            i.mac_addresses[0].mac_address.as_deref(),
            Some("AA:BB:CC:00:00:02")
        );
    }
}
