//! The admin HTTP API (JSON over HTTPS, bearer tokens).
//!
//! Routes live under `/api/v1`; each resource has its own module and adds
//! its routes in [`router`]. Errors are problem JSON ([`problem::Problem`]);
//! request bodies go through [`json::ApiJson`], which refuses unknown fields
//! and names the offending field.

pub mod json;
pub mod principal;
pub mod problem;

mod onboarding;
mod sources;
mod sweep;
mod sync_services;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The admin API router.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/tenants/{tenant}",
            get(tenants::get).patch(tenants::update),
        )
        .route("/tenants/{tenant}/admin-tokens", post(tenants::mint_token))
        .route("/admin-tokens", post(tenants::mint_platform_token))
        .route(
            "/tenants/{tenant}/onboarding-packages",
            post(onboarding::create),
        )
        .route(
            "/onboarding-packages/{id}/download",
            post(onboarding::download),
        )
        .route(
            "/tenants/{tenant}/sync-services",
            get(sync_services::list_for_tenant),
        )
        .route(
            "/tenants/{tenant}/agents/{agent_id}/sweep",
            get(sweep::preview),
        )
        .route("/sync-services", get(sync_services::list_all))
        .route("/sync-services/{id}", get(sync_services::get))
        .route(
            "/tenants/{tenant}/integration-sources",
            post(sources::create).get(sources::list),
        )
        .route(
            "/tenants/{tenant}/integration-sources/{id}",
            get(sources::get)
                .patch(sources::update)
                .delete(sources::delete),
        )
        .method_not_allowed_fallback(|| async {
            problem::Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "this route does not support that method",
            )
        });
    Router::new()
        .nest("/api/v1", api)
        .fallback(|| async {
            problem::Problem::not_found("no such route; the API lives under /api/v1")
        })
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// Logs method, path and status of every request — never bodies or headers.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64, "admin request");
    response
}
