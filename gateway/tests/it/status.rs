//! Sync service status from heartbeats (injected clock, no sleeping), run
//! reports.

use reqwest::Method;
use serde_json::Value;
use sr_proto::monitoring::{AgentHelloRequest, GatewayServiceStatus, GatewayStatusRequest};
use sr_proto::run_report::{RunPhase, RunReport};
use tonic::Code;

use crate::support::{TestGateway, faker_source};

fn heartbeat() -> GatewayStatusRequest {
    GatewayStatusRequest {
        services: vec![GatewayServiceStatus {
            service_name: "sync".into(),
            service_type: "sync".into(),
            source: "status".into(),
            available: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn run_report(
    source: &Value,
    tenant_id: &str,
    phase: RunPhase,
    devices: u64,
    error: Option<&str>,
) -> GatewayStatusRequest {
    let report = RunReport {
        integration_source_id: source["id"].as_str().unwrap().into(),
        tenant_id: tenant_id.into(),
        run_id: format!("run-{phase:?}"),
        phase,
        devices,
        complete: true,
        error: error.map(str::to_string),
        adapter: "faker@1.0.0".into(),
        at: chrono::Utc::now(),
    };
    GatewayStatusRequest {
        services: vec![GatewayServiceStatus {
            service_name: "sync-run".into(),
            service_type: "sync".into(),
            source: "status".into(),
            available: true,
            message: serde_json::to_vec(&report).unwrap(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn platform_status(gw: &TestGateway) -> Value {
    let (status, list) = gw.admin(Method::GET, "/api/v1/sync-services", None).await;
    assert_eq!(status, 200);
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["is_platform_sync"] == true)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn status_flips_to_offline_when_heartbeats_stop() {
    let gw = TestGateway::start().await;
    assert_eq!(platform_status(&gw).await["status"], "pending");
    let mut client = gw.platform_sync_client();
    client.hello(AgentHelloRequest::default()).await.unwrap();
    assert_eq!(platform_status(&gw).await["status"], "online");

    gw.clock.advance(chrono::Duration::seconds(110));
    assert_eq!(platform_status(&gw).await["status"], "online");
    client.push_status(heartbeat()).await.unwrap();
    gw.clock.advance(chrono::Duration::seconds(119));
    assert_eq!(platform_status(&gw).await["status"], "online");
    gw.clock.advance(chrono::Duration::seconds(2));
    let view = platform_status(&gw).await;
    assert_eq!(view["status"], "offline", "{view}");

    // A heartbeat brings it back.
    client.push_status(heartbeat()).await.unwrap();
    assert_eq!(platform_status(&gw).await["status"], "online");
    gw.stop().await;
}

#[tokio::test]
async fn a_heartbeat_older_than_two_minutes_in_the_database_reads_offline() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let created = gw.create_package("acme", "sync", "acme-edge").await;
    let now = gw.clock_now();
    for (age, expected) in [(60, "online"), (121, "offline"), (3600, "offline")] {
        sqlx::query("UPDATE platform.sync_services SET last_heartbeat_at = $2 WHERE id = $1::uuid")
            .bind(created["sync_service_id"].as_str().unwrap())
            .bind(now - chrono::Duration::seconds(age))
            .execute(gw.pool())
            .await
            .unwrap();
        let (_, list) = gw
            .admin(Method::GET, "/api/v1/tenants/acme/sync-services", None)
            .await;
        let edge = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["component_id"] == "acme-edge")
            .unwrap();
        assert_eq!(edge["status"], expected, "heartbeat {age}s old");
    }
    gw.stop().await;
}

#[tokio::test]
async fn run_reports_update_bookkeeping_and_failures_degrade_the_service() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    let acme_id = acme["id"].as_str().unwrap();
    let (_, source) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/integration-sources",
            Some(faker_source("f")),
        )
        .await;
    let mut client = gw.platform_sync_client();
    client.hello(AgentHelloRequest::default()).await.unwrap();

    client
        .push_status(run_report(&source, acme_id, RunPhase::Started, 0, None))
        .await
        .unwrap();
    client
        .push_status(run_report(&source, acme_id, RunPhase::Succeeded, 42, None))
        .await
        .unwrap();
    let path = format!(
        "/api/v1/tenants/acme/integration-sources/{}",
        source["id"].as_str().unwrap()
    );
    let (_, view) = gw.admin(Method::GET, &path, None).await;
    assert_eq!(view["last_result"], "success");
    assert_eq!(view["last_device_count"], 42);
    assert_eq!(view["consecutive_failures"], 0);
    assert!(view["last_run_started_at"].is_string() && view["last_sync_at"].is_string());
    assert_eq!(view["sync_service"]["status"], "online");

    for _ in 0..2 {
        client
            .push_status(run_report(
                &source,
                acme_id,
                RunPhase::Failed,
                0,
                Some("armis said 401"),
            ))
            .await
            .unwrap();
    }
    let (_, view) = gw.admin(Method::GET, &path, None).await;
    assert_eq!(view["last_result"], "failed");
    assert_eq!(view["last_error"], "armis said 401");
    assert_eq!(view["consecutive_failures"], 2);
    assert_eq!(
        view["last_device_count"], 42,
        "a failure keeps the last good count"
    );
    assert_eq!(view["sync_service"]["status"], "degraded");
    assert_eq!(platform_status(&gw).await["failing_sources"], 1);

    // A report naming the wrong tenant, or a malformed one, is refused whole.
    let status = client
        .push_status(run_report(
            &source,
            &uuid::Uuid::new_v4().to_string(),
            RunPhase::Succeeded,
            1,
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut garbage = heartbeat();
    garbage.services.push(GatewayServiceStatus {
        service_name: "sync-run".into(),
        source: "status".into(),
        message: b"{not json".to_vec(),
        ..Default::default()
    });
    let before: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_heartbeat_at FROM platform.sync_services WHERE id = $1")
            .bind(gw.platform_sync_id())
            .fetch_one(gw.pool())
            .await
            .unwrap();
    gw.clock.advance(chrono::Duration::seconds(5));
    let status = client.push_status(garbage).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("services[1]:"),
        "{}",
        status.message()
    );
    let after: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_heartbeat_at FROM platform.sync_services WHERE id = $1")
            .bind(gw.platform_sync_id())
            .fetch_one(gw.pool())
            .await
            .unwrap();
    assert_eq!(
        before, after,
        "the valid heartbeat of a refused push is not recorded"
    );
    let (_, view) = gw.admin(Method::GET, &path, None).await;
    assert_eq!(view["consecutive_failures"], 2);

    // Unknown services are refused with a pointer to what is supported.
    let mut unknown = heartbeat();
    unknown.services[0].service_name = "icmp".into();
    let status = client.push_status(unknown).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    gw.stop().await;
}
