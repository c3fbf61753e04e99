//! Integration sources: validation (a pure function producing errors that
//! name the field), storage with credentials encrypted at rest, sync service
//! assignment rules, listings that never carry credentials, and the run
//! bookkeeping fed by run reports.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgPool, Row};
use sr_proto::run_report::{RunPhase, RunReport};
use sr_proto::sync_config::{AdapterPin, QueryConfig};
use thiserror::Error;
use uuid::Uuid;

use crate::db::{self, DbError};
use crate::secrets::{SecretBox, SecretsError};
use crate::sync_services::{SyncStatus, compute_status};
use crate::tenants::Tenant;

/// First-party source types.
pub const BUILTIN_SOURCE_TYPES: [&str; 3] = ["armis", "netbox", "faker"];
/// Source types that generate data and need no endpoint.
pub const GENERATOR_SOURCE_TYPES: [&str; 1] = ["faker"];

/// A problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, as a JSON path (`queries[1].label`).
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A source failure.
#[derive(Debug, Error)]
pub enum SourceError {
    /// A field is invalid (422).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// No sync service can run the tenant's sources (409).
    #[error("{0}")]
    NoSyncService(String),
    /// A source with that name exists (409).
    #[error("an integration source named {0:?} already exists in this tenant")]
    NameTaken(String),
    /// No such source (404).
    #[error("no integration source {0}")]
    NotFound(Uuid),
    /// Storage.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Encryption.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl From<sqlx::Error> for SourceError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// A query as the admin API accepts it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueryInput {
    /// Label stamped on devices it finds.
    pub label: String,
    /// The query text.
    pub query: String,
    /// Sweep modes for its devices.
    #[serde(default)]
    pub sweep_modes: Vec<String>,
}

/// Body of `POST .../integration-sources`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    /// Unique within the tenant.
    pub name: String,
    /// Source type.
    #[serde(rename = "type")]
    pub source_type: String,
    /// Base URL (not needed by generators).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Credentials object (encrypted at rest, never returned).
    #[serde(default)]
    pub credentials: Option<Map<String, Value>>,
    /// Labelled queries.
    #[serde(default)]
    pub queries: Option<Vec<QueryInput>>,
    /// Go-style duration.
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// Go-style duration.
    #[serde(default)]
    pub discovery_interval: Option<String>,
    /// Go-style duration.
    #[serde(default)]
    pub sweep_interval: Option<String>,
    /// Device partition (default `default`).
    #[serde(default)]
    pub partition: Option<String>,
    /// Agent assigned to monitor the devices.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// CIDRs whose devices are dropped.
    #[serde(default)]
    pub network_blacklist: Option<Vec<String>>,
    /// Adapter page size.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Adapter settings.
    #[serde(default)]
    pub settings: Option<Map<String, Value>>,
    /// Pinned adapter.
    #[serde(default)]
    pub adapter: Option<AdapterPinInput>,
    /// Sync service to run it (default: the only one available).
    #[serde(default)]
    pub sync_service_id: Option<Uuid>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Body of `PATCH .../integration-sources/{id}`: absent fields keep their
/// value; `"credentials": null` removes the credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSource {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New type.
    #[serde(default, rename = "type")]
    pub source_type: Option<String>,
    /// New endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Absent: keep; null: remove; object: replace.
    #[serde(default, deserialize_with = "double_option")]
    pub credentials: Option<Option<Map<String, Value>>>,
    /// New queries.
    #[serde(default)]
    pub queries: Option<Vec<QueryInput>>,
    /// New interval (empty string clears).
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// New interval (empty string clears).
    #[serde(default)]
    pub discovery_interval: Option<String>,
    /// New interval (empty string clears).
    #[serde(default)]
    pub sweep_interval: Option<String>,
    /// New partition.
    #[serde(default)]
    pub partition: Option<String>,
    /// New agent id.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// New blacklist.
    #[serde(default)]
    pub network_blacklist: Option<Vec<String>>,
    /// New page size.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// New settings.
    #[serde(default)]
    pub settings: Option<Map<String, Value>>,
    /// New adapter pin.
    #[serde(default)]
    pub adapter: Option<AdapterPinInput>,
    /// New sync service.
    #[serde(default)]
    pub sync_service_id: Option<Uuid>,
    /// Enable / disable.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// An adapter pin as the admin API accepts it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdapterPinInput {
    /// Adapter name.
    pub name: String,
    /// Exact version.
    #[serde(default)]
    pub version: Option<String>,
    /// `sha256:<hex>`.
    #[serde(default)]
    pub digest: Option<String>,
}

fn double_option<'de, D>(d: D) -> Result<Option<Option<Map<String, Value>>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<Map<String, Value>>::deserialize(d).map(Some)
}

/// A complete source definition before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceDraft {
    /// Name.
    pub name: String,
    /// Type.
    pub source_type: String,
    /// Endpoint ('' = none).
    pub endpoint: String,
    /// Credentials.
    pub credentials: Option<Map<String, Value>>,
    /// Queries.
    pub queries: Vec<QueryInput>,
    /// Raw interval strings.
    pub poll_interval: Option<String>,
    /// Raw interval strings.
    pub discovery_interval: Option<String>,
    /// Raw interval strings.
    pub sweep_interval: Option<String>,
    /// Partition.
    pub partition: String,
    /// Agent id ('' = none).
    pub agent_id: String,
    /// Raw CIDRs.
    pub network_blacklist: Vec<String>,
    /// Page size.
    pub page_size: Option<u32>,
    /// Settings.
    pub settings: Map<String, Value>,
    /// Adapter pin.
    pub adapter: Option<AdapterPinInput>,
    /// Enabled.
    pub enabled: bool,
}

impl From<CreateSource> for SourceDraft {
    fn from(c: CreateSource) -> Self {
        Self {
            name: c.name,
            source_type: c.source_type,
            endpoint: c.endpoint.unwrap_or_default(),
            credentials: c.credentials,
            queries: c.queries.unwrap_or_default(),
            poll_interval: c.poll_interval,
            discovery_interval: c.discovery_interval,
            sweep_interval: c.sweep_interval,
            partition: c
                .partition
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "default".into()),
            agent_id: c.agent_id.unwrap_or_default(),
            network_blacklist: c.network_blacklist.unwrap_or_default(),
            page_size: c.page_size,
            settings: c.settings.unwrap_or_default(),
            adapter: c.adapter,
            enabled: c.enabled.unwrap_or(true),
        }
    }
}

impl SourceDraft {
    /// Applies a PATCH body.
    pub fn apply(mut self, u: UpdateSource) -> Self {
        fn interval(current: Option<String>, new: Option<String>) -> Option<String> {
            match new {
                None => current,
                Some(s) if s.is_empty() => None,
                Some(s) => Some(s),
            }
        }
        if let Some(v) = u.name {
            self.name = v;
        }
        if let Some(v) = u.source_type {
            self.source_type = v;
        }
        if let Some(v) = u.endpoint {
            self.endpoint = v;
        }
        if let Some(v) = u.credentials {
            self.credentials = v;
        }
        if let Some(v) = u.queries {
            self.queries = v;
        }
        self.poll_interval = interval(self.poll_interval, u.poll_interval);
        self.discovery_interval = interval(self.discovery_interval, u.discovery_interval);
        self.sweep_interval = interval(self.sweep_interval, u.sweep_interval);
        if let Some(v) = u.partition {
            self.partition = if v.is_empty() { "default".into() } else { v };
        }
        if let Some(v) = u.agent_id {
            self.agent_id = v;
        }
        if let Some(v) = u.network_blacklist {
            self.network_blacklist = v;
        }
        if u.page_size.is_some() {
            self.page_size = u.page_size;
        }
        if let Some(v) = u.settings {
            self.settings = v;
        }
        if u.adapter.is_some() {
            self.adapter = u.adapter;
        }
        if let Some(v) = u.enabled {
            self.enabled = v;
        }
        self
    }
}

/// A source that passed validation, in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSource {
    /// Name.
    pub name: String,
    /// Type.
    pub source_type: String,
    /// Endpoint ('' for generators without one).
    pub endpoint: String,
    /// Credentials.
    pub credentials: Option<Map<String, Value>>,
    /// Queries.
    pub queries: Vec<QueryInput>,
    /// Canonical Go-style strings.
    pub poll_interval: Option<String>,
    /// Canonical Go-style strings.
    pub discovery_interval: Option<String>,
    /// Canonical Go-style strings.
    pub sweep_interval: Option<String>,
    /// Partition.
    pub partition: String,
    /// Agent id.
    pub agent_id: String,
    /// Canonical CIDRs.
    pub network_blacklist: Vec<String>,
    /// Page size.
    pub page_size: Option<u32>,
    /// Settings.
    pub settings: Map<String, Value>,
    /// Adapter pin.
    pub adapter: Option<AdapterPinInput>,
    /// Enabled.
    pub enabled: bool,
}

/// Source types the gateway accepts: the first-party ones plus those of
/// installed adapters the config names.
pub fn known_source_types(extra: &[String]) -> BTreeSet<String> {
    BUILTIN_SOURCE_TYPES
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
        .collect()
}

/// Validates a draft; the first problem found is returned, naming its field.
pub fn validate(
    draft: SourceDraft,
    known_types: &BTreeSet<String>,
) -> Result<ValidSource, FieldError> {
    if !valid_name(&draft.name) {
        return Err(FieldError::new(
            "name",
            format!(
                "{:?} is not a valid name: use 1-63 letters, digits, '-' or '_', starting with a letter or digit",
                draft.name
            ),
        ));
    }
    if !known_types.contains(&draft.source_type) {
        let known: Vec<&str> = known_types.iter().map(String::as_str).collect();
        return Err(FieldError::new(
            "type",
            format!(
                "unknown source type {:?}; known types: {} (add an installed adapter's type to known_source_types in the gateway config)",
                draft.source_type,
                known.join(", ")
            ),
        ));
    }
    let generator = GENERATOR_SOURCE_TYPES.contains(&draft.source_type.as_str());
    let endpoint = draft.endpoint.trim().to_string();
    if endpoint.is_empty() {
        if !generator {
            return Err(FieldError::new(
                "endpoint",
                format!(
                    "a {} source needs an endpoint, e.g. \"https://api.example.com\"",
                    draft.source_type
                ),
            ));
        }
    } else {
        validate_url(&endpoint).map_err(|m| FieldError::new("endpoint", m))?;
    }
    if let Some(credentials) = &draft.credentials
        && credentials.keys().any(|k| k.trim().is_empty())
    {
        return Err(FieldError::new(
            "credentials",
            "credential names must not be empty",
        ));
    }
    let mut labels = HashSet::new();
    for (i, q) in draft.queries.iter().enumerate() {
        if q.label.trim().is_empty() {
            return Err(FieldError::new(
                format!("queries[{i}].label"),
                "must not be empty",
            ));
        }
        if !labels.insert(q.label.as_str()) {
            return Err(FieldError::new(
                format!("queries[{i}].label"),
                format!("label {:?} is used twice; labels must be unique", q.label),
            ));
        }
        if q.query.trim().is_empty() {
            return Err(FieldError::new(
                format!("queries[{i}].query"),
                "must not be empty",
            ));
        }
        for (j, mode) in q.sweep_modes.iter().enumerate() {
            if mode.trim().is_empty() {
                return Err(FieldError::new(
                    format!("queries[{i}].sweep_modes[{j}]"),
                    "must not be empty",
                ));
            }
        }
    }
    let poll_interval = interval("poll_interval", &draft.poll_interval)?;
    let discovery_interval = interval("discovery_interval", &draft.discovery_interval)?;
    let sweep_interval = interval("sweep_interval", &draft.sweep_interval)?;
    if !crate::identity::valid_label(&draft.partition) {
        return Err(FieldError::new(
            "partition",
            format!(
                "{:?} is not a valid partition: use letters, digits, '-' or '_' (no dots)",
                draft.partition
            ),
        ));
    }
    if !draft.agent_id.is_empty() && !crate::identity::valid_label(&draft.agent_id) {
        return Err(FieldError::new(
            "agent_id",
            format!(
                "{:?} is not a valid agent id: use letters, digits, '-' or '_' (no dots)",
                draft.agent_id
            ),
        ));
    }
    let mut network_blacklist = Vec::with_capacity(draft.network_blacklist.len());
    for (i, cidr) in draft.network_blacklist.iter().enumerate() {
        let net: IpNet = cidr.trim().parse().map_err(|_| {
            FieldError::new(
                format!("network_blacklist[{i}]"),
                format!("{cidr:?} is not a CIDR; write e.g. \"10.0.0.0/8\" or \"fd00::/8\""),
            )
        })?;
        network_blacklist.push(net.trunc().to_string());
    }
    if let Some(size) = draft.page_size
        && !(1..=10_000).contains(&size)
    {
        return Err(FieldError::new("page_size", "must be between 1 and 10000"));
    }
    if let Some(pin) = &draft.adapter {
        if pin.name.trim().is_empty() {
            return Err(FieldError::new("adapter.name", "must not be empty"));
        }
        if let Some(version) = &pin.version
            && semver_like(version).is_none()
        {
            return Err(FieldError::new(
                "adapter.version",
                format!("{version:?} is not a version like \"1.2.3\""),
            ));
        }
        if let Some(digest) = &pin.digest {
            let ok = digest
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                return Err(FieldError::new(
                    "adapter.digest",
                    format!("{digest:?} is not \"sha256:<64 hex digits>\""),
                ));
            }
        }
    }
    Ok(ValidSource {
        name: draft.name,
        source_type: draft.source_type,
        endpoint,
        credentials: draft.credentials,
        queries: draft.queries,
        poll_interval,
        discovery_interval,
        sweep_interval,
        partition: draft.partition,
        agent_id: draft.agent_id,
        network_blacklist,
        page_size: draft.page_size,
        settings: draft.settings,
        adapter: draft.adapter,
        enabled: draft.enabled,
    })
}

fn valid_name(name: &str) -> bool {
    crate::identity::valid_label(name) && name.starts_with(|c: char| c.is_ascii_alphanumeric())
}

fn validate_url(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint.parse().map_err(|_| {
        format!("{endpoint:?} is not a URL; write e.g. \"https://api.example.com\"")
    })?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{endpoint:?} must start with https:// or http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} has no host"));
    }
    Ok(())
}

fn semver_like(v: &str) -> Option<()> {
    let core = v.split(['-', '+']).next()?;
    let parts: Vec<&str> = core.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    .then_some(())
}

fn interval(field: &'static str, raw: &Option<String>) -> Result<Option<String>, FieldError> {
    let Some(text) = raw.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let d = sr_proto::duration::parse(text).map_err(|e| FieldError::new(field, e.to_string()))?;
    if d < Duration::from_secs(1) {
        return Err(FieldError::new(
            field,
            format!("{text:?} is shorter than 1s"),
        ));
    }
    Ok(Some(sr_proto::duration::format(d)))
}

/// The sync service a new or changed source is assigned to, after checking
/// it is available to the tenant.
pub async fn resolve_sync_service(
    pool: &PgPool,
    tenant: &Tenant,
    requested: Option<Uuid>,
) -> Result<Uuid, SourceError> {
    // (id, tenant_id, is_platform_sync) of every sync service the tenant may use.
    let rows = sqlx::query(
        "SELECT id, tenant_id, is_platform_sync, name FROM platform.sync_services \
         WHERE tenant_id = $1 OR (is_platform_sync AND $2) ORDER BY is_platform_sync DESC, created_at",
    )
    .bind(tenant.id)
    .bind(tenant.allow_platform_sync)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Err(SourceError::NoSyncService(no_sync_service_message(tenant)));
    }
    let available: Vec<(Uuid, bool, String)> = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("is_platform_sync")?,
                r.try_get("name")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    match requested {
        Some(id) => {
            if available.iter().any(|(a, _, _)| *a == id) {
                return Ok(id);
            }
            let platform: Option<bool> = sqlx::query_scalar(
                "SELECT is_platform_sync FROM platform.sync_services WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let message = match platform {
                Some(true) => format!(
                    "tenant {:?} does not allow the platform sync; pick one of its own sync services or allow it with PATCH /api/v1/tenants/{} {{\"allow_platform_sync\": true}}",
                    tenant.slug, tenant.slug
                ),
                _ => format!(
                    "sync service {id} is not available to tenant {:?}: use the platform sync or one of the tenant's own (GET /api/v1/tenants/{}/sync-services)",
                    tenant.slug, tenant.slug
                ),
            };
            Err(FieldError::new("sync_service_id", message).into())
        }
        None => {
            let platform = available.iter().find(|(_, p, _)| *p);
            let own: Vec<_> = available.iter().filter(|(_, p, _)| !*p).collect();
            match (platform, own.as_slice()) {
                (Some((id, _, _)), _) => Ok(*id),
                (None, [only]) => Ok(only.0),
                _ => Err(FieldError::new(
                    "sync_service_id",
                    format!(
                        "required: tenant {:?} has {} sync services ({}); say which one runs this source",
                        tenant.slug,
                        own.len(),
                        own.iter().map(|(_, _, n)| n.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
                .into()),
            }
        }
    }
}

/// The message for a tenant that has no sync service available.
pub fn no_sync_service_message(tenant: &Tenant) -> String {
    format!(
        "no sync service is available to tenant {slug:?}: it does not allow the platform sync and has no edge sync service. \
         Onboard an edge sync with POST /api/v1/tenants/{slug}/onboarding-packages \
         {{\"component_type\": \"sync\", \"component_id\": \"<name>\"}} and run `sr-sync enroll --token <token> --dir <dir>` on the edge host, \
         or allow the platform sync with PATCH /api/v1/tenants/{slug} {{\"allow_platform_sync\": true}}",
        slug = tenant.slug
    )
}

/// The sync service summary a source listing carries.
#[derive(Debug, Clone, Serialize)]
pub struct AssignedSyncService {
    /// Record id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Computed status.
    pub status: SyncStatus,
    /// The platform sync.
    pub is_platform_sync: bool,
}

/// A source as the admin API shows it: never its credentials.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// Record id.
    pub id: Uuid,
    /// Tenant.
    pub tenant_id: Uuid,
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub source_type: String,
    /// Endpoint.
    pub endpoint: String,
    /// Whether credentials are stored.
    pub has_credentials: bool,
    /// Queries.
    pub queries: Vec<QueryInput>,
    /// Intervals.
    pub poll_interval: Option<String>,
    /// Intervals.
    pub discovery_interval: Option<String>,
    /// Intervals.
    pub sweep_interval: Option<String>,
    /// Partition.
    pub partition: String,
    /// Agent.
    pub agent_id: String,
    /// CIDRs.
    pub network_blacklist: Vec<String>,
    /// Page size.
    pub page_size: Option<i32>,
    /// Settings.
    pub settings: Value,
    /// Adapter pin.
    pub adapter: Option<Value>,
    /// Enabled.
    pub enabled: bool,
    /// Assigned sync service.
    pub sync_service: AssignedSyncService,
    /// Run bookkeeping.
    pub last_run_started_at: Option<DateTime<Utc>>,
    /// Run bookkeeping.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// `success` or `failed`.
    pub last_result: Option<String>,
    /// Devices of the last successful run.
    pub last_device_count: Option<i64>,
    /// Cause of the last failure.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub consecutive_failures: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

const VIEW_SELECT: &str = "SELECT i.id, i.tenant_id, i.name, i.source_type, i.endpoint, \
     (i.credentials_ciphertext IS NOT NULL) AS has_credentials, i.queries, i.poll_interval, \
     i.discovery_interval, i.sweep_interval, i.partition, i.agent_id, i.network_blacklist, i.page_size, \
     i.settings, i.adapter, i.enabled, i.last_run_started_at, i.last_sync_at, i.last_result, \
     i.last_device_count, i.last_error, i.consecutive_failures, i.created_at, i.updated_at, \
     s.id AS ss_id, s.name AS ss_name, s.is_platform_sync AS ss_platform, s.last_heartbeat_at AS ss_heartbeat, \
     (SELECT count(*) FROM platform.integration_sources f WHERE f.sync_service_id = s.id \
        AND f.consecutive_failures > 0) AS ss_failing \
     FROM platform.integration_sources i JOIN platform.sync_services s ON s.id = i.sync_service_id";

fn view_from_row(
    row: &sqlx::postgres::PgRow,
    now: DateTime<Utc>,
) -> Result<SourceView, sqlx::Error> {
    let queries: Value = row.try_get("queries")?;
    Ok(SourceView {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        source_type: row.try_get("source_type")?,
        endpoint: row.try_get("endpoint")?,
        has_credentials: row.try_get("has_credentials")?,
        queries: serde_json::from_value(queries).unwrap_or_default(),
        poll_interval: row.try_get("poll_interval")?,
        discovery_interval: row.try_get("discovery_interval")?,
        sweep_interval: row.try_get("sweep_interval")?,
        partition: row.try_get("partition")?,
        agent_id: row.try_get("agent_id")?,
        network_blacklist: row.try_get("network_blacklist")?,
        page_size: row.try_get("page_size")?,
        settings: row.try_get("settings")?,
        adapter: row.try_get("adapter")?,
        enabled: row.try_get("enabled")?,
        sync_service: AssignedSyncService {
            id: row.try_get("ss_id")?,
            name: row.try_get("ss_name")?,
            status: compute_status(
                row.try_get("ss_heartbeat")?,
                row.try_get("ss_failing")?,
                now,
            ),
            is_platform_sync: row.try_get("ss_platform")?,
        },
        last_run_started_at: row.try_get("last_run_started_at")?,
        last_sync_at: row.try_get("last_sync_at")?,
        last_result: row.try_get("last_result")?,
        last_device_count: row.try_get("last_device_count")?,
        last_error: row.try_get("last_error")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Creates a source for `tenant`.
pub async fn create(
    pool: &PgPool,
    secrets: &SecretBox,
    known_types: &BTreeSet<String>,
    tenant: &Tenant,
    body: CreateSource,
    now: DateTime<Utc>,
) -> Result<SourceView, SourceError> {
    let requested = body.sync_service_id;
    let valid = validate(SourceDraft::from(body), known_types)?;
    let sync_service_id = resolve_sync_service(pool, tenant, requested).await?;
    let id = Uuid::new_v4();
    let credentials = seal_credentials(secrets, id, &valid.credentials)?;
    let mut tx = pool.begin().await?;
    let result = sqlx::query(
        "INSERT INTO platform.integration_sources (id, tenant_id, name, source_type, endpoint, \
             credentials_ciphertext, queries, poll_interval, discovery_interval, sweep_interval, partition, \
             agent_id, network_blacklist, page_size, settings, adapter, enabled, sync_service_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(id)
    .bind(tenant.id)
    .bind(&valid.name)
    .bind(&valid.source_type)
    .bind(&valid.endpoint)
    .bind(&credentials)
    .bind(serde_json::to_value(&valid.queries).unwrap_or(Value::Array(vec![])))
    .bind(&valid.poll_interval)
    .bind(&valid.discovery_interval)
    .bind(&valid.sweep_interval)
    .bind(&valid.partition)
    .bind(&valid.agent_id)
    .bind(&valid.network_blacklist)
    .bind(valid.page_size.map(|p| p as i32))
    .bind(Value::Object(valid.settings.clone()))
    .bind(valid.adapter.as_ref().and_then(|a| serde_json::to_value(a).ok()))
    .bind(valid.enabled)
    .bind(sync_service_id)
    .execute(&mut *tx)
    .await;
    if let Err(e) = result {
        return Err(if db::is_unique_violation(&e) {
            SourceError::NameTaken(valid.name)
        } else {
            e.into()
        });
    }
    db::bump_generation(&mut tx).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant.slug, integration = %valid.name, integration_id = %id,
        source_type = %valid.source_type, sync_service_id = %sync_service_id, "integration source created");
    get(pool, tenant.id, id, now)
        .await?
        .ok_or(SourceError::NotFound(id))
}

/// Applies a PATCH to a source of `tenant`.
pub async fn update(
    pool: &PgPool,
    secrets: &SecretBox,
    known_types: &BTreeSet<String>,
    tenant: &Tenant,
    id: Uuid,
    body: UpdateSource,
    now: DateTime<Utc>,
) -> Result<SourceView, SourceError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT name, source_type, endpoint, credentials_ciphertext, queries, poll_interval, \
         discovery_interval, sweep_interval, partition, agent_id, network_blacklist, page_size, settings, \
         adapter, enabled, sync_service_id FROM platform.integration_sources \
         WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(tenant.id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(SourceError::NotFound(id))?;
    let credentials_changed = body.credentials.is_some();
    let requested_sync = body.sync_service_id;
    let current_sync: Uuid = row.try_get("sync_service_id")?;
    let existing_ciphertext: Option<String> = row.try_get("credentials_ciphertext")?;
    let current = SourceDraft {
        name: row.try_get("name")?,
        source_type: row.try_get("source_type")?,
        endpoint: row.try_get("endpoint")?,
        credentials: None,
        queries: serde_json::from_value(row.try_get("queries")?).unwrap_or_default(),
        poll_interval: row.try_get("poll_interval")?,
        discovery_interval: row.try_get("discovery_interval")?,
        sweep_interval: row.try_get("sweep_interval")?,
        partition: row.try_get("partition")?,
        agent_id: row.try_get("agent_id")?,
        network_blacklist: row.try_get("network_blacklist")?,
        page_size: row
            .try_get::<Option<i32>, _>("page_size")?
            .map(|p| p as u32),
        settings: match row.try_get::<Value, _>("settings")? {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        adapter: row
            .try_get::<Option<Value>, _>("adapter")?
            .and_then(|v| serde_json::from_value(v).ok()),
        enabled: row.try_get("enabled")?,
    };
    let valid = validate(current.apply(body), known_types)?;
    let sync_service_id = match requested_sync {
        Some(requested) if requested != current_sync => {
            resolve_sync_service(pool, tenant, Some(requested)).await?
        }
        _ => current_sync,
    };
    let credentials = if credentials_changed {
        seal_credentials(secrets, id, &valid.credentials)?
    } else {
        existing_ciphertext
    };
    let result = sqlx::query(
        "UPDATE platform.integration_sources SET name = $3, source_type = $4, endpoint = $5, \
             credentials_ciphertext = $6, queries = $7, poll_interval = $8, discovery_interval = $9, \
             sweep_interval = $10, partition = $11, agent_id = $12, network_blacklist = $13, page_size = $14, \
             settings = $15, adapter = $16, enabled = $17, sync_service_id = $18, updated_at = now(), \
             revision = revision + 1 \
         WHERE id = $1 AND tenant_id = $2",
    )
    .bind(id)
    .bind(tenant.id)
    .bind(&valid.name)
    .bind(&valid.source_type)
    .bind(&valid.endpoint)
    .bind(&credentials)
    .bind(serde_json::to_value(&valid.queries).unwrap_or(Value::Array(vec![])))
    .bind(&valid.poll_interval)
    .bind(&valid.discovery_interval)
    .bind(&valid.sweep_interval)
    .bind(&valid.partition)
    .bind(&valid.agent_id)
    .bind(&valid.network_blacklist)
    .bind(valid.page_size.map(|p| p as i32))
    .bind(Value::Object(valid.settings.clone()))
    .bind(valid.adapter.as_ref().and_then(|a| serde_json::to_value(a).ok()))
    .bind(valid.enabled)
    .bind(sync_service_id)
    .execute(&mut *tx)
    .await;
    if let Err(e) = result {
        return Err(if db::is_unique_violation(&e) {
            SourceError::NameTaken(valid.name)
        } else {
            e.into()
        });
    }
    db::bump_generation(&mut tx).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant.slug, integration = %valid.name, integration_id = %id, "integration source updated");
    get(pool, tenant.id, id, now)
        .await?
        .ok_or(SourceError::NotFound(id))
}

/// Deletes a source of a tenant.
pub async fn delete(pool: &PgPool, tenant: &Tenant, id: Uuid) -> Result<(), SourceError> {
    let mut tx = pool.begin().await?;
    let deleted =
        sqlx::query("DELETE FROM platform.integration_sources WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant.id)
            .execute(&mut *tx)
            .await?;
    if deleted.rows_affected() == 0 {
        return Err(SourceError::NotFound(id));
    }
    db::bump_generation(&mut tx).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant.slug, integration_id = %id, "integration source deleted");
    Ok(())
}

/// One source of a tenant.
pub async fn get(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<SourceView>, SourceError> {
    let sql = format!("{VIEW_SELECT} WHERE i.tenant_id = $1 AND i.id = $2");
    let row = sqlx::query(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(|r| view_from_row(r, now)).transpose()?)
}

/// All sources of a tenant, by name.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<SourceView>, SourceError> {
    let sql = format!("{VIEW_SELECT} WHERE i.tenant_id = $1 ORDER BY i.name");
    let rows = sqlx::query(&sql).bind(tenant_id).fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|r| view_from_row(r, now))
        .collect::<Result<_, _>>()?)
}

fn seal_credentials(
    secrets: &SecretBox,
    id: Uuid,
    credentials: &Option<Map<String, Value>>,
) -> Result<Option<String>, SecretsError> {
    match credentials {
        None => Ok(None),
        Some(map) => {
            let plain = serde_json::to_vec(map).unwrap_or_default();
            secrets.seal(&credentials_context(id), &plain).map(Some)
        }
    }
}

/// Associated data binding credentials to their source.
pub fn credentials_context(id: Uuid) -> String {
    format!("integration_source:{id}:credentials")
}

/// Decrypts a source's credentials (only for config delivery).
pub fn open_credentials(
    secrets: &SecretBox,
    id: Uuid,
    ciphertext: Option<&str>,
) -> Result<Map<String, Value>, SecretsError> {
    let Some(ciphertext) = ciphertext else {
        return Ok(Map::new());
    };
    let plain = secrets.open(&credentials_context(id), ciphertext)?;
    match serde_json::from_slice(&plain) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(SecretsError::Decrypt {
            context: credentials_context(id),
        }),
    }
}

/// Converts stored queries to the wire form.
pub fn queries_to_wire(queries: Vec<QueryInput>) -> Vec<QueryConfig> {
    queries
        .into_iter()
        .map(|q| QueryConfig {
            label: q.label,
            query: q.query,
            sweep_modes: q.sweep_modes,
        })
        .collect()
}

/// Converts a stored adapter pin to the wire form.
pub fn adapter_to_wire(adapter: Option<Value>) -> Option<AdapterPin> {
    adapter
        .and_then(|v| serde_json::from_value::<AdapterPinInput>(v).ok())
        .map(|a| AdapterPin {
            name: a.name,
            version: a.version,
            digest: a.digest,
        })
}

/// Why a run report was refused.
#[derive(Debug, Error)]
pub enum RunReportError {
    /// Not a run report.
    #[error("run report is not valid JSON: {0}")]
    Malformed(String),
    /// The source is not the caller's to report on.
    #[error("{0}")]
    Forbidden(String),
    /// Storage.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for RunReportError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// Parses a run report payload.
pub fn parse_run_report(message: &[u8]) -> Result<RunReport, RunReportError> {
    serde_json::from_slice(message).map_err(|e| RunReportError::Malformed(e.to_string()))
}

/// Checks that a run report's source is assigned to `sync_service_id` and
/// belongs to the tenant the report names; returns the source id.
pub async fn check_run_report(
    pool: &PgPool,
    sync_service_id: Uuid,
    report: &RunReport,
) -> Result<Uuid, RunReportError> {
    let source_id = Uuid::parse_str(&report.integration_source_id).map_err(|_| {
        RunReportError::Malformed(format!(
            "integration_source_id {:?} is not a UUID",
            report.integration_source_id
        ))
    })?;
    let row = sqlx::query(
        "SELECT tenant_id, sync_service_id FROM platform.integration_sources WHERE id = $1",
    )
    .bind(source_id)
    .fetch_optional(pool)
    .await?;
    let forbidden = || {
        RunReportError::Forbidden(format!(
            "integration source {source_id} is not assigned to this sync service"
        ))
    };
    let Some(row) = row else {
        return Err(forbidden());
    };
    let owner: Uuid = row.try_get("sync_service_id")?;
    let tenant_id: Uuid = row.try_get("tenant_id")?;
    if owner != sync_service_id {
        return Err(forbidden());
    }
    if !report
        .tenant_id
        .eq_ignore_ascii_case(&tenant_id.to_string())
    {
        return Err(RunReportError::Forbidden(format!(
            "run report names tenant {:?} but integration source {source_id} belongs to tenant {tenant_id}",
            report.tenant_id
        )));
    }
    Ok(source_id)
}

/// Records a run report from `sync_service_id` (checked first, see
/// [`check_run_report`]). Does not change any config document.
pub async fn apply_run_report(
    pool: &PgPool,
    sync_service_id: Uuid,
    report: &RunReport,
) -> Result<(), RunReportError> {
    let source_id = check_run_report(pool, sync_service_id, report).await?;
    let phase = match report.phase {
        RunPhase::Started => "started",
        RunPhase::Succeeded => "succeeded",
        RunPhase::Failed => "failed",
    };
    let sql = "UPDATE platform.integration_sources SET last_run_id = $2, \
         last_run_started_at = CASE WHEN $6 = 'started' THEN $3 ELSE last_run_started_at END, \
         last_sync_at = CASE WHEN $6 = 'succeeded' THEN $3 ELSE last_sync_at END, \
         last_result = CASE $6 WHEN 'succeeded' THEN 'success' WHEN 'failed' THEN 'failed' ELSE last_result END, \
         last_device_count = CASE WHEN $6 = 'succeeded' THEN $4 ELSE last_device_count END, \
         last_error = CASE $6 WHEN 'succeeded' THEN NULL WHEN 'failed' THEN $5 ELSE last_error END, \
         consecutive_failures = CASE $6 WHEN 'succeeded' THEN 0 \
             WHEN 'failed' THEN consecutive_failures + 1 ELSE consecutive_failures END \
         WHERE id = $1";
    sqlx::query(sql)
        .bind(source_id)
        .bind(&report.run_id)
        .bind(report.at)
        .bind(i64::try_from(report.devices).unwrap_or(i64::MAX))
        .bind(
            report
                .error
                .as_deref()
                .unwrap_or("run failed without a cause"),
        )
        .bind(phase)
        .execute(pool)
        .await?;
    tracing::info!(integration_id = %source_id, run_id = %report.run_id, phase = ?report.phase,
        devices = report.devices, "run report recorded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> BTreeSet<String> {
        known_source_types(&["servicenow".to_string()])
    }

    fn armis() -> SourceDraft {
        SourceDraft {
            name: "armis-prod".into(),
            source_type: "armis".into(),
            endpoint: "https://acme.armis.com".into(),
            partition: "default".into(),
            enabled: true,
            ..Default::default()
        }
    }

    fn field_of(draft: SourceDraft) -> String {
        validate(draft, &types()).unwrap_err().field
    }

    #[test]
    fn a_complete_source_validates_into_canonical_form() {
        let mut d = armis();
        d.discovery_interval = Some("90m".into());
        d.network_blacklist = vec!["10.1.2.3/8".into(), "fd00::1/8".into()];
        d.queries = vec![QueryInput {
            label: "all".into(),
            query: "in:devices".into(),
            sweep_modes: vec!["icmp".into()],
        }];
        let v = validate(d, &types()).unwrap();
        assert_eq!(v.discovery_interval.as_deref(), Some("1h30m"));
        assert_eq!(v.network_blacklist, vec!["10.0.0.0/8", "fd00::/8"]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut d = armis();
        d.name = "has/slash".into();
        assert_eq!(field_of(d), "name");

        let mut d = armis();
        d.source_type = "oracle".into();
        let err = validate(d, &types()).unwrap_err();
        assert_eq!(err.field, "type");
        assert!(err.message.contains("servicenow"), "{}", err.message);

        let mut d = armis();
        d.endpoint = String::new();
        assert_eq!(field_of(d), "endpoint");
        let mut d = armis();
        d.endpoint = "ftp://x".into();
        assert_eq!(field_of(d), "endpoint");
        let mut d = armis();
        d.endpoint = "not a url".into();
        assert_eq!(field_of(d), "endpoint");

        let mut d = armis();
        d.network_blacklist = vec!["10.0.0.0/8".into(), "10.0.0.300/8".into()];
        let err = validate(d, &types()).unwrap_err();
        assert_eq!(err.field, "network_blacklist[1]");
        assert!(err.message.contains("10.0.0.300/8"));

        let mut d = armis();
        d.poll_interval = Some("5 minutes".into());
        assert_eq!(field_of(d), "poll_interval");
        let mut d = armis();
        d.sweep_interval = Some("10ms".into());
        assert_eq!(field_of(d), "sweep_interval");

        let mut d = armis();
        d.partition = "a.b".into();
        assert_eq!(field_of(d), "partition");
        let mut d = armis();
        d.agent_id = "agent.1".into();
        assert_eq!(field_of(d), "agent_id");

        let mut d = armis();
        d.queries = vec![
            QueryInput {
                label: "a".into(),
                query: "q".into(),
                sweep_modes: vec![],
            },
            QueryInput {
                label: "a".into(),
                query: "q".into(),
                sweep_modes: vec![],
            },
        ];
        assert_eq!(field_of(d), "queries[1].label");
        let mut d = armis();
        d.queries = vec![QueryInput {
            label: "a".into(),
            query: " ".into(),
            sweep_modes: vec![],
        }];
        assert_eq!(field_of(d), "queries[0].query");

        let mut d = armis();
        d.page_size = Some(0);
        assert_eq!(field_of(d), "page_size");

        let mut d = armis();
        d.adapter = Some(AdapterPinInput {
            name: "armis".into(),
            version: None,
            digest: Some("md5:x".into()),
        });
        assert_eq!(field_of(d), "adapter.digest");
        let mut d = armis();
        d.adapter = Some(AdapterPinInput {
            name: "armis".into(),
            version: Some("one".into()),
            digest: None,
        });
        assert_eq!(field_of(d), "adapter.version");
    }

    #[test]
    fn generators_need_no_endpoint_and_adapter_types_come_from_config() {
        let mut d = armis();
        d.source_type = "faker".into();
        d.endpoint = String::new();
        assert!(validate(d, &types()).is_ok());
        let mut d = armis();
        d.source_type = "servicenow".into();
        assert!(validate(d.clone(), &types()).is_ok());
        assert!(validate(d, &known_source_types(&[])).is_err());
    }

    #[test]
    fn patch_keeps_absent_fields_and_clears_with_null_or_empty() {
        let mut base = armis();
        base.credentials = Some(Map::from_iter([("k".to_string(), Value::from("v"))]));
        base.poll_interval = Some("5m".into());
        let patch: UpdateSource =
            serde_json::from_str(r#"{"endpoint": "https://b.example", "poll_interval": ""}"#)
                .unwrap();
        let next = base.clone().apply(patch);
        assert_eq!(next.endpoint, "https://b.example");
        assert_eq!(next.credentials, base.credentials);
        assert_eq!(next.poll_interval, None);
        let patch: UpdateSource = serde_json::from_str(r#"{"credentials": null}"#).unwrap();
        assert!(patch.credentials == Some(None));
        assert_eq!(base.apply(patch).credentials, None);
    }

    #[test]
    fn unknown_fields_are_refused_at_parse_time() {
        let err =
            serde_json::from_str::<CreateSource>(r#"{"name":"a","type":"faker","colour":"red"}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("colour"), "{err}");
        let err = serde_json::from_str::<CreateSource>(
            r#"{"name":"a","type":"faker","queries":[{"label":"l","query":"q","extra":1}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("extra"), "{err}");
    }
}
