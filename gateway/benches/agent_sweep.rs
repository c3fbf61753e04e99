//! GetConfig for a monitoring agent with 10,000 sweep targets, through real
//! gRPC over real mTLS on loopback against a real PostgreSQL.
//!
//! Measures calls of:
//! - `not_modified`: the agent already has the current version;
//! - `full (cached)`: the agent has no version; the sweep is served from
//!   the gateway's cache (its devices did not change);
//! - `full (racing commit)`: right before the call, a commit changed
//!   `CHANGED_DEVICES` of the agent's devices (stamped and the data
//!   generation bumped as DIRE does) and the background refresh started, as
//!   after an ingest commit; the call waits for that rebuild in flight, which
//!   reloads only the changed devices. A poll arriving later finds the
//!   refreshed sweep: `full (cached)`.
//! - `full (stale)`: the same commit with no refresh started (an
//!   announcement lost), so the call itself reloads the changed devices and
//!   regenerates the sweep.
//! - `full (re-observed)`: a commit gave every device a new last-seen time
//!   and nothing else, as each sync of a real inventory does; the call finds
//!   the sweep stale, reloads the (no) changed devices and reuses the sweep.
//! - `full (cold cache)`: the cache is empty, as after a gateway restart,
//!   so the call loads every device of the agent and generates the sweep.
//!
//! Targets: not_modified p99 ≤ 2 ms; full 10k-target response p99 ≤ 50 ms.
//!
//! On loopback (64 KiB MSS) a 4 MiB response after a pause now and then
//! waits ~90 ms in TCP (window updates held back, slow start after idle)
//! while gateway and client are idle; with the loopback MTU at 1,500 these
//! tails disappear. Read the racing and re-observed maxima with that in mind.
//!
//! Run: `cargo bench -p sr-gateway --bench agent_sweep`.

use std::time::{Duration, Instant};

use sr_gateway::bootstrap::{self, BootstrapOptions};
use sr_gateway::config::GatewayConfig;
use sr_gateway::server::{self, ServerOptions};
use sr_gateway::tenants::{self, NewTenant};
use sr_proto::monitoring::AgentConfigRequest;
use sr_proto::monitoring::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_testkit::pg::TestDb;
use tonic::transport::Channel;

/// The allocator of the `sr-gateway` binary, so the figures are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TARGETS: i64 = 10_000;
const CALLS: usize = 1_000;
const CHANGED_CALLS: usize = 200;
/// Devices one commit changes.
const CHANGED_DEVICES: i64 = 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {name:<20} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} calls)",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1]),
        samples.len()
    );
}

/// Times one GetConfig without a version (a full response) and checks it
/// holds `version` (`None`: any version but the previous one, which it
/// replaces) and every target.
async fn full_call(
    client: &mut AgentGatewayServiceClient<Channel>,
    version: &mut String,
    expected: Option<&str>,
) -> Result<Duration, tonic::Status> {
    let started = Instant::now();
    let response = client
        .get_config(AgentConfigRequest {
            agent_id: "agent-1".into(),
            config_version: String::new(),
        })
        .await?
        .into_inner();
    let elapsed = started.elapsed();
    match expected {
        Some(expected) => assert_eq!(
            response.config_version, expected,
            "same devices, same version"
        ),
        None => assert_ne!(
            &response.config_version, version,
            "changed devices, new version"
        ),
    }
    let targets = response
        .sweep
        .as_ref()
        .map_or(0, |s| s.device_targets.len());
    assert_eq!(targets as i64, TARGETS, "every target, every time");
    *version = response.config_version;
    Ok(elapsed)
}

/// Commits `statement` (on the tenant's devices) and bumps the tenant's data
/// generation in the same transaction, as an ingest commit does.
async fn commit_device_change(
    pool: &sqlx::PgPool,
    tenant_id: uuid::Uuid,
    statement: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(statement).execute(&mut *tx).await?;
    sqlx::query("UPDATE platform.tenants SET data_generation = data_generation + 1 WHERE id = $1")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    sr_gateway::install_crypto_provider();
    let db = TestDb::create().await?;
    let state_dir = tempfile::tempdir()?;
    let report_ = bootstrap::bootstrap(&BootstrapOptions::new(state_dir.path(), db.url())).await?;
    let token = report_.admin_token.clone().ok_or("no admin token")?;
    let mut config = GatewayConfig::load(&report_.config_file)?;
    config.listen.grpc = "127.0.0.1:0".parse()?;
    config.listen.admin = "127.0.0.1:0".parse()?;
    config.public = Default::default();
    let handle = server::start(config, ServerOptions::default()).await?;
    let state = handle.state().clone();

    let tenant = tenants::create(
        &state.pool,
        &state.secrets,
        &state.root_ca,
        NewTenant {
            slug: "bench".into(),
            name: None,
            allow_platform_sync: true,
        },
    )
    .await?;
    let schema = sr_gateway::db::tenant_schema_name(tenant.id);
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".ocsf_devices \
           (uid, partition, ip, hostname, agent_id, discovery_sources, metadata, first_seen_time, last_seen_time) \
         SELECT 'sr:' || gen_random_uuid(), 'default', \
                '10.' || (i / 65536) || '.' || ((i / 256) % 256) || '.' || (i % 256), \
                'host-' || i, 'agent-1', ARRAY['faker'], \
                jsonb_build_object('integration_type', 'faker', 'integration_id', i::text), now(), now() \
         FROM generate_series(1, $1) AS i"
    ))
    .bind(TARGETS)
    .execute(&state.pool)
    .await?;

    // Statistics as autovacuum keeps them on a table that size.
    sqlx::query(&format!("ANALYZE \"{schema}\".ocsf_devices"))
        .execute(&state.pool)
        .await?;
    // An edge agent, onboarded through the admin API and enrolled for real.
    let root = std::fs::read(state_dir.path().join("root-ca.pem"))?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root)?)
        .build()?;
    let package: serde_json::Value = http
        .post(format!(
            "https://localhost:{}/api/v1/tenants/bench/onboarding-packages",
            handle.admin_addr().port()
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"component_type": "agent", "component_id": "agent-1"}))
        .send()
        .await?
        .json()
        .await?;
    let agent_dir = tempfile::tempdir()?;
    sr_host::enroll::enroll(
        package["token"].as_str().ok_or("no token")?,
        agent_dir.path(),
    )
    .await?;
    // The client sr-agent builds from its enrolled files.
    let gateway_addr = format!("https://127.0.0.1:{}", handle.grpc_addr().port());
    let mut client = sr_proto::connect::mtls_client(
        sr_proto::connect::GatewayTarget {
            addr: &gateway_addr,
            tls_server_name: "localhost",
            ca_file: &agent_dir.path().join(sr_proto::enrollment::CA_FILE),
            cert_file: &agent_dir.path().join(sr_proto::enrollment::CERT_FILE),
            key_file: &agent_dir.path().join(sr_proto::enrollment::KEY_FILE),
        },
        None,
    )?;
    let request = |version: &str| AgentConfigRequest {
        agent_id: "agent-1".into(),
        config_version: version.to_string(),
    };

    let first = client.get_config(request("")).await?.into_inner();
    let targets = first.sweep.as_ref().map_or(0, |s| s.device_targets.len());
    assert_eq!(
        targets as i64, TARGETS,
        "the agent's sweep holds every target"
    );
    let version = first.config_version.clone();
    let bytes = first.config_json.len();
    let typed_bytes = first.sweep.as_ref().map_or(0, prost::Message::encoded_len);

    let mut not_modified = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let response = client.get_config(request(&version)).await?.into_inner();
        not_modified.push(started.elapsed());
        assert!(response.not_modified);
    }
    let mut current = version.clone();
    let mut cached = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        cached.push(full_call(&mut client, &mut current, Some(&version)).await?);
    }
    // A commit as DIRE makes it: a few devices renamed under a fresh change
    // stamp, and the tenant's data generation bumped.
    let mut commits = 0i64;
    let mut commit = || {
        commits += 1;
        let offset = (commits * CHANGED_DEVICES) % (TARGETS - CHANGED_DEVICES);
        let statement = format!(
            "UPDATE \"{schema}\".ocsf_devices \
             SET hostname = 'host-r{commits}', \
                 change_stamp = nextval('\"{schema}\".device_change_seq') \
             WHERE uid IN (SELECT uid FROM \"{schema}\".ocsf_devices ORDER BY uid \
                           OFFSET {offset} LIMIT {CHANGED_DEVICES})"
        );
        let (pool, tenant_id) = (state.pool.clone(), tenant.id);
        async move { commit_device_change(&pool, tenant_id, &statement).await }
    };
    let mut racing = Vec::with_capacity(CHANGED_CALLS);
    for _ in 0..CHANGED_CALLS {
        commit().await?;
        sr_gateway::sweep_delivery::refresh_after_commit(state.clone(), tenant.id);
        racing.push(full_call(&mut client, &mut current, None).await?);
        // Let the refresh task finish before the next commit.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut stale = Vec::with_capacity(CHANGED_CALLS);
    for _ in 0..CHANGED_CALLS {
        commit().await?;
        stale.push(full_call(&mut client, &mut current, None).await?);
    }
    // Every device re-observed (a new last-seen time, as each sync of a
    // real inventory does): the generation moves, nothing a sweep reads
    // does, so the rebuild reuses the sweep.
    let mut reobserved = Vec::with_capacity(CHANGED_CALLS);
    for _ in 0..CHANGED_CALLS {
        commit_device_change(
            &state.pool,
            tenant.id,
            &format!(
                "UPDATE \"{schema}\".ocsf_devices \
                 SET last_seen_time = last_seen_time + interval '1 day'"
            ),
        )
        .await?;
        let expected = current.clone();
        reobserved.push(full_call(&mut client, &mut current, Some(&expected)).await?);
        // Syncs are minutes apart and autovacuum runs between them; back to
        // back, 200 rewrites of every row would leave the table bloated.
        sqlx::query(&format!("VACUUM \"{schema}\".ocsf_devices"))
            .execute(&state.pool)
            .await?;
    }
    let mut cold = Vec::with_capacity(CHANGED_CALLS);
    for _ in 0..CHANGED_CALLS {
        state.sweep_cache.clear();
        let expected = current.clone();
        cold.push(full_call(&mut client, &mut current, Some(&expected)).await?);
    }

    println!(
        "agent_sweep: GetConfig for an agent with {TARGETS} targets over mTLS (config_json {:.1} MiB + typed SweepConfig {:.1} MiB)",
        bytes as f64 / (1024.0 * 1024.0),
        typed_bytes as f64 / (1024.0 * 1024.0)
    );
    report("not_modified", not_modified);
    report("full (cached)", cached);
    report("full (racing commit)", racing);
    report("full (stale)", stale);
    report("full (re-observed)", reobserved);
    report("full (cold cache)", cold);
    println!("  targets: not_modified p99 ≤ 2 ms; full 10k-target response p99 ≤ 50 ms");
    handle.shutdown().await?;
    Ok(())
}
