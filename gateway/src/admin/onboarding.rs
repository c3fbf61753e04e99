//! `/api/v1/.../onboarding-packages`: creation (admin) and the one-time
//! download (authorised by the enrollment token's secret, no bearer token).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use uuid::Uuid;

use super::json::ApiJson;
use super::principal::{Principal, tenant_for};
use super::problem::Problem;
use crate::onboarding::{
    self, CreatePackage, CreatedPackage, DownloadRequest, OnboardingContext, OnboardingPackage,
};
use crate::state::AppState;

pub async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<CreatePackage>,
) -> Result<(StatusCode, Json<CreatedPackage>), Problem> {
    let tenant = tenant_for(&state, &principal, &tenant).await?;
    let root_ca_sha256 = state.root_ca.cert_sha256();
    let ctx = OnboardingContext {
        pool: &state.pool,
        secrets: &state.secrets,
        root_ca_pem: state.root_ca.cert_pem(),
        root_ca_sha256: &root_ca_sha256,
        endpoints: &state.endpoints,
        cert_validity_days: state.config.onboarding.cert_validity_days,
        default_ttl: state.config.onboarding.token_ttl,
        now: state.clock.now(),
    };
    let created = onboarding::create(&ctx, &tenant, body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn download(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DownloadRequest>,
) -> Result<Json<OnboardingPackage>, Problem> {
    let id = Uuid::parse_str(&id).map_err(|_| {
        Problem::not_found("unknown enrollment token; ask the operator for a new one")
    })?;
    let package = onboarding::download(
        &state.pool,
        &state.secrets,
        id,
        &body.secret,
        state.clock.now(),
    )
    .await?;
    Ok(Json(package))
}
