//! [`Record`]: a device found by one or more labelled queries, on its way
//! through an [`OrderedMerge`](super::OrderedMerge) to the host.

use crate::device::Device;
use crate::time::Timestamp;

use super::Ordered;

/// The attribute naming the queries that found a device: their labels,
/// comma-joined, in query order.
pub const QUERY_LABEL: &str = "query_label";

/// A mapped device, when it last changed, and the labels of the queries
/// that found it. Records of the same device (equal `source_id`) found by
/// several queries at the same instant merge into one: see
/// [`Record::merge_from`](Ordered::merge_from).
///
/// ```
/// use sr_adapter_sdk::Device;
/// use sr_adapter_sdk::incremental::{Ordered, Record};
///
/// let device = |ip: &str| Device::new("17").ip(ip).attribute("acme_id", "17");
/// let mut record = Record::new(device("10.0.0.1"), None, "all");
/// record.merge_from(Record::new(device("10.0.0.2").hostname("sw-1"), None, "switches"));
/// let device = record.into_device();
/// assert_eq!(device.ips, ["10.0.0.1", "10.0.0.2"]);
/// assert_eq!(device.hostname.as_deref(), Some("sw-1"));
/// assert_eq!(device.attributes[1], ("query_label".to_string(), "all,switches".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The mapped device, without `query_label` (added by
    /// [`Record::into_device`]).
    pub device: Device,
    /// When the device last changed, at the granularity of the source's
    /// "changed since" filter (truncate to seconds for a one-second
    /// filter); the order key and the [`Watermark`](super::Watermark) time.
    pub at: Option<Timestamp>,
    /// Labels of the queries that found the device, in query order.
    pub labels: Vec<String>,
}

impl Record {
    /// A device found by the query labelled `label`.
    pub fn new(device: Device, at: Option<Timestamp>, label: impl Into<String>) -> Self {
        Self {
            device,
            at,
            labels: vec![label.into()],
        }
    }

    /// The device as emitted: [`QUERY_LABEL`] holds every label,
    /// comma-joined, as the second attribute (after the first, by
    /// convention the source's own id attribute).
    pub fn into_device(self) -> Device {
        let mut device = self.device;
        let position = device.attributes.len().min(1);
        device
            .attributes
            .insert(position, (QUERY_LABEL.to_string(), self.labels.join(",")));
        device
    }
}

impl From<Record> for Device {
    fn from(record: Record) -> Self {
        record.into_device()
    }
}

fn union(into: &mut Vec<String>, from: Vec<String>) {
    for item in from {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

impl Ordered for Record {
    fn order_at(&self) -> Option<Timestamp> {
        self.at
    }

    fn merge_id(&self) -> &str {
        &self.device.source_id
    }

    /// Union of IPs, MACs, tags and labels (this copy's first); fields and
    /// attributes this copy lacks are taken from the other, since queries
    /// may project different fields; the later time is kept.
    fn merge_from(&mut self, other: Self) {
        let d = &mut self.device;
        let o = other.device;
        union(&mut d.ips, o.ips);
        union(&mut d.macs, o.macs);
        union(&mut d.tags, o.tags);
        union(&mut self.labels, other.labels);
        for (mine, theirs) in [
            (&mut d.hostname, o.hostname),
            (&mut d.device_type, o.device_type),
            (&mut d.manufacturer, o.manufacturer),
            (&mut d.model, o.model),
            (&mut d.os, o.os),
            (&mut d.serial, o.serial),
            (&mut d.first_seen, o.first_seen),
            (&mut d.last_seen, o.last_seen),
            (&mut d.raw, o.raw),
        ] {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        for (key, value) in o.attributes {
            if !d.attributes.iter().any(|(k, _)| *k == key) {
                d.attributes.push((key, value));
            }
        }
        self.at = self.at.max(other.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Option<Timestamp> {
        Some(Timestamp::from_unix_seconds(second))
    }

    #[test]
    fn query_label_goes_second_or_first_without_attributes() {
        let device = Device::new("5")
            .attribute("acme_id", "5")
            .attribute("site", "Berlin");
        let mut record = Record::new(device, at(1), "a");
        record.labels.push("b".into());
        let attributes = record.into_device().attributes;
        let keys: Vec<&str> = attributes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["acme_id", "query_label", "site"]);
        assert_eq!(attributes[1].1, "a,b");
        let bare = Device::from(Record::new(Device::new("6"), None, "all"));
        assert_eq!(bare.attributes, [("query_label".into(), "all".into())]);
    }

    #[test]
    fn merging_unions_lists_fills_gaps_and_keeps_the_later_time() {
        let mut a = Record::new(
            Device::new("5")
                .ip("10.0.0.1")
                .mac("AA:BB:CC:DD:EE:01")
                .tag("core")
                .attribute("acme_id", "5")
                .raw("{\"a\":1}"),
            at(10),
            "a",
        );
        let b = Record::new(
            Device::new("5")
                .ip("10.0.0.2")
                .ip("10.0.0.1")
                .mac("AA:BB:CC:DD:EE:02")
                .hostname("h")
                .tag("core")
                .tag("lab")
                .attribute("acme_id", "other")
                .attribute("risk_level", "3")
                .raw("{\"b\":1}"),
            at(11),
            "b",
        );
        assert_eq!(a.merge_id(), "5");
        a.merge_from(b);
        a.merge_from(Record::new(Device::new("5"), at(9), "a"));
        assert_eq!(a.labels, ["a", "b"]);
        assert_eq!(a.order_at(), at(11));
        let d = a.into_device();
        assert_eq!(d.ips, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(d.macs, ["AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"]);
        assert_eq!(d.tags, ["core", "lab"]);
        assert_eq!(d.hostname.as_deref(), Some("h"));
        assert_eq!(d.raw.as_deref(), Some("{\"a\":1}"), "the first copy's raw");
        assert_eq!(
            d.attributes,
            [
                ("acme_id".to_string(), "5".to_string()),
                ("query_label".to_string(), "a,b".to_string()),
                ("risk_level".to_string(), "3".to_string()),
            ]
        );
    }
}
