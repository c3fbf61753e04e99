//! A real platform per test: a throwaway database, `sr-gateway bootstrap`
//! into a temporary state directory, `sr-gateway serve` as a process on free
//! loopback ports, and `sr-sync` processes with real adapter components.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use sr_testkit::pg::TestDb;
use tempfile::TempDir;
use uuid::Uuid;

/// A gateway process with its database, state directory and admin client.
pub struct Platform {
    gateway: Option<Child>,
    syncs: Vec<Child>,
    pub admin_port: u16,
    pub token: String,
    http: reqwest::Client,
    pub pool: PgPool,
    pub state: TempDir,
    /// The platform sync's working directory: adapters/, state/, sync.json.
    pub sync_home: TempDir,
    log: PathBuf,
    /// Kept alive for the test; dropped (and the database with it) last.
    _db: TestDb,
}

fn free_port() -> u16 {
    sr_testkit::net::free_addr().port()
}

impl Platform {
    /// Bootstraps and starts a gateway; installs Faker for the platform sync.
    pub async fn start() -> Self {
        let db = TestDb::create().await.expect("test database");
        let pool = db.pool().await.expect("pool");
        let state = tempfile::tempdir().unwrap();
        let (grpc_port, admin_port) = (free_port(), free_port());
        let gateway = sr_testkit::binaries::binary("sr-gateway").expect("sr-gateway binary");
        let output = Command::new(&gateway)
            .arg("bootstrap")
            .arg("--state")
            .arg(state.path())
            .arg("--database-url")
            .arg(db.url())
            .arg("--gateway-addr")
            .arg(format!("https://localhost:{grpc_port}"))
            .arg("--admin-url")
            .arg(format!("https://localhost:{admin_port}"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "bootstrap: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let token = stdout
            .lines()
            .find_map(|l| l.strip_prefix("platform admin token"))
            .map(|t| t.trim().to_string())
            .expect("bootstrap prints the admin token");
        // Listen on the test's ports; poll config quickly; accept the test adapter type.
        let config_path = state.path().join("gateway.toml");
        let config = std::fs::read_to_string(&config_path)
            .unwrap()
            .replace(
                "grpc = \"0.0.0.0:50052\"",
                &format!("grpc = \"127.0.0.1:{grpc_port}\""),
            )
            .replace(
                "admin = \"127.0.0.1:8443\"",
                &format!("admin = \"127.0.0.1:{admin_port}\""),
            )
            .replace("config_poll = \"5m\"", "config_poll = \"30s\"")
            .replace(
                "known_source_types = []",
                "known_source_types = [\"misbehave\"]",
            );
        std::fs::write(&config_path, config).unwrap();

        let root = std::fs::read(state.path().join("root-ca.pem")).unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .build()
            .unwrap();
        let sync_home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sync_home.path().join("adapters")).unwrap();
        let log = state.path().join("gateway.log");
        let mut platform = Self {
            gateway: None,
            syncs: Vec::new(),
            admin_port,
            token,
            http,
            pool,
            state,
            sync_home,
            log,
            _db: db,
        };
        platform.install_adapter("faker");
        platform.start_gateway().await;
        platform
    }

    /// Starts (or restarts) the gateway process and waits until it answers.
    pub async fn start_gateway(&mut self) {
        assert!(self.gateway.is_none(), "gateway already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(sr_testkit::binaries::binary("sr-gateway").unwrap())
            .arg("serve")
            .arg("--config")
            .arg(self.state.path().join("gateway.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.gateway = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self
                .http
                .get(format!(
                    "https://localhost:{}/api/v1/tenants",
                    self.admin_port
                ))
                .bearer_auth(&self.token)
                .send()
                .await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not start: {}",
                self.gateway_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the gateway process with SIGKILL (no graceful shutdown).
    pub fn kill_gateway(&mut self) {
        if let Some(mut child) = self.gateway.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the gateway logged.
    pub fn gateway_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An admin API call with the platform admin token.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(
                method,
                format!("https://localhost:{}{path}", self.admin_port),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a tenant; returns its id.
    pub async fn create_tenant(&self, slug: &str) -> Uuid {
        let (status, body) = self
            .api(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({ "slug": slug })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Uuid::parse_str(body["id"].as_str().unwrap()).unwrap()
    }

    /// Creates an integration source; returns its id.
    pub async fn create_source(&self, tenant: &str, body: Value) -> Uuid {
        let (status, created) = self
            .api(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/integration-sources"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        Uuid::parse_str(created["id"].as_str().unwrap()).unwrap()
    }

    /// The admin view of an integration source.
    pub async fn source(&self, tenant: &str, id: Uuid) -> Value {
        let (status, body) = self
            .api(
                Method::GET,
                &format!("/api/v1/tenants/{tenant}/integration-sources/{id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Copies a built plugin component into the platform sync's adapters dir.
    pub fn install_adapter(&self, component: &str) {
        let from = sr_testkit::components::component(component).unwrap();
        let to = self
            .sync_home
            .path()
            .join("adapters")
            .join(from.file_name().unwrap());
        std::fs::copy(from, to).unwrap();
    }

    /// Writes the platform sync's config (bootstrap's file plus host
    /// settings: small chunks so runs span many streams, loopback egress).
    pub fn sync_config(&self) -> PathBuf {
        let bootstrap: Value = serde_json::from_str(
            &std::fs::read_to_string(self.state.path().join("platform-sync.json")).unwrap(),
        )
        .unwrap();
        let file = |key: &str| {
            self.state
                .path()
                .join(bootstrap[key].as_str().unwrap())
                .display()
                .to_string()
        };
        let config = json!({
            "component_id": bootstrap["component_id"],
            "gateway_addr": bootstrap["gateway_addr"],
            "tls_server_name": bootstrap["tls_server_name"],
            "cert_file": file("cert_file"),
            "key_file": file("key_file"),
            "ca_file": file("ca_file"),
            "adapters_dir": "adapters",
            "state_dir": "state",
            "egress": { "allow_loopback": true },
            "scheduler": { "backoff_initial": "2s", "backoff_max": "10s" },
            "delivery": { "chunk_bytes": 65536, "chunks_per_stream": 4, "retry_initial": "200ms", "retry_max": "2s" }
        });
        let path = self.sync_home.path().join("sync.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        path
    }

    /// Runs `sr-sync run --once` for the platform sync and waits for it.
    pub async fn run_sync_once(&self) -> Output {
        let config = self.sync_config();
        let mut command =
            tokio::process::Command::new(sr_testkit::binaries::binary("sr-sync").unwrap());
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--once")
            .env("SR_LOG", "info");
        tokio::time::timeout(Duration::from_secs(300), command.output())
            .await
            .expect("sr-sync run --once finishes")
            .unwrap()
    }

    /// Starts `sr-sync run` (daemon) for the platform sync.
    pub fn spawn_sync(&mut self) {
        let config = self.sync_config();
        let log = std::fs::File::create(self.sync_home.path().join("sync.log")).unwrap();
        let child = Command::new(sr_testkit::binaries::binary("sr-sync").unwrap())
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("SR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.syncs.push(child);
    }

    /// What the platform sync daemon logged.
    pub fn sync_log(&self) -> String {
        std::fs::read_to_string(self.sync_home.path().join("sync.log")).unwrap_or_default()
    }

    /// `SELECT count(*)` in a tenant's schema.
    pub async fn count(&self, tenant: Uuid, table: &str, filter: &str) -> i64 {
        let schema = sr_gateway::db::tenant_schema_name(tenant);
        let filter = if filter.is_empty() {
            String::new()
        } else {
            format!(" WHERE {filter}")
        };
        sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{schema}\".{table}{filter}"
        ))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Active canonical devices of a tenant: (uid, ip, mac, hostname), sorted.
    pub async fn devices(
        &self,
        tenant: Uuid,
    ) -> Vec<(String, Option<String>, Option<String>, Option<String>)> {
        let schema = sr_gateway::db::tenant_schema_name(tenant);
        sqlx::query_as(&format!(
            "SELECT uid, ip, mac, hostname FROM \"{schema}\".ocsf_devices \
             WHERE merged_into IS NULL AND deleted_at IS NULL ORDER BY uid"
        ))
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Polls `check` until it holds or `timeout` passes.
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- sync log ---\n{}\n--- gateway log (tail) ---\n{}",
                tail(&self.sync_log(), 40),
                tail(&self.gateway_log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for child in self.syncs.iter_mut().chain(self.gateway.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last `n` lines of a log.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Asserts a finished process succeeded, showing its stderr otherwise.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\n{}",
        output.status,
        tail(&String::from_utf8_lossy(&output.stderr), 60)
    );
}

/// A Faker source body.
pub fn faker_source(name: &str, seed: u64, count: u64) -> Value {
    json!({ "name": name, "type": "faker", "settings": { "seed": seed, "count": count } })
}
