//! The StreamStatus handler: validate every chunk, decode the payloads, scope
//! the updates by the caller's certificate, reconcile them (DIRE) in one
//! transaction, and acknowledge only after commit. A rejected stream writes
//! nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use sqlx::Row;
use sr_proto::monitoring::{GatewayStatusChunk, GatewayStatusResponse};
use tonic::{Status, Streaming};
use uuid::Uuid;

use super::decode::{DecodeStats, decode_payload};
use super::scope::{CallerScope, ScopeError, SourceOwner, decide, named_sources};
use super::stream_check::{Caller, StreamChecker, StreamError};
use crate::dire::{ReconcileOptions, TenantSchema, reconcile_with_reader};
use crate::grpc::StreamIngest;
use crate::identity::PeerIdentity;
use crate::state::AppState;

/// Most payload bytes the gateway holds for one stream.
pub const DEFAULT_MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;

/// How long a stream waits for a second connection for DIRE's early loads
/// before reconciling on its transaction's connection alone.
const READER_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Ingests device updates from sync services.
#[derive(Debug, Clone)]
pub struct DeviceIngest {
    max_stream_bytes: usize,
    reconcile: ReconcileOptions,
}

impl Default for DeviceIngest {
    fn default() -> Self {
        Self {
            max_stream_bytes: DEFAULT_MAX_STREAM_BYTES,
            reconcile: ReconcileOptions::default(),
        }
    }
}

impl DeviceIngest {
    /// An ingest holding at most `max_stream_bytes` of payload per stream.
    pub fn with_max_stream_bytes(max_stream_bytes: usize) -> Self {
        Self {
            max_stream_bytes,
            ..Self::default()
        }
    }
}

fn stream_status(error: StreamError) -> Status {
    if error.is_permission() {
        Status::permission_denied(error.to_string())
    } else if error.is_size() {
        Status::resource_exhausted(error.to_string())
    } else {
        Status::invalid_argument(error.to_string())
    }
}

fn scope_status(error: ScopeError) -> Status {
    match error {
        ScopeError::Forbidden(m) => Status::permission_denied(m),
        ScopeError::Invalid(m) => Status::invalid_argument(m),
        ScopeError::UnknownSource(m) => Status::failed_precondition(m),
    }
}

fn storage_status(what: &str, error: impl std::fmt::Display) -> Status {
    // The client retries: nothing was committed.
    Status::unavailable(format!(
        "{what}: {error}; nothing was stored, retry the stream"
    ))
}

impl StreamIngest for DeviceIngest {
    fn stream_status(
        &self,
        state: Arc<AppState>,
        peer: PeerIdentity,
        chunks: Streaming<GatewayStatusChunk>,
    ) -> BoxFuture<'static, Result<GatewayStatusResponse, Status>> {
        let this = self.clone();
        Box::pin(async move { this.ingest(state, peer, chunks).await })
    }
}

impl DeviceIngest {
    async fn ingest(
        &self,
        state: Arc<AppState>,
        peer: PeerIdentity,
        mut chunks: Streaming<GatewayStatusChunk>,
    ) -> Result<GatewayStatusResponse, Status> {
        let started = Instant::now();
        let received_at = state.clock.now();
        let caller = Caller {
            component_id: peer.component_id.clone(),
            tenant_id: peer.tenant_id.to_string(),
            tenant_slug: peer.tenant_slug.clone(),
        };
        let mut checker = StreamChecker::new(caller, self.max_stream_bytes);
        let mut updates = Vec::new();
        let mut decoded = DecodeStats::default();
        let mut index = 0usize;
        while let Some(chunk) = chunks.message().await? {
            checker.check(&chunk).map_err(stream_status)?;
            for (service, status) in chunk.services.iter().enumerate() {
                decode_payload(&status.message, received_at, &mut decoded, &mut updates).map_err(
                    |e| Status::invalid_argument(format!("chunk {index}, service {service}: {e}")),
                )?;
            }
            index += 1;
        }
        checker.finish().map_err(stream_status)?;

        let sync_service_id = crate::sync_services::find_for_peer(&state.pool, &peer)
            .await
            .map_err(|e| storage_status("looking up the sync service", e))?
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "sync service {} of tenant {} is not registered; call Hello first",
                    peer.component_id, peer.tenant_slug
                ))
            })?;
        let scope = CallerScope {
            tenant_id: peer.tenant_id,
            sync_service_id,
            is_platform_sync: peer.is_platform && peer.tenant_id == state.platform.id,
        };
        let sources = load_sources(&state, &named_sources(&updates)).await?;
        let Some(tenant_id) = decide(&scope, &updates, &sources).map_err(scope_status)? else {
            tracing::info!(component_id = %peer.component_id, elements = decoded.elements, "stream without device updates");
            return Ok(GatewayStatusResponse { received: true });
        };
        let schema = TenantSchema::for_tenant(tenant_id);

        let mut tx = state
            .pool
            .begin()
            .await
            .map_err(|e| storage_status("starting the transaction", e))?;
        // A second connection lets DIRE load a batch while the one before is
        // applied. Only when one is free at once: waiting for it while
        // holding a transaction could starve the pool.
        let mut reader = if updates.len() > self.reconcile.batch_size {
            tokio::time::timeout(READER_WAIT, state.pool.acquire())
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        let stats = reconcile_with_reader(
            &mut tx,
            reader.as_deref_mut(),
            &schema,
            updates.into(),
            &self.reconcile,
        )
        .await
        .map_err(|e| storage_status("reconciling devices", e))?;
        drop(reader);
        let devices_changed = stats.new_devices
            + stats.updated_devices
            + stats.merges
            + stats.ip_moves
            + stats.reassigned_devices
            > 0;
        if devices_changed {
            // Agents' sweep configs of this tenant are now stale.
            crate::sweep_delivery::mark_devices_changed(&mut tx, &state.sweep_cache, tenant_id)
                .await
                .map_err(|e| storage_status("recording the device change", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| storage_status("committing", e))?;
        if devices_changed {
            crate::sweep_delivery::refresh_after_commit(state.clone(), tenant_id);
        }

        if decoded.has_warnings() {
            tracing::warn!(
                tenant_id = %tenant_id,
                component_id = %peer.component_id,
                elements = decoded.elements,
                accepted = decoded.accepted,
                skipped_not_object = decoded.skipped_not_object,
                skipped_bad_ip = decoded.skipped_bad_ip,
                skipped_no_source = decoded.skipped_no_source,
                dropped_non_string_metadata = decoded.dropped_non_string_metadata,
                dropped_oversized_metadata = decoded.dropped_oversized_metadata,
                defaulted_timestamps = decoded.defaulted_timestamps,
                stripped_nul = decoded.stripped_nul,
                "device updates skipped or fixed"
            );
        }
        tracing::info!(
            tenant_id = %tenant_id,
            component_id = %peer.component_id,
            chunks = index,
            updates = stats.updates,
            new = stats.new_devices,
            updated = stats.updated_devices,
            unchanged = stats.unchanged_devices,
            merges = stats.merges,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "stream committed"
        );
        Ok(GatewayStatusResponse { received: true })
    }
}

async fn load_sources(
    state: &AppState,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, SourceOwner>, Status> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query("SELECT id, tenant_id, sync_service_id FROM platform.integration_sources WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(&state.pool)
        .await
        .map_err(|e| storage_status("looking up integration sources", e))?;
    let mut sources = HashMap::with_capacity(rows.len());
    for row in rows {
        let read = |e: sqlx::Error| storage_status("reading integration sources", e);
        let id: Uuid = row.try_get("id").map_err(read)?;
        sources.insert(
            id,
            SourceOwner {
                tenant_id: row.try_get("tenant_id").map_err(read)?,
                sync_service_id: row.try_get("sync_service_id").map_err(read)?,
            },
        );
    }
    Ok(sources)
}
