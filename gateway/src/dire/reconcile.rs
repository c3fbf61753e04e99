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

use sqlx::{Connection, PgConnection, Postgres, Transaction};
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
    reconcile_with_reader(conn, None, schema, updates, options).await
}

/// [`reconcile`], with a second connection (`reader`, outside the caller's
/// transaction) for early loads: a batch's load then also overlaps the apply
/// of the batch before, and applying becomes the only work on `conn`. The
/// reader sees only what is committed, so an early load is kept only when
/// no plan of this stream so far wrote anything it read; the tenant lock
/// keeps every other writer out meanwhile.
pub async fn reconcile_with_reader(
    conn: &mut PgConnection,
    reader: Option<&mut PgConnection>,
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
    let mut reader = match reader {
        Some(reader) => Some(begin_reader(reader).await?),
        None => None,
    };
    let reads_committed = reader.is_some();

    // Two statements queued: the planner is never more than one plan ahead.
    let (writer_requests, writer_statements) = mpsc::channel(2);
    let (reader_requests, reader_statements) = mpsc::channel(2);
    let planner = {
        let (batch_size, plan_options) = (options.batch_size, options.plan.clone());
        let tenant_schema = schema.name().to_string();
        let store = StoreClient {
            writer: writer_requests,
            reader: reads_committed.then_some(reader_requests),
        };
        tokio::task::spawn_blocking(move || {
            plan_stream(&updates, batch_size, &plan_options, &tenant_schema, &store)
        })
    };
    let served = match reader.as_deref_mut() {
        Some(reader) => {
            let (written, read) = tokio::join!(
                serve(conn, schema, lock.stamp, writer_statements),
                serve(reader, schema, lock.stamp, reader_statements)
            );
            written.and(read)
        }
        None => serve(conn, schema, lock.stamp, writer_statements).await,
    };
    let planned = planner
        .await
        .map_err(|e| DireError::Planner(e.to_string()))?;
    served?;
    let (total, reloads) = planned?;
    if let Some(reader) = reader {
        reader
            .rollback()
            .await
            .map_err(DireError::db("ending the early-load transaction"))?;
    }
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
        reads_committed,
        reloads,
        lock_wait_ms,
        "DIRE reconciled stream"
    );
    Ok(total)
}

/// Starts the reader's read-only transaction, with JIT off as on the
/// writer. Under READ COMMITTED each of its loads sees what is committed
/// when it runs.
async fn begin_reader(reader: &mut PgConnection) -> Result<Transaction<'_, Postgres>, DireError> {
    let mut tx = reader
        .begin()
        .await
        .map_err(DireError::db("starting the early-load transaction"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(DireError::db("starting the early-load transaction"))?;
    sqlx::query("SELECT set_config('jit', 'off', true)")
        .execute(&mut *tx)
        .await
        .map_err(DireError::db("starting the early-load transaction"))?;
    Ok(tx)
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
/// is done or a statement fails. Owning `statements` matters: returning
/// drops it, which unblocks a planner waiting to send.
async fn serve(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    stamp: i64,
    mut statements: mpsc::Receiver<Statement>,
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

/// The planner's end of the connections.
struct StoreClient {
    /// The caller's transaction: applies, and loads that must see them.
    writer: mpsc::Sender<Statement>,
    /// Early loads, when there is a second connection.
    reader: Option<mpsc::Sender<Statement>>,
}

/// Which connection a load runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The reader if there is one, else the writer before the pending plan.
    Early,
    /// The writer, behind every plan submitted so far.
    Writer,
}

impl StoreClient {
    fn channel(&self, via: Via) -> &mpsc::Sender<Statement> {
        match (via, &self.reader) {
            (Via::Early, Some(reader)) => reader,
            _ => &self.writer,
        }
    }

    fn staging(
        &self,
        via: Via,
        request: StagingRequest,
    ) -> Result<(Snapshot, StagingRequest), DireError> {
        let (reply, answer) = oneshot::channel();
        send(self.channel(via), Statement::Staging { request, reply })?;
        answer.blocking_recv().map_err(|_| stopped())
    }

    fn identity(
        &self,
        via: Via,
        request: SnapshotRequest,
        snapshot: Snapshot,
    ) -> Result<(Snapshot, SnapshotRequest), DireError> {
        let (reply, answer) = oneshot::channel();
        let statement = Statement::Identity {
            request,
            snapshot,
            reply,
        };
        send(self.channel(via), statement)?;
        answer.blocking_recv().map_err(|_| stopped())
    }

    fn apply(&self, plan: Plan) -> Result<(), DireError> {
        send(&self.writer, Statement::Apply(plan))
    }
}

fn send(channel: &mpsc::Sender<Statement>, statement: Statement) -> Result<(), DireError> {
    channel.blocking_send(statement).map_err(|_| stopped())
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
    via: Via,
    observations: &[Observation<'_>],
    touched: &HashSet<String>,
) -> Result<Loaded, DireError> {
    let staging = StagingRequest::for_batch(observations);
    let (snapshot, staging) = if staging.sources.is_empty() {
        (Snapshot::default(), staging)
    } else {
        store.staging(via, staging)?
    };
    let applied = applied_updates(observations, &snapshot, touched);
    let identity = SnapshotRequest::for_batch(observations, &applied);
    let (snapshot, identity) = if identity.is_empty() {
        (snapshot, identity)
    } else {
        store.identity(via, identity, snapshot)?
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
            PlanPass::Load(request) => {
                snapshot = store.identity(Via::Writer, request, snapshot)?.0;
            }
        }
    }
}

/// The planner thread: every batch of the stream, each loaded early (before
/// the previous plan is submitted, or on the reader) and planned while the
/// previous plan is applied. Returns the stream's counters and how many
/// batches had to be loaded again.
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
    // What an early load may have missed: the plan it overtook, or, read
    // from outside the transaction, every plan of the stream so far.
    let mut missed = PlanWrites::default();
    let mut unapplied: Option<Plan> = None;
    for (batch, chunk) in updates.chunks(batch_size).enumerate() {
        let observations: Vec<Observation<'_>> = chunk.iter().map(observe).collect();
        let mut loaded = load(store, Via::Early, &observations, &touched)?;
        if let Some(previous) = unapplied.take() {
            if store.reader.is_some() {
                missed.extend(&previous);
            } else {
                missed = PlanWrites::of(&previous);
            }
            store.apply(previous)?;
        }
        let reloaded = missed.affect(&loaded.staging, &loaded.identity, &loaded.snapshot);
        if reloaded {
            // Queued behind every plan submitted: sees what they wrote.
            loaded = load(store, Via::Writer, &observations, &touched)?;
            reloads += 1;
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
