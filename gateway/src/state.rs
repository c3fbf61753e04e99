//! The runtime context shared by the gRPC service and the admin API.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use thiserror::Error;

use crate::clock::Clock;
use crate::config::GatewayConfig;
use crate::config_delivery::ConfigCache;
use crate::db::DbError;
use crate::identity::{self, CertError, CertificateIdentity, IssuerKind, PlatformTenant};
use crate::integration_sources::known_source_types;
use crate::pki::{Ca, PkiError};
use crate::secrets::{SecretBox, SecretsError};
use crate::tenants::{self, TenantError};

/// The addresses clients are told to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicEndpoints {
    /// gRPC, `https://host:port`.
    pub grpc_url: String,
    /// Admin API base URL.
    pub admin_url: String,
    /// Name clients verify the gateway certificate against.
    pub tls_server_name: String,
}

/// Why the gateway cannot start with this state.
#[derive(Debug, Error)]
pub enum StateError {
    /// A state file is missing or unreadable.
    #[error("reading {path}: {source}; run `sr-gateway bootstrap --state <dir>` first")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The root CA files are unusable.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The secrets key is unusable.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Storage.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The database was never bootstrapped.
    #[error(
        "the database has no installation record; run `sr-gateway bootstrap --state <dir>` first"
    )]
    NotBootstrapped,
    /// State dir and database belong to different installations.
    #[error(
        "the database was bootstrapped with another root CA (sha256 {database}) than the state directory's ({state}); point the gateway at the state directory of this database"
    )]
    WrongRoot {
        /// Fingerprint recorded in the database.
        database: String,
        /// Fingerprint of the state directory's root CA.
        state: String,
    },
}

impl From<sqlx::Error> for StateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// Everything a request handler needs.
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// The config the gateway runs with.
    pub config: GatewayConfig,
    /// Encryption at rest.
    pub secrets: SecretBox,
    /// The platform root CA (issues tenant CAs).
    pub root_ca: Ca,
    /// SHA-256 of the root CA's public key.
    pub root_spki_sha256: String,
    /// The platform tenant.
    pub platform: PlatformTenant,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// What clients are told.
    pub endpoints: PublicEndpoints,
    /// Accepted integration source types.
    pub known_source_types: BTreeSet<String>,
    /// Config documents per sync service.
    pub config_cache: ConfigCache,
    /// Sweep configs per (tenant, agent).
    pub sweep_cache: crate::sweep_delivery::SweepCache,
    /// Tenant CA fingerprint → tenant (tenant CAs never change).
    issuers: RwLock<HashMap<String, IssuerKind>>,
    /// Parsed peer chains by chain digest (parsing and signature checks are
    /// pure, so their result can be reused; validity is re-checked per call).
    identities: Mutex<HashMap<[u8; 32], CertificateIdentity>>,
}

/// Most parsed chains kept; the cache starts over when full.
const IDENTITY_CACHE_LIMIT: usize = 10_000;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("gateway_id", &self.config.gateway_id)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Loads the state directory's keys and checks the database belongs to
    /// the same installation.
    pub async fn load(
        config: GatewayConfig,
        pool: PgPool,
        clock: Arc<dyn Clock>,
        endpoints: PublicEndpoints,
    ) -> Result<Self, StateError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| StateError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let root_cert = read(&config.state_file(&config.files.root_ca_cert))?;
        let root_key = read(&config.state_file(&config.files.root_ca_key))?;
        let root_ca = Ca::from_pem(&root_cert, &root_key)?;
        let secrets = SecretBox::load(&config.state_file(&config.files.secrets_key))?;

        let row = sqlx::query(
            "SELECT i.platform_tenant_id, i.root_ca_sha256, t.slug FROM platform.installation i \
             JOIN platform.tenants t ON t.id = i.platform_tenant_id",
        )
        .fetch_optional(&pool)
        .await?
        .ok_or(StateError::NotBootstrapped)?;
        let database_root: String = row.try_get("root_ca_sha256")?;
        if database_root != root_ca.cert_sha256() {
            return Err(StateError::WrongRoot {
                database: database_root,
                state: root_ca.cert_sha256(),
            });
        }
        let platform = PlatformTenant {
            id: row.try_get("platform_tenant_id")?,
            slug: row.try_get("slug")?,
        };
        Ok(Self {
            pool,
            known_source_types: known_source_types(&config.known_source_types),
            config,
            secrets,
            root_spki_sha256: root_ca.spki_sha256()?,
            root_ca,
            platform,
            clock,
            endpoints,
            config_cache: ConfigCache::default(),
            sweep_cache: crate::sweep_delivery::SweepCache::default(),
            issuers: RwLock::new(HashMap::new()),
            identities: Mutex::new(HashMap::new()),
        })
    }

    /// Parses a peer chain ([`identity::parse_peer_chain`] with the root CA
    /// as anchor), reusing an earlier parse of the same chain.
    pub fn parse_chain(&self, chain: &[&[u8]], now: i64) -> Result<CertificateIdentity, CertError> {
        let mut hasher = Sha256::new();
        for der in chain {
            hasher.update((der.len() as u64).to_be_bytes());
            hasher.update(der);
        }
        let key: [u8; 32] = hasher.finalize().into();
        let cached = self
            .identities
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(id) = cached {
            id.check_validity(now)?;
            return Ok(id);
        }
        let id = identity::parse_peer_chain(chain, &[self.root_ca.cert_der()], now)?;
        let mut identities = self.identities.lock().unwrap_or_else(|e| e.into_inner());
        if identities.len() >= IDENTITY_CACHE_LIMIT {
            identities.clear();
        }
        identities.insert(key, id.clone());
        Ok(id)
    }

    /// What issued a certificate, by the issuer's public key fingerprint.
    pub async fn issuer(&self, spki_sha256: &str) -> Result<Option<IssuerKind>, TenantError> {
        if spki_sha256 == self.root_spki_sha256 {
            return Ok(Some(IssuerKind::PlatformRoot));
        }
        if let Some(found) = self
            .issuers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(spki_sha256)
        {
            return Ok(Some(found.clone()));
        }
        let found = tenants::issuer_by_spki(&self.pool, spki_sha256).await?;
        if let Some(found) = &found {
            self.issuers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(spki_sha256.to_string(), found.clone());
        }
        Ok(found)
    }
}
