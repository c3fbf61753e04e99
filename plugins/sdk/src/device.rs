//! [`Device`]: one device as the source knows it.

use crate::bindings::serviceradar::adapter::types as wit;

/// One device as the source knows it; maps field for field onto the WIT
/// `device` record.
///
/// Fill in what the source has and leave the rest empty. The host parses
/// and validates IPs (a `/prefix` is stripped, invalid entries dropped),
/// normalises MACs from any common notation, and stamps the identifiers
/// `integration_type` (the adapter's source type), `integration_id` (this
/// `source_id`) and the tenant and sync-service ids itself: do not set
/// those as attributes.
///
/// ```
/// use sr_adapter_sdk::Device;
///
/// let device = Device::new("17")
///     .ip("10.0.0.5")
///     .mac("aa:bb:cc:dd:ee:ff")
///     .hostname("core-sw-1")
///     .device_type("Switch")
///     .tag("core")
///     .attribute("site", "Berlin");
/// assert_eq!(device.ips, ["10.0.0.5"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// The source's own stable id (required; devices with an empty id are
    /// dropped by the host).
    pub source_id: String,
    /// IP addresses, primary first.
    pub ips: Vec<String>,
    /// MAC addresses in any common notation.
    pub macs: Vec<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Device type or category (`Switch`, `Laptop`, ...).
    pub device_type: Option<String>,
    /// Manufacturer or vendor.
    pub manufacturer: Option<String>,
    /// Hardware model.
    pub model: Option<String>,
    /// Operating system, with version if known.
    pub os: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// When the source first saw the device, RFC 3339.
    pub first_seen: Option<String>,
    /// When the source last saw the device, RFC 3339.
    pub last_seen: Option<String>,
    /// Further attributes (`query_label`, `site`, `role`, `risk_level`,
    /// `asset_tag`, `armis_device_id`, ...). They become DeviceUpdate
    /// metadata.
    pub attributes: Vec<(String, String)>,
    /// The source's raw JSON for this device, kept for audit if set.
    pub raw: Option<String>,
}

impl Device {
    /// A device with the source's id and nothing else.
    pub fn new(source_id: impl Into<String>) -> Self {
        Self {
            source_id: source_id.into(),
            ..Self::default()
        }
    }

    /// Adds an IP address (the first one added is the primary).
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ips.push(ip.into());
        self
    }

    /// Adds a MAC address.
    pub fn mac(mut self, mac: impl Into<String>) -> Self {
        self.macs.push(mac.into());
        self
    }

    /// Sets the host name.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Sets the device type.
    pub fn device_type(mut self, device_type: impl Into<String>) -> Self {
        self.device_type = Some(device_type.into());
        self
    }

    /// Sets the manufacturer.
    pub fn manufacturer(mut self, manufacturer: impl Into<String>) -> Self {
        self.manufacturer = Some(manufacturer.into());
        self
    }

    /// Sets the model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the operating system.
    pub fn os(mut self, os: impl Into<String>) -> Self {
        self.os = Some(os.into());
        self
    }

    /// Sets the serial number.
    pub fn serial(mut self, serial: impl Into<String>) -> Self {
        self.serial = Some(serial.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets when the source first saw the device (RFC 3339).
    pub fn first_seen(mut self, at: impl Into<String>) -> Self {
        self.first_seen = Some(at.into());
        self
    }

    /// Sets when the source last saw the device (RFC 3339).
    pub fn last_seen(mut self, at: impl Into<String>) -> Self {
        self.last_seen = Some(at.into());
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }

    /// Keeps the source's raw JSON for this device.
    pub fn raw(mut self, raw_json: impl Into<String>) -> Self {
        self.raw = Some(raw_json.into());
        self
    }
}

impl From<Device> for wit::Device {
    fn from(d: Device) -> Self {
        Self {
            source_id: d.source_id,
            ips: d.ips,
            macs: d.macs,
            hostname: d.hostname,
            device_type: d.device_type,
            manufacturer: d.manufacturer,
            model: d.model,
            os: d.os,
            serial: d.serial,
            tags: d.tags,
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            attributes: d.attributes,
            raw: d.raw,
        }
    }
}
