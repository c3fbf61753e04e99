//! The outcome table of the certificate identity reference, row by row,
//! over real mTLS with certificates the gateway issued.

use reqwest::Method;
use serde_json::json;
use sr_gateway::identity::ComponentType;
use sr_gateway::pki::{self, Validity};
use sr_proto::monitoring::{
    AgentConfigRequest, AgentHelloRequest, GatewayServiceStatus, GatewayStatusRequest,
};
use tonic::Code;

use crate::support::{TestGateway, faker_source};

fn hello(agent_id: &str) -> AgentHelloRequest {
    AgentHelloRequest {
        agent_id: agent_id.into(),
        version: "test".into(),
        capabilities: vec!["sync".into()],
        ..Default::default()
    }
}

fn heartbeat(agent_id: &str) -> GatewayStatusRequest {
    GatewayStatusRequest {
        agent_id: agent_id.into(),
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

/// A refused TLS handshake surfaces as a transport error; a refused call
/// after the handshake as UNAUTHENTICATED. Either way, no answer.
fn assert_refused_at_the_door(status: &tonic::Status) {
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Unauthenticated
        ),
        "unexpected status: {status:?}"
    );
}

async fn registered_sync_services(gw: &TestGateway) -> i64 {
    gw.count("sync_services").await
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let gw = TestGateway::start().await;
    let before = registered_sync_services(&gw).await;
    let status = gw
        .client_without_identity()
        .hello(hello(""))
        .await
        .unwrap_err();
    assert_refused_at_the_door(&status);
    assert_eq!(registered_sync_services(&gw).await, before);
    gw.stop().await;
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_refused() {
    let gw = TestGateway::start().await;
    // Same names as the real platform sync, but a CA the gateway never saw.
    let rogue_root = pki::new_root_ca(Validity::days_from_now(1)).unwrap();
    let cert = pki::issue_platform_component(
        &rogue_root,
        ComponentType::Sync,
        "platform",
        "platform",
        "platform-sync",
        Validity::days_from_now(1),
    )
    .unwrap();
    let status = gw
        .client_with(&cert.cert_pem, &cert.key_pem)
        .hello(hello("platform-sync"))
        .await
        .unwrap_err();
    assert_refused_at_the_door(&status);
    gw.stop().await;
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let gw = TestGateway::start().await;
    let expired = Validity {
        not_before: chrono::Utc::now() - chrono::Duration::days(10),
        not_after: chrono::Utc::now() - chrono::Duration::days(1),
    };
    let cert = gw.platform_cert(ComponentType::Sync, "platform-sync", expired);
    let status = gw
        .client_with(&cert.cert_pem, &cert.key_pem)
        .hello(hello("platform-sync"))
        .await
        .unwrap_err();
    assert_refused_at_the_door(&status);
    gw.stop().await;
}

#[tokio::test]
async fn agent_id_mismatch_is_permission_denied() {
    let gw = TestGateway::start().await;
    let mut client = gw.platform_sync_client();
    let status = client.hello(hello("someone-else")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("\"someone-else\""),
        "{}",
        status.message()
    );
    let status = client
        .get_config(AgentConfigRequest {
            agent_id: "someone-else".into(),
            config_version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // The correct id (or none) is accepted.
    let answer = client
        .hello(hello("platform-sync"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.accepted);
    gw.stop().await;
}

#[tokio::test]
async fn wrong_component_type_is_permission_denied() {
    let gw = TestGateway::start().await;
    // A platform checker may not ask for config.
    let status = gw
        .platform_client(ComponentType::Checker, "checker-1")
        .get_config(AgentConfigRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "component type checker may not call GetConfig (allowed: sync, agent)"
    );
    // A platform gateway identity may not say Hello as a sync.
    let status = gw
        .platform_client(ComponentType::Gateway, "gw-2")
        .hello(hello(""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // An enrolled edge agent may not push sync heartbeats.
    gw.create_tenant("acme").await;
    let (_dir, mut agent) = gw.enroll_edge("acme", "agent", "agent-1").await;
    let status = agent.push_status(heartbeat("agent-1")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("component type agent may not call PushStatus")
    );
    gw.stop().await;
}

#[tokio::test]
async fn spoofed_tenant_field_is_permission_denied_and_writes_nothing() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    let mut client = gw.platform_sync_client();
    client.hello(hello("platform-sync")).await.unwrap();
    let before: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_heartbeat_at FROM platform.sync_services WHERE id = $1")
            .bind(gw.platform_sync_id())
            .fetch_one(gw.pool())
            .await
            .unwrap();
    gw.clock.advance(chrono::Duration::seconds(30));

    let mut spoofed = heartbeat("platform-sync");
    spoofed.tenant_id = acme["id"].as_str().unwrap().into();
    let status = client.push_status(spoofed).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("tenant_id"),
        "{}",
        status.message()
    );

    let mut spoofed = heartbeat("platform-sync");
    spoofed.services[0].tenant_slug = "acme".into();
    let status = client.push_status(spoofed).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let after: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_heartbeat_at FROM platform.sync_services WHERE id = $1")
            .bind(gw.platform_sync_id())
            .fetch_one(gw.pool())
            .await
            .unwrap();
    assert_eq!(before, after, "a refused push must not record a heartbeat");

    // The certificate's own tenant fields are fine.
    let mut honest = heartbeat("platform-sync");
    honest.tenant_slug = "platform".into();
    honest.tenant_id = gw.report.platform_tenant_id.to_string();
    client.push_status(honest).await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn edge_component_without_onboarding_record_is_permission_denied() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    let tenant_id = acme["id"].as_str().unwrap().parse().unwrap();
    // A certificate the tenant CA really issued, but never enrolled.
    let ca = sr_gateway::tenants::load_ca(gw.pool(), &gw.state().secrets, tenant_id)
        .await
        .unwrap();
    let cert =
        pki::issue_edge_component(&ca, "acme", "default", "ghost", Validity::days_from_now(1))
            .unwrap();
    let chain = format!("{}{}", cert.cert_pem, ca.cert_pem());
    let status = gw
        .client_with(&chain, &cert.key_pem)
        .hello(hello("ghost"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("not enrolled"),
        "{}",
        status.message()
    );
    gw.stop().await;
}

#[tokio::test]
async fn certificate_naming_another_tenant_than_its_ca_is_permission_denied() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    gw.create_tenant("globex").await;
    let tenant_id = acme["id"].as_str().unwrap().parse().unwrap();
    let ca = sr_gateway::tenants::load_ca(gw.pool(), &gw.state().secrets, tenant_id)
        .await
        .unwrap();
    // acme's CA issues a certificate whose CN claims globex.
    let cert = pki::issue_edge_component(
        &ca,
        "globex",
        "default",
        "edge-1",
        Validity::days_from_now(1),
    )
    .unwrap();
    let chain = format!("{}{}", cert.cert_pem, ca.cert_pem());
    let status = gw
        .client_with(&chain, &cert.key_pem)
        .hello(hello("edge-1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("\"globex\""),
        "{}",
        status.message()
    );
    gw.stop().await;
}

#[tokio::test]
async fn edge_sync_of_tenant_a_cannot_ask_for_or_send_for_tenant_b() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    let globex = gw.create_tenant("globex").await;
    // globex has a source on the platform sync.
    let (status, globex_source) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/globex/integration-sources",
            Some(faker_source("globex-faker")),
        )
        .await;
    assert_eq!(status, 201, "{globex_source}");
    let (_dir, mut edge) = gw.enroll_edge("acme", "sync", "acme-edge").await;
    edge.hello(hello("acme-edge")).await.unwrap();

    // Asking with globex's tenant fields.
    let mut push = heartbeat("acme-edge");
    push.tenant_slug = "globex".into();
    let status = edge.push_status(push).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut push = heartbeat("acme-edge");
    push.tenant_id = globex["id"].as_str().unwrap().into();
    assert_eq!(
        edge.push_status(push).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Reporting a run of globex's source: refused, nothing written.
    let report = sr_proto::run_report::RunReport {
        integration_source_id: globex_source["id"].as_str().unwrap().into(),
        tenant_id: globex["id"].as_str().unwrap().into(),
        run_id: "r1".into(),
        phase: sr_proto::run_report::RunPhase::Succeeded,
        devices: 5,
        complete: true,
        error: None,
        adapter: "faker@1.0.0".into(),
        at: chrono::Utc::now(),
    };
    let push = GatewayStatusRequest {
        agent_id: "acme-edge".into(),
        services: vec![GatewayServiceStatus {
            service_name: "sync-run".into(),
            service_type: "sync".into(),
            source: "status".into(),
            available: true,
            message: serde_json::to_vec(&report).unwrap(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let status = edge.push_status(push).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let last_result: Option<String> = sqlx::query_scalar(
        "SELECT last_result FROM platform.integration_sources WHERE id = $1::uuid",
    )
    .bind(globex_source["id"].as_str().unwrap())
    .fetch_one(gw.pool())
    .await
    .unwrap();
    assert_eq!(last_result, None);

    // Its config holds nothing of globex.
    let config = edge
        .get_config(AgentConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    let doc: sr_proto::sync_config::SyncConfigDocument =
        serde_json::from_slice(&config.config_json).unwrap();
    assert_eq!(doc.scope, sr_proto::sync_config::Scope::Tenant);
    assert!(doc.sources.is_empty(), "{doc:?}");
    assert!(
        !String::from_utf8(config.config_json)
            .unwrap()
            .contains("globex")
    );
    let _ = acme;

    // And the tenant admin of acme cannot read globex through the API either.
    let (_, token) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/admin-tokens",
            Some(json!({ "name": "acme-ops" })),
        )
        .await;
    let (status, _) = gw
        .api(
            Method::GET,
            "/api/v1/tenants/globex/integration-sources",
            token["token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 403);
    gw.stop().await;
}

#[tokio::test]
async fn hello_answers_with_the_certificates_tenant_and_partition_wins() {
    let gw = TestGateway::start().await;
    let mut client = gw.platform_sync_client();
    let mut request = hello("platform-sync");
    request.partition = "somewhere-else".into();
    let answer = client.hello(request).await.unwrap().into_inner();
    assert!(answer.accepted);
    assert_eq!(answer.agent_id, "platform-sync");
    assert_eq!(answer.tenant_id, gw.report.platform_tenant_id.to_string());
    assert_eq!(answer.tenant_slug, "platform");
    assert_eq!(answer.gateway_id, "gateway");
    assert_eq!(answer.heartbeat_interval_sec, 30);
    let partition: String =
        sqlx::query_scalar("SELECT partition FROM platform.sync_services WHERE id = $1")
            .bind(gw.platform_sync_id())
            .fetch_one(gw.pool())
            .await
            .unwrap();
    assert_eq!(partition, "platform");
    gw.stop().await;
}
