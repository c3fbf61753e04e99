//! Connecting a component (sync service or agent) to the gateway over mTLS
//! with the certificate files of its bootstrap config.

use std::path::Path;
use std::time::Duration;

use thiserror::Error;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::limits::MAX_GRPC_MESSAGE_BYTES;
use crate::monitoring::AgentHelloRequest;
use crate::monitoring::agent_gateway_service_client::AgentGatewayServiceClient;

/// The client could not be set up (nothing was dialled yet).
#[derive(Debug, Error)]
#[error("gateway connection setup: {0}")]
pub struct ConnectError(pub String);

/// Where and as whom to connect.
#[derive(Debug, Clone, Copy)]
pub struct GatewayTarget<'a> {
    /// `https://host:port`.
    pub addr: &'a str,
    /// Name the gateway certificate must carry.
    pub tls_server_name: &'a str,
    /// CA bundle that issued the gateway certificate (PEM).
    pub ca_file: &'a Path,
    /// The component's certificate chain (PEM).
    pub cert_file: &'a Path,
    /// The component's private key (PEM).
    pub key_file: &'a Path,
}

/// A lazily connected mTLS client: nothing is dialled until the first call.
/// `request_timeout` bounds each call (none for long client streams).
pub fn mtls_client(
    target: GatewayTarget<'_>,
    request_timeout: Option<Duration>,
) -> Result<AgentGatewayServiceClient<Channel>, ConnectError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| ConnectError(format!("reading {}: {e}", path.display())))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(target.ca_file)?))
        .identity(Identity::from_pem(
            read(target.cert_file)?,
            read(target.key_file)?,
        ))
        .domain_name(target.tls_server_name.to_string());
    let mut endpoint = Endpoint::from_shared(target.addr.to_string())
        .map_err(|e| ConnectError(format!("gateway_addr {}: {e}", target.addr)))?
        .tls_config(tls)
        .map_err(|e| ConnectError(format!("TLS configuration: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if let Some(timeout) = request_timeout {
        endpoint = endpoint.timeout(timeout);
    }
    Ok(AgentGatewayServiceClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES))
}

/// A Hello request that describes this machine (hostname, OS,
/// architecture); the caller fills in who it is and what it runs, as in
/// `AgentHelloRequest { agent_id, .., ..this_machine() }`.
pub fn this_machine() -> AgentHelloRequest {
    AgentHelloRequest {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        ..Default::default()
    }
}
