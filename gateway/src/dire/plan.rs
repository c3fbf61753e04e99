//! What the planner decided for a batch: exactly the writes the store must
//! make, nothing for what is unchanged.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::device_record::DeviceRecord;
use super::identifiers::Confidence;
use super::merge_rules::BlockReason;
use super::snapshot::{IdentifierKey, Snapshot};
use super::stats::{BatchStats, SkipReason};

/// A device row to insert or update (only rows that differ from the store).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceUpsert {
    /// The full row as it must be after the batch.
    pub record: DeviceRecord,
    /// True when the row does not exist yet.
    pub is_new: bool,
}

/// An identifier row to insert, move or refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentifierUpsert {
    /// (type, value, partition).
    pub key: IdentifierKey,
    /// True when no row has this key yet (a plain insert suffices).
    pub is_new: bool,
    /// The device it points at.
    pub device_id: String,
    /// Strong or medium.
    pub confidence: Confidence,
    /// Source of the observation that wrote it.
    pub source: Option<String>,
    /// Used on insert only.
    pub first_seen: DateTime<Utc>,
    /// Time of the observation that wrote it.
    pub last_seen: DateTime<Utc>,
}

/// A device whose stored active IP must be cleared before any device takes
/// a new IP (the active-IP index checks every row immediately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRelease {
    /// The device.
    pub device_id: String,
    /// Its partition.
    pub partition: String,
    /// The IP it held.
    pub ip: String,
}

/// An IP that moved from one device to another (churn, not identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpMove {
    /// Partition.
    pub partition: String,
    /// The IP.
    pub ip: String,
    /// Device that held it.
    pub from_device: String,
    /// Device that holds it now.
    pub to_device: String,
}

/// A merge: `from` is marked merged into `to`; its identifiers moved (they
/// are among the identifier upserts) and the evidence explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRecord {
    /// The loser.
    pub from: String,
    /// The survivor.
    pub to: String,
    /// Partition of both.
    pub partition: String,
    /// `{reason, linked_by, moved_identifiers, observation}`; `unmerge`
    /// reverses a merge from `moved_identifiers`.
    pub evidence: Value,
}

/// A merge the rules refused; both devices stay.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockedMerge {
    /// The device that was not merged.
    pub from: String,
    /// The device the update resolved to.
    pub to: String,
    /// Partition of both.
    pub partition: String,
    /// Why.
    pub reason: BlockReason,
    /// `{reason, linked_by, conflicts, observation}`.
    pub evidence: Value,
}

/// A `discovered_devices` row: one per (integration source, source device).
#[derive(Debug, Clone, PartialEq)]
pub struct StagedDevice {
    /// True when the row does not exist yet (a plain insert suffices).
    pub is_new: bool,
    /// Integration source record.
    pub integration_source_id: Uuid,
    /// The source's own id.
    pub source_device_id: String,
    /// Integration type.
    pub source: String,
    /// Resolved canonical id.
    pub device_id: String,
    /// Partition.
    pub partition: String,
    /// Primary IP.
    pub ip: Option<String>,
    /// All IPs.
    pub ip_addresses: Vec<String>,
    /// All MACs.
    pub mac_addresses: Vec<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Device type.
    pub device_type: Option<String>,
    /// Assigned agent.
    pub agent_id: Option<String>,
    /// The update's metadata.
    pub metadata: Map<String, Value>,
    /// The source's raw record.
    pub raw_data: Option<Value>,
    /// Run that reported it.
    pub sync_run_id: Option<String>,
    /// Observation time.
    pub seen: DateTime<Utc>,
    /// Fingerprint of the update staged (see
    /// [`fingerprint`](super::observation::fingerprint)).
    pub content_hash: String,
}

/// What became of one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Reconciled onto this device.
    Device(String),
    /// Not reconciled.
    Skipped(SkipReason),
}

/// The planner's output for one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Changed or new device rows, ordered by id.
    pub devices: Vec<DeviceUpsert>,
    /// New, moved or refreshed identifier rows, ordered by key.
    pub identifiers: Vec<IdentifierUpsert>,
    /// Stored IPs to clear first.
    pub ip_releases: Vec<IpRelease>,
    /// IP moves, for the record.
    pub ip_moves: Vec<IpMove>,
    /// Merges, in decision order.
    pub merges: Vec<MergeRecord>,
    /// Refused merges, in decision order.
    pub blocked_merges: Vec<BlockedMerge>,
    /// New or changed staging rows, ordered by key.
    pub staged: Vec<StagedDevice>,
    /// One per update, in input order.
    pub resolutions: Vec<Resolution>,
    /// Counters.
    pub stats: BatchStats,
    /// Updates skipped as already applied whose device this plan changes:
    /// the plan is void, plan again without skipping them.
    pub replan: Vec<usize>,
    /// Existing devices that gain or lose a staging row (and so perhaps
    /// their agent) without the plan writing their row: the store stamps
    /// them as changed. Set by the planner from [`Plan::reassigned`].
    pub reassigned_devices: Vec<String>,
}

impl Plan {
    /// Devices this plan writes, clears an IP of, or merges.
    pub fn touched_devices(&self) -> impl Iterator<Item = &str> {
        self.devices
            .iter()
            .map(|d| d.record.uid.as_str())
            .chain(self.ip_releases.iter().map(|r| r.device_id.as_str()))
            .chain(
                self.merges
                    .iter()
                    .flat_map(|m| [m.from.as_str(), m.to.as_str()]),
            )
            .chain(self.identifiers.iter().map(|i| i.device_id.as_str()))
    }

    /// The first identifier row pointing at a device that neither is in
    /// `snapshot` (the stored devices the plan was made from) nor is written
    /// by this plan. The store refuses such a plan before writing anything:
    /// identifiers have no per-row foreign key (see the tenant migration
    /// `0002`), so this check is what keeps them pointing at devices.
    pub fn dangling_identifier(&self, snapshot: &Snapshot) -> Option<&IdentifierUpsert> {
        if self.identifiers.is_empty() {
            return None;
        }
        let written: HashSet<&str> = self.devices.iter().map(|d| d.record.uid.as_str()).collect();
        self.identifiers.iter().find(|identifier| {
            !written.contains(identifier.device_id.as_str())
                && snapshot.device(&identifier.device_id).is_none()
        })
    }

    /// Existing devices whose staging rows change by this plan (given the
    /// stored rows in `snapshot`): the device of a new staging row, both
    /// devices of a re-pointed one, and merge survivors (the store re-points
    /// the merged device's staging rows to them). Devices the plan creates
    /// are left out: they are new anyway. Sorted, without repeats.
    pub fn reassigned(&self, snapshot: &Snapshot) -> Vec<String> {
        let created: HashSet<&str> = self
            .devices
            .iter()
            .filter(|d| d.is_new)
            .map(|d| d.record.uid.as_str())
            .collect();
        let mut reassigned = std::collections::BTreeSet::new();
        for row in &self.staged {
            let previous = if row.is_new {
                None
            } else {
                snapshot
                    .staged_row(row.integration_source_id, &row.source_device_id)
                    .and_then(|state| state.device_id.as_deref())
            };
            if previous != Some(row.device_id.as_str()) {
                reassigned.insert(row.device_id.as_str());
                reassigned.extend(previous);
            }
        }
        reassigned.extend(self.merges.iter().map(|m| m.to.as_str()));
        reassigned
            .into_iter()
            .filter(|uid| !created.contains(uid))
            .map(str::to_string)
            .collect()
    }

    /// True when the batch changes no device, identifier, IP or merge state
    /// (staging rows may still need the store's change check).
    pub fn changes_nothing_but_staging(&self) -> bool {
        self.devices.is_empty()
            && self.identifiers.is_empty()
            && self.ip_releases.is_empty()
            && self.merges.is_empty()
            && self.blocked_merges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dire::snapshot::StagedState;

    fn staged(source: Uuid, source_device: &str, device: &str, is_new: bool) -> StagedDevice {
        StagedDevice {
            is_new,
            integration_source_id: source,
            source_device_id: source_device.into(),
            source: "faker".into(),
            device_id: device.into(),
            partition: "default".into(),
            ip: None,
            ip_addresses: Vec::new(),
            mac_addresses: Vec::new(),
            hostname: None,
            device_type: None,
            agent_id: None,
            metadata: Map::new(),
            raw_data: None,
            sync_run_id: None,
            seen: DateTime::UNIX_EPOCH,
            content_hash: String::new(),
        }
    }

    fn stored_row(device: &str) -> StagedState {
        StagedState {
            content_hash: None,
            last_seen: DateTime::UNIX_EPOCH,
            device_id: Some(device.into()),
            device_active: true,
        }
    }

    #[test]
    fn reassigned_devices_are_those_gaining_or_losing_a_staging_row() {
        let source = Uuid::new_v4();
        let mut snapshot = Snapshot::default();
        snapshot.insert_staged(source, "moved".into(), stored_row("sr:old"));
        snapshot.insert_staged(source, "same".into(), stored_row("sr:kept"));
        let plan = Plan {
            devices: vec![DeviceUpsert {
                record: DeviceRecord::new(
                    "sr:created".into(),
                    "default".into(),
                    DateTime::UNIX_EPOCH,
                ),
                is_new: true,
            }],
            staged: vec![
                // Re-pointed: both devices' assignment may change.
                staged(source, "moved", "sr:new", false),
                // Rewritten, same device: no change of assignment.
                staged(source, "same", "sr:kept", false),
                // A new row for an existing device.
                staged(source, "fresh", "sr:existing", true),
                // A new row for a device this plan creates: stamped anyway.
                staged(source, "first", "sr:created", true),
            ],
            merges: vec![MergeRecord {
                from: "sr:loser".into(),
                to: "sr:survivor".into(),
                partition: "default".into(),
                evidence: Value::Null,
            }],
            ..Plan::default()
        };
        assert_eq!(
            plan.reassigned(&snapshot),
            ["sr:existing", "sr:new", "sr:old", "sr:survivor"]
        );
        assert!(Plan::default().reassigned(&snapshot).is_empty());
    }
}
