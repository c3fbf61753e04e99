//! What a plan writes that a later batch's load could read.
//!
//! `reconcile` loads batch k+1 before batch k's plan is applied, so that
//! planning k+1 (gateway CPU) overlaps applying k (PostgreSQL). That load is
//! the one an after-apply load would give exactly when plan k writes nothing
//! it read or looked up: no staging row it names, no device it holds or
//! names, no identifier or active IP it holds or looks up. [`PlanWrites`]
//! answers that; when it says the load is affected, the batch is loaded
//! again after plan k is applied.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use uuid::Uuid;

use super::plan::Plan;
use super::snapshot::{Snapshot, SnapshotRequest, StagingRequest};

/// The keys one plan writes.
///
/// Identifier, IP and staging keys are kept as 64-bit hashes: a collision
/// only costs a needless second load, never a stale one.
#[derive(Debug, Clone, Default)]
pub struct PlanWrites {
    /// Devices whose row, identifiers, IP, merge state or staging rows it
    /// writes (including devices it creates).
    devices: HashSet<String>,
    /// Hashes of the identifier rows it inserts or moves, the (partition,
    /// IP) of every IP it assigns or releases, and the staging rows it
    /// writes.
    keys: HashSet<u64>,
    hasher: RandomState,
}

impl PlanWrites {
    /// The keys `plan` writes.
    pub fn of(plan: &Plan) -> Self {
        let mut writes = Self::default();
        writes.extend(plan);
        writes
    }

    /// Adds the keys `plan` writes (for a load that may have missed several
    /// plans).
    pub fn extend(&mut self, plan: &Plan) {
        self.devices.extend(
            plan.touched_devices()
                .chain(plan.reassigned_devices.iter().map(String::as_str))
                .chain(plan.staged.iter().map(|row| row.device_id.as_str()))
                .map(str::to_string),
        );
        let identifiers = plan
            .identifiers
            .iter()
            .map(|row| self.identifier(row.key.kind.as_str(), &row.key.value, &row.key.partition));
        let assigned_ips = plan
            .devices
            .iter()
            .filter_map(|d| Some(self.ip(&d.record.partition, d.record.ip.as_deref()?)));
        let released_ips = plan
            .ip_releases
            .iter()
            .map(|release| self.ip(&release.partition, &release.ip));
        let staged = plan
            .staged
            .iter()
            .map(|row| self.staged(row.integration_source_id, &row.source_device_id));
        let keys: Vec<u64> = identifiers
            .chain(assigned_ips)
            .chain(released_ips)
            .chain(staged)
            .collect();
        self.keys.extend(keys);
    }

    fn identifier(&self, kind: &str, value: &str, partition: &str) -> u64 {
        self.hasher.hash_one((0u8, kind, value, partition))
    }

    fn ip(&self, partition: &str, ip: &str) -> u64 {
        self.hasher.hash_one((1u8, partition, ip))
    }

    fn staged(&self, source: Uuid, source_device_id: &str) -> u64 {
        self.hasher.hash_one((2u8, source, source_device_id))
    }

    /// True when the plan writes nothing a load can read.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.keys.is_empty()
    }

    /// True when a load made before the plan was applied (`staging` and
    /// `identity` are what it asked for, `snapshot` what it got) may differ
    /// from the same load made after: load again then.
    pub fn affect(
        &self,
        staging: &StagingRequest,
        identity: &SnapshotRequest,
        snapshot: &Snapshot,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let written = |key: u64| self.keys.contains(&key);
        let device = |uid: &str| self.devices.contains(uid);
        let mut identifiers = identity
            .identifier_types
            .iter()
            .zip(&identity.identifier_values)
            .zip(&identity.identifier_partitions);
        staging
            .sources
            .iter()
            .zip(&staging.devices)
            .any(|(source, id)| written(self.staged(*source, id)))
            || identifiers
                .any(|((kind, value), partition)| written(self.identifier(kind, value, partition)))
            || identity
                .ip_partitions
                .iter()
                .zip(&identity.ips)
                .any(|(partition, ip)| written(self.ip(partition, ip)))
            || identity.device_ids.iter().any(|id| device(id))
            || snapshot.devices().any(|d| device(&d.record.uid))
            || snapshot
                .identifiers()
                .keys()
                .any(|key| written(self.identifier(key.kind.as_str(), &key.value, &key.partition)))
            || snapshot
                .active_ips()
                .keys()
                .any(|(partition, ip)| written(self.ip(partition, ip)))
            || snapshot.staged_devices().any(device)
    }
}

#[cfg(test)]
mod tests {
    use sr_proto::DeviceUpdate;

    use super::super::device_record::DeviceRecord;
    use super::super::observation::observe;
    use super::super::planner::tests::{SOURCE_ID as SOURCE, update as faker};
    use super::super::planner::{PlanOptions, plan};
    use super::super::snapshot::{StagedState, StoredDevice};
    use super::*;

    /// A faker update of a source device, staged under [`SOURCE`].
    fn update(ip: &str, integration_id: &str) -> DeviceUpdate {
        faker(
            ip,
            &[
                ("integration_type", "faker"),
                ("integration_id", integration_id),
                ("integration_source_id", SOURCE),
            ],
        )
    }

    /// The writes of a batch planned against an empty tenant.
    fn writes_of(updates: &[DeviceUpdate]) -> (PlanWrites, Plan) {
        let plan = plan(updates, &Snapshot::default(), &PlanOptions::default());
        (PlanWrites::of(&plan), plan)
    }

    /// Whether an early load of `later` (with `snapshot` as its result) is
    /// affected by `writes`.
    fn affects(writes: &PlanWrites, later: &[DeviceUpdate], snapshot: &Snapshot) -> bool {
        let observations: Vec<_> = later.iter().map(observe).collect();
        writes.affect(
            &StagingRequest::for_batch(&observations),
            &SnapshotRequest::for_updates(&observations),
            snapshot,
        )
    }

    #[test]
    fn a_load_with_other_keys_is_kept() {
        let (writes, _) = writes_of(&[update("10.0.0.1", "1"), update("10.0.0.2", "2")]);
        assert!(!writes.is_empty());
        let later = [update("10.0.0.3", "3"), update("10.0.0.4", "4")];
        assert!(!affects(&writes, &later, &Snapshot::default()));
    }

    #[test]
    fn a_load_naming_what_the_plan_wrote_is_redone() {
        let (writes, _) = writes_of(&[update("10.0.0.1", "1")]);
        // The same source device again: its staging row, identifier and
        // derived id were all written.
        assert!(affects(
            &writes,
            &[update("10.0.0.1", "1")],
            &Snapshot::default()
        ));
        // Another device taking the IP the plan assigned.
        assert!(affects(
            &writes,
            &[update("10.0.0.1", "9")],
            &Snapshot::default()
        ));
        // The identifier alone, from another source and IP.
        let mut other_source = update("10.0.0.9", "1");
        other_source.metadata.remove("integration_source_id");
        assert!(affects(&writes, &[other_source], &Snapshot::default()));
    }

    #[test]
    fn a_load_holding_a_device_the_plan_changed_is_redone() {
        let (writes, plan) = writes_of(&[update("10.0.0.1", "1")]);
        let uid = plan.devices[0].record.uid.clone();
        let at = "2025-01-01T00:00:00Z".parse().unwrap();
        // A device the later batch reached by other keys.
        let snapshot = Snapshot::from_devices([StoredDevice::new(DeviceRecord::new(
            uid.clone(),
            "default".into(),
            at,
        ))]);
        assert!(affects(&writes, &[update("10.0.0.5", "5")], &snapshot));
        // A staging row pointing at it.
        let mut staged = Snapshot::default();
        staged.insert_staged(
            SOURCE.parse().unwrap(),
            "77".into(),
            StagedState {
                content_hash: None,
                last_seen: at,
                device_id: Some(uid),
                device_active: true,
            },
        );
        assert!(affects(&writes, &[update("10.0.0.5", "5")], &staged));
    }

    #[test]
    fn a_plan_that_writes_nothing_affects_no_load() {
        let writes = PlanWrites::of(&Plan::default());
        assert!(writes.is_empty());
        assert!(!affects(
            &writes,
            &[update("10.0.0.1", "1")],
            &Snapshot::default()
        ));
    }
}
