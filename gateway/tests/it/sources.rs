//! Integration sources through the admin API: sync service availability,
//! bad input, and credentials that never leave except in GetConfig.

use reqwest::Method;
use serde_json::{Value, json};
use sr_proto::monitoring::AgentConfigRequest;
use sr_proto::sync_config::SyncConfigDocument;

use crate::support::{TestGateway, armis_source, faker_source, logs};

#[tokio::test]
async fn creation_is_refused_without_a_sync_service_and_accepted_with_one() {
    let gw = TestGateway::start().await;
    gw.create_tenant_without_platform_sync("acme").await;
    let generation = gw.generation().await;
    let (status, problem) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/integration-sources",
            Some(faker_source("faker-1")),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["title"], "no sync service available");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("POST /api/v1/tenants/acme/onboarding-packages"),
        "{detail}"
    );
    assert!(detail.contains("sr-sync enroll --token"), "{detail}");
    assert_eq!(gw.count("integration_sources").await, 0);
    assert_eq!(gw.generation().await, generation);

    // The platform sync is not available to this tenant, even by id.
    let mut body = faker_source("faker-1");
    body["sync_service_id"] = json!(gw.platform_sync_id());
    let (status, _) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/integration-sources",
            Some(body),
        )
        .await;
    assert_eq!(status, 409);

    // Onboard an edge sync: now it works, and defaults to it.
    let created = gw.create_package("acme", "sync", "acme-edge").await;
    let (status, source) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/integration-sources",
            Some(faker_source("faker-1")),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    assert_eq!(source["sync_service"]["id"], created["sync_service_id"]);
    assert_eq!(source["sync_service"]["name"], "acme-edge");
    assert_eq!(source["sync_service"]["status"], "pending");
    assert_eq!(source["sync_service"]["is_platform_sync"], false);

    let (status, list) = gw
        .admin(
            Method::GET,
            "/api/v1/tenants/acme/integration-sources",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["sync_service"]["name"], "acme-edge");
    assert!(gw.generation().await > generation);

    // A platform-sync tenant gets the platform sync by default.
    gw.create_tenant("globex").await;
    let (status, source) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/globex/integration-sources",
            Some(faker_source("faker-1")),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    assert_eq!(source["sync_service"]["id"], json!(gw.platform_sync_id()));
    assert_eq!(source["sync_service"]["is_platform_sync"], true);
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field_and_writes_nothing() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    gw.create_tenant("globex").await;
    let globex_edge = gw.create_package("globex", "sync", "globex-edge").await;
    let generation = gw.generation().await;
    let path = "/api/v1/tenants/acme/integration-sources";
    let token = gw.admin_token.clone();

    let raw_cases: [(&str, &[u8], u16, Option<&str>); 4] = [
        ("malformed JSON", b"{\"name\": \"x\", ", 400, None),
        ("not an object", b"[1, 2]", 400, None),
        (
            "unknown field",
            br#"{"name":"x","type":"faker","colour":"red"}"#,
            400,
            Some("colour"),
        ),
        (
            "wrong type",
            br#"{"name":"x","type":"faker","page_size":"lots"}"#,
            400,
            Some("page_size"),
        ),
    ];
    for (what, body, status, field) in raw_cases {
        let (got, content_type, text) = gw
            .api_raw(
                Method::POST,
                path,
                Some(&token),
                Some("application/json"),
                Some(body.to_vec()),
            )
            .await;
        assert_eq!(got.as_u16(), status, "{what}: {text}");
        assert_eq!(content_type, "application/problem+json", "{what}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], status, "{what}");
        assert!(
            problem["title"].is_string() && problem["detail"].is_string(),
            "{what}"
        );
        assert_eq!(problem["field"].as_str(), field, "{what}: {problem}");
    }

    let mut bad_cidr = armis_source("a1", "k");
    bad_cidr["network_blacklist"] = json!(["10.0.0.0/8", "10.0.0.0/33"]);
    let mut unknown_type = faker_source("a2");
    unknown_type["type"] = json!("oracle");
    let mut foreign_sync = faker_source("a3");
    foreign_sync["sync_service_id"] = globex_edge["sync_service_id"].clone();
    let mut bad_interval = faker_source("a4");
    bad_interval["poll_interval"] = json!("every now and then");
    let mut bad_endpoint = armis_source("a5", "k");
    bad_endpoint["endpoint"] = json!("armis.example");
    let mut bad_query = armis_source("a6", "k");
    bad_query["queries"] = json!([{ "label": "", "query": "x" }]);
    for (what, body, field) in [
        ("invalid CIDR", bad_cidr, "network_blacklist[1]"),
        ("unknown source type", unknown_type, "type"),
        (
            "another tenant's sync service",
            foreign_sync,
            "sync_service_id",
        ),
        ("bad duration", bad_interval, "poll_interval"),
        ("endpoint without scheme", bad_endpoint, "endpoint"),
        ("empty query label", bad_query, "queries[0].label"),
    ] {
        let (status, problem) = gw.admin(Method::POST, path, Some(body)).await;
        assert_eq!(status, 422, "{what}: {problem}");
        assert_eq!(problem["field"], field, "{what}: {problem}");
    }

    let (status, _, text) = gw
        .api_raw(
            Method::POST,
            path,
            Some(&token),
            Some("text/plain"),
            Some(b"name=x".to_vec()),
        )
        .await;
    assert_eq!(status, 415, "{text}");

    // Nothing was written by any of them.
    assert_eq!(gw.count("integration_sources").await, 0);
    assert_eq!(gw.generation().await, generation);

    // A valid one goes in; a PATCH with a bad field changes nothing.
    let (status, source) = gw
        .admin(Method::POST, path, Some(armis_source("armis", "k")))
        .await;
    assert_eq!(status, 201, "{source}");
    let id = source["id"].as_str().unwrap();
    let (status, problem) = gw
        .admin(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({ "endpoint": "https://new.example", "network_blacklist": ["nope"] })),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "network_blacklist[0]");
    let (_, unchanged) = gw.admin(Method::GET, &format!("{path}/{id}"), None).await;
    assert_eq!(unchanged["endpoint"], "https://acme.armis.example");
    // Duplicate name.
    let (status, problem) = gw
        .admin(Method::POST, path, Some(armis_source("armis", "k")))
        .await;
    assert_eq!(status, 409);
    assert_eq!(problem["field"], "name");
    gw.stop().await;
}

#[tokio::test]
async fn credentials_never_appear_in_listings_or_logs() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let secret = format!("s3cr3t-{}", uuid::Uuid::new_v4().simple());
    let path = "/api/v1/tenants/acme/integration-sources";
    let mut responses = Vec::new();

    let (status, created) = gw
        .admin(Method::POST, path, Some(armis_source("armis", &secret)))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["has_credentials"], true);
    assert!(created.get("credentials").is_none());
    let id = created["id"].as_str().unwrap().to_string();
    responses.push(created);
    responses.push(gw.admin(Method::GET, path, None).await.1);
    responses.push(gw.admin(Method::GET, &format!("{path}/{id}"), None).await.1);
    let rotated = format!("{secret}-rotated");
    let (status, patched) = gw
        .admin(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({ "credentials": { "secret_key": rotated } })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    responses.push(patched);
    responses.push(
        gw.admin(Method::GET, "/api/v1/tenants/acme/sync-services", None)
            .await
            .1,
    );
    for response in &responses {
        let text = response.to_string();
        assert!(!text.contains(&secret), "credential leaked in {text}");
    }

    // At rest: encrypted.
    let stored: String = sqlx::query_scalar(
        "SELECT credentials_ciphertext FROM platform.integration_sources WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(gw.pool())
    .await
    .unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains(&secret));

    // The only place it appears: the platform sync's config document.
    let config = gw
        .platform_sync_client()
        .get_config(AgentConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    let doc: SyncConfigDocument = serde_json::from_slice(&config.config_json).unwrap();
    assert_eq!(
        doc.sources["acme/armis"].credentials["secret_key"],
        json!(rotated)
    );

    // Removing credentials works and is visible as has_credentials=false.
    let (_, cleared) = gw
        .admin(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({ "credentials": null })),
        )
        .await;
    assert_eq!(cleared["has_credentials"], false);

    let log = logs();
    assert!(
        log.contains("integration source created"),
        "logs were captured"
    );
    assert!(!log.contains(&secret), "credential leaked into the logs");
    assert!(
        !log.contains(&gw.admin_token),
        "admin token leaked into the logs"
    );
    gw.stop().await;
}

#[tokio::test]
async fn sources_can_be_updated_moved_and_deleted() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    let edge = gw.create_package("acme", "sync", "acme-edge").await;
    let path = "/api/v1/tenants/acme/integration-sources";
    let (_, source) = gw
        .admin(Method::POST, path, Some(armis_source("armis", "k")))
        .await;
    assert_eq!(source["sync_service"]["is_platform_sync"], true);
    let id = source["id"].as_str().unwrap();
    let (status, moved) = gw
        .admin(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({ "sync_service_id": edge["sync_service_id"], "discovery_interval": "90m", "enabled": false })),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["sync_service"]["id"], edge["sync_service_id"]);
    assert_eq!(moved["discovery_interval"], "1h30m");
    assert_eq!(moved["enabled"], false);
    assert_eq!(
        moved["has_credentials"], true,
        "absent credentials are kept"
    );
    let (status, _) = gw
        .admin(Method::DELETE, &format!("{path}/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = gw.admin(Method::GET, &format!("{path}/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = gw
        .admin(Method::DELETE, &format!("{path}/{id}"), None)
        .await;
    assert_eq!(status, 404);
    gw.stop().await;
}
