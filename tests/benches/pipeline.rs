//! The device pipeline on this machine: Faker → sandboxed host → mTLS
//! StreamStatus → gateway → DIRE → PostgreSQL, with real processes.
//!
//! For each size: the initial sync (devices/s), an unchanged re-sync (the
//! same run replayed: identical source data), host (`sr-sync`) and gateway
//! (`sr-gateway`) peak RSS, and — side by side — a raw `COPY` of the very
//! rows DIRE wrote into the same tables of a fresh tenant schema, the
//! physical limit. Before them, one run with no sources yet lets the sync
//! service compile its adapter into its cache, as a deployed one has.
//!
//! Run: `cargo bench -p sr-e2e --bench pipeline [-- 100000 1000000]`;
//! `PIPELINE_GATEWAY_LOG=<file>` keeps the gateway's info log,
//! `PIPELINE_HOST_LOG=<file>` the sync service's (every run appended; `SR_LOG`
//! picks its level).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use sr_testkit::pg::TestDb;

fn free_port() -> u16 {
    sr_testkit::net::free_addr().port()
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after the name.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU seconds used so far by every PostgreSQL server process.
fn postgres_cpu_seconds() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// CPU seconds of one sync, by process.
struct CpuUse {
    host: f64,
    gateway: f64,
    postgres: f64,
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU {:.2} s: host {:.2}, gateway {:.2}, PostgreSQL {:.2}",
            self.host + self.gateway + self.postgres,
            self.host,
            self.gateway,
            self.postgres
        )
    }
}

/// Runs a child to completion; returns (success, peak RSS in MiB, seconds,
/// CPU seconds).
fn run_measured(command: &mut Command) -> (bool, f64, f64, f64) {
    let started = Instant::now();
    let child = command.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 writes only the status and rusage we pass; the pid is our
    // own child, reaped exactly once here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    std::mem::forget(child);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        ok,
        usage.ru_maxrss as f64 / 1024.0,
        started.elapsed().as_secs_f64(),
        cpu(usage.ru_utime) + cpu(usage.ru_stime),
    )
}

/// Peak RSS (VmHWM) of a running process, MiB.
fn peak_rss(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Gateway {
    child: std::process::Child,
    admin_port: u16,
    token: String,
    http: reqwest::Client,
}

/// The gateway process goes with the bench, also when the bench panics.
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    async fn api(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("https://localhost:{}{path}", self.admin_port))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("admin API");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.expect("json")
    }
}

async fn start_gateway(db: &TestDb, state: &std::path::Path) -> Gateway {
    let (grpc, admin) = (free_port(), free_port());
    let bin = sr_testkit::binaries::binary("sr-gateway").expect("sr-gateway");
    let output = Command::new(&bin)
        .args(["bootstrap", "--state"])
        .arg(state)
        .args(["--database-url", db.url()])
        .arg("--gateway-addr")
        .arg(format!("https://localhost:{grpc}"))
        .arg("--admin-url")
        .arg(format!("https://localhost:{admin}"))
        .output()
        .expect("bootstrap");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("platform admin token")
                .map(|t| t.trim().to_string())
        })
        .expect("token");
    let config = state.join("gateway.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "grpc = \"0.0.0.0:50052\"",
            &format!("grpc = \"127.0.0.1:{grpc}\""),
        )
        .replace(
            "admin = \"127.0.0.1:8443\"",
            &format!("admin = \"127.0.0.1:{admin}\""),
        );
    std::fs::write(&config, text).unwrap();
    // `PIPELINE_GATEWAY_LOG=<file>` keeps the gateway's info log (each
    // stream's DIRE and commit times) for a closer look.
    let log = std::env::var_os("PIPELINE_GATEWAY_LOG");
    let stderr = match &log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("gateway log file")),
        None => Stdio::null(),
    };
    let mut child = Command::new(&bin)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("serve");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = std::fs::read(state.join("root-ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .build()
        .unwrap();
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("https://localhost:{admin}/api/v1/tenants"))
            .bearer_auth(&token)
            .send()
            .await
            && r.status().is_success()
        {
            return Gateway {
                child,
                admin_port: admin,
                token,
                http,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("gateway did not start");
}

fn sync_config(state: &std::path::Path, home: &std::path::Path) -> std::path::PathBuf {
    let boot: Value =
        serde_json::from_slice(&std::fs::read(state.join("platform-sync.json")).unwrap()).unwrap();
    let file = |k: &str| state.join(boot[k].as_str().unwrap()).display().to_string();
    std::fs::create_dir_all(home.join("adapters")).unwrap();
    std::fs::copy(
        sr_testkit::components::component("faker").unwrap(),
        home.join("adapters/faker.wasm"),
    )
    .unwrap();
    let config = json!({
        "component_id": boot["component_id"], "gateway_addr": boot["gateway_addr"],
        "tls_server_name": boot["tls_server_name"], "cert_file": file("cert_file"),
        "key_file": file("key_file"), "ca_file": file("ca_file"),
        "adapters_dir": "adapters", "state_dir": "state",
    });
    let path = home.join("sync.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

/// One `sr-sync run --once`: (seconds, host peak RSS in MiB, CPU use).
fn sync_once(config: &std::path::Path, gateway: u32) -> (f64, f64, CpuUse) {
    let bin = sr_testkit::binaries::binary("sr-sync").expect("sr-sync");
    let (gateway_before, postgres_before) = (cpu_seconds(gateway), postgres_cpu_seconds());
    // `PIPELINE_HOST_LOG=<file>` appends each run's log (at `SR_LOG`, else
    // info) to the file.
    let (stderr, level) = match std::env::var_os("PIPELINE_HOST_LOG") {
        Some(path) => (
            Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("host log file"),
            ),
            std::env::var("SR_LOG").unwrap_or_else(|_| "info".into()),
        ),
        None => (Stdio::inherit(), "warn".into()),
    };
    let (ok, rss, secs, host) = run_measured(
        Command::new(bin)
            .args(["run", "--once", "--config"])
            .arg(config)
            .env("SR_LOG", level)
            .stdout(Stdio::null())
            .stderr(stderr),
    );
    assert!(ok, "sr-sync run --once failed");
    let cpu = CpuUse {
        host,
        gateway: cpu_seconds(gateway) - gateway_before,
        postgres: postgres_cpu_seconds() - postgres_before,
    };
    (secs, rss, cpu)
}

const TABLES: [&str; 3] = ["ocsf_devices", "device_identifiers", "discovered_devices"];

/// COPYs the rows of `from` into the same tables of `to`; returns seconds.
async fn raw_copy(url: &str, from: &str, to: &str) -> f64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let mut dumps = Vec::new();
    for table in TABLES {
        let mut out = conn
            .copy_out_raw(&format!(
                "COPY \"{from}\".{table} TO STDOUT (FORMAT binary)"
            ))
            .await
            .unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = out.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        dumps.push(bytes);
    }
    drop(conn);
    let mut conn = PgConnection::connect(url).await.unwrap();
    let started = Instant::now();
    let mut tx = conn.begin().await.unwrap();
    for (table, bytes) in TABLES.iter().zip(&dumps) {
        let mut copy = tx
            .copy_in_raw(&format!("COPY \"{to}\".{table} FROM STDIN (FORMAT binary)"))
            .await
            .unwrap();
        copy.send(bytes.as_slice()).await.unwrap();
        copy.finish().await.unwrap();
    }
    tx.commit().await.unwrap();
    started.elapsed().as_secs_f64()
}

async fn count(pool: &PgPool, schema: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".ocsf_devices"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn bench(devices: u64) {
    let db = TestDb::create().await.expect("database");
    let pool = db.pool().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&db, state.path()).await;
    let tenant = gateway
        .api("/api/v1/tenants", json!({"slug": "bench"}))
        .await;
    let copy_tenant = gateway
        .api("/api/v1/tenants", json!({"slug": "copy"}))
        .await;
    let schema = tenant["schema_name"].as_str().unwrap().to_string();
    let copy_schema = copy_tenant["schema_name"].as_str().unwrap().to_string();
    let config = sync_config(state.path(), home.path());
    let gateway_pid = gateway.child.id();
    // A sync service compiles an adapter once, when it loads it, and keeps
    // the compiled form in its state dir: a run with nothing to sync yet
    // does that, so the timed runs start as every run of a deployed
    // service does (process start, mTLS, Hello and GetConfig still timed).
    let (warm_up, _, _) = sync_once(&config, gateway_pid);
    let compiled = std::fs::read_dir(home.path().join("state/compiled")).map_or(0, |d| d.count());
    assert!(
        compiled > 0,
        "the first start left no compiled adapter in state/compiled"
    );
    gateway
        .api(
            "/api/v1/tenants/bench/integration-sources",
            json!({"name": "faker", "type": "faker", "settings": {"seed": 1, "count": devices}}),
        )
        .await;

    let (initial, host_rss_initial, initial_cpu) = sync_once(&config, gateway_pid);
    assert_eq!(count(&pool, &schema).await, devices as i64);
    // Replay the same run: forget the run number, so Faker emits identical data.
    std::fs::remove_file(home.path().join("state/sources.json")).unwrap();
    let (unchanged, host_rss_unchanged, unchanged_cpu) = sync_once(&config, gateway_pid);
    assert_eq!(count(&pool, &schema).await, devices as i64);
    let gateway_rss = peak_rss(gateway_pid);
    let copy = raw_copy(db.url(), &schema, &copy_schema).await;
    drop(gateway);

    let rate = |secs: f64| devices as f64 / secs;
    println!(
        "pipeline: {devices} Faker devices, Faker → sr-sync → mTLS → sr-gateway → DIRE → PostgreSQL"
    );
    println!(
        "  first start        {warm_up:>8.2} s  (no sources yet: loads and compiles the Faker adapter into the cache)"
    );
    println!(
        "  initial sync       {initial:>8.2} s {:>10.0} devices/s  ({initial_cpu})",
        rate(initial)
    );
    println!(
        "  unchanged re-sync  {unchanged:>8.2} s {:>10.0} devices/s  ({:.1}× faster than initial; {unchanged_cpu})",
        rate(unchanged),
        initial / unchanged
    );
    println!(
        "  raw COPY limit     {copy:>8.2} s {:>10.0} devices/s  (initial = {:.2}× COPY)",
        rate(copy),
        copy / initial
    );
    println!(
        "  peak RSS           host {:.1} MB (initial) / {:.1} MB (re-sync), gateway {gateway_rss:.1} MB",
        host_rss_initial, host_rss_unchanged
    );
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for size in sizes {
        runtime.block_on(bench(size));
    }
    println!(
        "  targets: initial ≥ 20k devices/s and ≥ 0.3× COPY; unchanged ≥ 3× faster; host RSS ≤ 200 MB at 1M"
    );
}
