//! Edge onboarding: an operator asks for a package for a tenant component
//! (sync or agent); the gateway issues its certificate with the tenant CA,
//! records the enrolled component (and, for a sync, its SyncService, status
//! pending), stores the package encrypted and returns a one-time, expiring
//! enrollment token. `sr-sync enroll --token <t>` downloads the package once.
//!
//! The token is self-contained: base64url(JSON {v, url, ca_sha256, id,
//! secret}) — the admin API URL, the platform root CA fingerprint to pin, the
//! package id and the download secret (only its hash is stored).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use sr_proto::sync_config::SyncBootstrap;
use thiserror::Error;
use uuid::Uuid;

use crate::admin_tokens::{hash_secret, hashes_equal};
use crate::db::DbError;
use crate::identity::{ComponentType, valid_label};
use crate::integration_sources::FieldError;
use crate::pki::{self, PkiError, Validity};
use crate::secrets::{SecretBox, SecretsError};
use crate::state::PublicEndpoints;
use crate::sync_services;
use crate::tenants::{self, Tenant, TenantError};

/// Version of the enrollment token format.
pub use sr_proto::enrollment::{EnrollmentToken, TOKEN_VERSION};
/// Shortest and longest token lifetime an operator may ask for.
pub const TTL_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(30 * 24 * 3600));

/// File names inside an enrolled component's directory.
pub const CERT_FILE: &str = "cert.pem";
/// Private key file (mode 0600).
pub const KEY_FILE: &str = "key.pem";
/// Platform root CA bundle (verifies the gateway).
pub const CA_FILE: &str = "ca.pem";

/// Body of `POST /api/v1/tenants/{tenant}/onboarding-packages`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePackage {
    /// `sync` or `agent`.
    pub component_type: String,
    /// Component id (first CN label).
    pub component_id: String,
    /// Partition (default `default`).
    #[serde(default)]
    pub partition: Option<String>,
    /// Display name of the sync service (default: component id).
    #[serde(default)]
    pub name: Option<String>,
    /// Token lifetime, Go-style (default from the gateway config).
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// Answer to a package creation: the token is shown once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedPackage {
    /// Package id.
    pub package_id: Uuid,
    /// Enrollment token for `sr-sync enroll --token`.
    pub token: String,
    /// Token expiry.
    pub expires_at: DateTime<Utc>,
    /// Tenant.
    pub tenant_id: Uuid,
    /// Tenant slug.
    pub tenant_slug: String,
    /// Component id.
    pub component_id: String,
    /// `sync` or `agent`.
    pub component_type: ComponentType,
    /// Partition.
    pub partition: String,
    /// SyncService record of a sync component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_service_id: Option<Uuid>,
    /// The command to run on the edge host.
    pub enroll_command: String,
}

/// What the download returns (and the enroll command writes out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingPackage {
    /// Package id.
    pub package_id: Uuid,
    /// Tenant.
    pub tenant_id: Uuid,
    /// Tenant slug.
    pub tenant_slug: String,
    /// Component id.
    pub component_id: String,
    /// `sync` or `agent`.
    pub component_type: ComponentType,
    /// Partition.
    pub partition: String,
    /// Component certificate followed by the tenant CA (PEM).
    pub cert_pem: String,
    /// Component private key (PEM).
    pub key_pem: String,
    /// Platform root CA (PEM): verifies the gateway.
    pub ca_pem: String,
    /// Name of the config file (`sync.json` / `agent.json`).
    pub config_file: String,
    /// Minimal config: identity, gateway address, certificate paths.
    pub config: SyncBootstrap,
}

/// Body of the download request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadRequest {
    /// The secret from the enrollment token.
    pub secret: String,
}

/// An onboarding failure.
#[derive(Debug, Error)]
pub enum OnboardingError {
    /// A field is invalid (422).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The component id is enrolled with another type (409).
    #[error("{0}")]
    Conflict(String),
    /// Unknown package or wrong secret (404).
    #[error("unknown enrollment token; ask the operator for a new one")]
    NotFound,
    /// Already downloaded (410).
    #[error(
        "this enrollment token was already used at {0}; tokens work once, ask the operator for a new onboarding package"
    )]
    Used(DateTime<Utc>),
    /// Expired (410).
    #[error("this enrollment token expired at {0}; ask the operator for a new onboarding package")]
    Expired(DateTime<Utc>),
    /// Tenant problems.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// Issuing the certificate.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Encrypting the package.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Storage.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for OnboardingError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// What package creation needs from the gateway.
pub struct OnboardingContext<'a> {
    /// Database.
    pub pool: &'a PgPool,
    /// Encryption.
    pub secrets: &'a SecretBox,
    /// Platform root CA (PEM) and its DER fingerprint.
    pub root_ca_pem: &'a str,
    /// Hex SHA-256 of the root CA DER.
    pub root_ca_sha256: &'a str,
    /// Addresses written into the package and token.
    pub endpoints: &'a PublicEndpoints,
    /// Certificate validity.
    pub cert_validity_days: u32,
    /// Default token lifetime.
    pub default_ttl: Duration,
    /// Now.
    pub now: DateTime<Utc>,
}

/// Validated package request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPackageRequest {
    /// Sync or agent.
    pub component_type: ComponentType,
    /// Component id.
    pub component_id: String,
    /// Partition.
    pub partition: String,
    /// Display name.
    pub name: String,
    /// Token lifetime.
    pub ttl: Duration,
}

/// Checks a package request (pure).
pub fn validate_request(
    req: CreatePackage,
    default_ttl: Duration,
) -> Result<ValidPackageRequest, FieldError> {
    let component_type = match req.component_type.as_str() {
        "sync" => ComponentType::Sync,
        "agent" => ComponentType::Agent,
        other => {
            return Err(FieldError {
                field: "component_type".into(),
                message: format!("{other:?} cannot be onboarded; use \"sync\" or \"agent\""),
            });
        }
    };
    if !valid_label(&req.component_id) {
        return Err(FieldError {
            field: "component_id".into(),
            message: format!(
                "{:?} is not a valid component id: use 1-63 letters, digits, '-' or '_' (no dots)",
                req.component_id
            ),
        });
    }
    let partition = req
        .partition
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    if !valid_label(&partition) {
        return Err(FieldError {
            field: "partition".into(),
            message: format!(
                "{partition:?} is not a valid partition: use letters, digits, '-' or '_' (no dots)"
            ),
        });
    }
    let ttl = match req.expires_in.as_deref().filter(|s| !s.is_empty()) {
        None => default_ttl,
        Some(text) => {
            let ttl = sr_proto::duration::parse(text).map_err(|e| FieldError {
                field: "expires_in".into(),
                message: e.to_string(),
            })?;
            if ttl < TTL_BOUNDS.0 || ttl > TTL_BOUNDS.1 {
                return Err(FieldError {
                    field: "expires_in".into(),
                    message: format!("{text:?} must be between 1m and 720h"),
                });
            }
            ttl
        }
    };
    let name = req
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| req.component_id.clone());
    Ok(ValidPackageRequest {
        component_type,
        component_id: req.component_id,
        partition,
        name,
        ttl,
    })
}

/// Creates a package for a component of `tenant`.
pub async fn create(
    ctx: &OnboardingContext<'_>,
    tenant: &Tenant,
    req: CreatePackage,
) -> Result<CreatedPackage, OnboardingError> {
    let valid = validate_request(req, ctx.default_ttl)?;
    if tenant.is_platform {
        return Err(FieldError {
            field: "tenant".into(),
            message: "the platform tenant's components use platform (SPIFFE) certificates issued at bootstrap, not onboarding packages".into(),
        }
        .into());
    }
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT component_type FROM platform.components WHERE tenant_id = $1 AND component_id = $2",
    )
    .bind(tenant.id)
    .bind(&valid.component_id)
    .fetch_optional(ctx.pool)
    .await?;
    if let Some(kind) = existing
        && kind != valid.component_type.as_str()
    {
        return Err(OnboardingError::Conflict(format!(
            "component {:?} of tenant {:?} is already enrolled as {kind}; pick another component_id",
            valid.component_id, tenant.slug
        )));
    }

    let tenant_ca = tenants::load_ca(ctx.pool, ctx.secrets, tenant.id).await?;
    let cert = pki::issue_edge_component(
        &tenant_ca,
        &tenant.slug,
        &valid.partition,
        &valid.component_id,
        Validity::days_from_now(ctx.cert_validity_days),
    )?;
    let package_id = Uuid::new_v4();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let config_file = match valid.component_type {
        ComponentType::Sync => "sync.json",
        _ => "agent.json",
    };
    let package = OnboardingPackage {
        package_id,
        tenant_id: tenant.id,
        tenant_slug: tenant.slug.clone(),
        component_id: valid.component_id.clone(),
        component_type: valid.component_type,
        partition: valid.partition.clone(),
        cert_pem: format!("{}{}", cert.cert_pem, tenant_ca.cert_pem()),
        key_pem: cert.key_pem.clone(),
        ca_pem: ctx.root_ca_pem.to_string(),
        config_file: config_file.to_string(),
        config: SyncBootstrap {
            component_id: valid.component_id.clone(),
            gateway_addr: ctx.endpoints.grpc_url.clone(),
            tls_server_name: ctx.endpoints.tls_server_name.clone(),
            cert_file: CERT_FILE.into(),
            key_file: KEY_FILE.into(),
            ca_file: CA_FILE.into(),
        },
    };
    let payload = serde_json::to_vec(&package).unwrap_or_default();
    let payload_ciphertext = ctx.secrets.seal(&package_context(package_id), &payload)?;
    let expires_at = ctx.now
        + chrono::Duration::from_std(valid.ttl).unwrap_or_else(|_| chrono::Duration::hours(24));

    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "INSERT INTO platform.components (tenant_id, component_id, component_type, partition, cert_sha256) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, component_id) DO UPDATE SET \
         partition = EXCLUDED.partition, cert_sha256 = EXCLUDED.cert_sha256, created_at = now()",
    )
    .bind(tenant.id)
    .bind(&valid.component_id)
    .bind(valid.component_type.as_str())
    .bind(&valid.partition)
    .bind(cert.sha256())
    .execute(&mut *tx)
    .await?;
    let sync_service_id = match valid.component_type {
        ComponentType::Sync => Some(
            sync_services::ensure_edge_sync(
                &mut tx,
                tenant.id,
                &valid.component_id,
                &valid.name,
                &valid.partition,
            )
            .await?,
        ),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO platform.onboarding_packages (id, tenant_id, component_id, component_type, partition, \
         secret_sha256, payload_ciphertext, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(package_id)
    .bind(tenant.id)
    .bind(&valid.component_id)
    .bind(valid.component_type.as_str())
    .bind(&valid.partition)
    .bind(hash_secret(&secret))
    .bind(&payload_ciphertext)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    let token = EnrollmentToken {
        v: TOKEN_VERSION,
        url: ctx.endpoints.admin_url.clone(),
        ca_sha256: ctx.root_ca_sha256.to_string(),
        id: package_id.to_string(),
        secret,
    }
    .encode();
    tracing::info!(tenant = %tenant.slug, component_id = %valid.component_id,
        component_type = %valid.component_type, package_id = %package_id, %expires_at,
        "onboarding package created");
    let enroll_command = match valid.component_type {
        ComponentType::Sync => "sr-sync enroll --token <token> --dir <dir>".to_string(),
        _ => "sr-agent enroll --token <token> --dir <dir>".to_string(),
    };
    Ok(CreatedPackage {
        package_id,
        token,
        expires_at,
        tenant_id: tenant.id,
        tenant_slug: tenant.slug.clone(),
        component_id: valid.component_id,
        component_type: valid.component_type,
        partition: valid.partition,
        sync_service_id,
        enroll_command,
    })
}

/// Hands out a package once: checks the secret (constant time), then that
/// it was not used and has not expired; marks it used and wipes the stored
/// copy in the same transaction.
pub async fn download(
    pool: &PgPool,
    secrets: &SecretBox,
    package_id: Uuid,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<OnboardingPackage, OnboardingError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT secret_sha256, payload_ciphertext, expires_at, downloaded_at FROM platform.onboarding_packages \
         WHERE id = $1 FOR UPDATE",
    )
    .bind(package_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(OnboardingError::NotFound)?;
    let stored: String = row.try_get("secret_sha256")?;
    if !hashes_equal(&stored, &hash_secret(secret)) {
        return Err(OnboardingError::NotFound);
    }
    if let Some(at) = row.try_get::<Option<DateTime<Utc>>, _>("downloaded_at")? {
        return Err(OnboardingError::Used(at));
    }
    let expires_at: DateTime<Utc> = row.try_get("expires_at")?;
    if now >= expires_at {
        return Err(OnboardingError::Expired(expires_at));
    }
    let ciphertext: Option<String> = row.try_get("payload_ciphertext")?;
    let ciphertext = ciphertext.ok_or(OnboardingError::NotFound)?;
    let payload = secrets.open(&package_context(package_id), &ciphertext)?;
    let package: OnboardingPackage =
        serde_json::from_slice(&payload).map_err(|_| SecretsError::Decrypt {
            context: package_context(package_id),
        })?;
    sqlx::query(
        "UPDATE platform.onboarding_packages SET downloaded_at = $2, payload_ciphertext = NULL WHERE id = $1",
    )
    .bind(package_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(tenant = %package.tenant_slug, component_id = %package.component_id,
        package_id = %package_id, "onboarding package downloaded");
    Ok(package)
}

fn package_context(id: Uuid) -> String {
    format!("onboarding_package:{id}")
}

/// Records that an enrolled edge component was seen at `at` (its Hello, an
/// agent's poll). `last_seen_at` never moves back.
pub async fn record_component_seen(
    pool: &PgPool,
    tenant_id: Uuid,
    component_id: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE platform.components SET last_seen_at = GREATEST(last_seen_at, $3) \
         WHERE tenant_id = $1 AND component_id = $2",
    )
    .bind(tenant_id)
    .bind(component_id)
    .bind(at)
    .execute(pool)
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str, id: &str) -> CreatePackage {
        CreatePackage {
            component_type: kind.into(),
            component_id: id.into(),
            partition: None,
            name: None,
            expires_in: None,
        }
    }

    #[test]
    fn package_requests_are_validated() {
        let day = Duration::from_secs(86400);
        let ok = validate_request(req("sync", "edge-1"), day).unwrap();
        assert_eq!(ok.component_type, ComponentType::Sync);
        assert_eq!(ok.partition, "default");
        assert_eq!(ok.name, "edge-1");
        assert_eq!(ok.ttl, day);
        assert_eq!(
            validate_request(req("agent", "a1"), day)
                .unwrap()
                .component_type,
            ComponentType::Agent
        );
        assert_eq!(
            validate_request(req("checker", "c"), day)
                .unwrap_err()
                .field,
            "component_type"
        );
        assert_eq!(
            validate_request(req("sync", "a.b"), day).unwrap_err().field,
            "component_id"
        );
        let mut r = req("sync", "e");
        r.partition = Some("x.y".into());
        assert_eq!(validate_request(r, day).unwrap_err().field, "partition");
        let mut r = req("sync", "e");
        r.expires_in = Some("10s".into());
        assert_eq!(validate_request(r, day).unwrap_err().field, "expires_in");
        let mut r = req("sync", "e");
        r.expires_in = Some("2h".into());
        assert_eq!(
            validate_request(r, day).unwrap().ttl,
            Duration::from_secs(7200)
        );
    }
}
