//! `sr-gateway bootstrap`: creates a new installation, or reports the
//! existing one unchanged. Idempotent: the platform tenant id, the root CA
//! and every certificate are created once and reused on every later run.
//!
//! State directory layout (all keys mode 0600):
//! ```text
//! gateway.toml            config for `sr-gateway serve --config`
//! secrets.key             credential encryption key (AES-256)
//! root-ca.pem, .key       platform root CA
//! gateway.pem, .key       gateway server certificate (leaf + root) and key
//! platform-sync.pem, .key platform sync certificate (SPIFFE SAN) and key
//! platform-sync-ca.pem    root CA bundle for the platform sync
//! platform-sync.json      minimal sync config (SyncBootstrap, relative paths)
//! ```

use std::path::{Path, PathBuf};

use sr_proto::sync_config::SyncBootstrap;
use thiserror::Error;
use uuid::Uuid;

use crate::admin_tokens::{self, Scope};
use crate::config::{ConfigError, GatewayConfig, url_host};
use crate::db::{self, DbError};
use crate::identity::ComponentType;
use crate::pki::{self, Ca, PkiError, Validity};
use crate::secrets::{SecretBox, SecretsError, write_private_file};
use crate::sync_services::{self, PLATFORM_SYNC_COMPONENT_ID, PLATFORM_SYNC_PARTITION};
use crate::tenants::{self, PLATFORM_SLUG, TenantError};

/// Root CA validity.
pub const ROOT_CA_DAYS: u32 = 3650;
/// Gateway and platform component certificate validity.
pub const PLATFORM_CERT_DAYS: u32 = 365;
/// Serialises concurrent bootstraps of one database.
const BOOTSTRAP_LOCK: i64 = 0x5352_5f42_4f4f_5453; // "SR_BOOTS"

/// File names in the state directory.
pub mod files {
    /// Generated gateway config.
    pub const CONFIG: &str = "gateway.toml";
    /// Secrets key.
    pub const SECRETS_KEY: &str = "secrets.key";
    /// Root CA certificate.
    pub const ROOT_CA_CERT: &str = "root-ca.pem";
    /// Root CA key.
    pub const ROOT_CA_KEY: &str = "root-ca.key";
    /// Gateway certificate chain.
    pub const GATEWAY_CERT: &str = "gateway.pem";
    /// Gateway key.
    pub const GATEWAY_KEY: &str = "gateway.key";
    /// Platform sync certificate.
    pub const PLATFORM_SYNC_CERT: &str = "platform-sync.pem";
    /// Platform sync key.
    pub const PLATFORM_SYNC_KEY: &str = "platform-sync.key";
    /// Platform sync CA bundle.
    pub const PLATFORM_SYNC_CA: &str = "platform-sync-ca.pem";
    /// Platform sync bootstrap config.
    pub const PLATFORM_SYNC_CONFIG: &str = "platform-sync.json";
}

/// A bootstrap failure.
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// A state file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The state directory is half there.
    #[error("{0}")]
    Inconsistent(String),
    /// Certificates.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Secrets key.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Storage.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Tenants.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// Config rendering.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl From<sqlx::Error> for BootstrapError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// What to bootstrap.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    /// State directory (created if missing).
    pub state_dir: PathBuf,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Gateway id.
    pub gateway_id: String,
    /// Public gRPC address (`host:port` or `https://host:port`).
    pub gateway_addr: String,
    /// Public admin API URL.
    pub admin_url: String,
    /// Extra names for the gateway certificate.
    pub sans: Vec<String>,
}

impl BootstrapOptions {
    /// Defaults: gateway at `https://localhost:50052`, admin at `https://localhost:8443`.
    pub fn new(state_dir: impl Into<PathBuf>, database_url: impl Into<String>) -> Self {
        Self {
            state_dir: state_dir.into(),
            database_url: database_url.into(),
            gateway_id: "gateway".into(),
            gateway_addr: "https://localhost:50052".into(),
            admin_url: "https://localhost:8443".into(),
            sans: Vec::new(),
        }
    }
}

/// What exists after bootstrap, and what this run created.
#[derive(Debug, Clone)]
pub struct BootstrapReport {
    /// State directory.
    pub state_dir: PathBuf,
    /// Config file for `serve`.
    pub config_file: PathBuf,
    /// Platform tenant id.
    pub platform_tenant_id: Uuid,
    /// Created this run.
    pub platform_tenant_created: bool,
    /// SHA-256 of the root CA certificate.
    pub root_ca_sha256: String,
    /// Created this run.
    pub root_ca_created: bool,
    /// Created this run.
    pub secrets_key_created: bool,
    /// SHA-256 of the gateway certificate.
    pub gateway_cert_sha256: String,
    /// Created this run.
    pub gateway_cert_created: bool,
    /// SHA-256 of the platform sync certificate.
    pub platform_sync_cert_sha256: String,
    /// Created this run.
    pub platform_sync_cert_created: bool,
    /// Platform SyncService record.
    pub platform_sync_id: Uuid,
    /// Created this run.
    pub platform_sync_created: bool,
    /// Created this run.
    pub config_created: bool,
    /// The platform admin token, only when this run created it.
    pub admin_token: Option<String>,
}

/// Bootstraps (or re-checks) an installation.
pub async fn bootstrap(opts: &BootstrapOptions) -> Result<BootstrapReport, BootstrapError> {
    crate::install_crypto_provider();
    let dir = &opts.state_dir;
    create_private_dir(dir)?;
    let pool = db::connect(&opts.database_url, 2).await?;
    db::migrate_platform(&pool).await?;

    let secrets_path = dir.join(files::SECRETS_KEY);
    let secrets_key_created = !secrets_path.exists();
    if secrets_key_created {
        SecretBox::create_key_file(&secrets_path)?;
    }
    SecretBox::load(&secrets_path)?;

    let (root, root_ca_created) = root_ca(dir)?;
    let root_ca_sha256 = root.cert_sha256();

    // The database part, under a lock so concurrent bootstraps agree.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut *tx)
        .await?;
    let existing: Option<(Uuid, String)> =
        sqlx::query_as("SELECT platform_tenant_id, root_ca_sha256 FROM platform.installation")
            .fetch_optional(&mut *tx)
            .await?;
    let (platform_tenant_id, platform_tenant_created) = match existing {
        Some((id, recorded)) => {
            if recorded != root_ca_sha256 {
                return Err(BootstrapError::Inconsistent(format!(
                    "the database was bootstrapped with another root CA (sha256 {recorded}); \
                     this state directory's root CA is {root_ca_sha256}. Use the original state directory \
                     or an empty database"
                )));
            }
            (id, false)
        }
        None => {
            let taken: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM platform.tenants WHERE slug = $1)",
            )
            .bind(PLATFORM_SLUG)
            .fetch_one(&mut *tx)
            .await?;
            if taken {
                return Err(BootstrapError::Inconsistent(
                    "the database has a platform tenant but no installation record; restore the database or use an empty one".into(),
                ));
            }
            let id = tenants::create_platform(&mut tx).await?;
            sqlx::query(
                "INSERT INTO platform.installation (platform_tenant_id, root_ca_sha256) VALUES ($1, $2)",
            )
            .bind(id)
            .bind(&root_ca_sha256)
            .execute(&mut *tx)
            .await?;
            (id, true)
        }
    };
    let (platform_sync_id, platform_sync_created) =
        sync_services::ensure_platform_sync(&mut tx, platform_tenant_id).await?;
    let admin_token = if admin_tokens::platform_token_exists(&mut tx).await? {
        None
    } else {
        Some(
            admin_tokens::mint(&mut tx, Scope::PlatformAdmin, "bootstrap")
                .await?
                .token,
        )
    };
    tx.commit().await?;
    db::close_pool(&pool).await;

    let grpc_url = normalise_url(&opts.gateway_addr);
    let tls_server_name = url_host(&grpc_url).unwrap_or_else(|| "localhost".into());
    let mut names = opts.sans.clone();
    if !names.contains(&tls_server_name) {
        names.push(tls_server_name.clone());
    }
    if let Some(admin_host) = url_host(&opts.admin_url)
        && !names.contains(&admin_host)
    {
        names.push(admin_host);
    }

    let (gateway_cert_sha256, gateway_cert_created) =
        leaf_files(dir, files::GATEWAY_CERT, files::GATEWAY_KEY, || {
            let cert = pki::issue_server_cert(
                &root,
                &opts.gateway_id,
                &names,
                Validity::days_from_now(PLATFORM_CERT_DAYS),
            )?;
            Ok((format!("{}{}", cert.cert_pem, root.cert_pem()), cert))
        })?;
    let (platform_sync_cert_sha256, platform_sync_cert_created) = leaf_files(
        dir,
        files::PLATFORM_SYNC_CERT,
        files::PLATFORM_SYNC_KEY,
        || {
            let cert = pki::issue_platform_component(
                &root,
                ComponentType::Sync,
                PLATFORM_SLUG,
                PLATFORM_SYNC_PARTITION,
                PLATFORM_SYNC_COMPONENT_ID,
                Validity::days_from_now(PLATFORM_CERT_DAYS),
            )?;
            Ok((cert.cert_pem.clone(), cert))
        },
    )?;
    write_if_missing(
        &dir.join(files::PLATFORM_SYNC_CA),
        root.cert_pem().as_bytes(),
    )?;
    let sync_bootstrap = SyncBootstrap {
        component_id: PLATFORM_SYNC_COMPONENT_ID.into(),
        gateway_addr: grpc_url.clone(),
        tls_server_name: tls_server_name.clone(),
        cert_file: files::PLATFORM_SYNC_CERT.into(),
        key_file: files::PLATFORM_SYNC_KEY.into(),
        ca_file: files::PLATFORM_SYNC_CA.into(),
    };
    let sync_json = serde_json::to_vec_pretty(&sync_bootstrap).unwrap_or_default();
    write_if_missing(&dir.join(files::PLATFORM_SYNC_CONFIG), &sync_json)?;

    let config_file = dir.join(files::CONFIG);
    let config_created = !config_file.exists();
    if config_created {
        let mut config = GatewayConfig::new(opts.database_url.clone(), ".");
        config.gateway_id = opts.gateway_id.clone();
        config.public.grpc_url = Some(grpc_url);
        config.public.admin_url = Some(opts.admin_url.trim_end_matches('/').to_string());
        config.public.tls_server_name = Some(tls_server_name);
        let text = format!(
            "# Written by `sr-gateway bootstrap`; start with `sr-gateway serve --config {}`.\n{}",
            config_file.display(),
            config.to_toml()?
        );
        // The file holds the database URL (maybe with a password): owner only.
        write_private_file(&config_file, text.as_bytes()).map_err(|source| BootstrapError::Io {
            path: config_file.display().to_string(),
            source,
        })?;
    }

    Ok(BootstrapReport {
        state_dir: dir.clone(),
        config_file,
        platform_tenant_id,
        platform_tenant_created,
        root_ca_sha256,
        root_ca_created,
        secrets_key_created,
        gateway_cert_sha256,
        gateway_cert_created,
        platform_sync_cert_sha256,
        platform_sync_cert_created,
        platform_sync_id,
        platform_sync_created,
        config_created,
        admin_token,
    })
}

/// Mints a new platform-admin token directly in the database (for when the
/// bootstrap token is lost).
pub async fn mint_platform_token(database_url: &str, name: &str) -> Result<String, BootstrapError> {
    let mut conn = db::connect_one(database_url).await?;
    Ok(admin_tokens::mint(&mut conn, Scope::PlatformAdmin, name)
        .await?
        .token)
}

fn normalise_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("https://{addr}")
    }
}

fn create_private_dir(dir: &Path) -> Result<(), BootstrapError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| BootstrapError::Io {
            path: dir.display().to_string(),
            source,
        })
}

fn root_ca(dir: &Path) -> Result<(Ca, bool), BootstrapError> {
    let cert_path = dir.join(files::ROOT_CA_CERT);
    let key_path = dir.join(files::ROOT_CA_KEY);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => Ok((Ca::from_pem(&read(&cert_path)?, &read(&key_path)?)?, false)),
        (false, false) => {
            let root = pki::new_root_ca(Validity::days_from_now(ROOT_CA_DAYS))?;
            write_private(&key_path, root.key_pem().as_bytes())?;
            write_if_missing(&cert_path, root.cert_pem().as_bytes())?;
            Ok((root, true))
        }
        _ => Err(BootstrapError::Inconsistent(format!(
            "{} and {} must both exist or both be absent; restore the missing one from backup",
            cert_path.display(),
            key_path.display()
        ))),
    }
}

/// Keeps an existing certificate/key pair, or issues one. Returns the
/// leaf's SHA-256 and whether it was created.
fn leaf_files(
    dir: &Path,
    cert_name: &str,
    key_name: &str,
    issue: impl FnOnce() -> Result<(String, pki::IssuedCert), BootstrapError>,
) -> Result<(String, bool), BootstrapError> {
    let cert_path = dir.join(cert_name);
    let key_path = dir.join(key_name);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let der = pki::first_cert_der(&read(&cert_path)?, cert_name)?;
            Ok((pki::sha256_hex(&der), false))
        }
        (false, false) => {
            let (cert_pem, cert) = issue()?;
            write_private(&key_path, cert.key_pem.as_bytes())?;
            write_if_missing(&cert_path, cert_pem.as_bytes())?;
            Ok((cert.sha256(), true))
        }
        _ => Err(BootstrapError::Inconsistent(format!(
            "{} and {} must both exist or both be absent; delete the remaining one to reissue",
            cert_path.display(),
            key_path.display()
        ))),
    }
}

fn read(path: &Path) -> Result<String, BootstrapError> {
    std::fs::read_to_string(path).map_err(|source| BootstrapError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), BootstrapError> {
    write_private_file(path, contents).map_err(|source| BootstrapError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write_if_missing(path: &Path, contents: &[u8]) -> Result<(), BootstrapError> {
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, contents).map_err(|source| BootstrapError::Io {
        path: path.display().to_string(),
        source,
    })
}
