//! GetConfig for the platform sync with 1,000 tenants × 5 sources, through
//! real gRPC over real mTLS on loopback against a real PostgreSQL.
//!
//! Measures 1,000 calls each of:
//! - `not_modified`: the client already has the current version;
//! - `full (cached)`: the client has no version; the document is served
//!   from the gateway's per-generation cache;
//! - `full (changed)`: something changed before every call (the config
//!   generation is bumped, as any tenant/source change does), so the
//!   gateway re-lists the 5,000 sources' revisions and reassembles the
//!   document from its per-source fragments;
//! - `full (cold)`: the gateway's cache is emptied before every call, so it
//!   reads all 5,000 sources, decrypts their credentials and renders every
//!   one (the cost after a restart).
//!
//! Targets: not_modified p99 ≤ 2 ms, full ≤ 100 ms.
//! Run: `cargo bench -p sr-gateway --bench get_config` (DATABASE_URL
//! overrides the local PostgreSQL).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sr_gateway::bootstrap::{self, BootstrapOptions, files};
use sr_gateway::config::GatewayConfig;
use sr_gateway::integration_sources::{self, CreateSource};
use sr_gateway::server::{self, ServerOptions};
use sr_gateway::tenants::{self, NewTenant};
use sr_proto::monitoring::AgentConfigRequest;
use sr_proto::monitoring::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_testkit::pg::TestDb;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// The allocator of the `sr-gateway` binary, so the figures are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANTS: usize = 1_000;
const SOURCES_PER_TENANT: usize = 5;
const CALLS: usize = 1_000;
const SETUP_CONCURRENCY: usize = 8;

/// Calls per measurement: 1,000, or `GET_CONFIG_BENCH_CALLS` for a quick look.
fn calls() -> usize {
    std::env::var("GET_CONFIG_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CALLS)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    sr_gateway::install_crypto_provider();
    let db = TestDb::create().await?;
    let state_dir = tempfile::tempdir()?;
    let report = bootstrap::bootstrap(&BootstrapOptions::new(state_dir.path(), db.url())).await?;
    let mut config = GatewayConfig::load(&report.config_file)?;
    config.listen.grpc = "127.0.0.1:0".parse()?;
    config.listen.admin = "127.0.0.1:0".parse()?;
    config.public = Default::default();
    let handle = server::start(config, ServerOptions::default()).await?;
    let state = handle.state().clone();

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..SETUP_CONCURRENCY {
        let state = state.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= TENANTS {
                    return Ok::<(), String>(());
                }
                let tenant = tenants::create(
                    &state.pool,
                    &state.secrets,
                    &state.root_ca,
                    NewTenant {
                        slug: format!("tenant-{i:04}"),
                        name: None,
                        allow_platform_sync: true,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
                for s in 0..SOURCES_PER_TENANT {
                    let body: CreateSource =
                        serde_json::from_value(source_body(i, s)).map_err(|e| e.to_string())?;
                    integration_sources::create(
                        &state.pool,
                        &state.secrets,
                        &state.known_source_types,
                        &tenant,
                        body,
                        chrono::Utc::now(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    println!(
        "setup: {TENANTS} tenants × {SOURCES_PER_TENANT} sources in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let read = |name: &str| std::fs::read_to_string(state_dir.path().join(name));
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(files::ROOT_CA_CERT)?))
        .identity(Identity::from_pem(
            read(files::PLATFORM_SYNC_CERT)?,
            read(files::PLATFORM_SYNC_KEY)?,
        ))
        .domain_name("localhost");
    let channel =
        Endpoint::from_shared(format!("https://127.0.0.1:{}", handle.grpc_addr().port()))?
            .tls_config(tls)?
            .connect()
            .await?;
    let mut client = AgentGatewayServiceClient::new(channel)
        .max_decoding_message_size(sr_proto::limits::MAX_GRPC_MESSAGE_BYTES);

    let first = client
        .get_config(AgentConfigRequest::default())
        .await?
        .into_inner();
    let doc: sr_proto::sync_config::SyncConfigDocument =
        serde_json::from_slice(&first.config_json)?;
    assert_eq!(doc.sources.len(), TENANTS * SOURCES_PER_TENANT);
    println!(
        "document: {} sources, {:.2} MiB, version {}",
        doc.sources.len(),
        first.config_json.len() as f64 / (1024.0 * 1024.0),
        &first.config_version[..16]
    );
    let version = first.config_version.clone();

    // Warm up connections and caches.
    for _ in 0..20 {
        client
            .get_config(AgentConfigRequest {
                agent_id: String::new(),
                config_version: version.clone(),
            })
            .await?;
    }

    let mut not_modified = Vec::with_capacity(calls());
    for _ in 0..calls() {
        let t = Instant::now();
        let r = client
            .get_config(AgentConfigRequest {
                agent_id: String::new(),
                config_version: version.clone(),
            })
            .await?
            .into_inner();
        not_modified.push(t.elapsed());
        assert!(r.not_modified);
    }
    print_stats("not_modified", &mut not_modified);

    let mut cached = Vec::with_capacity(calls());
    for _ in 0..calls() {
        let t = Instant::now();
        let r = client
            .get_config(AgentConfigRequest::default())
            .await?
            .into_inner();
        cached.push(t.elapsed());
        assert_eq!(r.config_version, version);
    }
    print_stats("full (cached)", &mut cached);

    let mut rebuild = Vec::with_capacity(calls());
    for _ in 0..calls() {
        sqlx::query("UPDATE platform.config_generation SET value = value + 1")
            .execute(&state.pool)
            .await?;
        let t = Instant::now();
        let r = client
            .get_config(AgentConfigRequest::default())
            .await?
            .into_inner();
        rebuild.push(t.elapsed());
        assert_eq!(r.config_version, version, "same content, same version");
    }
    print_stats("full (changed)", &mut rebuild);

    let mut cold = Vec::with_capacity(calls());
    for _ in 0..calls() {
        state.config_cache.clear();
        let t = Instant::now();
        let r = client
            .get_config(AgentConfigRequest::default())
            .await?
            .into_inner();
        cold.push(t.elapsed());
        assert_eq!(r.config_version, version, "same content, same version");
    }
    print_stats("full (cold)", &mut cold);

    handle.shutdown().await?;
    Ok(())
}

fn source_body(tenant: usize, source: usize) -> serde_json::Value {
    match source {
        0 => serde_json::json!({
            "name": "armis",
            "type": "armis",
            "endpoint": format!("https://tenant-{tenant}.armis.example"),
            "credentials": { "secret_key": format!("armis-key-{tenant}") },
            "queries": [
                { "label": "all", "query": "in:devices", "sweep_modes": ["icmp", "tcp"] },
                { "label": "servers", "query": "in:devices type:Server", "sweep_modes": ["tcp"] }
            ],
            "discovery_interval": "6h",
            "poll_interval": "5m",
            "network_blacklist": ["10.99.0.0/16", "192.168.250.0/24"],
        }),
        1 => serde_json::json!({
            "name": "netbox",
            "type": "netbox",
            "endpoint": format!("https://netbox.tenant-{tenant}.example"),
            "credentials": { "api_token": format!("netbox-token-{tenant}") },
            "queries": [{ "label": "active", "query": "status=active" }],
            "discovery_interval": "1h",
            "page_size": 500,
        }),
        n => serde_json::json!({
            "name": format!("faker-{n}"),
            "type": "faker",
            "settings": { "devices": 100 * n, "seed": tenant },
            "discovery_interval": "30m",
            "agent_id": format!("agent-{tenant}"),
        }),
    }
}

fn print_stats(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let pick = |p: f64| {
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<16} n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        samples.len(),
        ms(pick(0.50)),
        ms(pick(0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO))
    );
}
