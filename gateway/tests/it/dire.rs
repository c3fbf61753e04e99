//! DIRE against a real PostgreSQL: each test gets a throwaway database and
//! creates its tenant schemas with the real tenant migration.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};
use sr_gateway::dire::canonical_id;
use sr_gateway::dire::{DireError, ReconcileOptions, TenantSchema, reconcile, unmerge};
use sr_proto::{DeviceUpdate, SyncMeta};
use sr_testkit::pg::TestDb;
use uuid::Uuid;

/// Creates `schema` with every tenant migration, as the gateway does.
async fn create_tenant_schema(db: &TestDb, schema: &TenantSchema) {
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sr_gateway::db::migrate_tenant_schema(&mut tx, schema.name())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    conn.close().await.unwrap();
}

struct Tenant {
    db: TestDb,
    pool: PgPool,
    schema: TenantSchema,
}

async fn tenant() -> Tenant {
    let db = TestDb::create().await.unwrap();
    let schema = TenantSchema::for_tenant(Uuid::new_v4());
    create_tenant_schema(&db, &schema).await;
    let pool = db.pool().await.unwrap();
    Tenant { db, pool, schema }
}

fn base_time() -> DateTime<Utc> {
    "2025-03-01T12:00:00Z".parse().unwrap()
}

/// Faker-like device `i` (as the faker adapter's reference describes it):
/// unique IP in 172.16.0.0/12, unique MAC, integration id `i + 1`.
fn faker_ip(i: usize) -> String {
    let subnet = i / 254;
    format!("172.{}.{}.{}", 16 + subnet / 256, subnet % 256, i % 254 + 1)
}

fn faker_update(i: usize, source_id: Uuid) -> DeviceUpdate {
    let id = (i + 1).to_string();
    let ip = faker_ip(i);
    let mac = format!(
        "00:16:3E:{:02X}:{:02X}:{:02X}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    DeviceUpdate {
        device_id: String::new(),
        ip: ip.clone(),
        source: "faker".into(),
        agent_id: String::new(),
        gateway_id: String::new(),
        partition: "default".into(),
        timestamp: base_time(),
        hostname: Some(format!("FAKER-CIS-SWI-{:05}", i + 1)),
        mac: Some(mac.clone()),
        metadata: BTreeMap::from([
            ("integration_type".into(), "faker".into()),
            ("integration_id".into(), id.clone()),
            ("integration_source_id".into(), source_id.to_string()),
            ("sync_service_id".into(), "sync-1".into()),
            ("query_label".into(), "all".into()),
            ("all_ips".into(), ip.clone()),
            ("ip_count".into(), "1".into()),
            ("all_macs".into(), mac),
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
        raw_data: Some(json!({"id": i + 1, "ip": ip})),
    }
}

fn faker_batch(n: usize, source_id: Uuid) -> Vec<DeviceUpdate> {
    (0..n).map(|i| faker_update(i, source_id)).collect()
}

async fn run(t: &Tenant, updates: &[DeviceUpdate]) -> sr_gateway::dire::BatchStats {
    run_with(t, updates, &ReconcileOptions::default()).await
}

async fn run_with(
    t: &Tenant,
    updates: &[DeviceUpdate],
    options: &ReconcileOptions,
) -> sr_gateway::dire::BatchStats {
    let mut tx = t.pool.begin().await.unwrap();
    let stats = reconcile(&mut tx, &t.schema, updates.into(), options)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    stats
}

async fn count(t: &Tenant, sql: &str) -> i64 {
    let sql = sql.replace("{s}", &t.schema.quoted());
    sqlx::query_scalar(&sql).fetch_one(&t.pool).await.unwrap()
}

/// Identifiers carry no foreign key (tenant migration 0002): DIRE's plan
/// check keeps them pointing at devices.
async fn assert_identifiers_point_at_devices(t: &Tenant) {
    let dangling = count(
        t,
        "SELECT count(*) FROM {s}.device_identifiers i \
         WHERE NOT EXISTS (SELECT 1 FROM {s}.ocsf_devices d WHERE d.uid = i.device_id)",
    )
    .await;
    assert_eq!(dangling, 0, "identifiers pointing at no device");
}

/// Every row of the three data tables with its physical version (xmin),
/// lock marker (xmax) and full content.
async fn table_versions(t: &Tenant) -> Vec<(String, String, String, Value)> {
    let s = t.schema.quoted();
    let mut out = Vec::new();
    for (table, key) in [
        ("ocsf_devices", "uid"),
        (
            "device_identifiers",
            "identifier_type || '/' || identifier_value || '/' || partition",
        ),
        (
            "discovered_devices",
            "integration_source_id::text || '/' || source_device_id",
        ),
        ("merge_audit", "id::text"),
    ] {
        let rows = sqlx::query(&format!(
            "SELECT '{table}:' || {key} AS k, xmin::text AS xmin, xmax::text AS xmax, to_jsonb(x) AS row \
             FROM {s}.{table} x ORDER BY 1"
        ))
        .fetch_all(&t.pool)
        .await
        .unwrap();
        for row in rows {
            out.push((
                row.get("k"),
                row.get("xmin"),
                row.get("xmax"),
                row.get("row"),
            ));
        }
    }
    out
}

/// Asserts two [`table_versions`] results are equal, reporting only the rows
/// that differ.
fn assert_same_rows(
    before: &[(String, String, String, Value)],
    after: &[(String, String, String, Value)],
) {
    let before: BTreeMap<_, _> = before.iter().map(|(k, a, b, c)| (k, (a, b, c))).collect();
    let after: BTreeMap<_, _> = after.iter().map(|(k, a, b, c)| (k, (a, b, c))).collect();
    let keys: BTreeSet<_> = before.keys().chain(after.keys()).collect();
    let differing: Vec<_> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  before {:?}\n  after  {:?}",
                before.get(k),
                after.get(k)
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "rows changed:\n{}",
        differing.join("\n")
    );
}

async fn device_by_identifier(t: &Tenant, kind: &str, value: &str) -> String {
    sqlx::query_scalar(&format!(
        "SELECT device_id FROM {}.device_identifiers WHERE identifier_type = $1 AND identifier_value = $2",
        t.schema.quoted()
    ))
    .bind(kind)
    .bind(value)
    .fetch_one(&t.pool)
    .await
    .unwrap()
}

async fn device_ip(t: &Tenant, uid: &str) -> Option<String> {
    sqlx::query_scalar(&format!(
        "SELECT ip FROM {}.ocsf_devices WHERE uid = $1",
        t.schema.quoted()
    ))
    .bind(uid)
    .fetch_one(&t.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn initial_sync_creates_one_device_identifier_set_and_staging_row_per_update() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    let n = 1_250;
    let updates = faker_batch(n, source);
    let options = ReconcileOptions {
        batch_size: 500,
        ..ReconcileOptions::default()
    };
    let stats = run_with(&t, &updates, &options).await;
    assert_eq!(stats.updates, n as u64);
    assert_eq!(stats.new_devices, n as u64);
    assert_eq!(stats.identifiers_written, 2 * n as u64);
    assert_eq!(stats.staged, n as u64);
    assert_eq!(stats.merges + stats.blocked_merges + stats.ip_moves, 0);

    let n = n as i64;
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.ocsf_devices").await, n);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM {s}.device_identifiers WHERE identifier_type = 'integration_id'"
        )
        .await,
        n
    );
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM {s}.device_identifiers WHERE identifier_type = 'mac'"
        )
        .await,
        n
    );
    assert_eq!(
        count(&t, "SELECT count(*) FROM {s}.discovered_devices").await,
        n
    );
    assert_eq!(
        count(&t, "SELECT count(DISTINCT ip) FROM {s}.ocsf_devices").await,
        n
    );
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.merge_audit").await, 0);

    // Ids are the reference's deterministic ids; identifiers and staging
    // rows point at them.
    let expected = canonical_id::from_seed(
        "serviceradar-device-v3:partition:default:integration:1mac:00163E000000",
    );
    assert_eq!(
        device_by_identifier(&t, "integration_id", "faker:1").await,
        expected
    );
    assert_eq!(
        device_by_identifier(&t, "mac", "00163E000000").await,
        expected
    );
    let row = sqlx::query(&format!(
        "SELECT d.ip, d.mac, d.hostname, d.vendor_name, d.model, d.discovery_sources, d.confidence, \
                s.device_id, s.ip_addresses, s.mac_addresses, s.raw_data, s.source, s.sync_run_id \
         FROM {s}.ocsf_devices d JOIN {s}.discovered_devices s ON s.device_id = d.uid \
         WHERE d.uid = $1",
        s = t.schema.quoted()
    ))
    .bind(&expected)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(
        row.get::<Option<String>, _>("ip").as_deref(),
        Some("172.16.0.1")
    );
    assert_eq!(
        row.get::<Option<String>, _>("mac").as_deref(),
        Some("00:16:3E:00:00:00")
    );
    assert_eq!(
        row.get::<Option<String>, _>("hostname").as_deref(),
        Some("FAKER-CIS-SWI-00001")
    );
    assert_eq!(
        row.get::<Option<String>, _>("vendor_name").as_deref(),
        Some("Cisco")
    );
    assert_eq!(
        row.get::<Vec<String>, _>("discovery_sources"),
        vec!["faker"]
    );
    assert_eq!(row.get::<Option<i32>, _>("confidence"), Some(7));
    assert_eq!(
        row.get::<Vec<String>, _>("ip_addresses"),
        vec!["172.16.0.1"]
    );
    assert_eq!(
        row.get::<Vec<String>, _>("mac_addresses"),
        vec!["00:16:3E:00:00:00"]
    );
    assert_eq!(
        row.get::<Option<Value>, _>("raw_data"),
        Some(json!({"id": 1, "ip": "172.16.0.1"}))
    );
    assert_eq!(row.get::<String, _>("source"), "faker");
    assert_eq!(
        row.get::<Option<String>, _>("sync_run_id").as_deref(),
        Some("run-1")
    );
}

#[tokio::test]
async fn resync_of_identical_data_writes_no_row_versions() {
    let t = tenant().await;
    let updates = faker_batch(600, Uuid::new_v4());
    run(&t, &updates).await;
    let before = table_versions(&t).await;
    // Rows nothing references carry no lock marker after the initial load
    // (devices do: foreign-key checks share-lock them).
    assert!(
        before
            .iter()
            .filter(|(key, ..)| !key.starts_with("ocsf_devices:"))
            .all(|(_, _, xmax, _)| xmax == "0")
    );

    let stats = run(&t, &updates).await;
    assert_eq!(stats.unchanged_devices, 600);
    assert_eq!(stats.new_devices + stats.updated_devices, 0);
    assert_eq!(stats.identifiers_written, 0);
    let after = table_versions(&t).await;
    // Same rows, same physical versions (xmin), and no row was even locked
    // (xmax stays 0): the re-sync wrote nothing.
    assert_same_rows(&before, &after);

    // A redelivery with a new run id is still "same data": nothing written.
    let mut rerun = updates.clone();
    for update in &mut rerun {
        if let Some(meta) = &mut update.sync_meta {
            meta.sync_run_id = "run-2".into();
        }
    }
    run(&t, &rerun).await;
    assert_same_rows(&before, &table_versions(&t).await);
}

#[tokio::test]
async fn changed_fields_are_written_and_unsent_fields_kept() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    run(&t, &faker_batch(3, source)).await;
    let mut update = faker_update(1, source);
    update.timestamp = base_time() + chrono::Duration::minutes(10);
    update.hostname = None;
    update.metadata.insert("model".into(), "C-NEW".into());
    update.metadata.remove("manufacturer");
    update.source = "netbox-import".into();
    let stats = run(&t, &[update]).await;
    assert_eq!(stats.updated_devices, 1);
    let uid = device_by_identifier(&t, "integration_id", "faker:2").await;
    let row = sqlx::query(&format!(
        "SELECT hostname, vendor_name, model, discovery_sources, last_seen_time, metadata \
         FROM {}.ocsf_devices WHERE uid = $1",
        t.schema.quoted()
    ))
    .bind(&uid)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(
        row.get::<Option<String>, _>("hostname").as_deref(),
        Some("FAKER-CIS-SWI-00002")
    );
    assert_eq!(
        row.get::<Option<String>, _>("vendor_name").as_deref(),
        Some("Cisco")
    );
    assert_eq!(
        row.get::<Option<String>, _>("model").as_deref(),
        Some("C-NEW")
    );
    assert_eq!(
        row.get::<Vec<String>, _>("discovery_sources"),
        vec!["faker", "netbox-import"]
    );
    assert_eq!(
        row.get::<DateTime<Utc>, _>("last_seen_time"),
        base_time() + chrono::Duration::minutes(10)
    );
    assert_eq!(row.get::<Value, _>("metadata")["manufacturer"], "Cisco");
}

#[tokio::test]
async fn ip_swap_between_devices_moves_ips_and_merges_nothing() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    let updates = faker_batch(20, source);
    run(&t, &updates).await;
    let mut churn = updates.clone();
    let (ip3, ip7) = (churn[3].ip.clone(), churn[7].ip.clone());
    churn[3].ip = ip7.clone();
    churn[7].ip = ip3.clone();
    for i in [3, 7] {
        let ip = churn[i].ip.clone();
        churn[i].metadata.insert("all_ips".into(), ip);
        churn[i].timestamp = base_time() + chrono::Duration::minutes(1);
    }
    let stats = run(&t, &churn).await;
    assert_eq!(stats.merges, 0);
    assert_eq!(stats.blocked_merges, 0);
    assert_eq!(stats.new_devices, 0);
    assert_eq!(stats.updated_devices, 2);
    assert!(stats.ip_moves >= 1);
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.ocsf_devices").await, 20);
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.merge_audit").await, 0);
    let d3 = device_by_identifier(&t, "integration_id", "faker:4").await;
    let d7 = device_by_identifier(&t, "integration_id", "faker:8").await;
    assert_eq!(device_ip(&t, &d3).await, Some(ip7));
    assert_eq!(device_ip(&t, &d7).await, Some(ip3));
    let staged: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT ip FROM {}.discovered_devices WHERE source_device_id = '4'",
        t.schema.quoted()
    ))
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(staged, vec![churn[3].ip.clone()]);
    assert_identifiers_point_at_devices(&t).await;
}

#[tokio::test]
async fn a_shared_armis_id_merges_with_audit_and_unmerge_reverses_it() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    // Device A from faker; device B from Armis.
    let a_update = faker_update(0, source);
    let mut b_update = faker_update(1, source);
    b_update.source = "armis".into();
    b_update.metadata = BTreeMap::from([
        ("integration_type".into(), "armis".into()),
        ("integration_id".into(), "9".into()),
        ("armis_device_id".into(), "9".into()),
    ]);
    b_update.mac = None;
    run(&t, &[a_update.clone(), b_update]).await;
    let a = device_by_identifier(&t, "integration_id", "faker:1").await;
    let b = device_by_identifier(&t, "armis_device_id", "9").await;
    assert_ne!(a, b);

    // Faker now reports that its device 1 is Armis device 9.
    let mut link = a_update.clone();
    link.metadata.insert("armis_device_id".into(), "9".into());
    link.timestamp = base_time() + chrono::Duration::minutes(5);
    let stats = run(&t, std::slice::from_ref(&link)).await;
    assert_eq!(stats.merges, 1);

    let audit = sqlx::query(&format!(
        "SELECT id, from_device_id, to_device_id, action, reason, evidence FROM {}.merge_audit",
        t.schema.quoted()
    ))
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 1);
    let row = &audit[0];
    assert_eq!(row.get::<String, _>("from_device_id"), a);
    assert_eq!(
        row.get::<String, _>("to_device_id"),
        b,
        "armis outranks the integration id"
    );
    assert_eq!(row.get::<String, _>("action"), "merged");
    assert_eq!(row.get::<String, _>("reason"), "shared_strong_identifier");
    let evidence: Value = row.get("evidence");
    assert_eq!(evidence["linked_by"][0]["type"], "integration_id");
    let moved: BTreeSet<String> = evidence["moved_identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        moved,
        BTreeSet::from(["faker:1".to_string(), "00163E000000".to_string()])
    );
    assert_eq!(
        device_by_identifier(&t, "integration_id", "faker:1").await,
        b
    );
    assert_eq!(device_by_identifier(&t, "mac", "00163E000000").await, b);
    let merged_into: Option<String> = sqlx::query_scalar(&format!(
        "SELECT merged_into FROM {}.ocsf_devices WHERE uid = $1",
        t.schema.quoted()
    ))
    .bind(&a)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(merged_into.as_deref(), Some(b.as_str()));
    let staged_to: String = sqlx::query_scalar(&format!(
        "SELECT device_id FROM {}.discovered_devices WHERE source_device_id = '1'",
        t.schema.quoted()
    ))
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(staged_to, b);
    // The survivor took the update's IP; the merged device keeps none.
    assert_eq!(device_ip(&t, &b).await.as_deref(), Some("172.16.0.1"));
    assert_eq!(device_ip(&t, &a).await, None);

    // Redelivery: nothing new.
    let again = run(&t, std::slice::from_ref(&link)).await;
    assert_eq!(again.merges, 0);
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.merge_audit").await, 1);

    // Reverse it from the audit trail.
    let audit_id: i64 = row.get("id");
    let mut tx = t.pool.begin().await.unwrap();
    let report = unmerge(&mut tx, &t.schema, audit_id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(report.device_id, a);
    assert_eq!(report.survivor_id, b);
    assert_eq!(report.restored_identifiers.len(), 2);
    assert_eq!(
        device_by_identifier(&t, "integration_id", "faker:1").await,
        a
    );
    assert_eq!(device_by_identifier(&t, "mac", "00163E000000").await, a);
    assert_eq!(device_by_identifier(&t, "armis_device_id", "9").await, b);
    let merged_into: Option<String> = sqlx::query_scalar(&format!(
        "SELECT merged_into FROM {}.ocsf_devices WHERE uid = $1",
        t.schema.quoted()
    ))
    .bind(&a)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(merged_into, None);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM {s}.merge_audit WHERE action = 'unmerged'"
        )
        .await,
        1
    );

    // The same evidence no longer merges the pair: it is refused and audited.
    let stats = run(&t, std::slice::from_ref(&link)).await;
    assert_eq!(stats.merges, 0);
    assert_eq!(stats.blocked_merges, 1);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM {s}.merge_audit WHERE action = 'blocked' AND reason = 'unmerged_by_operator'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM {s}.ocsf_devices WHERE merged_into IS NULL"
        )
        .await,
        2
    );

    // A merge can be reversed once; other rows are refused with a reason.
    let mut tx = t.pool.begin().await.unwrap();
    let err = unmerge(&mut tx, &t.schema, audit_id).await.unwrap_err();
    assert!(
        matches!(err, DireError::AlreadyUnmerged { id } if id == audit_id),
        "{err}"
    );
    tx.rollback().await.unwrap();
    let blocked_id: i64 = sqlx::query_scalar(&format!(
        "SELECT id FROM {}.merge_audit WHERE action = 'blocked'",
        t.schema.quoted()
    ))
    .fetch_one(&t.pool)
    .await
    .unwrap();
    let mut tx = t.pool.begin().await.unwrap();
    let err = unmerge(&mut tx, &t.schema, blocked_id).await.unwrap_err();
    assert!(matches!(err, DireError::NotAMerge { .. }), "{err}");
    let err = unmerge(&mut tx, &t.schema, 999_999).await.unwrap_err();
    assert!(matches!(err, DireError::AuditNotFound { .. }), "{err}");
    tx.rollback().await.unwrap();
    assert_identifiers_point_at_devices(&t).await;
}

#[tokio::test]
async fn mac_only_overlap_is_blocked_and_audited_once() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    let a_update = faker_update(0, source);
    let mut b_update = faker_update(1, source);
    b_update.source = "netbox".into();
    b_update.mac = None;
    b_update.metadata = BTreeMap::from([
        ("integration_type".into(), "netbox".into()),
        ("integration_id".into(), "7".into()),
        ("netbox_device_id".into(), "7".into()),
    ]);
    run(&t, &[a_update.clone(), b_update.clone()]).await;
    let a = device_by_identifier(&t, "integration_id", "faker:1").await;
    let b = device_by_identifier(&t, "netbox_device_id", "7").await;

    // NetBox now reports device 7 with faker device 1's MAC.
    let mut overlap = b_update.clone();
    overlap.mac = a_update.mac.clone();
    overlap.timestamp = base_time() + chrono::Duration::minutes(1);
    let stats = run(&t, std::slice::from_ref(&overlap)).await;
    assert_eq!(stats.merges, 0);
    assert_eq!(stats.blocked_merges, 1);
    let audit = sqlx::query(&format!(
        "SELECT from_device_id, to_device_id, action, reason, evidence FROM {}.merge_audit",
        t.schema.quoted()
    ))
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].get::<String, _>("from_device_id"), a);
    assert_eq!(audit[0].get::<String, _>("to_device_id"), b);
    assert_eq!(audit[0].get::<String, _>("action"), "blocked");
    assert_eq!(audit[0].get::<String, _>("reason"), "mac_only_conflict");
    assert_eq!(
        audit[0].get::<Value, _>("evidence")["linked_by"][0]["type"],
        "mac"
    );
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM {s}.ocsf_devices WHERE merged_into IS NULL"
        )
        .await,
        2
    );
    assert_eq!(device_by_identifier(&t, "mac", "00163E000000").await, a);

    // Seen again: still blocked, not audited twice.
    run(&t, std::slice::from_ref(&overlap)).await;
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.merge_audit").await, 1);
}

#[tokio::test]
async fn concurrent_overlapping_streams_serialise_and_the_later_observation_wins() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    let at = |minutes: i64| base_time() + chrono::Duration::minutes(minutes);
    let stream = |range: std::ops::Range<usize>, minutes: i64, name: &str| -> Vec<DeviceUpdate> {
        range
            .map(|i| {
                let mut u = faker_update(i, source);
                u.timestamp = at(minutes);
                u.hostname = Some(format!("{name}-{i}"));
                u
            })
            .collect()
    };
    let first = stream(0..100, 10, "first");
    let mut second = stream(0..50, 20, "second");
    second.extend(stream(50..150, 5, "second"));

    let mut tx1 = t.pool.begin().await.unwrap();
    reconcile(
        &mut tx1,
        &t.schema,
        first.into(),
        &ReconcileOptions::default(),
    )
    .await
    .unwrap();
    let pool = t.pool.clone();
    let schema = t.schema.clone();
    let waiter = tokio::spawn(async move {
        let mut tx2 = pool.begin().await.unwrap();
        let options = ReconcileOptions {
            batch_size: 40,
            ..ReconcileOptions::default()
        };
        let stats = reconcile(&mut tx2, &schema, second.clone().into(), &options).await?;
        tx2.commit().await.map_err(|e| DireError::Database {
            context: "commit",
            source: e,
        })?;
        Ok::<_, DireError>(stats)
    });
    // The second stream waits on the tenant's DIRE lock while the first is
    // open.
    let mut waiting = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
        .fetch_one(&t.pool)
        .await
        .unwrap();
        if n == 1 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waiting, "the second stream should wait for the first");
    assert!(!waiter.is_finished());
    tx1.commit().await.unwrap();
    let stats = waiter.await.unwrap().expect("second stream commits");
    assert_eq!(stats.new_devices, 50);
    // Devices 0..50 take the newer fields; 50..100 only move first_seen back.
    assert_eq!(stats.updated_devices, 100);

    assert_eq!(
        count(&t, "SELECT count(*) FROM {s}.ocsf_devices").await,
        150
    );
    let hostnames: BTreeMap<String, String> = sqlx::query_as::<_, (String, String)>(&format!(
        "SELECT i.identifier_value, d.hostname FROM {s}.device_identifiers i \
         JOIN {s}.ocsf_devices d ON d.uid = i.device_id WHERE i.identifier_type = 'integration_id'",
        s = t.schema.quoted()
    ))
    .fetch_all(&t.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for i in 0..150 {
        let expected = match i {
            0..50 => format!("second-{i}"),
            50..100 => format!("first-{i}"),
            _ => format!("second-{i}"),
        };
        assert_eq!(
            hostnames[&format!("faker:{}", i + 1)],
            expected,
            "device {i}"
        );
    }
}

#[tokio::test]
async fn a_failing_batch_writes_nothing() {
    let t = tenant().await;
    // A trigger that fails on one specific source device, standing in for
    // any error in the middle of a stream.
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION {s}.fail_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.source_device_id = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER fail_poison BEFORE INSERT ON {s}.discovered_devices \
         FOR EACH ROW EXECUTE FUNCTION {s}.fail_poison();",
        s = t.schema.quoted()
    ))
    .execute(&t.pool)
    .await
    .unwrap();
    let source = Uuid::new_v4();
    let mut updates = faker_batch(50, source);
    updates[45]
        .metadata
        .insert("integration_id".into(), "poison".into());
    let options = ReconcileOptions {
        batch_size: 10,
        ..ReconcileOptions::default()
    };
    let mut tx = t.pool.begin().await.unwrap();
    let err = reconcile(&mut tx, &t.schema, updates.clone().into(), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DireError::Database { context, .. } if *context == "staging discovered devices"),
        "{err}"
    );
    assert!(err.to_string().contains("poisoned row"), "{err}");
    tx.rollback().await.unwrap();
    for table in [
        "ocsf_devices",
        "device_identifiers",
        "discovered_devices",
        "merge_audit",
    ] {
        assert_eq!(
            count(&t, &format!("SELECT count(*) FROM {{s}}.{table}")).await,
            0,
            "{table}"
        );
    }
}

#[tokio::test]
async fn partitions_are_isolated() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    let site_a: Vec<DeviceUpdate> = faker_batch(30, source)
        .into_iter()
        .map(|mut u| {
            u.partition = "site-a".into();
            u.metadata.remove("integration_source_id");
            u
        })
        .collect();
    let site_b: Vec<DeviceUpdate> = site_a
        .iter()
        .cloned()
        .map(|mut u| {
            u.partition = "site-b".into();
            u
        })
        .collect();
    let mut both = site_a.clone();
    both.extend(site_b.clone());
    let stats = run(&t, &both).await;
    assert_eq!(stats.new_devices, 60);
    assert_eq!(stats.merges + stats.ip_moves + stats.blocked_merges, 0);
    for partition in ["site-a", "site-b"] {
        assert_eq!(
            count(
                &t,
                &format!("SELECT count(*) FROM {{s}}.ocsf_devices WHERE partition = '{partition}' AND ip IS NOT NULL")
            )
            .await,
            30
        );
        assert_eq!(
            count(
                &t,
                &format!(
                    "SELECT count(*) FROM {{s}}.device_identifiers WHERE partition = '{partition}'"
                )
            )
            .await,
            60
        );
    }
    // An IP-only observation in site-b lands on site-b's device.
    let mut sweep = site_b[4].clone();
    sweep.source = "sweep".into();
    sweep.metadata = BTreeMap::new();
    sweep.mac = None;
    sweep.hostname = Some("seen-by-sweep".into());
    sweep.timestamp = base_time() + chrono::Duration::minutes(1);
    let stats = run(&t, &[sweep]).await;
    assert_eq!(stats.new_devices, 0);
    let hosts: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT partition, hostname FROM {}.ocsf_devices WHERE ip = $1 ORDER BY partition",
        t.schema.quoted()
    ))
    .bind(&site_b[4].ip)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(
        hosts,
        vec![
            ("site-a".into(), "FAKER-CIS-SWI-00005".into()),
            ("site-b".into(), "seen-by-sweep".into())
        ]
    );
}

#[tokio::test]
async fn tenant_schemas_with_identical_data_stay_separate() {
    let t = tenant().await;
    let other = TenantSchema::for_tenant(Uuid::new_v4());
    create_tenant_schema(&t.db, &other).await;
    let updates = faker_batch(40, Uuid::new_v4());
    run(&t, &updates).await;
    let mut tx = t.pool.begin().await.unwrap();
    reconcile(
        &mut tx,
        &other,
        updates.clone().into(),
        &ReconcileOptions::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let uids = |schema: &TenantSchema| {
        let sql = format!(
            "SELECT uid FROM {}.ocsf_devices ORDER BY uid",
            schema.quoted()
        );
        let pool = t.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(&sql)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    let a = uids(&t.schema).await;
    let b = uids(&other).await;
    assert_eq!(a.len(), 40);
    assert_eq!(
        a, b,
        "identical data gives identical ids inside each schema"
    );

    // Changing one tenant leaves the other untouched.
    let before_other = sqlx::query_scalar::<_, String>(&format!(
        "SELECT string_agg(xmin::text, ',' ORDER BY uid) FROM {}.ocsf_devices",
        other.quoted()
    ))
    .fetch_one(&t.pool)
    .await
    .unwrap();
    let mut changed = updates[0].clone();
    changed.timestamp = base_time() + chrono::Duration::hours(1);
    changed.hostname = Some("renamed".into());
    run(&t, &[changed, faker_update(500, Uuid::new_v4())]).await;
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.ocsf_devices").await, 41);
    let after_other = sqlx::query_scalar::<_, String>(&format!(
        "SELECT string_agg(xmin::text, ',' ORDER BY uid) FROM {}.ocsf_devices",
        other.quoted()
    ))
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(before_other, after_other);
    let renamed = device_by_identifier(&t, "integration_id", "faker:1").await;
    let hostname = |schema: &TenantSchema| {
        let sql = format!(
            "SELECT hostname FROM {}.ocsf_devices WHERE uid = $1",
            schema.quoted()
        );
        let (pool, uid) = (t.pool.clone(), renamed.clone());
        async move {
            sqlx::query_scalar::<_, String>(&sql)
                .bind(uid)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(hostname(&t.schema).await, "renamed");
    assert_eq!(hostname(&other).await, "FAKER-CIS-SWI-00001");
}

/// Faker devices `0..n` three minutes later, with the IPs of devices 1 and 2
/// swapped, plus a NetBox view of device 5 (correlated by IP), an Armis
/// record, faker device 11 saying it is that Armis device (a merge: the
/// sources differ), and faker device 12 saying so too (refused: two faker
/// ids cannot be one device).
fn churn_with_merges(n: usize, source: Uuid) -> Vec<DeviceUpdate> {
    let mut stream = faker_batch(n, source);
    let (ip1, ip2) = (stream[1].ip.clone(), stream[2].ip.clone());
    stream[1].ip = ip2;
    stream[2].ip = ip1;
    let mut netbox = faker_update(5, source);
    netbox.source = "netbox".into();
    netbox.mac = None;
    netbox.metadata = BTreeMap::from([
        ("integration_type".into(), "netbox".into()),
        ("integration_id".into(), "55".into()),
        ("netbox_device_id".into(), "55".into()),
    ]);
    let mut armis = faker_update(40, source);
    armis.source = "armis".into();
    armis.mac = None;
    armis.metadata = BTreeMap::from([
        ("integration_type".into(), "armis".into()),
        ("integration_id".into(), "1010".into()),
        ("armis_device_id".into(), "1010".into()),
    ]);
    let mut link = faker_update(10, source);
    link.metadata
        .insert("armis_device_id".into(), "1010".into());
    let mut conflicting = faker_update(11, source);
    conflicting
        .metadata
        .insert("armis_device_id".into(), "1010".into());
    stream.extend([netbox, armis, link, conflicting]);
    for update in &mut stream {
        update.timestamp = base_time() + chrono::Duration::minutes(3);
    }
    stream
}

#[tokio::test]
async fn redelivering_a_stream_with_churn_and_merges_gives_the_same_rows() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    run(&t, &faker_batch(30, source)).await;
    let stream = churn_with_merges(30, source);
    let first = run(&t, &stream).await;
    assert_eq!(first.merges, 1);
    assert_eq!(first.blocked_merges, 1);
    assert_eq!(
        device_by_identifier(&t, "integration_id", "faker:11").await,
        device_by_identifier(&t, "armis_device_id", "1010").await
    );
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM {s}.merge_audit WHERE reason = 'conflicting_identifiers'"
        )
        .await,
        1
    );
    let rows = table_versions(&t).await;
    let second = run(&t, &stream).await;
    assert_eq!(
        second.merges + second.new_devices + second.updated_devices,
        0
    );
    assert_eq!(second.identifiers_written, 0);
    assert_same_rows(&rows, &table_versions(&t).await);
    // NetBox device 55 landed on faker device 6 (same IP, no conflict).
    assert_eq!(
        device_by_identifier(&t, "netbox_device_id", "55").await,
        device_by_identifier(&t, "integration_id", "faker:6").await
    );
    assert_identifiers_point_at_devices(&t).await;
}

/// Every row of the tenant, without the columns a clock or a sequence
/// fills (they differ between two runs of the same stream).
async fn tenant_rows(t: &Tenant) -> Vec<Value> {
    let s = t.schema.quoted();
    let volatile = "- 'created_time' - 'modified_time' - 'change_stamp' - 'merged_at' \
                    - 'deleted_at' - 'id' - 'created_at'";
    let mut rows = Vec::new();
    for table in [
        "ocsf_devices",
        "device_identifiers",
        "discovered_devices",
        "merge_audit",
    ] {
        rows.extend(
            sqlx::query_scalar::<_, Value>(&format!(
                "SELECT jsonb_build_object('{table}', to_jsonb(x) {volatile}) AS r \
                 FROM {s}.{table} x ORDER BY 1"
            ))
            .fetch_all(&t.pool)
            .await
            .unwrap(),
        );
    }
    rows
}

/// One stream in which later batches depend on earlier ones: devices
/// created, then swapping IPs, a NetBox record correlated by IP, an Armis
/// record and a faker record merging with it, another refused.
fn dependent_stream(source: Uuid) -> Vec<DeviceUpdate> {
    let mut stream = faker_batch(12, source);
    let mut later = churn_with_merges(12, source);
    later[4].hostname = Some("renamed".into());
    stream.extend(later);
    stream
}

#[tokio::test]
async fn overlapped_batches_give_the_rows_of_batches_done_in_turn() {
    let overlapped = tenant().await;
    let with_reader = tenant().await;
    let in_turn = tenant().await;
    let source = Uuid::new_v4();
    let stream = dependent_stream(source);
    let batch_size = 3;
    let options = ReconcileOptions {
        batch_size,
        ..ReconcileOptions::default()
    };
    // Twice: the second pass skips what the first applied.
    for _ in 0..2 {
        run_with(&overlapped, &stream, &options).await;
        // Early loads on a second connection, outside the transaction.
        let mut reader = with_reader.pool.acquire().await.unwrap();
        let mut tx = with_reader.pool.begin().await.unwrap();
        sr_gateway::dire::reconcile_with_reader(
            &mut tx,
            Some(&mut reader),
            &with_reader.schema,
            stream.clone().into(),
            &options,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        // The same batches, each loaded after the previous one was applied.
        let mut tx = in_turn.pool.begin().await.unwrap();
        tx.execute("SET LOCAL jit = off").await.unwrap();
        let mut touched = std::collections::HashSet::new();
        for chunk in stream.chunks(batch_size) {
            let observations: Vec<_> = chunk
                .iter()
                .map(sr_gateway::dire::observation::observe)
                .collect();
            let plan = sr_gateway::dire::store::plan_batch(
                &mut tx,
                &in_turn.schema,
                &observations,
                &touched,
                &Default::default(),
            )
            .await
            .unwrap();
            sr_gateway::dire::apply_plan(&mut tx, &in_turn.schema, &plan, 1)
                .await
                .unwrap();
            touched.extend(plan.touched_devices().map(str::to_string));
        }
        tx.commit().await.unwrap();

        let want = tenant_rows(&in_turn).await;
        for t in [&overlapped, &with_reader] {
            let got = tenant_rows(t).await;
            assert_eq!(got.len(), want.len());
            for (got, want) in got.iter().zip(&want) {
                assert_eq!(got, want);
            }
        }
    }
    assert_eq!(
        device_by_identifier(&overlapped, "integration_id", "faker:11").await,
        device_by_identifier(&overlapped, "armis_device_id", "1010").await
    );
    assert_identifiers_point_at_devices(&overlapped).await;
}

#[tokio::test]
async fn devices_are_never_deleted_or_renamed_so_identifiers_keep_their_device() {
    let t = tenant().await;
    run(&t, &faker_batch(3, Uuid::new_v4())).await;
    let s = t.schema.quoted();
    let uid = device_by_identifier(&t, "integration_id", "faker:1").await;
    for statement in [
        format!("DELETE FROM {s}.ocsf_devices WHERE uid = '{uid}'"),
        format!("UPDATE {s}.ocsf_devices SET uid = 'sr:renamed' WHERE uid = '{uid}'"),
    ] {
        let err = sqlx::query(&statement).execute(&t.pool).await.unwrap_err();
        let db = err.as_database_error().expect("a database error");
        assert_eq!(db.code().as_deref(), Some("23001"), "{statement}: {db}");
        assert!(
            db.message().contains(&uid) && db.message().contains("merged_into"),
            "the refusal names the device and what to do instead: {db}"
        );
    }
    // Everything else about a device stays writable.
    sqlx::query(&format!(
        "UPDATE {s}.ocsf_devices SET deleted_at = now() WHERE uid = '{uid}'"
    ))
    .execute(&t.pool)
    .await
    .unwrap();
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.ocsf_devices").await, 3);
    assert_identifiers_point_at_devices(&t).await;
}

#[tokio::test]
async fn service_components_keep_their_id_next_to_the_device_on_the_same_ip() {
    let t = tenant().await;
    let device = faker_update(0, Uuid::new_v4());
    let mut service = device.clone();
    service.device_id = "serviceradar:agent:edge-1".into();
    service.source = "agent".into();
    service.metadata = BTreeMap::new();
    service.mac = None;
    let stats = run(&t, &[device.clone(), service]).await;
    assert_eq!(stats.new_devices, 2);
    assert_eq!(stats.ip_moves, 0);
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT uid, ip FROM {}.ocsf_devices ORDER BY uid",
        t.schema.quoted()
    ))
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|(_, ip)| ip.as_deref() == Some(device.ip.as_str()))
    );
    assert!(
        rows.iter()
            .any(|(uid, _)| uid == "serviceradar:agent:edge-1")
    );
}

#[tokio::test]
async fn reconcile_refuses_to_run_outside_a_read_committed_transaction() {
    let t = tenant().await;
    let updates = faker_batch(2, Uuid::new_v4());
    let mut conn = t.pool.acquire().await.unwrap();
    let err = reconcile(
        &mut conn,
        &t.schema,
        updates.clone().into(),
        &ReconcileOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DireError::NotInTransaction), "{err}");

    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let err = reconcile(
        &mut tx,
        &t.schema,
        updates.clone().into(),
        &ReconcileOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, DireError::Isolation { level } if level == "repeatable read"),
        "{err}"
    );
    tx.rollback().await.unwrap();

    let mut tx = conn.begin().await.unwrap();
    let options = ReconcileOptions {
        batch_size: 0,
        ..ReconcileOptions::default()
    };
    let err = reconcile(&mut tx, &t.schema, updates.clone().into(), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, DireError::InvalidBatchSize), "{err}");
    tx.rollback().await.unwrap();
    assert_eq!(count(&t, "SELECT count(*) FROM {s}.ocsf_devices").await, 0);
}

#[tokio::test]
async fn load_snapshot_finds_devices_by_identifiers_and_ips() {
    let t = tenant().await;
    let source = Uuid::new_v4();
    let updates = faker_batch(5, source);
    run(&t, &updates).await;
    let mut conn = t.pool.acquire().await.unwrap();
    let mut probe = faker_update(2, source);
    probe
        .metadata
        .insert("integration_id".into(), "unknown".into());
    probe.mac = None;
    let snapshot =
        sr_gateway::dire::load_snapshot(&mut conn, &t.schema, &[updates[0].clone(), probe])
            .await
            .unwrap();
    let uids: BTreeSet<String> = snapshot.devices().map(|d| d.record.uid.clone()).collect();
    assert_eq!(uids.len(), 2, "one by identifiers, one by IP: {uids:?}");
    let first = device_by_identifier(&t, "integration_id", "faker:1").await;
    let third = device_by_identifier(&t, "integration_id", "faker:3").await;
    assert!(uids.contains(&first) && uids.contains(&third));
    let stored = snapshot.device(&first).unwrap();
    assert_eq!(stored.identifiers.len(), 2);
}
