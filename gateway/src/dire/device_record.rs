//! A canonical device's stored fields and how observations change them.
//!
//! - Fields a source did not send keep their old values: a source never
//!   blanks a field because it lacks it.
//! - The later observation wins field by field: an observation at or after
//!   the device's `last_seen` overwrites the fields it sends; an older one
//!   (a late delivery, or a concurrent stream that committed first) only
//!   fills fields that are still empty. The stored row has one `last_seen`,
//!   not one per field, so "later" is judged against the device as a whole.
//! - `discovery_sources` is the union of sources, `last_seen` only moves
//!   forward, `first_seen` only backward, metadata merges key by key with
//!   the same rule as fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The plain columns of `ocsf_devices` that observations set (all but
/// identity, IP, sources, metadata and times). `None` means "not known" in a
/// record and "not sent" in an observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFields {
    /// Primary MAC, `AA:BB:CC:DD:EE:FF`.
    pub mac: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Device type or category.
    pub device_type: Option<String>,
    /// Manufacturer.
    pub vendor_name: Option<String>,
    /// Hardware model.
    pub model: Option<String>,
    /// Operating system.
    pub os_name: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// Agent assigned to monitor the device.
    pub agent_id: Option<String>,
    /// Gateway of that agent.
    pub gateway_id: Option<String>,
    /// Reachability as the source knows it.
    pub is_available: Option<bool>,
    /// Source confidence, 1–10.
    pub confidence: Option<i32>,
}

fn overlay<T: Clone + PartialEq>(target: &mut Option<T>, value: &Option<T>, overwrite: bool) {
    if let Some(value) = value
        && (overwrite || target.is_none())
        && target.as_ref() != Some(value)
    {
        *target = Some(value.clone());
    }
}

impl DeviceFields {
    /// Copies the fields `other` has into `self`: all of them when
    /// `overwrite`, else only into empty ones.
    pub fn overlay(&mut self, other: &DeviceFields, overwrite: bool) {
        overlay(&mut self.mac, &other.mac, overwrite);
        overlay(&mut self.hostname, &other.hostname, overwrite);
        overlay(&mut self.device_type, &other.device_type, overwrite);
        overlay(&mut self.vendor_name, &other.vendor_name, overwrite);
        overlay(&mut self.model, &other.model, overwrite);
        overlay(&mut self.os_name, &other.os_name, overwrite);
        overlay(&mut self.serial_number, &other.serial_number, overwrite);
        overlay(&mut self.agent_id, &other.agent_id, overwrite);
        overlay(&mut self.gateway_id, &other.gateway_id, overwrite);
        overlay(&mut self.is_available, &other.is_available, overwrite);
        overlay(&mut self.confidence, &other.confidence, overwrite);
    }
}

/// One `ocsf_devices` row as DIRE reads and writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    /// `sr:<uuid>` (or a kept `serviceradar:` id).
    pub uid: String,
    /// Partition; never changes.
    pub partition: String,
    /// Current primary IP.
    pub ip: Option<String>,
    /// The other plain columns.
    pub fields: DeviceFields,
    /// Union of the sources that reported the device, in first-seen order.
    pub discovery_sources: Vec<String>,
    /// Merged metadata of all observations.
    pub metadata: Map<String, Value>,
    /// Earliest observation.
    pub first_seen: DateTime<Utc>,
    /// Latest observation.
    pub last_seen: DateTime<Utc>,
    /// Soft-deleted (`deleted_at` set); an observation revives the device.
    pub deleted: bool,
}

impl DeviceRecord {
    /// An empty record first seen at `at`.
    pub fn new(uid: String, partition: String, at: DateTime<Utc>) -> Self {
        Self {
            uid,
            partition,
            ip: None,
            fields: DeviceFields::default(),
            discovery_sources: Vec::new(),
            metadata: Map::new(),
            first_seen: at,
            last_seen: at,
            deleted: false,
        }
    }

    /// Applies one observation made at `at` (the IP is the planner's
    /// business: it must keep IPs unique).
    pub fn observe(
        &mut self,
        fields: &DeviceFields,
        source: Option<&str>,
        metadata: &BTreeMap<String, String>,
        at: DateTime<Utc>,
    ) {
        let newer = at >= self.last_seen;
        self.fields.overlay(fields, newer);
        if let Some(source) = source {
            self.add_source(source);
        }
        for (key, value) in metadata {
            match self.metadata.get(key) {
                Some(Value::String(stored)) if stored == value => {}
                Some(_) if !newer => {}
                _ => {
                    self.metadata
                        .insert(key.clone(), Value::String(value.clone()));
                }
            }
        }
        self.last_seen = self.last_seen.max(at);
        self.first_seen = self.first_seen.min(at);
        self.deleted = false;
    }

    /// Takes over what a merged-away device knew and this one does not.
    pub fn absorb(&mut self, loser: &DeviceRecord) {
        self.fields.overlay(&loser.fields, false);
        for source in &loser.discovery_sources {
            self.add_source(source);
        }
        for (key, value) in &loser.metadata {
            if !self.metadata.contains_key(key) {
                self.metadata.insert(key.clone(), value.clone());
            }
        }
        self.last_seen = self.last_seen.max(loser.last_seen);
        self.first_seen = self.first_seen.min(loser.first_seen);
    }

    /// True when this record equals the stored one; with
    /// `stored_ip_released` the stored IP counts as already cleared.
    pub fn same_as(&self, stored: &DeviceRecord, stored_ip_released: bool) -> bool {
        let DeviceRecord {
            uid,
            partition,
            ip,
            fields,
            discovery_sources,
            metadata,
            first_seen,
            last_seen,
            deleted,
        } = stored;
        let ip_same = if stored_ip_released {
            self.ip.is_none()
        } else {
            self.ip == *ip
        };
        ip_same
            && self.uid == *uid
            && self.partition == *partition
            && self.fields == *fields
            && self.discovery_sources == *discovery_sources
            && self.metadata == *metadata
            && self.first_seen == *first_seen
            && self.last_seen == *last_seen
            && self.deleted == *deleted
    }

    fn add_source(&mut self, source: &str) {
        if !self.discovery_sources.iter().any(|known| known == source) {
            self.discovery_sources.push(source.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn fields(hostname: Option<&str>, model: Option<&str>) -> DeviceFields {
        DeviceFields {
            hostname: hostname.map(str::to_string),
            model: model.map(str::to_string),
            ..DeviceFields::default()
        }
    }

    #[test]
    fn unsent_fields_keep_their_values() {
        let t1 = at("2025-01-01T00:00:00Z");
        let mut record = DeviceRecord::new("sr:x".into(), "default".into(), t1);
        record.observe(
            &fields(Some("h1"), Some("m1")),
            Some("armis"),
            &meta(&[]),
            t1,
        );
        record.observe(
            &fields(None, Some("m2")),
            Some("netbox"),
            &meta(&[]),
            at("2025-01-02T00:00:00Z"),
        );
        assert_eq!(record.fields.hostname.as_deref(), Some("h1"));
        assert_eq!(record.fields.model.as_deref(), Some("m2"));
        assert_eq!(record.discovery_sources, vec!["armis", "netbox"]);
        assert_eq!(record.last_seen, at("2025-01-02T00:00:00Z"));
    }

    #[test]
    fn older_observation_only_fills_gaps() {
        let t2 = at("2025-01-02T00:00:00Z");
        let mut record = DeviceRecord::new("sr:x".into(), "default".into(), t2);
        record.observe(&fields(Some("new"), None), None, &meta(&[("k", "new")]), t2);
        let t1 = at("2025-01-01T00:00:00Z");
        record.observe(
            &fields(Some("old"), Some("model")),
            Some("faker"),
            &meta(&[("k", "old"), ("j", "old")]),
            t1,
        );
        assert_eq!(record.fields.hostname.as_deref(), Some("new"));
        assert_eq!(record.fields.model.as_deref(), Some("model"));
        assert_eq!(record.metadata["k"], "new");
        assert_eq!(record.metadata["j"], "old");
        assert_eq!(record.last_seen, t2, "last_seen never moves back");
        assert_eq!(record.first_seen, t1);
    }

    #[test]
    fn observation_revives_deleted_device() {
        let t = at("2025-01-01T00:00:00Z");
        let mut record = DeviceRecord::new("sr:x".into(), "default".into(), t);
        record.deleted = true;
        record.observe(&DeviceFields::default(), None, &BTreeMap::new(), t);
        assert!(!record.deleted);
    }

    #[test]
    fn absorb_fills_gaps_and_unions() {
        let t1 = at("2025-01-01T00:00:00Z");
        let t2 = at("2025-01-03T00:00:00Z");
        let mut survivor = DeviceRecord::new("sr:a".into(), "default".into(), t2);
        survivor.observe(
            &fields(Some("a"), None),
            Some("armis"),
            &meta(&[("x", "a")]),
            t2,
        );
        let mut loser = DeviceRecord::new("sr:b".into(), "default".into(), t1);
        loser.observe(
            &fields(Some("b"), Some("mb")),
            Some("netbox"),
            &meta(&[("x", "b"), ("y", "b")]),
            t1,
        );
        survivor.absorb(&loser);
        assert_eq!(survivor.fields.hostname.as_deref(), Some("a"));
        assert_eq!(survivor.fields.model.as_deref(), Some("mb"));
        assert_eq!(survivor.discovery_sources, vec!["armis", "netbox"]);
        assert_eq!(survivor.metadata["x"], "a");
        assert_eq!(survivor.metadata["y"], "b");
        assert_eq!(survivor.first_seen, t1);
        assert_eq!(survivor.last_seen, t2);
    }
}
