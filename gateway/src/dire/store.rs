//! DIRE's SQL layer: a constant number of round trips to load what a batch
//! needs (one for its staging rows, one for the identity state of the
//! updates not already applied), bulk `UNNEST` statements and COPY to apply
//! a plan, the tenant lock the per-stream loop
//! ([`reconcile`](super::reconcile::reconcile)) takes, the sequential
//! load → plan step [`plan_batch`], and `unmerge`.
//!
//! Every statement names its tables schema-qualified with a validated
//! [`TenantSchema`]; nothing depends on `search_path`. Statement order in
//! [`apply_plan`] matters:
//!
//! 1. release IPs (the partial unique index `ocsf_devices_active_ip` checks
//!    every row immediately, so an IP swap must clear both IPs first);
//! 2. insert new devices and upsert changed ones (new survivors must exist
//!    before anything points at them);
//! 3. mark merges (and re-point staging rows of merged devices);
//! 4. upsert identifiers;
//! 5. write the merge audit (refusals are recorded once per pair and reason);
//! 6. stage `discovered_devices`.
//!
//! The planner leaves unchanged devices, identifiers and staging rows (by
//! fingerprint) out of the plan, so an unchanged re-sync writes and locks
//! nothing; every upsert also carries a `WHERE … IS DISTINCT FROM …` guard so
//! that re-applying identical rows creates no new row versions.

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, Row};
use sr_proto::DeviceUpdate;
use tracing::info;
use uuid::Uuid;

use super::binary_copy::{CopyWriter, EncodeError};
use super::device_record::{DeviceFields, DeviceRecord};
use super::error::DireError;
use super::identifiers::{Confidence, IdentifierType};
use super::observation::{Observation, observe};
use super::plan::{DeviceUpsert, IdentifierUpsert, Plan, StagedDevice};
use super::planner::{PlanOptions, PlanPass, applied_updates, plan_pass};
use super::schema::TenantSchema;
use super::snapshot::{
    Snapshot, SnapshotRequest, StagedState, StagingRequest, StoredDevice, StoredIdentifier,
};

/// How `reconcile` works through a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// Updates per batch (two lookup round trips and one set of bulk
    /// statements each). Default 2,000.
    pub batch_size: usize,
    /// Planner knobs.
    pub plan: PlanOptions,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self {
            batch_size: 2_000,
            plan: PlanOptions::default(),
        }
    }
}

/// What [`lock_tenant`] hands back.
pub(super) struct TenantLock {
    /// The caller's JIT setting, for [`restore_settings`].
    pub(super) jit: String,
    /// This transaction's change stamp (see the tenant migration `0003`).
    pub(super) stamp: i64,
}

/// Takes the tenant's transaction-scoped DIRE lock (released at commit or
/// rollback), checks the isolation level, draws the transaction's change
/// stamp (after the lock, so stamps grow in commit order), and turns JIT
/// compilation off for DIRE's statements: their cost estimates are high
/// while their run time is short, and compiling each batch's statements
/// costs more than it saves.
pub(super) async fn lock_tenant(
    conn: &mut PgConnection,
    schema: &TenantSchema,
) -> Result<TenantLock, DireError> {
    if !conn.is_in_transaction() {
        return Err(DireError::NotInTransaction);
    }
    let (class, object) = schema.lock_keys();
    let (level, jit, stamp): (String, String, i64) = sqlx::query_as(
        "WITH locked AS MATERIALIZED ( \
             SELECT current_setting('transaction_isolation') AS level, \
                    current_setting('jit') AS jit, \
                    nextval($3::regclass) AS stamp \
             FROM (SELECT pg_advisory_xact_lock($1, $2)) AS tenant_lock) \
         SELECT level, jit, stamp FROM locked \
         WHERE set_config('jit', 'off', true) IS NOT NULL",
    )
    .bind(class)
    .bind(object)
    .bind(format!("{}.device_change_seq", schema.quoted()))
    .fetch_one(&mut *conn)
    .await
    .map_err(DireError::db("taking the tenant's DIRE lock"))?;
    if level != "read committed" {
        return Err(DireError::Isolation { level });
    }
    Ok(TenantLock { jit, stamp })
}

/// Gives the caller's transaction its JIT setting back.
pub(super) async fn restore_settings(conn: &mut PgConnection, jit: &str) -> Result<(), DireError> {
    sqlx::query("SELECT set_config('jit', $1, true)")
        .bind(jit)
        .execute(&mut *conn)
        .await
        .map_err(DireError::db("restoring the transaction's settings"))?;
    Ok(())
}

/// Loads everything a batch of updates can touch (the staging rows it names
/// and the identity state of all its updates).
pub async fn load_snapshot(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    batch: &[DeviceUpdate],
) -> Result<Snapshot, DireError> {
    let observations: Vec<Observation<'_>> = batch.iter().map(observe).collect();
    let mut snapshot = Snapshot::default();
    fetch_staging(
        conn,
        schema,
        &StagingRequest::for_batch(&observations),
        &mut snapshot,
    )
    .await?;
    let request = SnapshotRequest::for_updates(&observations);
    if !request.is_empty() {
        fetch_identity(conn, schema, &request, &mut snapshot).await?;
    }
    Ok(snapshot)
}

/// The `WHERE` clause of the active-IP index; queries repeat it verbatim so
/// PostgreSQL can use the partial index.
const ACTIVE_IP: &str = "d.ip IS NOT NULL AND d.merged_into IS NULL AND d.deleted_at IS NULL \
                         AND d.uid NOT LIKE 'serviceradar:%'";

/// Loads what a batch needs and plans it. Usually two statements whatever
/// the batch size: first the staging rows the batch names (an update whose
/// fingerprint is stored there, for an active device nothing earlier in the
/// stream changed, was already applied and needs nothing else), then the
/// identity state of the remaining updates (skipped when none remain, as in
/// an unchanged re-sync). Only when a planned update changes the device of a
/// skipped one is that one loaded and the batch planned again.
///
/// Every lookup is a `LATERAL (… OFFSET 0)` probe: the fence keeps the
/// planner on per-key index scans even while a first load grows the tables
/// inside one transaction, where statistics still say "empty" (a hash join
/// or a misordered nested loop there costs seconds per batch).
pub async fn plan_batch(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    observations: &[Observation<'_>],
    touched: &HashSet<String>,
    options: &PlanOptions,
) -> Result<Plan, DireError> {
    let mut snapshot = Snapshot::default();
    fetch_staging(
        conn,
        schema,
        &StagingRequest::for_batch(observations),
        &mut snapshot,
    )
    .await?;
    let mut applied = applied_updates(observations, &snapshot, touched);
    let request = SnapshotRequest::for_batch(observations, &applied);
    if !request.is_empty() {
        fetch_identity(conn, schema, &request, &mut snapshot).await?;
    }
    loop {
        match plan_pass(observations, &mut applied, &snapshot, options)? {
            PlanPass::Done(plan) => return Ok(*plan),
            PlanPass::Load(request) => {
                fetch_identity(conn, schema, &request, &mut snapshot).await?;
            }
        }
    }
}

/// (integration source, source device, fingerprint, last seen, device,
/// device active).
type StagingRow = (
    Uuid,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<String>,
    bool,
);

/// Adds the stored staging rows named by `request` to `snapshot`.
pub async fn fetch_staging(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    request: &StagingRequest,
    snapshot: &mut Snapshot,
) -> Result<(), DireError> {
    if request.sources.is_empty() {
        return Ok(());
    }
    let s = schema.quoted();
    let rows: Vec<StagingRow> = sqlx::query_as(&format!(
        "SELECT k.src, k.sdid, hit.content_hash, hit.last_seen, hit.device_id, \
                    COALESCE(dev.active, false) \
             FROM UNNEST($1::uuid[], $2::text[]) AS k(src, sdid) \
             CROSS JOIN LATERAL ( \
                 SELECT st.content_hash, st.last_seen, st.device_id \
                 FROM {s}.discovered_devices st \
                 WHERE st.integration_source_id = k.src AND st.source_device_id = k.sdid \
                 OFFSET 0) hit \
             LEFT JOIN LATERAL ( \
                 SELECT (d.merged_into IS NULL AND d.deleted_at IS NULL) AS active \
                 FROM {s}.ocsf_devices d WHERE d.uid = hit.device_id OFFSET 0) dev ON true"
    ))
    .bind(&request.sources)
    .bind(&request.devices)
    .fetch_all(&mut *conn)
    .await
    .map_err(DireError::db("loading staging state"))?;
    for (source, device, content_hash, last_seen, device_id, device_active) in rows {
        snapshot.insert_staged(
            source,
            device,
            StagedState {
                content_hash,
                last_seen,
                device_id,
                device_active,
            },
        );
    }
    Ok(())
}

/// Adds the identity state for `request` to `snapshot` in one statement:
/// identifier hits, active-IP holders and named ids, merge chains followed,
/// each referenced device with its identifiers and the devices an operator
/// unmerged from it.
pub async fn fetch_identity(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    request: &SnapshotRequest,
    snapshot: &mut Snapshot,
) -> Result<(), DireError> {
    let s = schema.quoted();
    let sql = format!(
        "WITH RECURSIVE seeds AS ( \
             SELECT hit.device_id AS uid \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS k(t, v, p) \
             CROSS JOIN LATERAL ( \
                 SELECT i.device_id FROM {s}.device_identifiers i \
                 WHERE i.identifier_type = k.t AND i.identifier_value = k.v \
                   AND i.partition = k.p OFFSET 0) hit \
             UNION \
             SELECT hit.uid FROM UNNEST($4::text[], $5::text[]) AS a(p, ip) \
             CROSS JOIN LATERAL ( \
                 SELECT d.uid FROM {s}.ocsf_devices d \
                 WHERE d.partition = a.p AND d.ip = a.ip AND {ACTIVE_IP} OFFSET 0) hit \
             UNION \
             SELECT n.uid FROM UNNEST($6::text[]) AS n(uid) \
         ), refs AS ( \
             SELECT d.uid, d.merged_into, 0 AS depth \
             FROM seeds CROSS JOIN LATERAL ( \
                 SELECT d.uid, d.merged_into FROM {s}.ocsf_devices d \
                 WHERE d.uid = seeds.uid OFFSET 0) d \
             UNION ALL \
             SELECT d.uid, d.merged_into, refs.depth + 1 \
             FROM refs CROSS JOIN LATERAL ( \
                 SELECT d.uid, d.merged_into FROM {s}.ocsf_devices d \
                 WHERE d.uid = refs.merged_into OFFSET 0) d \
             WHERE refs.depth < 16 \
         ) \
         SELECT d.uid, d.partition, d.ip, d.mac, d.hostname, d.device_type, d.vendor_name, \
                d.model, d.os_name, d.serial_number, d.agent_id, d.gateway_id, d.is_available, \
                d.confidence, d.discovery_sources, d.metadata, d.first_seen_time, \
                d.last_seen_time, d.merged_into, (d.deleted_at IS NOT NULL) AS deleted, \
                ids.types, ids.vals, ids.parts, ids.confs, ids.seen, um.partners \
         FROM (SELECT DISTINCT uid FROM refs) r \
         CROSS JOIN LATERAL (SELECT * FROM {s}.ocsf_devices d WHERE d.uid = r.uid OFFSET 0) d \
         CROSS JOIN LATERAL ( \
             SELECT COALESCE(array_agg(i.identifier_type), '{{}}') AS types, \
                    COALESCE(array_agg(i.identifier_value), '{{}}') AS vals, \
                    COALESCE(array_agg(i.partition), '{{}}') AS parts, \
                    COALESCE(array_agg(i.confidence), '{{}}') AS confs, \
                    COALESCE(array_agg(i.last_seen), '{{}}') AS seen \
             FROM {s}.device_identifiers i WHERE i.device_id = d.uid \
         ) ids \
         CROSS JOIN LATERAL ( \
             SELECT COALESCE(array_agg(a.to_device_id), '{{}}') AS partners \
             FROM {s}.merge_audit a \
             WHERE a.from_device_id = d.uid AND a.action = 'unmerged' \
         ) um"
    );
    let rows = sqlx::query(&sql)
        .bind(&request.identifier_types)
        .bind(&request.identifier_values)
        .bind(&request.identifier_partitions)
        .bind(&request.ip_partitions)
        .bind(&request.ips)
        .bind(&request.device_ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(DireError::db("loading the identity snapshot"))?;
    for row in &rows {
        snapshot
            .insert(stored_device(row).map_err(DireError::db("decoding the identity snapshot"))?);
    }
    Ok(())
}

fn stored_device(row: &PgRow) -> Result<StoredDevice, sqlx::Error> {
    let metadata = match row.try_get::<Value, _>("metadata")? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let record = DeviceRecord {
        uid: row.try_get("uid")?,
        partition: row.try_get("partition")?,
        ip: row.try_get("ip")?,
        fields: DeviceFields {
            mac: row.try_get("mac")?,
            hostname: row.try_get("hostname")?,
            device_type: row.try_get("device_type")?,
            vendor_name: row.try_get("vendor_name")?,
            model: row.try_get("model")?,
            os_name: row.try_get("os_name")?,
            serial_number: row.try_get("serial_number")?,
            agent_id: row.try_get("agent_id")?,
            gateway_id: row.try_get("gateway_id")?,
            is_available: row.try_get("is_available")?,
            confidence: row.try_get("confidence")?,
        },
        discovery_sources: row.try_get("discovery_sources")?,
        metadata,
        first_seen: row.try_get("first_seen_time")?,
        last_seen: row.try_get("last_seen_time")?,
        deleted: row.try_get("deleted")?,
    };
    let types: Vec<String> = row.try_get("types")?;
    let values: Vec<String> = row.try_get("vals")?;
    let partitions: Vec<String> = row.try_get("parts")?;
    let confidences: Vec<String> = row.try_get("confs")?;
    let seen: Vec<DateTime<Utc>> = row.try_get("seen")?;
    let identifiers = types
        .iter()
        .zip(values)
        .zip(partitions)
        .zip(confidences)
        .zip(seen)
        // Identifier types DIRE does not know (written by something else)
        // cannot match an update, so they are left out.
        .filter_map(|((((kind, value), partition), confidence), last_seen)| {
            Some(StoredIdentifier {
                kind: IdentifierType::parse(kind)?,
                value,
                partition,
                confidence: Confidence::parse(&confidence),
                last_seen,
            })
        })
        .collect();
    Ok(StoredDevice {
        record,
        merged_into: row.try_get("merged_into")?,
        identifiers,
        unmerged_from: row.try_get("partners")?,
    })
}

/// Applies a plan with bulk statements (see the module docs for the order).
/// Every device row it writes gets `stamp`, the transaction's change stamp
/// (see the tenant migration `0003`), unless the write leaves what a sweep
/// reads of it unchanged (a new `last_seen_time`, say); so do the devices in
/// [`Plan::reassigned_devices`].
pub async fn apply_plan(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    plan: &Plan,
    stamp: i64,
) -> Result<(), DireError> {
    let s = schema.quoted();
    release_ips(conn, &s, plan, stamp).await?;
    upsert_devices(conn, &s, plan, stamp).await?;
    mark_merges(conn, &s, plan, stamp).await?;
    upsert_identifiers(conn, &s, plan).await?;
    write_audit(conn, &s, plan).await?;
    stage(conn, &s, plan).await?;
    stamp_reassigned(conn, &s, plan, stamp).await
}

/// Stamps the devices whose staging rows changed without the device row
/// being written: their agent assignment may have changed.
async fn stamp_reassigned(
    conn: &mut PgConnection,
    s: &str,
    plan: &Plan,
    stamp: i64,
) -> Result<(), DireError> {
    if plan.reassigned_devices.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "UPDATE {s}.ocsf_devices SET change_stamp = $2 \
         WHERE uid = ANY($1::text[]) AND change_stamp <> $2"
    ))
    .bind(&plan.reassigned_devices)
    .bind(stamp)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("stamping reassigned devices"))?;
    Ok(())
}

async fn release_ips(
    conn: &mut PgConnection,
    s: &str,
    plan: &Plan,
    stamp: i64,
) -> Result<(), DireError> {
    if plan.ip_releases.is_empty() {
        return Ok(());
    }
    let uids: Vec<&str> = plan
        .ip_releases
        .iter()
        .map(|r| r.device_id.as_str())
        .collect();
    sqlx::query(&format!(
        "UPDATE {s}.ocsf_devices AS d SET ip = NULL, modified_time = now(), change_stamp = $2 \
         WHERE d.uid = ANY($1::text[]) AND d.ip IS NOT NULL"
    ))
    .bind(&uids)
    .bind(stamp)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("releasing moved IPs"))?;
    Ok(())
}

/// Separator of `discovery_sources` when bound as one text per row (the
/// ASCII unit separator, stripped from source names).
const SOURCE_SEPARATOR: char = '\u{1f}';

/// A source name as stored: without [`SOURCE_SEPARATOR`], the same on the
/// COPY and the upsert path.
fn stored_source(source: &str) -> Cow<'_, str> {
    if source.contains(SOURCE_SEPARATOR) {
        Cow::Owned(source.replace(SOURCE_SEPARATOR, ""))
    } else {
        Cow::Borrowed(source)
    }
}

/// Error of a COPY payload that could not be encoded.
fn encode_error(context: &'static str) -> impl FnOnce(EncodeError) -> DireError {
    move |error| DireError::Database {
        context,
        source: sqlx::Error::Encode(Box::new(error)),
    }
}

/// Where a binary COPY of new rows goes.
struct CopyTarget {
    /// Table in the tenant schema.
    table: &'static str,
    /// Columns, in the order each row writes its fields.
    columns: &'static [&'static str],
    /// Expected payload bytes per row, to size the buffer once.
    bytes_per_row: usize,
    /// What the COPY does, for errors.
    context: &'static str,
}

/// Inserts `rows` into `target` with one binary `COPY … FROM STDIN`;
/// `write` writes one row's fields, in the order of `target.columns`. Only
/// rows the plan knows are new go this way: the tenant lock keeps other
/// DIRE writers out, so a unique violation here means the same as it did
/// for a plain `INSERT` (something outside DIRE wrote the row meanwhile):
/// the stream fails and is retried.
async fn copy_rows<T>(
    conn: &mut PgConnection,
    s: &str,
    target: &CopyTarget,
    rows: &[T],
    mut write: impl FnMut(&mut CopyWriter, &T),
) -> Result<(), DireError> {
    let CopyTarget {
        table,
        columns,
        bytes_per_row,
        context,
    } = *target;
    if rows.is_empty() {
        return Ok(());
    }
    let mut payload = CopyWriter::with_capacity(rows.len() * bytes_per_row);
    for row in rows {
        payload.row(columns.len());
        write(&mut payload, row);
    }
    let written = payload.rows();
    let bytes = payload.finish().map_err(encode_error(context))?;
    let statement = format!(
        "COPY {s}.{table} ({}) FROM STDIN (FORMAT binary)",
        columns.join(", ")
    );
    let mut copy = conn
        .copy_in_raw(&statement)
        .await
        .map_err(DireError::db(context))?;
    copy.send(bytes).await.map_err(DireError::db(context))?;
    let copied = copy.finish().await.map_err(DireError::db(context))?;
    debug_assert_eq!(copied, written, "{context}: COPY row count");
    Ok(())
}

async fn upsert_devices(
    conn: &mut PgConnection,
    s: &str,
    plan: &Plan,
    stamp: i64,
) -> Result<(), DireError> {
    // A new device is never deleted; should one be, the upsert path sets
    // `deleted_at` as it does for existing rows.
    let (new, existing): (Vec<&DeviceUpsert>, Vec<&DeviceUpsert>) = plan
        .devices
        .iter()
        .partition(|upsert| upsert.is_new && !upsert.record.deleted);
    copy_devices(conn, s, &new, stamp).await?;
    write_devices(conn, s, &existing, stamp).await
}

/// Inserts device rows the plan knows are new with a binary COPY.
async fn copy_devices(
    conn: &mut PgConnection,
    s: &str,
    rows: &[&DeviceUpsert],
    stamp: i64,
) -> Result<(), DireError> {
    const TARGET: CopyTarget = CopyTarget {
        table: "ocsf_devices",
        columns: &[
            "uid",
            "partition",
            "ip",
            "mac",
            "hostname",
            "device_type",
            "vendor_name",
            "model",
            "os_name",
            "serial_number",
            "agent_id",
            "gateway_id",
            "is_available",
            "confidence",
            "discovery_sources",
            "metadata",
            "first_seen_time",
            "last_seen_time",
            "change_stamp",
        ],
        bytes_per_row: 512,
        context: "inserting new devices",
    };
    copy_rows(conn, s, &TARGET, rows, |payload, upsert| {
        let r = &upsert.record;
        let f = &r.fields;
        payload
            .text(&r.uid)
            .text(&r.partition)
            .opt_text(r.ip.as_deref())
            .opt_text(f.mac.as_deref())
            .opt_text(f.hostname.as_deref())
            .opt_text(f.device_type.as_deref())
            .opt_text(f.vendor_name.as_deref())
            .opt_text(f.model.as_deref())
            .opt_text(f.os_name.as_deref())
            .opt_text(f.serial_number.as_deref())
            .opt_text(f.agent_id.as_deref())
            .opt_text(f.gateway_id.as_deref())
            .opt_bool(f.is_available)
            .opt_int4(f.confidence)
            .text_array(
                r.discovery_sources
                    .iter()
                    .map(|source| stored_source(source)),
            )
            .jsonb(&r.metadata)
            .timestamptz(r.first_seen)
            .timestamptz(r.last_seen)
            .int8(stamp);
    })
    .await
}

/// Upserts device rows that may exist.
async fn write_devices(
    conn: &mut PgConnection,
    s: &str,
    rows: &[&DeviceUpsert],
    stamp: i64,
) -> Result<(), DireError> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let mut uid = Vec::with_capacity(n);
    let mut partition = Vec::with_capacity(n);
    let mut ip = Vec::with_capacity(n);
    let mut mac = Vec::with_capacity(n);
    let mut hostname = Vec::with_capacity(n);
    let mut device_type = Vec::with_capacity(n);
    let mut vendor = Vec::with_capacity(n);
    let mut model = Vec::with_capacity(n);
    let mut os = Vec::with_capacity(n);
    let mut serial = Vec::with_capacity(n);
    let mut agent = Vec::with_capacity(n);
    let mut gateway = Vec::with_capacity(n);
    let mut available = Vec::with_capacity(n);
    let mut confidence = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut first_seen = Vec::with_capacity(n);
    let mut last_seen = Vec::with_capacity(n);
    let mut deleted = Vec::with_capacity(n);
    for upsert in rows {
        let r = &upsert.record;
        uid.push(r.uid.as_str());
        partition.push(r.partition.as_str());
        ip.push(r.ip.as_deref());
        mac.push(r.fields.mac.as_deref());
        hostname.push(r.fields.hostname.as_deref());
        device_type.push(r.fields.device_type.as_deref());
        vendor.push(r.fields.vendor_name.as_deref());
        model.push(r.fields.model.as_deref());
        os.push(r.fields.os_name.as_deref());
        serial.push(r.fields.serial_number.as_deref());
        agent.push(r.fields.agent_id.as_deref());
        gateway.push(r.fields.gateway_id.as_deref());
        available.push(r.fields.is_available);
        confidence.push(r.fields.confidence);
        sources.push(
            r.discovery_sources
                .iter()
                .map(|source| stored_source(source))
                .collect::<Vec<_>>()
                .join(&SOURCE_SEPARATOR.to_string()),
        );
        metadata.push(Json(&r.metadata));
        first_seen.push(r.first_seen);
        last_seen.push(r.last_seen);
        deleted.push(r.deleted);
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.ocsf_devices AS d (uid, partition, ip, mac, hostname, device_type, \
             vendor_name, model, os_name, serial_number, agent_id, gateway_id, is_available, \
             confidence, discovery_sources, metadata, first_seen_time, last_seen_time, deleted_at, \
             change_stamp) \
         SELECT u.uid, u.partition, u.ip, u.mac, u.hostname, u.device_type, u.vendor_name, \
                u.model, u.os_name, u.serial_number, u.agent_id, u.gateway_id, u.is_available, \
                u.confidence, string_to_array(u.sources, E'\\x1f'), u.metadata, \
                u.first_seen, u.last_seen, CASE WHEN u.deleted THEN now() END, $20 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
                     $13::bool[], $14::int4[], $15::text[], $16::jsonb[], $17::timestamptz[], \
                     $18::timestamptz[], $19::bool[]) \
              AS u(uid, partition, ip, mac, hostname, device_type, vendor_name, model, os_name, \
                   serial_number, agent_id, gateway_id, is_available, confidence, sources, \
                   metadata, first_seen, last_seen, deleted) \
         ON CONFLICT (uid) DO UPDATE SET \
             ip = EXCLUDED.ip, mac = EXCLUDED.mac, hostname = EXCLUDED.hostname, \
             device_type = EXCLUDED.device_type, vendor_name = EXCLUDED.vendor_name, \
             model = EXCLUDED.model, os_name = EXCLUDED.os_name, \
             serial_number = EXCLUDED.serial_number, agent_id = EXCLUDED.agent_id, \
             gateway_id = EXCLUDED.gateway_id, is_available = EXCLUDED.is_available, \
             confidence = EXCLUDED.confidence, discovery_sources = EXCLUDED.discovery_sources, \
             metadata = EXCLUDED.metadata, first_seen_time = EXCLUDED.first_seen_time, \
             last_seen_time = EXCLUDED.last_seen_time, \
             deleted_at = CASE WHEN EXCLUDED.deleted_at IS NULL THEN NULL \
                               ELSE COALESCE(d.deleted_at, EXCLUDED.deleted_at) END, \
             modified_time = now(), \
             change_stamp = CASE WHEN (d.ip, d.hostname, d.partition, d.agent_id, \
                                       d.discovery_sources, d.metadata, d.deleted_at IS NULL) \
                                      IS DISTINCT FROM \
                                      (EXCLUDED.ip, EXCLUDED.hostname, EXCLUDED.partition, \
                                       EXCLUDED.agent_id, EXCLUDED.discovery_sources, \
                                       EXCLUDED.metadata, EXCLUDED.deleted_at IS NULL) \
                                 THEN EXCLUDED.change_stamp ELSE d.change_stamp END \
         WHERE (d.ip, d.mac, d.hostname, d.device_type, d.vendor_name, d.model, d.os_name, \
                d.serial_number, d.agent_id, d.gateway_id, d.is_available, d.confidence, \
                d.discovery_sources, d.metadata, d.first_seen_time, d.last_seen_time, \
                d.deleted_at IS NULL) \
           IS DISTINCT FROM \
               (EXCLUDED.ip, EXCLUDED.mac, EXCLUDED.hostname, EXCLUDED.device_type, \
                EXCLUDED.vendor_name, EXCLUDED.model, EXCLUDED.os_name, EXCLUDED.serial_number, \
                EXCLUDED.agent_id, EXCLUDED.gateway_id, EXCLUDED.is_available, \
                EXCLUDED.confidence, EXCLUDED.discovery_sources, EXCLUDED.metadata, \
                EXCLUDED.first_seen_time, EXCLUDED.last_seen_time, EXCLUDED.deleted_at IS NULL)"
    ))
    .bind(&uid)
    .bind(&partition)
    .bind(&ip)
    .bind(&mac)
    .bind(&hostname)
    .bind(&device_type)
    .bind(&vendor)
    .bind(&model)
    .bind(&os)
    .bind(&serial)
    .bind(&agent)
    .bind(&gateway)
    .bind(&available)
    .bind(&confidence)
    .bind(&sources)
    .bind(&metadata)
    .bind(&first_seen)
    .bind(&last_seen)
    .bind(&deleted)
    .bind(stamp)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("updating devices"))?;
    Ok(())
}

async fn mark_merges(
    conn: &mut PgConnection,
    s: &str,
    plan: &Plan,
    stamp: i64,
) -> Result<(), DireError> {
    if plan.merges.is_empty() {
        return Ok(());
    }
    let from: Vec<&str> = plan.merges.iter().map(|m| m.from.as_str()).collect();
    let to: Vec<&str> = plan.merges.iter().map(|m| m.to.as_str()).collect();
    sqlx::query(&format!(
        "WITH m AS (SELECT * FROM UNNEST($1::text[], $2::text[]) AS m(from_id, to_id)), \
         merged AS ( \
             UPDATE {s}.ocsf_devices AS d \
             SET merged_into = m.to_id, merged_at = now(), modified_time = now(), \
                 change_stamp = $3 \
             FROM m WHERE d.uid = m.from_id RETURNING d.uid \
         ) \
         UPDATE {s}.discovered_devices AS st SET device_id = m.to_id \
         FROM m WHERE st.device_id = m.from_id"
    ))
    .bind(&from)
    .bind(&to)
    .bind(stamp)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("marking merged devices"))?;
    Ok(())
}

async fn upsert_identifiers(
    conn: &mut PgConnection,
    s: &str,
    plan: &Plan,
) -> Result<(), DireError> {
    let (new, existing): (Vec<&IdentifierUpsert>, Vec<&IdentifierUpsert>) =
        plan.identifiers.iter().partition(|row| row.is_new);
    copy_identifiers(conn, s, &new).await?;
    write_identifiers(conn, s, &existing).await
}

/// Inserts identifier rows the plan knows are new with a binary COPY.
async fn copy_identifiers(
    conn: &mut PgConnection,
    s: &str,
    rows: &[&IdentifierUpsert],
) -> Result<(), DireError> {
    const TARGET: CopyTarget = CopyTarget {
        table: "device_identifiers",
        columns: &[
            "identifier_type",
            "identifier_value",
            "partition",
            "device_id",
            "confidence",
            "source",
            "first_seen",
            "last_seen",
        ],
        bytes_per_row: 160,
        context: "inserting device identifiers",
    };
    copy_rows(conn, s, &TARGET, rows, |payload, row| {
        payload
            .text(row.key.kind.as_str())
            .text(&row.key.value)
            .text(&row.key.partition)
            .text(&row.device_id)
            .text(row.confidence.as_str())
            .opt_text(row.source.as_deref())
            .timestamptz(row.first_seen)
            .timestamptz(row.last_seen);
    })
    .await
}

/// Upserts identifier rows that exist (moved or refreshed).
async fn write_identifiers(
    conn: &mut PgConnection,
    s: &str,
    rows: &[&IdentifierUpsert],
) -> Result<(), DireError> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let mut kind = Vec::with_capacity(n);
    let mut value = Vec::with_capacity(n);
    let mut partition = Vec::with_capacity(n);
    let mut device = Vec::with_capacity(n);
    let mut confidence = Vec::with_capacity(n);
    let mut source = Vec::with_capacity(n);
    let mut first_seen = Vec::with_capacity(n);
    let mut last_seen = Vec::with_capacity(n);
    for row in rows {
        kind.push(row.key.kind.as_str());
        value.push(row.key.value.as_str());
        partition.push(row.key.partition.as_str());
        device.push(row.device_id.as_str());
        confidence.push(row.confidence.as_str());
        source.push(row.source.as_deref());
        first_seen.push(row.first_seen);
        last_seen.push(row.last_seen);
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.device_identifiers AS i (identifier_type, identifier_value, partition, \
             device_id, confidence, source, first_seen, last_seen) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                              $6::text[], $7::timestamptz[], $8::timestamptz[]) \
         ON CONFLICT (identifier_type, identifier_value, partition) DO UPDATE SET \
             device_id = EXCLUDED.device_id, confidence = EXCLUDED.confidence, \
             source = EXCLUDED.source, last_seen = EXCLUDED.last_seen \
         WHERE (i.device_id, i.confidence, i.source, i.last_seen) \
               IS DISTINCT FROM \
               (EXCLUDED.device_id, EXCLUDED.confidence, EXCLUDED.source, EXCLUDED.last_seen)"
    ))
    .bind(&kind)
    .bind(&value)
    .bind(&partition)
    .bind(&device)
    .bind(&confidence)
    .bind(&source)
    .bind(&first_seen)
    .bind(&last_seen)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("updating device identifiers"))?;
    Ok(())
}

async fn write_audit(conn: &mut PgConnection, s: &str, plan: &Plan) -> Result<(), DireError> {
    let n = plan.merges.len() + plan.blocked_merges.len();
    if n == 0 {
        return Ok(());
    }
    let mut from = Vec::with_capacity(n);
    let mut to = Vec::with_capacity(n);
    let mut action = Vec::with_capacity(n);
    let mut reason = Vec::with_capacity(n);
    let mut evidence = Vec::with_capacity(n);
    let mut partition = Vec::with_capacity(n);
    for merge in &plan.merges {
        from.push(merge.from.as_str());
        to.push(merge.to.as_str());
        action.push("merged");
        reason.push(super::merge_rules::MERGE_REASON);
        evidence.push(&merge.evidence);
        partition.push(merge.partition.as_str());
    }
    for blocked in &plan.blocked_merges {
        from.push(blocked.from.as_str());
        to.push(blocked.to.as_str());
        action.push("blocked");
        reason.push(blocked.reason.as_str());
        evidence.push(&blocked.evidence);
        partition.push(blocked.partition.as_str());
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.merge_audit (from_device_id, to_device_id, action, reason, evidence, \
             partition) \
         SELECT u.f, u.t, u.a, u.r, u.e, u.p \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[]) \
              AS u(f, t, a, r, e, p) \
         WHERE u.a <> 'blocked' OR NOT EXISTS ( \
             SELECT 1 FROM {s}.merge_audit x \
             WHERE x.from_device_id = u.f AND x.to_device_id = u.t \
               AND x.action = 'blocked' AND x.reason = u.r)"
    ))
    .bind(&from)
    .bind(&to)
    .bind(&action)
    .bind(&reason)
    .bind(&evidence)
    .bind(&partition)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("writing the merge audit"))?;
    Ok(())
}

async fn stage(conn: &mut PgConnection, s: &str, plan: &Plan) -> Result<(), DireError> {
    let (new, existing): (Vec<&StagedDevice>, Vec<&StagedDevice>) =
        plan.staged.iter().partition(|row| row.is_new);
    copy_staged(conn, s, &new).await?;
    write_staged(conn, s, &existing).await
}

/// Inserts staging rows the plan knows are new with a binary COPY.
async fn copy_staged(
    conn: &mut PgConnection,
    s: &str,
    rows: &[&StagedDevice],
) -> Result<(), DireError> {
    const TARGET: CopyTarget = CopyTarget {
        table: "discovered_devices",
        columns: &[
            "integration_source_id",
            "source_device_id",
            "source",
            "device_id",
            "partition",
            "ip",
            "ip_addresses",
            "mac_addresses",
            "hostname",
            "device_type",
            "agent_id",
            "metadata",
            "raw_data",
            "sync_run_id",
            "content_hash",
            "first_seen",
            "last_seen",
        ],
        bytes_per_row: 1024,
        context: "staging discovered devices",
    };
    copy_rows(conn, s, &TARGET, rows, |payload, row| {
        payload
            .uuid(row.integration_source_id)
            .text(&row.source_device_id)
            .text(&row.source)
            .text(&row.device_id)
            .text(&row.partition)
            .opt_text(row.ip.as_deref())
            .text_array(row.ip_addresses.iter())
            .text_array(row.mac_addresses.iter())
            .opt_text(row.hostname.as_deref())
            .opt_text(row.device_type.as_deref())
            .opt_text(row.agent_id.as_deref())
            .jsonb(&row.metadata)
            .opt_jsonb(row.raw_data.as_ref())
            .opt_text(row.sync_run_id.as_deref())
            .text(&row.content_hash)
            .timestamptz(row.seen)
            .timestamptz(row.seen);
    })
    .await
}

/// Upserts staging rows that exist.
async fn write_staged(
    conn: &mut PgConnection,
    s: &str,
    rows: &[&StagedDevice],
) -> Result<(), DireError> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let mut source_id = Vec::with_capacity(n);
    let mut source_device = Vec::with_capacity(n);
    let mut source = Vec::with_capacity(n);
    let mut device = Vec::with_capacity(n);
    let mut partition = Vec::with_capacity(n);
    let mut ip = Vec::with_capacity(n);
    let mut ips = Vec::with_capacity(n);
    let mut macs = Vec::with_capacity(n);
    let mut hostname = Vec::with_capacity(n);
    let mut device_type = Vec::with_capacity(n);
    let mut agent = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n);
    let mut run = Vec::with_capacity(n);
    let mut seen = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    for row in rows {
        source_id.push(row.integration_source_id);
        source_device.push(row.source_device_id.as_str());
        source.push(row.source.as_str());
        device.push(row.device_id.as_str());
        partition.push(row.partition.as_str());
        ip.push(row.ip.as_deref());
        // IPs and MACs never contain commas (they were split on them).
        ips.push(row.ip_addresses.join(","));
        macs.push(row.mac_addresses.join(","));
        hostname.push(row.hostname.as_deref());
        device_type.push(row.device_type.as_deref());
        agent.push(row.agent_id.as_deref());
        metadata.push(Json(&row.metadata));
        raw.push(row.raw_data.as_ref());
        run.push(row.sync_run_id.as_deref());
        seen.push(row.seen);
        hash.push(row.content_hash.as_str());
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.discovered_devices AS d (integration_source_id, source_device_id, \
             source, device_id, partition, ip, ip_addresses, mac_addresses, hostname, \
             device_type, agent_id, metadata, raw_data, sync_run_id, content_hash, first_seen, \
             last_seen) \
         SELECT u.source_id, u.source_device_id, u.source, u.device_id, u.partition, u.ip, \
                string_to_array(u.ips, ','), string_to_array(u.macs, ','), u.hostname, \
                u.device_type, u.agent_id, u.metadata, u.raw_data, u.sync_run_id, \
                u.content_hash, u.seen, u.seen \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
                     $12::jsonb[], $13::jsonb[], $14::text[], $15::text[], \
                     $16::timestamptz[]) \
              AS u(source_id, source_device_id, source, device_id, partition, ip, ips, macs, \
                   hostname, device_type, agent_id, metadata, raw_data, sync_run_id, \
                   content_hash, seen) \
         ON CONFLICT (integration_source_id, source_device_id) DO UPDATE SET \
             source = EXCLUDED.source, device_id = EXCLUDED.device_id, \
             partition = EXCLUDED.partition, ip = EXCLUDED.ip, \
             ip_addresses = EXCLUDED.ip_addresses, mac_addresses = EXCLUDED.mac_addresses, \
             hostname = EXCLUDED.hostname, device_type = EXCLUDED.device_type, \
             agent_id = EXCLUDED.agent_id, metadata = EXCLUDED.metadata, \
             raw_data = EXCLUDED.raw_data, sync_run_id = EXCLUDED.sync_run_id, \
             content_hash = EXCLUDED.content_hash, \
             first_seen = LEAST(d.first_seen, EXCLUDED.first_seen), \
             last_seen = EXCLUDED.last_seen \
         WHERE EXCLUDED.last_seen >= d.last_seen \
           AND (d.content_hash, d.device_id) IS DISTINCT FROM \
               (EXCLUDED.content_hash, EXCLUDED.device_id)"
    ))
    .bind(&source_id)
    .bind(&source_device)
    .bind(&source)
    .bind(&device)
    .bind(&partition)
    .bind(&ip)
    .bind(&ips)
    .bind(&macs)
    .bind(&hostname)
    .bind(&device_type)
    .bind(&agent)
    .bind(&metadata)
    .bind(&raw)
    .bind(&run)
    .bind(&hash)
    .bind(&seen)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("staging discovered devices"))?;
    Ok(())
}

/// What [`unmerge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmergeReport {
    /// The reversed `merged` audit row.
    pub audit_id: i64,
    /// The device restored.
    pub device_id: String,
    /// The device it had been merged into.
    pub survivor_id: String,
    /// Identifiers moved back (those the survivor still held).
    pub restored_identifiers: Vec<(String, String)>,
    /// True when the restored device's old IP is held by another device now
    /// and was cleared.
    pub ip_cleared: bool,
}

/// Reverses the merge recorded in `merge_audit` row `audit_id`: the
/// identifiers the merge moved go back to the merged-away device (where the
/// survivor still holds them), `merged_into` is cleared, and an `unmerged`
/// audit row records it. DIRE will not merge the pair again on its own.
/// Staging rows keep pointing at the survivor until their source reports
/// them again. Runs inside the caller's transaction and takes the tenant's
/// DIRE lock.
pub async fn unmerge(
    conn: &mut PgConnection,
    schema: &TenantSchema,
    audit_id: i64,
) -> Result<UnmergeReport, DireError> {
    let lock = lock_tenant(conn, schema).await?;
    let s = schema.quoted();
    let row: Option<(String, String, String, Value)> = sqlx::query_as(&format!(
        "SELECT from_device_id, to_device_id, action, evidence FROM {s}.merge_audit WHERE id = $1"
    ))
    .bind(audit_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(DireError::db("reading the merge audit"))?;
    let Some((from, to, action, evidence)) = row else {
        return Err(DireError::AuditNotFound { id: audit_id });
    };
    if action != "merged" {
        return Err(DireError::NotAMerge {
            id: audit_id,
            action,
        });
    }
    let already: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {s}.merge_audit \
         WHERE from_device_id = $1 AND to_device_id = $2 AND action = 'unmerged' \
           AND evidence->>'audit_id' = $3::text)"
    ))
    .bind(&from)
    .bind(&to)
    .bind(audit_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(DireError::db("reading the merge audit"))?;
    if already {
        return Err(DireError::AlreadyUnmerged { id: audit_id });
    }
    let current: Option<(Option<String>, Option<String>, String)> = sqlx::query_as(&format!(
        "SELECT merged_into, ip, partition FROM {s}.ocsf_devices WHERE uid = $1 FOR UPDATE"
    ))
    .bind(&from)
    .fetch_optional(&mut *conn)
    .await
    .map_err(DireError::db("reading the merged device"))?;
    let Some((merged_into, ip, partition)) = current else {
        return Err(DireError::MergeNotCurrent {
            id: audit_id,
            from,
            to,
        });
    };
    if merged_into.as_deref() != Some(to.as_str()) {
        return Err(DireError::MergeNotCurrent {
            id: audit_id,
            from,
            to,
        });
    }

    let moved = evidence
        .get("moved_identifiers")
        .and_then(Value::as_array)
        .ok_or_else(|| DireError::BadEvidence {
            id: audit_id,
            detail: "missing array".into(),
        })?;
    let mut kinds = Vec::with_capacity(moved.len());
    let mut values = Vec::with_capacity(moved.len());
    let mut partitions = Vec::with_capacity(moved.len());
    for item in moved {
        let field = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| DireError::BadEvidence {
                    id: audit_id,
                    detail: format!("an entry lacks `{name}`"),
                })
        };
        kinds.push(field("type")?);
        values.push(field("value")?);
        partitions.push(field("partition")?);
    }
    let restored: Vec<(String, String)> = sqlx::query_as(&format!(
        "UPDATE {s}.device_identifiers AS i SET device_id = $4, last_seen = now() \
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS k(t, v, p) \
         WHERE i.identifier_type = k.t AND i.identifier_value = k.v AND i.partition = k.p \
           AND i.device_id = $5 \
         RETURNING i.identifier_type, i.identifier_value"
    ))
    .bind(&kinds)
    .bind(&values)
    .bind(&partitions)
    .bind(&from)
    .bind(&to)
    .fetch_all(&mut *conn)
    .await
    .map_err(DireError::db("moving identifiers back"))?;

    // Staging rows of the survivor may belong to the restored device: make
    // the next sync re-plan them instead of skipping them as applied.
    sqlx::query(&format!(
        "UPDATE {s}.discovered_devices SET content_hash = NULL \
         WHERE device_id = $1 AND content_hash IS NOT NULL"
    ))
    .bind(&to)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("invalidating staging fingerprints"))?;

    let ip_taken = match &ip {
        Some(ip) => sqlx::query_scalar::<_, bool>(&format!(
            "SELECT EXISTS (SELECT 1 FROM {s}.ocsf_devices d \
             WHERE d.partition = $1 AND d.ip = $2 AND d.uid <> $3 AND {ACTIVE_IP})"
        ))
        .bind(&partition)
        .bind(ip)
        .bind(&from)
        .fetch_one(&mut *conn)
        .await
        .map_err(DireError::db("checking the restored device's IP"))?,
        None => false,
    };
    sqlx::query(&format!(
        "UPDATE {s}.ocsf_devices SET merged_into = NULL, merged_at = NULL, modified_time = now(), \
             ip = CASE WHEN $2 THEN NULL ELSE ip END, change_stamp = $3 \
         WHERE uid = $1"
    ))
    .bind(&from)
    .bind(ip_taken)
    .bind(lock.stamp)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("restoring the merged device"))?;

    let restored_json: Vec<Value> = restored
        .iter()
        .map(|(kind, value)| json!({"type": kind, "value": value, "partition": partition}))
        .collect();
    sqlx::query(&format!(
        "INSERT INTO {s}.merge_audit (from_device_id, to_device_id, action, reason, evidence, \
             partition) \
         VALUES ($1, $2, 'unmerged', 'operator_unmerge', $3, $4)"
    ))
    .bind(&from)
    .bind(&to)
    .bind(json!({
        "audit_id": audit_id,
        "restored_identifiers": restored_json,
        "ip_cleared": ip_taken,
    }))
    .bind(&partition)
    .execute(&mut *conn)
    .await
    .map_err(DireError::db("writing the unmerge audit"))?;
    restore_settings(conn, &lock.jit).await?;
    info!(
        tenant_schema = schema.name(),
        audit_id,
        device = %from,
        survivor = %to,
        restored = restored.len(),
        "DIRE merge reversed"
    );
    Ok(UnmergeReport {
        audit_id,
        device_id: from,
        survivor_id: to,
        restored_identifiers: restored,
        ip_cleared: ip_taken,
    })
}
