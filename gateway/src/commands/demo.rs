//! `sr-gateway demo`: the whole system on one machine, on loopback.
//!
//! Creates a throwaway database, bootstraps a temporary installation, runs
//! the gateway, creates a tenant and a Faker integration through the admin
//! API, and runs the platform sync (`sr-sync`, a real process with the real
//! Faker component) twice — the initial inventory, then a run with IP churn —
//! showing progress and a summary of what DIRE made of it.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use sr_gateway::bootstrap::{self, BootstrapOptions};
use sr_gateway::config::GatewayConfig;
use sr_gateway::server::{self, ServerOptions};
use uuid::Uuid;

/// Arguments of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Directory with adapter components (must contain faker.wasm).
    #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
    adapters: PathBuf,
    /// Devices Faker generates.
    #[arg(long, default_value_t = 25_000)]
    devices: u64,
    /// Percent of device pairs that swap IPs in the second run.
    #[arg(long, default_value_t = 5)]
    churn_percent: u32,
    /// PostgreSQL server to use (a throwaway database is created on it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Keep the database and state directory afterwards (prints where).
    #[arg(long)]
    keep: bool,
    /// The `sr-sync` binary (default: next to this one, else on PATH).
    #[arg(long)]
    sr_sync: Option<PathBuf>,
}

const TENANT: &str = "acme";

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    let faker = args.adapters.join("faker.wasm");
    if !faker.exists() {
        bail!(
            "{} not found; build the adapters first: (cd plugins && cargo build --release --target wasm32-wasip2), or pass --adapters <dir>",
            faker.display()
        );
    }
    let sr_sync = locate_sr_sync(args.sr_sync.clone())?;
    let started = Instant::now();

    // A throwaway database on the given server.
    let mut admin = PgConnection::connect(&args.database_url).await.with_context(|| {
        format!(
            "no PostgreSQL reachable at {}; start PostgreSQL on 127.0.0.1:5432 (user postgres) or set DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DATABASE for a user allowed to create databases",
            redact(&args.database_url)
        )
    })?;
    let db_name = format!(
        "serviceradar_demo_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    admin
        .execute(format!("CREATE DATABASE \"{db_name}\"").as_str())
        .await
        .with_context(|| format!("creating database {db_name} (the user needs CREATEDB)"))?;
    let db_url = with_database(&args.database_url, &db_name)?;
    let home = tempfile::Builder::new()
        .prefix("serviceradar-demo-")
        .tempdir()?;

    let outcome = demo(&args, &sr_sync, &db_url, home.path()).await;

    if args.keep {
        let kept = home.keep();
        eprintln!(
            "kept database {db_name} and state directory {}",
            kept.display()
        );
    } else {
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)").as_str())
            .await
            .with_context(|| format!("dropping database {db_name}"))?;
    }
    let summary = outcome?;
    println!("{summary}");
    println!(
        "total time       {:.1}s (database, installation, gateway, two runs)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn demo(args: &DemoArgs, sr_sync: &Path, db_url: &str, home: &Path) -> Result<String> {
    let (grpc, admin) = (free_addr()?, free_addr()?);
    step(&format!(
        "bootstrapping a new installation into {}",
        home.join("state").display()
    ));
    let mut options = BootstrapOptions::new(home.join("state"), db_url);
    options.gateway_addr = format!("https://localhost:{}", grpc.port());
    options.admin_url = format!("https://localhost:{}", admin.port());
    let report = bootstrap::bootstrap(&options).await?;
    let token = report
        .admin_token
        .clone()
        .context("bootstrap did not create an admin token")?;

    let mut config = GatewayConfig::load(&report.config_file)?;
    config.listen.grpc = grpc;
    config.listen.admin = admin;
    let gateway = server::start(config, ServerOptions::default()).await?;
    step(&format!(
        "gateway listening: gRPC (mTLS) {grpc}, admin API https://localhost:{}",
        admin.port()
    ));

    let result = drive(
        args,
        sr_sync,
        db_url,
        home,
        &report.state_dir,
        admin,
        &token,
    )
    .await;
    gateway.shutdown().await?;
    result
}

async fn drive(
    args: &DemoArgs,
    sr_sync: &Path,
    db_url: &str,
    home: &Path,
    state: &Path,
    admin: SocketAddr,
    token: &str,
) -> Result<String> {
    let api = Api::new(state, admin, token)?;
    let tenant = api
        .post("/api/v1/tenants", json!({ "slug": TENANT }))
        .await?;
    let tenant_id: Uuid = tenant["id"].as_str().context("tenant id")?.parse()?;
    let source = api
        .post(
            &format!("/api/v1/tenants/{TENANT}/integration-sources"),
            json!({
                "name": "faker-lab",
                "type": "faker",
                "settings": {"seed": 42, "count": args.devices, "churn": {"ip_swap_percent": args.churn_percent}},
                "discovery_interval": "1h",
            }),
        )
        .await?;
    let source_id = source["id"].as_str().context("source id")?.to_string();
    step(&format!(
        "tenant {TENANT} with a Faker integration of {} devices, assigned to the platform sync",
        args.devices
    ));

    // The platform sync's home: its bootstrap config plus an adapters dir.
    let sync_home = home.join("sync");
    std::fs::create_dir_all(sync_home.join("adapters"))?;
    std::fs::copy(
        args.adapters.join("faker.wasm"),
        sync_home.join("adapters/faker.wasm"),
    )?;
    let sync_config = write_sync_config(state, &sync_home)?;

    let pool = PgPool::connect(db_url).await?;
    let schema = sr_gateway::db::tenant_schema_name(tenant_id);

    let first = sync_run(
        sr_sync,
        &sync_config,
        &sync_home,
        &pool,
        &schema,
        args.devices,
        "run 1: initial inventory",
    )
    .await?;
    let before = ips(&pool, &schema).await?;
    let second = sync_run(
        sr_sync,
        &sync_config,
        &sync_home,
        &pool,
        &schema,
        args.devices,
        "run 2: IP churn",
    )
    .await?;
    let after = ips(&pool, &schema).await?;
    let moved = before
        .iter()
        .filter(|(uid, ip)| after.get(*uid) != Some(ip))
        .count();

    let view = api
        .get(&format!(
            "/api/v1/tenants/{TENANT}/integration-sources/{source_id}"
        ))
        .await?;
    let count = |sql: String| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(&pool).await }
    };
    let canonical = count(format!(
        "SELECT count(*) FROM \"{schema}\".ocsf_devices WHERE merged_into IS NULL AND deleted_at IS NULL"
    ))
    .await?;
    let staged = count(format!(
        "SELECT count(*) FROM \"{schema}\".discovered_devices"
    ))
    .await?;
    let merges = count(format!(
        "SELECT count(*) FROM \"{schema}\".merge_audit WHERE action = 'merged'"
    ))
    .await?;
    let blocked = count(format!(
        "SELECT count(*) FROM \"{schema}\".merge_audit WHERE action = 'blocked'"
    ))
    .await?;
    let identifiers: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT identifier_type, count(*) FROM \"{schema}\".device_identifiers GROUP BY 1 ORDER BY 1"
    ))
    .fetch_all(&pool)
    .await?;
    sr_gateway::db::close_pool(&pool).await;

    let rate = |devices: f64, secs: f64| if secs > 0.0 { devices / secs } else { 0.0 };
    let n = args.devices as f64;
    let mut out = String::new();
    out.push_str("\nServiceRadar Sync demo: Faker → sandboxed adapter → mTLS streams → gateway → DIRE → PostgreSQL\n");
    out.push_str(&format!(
        "run 1 (initial)  {} devices discovered in {:.1}s ({:.0} devices/s end to end)\n",
        args.devices,
        first,
        rate(n, first)
    ));
    out.push_str(&format!(
        "run 2 (churn)    {} devices re-discovered in {:.1}s; {moved} IPs moved between devices\n",
        view["last_device_count"], second
    ));
    out.push_str(&format!(
        "canonical        {canonical} devices (one per Faker device, deterministic sr: ids)\n"
    ));
    out.push_str(&format!(
        "identifiers      {}\n",
        identifiers
            .iter()
            .map(|(t, c)| format!("{t} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str(&format!("staged rows      {staged} (discovered_devices)\n"));
    out.push_str(&format!("merges           {merges} (blocked: {blocked}) — churn moves IPs, it never merges devices\n"));
    out.push_str(&format!(
        "integration      last result {}, {} devices; platform sync {}",
        view["last_result"].as_str().unwrap_or("none"),
        view["last_device_count"],
        view["sync_service"]["status"].as_str().unwrap_or("unknown")
    ));
    Ok(out)
}

/// Runs `sr-sync run --once`, showing progress from the tenant's device
/// table; returns the run's duration in seconds.
async fn sync_run(
    sr_sync: &Path,
    config: &Path,
    home: &Path,
    pool: &PgPool,
    schema: &str,
    expected: u64,
    label: &str,
) -> Result<f64> {
    let started = Instant::now();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("sync.log"))?;
    let mut child = tokio::process::Command::new(sr_sync)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--once")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", sr_sync.display()))?;
    let bar = progress(expected, label);
    let mark = chrono::Utc::now();
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if let Ok(done) = written_since(pool, schema, mark).await {
                    bar.set_position(done.clamp(0, expected as i64) as u64);
                }
            }
        }
    };
    bar.finish_and_clear();
    if !status.success() {
        let log = std::fs::read_to_string(home.join("sync.log")).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| l.contains("error") || l.contains("failed"))
            .unwrap_or("");
        bail!("{label}: sr-sync failed ({status}); last error: {last}");
    }
    let secs = started.elapsed().as_secs_f64();
    step(&format!("{label}: done in {secs:.1}s"));
    Ok(secs)
}

/// Canonical devices written (inserted or changed) since `mark`.
async fn written_since(
    pool: &PgPool,
    schema: &str,
    mark: chrono::DateTime<chrono::Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".ocsf_devices WHERE modified_time >= $1"
    ))
    .bind(mark)
    .fetch_one(pool)
    .await?)
}

async fn ips(pool: &PgPool, schema: &str) -> Result<HashMap<String, String>> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT uid, ip FROM \"{schema}\".ocsf_devices WHERE merged_into IS NULL"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(uid, ip)| ip.map(|ip| (uid, ip)))
        .collect())
}

fn write_sync_config(state: &Path, sync_home: &Path) -> Result<PathBuf> {
    let bootstrap: Value =
        serde_json::from_slice(&std::fs::read(state.join("platform-sync.json"))?)?;
    let file = |key: &str| -> Result<String> {
        let name = bootstrap[key]
            .as_str()
            .with_context(|| format!("platform-sync.json: {key}"))?;
        Ok(state.join(name).display().to_string())
    };
    let config = json!({
        "component_id": bootstrap["component_id"],
        "gateway_addr": bootstrap["gateway_addr"],
        "tls_server_name": bootstrap["tls_server_name"],
        "cert_file": file("cert_file")?,
        "key_file": file("key_file")?,
        "ca_file": file("ca_file")?,
        "adapters_dir": "adapters",
        "state_dir": "state",
    });
    let path = sync_home.join("sync.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

fn locate_sr_sync(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let sibling = std::env::current_exe()?.with_file_name("sr-sync");
    if sibling.exists() {
        return Ok(sibling);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("sr-sync"))
        .find(|p| p.exists())
        .context("sr-sync not found next to sr-gateway or on PATH; build it (cargo build -p sr-host) or pass --sr-sync <path>")
}

fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The URL with its database replaced.
fn with_database(url: &str, database: &str) -> Result<String> {
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a PostgreSQL URL")?;
    Ok(sqlx::ConnectOptions::to_url_lossy(&options.database(database)).to_string())
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((auth, rest)) if auth.contains(':') && auth.matches(':').count() > 1 => {
            let user = auth.rsplit_once(':').map_or(auth, |(u, _)| u);
            format!("{user}:***@{rest}")
        }
        _ => url.to_string(),
    }
}

fn step(text: &str) {
    eprintln!("• {text}");
}

fn progress(len: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        step(&format!("{label}…"));
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("• {msg} [{bar:30}] {pos}/{len} devices ({per_sec})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The admin API over HTTPS, trusting the installation's root CA.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(state: &Path, admin: SocketAddr, token: &str) -> Result<Self> {
        let root = std::fs::read(state.join("root-ca.pem")).context("reading root-ca.pem")?;
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&root)?)
            .build()?;
        Ok(Self {
            http,
            base: format!("https://localhost:{}", admin.port()),
            token: token.to_string(),
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let request = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.send(path, request).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(path, request).await
    }

    async fn send(&self, path: &str, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request.bearer_auth(&self.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("admin API {path}: {status}: {}", body["detail"]);
        }
        Ok(body)
    }
}
