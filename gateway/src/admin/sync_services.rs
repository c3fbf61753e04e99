//! `/api/v1/.../sync-services`: listings with computed status.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use uuid::Uuid;

use super::principal::{Principal, tenant_for};
use super::problem::Problem;
use crate::state::AppState;
use crate::sync_services::{self, SyncServiceView};

pub async fn list_for_tenant(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<SyncServiceView>>, Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    let list = sync_services::list_for_tenant(&state.pool, tenant.id, state.clock.now()).await?;
    Ok(Json(list))
}

pub async fn list_all(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Vec<SyncServiceView>>, Problem> {
    principal.require_platform()?;
    Ok(Json(
        sync_services::list_all(&state.pool, state.clock.now()).await?,
    ))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<SyncServiceView>, Problem> {
    principal.require_platform()?;
    let id =
        Uuid::parse_str(&id).map_err(|_| Problem::not_found(format!("no sync service {id:?}")))?;
    sync_services::get(&state.pool, id, state.clock.now())
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no sync service {id}")))
}
