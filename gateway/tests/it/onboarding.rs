//! Edge onboarding end to end: package creation, `sr_host::enroll`, Hello
//! and heartbeats with the enrolled identity, one-time and expiring tokens.

use std::os::unix::fs::PermissionsExt;

use reqwest::Method;
use serde_json::json;
use sr_host::enroll::{self, EnrollError};
use sr_proto::monitoring::{
    AgentConfigRequest, AgentHelloRequest, GatewayServiceStatus, GatewayStatusRequest,
};
use sr_proto::sync_config::SyncBootstrap;
use tonic::Code;

use crate::support::TestGateway;

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

#[tokio::test]
async fn edge_sync_enrolls_says_hello_and_heartbeats() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    let created = gw.create_package("acme", "sync", "acme-edge-1").await;
    assert_eq!(created["component_type"], "sync");
    assert_eq!(created["tenant_slug"], "acme");
    let sync_service_id = created["sync_service_id"].as_str().unwrap().to_string();

    // Onboarded but never connected: pending.
    let (_, services) = gw
        .admin(Method::GET, "/api/v1/tenants/acme/sync-services", None)
        .await;
    let edge = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["component_id"] == "acme-edge-1")
        .unwrap()
        .clone();
    assert_eq!(edge["status"], "pending");
    assert_eq!(edge["service_type"], "on_prem");
    assert_eq!(edge["tenant_slug"], "acme");

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("edge");
    let outcome = enroll::enroll(created["token"].as_str().unwrap(), &target)
        .await
        .unwrap();
    assert_eq!(outcome.component_id, "acme-edge-1");
    assert_eq!(outcome.tenant_slug, "acme");
    assert_eq!(outcome.tenant_id, acme["id"].as_str().unwrap());
    let mode = std::fs::metadata(target.join("key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let config: SyncBootstrap =
        serde_json::from_slice(&std::fs::read(target.join("sync.json")).unwrap()).unwrap();
    assert_eq!(config.component_id, "acme-edge-1");
    assert_eq!(
        config.gateway_addr,
        format!("https://127.0.0.1:{}", gw.handle().grpc_addr().port())
    );
    assert_eq!(config.tls_server_name, "127.0.0.1");
    assert_eq!(
        (
            config.cert_file.as_str(),
            config.key_file.as_str(),
            config.ca_file.as_str()
        ),
        ("cert.pem", "key.pem", "ca.pem")
    );
    let cert = std::fs::read_to_string(target.join("cert.pem")).unwrap();
    assert_eq!(
        cert.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + tenant CA"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("ca.pem")).unwrap(),
        gw.state_file("root-ca.pem")
    );

    // Connect exactly as the edge host would: only the files it received.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(target.join(&config.ca_file)).unwrap(),
        ))
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read(target.join(&config.cert_file)).unwrap(),
            std::fs::read(target.join(&config.key_file)).unwrap(),
        ))
        .domain_name(config.tls_server_name.clone());
    let channel = tonic::transport::Endpoint::from_shared(config.gateway_addr.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        sr_proto::monitoring::agent_gateway_service_client::AgentGatewayServiceClient::new(channel);
    let answer = client
        .hello(AgentHelloRequest {
            agent_id: "acme-edge-1".into(),
            version: "0.1.0".into(),
            capabilities: vec!["sync".into()],
            hostname: "edge-host".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.accepted);
    assert_eq!(answer.tenant_id, acme["id"].as_str().unwrap());
    assert_eq!(answer.tenant_slug, "acme");

    // The record is the onboarding one, now online, on_prem, in acme.
    let (_, view) = gw
        .admin(
            Method::GET,
            &format!("/api/v1/sync-services/{sync_service_id}"),
            None,
        )
        .await;
    assert_eq!(view["status"], "online", "{view}");
    assert_eq!(view["service_type"], "on_prem");
    assert_eq!(view["endpoint"], "edge-host");
    assert_eq!(view["is_platform_sync"], false);
    assert_eq!(view["tenant_id"], acme["id"]);

    // Heartbeats move last_heartbeat_at to the gateway's now.
    gw.clock.advance(chrono::Duration::seconds(90));
    let expected = gw.clock_now();
    client.push_status(heartbeat()).await.unwrap();
    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT last_heartbeat_at FROM platform.sync_services WHERE id = $1::uuid",
    )
    .bind(&sync_service_id)
    .fetch_one(gw.pool())
    .await
    .unwrap();
    assert_eq!(at.timestamp_micros(), expected.timestamp_micros());

    // Its config is its tenant's, in tenant scope.
    let config = client
        .get_config(AgentConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    let doc: sr_proto::sync_config::SyncConfigDocument =
        serde_json::from_slice(&config.config_json).unwrap();
    assert_eq!(doc.sync_service_id, sync_service_id);
    assert_eq!(doc.component_id, "acme-edge-1");
    assert_eq!(doc.scope, sr_proto::sync_config::Scope::Tenant);
    gw.stop().await;
}

#[tokio::test]
async fn enrollment_token_works_once() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let created = gw.create_package("acme", "sync", "edge-1").await;
    let token = created["token"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    enroll::enroll(token, &dir.path().join("a")).await.unwrap();
    let err = enroll::enroll(token, &dir.path().join("b"))
        .await
        .unwrap_err();
    match &err {
        EnrollError::Refused { status, detail, .. } => {
            assert_eq!(*status, 410);
            assert!(detail.contains("already used"), "{detail}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("ask the operator for a new onboarding package")
    );
    assert!(!dir.path().join("b").join("key.pem").exists());
    // The stored package was wiped after the download.
    let wiped: Option<String> = sqlx::query_scalar(
        "SELECT payload_ciphertext FROM platform.onboarding_packages WHERE id = $1::uuid",
    )
    .bind(created["package_id"].as_str().unwrap())
    .fetch_one(gw.pool())
    .await
    .unwrap();
    assert_eq!(wiped, None);
    gw.stop().await;
}

#[tokio::test]
async fn expired_enrollment_token_is_refused() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let (status, created) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/onboarding-packages",
            Some(
                json!({ "component_type": "sync", "component_id": "edge-1", "expires_in": "10m" }),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    gw.clock.advance(chrono::Duration::minutes(11));
    let dir = tempfile::tempdir().unwrap();
    let err = enroll::enroll(created["token"].as_str().unwrap(), dir.path())
        .await
        .unwrap_err();
    match err {
        EnrollError::Refused { status, detail, .. } => {
            assert_eq!(status, 410);
            assert!(detail.contains("expired"), "{detail}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_token_pinning_another_ca_never_talks_to_the_gateway() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let created = gw.create_package("acme", "sync", "edge-1").await;
    let mut token =
        sr_gateway::onboarding::EnrollmentToken::decode(created["token"].as_str().unwrap())
            .unwrap();
    token.ca_sha256 = "ab".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let err = enroll::enroll(&token.encode(), dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, EnrollError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not the one the token pins"),
        "{err}"
    );
    // The package is still there for the real token.
    let downloaded: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT downloaded_at FROM platform.onboarding_packages WHERE id = $1::uuid",
    )
    .bind(created["package_id"].as_str().unwrap())
    .fetch_one(gw.pool())
    .await
    .unwrap();
    assert_eq!(downloaded, None);
    gw.stop().await;
}

#[tokio::test]
async fn wrong_secret_is_not_found_and_bad_requests_name_the_field() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let created = gw.create_package("acme", "sync", "edge-1").await;
    let (status, body) = gw
        .api(
            Method::POST,
            &format!(
                "/api/v1/onboarding-packages/{}/download",
                created["package_id"].as_str().unwrap()
            ),
            None,
            Some(json!({ "secret": "guess" })),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    for (body, field) in [
        (
            json!({ "component_type": "checker", "component_id": "x" }),
            "component_type",
        ),
        (
            json!({ "component_type": "sync", "component_id": "a.b" }),
            "component_id",
        ),
        (
            json!({ "component_type": "sync", "component_id": "x", "expires_in": "forever" }),
            "expires_in",
        ),
        (
            json!({ "component_type": "sync", "component_id": "x", "colour": 1 }),
            "colour",
        ),
    ] {
        let (status, problem) = gw
            .admin(
                Method::POST,
                "/api/v1/tenants/acme/onboarding-packages",
                Some(body),
            )
            .await;
        assert!(status.is_client_error(), "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    // The platform tenant is not onboarded with packages.
    let (status, problem) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/platform/onboarding-packages",
            Some(json!({ "component_type": "sync", "component_id": "x" })),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(gw.count("onboarding_packages").await, 1);
    gw.stop().await;
}

#[tokio::test]
async fn agents_are_onboarded_too_and_re_enrollment_retires_the_old_certificate() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let (_dir, mut agent) = gw.enroll_edge("acme", "agent", "agent-7").await;
    let answer = agent
        .hello(AgentHelloRequest {
            agent_id: "agent-7".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.accepted);
    assert_eq!(answer.tenant_slug, "acme");
    // An agent with no devices assigned gets a present-but-empty sweep.
    let config = agent
        .get_config(AgentConfigRequest {
            agent_id: "agent-7".into(),
            config_version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let sweep = config.sweep.expect("typed sweep section");
    assert!(sweep.device_targets.is_empty() && sweep.networks.is_empty());
    let json: serde_json::Value = serde_json::from_slice(&config.config_json).unwrap();
    assert!(json["sweep"].is_object(), "{json}");
    // Someone else's agent id is refused.
    let status = agent
        .get_config(AgentConfigRequest {
            agent_id: "agent-8".into(),
            config_version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Agents get no SyncService record.
    let (_, services) = gw
        .admin(Method::GET, "/api/v1/tenants/acme/sync-services", None)
        .await;
    assert!(
        services
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["component_id"] != "agent-7")
    );

    // A new package for the same component replaces its certificate.
    let (_dir2, mut agent_again) = gw.enroll_edge("acme", "agent", "agent-7").await;
    agent_again
        .hello(AgentHelloRequest::default())
        .await
        .unwrap();
    let status = agent.hello(AgentHelloRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("enrolled again"),
        "{}",
        status.message()
    );

    // The same id cannot switch type.
    let (status, problem) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/onboarding-packages",
            Some(json!({ "component_type": "sync", "component_id": "agent-7" })),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    gw.stop().await;
}
