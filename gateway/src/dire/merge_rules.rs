//! Whether two devices that one update links may be merged.
//!
//! - The evidence (the update's identifiers that point at the other device)
//!   must not be MAC-only: a MAC is shared by docks, VMs, NAT boxes and
//!   cloned images too often to prove identity on its own. When every linking
//!   MAC is locally administered the reason is `medium_confidence_only`,
//!   otherwise `mac_only_conflict`.
//! - Two devices holding different values under the same exclusive key (two
//!   Armis ids, two agent ids, two integration ids of one integration type)
//!   are different devices: never merged (`conflicting_identifiers`).
//! - A pair an operator unmerged stays apart (`unmerged_by_operator`) until
//!   the operator merges it again by hand.

use std::fmt;

use super::identifiers::{Confidence, Identifier};

/// Why a merge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockReason {
    /// The only shared evidence is one or more strong MACs.
    MacOnlyConflict,
    /// The only shared evidence is locally administered MACs.
    MediumConfidenceOnly,
    /// The devices hold different values of an exclusive identifier.
    ConflictingIdentifiers,
    /// An operator reversed an earlier merge of this pair.
    UnmergedByOperator,
}

impl BlockReason {
    /// The `merge_audit.reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::MacOnlyConflict => "mac_only_conflict",
            BlockReason::MediumConfidenceOnly => "medium_confidence_only",
            BlockReason::ConflictingIdentifiers => "conflicting_identifiers",
            BlockReason::UnmergedByOperator => "unmerged_by_operator",
        }
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `merge_audit.reason` of an allowed merge.
pub const MERGE_REASON: &str = "shared_strong_identifier";

/// The outcome for one pair of devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeDecision {
    /// Merge the other device into the canonical one.
    Merge,
    /// Keep both; record why.
    Block(BlockReason),
}

/// Decides a merge from the linking evidence and the two facts about the
/// pair the planner knows.
pub fn decide(evidence: &[&Identifier], conflicting: bool, unmerged: bool) -> MergeDecision {
    if evidence.iter().all(|identifier| identifier.is_mac()) {
        let all_medium = evidence
            .iter()
            .all(|identifier| identifier.confidence == Confidence::Medium);
        return MergeDecision::Block(if all_medium && !evidence.is_empty() {
            BlockReason::MediumConfidenceOnly
        } else {
            BlockReason::MacOnlyConflict
        });
    }
    if conflicting {
        return MergeDecision::Block(BlockReason::ConflictingIdentifiers);
    }
    if unmerged {
        return MergeDecision::Block(BlockReason::UnmergedByOperator);
    }
    MergeDecision::Merge
}

#[cfg(test)]
mod tests {
    use super::super::identifiers::IdentifierType;
    use super::*;

    fn ident(kind: IdentifierType, confidence: Confidence) -> Identifier {
        Identifier {
            kind,
            value: "v".into(),
            seed_value: "v".into(),
            confidence,
        }
    }

    #[test]
    fn strong_non_mac_evidence_merges() {
        let armis = ident(IdentifierType::ArmisDeviceId, Confidence::Strong);
        let mac = ident(IdentifierType::Mac, Confidence::Strong);
        assert_eq!(decide(&[&armis], false, false), MergeDecision::Merge);
        assert_eq!(decide(&[&armis, &mac], false, false), MergeDecision::Merge);
    }

    #[test]
    fn mac_only_evidence_never_merges() {
        let mac = ident(IdentifierType::Mac, Confidence::Strong);
        assert_eq!(
            decide(&[&mac], false, false),
            MergeDecision::Block(BlockReason::MacOnlyConflict)
        );
        let local = ident(IdentifierType::Mac, Confidence::Medium);
        assert_eq!(
            decide(&[&local], false, false),
            MergeDecision::Block(BlockReason::MediumConfidenceOnly)
        );
        assert_eq!(
            decide(&[&local, &mac], false, false),
            MergeDecision::Block(BlockReason::MacOnlyConflict)
        );
        assert_eq!(
            decide(&[], false, false),
            MergeDecision::Block(BlockReason::MacOnlyConflict),
            "no evidence is never enough"
        );
    }

    #[test]
    fn conflicts_and_unmerged_pairs_block() {
        let netbox = ident(IdentifierType::NetboxDeviceId, Confidence::Strong);
        assert_eq!(
            decide(&[&netbox], true, false),
            MergeDecision::Block(BlockReason::ConflictingIdentifiers)
        );
        assert_eq!(
            decide(&[&netbox], false, true),
            MergeDecision::Block(BlockReason::UnmergedByOperator)
        );
    }
}
