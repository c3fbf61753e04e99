//! DIRE, the device identity reconciliation engine.
//!
//! DIRE turns a stream of DeviceUpdates from many sources into one canonical
//! `ocsf_devices` row per real device inside a tenant schema, following
//! `reference/dire.md` with one team decision on top: `integration_id`
//! identifiers are stored namespaced by integration type
//! (`<integration_type>:<id>`), so Armis device 17 and NetBox device 17 are
//! different devices (the canonical-id seed still uses the raw id).
//!
//! Pure decision logic, no I/O:
//! - [`identifiers`]: strong identifiers of an update, by priority;
//! - [`canonical_id`]: the deterministic `sr:` id;
//! - [`observation`]: an update normalised (partition, IP, fields, staging
//!   key, fingerprint);
//! - [`device_record`]: field-preserving, later-wins device updates;
//! - [`merge_rules`]: when two linked devices may merge;
//! - [`snapshot`]: the stored state a batch can touch, and what to look up;
//! - [`planner`]: resolution of a batch into a [`Plan`] of writes (only what
//!   changes);
//! - [`plan`](mod@plan): the plan's rows; [`stats`]: per-batch counters;
//! - [`schema`]: validated tenant schema names; [`error`]: [`DireError`].
//!
//! I/O: [`store`] loads what a batch needs in a constant number of round
//! trips, applies plans with bulk `UNNEST` statements and COPY, and offers
//! [`unmerge`]; [`reconcile`](mod@reconcile) runs a stream's batches with the
//! planning of one overlapping the apply of the one before, keeping an early
//! load only when [`plan_writes`] shows the previous plan wrote nothing it
//! read.
//!
//! Public API for the ingest layer: [`TenantSchema`] (`for_tenant`,
//! `parse`), [`reconcile`](fn@reconcile) with [`ReconcileOptions`], returning
//! [`BatchStats`] (mergeable with [`BatchStats::merge`]) or [`DireError`];
//! [`unmerge`] for operators.
//!
//! The ingest layer calls, once per stream, inside its own transaction:
//!
//! ```no_run
//! # async fn ingest(pool: sqlx::PgPool, tenant: uuid::Uuid, updates: Vec<sr_proto::DeviceUpdate>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use sqlx::Connection;
//! use sr_gateway::dire::{ReconcileOptions, TenantSchema, reconcile};
//!
//! let schema = TenantSchema::for_tenant(tenant);
//! let mut conn = pool.acquire().await?;
//! let mut tx = conn.begin().await?;
//! let stats = reconcile(&mut tx, &schema, updates.into(), &ReconcileOptions::default()).await?;
//! tx.commit().await?; // acknowledge the stream only now
//! # let _ = stats; Ok(()) }
//! ```
//!
//! Non-string identifier values cannot reach DIRE: `DeviceUpdate.metadata`
//! is a `map<string, string>`, so the ingest layer's JSON decoding refuses
//! or drops them before DIRE sees the update. Text containing NUL bytes is
//! refused by PostgreSQL and fails the stream; ingest should reject it first.

pub mod binary_copy;
pub mod canonical_id;
pub mod device_record;
pub mod error;
pub mod identifiers;
pub mod merge_rules;
pub mod observation;
pub mod plan;
pub mod plan_writes;
pub mod planner;
pub mod reconcile;
pub mod schema;
pub mod snapshot;
pub mod stats;
pub mod store;

pub use error::DireError;
pub use plan::Plan;
pub use planner::{PlanOptions, plan};
pub use reconcile::{reconcile, reconcile_with_reader};
pub use schema::TenantSchema;
pub use snapshot::Snapshot;
pub use stats::{BatchStats, SkipReason};
pub use store::{ReconcileOptions, UnmergeReport, apply_plan, load_snapshot, unmerge};
