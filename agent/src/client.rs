//! The agent's side of the agent-gateway protocol over mTLS: Hello and
//! GetConfig.

use std::time::Duration;

use sr_proto::monitoring::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_proto::monitoring::{
    AgentConfigRequest, AgentConfigResponse, AgentHelloRequest, AgentHelloResponse,
};
use thiserror::Error;
use tonic::transport::Channel;

use crate::config::AgentConfig;

/// Capability an agent announces in Hello.
pub const SWEEP_CAPABILITY: &str = "sweep";

/// A failure talking to the gateway.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Certificates or address are unusable.
    #[error("gateway connection setup: {0}")]
    Setup(String),
    /// The call failed: the gateway is unreachable or answered an error.
    #[error("{rpc} failed: {code:?}: {message}")]
    Status {
        /// The RPC.
        rpc: &'static str,
        /// gRPC status code.
        code: tonic::Code,
        /// The message, with the transport's cause when there is one.
        message: String,
    },
}

impl ClientError {
    fn status(rpc: &'static str, status: tonic::Status) -> Self {
        let message = sr_proto::error_chain::status_with_causes(&status);
        Self::Status {
            rpc,
            code: status.code(),
            message,
        }
    }
}

/// A lazily connected mTLS client for one agent.
#[derive(Clone)]
pub struct GatewayClient {
    client: AgentGatewayServiceClient<Channel>,
    component_id: String,
}

impl GatewayClient {
    /// Builds the mTLS channel from the config's certificate files; nothing
    /// is dialled until the first call.
    pub fn new(config: &AgentConfig) -> Result<Self, ClientError> {
        let target = sr_proto::connect::GatewayTarget {
            addr: &config.gateway_addr,
            tls_server_name: &config.tls_server_name,
            ca_file: &config.ca_file,
            cert_file: &config.cert_file,
            key_file: &config.key_file,
        };
        let client = sr_proto::connect::mtls_client(target, Some(Duration::from_secs(60)))
            .map_err(|e| ClientError::Setup(e.0))?;
        Ok(Self {
            client,
            component_id: config.component_id.clone(),
        })
    }

    /// Announces the agent. `config_source` is `remote`, `local` or
    /// `default` (see [`crate::poll::ConfigSource`]).
    pub async fn hello(
        &self,
        config_version: &str,
        config_source: &str,
    ) -> Result<AgentHelloResponse, ClientError> {
        let request = AgentHelloRequest {
            agent_id: self.component_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: vec![SWEEP_CAPABILITY.to_string()],
            config_version: config_version.to_string(),
            config_source: config_source.to_string(),
            ..sr_proto::connect::this_machine()
        };
        self.client
            .clone()
            .hello(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| ClientError::status("Hello", s))
    }

    /// Pulls the config; `not_modified` when `version` is current.
    pub async fn get_config(&self, version: &str) -> Result<AgentConfigResponse, ClientError> {
        let request = AgentConfigRequest {
            agent_id: self.component_id.clone(),
            config_version: version.to_string(),
        };
        self.client
            .clone()
            .get_config(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| ClientError::status("GetConfig", s))
    }
}
