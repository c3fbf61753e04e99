//! `/api/v1/tenants/{tenant}/integration-sources`: CRUD. Responses never
//! carry credentials, only `has_credentials`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use uuid::Uuid;

use super::json::ApiJson;
use super::principal::{Principal, tenant_for};
use super::problem::Problem;
use crate::integration_sources::{self, CreateSource, SourceView, UpdateSource};
use crate::state::AppState;

pub async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<CreateSource>,
) -> Result<(StatusCode, Json<SourceView>), Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    let view = integration_sources::create(
        &state.pool,
        &state.secrets,
        &state.known_source_types,
        &tenant,
        body,
        state.clock.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<SourceView>>, Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    Ok(Json(
        integration_sources::list(&state.pool, tenant.id, state.clock.now()).await?,
    ))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<SourceView>, Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    let id = source_id(&id)?;
    integration_sources::get(&state.pool, tenant.id, id, state.clock.now())
        .await?
        .map(Json)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no integration source {id} in tenant {:?}",
                tenant.slug
            ))
        })
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateSource>,
) -> Result<Json<SourceView>, Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    let id = source_id(&id)?;
    let view = integration_sources::update(
        &state.pool,
        &state.secrets,
        &state.known_source_types,
        &tenant,
        id,
        body,
        state.clock.now(),
    )
    .await?;
    Ok(Json(view))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    let id = source_id(&id)?;
    integration_sources::delete(&state.pool, &tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn source_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::not_found(format!("no integration source {id:?}")))
}
