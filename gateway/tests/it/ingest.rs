//! StreamStatus ingestion over real mTLS: scoped by certificate, validated
//! chunk by chunk, reconciled into the tenant schema, acknowledged after
//! commit; a rejected stream writes nothing.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use sr_gateway::identity::ComponentType;
use sr_gateway::sweep_delivery::{AgentSweep, SweepCache};
use sr_proto::monitoring::{AgentConfigRequest, GatewayServiceStatus, GatewayStatusChunk};
use tonic::Code;
use uuid::Uuid;

use crate::support::{GrpcClient, TestGateway, faker_source};

/// A tenant with one faker source assigned to the platform sync.
async fn tenant_with_source(gw: &TestGateway, slug: &str) -> (Uuid, Uuid) {
    tenant_with(gw, slug, faker_source("faker")).await
}

/// A tenant with the integration source `body`: (tenant id, source id).
async fn tenant_with(gw: &TestGateway, slug: &str, body: Value) -> (Uuid, Uuid) {
    let tenant = gw.create_tenant(slug).await;
    (
        Uuid::parse_str(tenant["id"].as_str().unwrap()).unwrap(),
        create_source(gw, slug, body).await,
    )
}

/// Adds the integration source `body` to tenant `slug`; returns its id.
async fn create_source(gw: &TestGateway, slug: &str, body: Value) -> Uuid {
    let (status, source) = gw
        .admin(
            Method::POST,
            &format!("/api/v1/tenants/{slug}/integration-sources"),
            Some(body),
        )
        .await;
    assert!(status.is_success(), "{source}");
    Uuid::parse_str(source["id"].as_str().unwrap()).unwrap()
}

fn update(i: u32, tenant: Uuid, source: Uuid) -> Value {
    json!({
        "ip": format!("10.1.{}.{}", i / 250, i % 250 + 1),
        "source": "faker",
        "timestamp": "2025-01-01T00:00:00Z",
        "hostname": format!("host-{i}"),
        "mac": format!("A0:00:00:00:{:02X}:{:02X}", i / 256, i % 256),
        "metadata": {
            "integration_type": "faker",
            "integration_id": i.to_string(),
            "integration_source_id": source.to_string(),
            "tenant_id": tenant.to_string(),
        },
        "is_available": true,
        "confidence": 7
    })
}

fn chunk(agent_id: &str, index: i32, total: i32, payload: Vec<u8>) -> GatewayStatusChunk {
    GatewayStatusChunk {
        agent_id: agent_id.to_string(),
        chunk_index: index,
        total_chunks: total,
        is_final: index == total - 1,
        services: vec![GatewayServiceStatus {
            service_name: "sync".into(),
            service_type: "sync".into(),
            source: "results".into(),
            available: true,
            message: payload,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn payload(updates: &[Value]) -> Vec<u8> {
    serde_json::to_vec(updates).unwrap()
}

async fn send(
    client: &mut GrpcClient,
    chunks: Vec<GatewayStatusChunk>,
) -> Result<(), tonic::Status> {
    client
        .stream_status(futures::stream::iter(chunks))
        .await
        .map(|r| assert!(r.into_inner().received))
}

async fn tenant_rows(gw: &TestGateway, tenant: Uuid, table: &str) -> i64 {
    let schema = sr_gateway::db::tenant_schema_name(tenant);
    sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".{table}"))
        .fetch_one(gw.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn platform_sync_stream_is_reconciled_into_the_sources_tenant() {
    let gw = TestGateway::start().await;
    let (tenant, source) = tenant_with_source(&gw, "acme").await;
    let mut client = gw.platform_sync_client();
    let updates: Vec<Value> = (0..300).map(|i| update(i, tenant, source)).collect();
    let chunks = vec![
        chunk("platform-sync", 0, 3, payload(&updates[..100])),
        chunk("platform-sync", 1, 3, payload(&updates[100..200])),
        chunk("platform-sync", 2, 3, payload(&updates[200..])),
    ];
    send(&mut client, chunks.clone()).await.unwrap();
    assert_eq!(tenant_rows(&gw, tenant, "ocsf_devices").await, 300);
    assert_eq!(tenant_rows(&gw, tenant, "discovered_devices").await, 300);
    // At-least-once: the same stream again changes nothing.
    send(&mut client, chunks).await.unwrap();
    assert_eq!(tenant_rows(&gw, tenant, "ocsf_devices").await, 300);
    gw.stop().await;
}

#[tokio::test]
async fn malformed_streams_are_rejected_precisely_and_write_nothing() {
    let gw = TestGateway::start().await;
    let (tenant, source) = tenant_with_source(&gw, "acme").await;
    let mut client = gw.platform_sync_client();
    let good = payload(&[update(1, tenant, source)]);
    let cases: Vec<(&str, Vec<GatewayStatusChunk>, Code, &str)> = vec![
        (
            "out-of-order index",
            vec![
                chunk("platform-sync", 0, 3, good.clone()),
                chunk("platform-sync", 2, 3, good.clone()),
            ],
            Code::InvalidArgument,
            "chunk_index 2 is out of order (expected 1)",
        ),
        (
            "changing total",
            vec![
                chunk("platform-sync", 0, 3, good.clone()),
                chunk("platform-sync", 1, 4, good.clone()),
            ],
            Code::InvalidArgument,
            "changed within the stream",
        ),
        (
            "no final chunk",
            vec![
                chunk("platform-sync", 0, 3, good.clone()),
                chunk("platform-sync", 1, 3, good.clone()),
            ],
            Code::InvalidArgument,
            "ended after 2 of 3 chunks without a final chunk",
        ),
        (
            "payload over the limit",
            vec![chunk(
                "platform-sync",
                0,
                1,
                vec![b' '; 15 * 1024 * 1024 + 1],
            )],
            Code::ResourceExhausted,
            "over the 15728640-byte limit",
        ),
        (
            "invalid JSON",
            vec![
                chunk("platform-sync", 0, 2, good.clone()),
                chunk("platform-sync", 1, 2, b"[{\"ip\":".to_vec()),
            ],
            Code::InvalidArgument,
            "chunk 1, service 0: invalid JSON",
        ),
        (
            "not an array",
            vec![chunk(
                "platform-sync",
                0,
                1,
                serde_json::to_vec(&update(1, tenant, source)).unwrap(),
            )],
            Code::InvalidArgument,
            "must be a JSON array",
        ),
        (
            "agent_id not the certificate's",
            vec![chunk("someone-else", 0, 1, good.clone())],
            Code::PermissionDenied,
            "does not match the certificate's component id",
        ),
        (
            "no integration source from the platform sync",
            vec![chunk(
                "platform-sync",
                0,
                1,
                payload(&[
                    json!({"ip": "10.9.9.9", "source": "faker", "timestamp": "2025-01-01T00:00:00Z"}),
                ]),
            )],
            Code::InvalidArgument,
            "integration_source_id is required",
        ),
    ];
    for (name, chunks, code, needle) in cases {
        let status = send(&mut client, chunks).await.unwrap_err();
        assert_eq!(status.code(), code, "{name}: {}", status.message());
        assert!(
            status.message().contains(needle),
            "{name}: {}",
            status.message()
        );
        assert_eq!(
            tenant_rows(&gw, tenant, "ocsf_devices").await,
            0,
            "{name} wrote devices"
        );
        assert_eq!(
            tenant_rows(&gw, tenant, "discovered_devices").await,
            0,
            "{name} staged devices"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn edge_sync_streaming_for_another_tenant_is_denied_and_writes_nothing() {
    let gw = TestGateway::start().await;
    let (tenant_a, _) = tenant_with_source(&gw, "acme").await;
    let (tenant_b, source_b) = tenant_with_source(&gw, "globex").await;
    let (_dir, mut edge_a) = gw.enroll_edge("acme", "sync", "edge-a").await;
    let hello = edge_a
        .hello(sr_proto::monitoring::AgentHelloRequest {
            agent_id: "edge-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(hello.into_inner().accepted);

    // Claims tenant B in the metadata.
    let claim_b = payload(&[
        json!({"ip": "10.0.0.1", "source": "faker", "timestamp": "2025-01-01T00:00:00Z",
        "metadata": {"tenant_id": tenant_b.to_string(), "integration_id": "1"}}),
    ]);
    let status = send(&mut edge_a, vec![chunk("edge-a", 0, 1, claim_b)])
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );
    // Names tenant B's source.
    let status = send(
        &mut edge_a,
        vec![chunk(
            "edge-a",
            0,
            1,
            payload(&[update(1, tenant_b, source_b)]),
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("not assigned to this sync service"),
        "{}",
        status.message()
    );
    // The tenant field of the chunk itself.
    let mut spoofed = chunk("edge-a", 0, 1, payload(&[]));
    spoofed.tenant_id = tenant_b.to_string();
    let status = send(&mut edge_a, vec![spoofed]).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );

    for tenant in [tenant_a, tenant_b] {
        assert_eq!(tenant_rows(&gw, tenant, "ocsf_devices").await, 0);
    }
    gw.stop().await;
}

#[tokio::test]
async fn bad_device_updates_are_skipped_not_fatal() {
    let gw = TestGateway::start().await;
    let (tenant, source) = tenant_with_source(&gw, "acme").await;
    let mut client = gw.platform_sync_client();
    let mut non_string = update(2, tenant, source);
    non_string["metadata"]["armis_device_id"] = json!(12345);
    let mut giant = update(3, tenant, source);
    giant["metadata"]["notes"] = json!("x".repeat(20_000));
    let batch = vec![
        update(1, tenant, source),
        json!({"ip": "999.1.1.1", "source": "faker", "metadata": {"integration_source_id": source.to_string()}}),
        json!("not an object"),
        non_string,
        giant,
    ];
    send(
        &mut client,
        vec![chunk("platform-sync", 0, 1, payload(&batch))],
    )
    .await
    .unwrap();
    assert_eq!(tenant_rows(&gw, tenant, "ocsf_devices").await, 3);
    let armis_ids: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".device_identifiers WHERE identifier_type = 'armis_device_id'",
        sr_gateway::db::tenant_schema_name(tenant)
    ))
    .fetch_one(gw.pool())
    .await
    .unwrap();
    assert_eq!(armis_ids, 0, "a non-string identifier is ignored");
    gw.stop().await;
}

#[tokio::test]
async fn only_sync_services_may_stream() {
    let gw = TestGateway::start().await;
    let status = gw
        .platform_client(ComponentType::Checker, "c1")
        .stream_status(futures::stream::iter(Vec::<GatewayStatusChunk>::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    gw.stop().await;
}

/// Tenant `acme` with a faker source assigned to agent `agent-1`:
/// (tenant id, source id).
async fn tenant_with_agent_source(gw: &TestGateway) -> (Uuid, Uuid) {
    let mut source = faker_source("faker");
    source["agent_id"] = json!("agent-1");
    tenant_with(gw, "acme", source).await
}

/// Streams `count` devices of `source` through the platform sync.
async fn sync_devices(gw: &TestGateway, tenant: Uuid, source: Uuid, count: u32) {
    let updates: Vec<Value> = (0..count).map(|i| update(i, tenant, source)).collect();
    stream(gw, &updates).await;
}

/// `agent-1`'s GetConfig, with the version it has.
fn ask_agent_1(version: &str) -> AgentConfigRequest {
    AgentConfigRequest {
        agent_id: "agent-1".into(),
        config_version: version.to_string(),
    }
}

/// `agent-1` polls through `agent` (its sweep starts empty), `count`
/// devices are synced, and `cache` is watched until it holds the rebuilt
/// sweep without the agent asking; panics with `what` after 20 s. Returns
/// the version polled first and the rebuilt sweep.
async fn sync_and_wait_for_refresh(
    gw: &TestGateway,
    agent: &mut GrpcClient,
    cache: &SweepCache,
    (tenant, source): (Uuid, Uuid),
    count: u32,
    what: &str,
) -> (String, Arc<AgentSweep>) {
    let before = agent
        .get_config(ask_agent_1(""))
        .await
        .unwrap()
        .into_inner();
    assert!(before.sweep.unwrap().device_targets.is_empty());
    sync_devices(gw, tenant, source, count).await;
    let sweep = refreshed_sweep(cache, tenant, &before.config_version, what).await;
    assert_eq!(sweep.stats.targets, count as usize);
    (before.config_version, sweep)
}

/// Waits until `cache` holds a sweep of `agent-1` other than `old_version`,
/// without the agent asking; panics with `what` after 20 s.
async fn refreshed_sweep(
    cache: &SweepCache,
    tenant: Uuid,
    old_version: &str,
    what: &str,
) -> Arc<AgentSweep> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match cache.cached(tenant, "agent-1") {
            Some(sweep) if sweep.version != old_version => return sweep,
            _ if std::time::Instant::now() > deadline => panic!("{what}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn only_the_agents_own_tenants_source_edits_make_its_sweep_stale() {
    let gw = TestGateway::start().await;
    let (tenant, source) = tenant_with_agent_source(&gw).await;
    let (_, other_source) = tenant_with_source(&gw, "globex").await;
    let (_dir, mut agent) = gw.enroll_edge("acme", "agent", "agent-1").await;
    sync_devices(&gw, tenant, source, 20).await;
    let first = agent
        .get_config(ask_agent_1(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.sweep.unwrap().device_targets.len(), 20);
    let cached = gw.state().sweep_cache.cached(tenant, "agent-1").unwrap();

    // Another tenant's edit: the very same cached sweep is served.
    let blacklist = json!({ "network_blacklist": ["10.1.0.0/24"] });
    let other_path = format!("/api/v1/tenants/globex/integration-sources/{other_source}");
    let (status, body) = gw
        .admin(Method::PATCH, &other_path, Some(blacklist.clone()))
        .await;
    assert!(status.is_success(), "{body}");
    agent.get_config(ask_agent_1("")).await.unwrap();
    let after_other = gw.state().sweep_cache.cached(tenant, "agent-1").unwrap();
    assert!(
        Arc::ptr_eq(&cached, &after_other),
        "another tenant's edit rebuilt this tenant's sweep"
    );

    // Its own tenant's edit: rebuilt before the agent asks (the edit is
    // announced like an ingest commit), and the blacklist applies.
    let own_path = format!("/api/v1/tenants/acme/integration-sources/{source}");
    let (status, body) = gw.admin(Method::PATCH, &own_path, Some(blacklist)).await;
    assert!(status.is_success(), "{body}");
    let refreshed = refreshed_sweep(
        &gw.state().sweep_cache,
        tenant,
        &first.config_version,
        "the source edit did not refresh the cached sweep",
    )
    .await;
    assert_eq!(refreshed.stats.targets, 0);
    let rebuilt = agent
        .get_config(ask_agent_1(""))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rebuilt.config_version, first.config_version);
    assert!(rebuilt.sweep.unwrap().device_targets.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_commit_on_one_replica_refreshes_the_sweeps_cached_by_another() {
    let gw = TestGateway::start().await;
    let (tenant, source) = tenant_with_agent_source(&gw).await;
    let (dir, _) = gw.enroll_edge("acme", "agent", "agent-1").await;
    // The agent polls replica B; the sync service streams to replica A.
    let replica = gw.start_replica().await;
    let mut agent = gw.replica_client(&replica, &dir);
    // Replica B hears of A's commit and rebuilds without the agent asking.
    sync_and_wait_for_refresh(
        &gw,
        &mut agent,
        &replica.state().sweep_cache,
        (tenant, source),
        30,
        "replica B's cached sweep was not refreshed after replica A's commit",
    )
    .await;
    replica.shutdown().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_commit_refreshes_cached_agent_sweeps_before_their_next_poll() {
    let gw = TestGateway::start().await;
    let (tenant, source) = tenant_with_agent_source(&gw).await;
    let (_dir, mut agent) = gw.enroll_edge("acme", "agent", "agent-1").await;
    // Without the agent asking, its cached sweep is rebuilt after the commit.
    let (before, refreshed) = sync_and_wait_for_refresh(
        &gw,
        &mut agent,
        &gw.state().sweep_cache,
        (tenant, source),
        50,
        "the cached sweep was not refreshed after the commit",
    )
    .await;
    // The next poll is served that very sweep.
    let after = agent
        .get_config(ask_agent_1(&before))
        .await
        .unwrap()
        .into_inner();
    assert!(!after.not_modified);
    assert_eq!(after.config_version, refreshed.version);
    assert_eq!(after.sweep.unwrap().device_targets.len(), 50);
    gw.stop().await;
}

/// `update(i, …)` with `changes` laid over it (`metadata` merged key by key).
fn changed_update(i: u32, tenant: Uuid, source: Uuid, changes: Value) -> Value {
    let mut base = update(i, tenant, source);
    for (key, value) in changes.as_object().unwrap() {
        if key == "metadata" {
            for (k, v) in value.as_object().unwrap() {
                base["metadata"][k] = v.clone();
            }
        } else {
            base[key] = value.clone();
        }
    }
    base
}

/// `agent`'s sweep in `tenant` as `cache` serves it (built if stale).
async fn sweep_of(
    gw: &TestGateway,
    cache: &SweepCache,
    tenant: Uuid,
    agent: &str,
) -> Arc<AgentSweep> {
    sr_gateway::sweep_delivery::agent_sweep(gw.pool(), cache, tenant, agent, chrono::Utc::now())
        .await
        .unwrap()
}

/// Streams `updates` through the platform sync.
async fn stream(gw: &TestGateway, updates: &[Value]) {
    let mut sync = gw.platform_sync_client();
    send(
        &mut sync,
        vec![chunk("platform-sync", 0, 1, payload(updates))],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn sweeps_rebuilt_from_changed_devices_equal_sweeps_built_from_scratch() {
    let gw = TestGateway::start().await;
    let (tenant, source_a) = tenant_with_agent_source(&gw).await;
    let mut body = faker_source("faker-b");
    body["agent_id"] = json!("agent-2");
    let source_b = create_source(&gw, "acme", body).await;
    let cache = &gw.state().sweep_cache;
    let agents = ["agent-1", "agent-2"];

    let a = |i: u32| update(i, tenant, source_a);
    let a_with = |i: u32, changes: Value| changed_update(i, tenant, source_a, changes);
    let b_with = |i: u32, changes: Value| changed_update(i, tenant, source_b, changes);
    let rounds: Vec<(&str, Vec<Value>)> = vec![
        ("initial", (0..40).map(a).collect()),
        (
            "IP swaps, new hostnames, new devices",
            (0..5)
                .map(|i| a_with(i, json!({"ip": format!("10.1.0.{}", i + 6)})))
                .chain((5..10).map(|i| a_with(i, json!({"ip": format!("10.1.0.{}", i - 4)}))))
                .chain((10..15).map(|i| a_with(i, json!({"hostname": format!("renamed-{i}")}))))
                .chain((40..45).map(a))
                .collect(),
        ),
        (
            "the other source's devices, one assigned to agent-1 by its own agent",
            (100..110)
                .map(|i| b_with(i, json!({"ip": format!("10.2.0.{i}")})))
                .chain([b_with(
                    110,
                    json!({"ip": "10.2.0.110", "agent_id": "agent-1",
                           "metadata": {"agent_id": "agent-1"}}),
                )])
                .collect(),
        ),
        (
            "devices of agent-1's source given agent-2, and reported by the other source",
            (20..25)
                .map(|i| a_with(i, json!({"agent_id": "agent-2"})))
                .chain((30..33).map(|i| {
                    // The same MAC and IP as agent-1's device i.
                    b_with(i, json!({"metadata": {"integration_id": format!("b-{i}")}}))
                }))
                .collect(),
        ),
    ];
    for (round, (what, updates)) in rounds.iter().enumerate() {
        stream(&gw, updates).await;
        for agent in agents {
            let rebuilt = sweep_of(&gw, cache, tenant, agent).await;
            let scratch = sweep_of(&gw, &SweepCache::default(), tenant, agent).await;
            assert_eq!(
                rebuilt.document, scratch.document,
                "{agent} after round {round} ({what})"
            );
            assert_eq!(rebuilt.version, scratch.version);
            assert!(scratch.full_reload);
            assert_eq!(
                rebuilt.full_reload,
                round == 0,
                "{agent} after round {round} ({what}): only the first build loads everything"
            );
        }
    }
    // agent-1: its source's 45 devices and the other source's device that
    // names agent-1 as its own agent; three of them lost their IP to the
    // other source's devices reported at the same IP (one active device
    // per IP), so they are not swept.
    let agent_1 = sweep_of(&gw, cache, tenant, "agent-1").await;
    assert_eq!((agent_1.stats.devices, agent_1.stats.targets), (46, 43));
    assert_eq!(agent_1.stats.missing_ip, 3);
    // agent-2: the other source's 11 + 3 devices, and the 5 devices of
    // agent-1's source that name agent-2 as their own agent.
    assert_eq!(
        sweep_of(&gw, cache, tenant, "agent-2").await.stats.targets,
        19
    );

    // An unchanged re-sync changes no device: the very same sweep is served.
    let before = cache.cached(tenant, "agent-1").unwrap();
    stream(&gw, &rounds[3].1).await;
    let after = sweep_of(&gw, cache, tenant, "agent-1").await;
    assert!(
        Arc::ptr_eq(&before, &after),
        "an unchanged re-sync rebuilt the sweep"
    );

    // Re-observed a day later: the devices' last-seen times change, nothing
    // a sweep reads does. The sweep is stale (the commit changed devices)
    // but its document is reused, not regenerated.
    let later: Vec<Value> = rounds[3]
        .1
        .iter()
        .map(|update| {
            let mut update = update.clone();
            update["timestamp"] = json!("2025-01-02T00:00:00Z");
            update
        })
        .collect();
    stream(&gw, &later).await;
    let reobserved = sweep_of(&gw, cache, tenant, "agent-1").await;
    assert!(
        !Arc::ptr_eq(&reobserved, &after),
        "the commit left the sweep fresh"
    );
    assert_eq!(reobserved.version, after.version);
    assert!(
        Arc::ptr_eq(&reobserved.document, &after.document),
        "only last-seen times changed, yet the sweep was regenerated"
    );
    let scratch = sweep_of(&gw, &SweepCache::default(), tenant, "agent-1").await;
    assert_eq!(reobserved.document, scratch.document);

    // A source edit reloads everything.
    let (status, body) = gw
        .admin(
            Method::PATCH,
            &format!("/api/v1/tenants/acme/integration-sources/{source_a}"),
            Some(json!({"network_blacklist": ["10.1.0.0/28"]})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let edited = sweep_of(&gw, cache, tenant, "agent-1").await;
    assert!(edited.full_reload);
    assert!(edited.stats.blacklisted > 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_starting_gateway_builds_the_sweeps_of_recently_polling_agents() {
    let gw = TestGateway::start().await;
    let (tenant, source) = tenant_with_agent_source(&gw).await;
    let (dir, mut agent) = gw.enroll_edge("acme", "agent", "agent-1").await;
    sync_devices(&gw, tenant, source, 25).await;
    let polled = agent
        .get_config(ask_agent_1(""))
        .await
        .unwrap()
        .into_inner();
    // The poll is recorded off the poll's path.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let seen: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
            "SELECT last_seen_at FROM platform.components \
             WHERE tenant_id = $1 AND component_id = 'agent-1'",
        )
        .bind(tenant)
        .fetch_one(gw.pool())
        .await
        .unwrap();
        if seen.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the poll was not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Another gateway starting (a restart, or a new replica) builds the
    // agent's sweep before the agent asks it.
    let replica = gw.start_replica().await;
    let warmed = refreshed_sweep(
        &replica.state().sweep_cache,
        tenant,
        "",
        "the starting gateway did not build the recently seen agent's sweep",
    )
    .await;
    assert_eq!(warmed.version, polled.config_version);
    assert_eq!(warmed.stats.targets, 25);
    // And serves it: same version, not modified.
    let mut via_replica = gw.replica_client(&replica, &dir);
    let answer = via_replica
        .get_config(ask_agent_1(&polled.config_version))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.not_modified);
    replica.shutdown().await.unwrap();
    gw.stop().await;
}
