//! Who is calling the admin API: the scope of the bearer token.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use uuid::Uuid;

use super::problem::Problem;
use crate::admin_tokens::{self, Scope};
use crate::state::AppState;
use crate::tenants::{self, Tenant};

/// The authenticated caller of an admin request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal(pub Scope);

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                Problem::unauthorized("send an admin token as `Authorization: Bearer <token>`")
            })?
            .to_str()
            .map_err(|_| Problem::unauthorized("the Authorization header is not text"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        match admin_tokens::verify(&state.pool, token.trim()).await? {
            Some(scope) => Ok(Self(scope)),
            None => Err(Problem::unauthorized(
                "the admin token is unknown or revoked; mint a new one",
            )),
        }
    }
}

impl Principal {
    /// Only platform admins pass.
    pub fn require_platform(&self) -> Result<(), Problem> {
        match self.0 {
            Scope::PlatformAdmin => Ok(()),
            Scope::TenantAdmin(_) => Err(Problem::forbidden(
                "this needs a platform-admin token; tenant-admin tokens manage their own tenant only",
            )),
        }
    }

    /// Whether the caller may manage `tenant_id`.
    pub fn may_access(&self, tenant_id: Uuid) -> bool {
        match self.0 {
            Scope::PlatformAdmin => true,
            Scope::TenantAdmin(own) => own == tenant_id,
        }
    }
}

/// Resolves the `{tenant}` path segment (id or slug) and checks the caller
/// may manage it. A tenant admin gets 403 for any other tenant, existing or
/// not, so tokens learn nothing about other tenants.
pub async fn tenant_for(
    state: &AppState,
    principal: &Principal,
    key: &str,
) -> Result<Tenant, Problem> {
    let tenant = tenants::get(&state.pool, key).await?;
    match (tenant, principal.0) {
        (Some(t), _) if principal.may_access(t.id) => Ok(t),
        (_, Scope::TenantAdmin(_)) => Err(Problem::forbidden(format!(
            "this token may not manage tenant {key:?}; tenant-admin tokens manage their own tenant only"
        ))),
        (_, Scope::PlatformAdmin) => Err(Problem::not_found(format!("no tenant {key:?}"))),
    }
}
