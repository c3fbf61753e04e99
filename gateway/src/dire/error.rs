//! Errors of DIRE's store layer.

/// Why reconciling (or reversing a merge) failed. A failed `reconcile`
/// leaves the caller's transaction unusable: roll it back, and let the sender
/// retry the stream (nothing was acknowledged).
#[derive(Debug, thiserror::Error)]
pub enum DireError {
    /// A tenant schema name that is not `t_` + 32 lower-case hex digits.
    #[error(
        "invalid tenant schema name {name:?}: expected `t_` followed by the tenant UUID as 32 lower-case hex digits"
    )]
    InvalidSchema {
        /// The name given.
        name: String,
    },
    /// Called outside a transaction.
    #[error(
        "DIRE must run inside a transaction the caller owns: begin one (`conn.begin()`), call DIRE, then commit"
    )]
    NotInTransaction,
    /// The transaction does not use READ COMMITTED.
    #[error(
        "DIRE needs READ COMMITTED isolation so that a batch waiting for the tenant lock sees the batch before it; the transaction uses {level}"
    )]
    Isolation {
        /// The isolation level found.
        level: String,
    },
    /// `ReconcileOptions::batch_size` is 0.
    #[error("reconcile batch size must be at least 1")]
    InvalidBatchSize,
    /// A statement failed; the transaction must be rolled back.
    #[error("{context} failed (roll the transaction back; the stream can be retried): {source}")]
    Database {
        /// What DIRE was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A plan would write an identifier pointing at a device that does not
    /// exist; nothing was written.
    #[error(
        "DIRE planned identifier {kind}={value} for device {device_id}, which neither exists nor is created by the batch; nothing was written (this is a DIRE defect: report it with the stream)"
    )]
    DanglingIdentifier {
        /// Identifier type.
        kind: String,
        /// Identifier value.
        value: String,
        /// The device it would point at.
        device_id: String,
    },
    /// The planner thread of a stream failed or lost its connection.
    #[error("DIRE's planner stopped (roll the transaction back; the stream can be retried): {0}")]
    Planner(String),
    /// The merge audit row does not exist.
    #[error("merge audit row {id} does not exist in this tenant")]
    AuditNotFound {
        /// The row id.
        id: i64,
    },
    /// The audit row records something other than a merge.
    #[error(
        "merge audit row {id} records a `{action}` decision; only `merged` rows can be reversed"
    )]
    NotAMerge {
        /// The row id.
        id: i64,
        /// Its action.
        action: String,
    },
    /// The merge was already reversed.
    #[error("the merge recorded in audit row {id} was already reversed")]
    AlreadyUnmerged {
        /// The row id.
        id: i64,
    },
    /// The loser is no longer merged into the survivor recorded by the audit
    /// row (a later merge or manual edit changed it).
    #[error(
        "device {from} is no longer merged into {to}, so audit row {id} cannot be reversed; reverse the later merge first"
    )]
    MergeNotCurrent {
        /// The row id.
        id: i64,
        /// The merged-away device.
        from: String,
        /// The survivor recorded by the row.
        to: String,
    },
    /// The audit row's evidence lacks the moved identifiers.
    #[error("merge audit row {id} has no readable `moved_identifiers` evidence: {detail}")]
    BadEvidence {
        /// The row id.
        id: i64,
        /// What is wrong.
        detail: String,
    },
}

impl DireError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> DireError {
        move |source| DireError::Database { context, source }
    }
}
