//! The sync service's side of the agent-gateway protocol over mTLS: Hello,
//! GetConfig, heartbeats and run reports (PushStatus), device chunks
//! (StreamStatus).

use sr_proto::limits::{
    SOURCE_RESULTS, SOURCE_STATUS, SYNC_RUN_SERVICE_NAME, SYNC_SERVICE_NAME, SYNC_SERVICE_TYPE,
};
use sr_proto::monitoring::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_proto::monitoring::{
    AgentConfigRequest, AgentConfigResponse, AgentHelloRequest, AgentHelloResponse,
    GatewayServiceStatus, GatewayStatusChunk, GatewayStatusRequest,
};
use sr_proto::run_report::RunReport;
use thiserror::Error;
use tonic::transport::Channel;

use super::config::HostConfig;

/// A failure talking to the gateway.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// Certificates or address are unusable.
    #[error("gateway connection setup: {0}")]
    Setup(String),
    /// The call failed with an error status: the gateway's answer, or the
    /// transport's when the gateway could not be reached (its message then
    /// ends with the cause chain, e.g. the refused TCP connection or the
    /// rejected certificate).
    #[error("gateway {rpc} failed: {code:?}: {message}")]
    Status {
        /// The RPC.
        rpc: &'static str,
        /// gRPC status code.
        code: tonic::Code,
        /// The gateway's message.
        message: String,
    },
}

impl GatewayError {
    /// Whether retrying the same request later can succeed (the gateway is
    /// down or overloaded) rather than being refused for what was sent.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Setup(_) => false,
            Self::Status { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Internal
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
            ),
        }
    }

    fn status(rpc: &'static str, status: tonic::Status) -> Self {
        Self::Status {
            rpc,
            code: status.code(),
            message: sr_proto::error_chain::status_with_causes(&status),
        }
    }
}

/// A connected (lazily) gateway client for one sync service.
#[derive(Clone)]
pub struct GatewayClient {
    client: AgentGatewayServiceClient<Channel>,
    component_id: String,
}

impl GatewayClient {
    /// Builds the mTLS channel from the config's certificate files.
    pub fn new(config: &HostConfig) -> Result<Self, GatewayError> {
        let target = sr_proto::connect::GatewayTarget {
            addr: &config.gateway_addr,
            tls_server_name: &config.tls_server_name,
            ca_file: &config.ca_file,
            cert_file: &config.cert_file,
            key_file: &config.key_file,
        };
        // No per-call timeout: a StreamStatus stream lasts as long as its chunks.
        let client =
            sr_proto::connect::mtls_client(target, None).map_err(|e| GatewayError::Setup(e.0))?;
        Ok(Self {
            client,
            component_id: config.component_id.clone(),
        })
    }

    /// The component id this client speaks for.
    pub fn component_id(&self) -> &str {
        &self.component_id
    }

    /// Announces the sync service.
    pub async fn hello(&self, config_version: &str) -> Result<AgentHelloResponse, GatewayError> {
        let request = AgentHelloRequest {
            agent_id: self.component_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: vec!["sync".to_string()],
            config_version: config_version.to_string(),
            config_source: "remote".to_string(),
            ..sr_proto::connect::this_machine()
        };
        self.client
            .clone()
            .hello(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| GatewayError::status("Hello", s))
    }

    /// Pulls the config; `not_modified` when `version` is current.
    pub async fn get_config(&self, version: &str) -> Result<AgentConfigResponse, GatewayError> {
        let request = AgentConfigRequest {
            agent_id: self.component_id.clone(),
            config_version: version.to_string(),
        };
        self.client
            .clone()
            .get_config(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| GatewayError::status("GetConfig", s))
    }

    /// Sends a heartbeat.
    pub async fn heartbeat(&self) -> Result<(), GatewayError> {
        self.push(SYNC_SERVICE_NAME, Vec::new(), "heartbeat").await
    }

    /// Reports a run's lifecycle.
    pub async fn report_run(&self, report: &RunReport) -> Result<(), GatewayError> {
        let message = serde_json::to_vec(report)
            .map_err(|e| GatewayError::Setup(format!("encoding run report: {e}")))?;
        self.push(SYNC_RUN_SERVICE_NAME, message, "run report")
            .await
    }

    async fn push(
        &self,
        service_name: &str,
        message: Vec<u8>,
        _what: &str,
    ) -> Result<(), GatewayError> {
        let request = GatewayStatusRequest {
            services: vec![GatewayServiceStatus {
                service_name: service_name.to_string(),
                available: true,
                message,
                service_type: SYNC_SERVICE_TYPE.to_string(),
                agent_id: self.component_id.clone(),
                source: SOURCE_STATUS.to_string(),
                ..Default::default()
            }],
            agent_id: self.component_id.clone(),
            timestamp: chrono::Utc::now().timestamp(),
            ..Default::default()
        };
        self.client
            .clone()
            .push_status(request)
            .await
            .map(|_| ())
            .map_err(|s| GatewayError::status("PushStatus", s))
    }

    /// Sends one complete stream of result chunks (each a JSON array of
    /// DeviceUpdates) and waits for the gateway's acknowledgement, which it
    /// gives only after committing them.
    pub async fn stream_results(
        &self,
        payloads: &[Vec<u8>],
        partition: &str,
    ) -> Result<(), GatewayError> {
        let total = i32::try_from(payloads.len())
            .map_err(|_| GatewayError::Setup("too many chunks in one stream".into()))?;
        let now = chrono::Utc::now().timestamp();
        let chunks: Vec<GatewayStatusChunk> = payloads
            .iter()
            .enumerate()
            .map(|(index, payload)| GatewayStatusChunk {
                services: vec![GatewayServiceStatus {
                    service_name: SYNC_SERVICE_NAME.to_string(),
                    available: true,
                    message: payload.clone(),
                    service_type: SYNC_SERVICE_TYPE.to_string(),
                    agent_id: self.component_id.clone(),
                    partition: partition.to_string(),
                    source: SOURCE_RESULTS.to_string(),
                    ..Default::default()
                }],
                agent_id: self.component_id.clone(),
                timestamp: now,
                partition: partition.to_string(),
                is_final: index as i32 == total - 1,
                chunk_index: index as i32,
                total_chunks: total,
                ..Default::default()
            })
            .collect();
        let response = self
            .client
            .clone()
            .stream_status(tokio_stream::iter(chunks))
            .await
            .map_err(|s| GatewayError::status("StreamStatus", s))?
            .into_inner();
        if response.received {
            Ok(())
        } else {
            Err(GatewayError::Status {
                rpc: "StreamStatus",
                code: tonic::Code::Unknown,
                message: "the gateway did not acknowledge the stream".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("tcp connect error")]
    struct Connect(#[source] std::io::Error);

    #[test]
    fn transport_failures_carry_their_cause() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let mut status = tonic::Status::unavailable("tcp connect error");
        status.set_source(Arc::new(Connect(refused)));
        let error = GatewayError::status("Hello", status);
        assert_eq!(
            error.to_string(),
            "gateway Hello failed: Unavailable: tcp connect error: Connection refused (os error 111)"
        );
        assert!(error.is_transient());
    }

    #[test]
    fn answers_from_the_gateway_keep_their_message() {
        let error = GatewayError::status(
            "GetConfig",
            tonic::Status::failed_precondition("call Hello first"),
        );
        assert_eq!(
            error.to_string(),
            "gateway GetConfig failed: FailedPrecondition: call Hello first"
        );
        assert!(!error.is_transient());
    }
}
