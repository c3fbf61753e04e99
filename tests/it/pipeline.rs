//! The device pipeline end to end: Faker → sandbox → chunked mTLS streams →
//! gateway → DIRE → tenant schema, with real processes.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{Platform, assert_success, faker_source};

#[tokio::test]
async fn faker_devices_become_exactly_n_canonical_devices_and_a_resync_adds_none() {
    let platform = Platform::start().await;
    let tenant = platform.create_tenant("acme").await;
    let source = platform
        .create_source("acme", faker_source("lab", 7, 3000))
        .await;

    assert_success(&platform.run_sync_once().await);
    assert_eq!(platform.count(tenant, "ocsf_devices", "").await, 3000);
    assert_eq!(platform.count(tenant, "discovered_devices", "").await, 3000);
    assert_eq!(
        platform
            .count(
                tenant,
                "device_identifiers",
                "identifier_type = 'integration_id'"
            )
            .await,
        3000
    );
    let view = platform.source("acme", source).await;
    assert_eq!(view["last_result"], "success", "{view}");
    assert_eq!(view["last_device_count"], 3000);
    let first = platform.devices(tenant).await;

    assert_success(&platform.run_sync_once().await);
    assert_eq!(platform.count(tenant, "ocsf_devices", "").await, 3000);
    assert_eq!(platform.count(tenant, "discovered_devices", "").await, 3000);
    assert_eq!(
        platform.devices(tenant).await,
        first,
        "a re-sync changes nothing"
    );
    assert_eq!(platform.count(tenant, "merge_audit", "").await, 0);
}

#[tokio::test]
async fn churn_moves_ips_to_the_right_devices_without_false_merges() {
    let platform = Platform::start().await;
    let tenant = platform.create_tenant("acme").await;
    let body = json!({"name": "lab", "type": "faker",
        "settings": {"seed": 11, "count": 2000, "churn": {"ip_swap_percent": 20}}});
    platform.create_source("acme", body).await;

    // Run 0: the base inventory. Run 1: 20% of pairs swap IPs.
    assert_success(&platform.run_sync_once().await);
    let before: HashMap<String, String> = ips_by_source_id(&platform, tenant).await;
    assert_success(&platform.run_sync_once().await);
    let after: HashMap<String, String> = ips_by_source_id(&platform, tenant).await;

    assert_eq!(
        platform.count(tenant, "ocsf_devices", "").await,
        2000,
        "no device added or lost"
    );
    assert_eq!(
        platform
            .count(tenant, "merge_audit", "action = 'merged'")
            .await,
        0,
        "no false merges"
    );
    let params = faker::generator::Params {
        seed: 11,
        count: 2000,
        churn: faker::generator::Churn {
            ip_swap_percent: 20,
            ..Default::default()
        },
    };
    let mut moved = 0;
    for index in 0..2000u64 {
        let id = (index + 1).to_string();
        let expected = faker::generator::ip(&params, 1, index).to_string();
        assert_eq!(
            after[&id], expected,
            "device {id} holds the IP the generator gave it"
        );
        if before[&id] != after[&id] {
            moved += 1;
        }
    }
    assert!(moved > 100, "churn moved {moved} IPs");
    // One active device per IP.
    let schema = sr_gateway::db::tenant_schema_name(tenant);
    let distinct: i64 = sqlx::query_scalar(&format!(
        "SELECT count(DISTINCT ip) FROM \"{schema}\".ocsf_devices WHERE merged_into IS NULL"
    ))
    .fetch_one(&platform.pool)
    .await
    .unwrap();
    assert_eq!(distinct, 2000);
}

/// Faker id → the IP its canonical device holds (every device must hold one).
async fn ips_by_source_id(platform: &Platform, tenant: uuid::Uuid) -> HashMap<String, String> {
    let schema = sr_gateway::db::tenant_schema_name(tenant);
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT s.source_device_id, d.ip FROM \"{schema}\".discovered_devices s \
         JOIN \"{schema}\".ocsf_devices d ON d.uid = s.device_id"
    ))
    .fetch_all(&platform.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, ip)| {
            let ip = ip.unwrap_or_else(|| panic!("faker device {id} lost its IP"));
            (id, ip)
        })
        .collect()
}

#[tokio::test]
async fn two_tenants_with_identical_data_stay_fully_separate() {
    let platform = Platform::start().await;
    let acme = platform.create_tenant("acme").await;
    let globex = platform.create_tenant("globex").await;
    let acme_source = platform
        .create_source("acme", faker_source("lab", 5, 1500))
        .await;
    let globex_source = platform
        .create_source("globex", faker_source("lab", 5, 1500))
        .await;

    assert_success(&platform.run_sync_once().await);
    let a = platform.devices(acme).await;
    let b = platform.devices(globex).await;
    assert_eq!(a.len(), 1500);
    assert_eq!(b.len(), 1500);
    // Deterministic ids: the same source data gives the same ids in each
    // tenant's own schema, and nothing crosses schemas.
    assert_eq!(a, b);
    let only = |source: uuid::Uuid| format!("integration_source_id = '{source}'");
    assert_eq!(
        platform
            .count(acme, "discovered_devices", &only(globex_source))
            .await,
        0
    );
    assert_eq!(
        platform
            .count(globex, "discovered_devices", &only(acme_source))
            .await,
        0
    );
    assert_eq!(
        platform
            .count(acme, "discovered_devices", &only(acme_source))
            .await,
        1500
    );
}

#[tokio::test]
async fn gateway_killed_mid_stream_loses_and_duplicates_nothing() {
    let mut platform = Platform::start().await;
    let interrupted = platform.create_tenant("acme").await;
    let clean = platform.create_tenant("globex").await;
    platform
        .create_source("acme", faker_source("lab", 3, 20_000))
        .await;

    // The interrupted run: kill the gateway once some streams committed.
    let sync = {
        let config = platform.sync_config();
        tokio::process::Command::new(sr_testkit::binaries::binary("sr-sync").unwrap())
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--once")
            .env("SR_LOG", "info")
            .output()
    };
    let sync = tokio::spawn(sync);
    platform
        .wait_until(
            "the first streams to commit",
            Duration::from_secs(120),
            || async { platform.count(interrupted, "ocsf_devices", "").await > 0 },
        )
        .await;
    platform.kill_gateway();
    let at_kill = platform.count(interrupted, "ocsf_devices", "").await;
    assert!(
        at_kill < 20_000,
        "the kill came before the run finished ({at_kill} devices)"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    platform.start_gateway().await;
    let output = sync.await.unwrap().unwrap();
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("retrying"),
        "the sync retried unacknowledged streams:\n{stderr}"
    );

    // A clean run of the same data for another tenant.
    platform
        .create_source("globex", faker_source("lab", 3, 20_000))
        .await;
    assert_success(&platform.run_sync_once().await);

    assert_eq!(
        platform.count(interrupted, "ocsf_devices", "").await,
        20_000
    );
    assert_eq!(
        platform.count(interrupted, "discovered_devices", "").await,
        20_000
    );
    assert_eq!(
        platform.devices(interrupted).await,
        platform.devices(clean).await,
        "same rows as a clean run"
    );
    assert_eq!(platform.count(interrupted, "merge_audit", "").await, 0);
}

#[tokio::test]
async fn a_failing_adapter_fails_only_its_own_source() {
    let mut platform = Platform::start().await;
    platform.install_adapter("sr-test-misbehave");
    let tenant = platform.create_tenant("acme").await;
    let good = platform
        .create_source("acme", faker_source("lab", 1, 500))
        .await;
    let bad = platform
        .create_source(
            "acme",
            json!({"name": "broken", "type": "misbehave", "endpoint": "http://127.0.0.1:9",
                   "settings": {"mode": "trap"}}),
        )
        .await;
    platform.spawn_sync();

    platform
        .wait_until(
            "both sources to report a run",
            Duration::from_secs(120),
            || async {
                let good = platform.source("acme", good).await;
                let bad = platform.source("acme", bad).await;
                good["last_result"] == "success" && bad["last_result"] == "failed"
            },
        )
        .await;
    let bad_view = platform.source("acme", bad).await;
    let error = bad_view["last_error"].as_str().unwrap();
    assert!(error.contains("misbehave@1.0.0 crashed"), "{error}");
    assert!(error.contains("trap mode panics on purpose"), "{error}");
    assert_eq!(platform.count(tenant, "ocsf_devices", "").await, 500);

    // The failing source is retried with backoff, and keeps failing alone.
    platform
        .wait_until(
            "a retry of the failing source",
            Duration::from_secs(60),
            || async {
                platform.source("acme", bad).await["consecutive_failures"]
                    .as_i64()
                    .unwrap_or(0)
                    >= 2
            },
        )
        .await;
    let good_view = platform.source("acme", good).await;
    assert_eq!(good_view["last_result"], "success");
    assert_eq!(good_view["consecutive_failures"], 0);
    // The sync service shows as degraded while one of its sources fails.
    let (_, services) = platform
        .api(Method::GET, "/api/v1/sync-services", None)
        .await;
    let platform_sync = services
        .as_array()
        .and_then(|list| list.iter().find(|s| s["is_platform_sync"] == true))
        .unwrap_or(&services);
    assert_eq!(platform_sync["status"], "degraded", "{services}");
}

#[tokio::test]
async fn config_changes_apply_without_a_restart() {
    let mut platform = Platform::start().await;
    let tenant = platform.create_tenant("acme").await;
    platform
        .create_source("acme", faker_source("first", 1, 300))
        .await;
    platform.spawn_sync();
    platform
        .wait_until(
            "the first source's devices",
            Duration::from_secs(60),
            || async { platform.count(tenant, "ocsf_devices", "").await == 300 },
        )
        .await;

    // A new source while the daemon runs: picked up at the next config poll.
    let second = platform
        .create_source("acme", faker_source("second", 2, 200))
        .await;
    platform
        .wait_until(
            "the added source's devices",
            Duration::from_secs(90),
            || async {
                platform
                    .count(
                        tenant,
                        "discovered_devices",
                        &format!("integration_source_id = '{second}'"),
                    )
                    .await
                    == 200
            },
        )
        .await;
    let log = platform.sync_log();
    assert!(
        log.contains("source added") && log.contains("acme/second"),
        "{log}"
    );

    // Removing it stops its schedule.
    let (status, _) = platform
        .api(
            Method::DELETE,
            &format!("/api/v1/tenants/acme/integration-sources/{second}"),
            None,
        )
        .await;
    assert!(status.is_success());
    platform
        .wait_until(
            "the removal to reach the daemon",
            Duration::from_secs(90),
            || async { platform.sync_log().contains("source removed") },
        )
        .await;
}
