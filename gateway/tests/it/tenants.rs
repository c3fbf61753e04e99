//! Tenants and admin tokens through the admin API.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestGateway, faker_source};

#[tokio::test]
async fn reserved_and_invalid_slugs_are_refused_and_nothing_is_written() {
    let gw = TestGateway::start().await;
    let tenants_before = gw.count("tenants").await;
    let generation = gw.generation().await;
    for (slug, needle) in [
        ("platform", "reserved"),
        ("Acme", "lower-case"),
        ("a", "2 to 63"),
        ("acme.corp", "'.'"),
    ] {
        let (status, body) = gw
            .admin(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({ "slug": slug })),
            )
            .await;
        assert_eq!(status, 422, "{slug}: {body}");
        assert_eq!(body["field"], "slug");
        assert_eq!(body["status"], 422);
        assert!(body["detail"].as_str().unwrap().contains(needle), "{body}");
    }
    assert_eq!(gw.count("tenants").await, tenants_before);
    assert_eq!(gw.count("tenant_cas").await, 0);
    assert_eq!(gw.generation().await, generation);
    gw.stop().await;
}

#[tokio::test]
async fn creating_a_tenant_makes_its_ca_and_migrated_schema() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    assert_eq!(acme["slug"], "acme");
    assert_eq!(acme["allow_platform_sync"], true);
    let schema = acme["schema_name"].as_str().unwrap();
    assert_eq!(
        schema,
        format!("t_{}", acme["id"].as_str().unwrap().replace('-', ""))
    );
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(gw.pool())
    .await
    .unwrap();
    for t in [
        "_sqlx_migrations",
        "device_identifiers",
        "discovered_devices",
        "merge_audit",
        "ocsf_devices",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing in {tables:?}");
    }
    // The CA is the tenant's and was issued by the root.
    let cert_pem: String =
        sqlx::query_scalar("SELECT cert_pem FROM platform.tenant_cas WHERE tenant_id = $1::uuid")
            .bind(acme["id"].as_str().unwrap())
            .fetch_one(gw.pool())
            .await
            .unwrap();
    let der = sr_gateway::pki::first_cert_der(&cert_pem, "ca").unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        parsed.subject().to_string(),
        "CN=tenant-acme.ca.serviceradar"
    );
    let root = gw.root_ca();
    let (_, root_parsed) = x509_parser::parse_x509_certificate(root.cert_der()).unwrap();
    parsed
        .verify_signature(Some(root_parsed.public_key()))
        .unwrap();
    // Duplicate slug: 409, one tenant.
    let (status, body) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({ "slug": "acme" })),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["field"], "slug");
    // Lookup by slug and by id.
    let (status, by_slug) = gw.admin(Method::GET, "/api/v1/tenants/acme", None).await;
    assert_eq!(status, 200);
    let (_, by_id) = gw
        .admin(
            Method::GET,
            &format!("/api/v1/tenants/{}", acme["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(by_slug, by_id);
    gw.stop().await;
}

#[tokio::test]
async fn admin_api_requires_a_valid_bearer_token() {
    let gw = TestGateway::start().await;
    for token in [
        None,
        Some("nonsense"),
        Some("sra_00000000000000000000000000000000_x"),
    ] {
        let (status, content_type, body) = gw
            .api_raw(Method::GET, "/api/v1/tenants", token, None, None)
            .await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(content_type, "application/problem+json");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["title"], "unauthorized");
    }
    // A real token with one character changed fails too.
    let mut tampered = gw.admin_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _) = gw
        .api(Method::GET, "/api/v1/tenants", Some(&tampered), None)
        .await;
    assert_eq!(status, 401);
    // Unknown routes and methods answer problem JSON too.
    for (method, path, expected) in [
        (Method::GET, "/nothing-here", 404),
        (Method::DELETE, "/api/v1/tenants", 405),
    ] {
        let token = gw.admin_token.clone();
        let (status, content_type, _) = gw.api_raw(method, path, Some(&token), None, None).await;
        assert_eq!(status, expected, "{path}");
        assert_eq!(content_type, "application/problem+json", "{path}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn tenant_admin_tokens_only_touch_their_own_tenant() {
    let gw = TestGateway::start().await;
    gw.create_tenant("acme").await;
    gw.create_tenant("globex").await;
    let (status, minted) = gw
        .admin(
            Method::POST,
            "/api/v1/tenants/acme/admin-tokens",
            Some(json!({ "name": "acme-ops" })),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(minted["scope"], "tenant-admin");
    let token = minted["token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());

    // Own tenant: allowed.
    let (status, list) = gw.api(Method::GET, "/api/v1/tenants", t, None).await;
    assert_eq!(status, 200);
    let slugs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme"]);
    let (status, body) = gw
        .api(
            Method::POST,
            "/api/v1/tenants/acme/integration-sources",
            t,
            Some(faker_source("f1")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = gw
        .api(Method::GET, "/api/v1/tenants/acme/sync-services", t, None)
        .await;
    assert_eq!(status, 200);

    // Other tenants, existing or not, and platform-wide operations: forbidden.
    let sources_before = gw.count("integration_sources").await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/tenants/globex", None),
        (Method::GET, "/api/v1/tenants/no-such-tenant", None),
        (
            Method::GET,
            "/api/v1/tenants/globex/integration-sources",
            None,
        ),
        (
            Method::POST,
            "/api/v1/tenants/globex/integration-sources",
            Some(faker_source("evil")),
        ),
        (
            Method::POST,
            "/api/v1/tenants/globex/onboarding-packages",
            Some(json!({"component_type": "sync", "component_id": "x"})),
        ),
        (
            Method::POST,
            "/api/v1/tenants/globex/admin-tokens",
            Some(json!({"name": "x"})),
        ),
        (
            Method::PATCH,
            "/api/v1/tenants/globex",
            Some(json!({"allow_platform_sync": false})),
        ),
        (
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"slug": "mine"})),
        ),
        (
            Method::POST,
            "/api/v1/admin-tokens",
            Some(json!({"name": "root"})),
        ),
        (Method::GET, "/api/v1/sync-services", None),
    ] {
        let (status, problem) = gw.api(method.clone(), path, t, body).await;
        assert_eq!(status, 403, "{method} {path}: {problem}");
        assert_eq!(problem["status"], 403);
    }
    assert_eq!(gw.count("integration_sources").await, sources_before);
    assert_eq!(gw.count("tenants").await, 3);
    gw.stop().await;
}

#[tokio::test]
async fn restarting_reapplies_tenant_migrations_idempotently() {
    let gw = TestGateway::start().await;
    let acme = gw.create_tenant("acme").await;
    let schema = acme["schema_name"].as_str().unwrap().to_string();
    // Data in the tenant schema survives a restart that re-runs migrations.
    let mut tx = sr_gateway::db::begin_tenant_tx(gw.pool(), &schema)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ocsf_devices (uid, first_seen_time, last_seen_time) VALUES ('sr:1', now(), now())",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let checked = sr_gateway::db::migrate_all_tenants(gw.pool())
        .await
        .unwrap();
    assert_eq!(checked, 2, "platform tenant and acme");
    let again = sr_gateway::db::migrate_all_tenants(gw.pool())
        .await
        .unwrap();
    assert_eq!(again, 2);
    let applied: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\"._sqlx_migrations"
    ))
    .fetch_one(gw.pool())
    .await
    .unwrap();
    assert_eq!(
        applied,
        sr_gateway::db::TENANT_MIGRATOR.migrations.len() as i64,
        "each tenant migration applied once"
    );
    let devices: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".ocsf_devices"))
            .fetch_one(gw.pool())
            .await
            .unwrap();
    assert_eq!(devices, 1);
    // The tenant transaction did not leak its search_path into the pool.
    let path: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert!(!path.contains(&schema), "{path}");
    gw.stop().await;
}
