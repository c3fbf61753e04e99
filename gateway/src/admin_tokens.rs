//! Admin API bearer tokens: `sra_<id>_<secret>`. Only the SHA-256 of the
//! secret is stored; verification looks the token up by id and compares the
//! hash in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::db::DbError;

const PREFIX: &str = "sra_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    PlatformAdmin,
    /// One tenant's resources.
    TenantAdmin(Uuid),
}

impl Scope {
    /// `platform-admin` or `tenant-admin`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PlatformAdmin => "platform-admin",
            Self::TenantAdmin(_) => "tenant-admin",
        }
    }
}

/// A freshly minted token; `token` is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct MintedToken {
    /// Token id.
    pub id: Uuid,
    /// The bearer token.
    pub token: String,
    /// `platform-admin` or `tenant-admin`.
    pub scope: &'static str,
    /// Tenant of a tenant-admin token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Uuid>,
    /// Label.
    pub name: String,
}

/// Mints a token inside `conn` (a transaction or a plain connection).
pub async fn mint(
    conn: &mut PgConnection,
    scope: Scope,
    name: &str,
) -> Result<MintedToken, DbError> {
    let id = Uuid::new_v4();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let tenant_id = match scope {
        Scope::PlatformAdmin => None,
        Scope::TenantAdmin(t) => Some(t),
    };
    sqlx::query(
        "INSERT INTO platform.admin_tokens (id, token_sha256, scope, tenant_id, name) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(hash_secret(&secret))
    .bind(scope.name())
    .bind(tenant_id)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(MintedToken {
        id,
        token: format!("{PREFIX}{}_{secret}", id.simple()),
        scope: scope.name(),
        tenant_id,
        name: name.to_string(),
    })
}

/// The scope of a bearer token, or None when it is unknown, revoked or wrong.
pub async fn verify(pool: &PgPool, token: &str) -> Result<Option<Scope>, DbError> {
    let Some((id, secret)) = split(token) else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT token_sha256, scope, tenant_id FROM platform.admin_tokens WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stored: String = row.try_get("token_sha256")?;
    if !hashes_equal(&stored, &hash_secret(secret)) {
        return Ok(None);
    }
    let scope: String = row.try_get("scope")?;
    let tenant: Option<Uuid> = row.try_get("tenant_id")?;
    Ok(match (scope.as_str(), tenant) {
        ("platform-admin", None) => Some(Scope::PlatformAdmin),
        ("tenant-admin", Some(t)) => Some(Scope::TenantAdmin(t)),
        _ => None,
    })
}

/// Whether any live platform-admin token exists.
pub async fn platform_token_exists(conn: &mut PgConnection) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.admin_tokens WHERE scope = 'platform-admin' AND revoked_at IS NULL)",
    )
    .fetch_one(conn)
    .await?)
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time comparison of two hex hashes.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn split(token: &str) -> Option<(Uuid, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id = Uuid::try_parse(id).ok()?;
    (!secret.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape_is_parsed_strictly() {
        let id = Uuid::new_v4();
        let token = format!("sra_{}_abc_def", id.simple());
        assert_eq!(split(&token), Some((id, "abc_def")));
        assert_eq!(split("sra_nothex_abc"), None);
        assert_eq!(split(&format!("sra_{}_", id.simple())), None);
        assert_eq!(split("Bearer x"), None);
    }

    #[test]
    fn hash_comparison() {
        let h = hash_secret("s");
        assert!(hashes_equal(&h, &hash_secret("s")));
        assert!(!hashes_equal(&h, &hash_secret("t")));
        assert!(!hashes_equal(&h, "short"));
    }
}
