//! `/api/v1/tenants` and admin tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::json::ApiJson;
use super::principal::{Principal, tenant_for};
use super::problem::Problem;
use crate::admin_tokens::{self, MintedToken, Scope};
use crate::state::AppState;
use crate::tenants::{self, NewTenant, Tenant};

/// Body of `POST /api/v1/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    slug: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    allow_platform_sync: Option<bool>,
}

/// Body of `PATCH /api/v1/tenants/{tenant}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    allow_platform_sync: Option<bool>,
}

/// Body of token minting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    name: String,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<Tenant>), Problem> {
    principal.require_platform()?;
    let tenant = tenants::create(
        &state.pool,
        &state.secrets,
        &state.root_ca,
        NewTenant {
            slug: body.slug,
            name: body.name,
            allow_platform_sync: body.allow_platform_sync.unwrap_or(true),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Vec<Tenant>>, Problem> {
    let all = tenants::list(&state.pool).await?;
    Ok(Json(
        all.into_iter()
            .filter(|t| principal.may_access(t.id))
            .collect(),
    ))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Tenant>, Problem> {
    Ok(Json(tenant_for(&state, &principal, &tenant).await?))
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> Result<Json<Tenant>, Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    if let Some(name) = &body.name
        && name.trim().is_empty()
    {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid field",
            "name: must not be empty",
        )
        .with_field("name"));
    }
    let updated =
        tenants::update(&state.pool, tenant.id, body.name, body.allow_platform_sync).await?;
    Ok(Json(updated))
}

pub async fn mint_token(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<MintToken>,
) -> Result<(StatusCode, Json<MintedToken>), Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    if tenant.is_platform {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid tenant",
            "the platform tenant is managed with platform-admin tokens (POST /api/v1/admin-tokens)",
        )
        .with_field("tenant"));
    }
    let name = token_name(&body.name)?;
    let mut conn = state
        .pool
        .acquire()
        .await
        .map_err(|e| Problem::internal(&e))?;
    let minted = admin_tokens::mint(&mut conn, Scope::TenantAdmin(tenant.id), name).await?;
    tracing::info!(tenant = %tenant.slug, token_id = %minted.id, "tenant admin token minted");
    Ok((StatusCode::CREATED, Json(minted)))
}

pub async fn mint_platform_token(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(body): ApiJson<MintToken>,
) -> Result<(StatusCode, Json<MintedToken>), Problem> {
    principal.require_platform()?;
    let name = token_name(&body.name)?;
    let mut conn = state
        .pool
        .acquire()
        .await
        .map_err(|e| Problem::internal(&e))?;
    let minted = admin_tokens::mint(&mut conn, Scope::PlatformAdmin, name).await?;
    tracing::info!(token_id = %minted.id, "platform admin token minted");
    Ok((StatusCode::CREATED, Json(minted)))
}

fn token_name(name: &str) -> Result<&str, Problem> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid field",
            "name: give the token a label of 1-100 characters",
        )
        .with_field("name"));
    }
    Ok(name)
}
