//! A real gateway per test: its own PostgreSQL database, a bootstrapped
//! state directory, both listeners on port 0, a manual clock, an admin
//! HTTPS client trusting the platform root, and mTLS gRPC clients built
//! from certificates the gateway issued.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sr_gateway::bootstrap::{self, BootstrapOptions, BootstrapReport, files};
use sr_gateway::clock::ManualClock;
use sr_gateway::config::GatewayConfig;
use sr_gateway::identity::ComponentType;
use sr_gateway::pki::{self, Ca, IssuedCert, Validity};
use sr_gateway::server::{self, GatewayHandle, ServerOptions};
use sr_proto::monitoring::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_testkit::pg::TestDb;
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use uuid::Uuid;

pub type GrpcClient = AgentGatewayServiceClient<Channel>;

/// Everything the gateway logged in this test process.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures tracing output (gateway at trace level) for the whole process.
pub fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::new("sr_gateway=trace,sqlx=info,warn");
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .init();
    });
}

/// The captured log so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

pub struct TestGateway {
    pub handle: Option<GatewayHandle>,
    pub clock: Arc<ManualClock>,
    pub report: BootstrapReport,
    pub admin_token: String,
    pub state_dir: TempDir,
    http: reqwest::Client,
    /// Kept alive for the test; dropped (and the database with it) last.
    _db: TestDb,
}

impl TestGateway {
    pub async fn start() -> Self {
        capture_logs();
        sr_gateway::install_crypto_provider();
        let db = TestDb::create().await.unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let report = bootstrap::bootstrap(&BootstrapOptions::new(state_dir.path(), db.url()))
            .await
            .unwrap();
        let admin_token = report.admin_token.clone().unwrap();
        let mut config = GatewayConfig::load(&report.config_file).unwrap();
        config.listen.grpc = "127.0.0.1:0".parse().unwrap();
        config.listen.admin = "127.0.0.1:0".parse().unwrap();
        // Tests reach the gateway where it is bound, not at the bootstrap defaults.
        config.public = Default::default();
        config.known_source_types = vec!["servicenow".into()];
        // Whole seconds, so times survive PostgreSQL's microsecond precision.
        let now = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let handle = server::start(
            config,
            ServerOptions {
                clock: clock.clone(),
                ..ServerOptions::default()
            },
        )
        .await
        .unwrap();
        let root_pem = std::fs::read(state_dir.path().join(files::ROOT_CA_CERT)).unwrap();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&root_pem).unwrap())
            .build()
            .unwrap();
        Self {
            handle: Some(handle),
            clock,
            report,
            admin_token,
            state_dir,
            http,
            _db: db,
        }
    }

    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        use sr_gateway::clock::Clock;
        self.clock.now()
    }

    pub fn handle(&self) -> &GatewayHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn state(&self) -> &Arc<sr_gateway::state::AppState> {
        self.handle().state()
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.state().pool
    }

    pub fn admin_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.handle().admin_addr().port())
    }

    pub fn grpc_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.handle().grpc_addr().port())
    }

    pub fn state_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.state_dir.path().join(name)).unwrap()
    }

    pub fn root_ca(&self) -> Ca {
        Ca::from_pem(
            &self.state_file(files::ROOT_CA_CERT),
            &self.state_file(files::ROOT_CA_KEY),
        )
        .unwrap()
    }

    /// An admin API call with a JSON body; returns status and parsed body.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let raw = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (status, _, text) = self
            .api_raw(method, path, token, Some("application/json"), raw)
            .await;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// An admin API call with the platform admin token.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.admin_token.clone();
        self.api(method, path, Some(&token), body).await
    }

    /// A raw admin API call; returns status, content type and body text.
    pub async fn api_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, String, String) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.admin_url()));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        if let Some(b) = body {
            request = request.body(b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    pub async fn create_tenant(&self, slug: &str) -> Value {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/tenants",
                Some(serde_json::json!({ "slug": slug })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn create_tenant_without_platform_sync(&self, slug: &str) -> Value {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/tenants",
                Some(serde_json::json!({ "slug": slug, "allow_platform_sync": false })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Creates an onboarding package and returns the creation answer.
    pub async fn create_package(&self, tenant: &str, kind: &str, component_id: &str) -> Value {
        let (status, body) = self
            .admin(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/onboarding-packages"),
                Some(serde_json::json!({ "component_type": kind, "component_id": component_id })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Onboards an edge component end to end with `sr_host::enroll` and
    /// returns its directory and an mTLS client built from its files.
    pub async fn enroll_edge(
        &self,
        tenant: &str,
        kind: &str,
        component_id: &str,
    ) -> (TempDir, GrpcClient) {
        let created = self.create_package(tenant, kind, component_id).await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("identity");
        sr_host::enroll::enroll(created["token"].as_str().unwrap(), &target)
            .await
            .unwrap();
        let cert = std::fs::read_to_string(target.join("cert.pem")).unwrap();
        let key = std::fs::read_to_string(target.join("key.pem")).unwrap();
        let client = self.client_with(&cert, &key);
        (dir, client)
    }

    /// A second gateway process over the same database and state files,
    /// as another replica behind a load balancer would be.
    pub async fn start_replica(&self) -> GatewayHandle {
        let mut config = GatewayConfig::load(&self.report.config_file).unwrap();
        config.listen.grpc = "127.0.0.1:0".parse().unwrap();
        config.listen.admin = "127.0.0.1:0".parse().unwrap();
        config.public = Default::default();
        server::start(config, ServerOptions::default())
            .await
            .unwrap()
    }

    /// An mTLS client of `replica` presenting the identity that
    /// [`Self::enroll_edge`] wrote into `dir`.
    pub fn replica_client(&self, replica: &GatewayHandle, dir: &TempDir) -> GrpcClient {
        let identity = dir.path().join("identity");
        let tls = self.identity_tls(
            &std::fs::read_to_string(identity.join("cert.pem")).unwrap(),
            &std::fs::read_to_string(identity.join("key.pem")).unwrap(),
        );
        client_at(
            format!("https://127.0.0.1:{}", replica.grpc_addr().port()),
            tls,
        )
    }

    /// The platform sync's client, from the files bootstrap wrote.
    pub fn platform_sync_client(&self) -> GrpcClient {
        self.client_with(
            &self.state_file(files::PLATFORM_SYNC_CERT),
            &self.state_file(files::PLATFORM_SYNC_KEY),
        )
    }

    /// An mTLS client presenting `cert_pem` (chain) and `key_pem`.
    pub fn client_with(&self, cert_pem: &str, key_pem: &str) -> GrpcClient {
        client_at(self.grpc_url(), self.identity_tls(cert_pem, key_pem))
    }

    /// TLS trusting the root CA and presenting `cert_pem` and `key_pem`.
    fn identity_tls(&self, cert_pem: &str, key_pem: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.state_file(files::ROOT_CA_CERT)))
            .identity(Identity::from_pem(cert_pem, key_pem))
            .domain_name("localhost")
    }

    /// A TLS client without a client certificate.
    pub fn client_without_identity(&self) -> GrpcClient {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.state_file(files::ROOT_CA_CERT)))
            .domain_name("localhost");
        client_at(self.grpc_url(), tls)
    }

    /// A platform component certificate issued by the real root.
    pub fn platform_cert(
        &self,
        kind: ComponentType,
        component_id: &str,
        validity: Validity,
    ) -> IssuedCert {
        pki::issue_platform_component(
            &self.root_ca(),
            kind,
            "platform",
            "platform",
            component_id,
            validity,
        )
        .unwrap()
    }

    /// An mTLS client for a platform component.
    pub fn platform_client(&self, kind: ComponentType, component_id: &str) -> GrpcClient {
        let cert = self.platform_cert(kind, component_id, Validity::days_from_now(1));
        self.client_with(&cert.cert_pem, &cert.key_pem)
    }

    /// The id of the platform sync record.
    pub fn platform_sync_id(&self) -> Uuid {
        self.report.platform_sync_id
    }

    pub async fn generation(&self) -> i64 {
        sqlx::query_scalar("SELECT value FROM platform.config_generation")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM platform.{table}"))
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.unwrap();
        }
    }
}

/// A gRPC client of the gateway at `url`.
fn client_at(url: String, tls: ClientTlsConfig) -> GrpcClient {
    let channel = Endpoint::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    AgentGatewayServiceClient::new(channel)
        .max_decoding_message_size(sr_proto::limits::MAX_GRPC_MESSAGE_BYTES)
}

/// A faker source body.
pub fn faker_source(name: &str) -> Value {
    serde_json::json!({ "name": name, "type": "faker", "settings": { "devices": 10 } })
}

/// An armis source body with credentials.
pub fn armis_source(name: &str, secret: &str) -> Value {
    serde_json::json!({
        "name": name,
        "type": "armis",
        "endpoint": "https://acme.armis.example",
        "credentials": { "secret_key": secret },
        "queries": [{ "label": "all", "query": "in:devices", "sweep_modes": ["icmp"] }],
        "discovery_interval": "6h",
        "network_blacklist": ["10.99.0.0/16"],
    })
}
