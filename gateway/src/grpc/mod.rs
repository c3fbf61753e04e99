//! The `AgentGatewayService`: Hello, GetConfig and PushStatus for sync
//! services; StreamStatus is delegated to a pluggable [`StreamIngest`].
//!
//! Every RPC first authenticates the caller from its certificate
//! ([`auth::authenticate`]) and checks the request against that identity;
//! handlers only ever use the certificate-derived [`PeerIdentity`].

pub mod auth;

use std::sync::Arc;

use futures::future::BoxFuture;
use sr_proto::encoded_response::{EncodedBody, EncodedConfigResponse};
use sr_proto::gateway_server::agent_gateway_service_server::{
    AgentGatewayService, AgentGatewayServiceServer,
};
use sr_proto::limits;
use sr_proto::monitoring::{
    AgentConfigRequest, AgentConfigResponse, AgentHelloRequest, AgentHelloResponse,
    GatewayStatusChunk, GatewayStatusRequest, GatewayStatusResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::config_delivery::{self, CachedConfig, DeliveryError};
use crate::identity::{
    ComponentType, PeerIdentity, check_agent_id, check_tenant_fields, require_type,
};
use crate::integration_sources::{self, RunReportError};
use crate::state::AppState;
use crate::sync_services::{self, HelloInfo};

pub use auth::authenticate;

/// Receives StreamStatus streams of an authenticated caller. The device
/// ingestion pipeline implements this; the gateway hands it the caller's
/// identity (already checked: allowed type) and the raw chunk stream.
pub trait StreamIngest: Send + Sync + 'static {
    /// Consumes one stream and answers it.
    fn stream_status(
        &self,
        state: Arc<AppState>,
        peer: PeerIdentity,
        chunks: Streaming<GatewayStatusChunk>,
    ) -> BoxFuture<'static, Result<GatewayStatusResponse, Status>>;
}

/// Component types allowed per RPC.
pub const HELLO_TYPES: &[ComponentType] = &[ComponentType::Sync, ComponentType::Agent];
/// Component types allowed to call GetConfig.
pub const GET_CONFIG_TYPES: &[ComponentType] = &[ComponentType::Sync, ComponentType::Agent];
/// Component types allowed to call PushStatus.
pub const PUSH_STATUS_TYPES: &[ComponentType] = &[ComponentType::Sync];
/// Component types allowed to call StreamStatus.
pub const STREAM_STATUS_TYPES: &[ComponentType] = &[ComponentType::Sync];

/// The gRPC service.
#[derive(Clone)]
pub struct GatewayService {
    state: Arc<AppState>,
    ingest: Arc<dyn StreamIngest>,
}

impl GatewayService {
    /// A service over `state`, handing streams to `ingest`.
    pub fn new(state: Arc<AppState>, ingest: Arc<dyn StreamIngest>) -> Self {
        Self { state, ingest }
    }

    /// The tonic server with the protocol's message size limits.
    pub fn into_server(self) -> AgentGatewayServiceServer<Self> {
        AgentGatewayServiceServer::new(self)
            .max_decoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES)
    }

    async fn peer<T>(&self, request: &Request<T>) -> Result<PeerIdentity, Status> {
        let certs = request.peer_certs();
        authenticate(&self.state, certs.as_ref().map(|c| c.as_slice())).await
    }

    fn heartbeat_interval_sec(&self) -> i32 {
        i32::try_from(self.state.config.intervals.heartbeat.as_secs()).unwrap_or(i32::MAX)
    }

    fn config_poll_interval_sec(&self) -> i32 {
        i32::try_from(self.state.config.intervals.config_poll.as_secs()).unwrap_or(i32::MAX)
    }

    async fn sync_config(&self, peer: &PeerIdentity) -> Result<Arc<CachedConfig>, Status> {
        config_delivery::sync_config(
            &self.state.pool,
            &self.state.secrets,
            &self.state.config_cache,
            peer,
            self.state.clock.now(),
        )
        .await
        .map_err(|e| match e {
            DeliveryError::NotRegistered { .. } => Status::failed_precondition(e.to_string()),
            other => auth::internal("building config document", &other),
        })
    }
}

impl GatewayService {
    /// GetConfig for a monitoring agent: its tenant's devices assigned to it,
    /// as a sweep config (typed, field 10, and under `config_json["sweep"]`).
    async fn agent_config(
        &self,
        peer: &PeerIdentity,
        version: &str,
    ) -> Result<Response<EncodedConfigResponse>, Status> {
        let sweep = crate::sweep_delivery::agent_sweep(
            &self.state.pool,
            &self.state.sweep_cache,
            peer.tenant_id,
            &peer.component_id,
            self.state.clock.now(),
        )
        .await
        .map_err(|e| auth::internal("building the sweep config", &e))?;
        if !peer.is_platform {
            crate::sweep_delivery::record_agent_poll(
                &self.state,
                peer.tenant_id,
                &peer.component_id,
            );
        }
        Ok(self.config_response(version, &sweep.version, sweep.built_at, &sweep.body))
    }

    /// A GetConfig answer for the config at `current` version: only the
    /// small fields when the caller already holds it (`requested`), else
    /// with the pre-encoded body too.
    fn config_response(
        &self,
        requested: &str,
        current: &str,
        built_at: chrono::DateTime<chrono::Utc>,
        body: &EncodedBody,
    ) -> Response<EncodedConfigResponse> {
        let not_modified = !requested.is_empty() && requested == current;
        Response::new(EncodedConfigResponse {
            head: AgentConfigResponse {
                not_modified,
                config_version: current.to_string(),
                config_timestamp: built_at.timestamp(),
                heartbeat_interval_sec: self.heartbeat_interval_sec(),
                config_poll_interval_sec: self.config_poll_interval_sec(),
                ..AgentConfigResponse::default()
            },
            body: if not_modified {
                EncodedBody::default()
            } else {
                body.clone()
            },
        })
    }
}

#[tonic::async_trait]
impl AgentGatewayService for GatewayService {
    async fn hello(
        &self,
        request: Request<AgentHelloRequest>,
    ) -> Result<Response<AgentHelloResponse>, Status> {
        let peer = self.peer(&request).await?;
        require_type("Hello", &peer, HELLO_TYPES)?;
        let req = request.into_inner();
        check_agent_id(&peer, &req.agent_id)?;
        let now = self.state.clock.now();
        let mut config_outdated = false;
        match peer.component_type {
            ComponentType::Sync => {
                let info = HelloInfo {
                    version: req.version.clone(),
                    capabilities: req.capabilities.clone(),
                    hostname: req.hostname.clone(),
                    os: req.os.clone(),
                    arch: req.arch.clone(),
                };
                let id = sync_services::register_hello(&self.state.pool, &peer, &info, now)
                    .await
                    .map_err(|e| auth::internal("registering sync service", &e))?;
                if !req.config_version.is_empty() {
                    config_outdated = self.sync_config(&peer).await?.version != req.config_version;
                }
                tracing::info!(tenant = %peer.tenant_slug, component_id = %peer.component_id,
                    sync_service_id = %id, platform = peer.is_platform, version = %req.version, "sync service said hello");
            }
            _ => {
                if !peer.is_platform {
                    crate::onboarding::record_component_seen(
                        &self.state.pool,
                        peer.tenant_id,
                        &peer.component_id,
                        now,
                    )
                    .await
                    .map_err(|e| auth::internal("recording agent hello", &e))?;
                }
                tracing::info!(tenant = %peer.tenant_slug, component_id = %peer.component_id,
                    component_type = %peer.component_type, "component said hello");
            }
        }
        Ok(Response::new(AgentHelloResponse {
            accepted: true,
            agent_id: peer.component_id.clone(),
            message: format!(
                "welcome {} ({} of tenant {})",
                peer.component_id, peer.component_type, peer.tenant_slug
            ),
            gateway_id: self.state.config.gateway_id.clone(),
            server_time: now.timestamp(),
            heartbeat_interval_sec: self.heartbeat_interval_sec(),
            config_outdated,
            tenant_id: peer.tenant_id.to_string(),
            tenant_slug: peer.tenant_slug.clone(),
        }))
    }

    async fn get_config(
        &self,
        request: Request<AgentConfigRequest>,
    ) -> Result<Response<EncodedConfigResponse>, Status> {
        let peer = self.peer(&request).await?;
        require_type("GetConfig", &peer, GET_CONFIG_TYPES)?;
        let req = request.into_inner();
        check_agent_id(&peer, &req.agent_id)?;
        if peer.component_type == ComponentType::Agent {
            return self.agent_config(&peer, &req.config_version).await;
        }
        let config = self.sync_config(&peer).await?;
        Ok(self.config_response(
            &req.config_version,
            &config.version,
            config.built_at,
            &config.body,
        ))
    }

    async fn push_status(
        &self,
        request: Request<GatewayStatusRequest>,
    ) -> Result<Response<GatewayStatusResponse>, Status> {
        let peer = self.peer(&request).await?;
        require_type("PushStatus", &peer, PUSH_STATUS_TYPES)?;
        let req = request.into_inner();
        check_agent_id(&peer, &req.agent_id)?;
        check_tenant_fields(&peer, &req.tenant_id, &req.tenant_slug)?;
        if req.services.len() > limits::MAX_SERVICES_PER_STREAM {
            return Err(Status::invalid_argument(format!(
                "{} services in one PushStatus; at most {} are accepted",
                req.services.len(),
                limits::MAX_SERVICES_PER_STREAM
            )));
        }

        // Check everything before writing anything.
        let mut heartbeat = false;
        let mut reports = Vec::new();
        for (i, service) in req.services.iter().enumerate() {
            check_agent_id(&peer, &service.agent_id)?;
            check_tenant_fields(&peer, &service.tenant_id, &service.tenant_slug)?;
            match (service.service_name.as_str(), service.source.as_str()) {
                (limits::SYNC_SERVICE_NAME, limits::SOURCE_STATUS) => heartbeat = true,
                (limits::SYNC_RUN_SERVICE_NAME, limits::SOURCE_STATUS) => {
                    let report = integration_sources::parse_run_report(&service.message)
                        .map_err(|e| Status::invalid_argument(format!("services[{i}]: {e}")))?;
                    reports.push(report);
                }
                (name, source) => {
                    return Err(Status::invalid_argument(format!(
                        "services[{i}]: unsupported service {name:?} with source {source:?}; a sync service pushes \"sync\" heartbeats and \"sync-run\" reports with source \"status\" (device results go over StreamStatus)"
                    )));
                }
            }
        }
        let sync_service_id = sync_services::find_for_peer(&self.state.pool, &peer)
            .await
            .map_err(|e| auth::internal("looking up sync service", &e))?
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "sync service {:?} of tenant {:?} is not registered; call Hello first",
                    peer.component_id, peer.tenant_slug
                ))
            })?;
        for report in &reports {
            integration_sources::check_run_report(&self.state.pool, sync_service_id, report)
                .await
                .map_err(run_report_status)?;
        }
        let now = self.state.clock.now();
        if heartbeat {
            sync_services::heartbeat(&self.state.pool, &peer, now)
                .await
                .map_err(|e| auth::internal("recording heartbeat", &e))?;
        }
        for report in &reports {
            integration_sources::apply_run_report(&self.state.pool, sync_service_id, report)
                .await
                .map_err(run_report_status)?;
        }
        Ok(Response::new(GatewayStatusResponse { received: true }))
    }

    async fn stream_status(
        &self,
        request: Request<Streaming<GatewayStatusChunk>>,
    ) -> Result<Response<GatewayStatusResponse>, Status> {
        let peer = self.peer(&request).await?;
        require_type("StreamStatus", &peer, STREAM_STATUS_TYPES)?;
        self.ingest
            .stream_status(self.state.clone(), peer, request.into_inner())
            .await
            .map(Response::new)
    }
}

fn run_report_status(e: RunReportError) -> Status {
    match e {
        RunReportError::Malformed(m) => Status::invalid_argument(m),
        RunReportError::Forbidden(m) => Status::permission_denied(m),
        RunReportError::Db(e) => auth::internal("recording run report", &e),
    }
}
