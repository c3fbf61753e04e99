//! Test support: a throwaway PKI issued with rcgen, and a minimal
//! `AgentGatewayService` over real mTLS that serves one agent's config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use sr_agent::AgentConfig;
use sr_gateway::sweep::{GeneratedSweep, SweepDefaults, SweepDevice, SweepSource, generate};
use sr_proto::monitoring::agent_gateway_service_server::{
    AgentGatewayService, AgentGatewayServiceServer,
};
use sr_proto::monitoring::{
    AgentConfigRequest, AgentConfigResponse, AgentHelloRequest, AgentHelloResponse,
    GatewayStatusChunk, GatewayStatusRequest, GatewayStatusResponse, SweepConfig,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

pub const SERVER_NAME: &str = "gateway.test";

/// A CA, a gateway certificate and an agent certificate, as PEM.
pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub agent_cert_pem: String,
    pub agent_key_pem: String,
}

impl Pki {
    pub fn issue(agent_id: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "sr-agent test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec![SERVER_NAME.to_string()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let agent_key = KeyPair::generate().unwrap();
        let mut agent = CertificateParams::new(Vec::<String>::new()).unwrap();
        agent.distinguished_name.push(DnType::CommonName, agent_id);
        agent.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let agent_cert = agent.signed_by(&agent_key, &issuer).unwrap();

        Self {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            agent_cert_pem: format!("{}{}", agent_cert.pem(), ca_cert.pem()),
            agent_key_pem: agent_key.serialize_pem(),
        }
    }

    /// Writes the agent's files and config (relative paths) into `dir`;
    /// returns the config file's path.
    pub fn write_agent_config(&self, dir: &Path, agent_id: &str, addr: SocketAddr) -> PathBuf {
        std::fs::write(dir.join("ca.pem"), &self.ca_pem).unwrap();
        std::fs::write(dir.join("agent.pem"), &self.agent_cert_pem).unwrap();
        std::fs::write(dir.join("agent-key.pem"), &self.agent_key_pem).unwrap();
        let config = json!({
            "component_id": agent_id,
            "gateway_addr": format!("https://{addr}"),
            "tls_server_name": SERVER_NAME,
            "cert_file": "agent.pem",
            "key_file": "agent-key.pem",
            "ca_file": "ca.pem",
            "sweep_file": "sweep.json",
        });
        let path = dir.join("agent.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        path
    }
}

/// What the fake gateway answers and what it saw.
#[derive(Default)]
pub struct GatewayState {
    pub version: String,
    pub config_json: Vec<u8>,
    pub sweep: Option<SweepConfig>,
    pub hellos: Vec<AgentHelloRequest>,
    pub config_requests: Vec<AgentConfigRequest>,
    pub not_modified_answers: usize,
}

impl GatewayState {
    /// Serves a generated sweep the way the gateway delivers it: version =
    /// content hash, `config_json` = `{"sweep": ...}`, field 10 = typed.
    pub fn serve(&mut self, generated: &GeneratedSweep) {
        self.version = generated.config_version().to_string();
        self.config_json = generated.document.agent_config_json();
        self.sweep = Some(generated.document.to_proto());
    }
}

#[derive(Clone, Default)]
pub struct FakeGateway {
    pub state: Arc<Mutex<GatewayState>>,
}

#[tonic::async_trait]
impl AgentGatewayService for FakeGateway {
    async fn hello(
        &self,
        request: Request<AgentHelloRequest>,
    ) -> Result<Response<AgentHelloResponse>, Status> {
        let has_client_cert = request.peer_certs().is_some_and(|c| !c.is_empty());
        if !has_client_cert {
            return Err(Status::unauthenticated("no client certificate"));
        }
        let request = request.into_inner();
        let agent_id = request.agent_id.clone();
        self.state.lock().unwrap().hellos.push(request);
        Ok(Response::new(AgentHelloResponse {
            accepted: true,
            agent_id,
            gateway_id: "gw-test".into(),
            tenant_slug: "acme".into(),
            ..Default::default()
        }))
    }

    async fn get_config(
        &self,
        request: Request<AgentConfigRequest>,
    ) -> Result<Response<AgentConfigResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.state.lock().unwrap();
        let not_modified =
            !request.config_version.is_empty() && request.config_version == state.version;
        state.config_requests.push(request);
        let mut response = AgentConfigResponse {
            not_modified,
            config_version: state.version.clone(),
            config_poll_interval_sec: 60,
            heartbeat_interval_sec: 30,
            ..Default::default()
        };
        if not_modified {
            state.not_modified_answers += 1;
        } else {
            response.config_json = state.config_json.clone();
            response.sweep = state.sweep.clone();
        }
        Ok(Response::new(response))
    }

    async fn push_status(
        &self,
        _request: Request<GatewayStatusRequest>,
    ) -> Result<Response<GatewayStatusResponse>, Status> {
        Err(Status::unimplemented("not used by agents"))
    }

    async fn stream_status(
        &self,
        _request: Request<tonic::Streaming<GatewayStatusChunk>>,
    ) -> Result<Response<GatewayStatusResponse>, Status> {
        Err(Status::unimplemented("not used by agents"))
    }
}

/// A running fake gateway; stopped (connections closed) on [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// Serves `gateway` over mTLS (client certificates from the PKI's CA
/// required) on `addr` (port 0 for any).
pub async fn start(gateway: FakeGateway, pki: &Pki, addr: SocketAddr) -> Running {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &pki.server_cert_pem,
            &pki.server_key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem));
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(AgentGatewayServiceServer::new(gateway));
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

pub fn local_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn load_config(path: &Path) -> AgentConfig {
    AgentConfig::load(path).unwrap()
}

// ---- device data, shaped like the Faker and Armis adapters' output ----

pub const FAKER_SOURCE: &str = "9b0e0000-0000-4000-8000-0000000000fa";
pub const ARMIS_SOURCE: &str = "9b0e0000-0000-4000-8000-0000000000a1";

pub fn sources() -> Vec<SweepSource> {
    vec![
        SweepSource {
            id: FAKER_SOURCE.into(),
            source_type: "faker".into(),
            ..SweepSource::default()
        },
        SweepSource {
            id: ARMIS_SOURCE.into(),
            source_type: "armis".into(),
            ports: vec![22, 443],
            ..SweepSource::default()
        },
    ]
}

pub fn faker_device(n: u32, ip: &str) -> SweepDevice {
    SweepDevice::from_row(
        format!("sr:00000000-0000-4000-8000-{n:012}"),
        Some(ip.to_string()),
        Some(format!("faker-{n}.lab")),
        "default".into(),
        vec!["faker".into()],
        json!({"integration_type": "faker", "integration_id": n.to_string(),
               "integration_source_id": FAKER_SOURCE, "query_label": "all"}),
    )
}

pub fn armis_device(n: u32, ip: &str) -> SweepDevice {
    SweepDevice::from_row(
        format!("sr:00000000-0000-4000-8000-a{n:011}"),
        Some(ip.to_string()),
        None,
        "default".into(),
        vec!["armis".into()],
        json!({"integration_type": "armis", "integration_id": n.to_string(),
               "armis_device_id": n.to_string(), "integration_source_id": ARMIS_SOURCE}),
    )
}

pub fn sweep_of(devices: &[SweepDevice]) -> GeneratedSweep {
    generate(devices, &sources(), &SweepDefaults::default())
}
