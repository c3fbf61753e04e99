//! Tenants: slug rules, creation (record + CA + schema in one transaction),
//! lookup, and the issuer lookup identity resolution needs.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use thiserror::Error;
use uuid::Uuid;

use crate::db::{self, DbError};
use crate::identity::IssuerKind;
use crate::pki::{self, Ca, PkiError, Validity};
use crate::secrets::{SecretBox, SecretsError};

/// The reserved slug of the platform tenant.
pub const PLATFORM_SLUG: &str = "platform";
/// Validity of tenant CAs, in days.
pub const TENANT_CA_DAYS: u32 = 3650;

/// A tenant failure.
#[derive(Debug, Error)]
pub enum TenantError {
    /// The slug breaks the rules.
    #[error("{0}")]
    InvalidSlug(String),
    /// Another tenant has the slug.
    #[error("a tenant with slug {0:?} already exists")]
    Exists(String),
    /// No such tenant.
    #[error("no tenant {0:?}")]
    NotFound(String),
    /// Storage.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Issuing the tenant CA.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Encrypting or decrypting the CA key.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl From<sqlx::Error> for TenantError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// Checks a slug for a new tenant: lower-case letters, digits and `-`,
/// 2–63 characters, starting with a letter; `platform` is reserved.
pub fn validate_slug(slug: &str) -> Result<(), String> {
    if slug == PLATFORM_SLUG {
        return Err(format!(
            "slug {PLATFORM_SLUG:?} is reserved for the platform tenant; choose another"
        ));
    }
    if !(2..=63).contains(&slug.len()) {
        return Err(format!("slug {slug:?} must be 2 to 63 characters long"));
    }
    if !slug.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("slug {slug:?} must start with a lower-case letter"));
    }
    if let Some(bad) = slug
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "slug {slug:?} contains {bad:?}; use lower-case letters, digits and '-'"
        ));
    }
    Ok(())
}

/// A tenant record.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    /// Tenant id.
    pub id: Uuid,
    /// Slug (unique).
    pub slug: String,
    /// Display name.
    pub name: String,
    /// The platform tenant.
    pub is_platform: bool,
    /// Whether the platform sync may run this tenant's sources.
    pub allow_platform_sync: bool,
    /// Data-plane schema.
    pub schema_name: String,
    /// SHA-256 of the tenant CA's public key (none for the platform tenant).
    pub ca_spki_sha256: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// What a new tenant needs.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// Slug.
    pub slug: String,
    /// Display name (defaults to the slug).
    pub name: Option<String>,
    /// Default true.
    pub allow_platform_sync: bool,
}

fn tenant_from_row(row: &sqlx::postgres::PgRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        is_platform: row.try_get("is_platform")?,
        allow_platform_sync: row.try_get("allow_platform_sync")?,
        schema_name: row.try_get("schema_name")?,
        ca_spki_sha256: row.try_get("ca_spki_sha256")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Creates a tenant: record, CA (issued by `root`, key encrypted) and
/// schema with the tenant migrations, in one transaction.
pub async fn create(
    pool: &PgPool,
    secrets: &SecretBox,
    root: &Ca,
    new: NewTenant,
) -> Result<Tenant, TenantError> {
    validate_slug(&new.slug).map_err(TenantError::InvalidSlug)?;
    let id = Uuid::new_v4();
    let schema = db::tenant_schema_name(id);
    let ca = pki::issue_tenant_ca(root, &new.slug, Validity::days_from_now(TENANT_CA_DAYS))?;
    let key_ciphertext = secrets.seal(&ca_key_context(id), ca.key_pem().as_bytes())?;
    let not_after = pki::not_after(ca.cert_der())?;
    let name = new.name.clone().unwrap_or_else(|| new.slug.clone());

    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO platform.tenants (id, slug, name, is_platform, allow_platform_sync, schema_name) \
         VALUES ($1, $2, $3, false, $4, $5) ON CONFLICT (slug) DO NOTHING",
    )
    .bind(id)
    .bind(&new.slug)
    .bind(&name)
    .bind(new.allow_platform_sync)
    .bind(&schema)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(TenantError::Exists(new.slug));
    }
    sqlx::query(
        "INSERT INTO platform.tenant_cas (tenant_id, cert_pem, key_ciphertext, spki_sha256, not_after) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(ca.cert_pem())
    .bind(&key_ciphertext)
    .bind(ca.spki_sha256()?)
    .bind(not_after)
    .execute(&mut *tx)
    .await?;
    db::migrate_tenant_schema(&mut tx, &schema).await?;
    db::bump_generation(&mut tx).await?;
    tx.commit().await?;
    tracing::info!(tenant = %new.slug, tenant_id = %id, "tenant created");
    get(pool, &id.to_string())
        .await?
        .ok_or_else(|| TenantError::NotFound(id.to_string()))
}

/// Creates the platform tenant with a random non-nil id (bootstrap), with
/// its schema, inside `tx`.
pub async fn create_platform(tx: &mut PgConnection) -> Result<Uuid, TenantError> {
    let id = Uuid::new_v4();
    let schema = db::tenant_schema_name(id);
    sqlx::query(
        "INSERT INTO platform.tenants (id, slug, name, is_platform, allow_platform_sync, schema_name) \
         VALUES ($1, $2, 'Platform', true, true, $3)",
    )
    .bind(id)
    .bind(PLATFORM_SLUG)
    .bind(&schema)
    .execute(&mut *tx)
    .await?;
    db::migrate_tenant_schema(tx, &schema).await?;
    db::bump_generation(tx).await?;
    Ok(id)
}

/// A tenant by id or slug.
pub async fn get(pool: &PgPool, key: &str) -> Result<Option<Tenant>, TenantError> {
    let sql = format!(
        "{} {}",
        select_with_ca(),
        if Uuid::parse_str(key).is_ok() {
            "WHERE t.id = $1::uuid"
        } else {
            "WHERE t.slug = $1"
        }
    );
    let row = sqlx::query(&sql).bind(key).fetch_optional(pool).await?;
    Ok(row.as_ref().map(tenant_from_row).transpose()?)
}

/// All tenants, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Tenant>, TenantError> {
    let sql = format!("{} ORDER BY t.created_at, t.slug", select_with_ca());
    let rows = sqlx::query(&sql).fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(tenant_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Changes a tenant's settings; returns the updated tenant.
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    name: Option<String>,
    allow_platform_sync: Option<bool>,
) -> Result<Tenant, TenantError> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE platform.tenants SET name = COALESCE($2, name), \
         allow_platform_sync = COALESCE($3, allow_platform_sync), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(allow_platform_sync)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(TenantError::NotFound(id.to_string()));
    }
    db::bump_generation(&mut tx).await?;
    tx.commit().await?;
    get(pool, &id.to_string())
        .await?
        .ok_or_else(|| TenantError::NotFound(id.to_string()))
}

/// The CA of a tenant, with its decrypted key (to issue edge certificates).
pub async fn load_ca(
    pool: &PgPool,
    secrets: &SecretBox,
    tenant_id: Uuid,
) -> Result<Ca, TenantError> {
    let row = sqlx::query(
        "SELECT cert_pem, key_ciphertext FROM platform.tenant_cas WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| TenantError::NotFound(format!("CA of tenant {tenant_id}")))?;
    let cert_pem: String = row.try_get("cert_pem")?;
    let key_ciphertext: String = row.try_get("key_ciphertext")?;
    let key = secrets.open(&ca_key_context(tenant_id), &key_ciphertext)?;
    let key = String::from_utf8(key).map_err(|_| {
        TenantError::Secrets(SecretsError::Decrypt {
            context: ca_key_context(tenant_id),
        })
    })?;
    Ok(Ca::from_pem(&cert_pem, &key)?)
}

/// The tenant whose CA has this SubjectPublicKeyInfo fingerprint.
pub async fn issuer_by_spki(
    pool: &PgPool,
    spki_sha256: &str,
) -> Result<Option<IssuerKind>, TenantError> {
    let row = sqlx::query(
        "SELECT t.id, t.slug FROM platform.tenant_cas c JOIN platform.tenants t ON t.id = c.tenant_id \
         WHERE c.spki_sha256 = $1",
    )
    .bind(spki_sha256)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(row) => Some(IssuerKind::TenantCa {
            tenant_id: row.try_get("id")?,
            tenant_slug: row.try_get("slug")?,
        }),
        None => None,
    })
}

fn ca_key_context(tenant_id: Uuid) -> String {
    format!("tenant_ca:{tenant_id}:key")
}

fn select_with_ca() -> &'static str {
    "SELECT t.id, t.slug, t.name, t.is_platform, t.allow_platform_sync, t.schema_name, t.created_at, \
     (SELECT c.spki_sha256 FROM platform.tenant_cas c WHERE c.tenant_id = t.id) AS ca_spki_sha256 \
     FROM platform.tenants t"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules() {
        for good in ["acme", "a1", "acme-corp", "x-1-y"] {
            assert!(validate_slug(good).is_ok(), "{good}");
        }
        let reserved = validate_slug("platform").unwrap_err();
        assert!(reserved.contains("reserved"), "{reserved}");
        for bad in [
            "a",
            "1acme",
            "-acme",
            "Acme",
            "acme.corp",
            "acme_corp",
            "ac me",
            "",
        ] {
            assert!(validate_slug(bad).is_err(), "{bad}");
        }
        assert!(validate_slug(&"a".repeat(63)).is_ok());
        assert!(validate_slug(&"a".repeat(64)).is_err());
        assert!(validate_slug("acme.corp").unwrap_err().contains("'.'"));
    }
}
