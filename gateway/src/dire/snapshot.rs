//! The part of a tenant's stored state that one batch can touch, and the
//! keys a batch needs looked up to build it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::canonical_id;
use super::device_record::DeviceRecord;
use super::identifiers::{Confidence, IdentifierType};
use super::observation::{Claim, Observation, StagingKey};

/// Key of a `device_identifiers` row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentifierKey {
    /// Identifier type.
    pub kind: IdentifierType,
    /// Stored value.
    pub value: String,
    /// Partition.
    pub partition: String,
}

/// A stored identifier of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIdentifier {
    /// Type.
    pub kind: IdentifierType,
    /// Stored value.
    pub value: String,
    /// Partition.
    pub partition: String,
    /// Stored confidence.
    pub confidence: Confidence,
    /// When the row was last written.
    pub last_seen: DateTime<Utc>,
}

/// A stored device with everything the planner needs about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDevice {
    /// Its row.
    pub record: DeviceRecord,
    /// The device it was merged into, if any.
    pub merged_into: Option<String>,
    /// All identifiers pointing at it.
    pub identifiers: Vec<StoredIdentifier>,
    /// Devices an operator unmerged from it (merge_audit `unmerged` rows).
    pub unmerged_from: Vec<String>,
}

impl StoredDevice {
    /// A plain active device without identifiers.
    pub fn new(record: DeviceRecord) -> Self {
        Self {
            record,
            merged_into: None,
            identifiers: Vec::new(),
            unmerged_from: Vec::new(),
        }
    }

    /// True while the device may hold an IP: not merged, not deleted, not a
    /// service component.
    pub fn holds_ip(&self) -> bool {
        self.merged_into.is_none()
            && !self.record.deleted
            && !canonical_id::is_service_id(&self.record.uid)
    }
}

/// What the store knows about a staging row the batch touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedState {
    /// Fingerprint of the update last applied for this row (absent for rows
    /// written by something else, or invalidated by an unmerge).
    pub content_hash: Option<String>,
    /// Observation time of the stored row.
    pub last_seen: DateTime<Utc>,
    /// The device the row points at.
    pub device_id: Option<String>,
    /// That device exists and is neither merged nor deleted.
    pub device_active: bool,
}

/// Existing state relevant to a batch: the referenced devices, the
/// identifier and active-IP indexes derived from them, and the staging rows
/// the batch names.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    devices: HashMap<String, StoredDevice>,
    identifiers: HashMap<IdentifierKey, String>,
    active_ips: HashMap<(String, String), String>,
    unmerged: HashSet<(String, String)>,
    staged: HashMap<(Uuid, String), StagedState>,
}

/// An unordered pair key.
pub(crate) fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Snapshot {
    /// Builds a snapshot from the referenced devices.
    pub fn from_devices(devices: impl IntoIterator<Item = StoredDevice>) -> Self {
        let mut snapshot = Self::default();
        for device in devices {
            snapshot.insert(device);
        }
        snapshot
    }

    /// Adds one device and indexes its identifiers and active IP.
    pub fn insert(&mut self, device: StoredDevice) {
        let uid = device.record.uid.clone();
        for identifier in &device.identifiers {
            self.identifiers.insert(
                IdentifierKey {
                    kind: identifier.kind,
                    value: identifier.value.clone(),
                    partition: identifier.partition.clone(),
                },
                uid.clone(),
            );
        }
        if device.holds_ip()
            && let Some(ip) = &device.record.ip
        {
            self.active_ips
                .insert((device.record.partition.clone(), ip.clone()), uid.clone());
        }
        for other in &device.unmerged_from {
            self.unmerged.insert(pair(&uid, other));
        }
        self.devices.insert(uid, device);
    }

    /// Records a stored staging row.
    pub fn insert_staged(
        &mut self,
        integration_source_id: Uuid,
        source_device_id: String,
        state: StagedState,
    ) {
        self.staged
            .insert((integration_source_id, source_device_id), state);
    }

    /// A stored staging row.
    pub fn staged(&self, key: &StagingKey) -> Option<&StagedState> {
        self.staged
            .get(&(key.integration_source_id, key.source_device_id.clone()))
    }

    /// The stored staging row of a source's device, if the batch loaded it.
    pub fn staged_row(&self, source: Uuid, source_device_id: &str) -> Option<&StagedState> {
        self.staged.get(&(source, source_device_id.to_string()))
    }

    /// The devices the loaded staging rows point at.
    pub fn staged_devices(&self) -> impl Iterator<Item = &str> {
        self.staged
            .values()
            .filter_map(|state| state.device_id.as_deref())
    }

    /// The device an update was already applied to: its staging row holds
    /// the update's fingerprint and points at an active device. Such an
    /// update is skipped (nothing it says is new).
    pub fn applied_device(&self, obs: &Observation<'_>) -> Option<&str> {
        let key = obs.staging.as_ref()?;
        let stored = self.staged(key)?;
        let matches = stored.device_active
            && stored.content_hash.is_some()
            && stored.content_hash == obs.fingerprint;
        if matches {
            stored.device_id.as_deref()
        } else {
            None
        }
    }

    /// A referenced device.
    pub fn device(&self, uid: &str) -> Option<&StoredDevice> {
        self.devices.get(uid)
    }

    /// All referenced devices.
    pub fn devices(&self) -> impl Iterator<Item = &StoredDevice> {
        self.devices.values()
    }

    /// Identifier index: (type, value, partition) → device id.
    pub fn identifiers(&self) -> &HashMap<IdentifierKey, String> {
        &self.identifiers
    }

    /// Active-IP index: (partition, ip) → device id.
    pub fn active_ips(&self) -> &HashMap<(String, String), String> {
        &self.active_ips
    }

    /// True when an operator unmerged `a` and `b`.
    pub fn unmerged(&self, a: &str, b: &str) -> bool {
        self.unmerged.contains(&pair(a, b))
    }
}

/// What the store must look up for a batch, as parallel arrays ready to bind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// Identifier types.
    pub identifier_types: Vec<String>,
    /// Identifier values (parallel to `identifier_types`).
    pub identifier_values: Vec<String>,
    /// Identifier partitions (parallel to `identifier_types`).
    pub identifier_partitions: Vec<String>,
    /// IP partitions.
    pub ip_partitions: Vec<String>,
    /// IPs (parallel to `ip_partitions`).
    pub ips: Vec<String>,
    /// Device ids the batch may name: own `sr:`/`serviceradar:` ids and the
    /// ids DIRE would derive.
    pub device_ids: Vec<String>,
}

/// The staging rows a batch names, as parallel arrays ready to bind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagingRequest {
    /// Integration source ids.
    pub sources: Vec<Uuid>,
    /// Source device ids (parallel to `sources`).
    pub devices: Vec<String>,
}

impl StagingRequest {
    /// The staging keys of a batch, without duplicates.
    pub fn for_batch(observations: &[Observation<'_>]) -> Self {
        let mut request = Self::default();
        let mut seen = HashSet::new();
        for key in observations.iter().filter_map(|obs| obs.staging.as_ref()) {
            if seen.insert(key) {
                request.sources.push(key.integration_source_id);
                request.devices.push(key.source_device_id.clone());
            }
        }
        request
    }
}

impl SnapshotRequest {
    /// True when there is nothing to look up.
    pub fn is_empty(&self) -> bool {
        self.identifier_types.is_empty() && self.ips.is_empty() && self.device_ids.is_empty()
    }

    /// The lookups of a batch's updates that are not skipped as already
    /// applied (`applied[i]` is `Some` for those).
    pub fn for_batch(observations: &[Observation<'_>], applied: &[Option<String>]) -> Self {
        Self::for_updates(
            observations
                .iter()
                .zip(applied)
                .filter(|(_, applied)| applied.is_none())
                .map(|(obs, _)| obs),
        )
    }

    /// The lookups the given updates need, without duplicates.
    pub fn for_updates<'o, 'u: 'o>(
        observations: impl IntoIterator<Item = &'o Observation<'u>>,
    ) -> Self {
        let mut request = Self::default();
        let mut seen_identifiers = HashSet::new();
        let mut seen_ips = HashSet::new();
        let mut seen_ids = HashSet::new();
        for obs in observations {
            match &obs.claim {
                Claim::Service(id) => {
                    if seen_ids.insert(id.clone()) {
                        request.device_ids.push(id.clone());
                    }
                    continue;
                }
                Claim::Sr(id) => {
                    if seen_ids.insert(id.clone()) {
                        request.device_ids.push(id.clone());
                    }
                }
                Claim::None => {}
            }
            for identifier in &obs.identifiers {
                if seen_identifiers.insert((identifier.kind, &identifier.value, &obs.partition)) {
                    request
                        .identifier_types
                        .push(identifier.kind.as_str().to_string());
                    request.identifier_values.push(identifier.value.clone());
                    request.identifier_partitions.push(obs.partition.clone());
                }
            }
            if let Some(ip) = &obs.ip
                && seen_ips.insert((&obs.partition, ip))
            {
                request.ip_partitions.push(obs.partition.clone());
                request.ips.push(ip.clone());
            }
            if let Some(id) = obs.derived_id.clone()
                && seen_ids.insert(id.clone())
            {
                request.device_ids.push(id);
            }
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sr_proto::DeviceUpdate;

    use super::super::observation::observe;
    use super::*;

    fn update(ip: &str, integration_id: &str, device_id: &str) -> DeviceUpdate {
        DeviceUpdate {
            device_id: device_id.into(),
            ip: ip.into(),
            source: "faker".into(),
            agent_id: String::new(),
            gateway_id: String::new(),
            partition: "default".into(),
            timestamp: "2025-01-02T03:04:05Z".parse().unwrap(),
            hostname: None,
            mac: None,
            metadata: BTreeMap::from([
                ("integration_type".into(), "faker".into()),
                ("integration_id".into(), integration_id.into()),
            ]),
            is_available: true,
            confidence: 7,
            sync_meta: None,
            raw_data: None,
        }
    }

    #[test]
    fn request_deduplicates_and_includes_derived_and_own_ids() {
        let updates = [
            update("10.0.0.1", "1", ""),
            update("10.0.0.1", "1", ""),
            update("10.0.0.2", "2", "sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7"),
            update("10.0.0.3", "3", "serviceradar:agent:a"),
        ];
        let observations: Vec<_> = updates.iter().map(observe).collect();
        let request = SnapshotRequest::for_updates(&observations);
        assert_eq!(request.identifier_values, vec!["faker:1", "faker:2"]);
        assert_eq!(request.ips, vec!["10.0.0.1", "10.0.0.2"]);
        assert_eq!(request.device_ids.len(), 4);
        assert!(
            request
                .device_ids
                .contains(&"sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7".to_string())
        );
        assert!(
            request
                .device_ids
                .contains(&"serviceradar:agent:a".to_string())
        );
        assert_eq!(
            Some(&request.device_ids[0]),
            observations[0].derived_id.as_ref()
        );
    }

    #[test]
    fn applied_updates_are_recognised() {
        let mut u = update("10.0.0.1", "1", "");
        u.metadata.insert(
            "integration_source_id".into(),
            "6f1c9d53-5d1e-4b53-9a43-1c1f5f5e2a10".into(),
        );
        let obs = observe(&u);
        let key = obs.staging.clone().unwrap();
        let request = StagingRequest::for_batch(&[obs.clone(), obs.clone()]);
        assert_eq!(request.devices, vec!["1"]);
        let state = |hash: Option<String>, active| StagedState {
            content_hash: hash,
            last_seen: obs.at,
            device_id: Some("sr:a".into()),
            device_active: active,
        };
        let with = |state: StagedState| {
            let mut snapshot = Snapshot::default();
            snapshot.insert_staged(
                key.integration_source_id,
                key.source_device_id.clone(),
                state,
            );
            snapshot
        };
        let applied = with(state(obs.fingerprint.clone(), true));
        assert_eq!(applied.applied_device(&obs), Some("sr:a"));
        let skip = [applied.applied_device(&obs).map(str::to_string)];
        assert!(SnapshotRequest::for_batch(std::slice::from_ref(&obs), &skip).is_empty());
        assert_eq!(
            with(state(obs.fingerprint.clone(), false)).applied_device(&obs),
            None
        );
        assert_eq!(
            with(state(Some("other".into()), true)).applied_device(&obs),
            None
        );
        assert_eq!(with(state(None, true)).applied_device(&obs), None);
    }

    #[test]
    fn snapshot_indexes_identifiers_and_active_ips_only() {
        let at = "2025-01-01T00:00:00Z".parse().unwrap();
        let mut active = DeviceRecord::new("sr:a".into(), "default".into(), at);
        active.ip = Some("10.0.0.1".into());
        let mut merged = DeviceRecord::new("sr:b".into(), "default".into(), at);
        merged.ip = Some("10.0.0.2".into());
        let mut service = DeviceRecord::new("serviceradar:agent:x".into(), "default".into(), at);
        service.ip = Some("10.0.0.3".into());
        let mut a = StoredDevice::new(active);
        a.identifiers.push(StoredIdentifier {
            kind: IdentifierType::ArmisDeviceId,
            value: "1".into(),
            partition: "default".into(),
            confidence: Confidence::Strong,
            last_seen: at,
        });
        a.unmerged_from.push("sr:b".into());
        let mut b = StoredDevice::new(merged);
        b.merged_into = Some("sr:a".into());
        let snapshot = Snapshot::from_devices([a, b, StoredDevice::new(service)]);
        assert_eq!(snapshot.active_ips().len(), 1);
        assert_eq!(
            snapshot.active_ips()[&("default".to_string(), "10.0.0.1".to_string())],
            "sr:a"
        );
        assert_eq!(snapshot.identifiers().len(), 1);
        assert!(snapshot.unmerged("sr:b", "sr:a"));
        assert!(!snapshot.unmerged("sr:a", "sr:c"));
    }
}
