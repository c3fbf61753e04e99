//! DIRE apply throughput against a real PostgreSQL.
//!
//! `CARGO_TARGET_DIR=/work/main/target cargo bench -p sr-gateway --bench dire_apply`
//!
//! 100,000 Faker-like devices (unique IP, MAC, integration id; override with
//! `DIRE_BENCH_DEVICES`) are reconciled into a fresh tenant schema in one
//! transaction per pass, in batches of 2,000 (`DIRE_BENCH_BATCH`):
//!
//! - initial sync (everything new);
//! - unchanged re-sync (the same updates again: nothing to write);
//! - moved re-sync (every observation one hour later: every device row is
//!   rewritten, identifiers and staging rows are not);
//!
//! and, as the physical limit, a raw `COPY` of equivalent rows (devices,
//! two identifiers per device, staging rows) into another fresh schema with
//! the same indexes. `DIRE_BENCH_PHASES=1` adds a breakdown of each pass
//! into load + plan and apply, on a separate schema.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use sr_gateway::dire::canonical_id;
use sr_gateway::dire::identifiers;
use sr_gateway::dire::observation::{Observation, observe};
use sr_gateway::dire::store::plan_batch;
use sr_gateway::dire::{
    PlanOptions, ReconcileOptions, TenantSchema, apply_plan, reconcile_with_reader,
};
use sr_proto::{DeviceUpdate, SyncMeta};
use sr_testkit::pg::TestDb;
use uuid::Uuid;

/// The allocator of the `sr-gateway` binary, so the figures are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Creates `schema` with every tenant migration, as the gateway does.
async fn create_tenant_schema(db: &TestDb, schema: &TenantSchema) -> Result<()> {
    let mut conn = PgConnection::connect(db.url()).await?;
    let mut tx = conn.begin().await?;
    sr_gateway::db::migrate_tenant_schema(&mut tx, schema.name()).await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

fn ip(i: usize) -> String {
    let subnet = i / 254;
    format!("172.{}.{}.{}", 16 + subnet / 256, subnet % 256, i % 254 + 1)
}

fn mac(i: usize) -> String {
    format!(
        "00:16:3E:{:02X}:{:02X}:{:02X}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn update(i: usize, source: Uuid, at: DateTime<Utc>) -> DeviceUpdate {
    let id = (i + 1).to_string();
    let ip = ip(i);
    let mac = mac(i);
    DeviceUpdate {
        device_id: String::new(),
        ip: ip.clone(),
        source: "faker".into(),
        agent_id: String::new(),
        gateway_id: String::new(),
        partition: "default".into(),
        timestamp: at,
        hostname: Some(format!("FAKER-CIS-SWI-{:05}", i + 1)),
        mac: Some(mac.clone()),
        metadata: BTreeMap::from([
            ("integration_type".into(), "faker".into()),
            ("integration_id".into(), id.clone()),
            ("integration_source_id".into(), source.to_string()),
            ("sync_service_id".into(), "sync-1".into()),
            ("tenant_id".into(), "bench".into()),
            ("query_label".into(), "all".into()),
            ("all_ips".into(), ip.clone()),
            ("ip_count".into(), "1".into()),
            ("manufacturer".into(), "Cisco".into()),
            ("model".into(), format!("C{}", 9000 + i % 7)),
        ]),
        is_available: true,
        confidence: 7,
        sync_meta: Some(SyncMeta {
            sync_service_id: "sync-1".into(),
            sync_run_id: "run-1".into(),
            ..SyncMeta::default()
        }),
        raw_data: Some(json!({"id": i + 1, "name": format!("FAKER-{i}"), "ipAddress": ip})),
    }
}

/// COPY text-format buffers equivalent to what DIRE writes for the updates.
struct CopyRows {
    devices: String,
    identifiers: String,
    staged: String,
}

fn copy_rows(updates: &[DeviceUpdate]) -> CopyRows {
    let mut rows = CopyRows {
        devices: String::new(),
        identifiers: String::new(),
        staged: String::new(),
    };
    for u in updates {
        let ids = identifiers::extract(u);
        let uid = canonical_id::derive(&u.partition, &ids, &u.ip);
        let at = u.timestamp.to_rfc3339();
        let metadata = serde_json::to_string(&u.metadata).unwrap_or_default();
        let mac = u.mac.clone().unwrap_or_default();
        let hostname = u.hostname.clone().unwrap_or_default();
        let _ = writeln!(
            rows.devices,
            "{uid}\t{p}\t{ip}\t{mac}\t{hostname}\tCisco\t{model}\tt\t7\t{{faker}}\t{metadata}\t{at}\t{at}",
            p = u.partition,
            ip = u.ip,
            model = u.metadata["model"],
        );
        for id in &ids {
            let _ = writeln!(
                rows.identifiers,
                "{}\t{}\t{}\t{uid}\t{}\tfaker\t{at}\t{at}",
                id.kind.as_str(),
                id.value,
                u.partition,
                id.confidence.as_str()
            );
        }
        let raw = u
            .raw_data
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            rows.staged,
            "{source}\t{sid}\tfaker\t{uid}\t{p}\t{ip}\t{{{ip}}}\t{{{mac}}}\t{hostname}\t{metadata}\t{raw}\trun-1\t{at}\t{at}",
            source = u.metadata["integration_source_id"],
            sid = u.metadata["integration_id"],
            p = u.partition,
            ip = u.ip,
        );
    }
    rows
}

async fn copy_in(conn: &mut PgConnection, statement: &str, data: &str) -> Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    for chunk in data.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    Ok(copy.finish().await?)
}

async fn raw_copy(db: &TestDb, rows: &CopyRows) -> Result<Duration> {
    let schema = TenantSchema::for_tenant(Uuid::new_v4());
    create_tenant_schema(db, &schema).await?;
    let s = schema.quoted();
    let mut conn = PgConnection::connect(db.url()).await?;
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    copy_in(
        &mut tx,
        &format!(
            "COPY {s}.ocsf_devices (uid, partition, ip, mac, hostname, vendor_name, model, \
             is_available, confidence, discovery_sources, metadata, first_seen_time, \
             last_seen_time) FROM STDIN"
        ),
        &rows.devices,
    )
    .await
    .context("COPY ocsf_devices")?;
    copy_in(
        &mut tx,
        &format!(
            "COPY {s}.device_identifiers (identifier_type, identifier_value, partition, \
             device_id, confidence, source, first_seen, last_seen) FROM STDIN"
        ),
        &rows.identifiers,
    )
    .await
    .context("COPY device_identifiers")?;
    copy_in(
        &mut tx,
        &format!(
            "COPY {s}.discovered_devices (integration_source_id, source_device_id, source, \
             device_id, partition, ip, ip_addresses, mac_addresses, hostname, metadata, \
             raw_data, sync_run_id, first_seen, last_seen) FROM STDIN"
        ),
        &rows.staged,
    )
    .await
    .context("COPY discovered_devices")?;
    tx.commit().await?;
    Ok(started.elapsed())
}

/// One pass in one transaction, with a second connection for early loads as
/// the ingest layer gives DIRE (`one_connection`: without).
async fn timed_reconcile(
    db: &TestDb,
    schema: &TenantSchema,
    updates: &[DeviceUpdate],
    options: &ReconcileOptions,
    one_connection: bool,
) -> Result<(Duration, sr_gateway::dire::BatchStats)> {
    let mut conn = PgConnection::connect(db.url()).await?;
    let mut reader = if one_connection {
        None
    } else {
        Some(PgConnection::connect(db.url()).await?)
    };
    // The ingest layer hands over the stream it decoded; copying it is not
    // DIRE's work.
    let updates: std::sync::Arc<[DeviceUpdate]> = updates.into();
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let stats = reconcile_with_reader(&mut tx, reader.as_mut(), schema, updates, options).await?;
    tx.commit().await?;
    Ok((started.elapsed(), stats))
}

/// Where a pass spends its time: the same loop as `reconcile`, timed per
/// phase (rolled back afterwards).
async fn phases(
    db: &TestDb,
    schema: &TenantSchema,
    updates: &[DeviceUpdate],
    batch_size: usize,
) -> Result<String> {
    let mut conn = PgConnection::connect(db.url()).await?;
    let mut tx = conn.begin().await?;
    tx.execute("SET LOCAL jit = off").await?;
    let (mut planning, mut apply) = (Duration::ZERO, Duration::ZERO);
    let mut touched = std::collections::HashSet::new();
    for chunk in updates.chunks(batch_size) {
        let started = Instant::now();
        let observations: Vec<Observation> = chunk.iter().map(observe).collect();
        let plan = plan_batch(
            &mut tx,
            schema,
            &observations,
            &touched,
            &PlanOptions::default(),
        )
        .await?;
        let applying = Instant::now();
        // A rolled-back pass: any stamp will do.
        apply_plan(&mut tx, schema, &plan, 1).await?;
        touched.extend(plan.touched_devices().map(str::to_string));
        planning += applying - started;
        apply += applying.elapsed();
    }
    tx.rollback().await?;
    Ok(format!(
        "load + plan {:.2} s, apply {:.2} s",
        planning.as_secs_f64(),
        apply.as_secs_f64()
    ))
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::var("DIRE_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let batch_size: usize = std::env::var("DIRE_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ReconcileOptions::default().batch_size);
    let options = ReconcileOptions {
        batch_size,
        ..ReconcileOptions::default()
    };
    let db = TestDb::create().await?;
    let source = Uuid::new_v4();
    let at: DateTime<Utc> = "2025-03-01T12:00:00Z".parse()?;
    let updates: Vec<DeviceUpdate> = (0..n).map(|i| update(i, source, at)).collect();
    let later: Vec<DeviceUpdate> = updates
        .iter()
        .cloned()
        .map(|mut u| {
            u.timestamp = at + chrono::Duration::hours(1);
            u
        })
        .collect();

    let schema = TenantSchema::for_tenant(Uuid::new_v4());
    create_tenant_schema(&db, &schema).await?;
    println!("DIRE apply bench: {n} devices, batches of {batch_size}, one transaction per pass");

    let (initial, stats) = timed_reconcile(&db, &schema, &updates, &options, false).await?;
    anyhow::ensure!(stats.new_devices == n as u64, "initial sync: {stats:?}");
    println!(
        "  initial sync         {:>8.2} s  {:>9.0} devices/s",
        initial.as_secs_f64(),
        rate(n, initial)
    );

    // The same initial sync on the transaction's connection alone.
    let alone = TenantSchema::for_tenant(Uuid::new_v4());
    create_tenant_schema(&db, &alone).await?;
    let (one_connection, _) = timed_reconcile(&db, &alone, &updates, &options, true).await?;
    println!(
        "  initial, 1 connection{:>8.2} s  {:>9.0} devices/s  (early loads on the writer)",
        one_connection.as_secs_f64(),
        rate(n, one_connection)
    );

    let (unchanged, stats) = timed_reconcile(&db, &schema, &updates, &options, false).await?;
    anyhow::ensure!(stats.unchanged_devices == n as u64, "re-sync: {stats:?}");
    println!(
        "  unchanged re-sync    {:>8.2} s  {:>9.0} devices/s  ({:.1}x faster than initial)",
        unchanged.as_secs_f64(),
        rate(n, unchanged),
        initial.as_secs_f64() / unchanged.as_secs_f64()
    );

    let (moved, stats) = timed_reconcile(&db, &schema, &later, &options, false).await?;
    anyhow::ensure!(
        stats.updated_devices == n as u64,
        "moved re-sync: {stats:?}"
    );
    println!(
        "  moved re-sync        {:>8.2} s  {:>9.0} devices/s  (every device row rewritten)",
        moved.as_secs_f64(),
        rate(n, moved)
    );

    let rows = copy_rows(&updates);
    let copy = raw_copy(&db, &rows).await?;
    println!(
        "  raw COPY (limit)     {:>8.2} s  {:>9.0} devices/s",
        copy.as_secs_f64(),
        rate(n, copy)
    );
    println!(
        "  initial / raw COPY   {:>8.2}x",
        copy.as_secs_f64() / initial.as_secs_f64()
    );

    if std::env::var_os("DIRE_BENCH_PHASES").is_some() {
        // On a schema of its own: a rolled-back pass leaves dead rows and
        // index entries behind that would slow the timed passes above.
        let schema = TenantSchema::for_tenant(Uuid::new_v4());
        create_tenant_schema(&db, &schema).await?;
        println!(
            "  phases, initial:   {}",
            phases(&db, &schema, &updates, batch_size).await?
        );
        timed_reconcile(&db, &schema, &updates, &options, false).await?;
        println!(
            "  phases, unchanged: {}",
            phases(&db, &schema, &updates, batch_size).await?
        );
        println!(
            "  phases, moved:     {}",
            phases(&db, &schema, &later, batch_size).await?
        );
    }
    Ok(())
}
