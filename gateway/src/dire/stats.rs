//! Per-batch counters, mergeable across batches and streams.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::AddAssign;

use serde::Serialize;

/// Why an update was not reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No strong identifier, no IP and no device id: a random id would make
    /// every redelivery a new device, so the update is dropped.
    NoIdentity,
    /// The update names an existing device id of another partition.
    PartitionMismatch,
}

impl SkipReason {
    /// Stable name used in stats and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoIdentity => "no_identity",
            SkipReason::PartitionMismatch => "partition_mismatch",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What reconciling a batch (or a whole stream) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    /// Updates received.
    pub updates: u64,
    /// Devices created.
    pub new_devices: u64,
    /// Existing devices whose row changed.
    pub updated_devices: u64,
    /// Devices updates resolved to whose row did not change (nothing written).
    pub unchanged_devices: u64,
    /// Identifier rows inserted or changed.
    pub identifiers_written: u64,
    /// Devices merged into another.
    pub merges: u64,
    /// Merges refused by the merge rules (the audit keeps one row per pair
    /// and reason, so repeated refusals are counted here but not re-audited).
    pub blocked_merges: u64,
    /// IPs that moved from one device to another.
    pub ip_moves: u64,
    /// New or changed `discovered_devices` rows written (unchanged ones are
    /// recognised by their fingerprint and not written).
    pub staged: u64,
    /// Updates reconciled but not staged because `integration_source_id` is
    /// not a UUID.
    pub unstaged_invalid_source: u64,
    /// Existing devices whose staging rows changed while the device row did
    /// not: the agent they are assigned to may have changed.
    pub reassigned_devices: u64,
    /// Updates skipped, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
}

impl BatchStats {
    /// Adds another batch's counts to these.
    pub fn merge(&mut self, other: &BatchStats) {
        self.updates += other.updates;
        self.new_devices += other.new_devices;
        self.updated_devices += other.updated_devices;
        self.unchanged_devices += other.unchanged_devices;
        self.identifiers_written += other.identifiers_written;
        self.merges += other.merges;
        self.blocked_merges += other.blocked_merges;
        self.ip_moves += other.ip_moves;
        self.staged += other.staged;
        self.unstaged_invalid_source += other.unstaged_invalid_source;
        self.reassigned_devices += other.reassigned_devices;
        for (reason, count) in &other.skipped {
            *self.skipped.entry(*reason).or_default() += count;
        }
    }

    /// Updates skipped for any reason.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

impl AddAssign<&BatchStats> for BatchStats {
    fn add_assign(&mut self, other: &BatchStats) {
        self.merge(other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_every_counter() {
        let mut a = BatchStats {
            updates: 2,
            new_devices: 1,
            skipped: BTreeMap::from([(SkipReason::NoIdentity, 1)]),
            ..BatchStats::default()
        };
        let b = BatchStats {
            updates: 3,
            updated_devices: 2,
            unchanged_devices: 1,
            identifiers_written: 4,
            merges: 1,
            blocked_merges: 1,
            ip_moves: 2,
            staged: 3,
            unstaged_invalid_source: 1,
            skipped: BTreeMap::from([
                (SkipReason::NoIdentity, 2),
                (SkipReason::PartitionMismatch, 1),
            ]),
            ..BatchStats::default()
        };
        a += &b;
        assert_eq!(a.updates, 5);
        assert_eq!(a.new_devices, 1);
        assert_eq!(a.updated_devices, 2);
        assert_eq!(a.identifiers_written, 4);
        assert_eq!(a.skipped[&SkipReason::NoIdentity], 3);
        assert_eq!(a.skipped_total(), 4);
        assert_eq!(
            serde_json::to_value(&a).unwrap()["skipped"]["no_identity"],
            3
        );
    }
}
