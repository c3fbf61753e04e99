//! The per-stream reconcile loop, with planning and applying overlapped.
//!
//! A stream's batches go load → plan → apply. Planning is gateway CPU and
//! applying is PostgreSQL work, and one transaction has one connection, so
//! done in turn each side idles while the other works. Here a planner thread
//! drives the batches and the calling task serves its statements, in order,
//! on the transaction's connection. The planner loads batch k+1 *before*
//! submitting batch k's plan, and plans k+1 while PostgreSQL applies k. That
//! early load is kept only when plan k writes nothing it read or looked up
//! ([`PlanWrites::affect`]); otherwise the batch is loaded again, queued
//! behind plan k. Every statement still runs in the order a sequential loop
//! would give it meaning, so the result is the same as load → plan → apply,
//! batch after batch.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use sqlx::PgConnection;
use sr_proto::DeviceUpdate;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use super::error::DireError;
use super::observation::{Observation, observe};
use super::plan::Plan;
use super::plan_writes::PlanWrites;
use super::planner::{PlanOptions, PlanPass, applied_updates, plan_pass};
use super::schema::TenantSchema;
use super::snapshot::{Snapshot, SnapshotRequest, StagingRequest};
use super::stats::BatchStats;
use super::store::{
    ReconcileOptions, apply_plan, fetch_identity, fetch_staging, lock_tenant, restore_settings,
};

/// Reconciles a stream's updates into a tenant schema.
///
/// `conn` must be inside a transaction the caller owns (one per stream;
/// acknowledge the stream only after committing it). The first statement
/// takes a transaction-scoped advisory lock for the tenant, so concurrent
/// streams of one tenant serialise instead of racing on unique keys; each
/// then sees what the previous one committed and the later observation wins
/// field by field (the transaction must use READ COMMITTED, the default, for
/// that: a later statement has to see what the previous holder of the lock
/// committed). Updates are processed in batches of `options.batch_size`:
/// load → plan → apply, with the planning of a batch overlapping the apply
/// of the one before (see the module docs). Applying the same updates again
/// gives the same rows (at-least-once delivery), and an unchanged re-sync
/// writes nothing. JIT compilation is off while DIRE runs and restored
/// afterwards. On error the transaction must be rolled back.
pub async fn reconcile(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    updates: Arc<[DeviceUpdate]>,
    options: &ReconcileOptions,
) -> Result<BatchStats, DireError> {
    if options.batch_size == 0 {
        return Err(DireError::InvalidBatchSize);
    }
    let waiting = Instant::now();
    let lock = lock_tenant(conn, schema).await?;
    // Streams of one tenant take turns; how long this one queued.
    let lock_wait_ms = waiting.elapsed().as_millis() as u64;

    // Two statements queued: the planner is never more than one plan ahead.
    let (store, mut statements) = mpsc::channel(2);
    let planner = {
        let (batch_size, plan_options) = (options.batch_size, options.plan.clone());
        let tenant_schema = schema.name().to_string();
        tokio::task::spawn_blocking(move || {
            plan_stream(
                &updates,
                batch_size,
                &plan_options,
                &tenant_schema,
                &StoreClient(store),
            )
        })
    };
    let served = serve(conn, schema, lock.stamp, &mut statements).await;
    // After a failed statement the planner's next request finds no server.
    drop(statements);
    let planned = planner
        .await
        .map_err(|e| DireError::Planner(e.to_string()))?;
    served?;
    let (total, reloads) = planned?;
    restore_settings(conn, &lock.jit).await?;
    info!(
        tenant_schema = schema.name(),
        updates = total.updates,
        new_devices = total.new_devices,
        updated_devices = total.updated_devices,
        unchanged_devices = total.unchanged_devices,
        identifiers_written = total.identifiers_written,
        merges = total.merges,
        blocked_merges = total.blocked_merges,
        ip_moves = total.ip_moves,
        skipped = total.skipped_total(),
        reloads,
        lock_wait_ms,
        "DIRE reconciled stream"
    );
    Ok(total)
}

/// A statement the planner asks the connection's task to run.
enum Statement {
    /// Load staging rows into a fresh snapshot.
    Staging {
        request: StagingRequest,
        reply: oneshot::Sender<(Snapshot, StagingRequest)>,
    },
    /// Load identity state into a snapshot.
    Identity {
        request: SnapshotRequest,
        snapshot: Snapshot,
        reply: oneshot::Sender<(Snapshot, SnapshotRequest)>,
    },
    /// Apply a plan (no reply: a failure ends the stream).
    Apply(Plan),
}

/// Runs the planner's statements in the order they arrive, until the planner
/// is done or a statement fails.
async fn serve(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    stamp: i64,
    statements: &mut mpsc::Receiver<Statement>,
) -> Result<(), DireError> {
    while let Some(statement) = statements.recv().await {
        match statement {
            Statement::Staging { request, reply } => {
                let mut snapshot = Snapshot::default();
                fetch_staging(conn, schema, &request, &mut snapshot).await?;
                let _ = reply.send((snapshot, request));
            }
            Statement::Identity {
                request,
                mut snapshot,
                reply,
            } => {
                fetch_identity(conn, schema, &request, &mut snapshot).await?;
                let _ = reply.send((snapshot, request));
            }
            Statement::Apply(plan) => apply_plan(conn, schema, &plan, stamp).await?,
        }
    }
    Ok(())
}

/// The planner's end of the connection.
struct StoreClient(mpsc::Sender<Statement>);

impl StoreClient {
    fn send(&self, statement: Statement) -> Result<(), DireError> {
        self.0.blocking_send(statement).map_err(|_| stopped())
    }

    fn staging(&self, request: StagingRequest) -> Result<(Snapshot, StagingRequest), DireError> {
        let (reply, answer) = oneshot::channel();
        self.send(Statement::Staging { request, reply })?;
        answer.blocking_recv().map_err(|_| stopped())
    }

    fn identity(
        &self,
        request: SnapshotRequest,
        snapshot: Snapshot,
    ) -> Result<(Snapshot, SnapshotRequest), DireError> {
        let (reply, answer) = oneshot::channel();
        self.send(Statement::Identity {
            request,
            snapshot,
            reply,
        })?;
        answer.blocking_recv().map_err(|_| stopped())
    }

    fn apply(&self, plan: Plan) -> Result<(), DireError> {
        self.send(Statement::Apply(plan))
    }
}

/// The connection's task stopped serving: a statement failed, and that
/// failure is what `reconcile` reports.
fn stopped() -> DireError {
    DireError::Planner("the connection stopped serving after a failed statement".into())
}

/// What a batch's load asked for and got.
struct Loaded {
    staging: StagingRequest,
    identity: SnapshotRequest,
    snapshot: Snapshot,
    /// See [`applied_updates`].
    applied: Vec<Option<String>>,
}

/// Loads a batch: its staging rows, then the identity state of the updates
/// not already applied.
fn load(
    store: &StoreClient,
    observations: &[Observation<'_>],
    touched: &HashSet<String>,
) -> Result<Loaded, DireError> {
    let staging = StagingRequest::for_batch(observations);
    let (snapshot, staging) = if staging.sources.is_empty() {
        (Snapshot::default(), staging)
    } else {
        store.staging(staging)?
    };
    let applied = applied_updates(observations, &snapshot, touched);
    let identity = SnapshotRequest::for_batch(observations, &applied);
    let (snapshot, identity) = if identity.is_empty() {
        (snapshot, identity)
    } else {
        store.identity(identity, snapshot)?
    };
    Ok(Loaded {
        staging,
        identity,
        snapshot,
        applied,
    })
}

/// Plans a loaded batch, loading skipped updates it must plan after all.
fn plan_loaded(
    store: &StoreClient,
    observations: &[Observation<'_>],
    loaded: Loaded,
    options: &PlanOptions,
) -> Result<Plan, DireError> {
    let Loaded {
        mut snapshot,
        mut applied,
        ..
    } = loaded;
    loop {
        match plan_pass(observations, &mut applied, &snapshot, options)? {
            PlanPass::Done(plan) => return Ok(*plan),
            PlanPass::Load(request) => snapshot = store.identity(request, snapshot)?.0,
        }
    }
}

/// The planner thread: every batch of the stream, each loaded before the
/// previous plan is submitted and planned while it is applied. Returns the
/// stream's counters and how many batches had to be loaded again.
fn plan_stream(
    updates: &[DeviceUpdate],
    batch_size: usize,
    options: &PlanOptions,
    tenant_schema: &str,
    store: &StoreClient,
) -> Result<(BatchStats, u64), DireError> {
    let mut total = BatchStats::default();
    let mut reloads = 0;
    let mut touched = HashSet::new();
    let mut unapplied: Option<Plan> = None;
    for (batch, chunk) in updates.chunks(batch_size).enumerate() {
        let observations: Vec<Observation<'_>> = chunk.iter().map(observe).collect();
        let mut loaded = load(store, &observations, &touched)?;
        let mut reloaded = false;
        if let Some(previous) = unapplied.take() {
            let stale = PlanWrites::of(&previous).affect(
                &loaded.staging,
                &loaded.identity,
                &loaded.snapshot,
            );
            store.apply(previous)?;
            if stale {
                // Queued behind the previous plan: sees what it wrote.
                loaded = load(store, &observations, &touched)?;
                reloaded = true;
                reloads += 1;
            }
        }
        let plan = plan_loaded(store, &observations, loaded, options)?;
        touched.extend(plan.touched_devices().map(str::to_string));
        debug!(
            tenant_schema,
            batch,
            reloaded,
            updates = plan.stats.updates,
            new_devices = plan.stats.new_devices,
            updated_devices = plan.stats.updated_devices,
            unchanged_devices = plan.stats.unchanged_devices,
            merges = plan.stats.merges,
            blocked_merges = plan.stats.blocked_merges,
            ip_moves = plan.stats.ip_moves,
            "DIRE batch planned"
        );
        total.merge(&plan.stats);
        unapplied = Some(plan);
    }
    if let Some(last) = unapplied {
        store.apply(last)?;
    }
    Ok((total, reloads))
}
