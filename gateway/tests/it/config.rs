//! Config delivery: scope per sync service, content-hash versions,
//! not_modified, and version changes on every relevant change.

use reqwest::Method;
use serde_json::json;
use sr_proto::monitoring::{AgentConfigRequest, AgentHelloRequest};
use sr_proto::sync_config::{Scope, SyncConfigDocument};

use crate::support::{GrpcClient, TestGateway, armis_source, faker_source};

async fn fetch(
    client: &mut GrpcClient,
    version: &str,
) -> sr_proto::monitoring::AgentConfigResponse {
    client
        .get_config(AgentConfigRequest {
            agent_id: String::new(),
            config_version: version.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn doc(response: &sr_proto::monitoring::AgentConfigResponse) -> SyncConfigDocument {
    serde_json::from_slice(&response.config_json).unwrap()
}

#[tokio::test]
async fn platform_sync_sees_all_assigned_sources_edge_sync_only_its_own() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    let globex = gw.create_tenant("globex").await;
    gw.create_tenant_without_platform_sync("initech").await;
    let path = |t: &str| format!("/api/v1/tenants/{t}/integration-sources");

    for (tenant, body) in [
        ("acme", armis_source("armis", "acme-key")),
        ("acme", faker_source("faker")),
        ("globex", faker_source("faker")),
    ] {
        let (status, b) = gw.admin(Method::POST, &path(tenant), Some(body)).await;
        assert_eq!(status, 201, "{b}");
    }
    let (_dir, mut acme_edge) = gw.enroll_edge("acme", "sync", "acme-edge").await;
    acme_edge.hello(AgentHelloRequest::default()).await.unwrap();
    let (_, edge_view) = gw
        .admin(Method::GET, "/api/v1/tenants/acme/sync-services", None)
        .await;
    let edge_id = edge_view
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["component_id"] == "acme-edge")
        .unwrap()["id"]
        .clone();
    let mut on_edge = faker_source("edge-faker");
    on_edge["sync_service_id"] = edge_id.clone();
    let (status, b) = gw.admin(Method::POST, &path("acme"), Some(on_edge)).await;
    assert_eq!(status, 201, "{b}");
    // initech runs its own edge sync; its source is not the platform's.
    let (_dir2, mut initech_edge) = gw.enroll_edge("initech", "sync", "initech-edge").await;
    let (status, b) = gw
        .admin(Method::POST, &path("initech"), Some(faker_source("faker")))
        .await;
    assert_eq!(status, 201, "{b}");

    let platform = doc(&fetch(&mut gw.platform_sync_client(), "").await);
    assert_eq!(platform.scope, Scope::Platform);
    assert_eq!(platform.component_id, "platform-sync");
    assert_eq!(platform.sync_service_id, gw.platform_sync_id().to_string());
    let keys: Vec<&str> = platform.sources.keys().map(String::as_str).collect();
    assert_eq!(keys, ["acme/armis", "acme/faker", "globex/faker"]);
    let armis = &platform.sources["acme/armis"];
    assert_eq!(armis.tenant_slug, "acme");
    assert_eq!(armis.tenant_id, acme["id"].as_str().unwrap());
    assert_eq!(armis.credentials["secret_key"], json!("acme-key"));
    assert_eq!(
        armis.discovery_interval,
        Some(std::time::Duration::from_secs(6 * 3600))
    );
    assert_eq!(armis.network_blacklist, ["10.99.0.0/16"]);
    assert_eq!(armis.queries[0].label, "all");
    assert_eq!(
        platform.sources["globex/faker"].tenant_id,
        globex["id"].as_str().unwrap()
    );
    assert_eq!(
        platform.sources["globex/faker"].settings["devices"],
        json!(10)
    );

    let edge = doc(&fetch(&mut acme_edge, "").await);
    assert_eq!(edge.scope, Scope::Tenant);
    assert_eq!(edge.sources.keys().collect::<Vec<_>>(), ["edge-faker"]);
    assert_eq!(
        edge.sources["edge-faker"].sync_service_id,
        edge_id.as_str().unwrap()
    );

    let initech = doc(&fetch(&mut initech_edge, "").await);
    assert_eq!(initech.sources.keys().collect::<Vec<_>>(), ["faker"]);
    assert_eq!(initech.sources["faker"].tenant_slug, "initech");
    gw.stop().await;
}

#[tokio::test]
async fn version_is_a_content_hash_and_unchanged_answers_not_modified() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let path = "/api/v1/tenants/acme/integration-sources";
    let (_, source) = gw
        .admin(Method::POST, path, Some(armis_source("armis", "k1")))
        .await;
    let id = source["id"].as_str().unwrap().to_string();
    let mut client = gw.platform_sync_client();

    let full = fetch(&mut client, "").await;
    assert!(!full.not_modified);
    assert_eq!(full.config_version.len(), 64);
    assert_eq!(full.config_poll_interval_sec, 300);
    assert_eq!(full.heartbeat_interval_sec, 30);
    let expected = sr_gateway::pki::sha256_hex(&full.config_json);
    assert_eq!(
        full.config_version, expected,
        "version = SHA-256 of the document"
    );

    let again = fetch(&mut client, &full.config_version).await;
    assert!(again.not_modified);
    assert!(again.config_json.is_empty());
    assert_eq!(again.config_version, full.config_version);
    // An unrelated change (another tenant) bumps the generation but not this content.
    gw.create_tenant("globex").await;
    let still = fetch(&mut client, &full.config_version).await;
    assert!(still.not_modified, "the document did not change");

    // Each change to the source changes the version.
    let mut versions = vec![full.config_version.clone()];
    for patch in [
        json!({ "endpoint": "https://other.armis.example" }),
        json!({ "credentials": { "secret_key": "k2" } }),
        json!({ "queries": [] }),
        json!({ "enabled": false }),
    ] {
        let (status, b) = gw
            .admin(Method::PATCH, &format!("{path}/{id}"), Some(patch))
            .await;
        assert_eq!(status, 200, "{b}");
        let next = fetch(&mut client, versions.last().unwrap()).await;
        assert!(!next.not_modified);
        assert!(!versions.contains(&next.config_version));
        versions.push(next.config_version);
    }
    // The incrementally rebuilt document is exactly what a cold build gives.
    let incremental = fetch(&mut client, "").await;
    gw.state().config_cache.clear();
    let cold = fetch(&mut client, "").await;
    assert_eq!(incremental.config_json, cold.config_json);
    assert_eq!(&incremental.config_version, versions.last().unwrap());

    // Hello with an old version says it is outdated; with the current one not.
    let hello = client
        .hello(AgentHelloRequest {
            config_version: versions[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hello.config_outdated);
    let hello = client
        .hello(AgentHelloRequest {
            config_version: versions.last().unwrap().clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!hello.config_outdated);
    gw.stop().await;
}

#[tokio::test]
async fn a_tenant_that_stops_allowing_the_platform_sync_leaves_its_document() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let (status, _) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/integration-sources",
            Some(faker_source("f")),
        )
        .await;
    assert_eq!(status, 201);
    let mut client = gw.platform_sync_client();
    let before = fetch(&mut client, "").await;
    assert_eq!(doc(&before).sources.len(), 1);
    let (status, body) = gw
        .admin(
            Method::PATCH,
            "/api/v1/tenants/acme",
            Some(json!({ "allow_platform_sync": false })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after = fetch(&mut client, &before.config_version).await;
    assert!(!after.not_modified);
    assert!(doc(&after).sources.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn an_unregistered_sync_must_say_hello_first() {
    let gw = TestGateway::start().await;
    let mut other =
        gw.platform_client(sr_gateway::identity::ComponentType::Sync, "platform-sync-2");
    let status = other
        .get_config(AgentConfigRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("call Hello first"));
    other.hello(AgentHelloRequest::default()).await.unwrap();
    let config = fetch(&mut other, "").await;
    let document = doc(&config);
    assert_eq!(document.scope, Scope::Platform);
    assert!(
        document.sources.is_empty(),
        "nothing is assigned to the second platform sync"
    );
    gw.stop().await;
}
