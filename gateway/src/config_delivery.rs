//! Config delivery for sync services, fast when nothing changed and cheap
//! when something did:
//!
//! - Every change to tenants, sources or sync services bumps the config
//!   generation in its own transaction. A GetConfig reads the caller's
//!   SyncService record and the generation in one query; a document cached
//!   for that generation is answered as is.
//! - Otherwise the gateway lists the (id, revision) of the sources assigned
//!   to the caller, re-renders only the sources whose revision it has not
//!   rendered before (one query for their rows, decrypting their
//!   credentials), and assembles the document from the per-source
//!   fragments (`config_doc`).
//!
//! Every gateway sharing the database sees the same generation, so caches
//! never serve a stale document after a committed change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::{PgPool, Row};
use sr_proto::encoded_response::EncodedBody;
use sr_proto::sync_config::{Scope, SourceConfig};
use thiserror::Error;
use uuid::Uuid;

use crate::config_doc::{self, SourceFragment};
use crate::db::DbError;
use crate::identity::PeerIdentity;
use crate::integration_sources::{adapter_to_wire, open_credentials, queries_to_wire};
use crate::secrets::SecretBox;

/// Why no document could be delivered.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// The caller has no SyncService record.
    #[error(
        "sync service {component_id:?} of tenant {tenant_slug:?} is not registered; call Hello first"
    )]
    NotRegistered {
        /// Caller.
        component_id: String,
        /// Caller's tenant.
        tenant_slug: String,
    },
    /// Storage.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Rendering.
    #[error("rendering config document: {0}")]
    Render(#[from] serde_json::Error),
}

impl From<sqlx::Error> for DeliveryError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// A rendered source, tagged with the revision it was rendered from.
#[derive(Debug, Clone)]
struct CachedFragment {
    revision: i64,
    fragment: SourceFragment,
}

/// A rendered document as cached.
#[derive(Debug, Clone)]
pub struct CachedConfig {
    /// Config generation it was built from.
    pub generation: i64,
    /// The sync service it is for.
    pub sync_service_id: Uuid,
    /// Content hash.
    pub version: String,
    /// The canonical JSON, encoded once as the response's `config_json`.
    pub body: EncodedBody,
    /// When it was built.
    pub built_at: DateTime<Utc>,
    /// Number of sources in it.
    pub source_count: usize,
    scope: Scope,
    fragments: Arc<HashMap<Uuid, CachedFragment>>,
}

/// Documents per sync service.
#[derive(Debug, Default)]
pub struct ConfigCache {
    entries: Mutex<HashMap<Uuid, Arc<CachedConfig>>>,
}

impl ConfigCache {
    fn latest(&self, id: Uuid) -> Option<Arc<CachedConfig>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    fn put(&self, entry: Arc<CachedConfig>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // A slower builder must not replace a document of a newer generation.
        match entries.get(&entry.sync_service_id) {
            Some(existing) if existing.generation > entry.generation => {}
            _ => {
                entries.insert(entry.sync_service_id, entry);
            }
        }
    }

    /// Drops every cached document and fragment.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// The current document of the caller's sync service.
pub async fn sync_config(
    pool: &PgPool,
    secrets: &SecretBox,
    cache: &ConfigCache,
    peer: &PeerIdentity,
    now: DateTime<Utc>,
) -> Result<Arc<CachedConfig>, DeliveryError> {
    let row = sqlx::query(
        "SELECT s.id, s.is_platform_sync, (SELECT value FROM platform.config_generation) AS generation \
         FROM platform.sync_services s WHERE s.tenant_id = $1 AND s.component_id = $2",
    )
    .bind(peer.tenant_id)
    .bind(&peer.component_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| DeliveryError::NotRegistered {
        component_id: peer.component_id.clone(),
        tenant_slug: peer.tenant_slug.clone(),
    })?;
    let id: Uuid = row.try_get("id")?;
    let is_platform_sync: bool = row.try_get("is_platform_sync")?;
    let generation: i64 = row.try_get("generation")?;
    let previous = cache.latest(id);
    if let Some(hit) = previous.as_ref().filter(|c| c.generation == generation) {
        return Ok(hit.clone());
    }

    // Platform scope only for platform identities: an edge certificate
    // never receives another tenant's sources, whatever its record says.
    let scope = if is_platform_sync && peer.is_platform {
        Scope::Platform
    } else {
        Scope::Tenant
    };
    let filter = scope_filter(scope);
    let revisions: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT i.id, i.revision FROM platform.integration_sources i \
         JOIN platform.tenants t ON t.id = i.tenant_id \
         WHERE i.sync_service_id = $1 AND i.enabled AND ($2::uuid IS NOT NULL) AND {filter}"
    ))
    .bind(id)
    .bind(peer.tenant_id)
    .fetch_all(pool)
    .await?;

    let known = previous
        .filter(|p| p.scope == scope)
        .map(|p| p.fragments.clone())
        .unwrap_or_default();
    let mut fragments: HashMap<Uuid, CachedFragment> = HashMap::with_capacity(revisions.len());
    let mut stale: Vec<Uuid> = Vec::new();
    for (source_id, revision) in &revisions {
        match known.get(source_id) {
            Some(cached) if cached.revision == *revision => {
                fragments.insert(*source_id, cached.clone());
            }
            _ => stale.push(*source_id),
        }
    }
    let rendered = stale.len();
    if !stale.is_empty() {
        // Mostly stale (a cold cache): read the whole assignment in one scan
        // rather than looking up thousands of ids.
        let selection = if stale.len() * 2 > revisions.len() {
            Selection::Assigned {
                scope,
                tenant_id: peer.tenant_id,
            }
        } else {
            Selection::Ids(&stale)
        };
        render_sources(pool, secrets, id, scope, selection, &mut fragments).await?;
    }
    let document = config_doc::assemble(
        &id.to_string(),
        &peer.component_id,
        scope,
        fragments.values().map(|f| &f.fragment),
    )?;
    let entry = Arc::new(CachedConfig {
        generation,
        sync_service_id: id,
        version: document.version,
        body: EncodedBody::new(document.json.to_vec(), None),
        built_at: now,
        source_count: fragments.len(),
        scope,
        fragments: Arc::new(fragments),
    });
    cache.put(entry.clone());
    tracing::debug!(sync_service_id = %id, generation, sources = entry.source_count, rendered,
        version = %entry.version, "config document built");
    Ok(entry)
}

fn scope_filter(scope: Scope) -> &'static str {
    match scope {
        Scope::Platform => "t.allow_platform_sync",
        Scope::Tenant => "i.tenant_id = $2",
    }
}

/// Which sources to (re-)render.
enum Selection<'a> {
    /// These ids.
    Ids(&'a [Uuid]),
    /// Every enabled source assigned to the sync service, in scope.
    Assigned { scope: Scope, tenant_id: Uuid },
}

/// Renders the selected sources (wire form, decrypted credentials) into
/// `fragments`, streaming rows so decoding overlaps the query. A source
/// whose credentials cannot be decrypted is left out (and logged): one
/// unreadable source must not stop every tenant's config.
async fn render_sources(
    pool: &PgPool,
    secrets: &SecretBox,
    sync_service_id: Uuid,
    scope: Scope,
    selection: Selection<'_>,
    fragments: &mut HashMap<Uuid, CachedFragment>,
) -> Result<(), DeliveryError> {
    const COLUMNS: &str = "SELECT i.id, i.revision, i.name, i.source_type, i.endpoint, \
         i.credentials_ciphertext, i.queries, i.poll_interval, i.discovery_interval, i.sweep_interval, \
         i.partition, i.agent_id, i.network_blacklist, i.page_size, i.settings, i.adapter, i.tenant_id, t.slug \
         FROM platform.integration_sources i JOIN platform.tenants t ON t.id = i.tenant_id";
    let sql;
    let query = match selection {
        Selection::Ids(ids) => {
            sql = format!("{COLUMNS} WHERE i.sync_service_id = $1 AND i.id = ANY($2)");
            sqlx::query(&sql).bind(sync_service_id).bind(ids)
        }
        Selection::Assigned { scope, tenant_id } => {
            sql = format!(
                "{COLUMNS} WHERE i.sync_service_id = $1 AND i.enabled AND ($2::uuid IS NOT NULL) AND {}",
                scope_filter(scope)
            );
            sqlx::query(&sql).bind(sync_service_id).bind(tenant_id)
        }
    };
    let mut rows = query.fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let id: Uuid = row.try_get("id")?;
        let tenant_slug: String = row.try_get("slug")?;
        let ciphertext: Option<String> = row.try_get("credentials_ciphertext")?;
        let credentials = match open_credentials(secrets, id, ciphertext.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                fragments.remove(&id);
                tracing::error!(tenant = %tenant_slug, integration_id = %id, error = %e,
                    "integration source left out of config: credentials cannot be decrypted");
                continue;
            }
        };
        let tenant: Uuid = row.try_get("tenant_id")?;
        let source = SourceConfig {
            id: id.to_string(),
            name: row.try_get("name")?,
            source_type: row.try_get("source_type")?,
            endpoint: row.try_get("endpoint")?,
            credentials,
            queries: queries_to_wire(
                serde_json::from_value(row.try_get("queries")?).unwrap_or_default(),
            ),
            poll_interval: parse_interval(row.try_get("poll_interval")?),
            discovery_interval: parse_interval(row.try_get("discovery_interval")?),
            sweep_interval: parse_interval(row.try_get("sweep_interval")?),
            agent_id: row.try_get("agent_id")?,
            partition: row.try_get("partition")?,
            network_blacklist: row.try_get("network_blacklist")?,
            page_size: row
                .try_get::<Option<i32>, _>("page_size")?
                .and_then(|p| u32::try_from(p).ok()),
            tenant_id: tenant.to_string(),
            tenant_slug,
            sync_service_id: sync_service_id.to_string(),
            adapter: adapter_to_wire(row.try_get("adapter")?),
            settings: match row.try_get::<Value, _>("settings")? {
                Value::Object(m) => m,
                _ => Map::new(),
            },
        };
        let revision: i64 = row.try_get("revision")?;
        let fragment = config_doc::render_source(scope, source)?;
        fragments.insert(id, CachedFragment { revision, fragment });
    }
    Ok(())
}

fn parse_interval(stored: Option<String>) -> Option<std::time::Duration> {
    stored.and_then(|s| sr_proto::duration::parse(&s).ok())
}
