//! Sync services: the platform sync and tenants' edge syncs. Records are
//! created at bootstrap (platform), at onboarding (edge) or by Hello; status
//! is computed from the last heartbeat by a pure function of the time.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::db::{self, DbError};
use crate::identity::PeerIdentity;

/// Component id of the platform sync.
pub const PLATFORM_SYNC_COMPONENT_ID: &str = "platform-sync";
/// Partition of the platform sync.
pub const PLATFORM_SYNC_PARTITION: &str = "platform";

/// A sync service is online while its last heartbeat is at most this old.
pub fn online_window() -> Duration {
    Duration::minutes(2)
}

/// Computed status of a sync service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// Never heard from (onboarded, not yet connected).
    Pending,
    /// Heartbeat within the window and its sources' last runs fine.
    Online,
    /// Heartbeat within the window but some assigned source's last run failed.
    Degraded,
    /// No heartbeat within the window.
    Offline,
}

/// Status from the last heartbeat, the number of assigned sources whose
/// last run failed, and the current time.
pub fn compute_status(
    last_heartbeat_at: Option<DateTime<Utc>>,
    failing_sources: i64,
    now: DateTime<Utc>,
) -> SyncStatus {
    match last_heartbeat_at {
        None => SyncStatus::Pending,
        Some(at) if now - at > online_window() => SyncStatus::Offline,
        Some(_) if failing_sources > 0 => SyncStatus::Degraded,
        Some(_) => SyncStatus::Online,
    }
}

/// A sync service as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncServiceView {
    /// Record id (what integration sources reference).
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Owning tenant's slug.
    pub tenant_slug: String,
    /// Component id (certificate CN).
    pub component_id: String,
    /// Display name.
    pub name: String,
    /// `saas` or `on_prem`.
    pub service_type: String,
    /// The platform sync (serves every tenant that allows it).
    pub is_platform_sync: bool,
    /// Partition.
    pub partition: String,
    /// Hostname it reported.
    pub endpoint: Option<String>,
    /// Version it reported.
    pub version: Option<String>,
    /// Capabilities it reported.
    pub capabilities: Vec<String>,
    /// First Hello.
    pub registered_at: Option<DateTime<Utc>>,
    /// Last heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Computed status.
    pub status: SyncStatus,
    /// Sources assigned to it (within the listing's scope).
    pub source_count: i64,
    /// Assigned sources whose last run failed.
    pub failing_sources: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
}

const VIEW_SELECT: &str = "SELECT s.id, s.tenant_id, t.slug AS tenant_slug, s.component_id, s.name, \
     s.service_type, s.is_platform_sync, s.partition, s.endpoint, s.version, s.capabilities, \
     s.registered_at, s.last_heartbeat_at, s.created_at, \
     (SELECT count(*) FROM platform.integration_sources i WHERE i.sync_service_id = s.id \
        AND ($1::uuid IS NULL OR i.tenant_id = $1)) AS source_count, \
     (SELECT count(*) FROM platform.integration_sources i WHERE i.sync_service_id = s.id \
        AND i.consecutive_failures > 0 AND ($1::uuid IS NULL OR i.tenant_id = $1)) AS failing_sources \
     FROM platform.sync_services s JOIN platform.tenants t ON t.id = s.tenant_id";

fn view_from_row(
    row: &sqlx::postgres::PgRow,
    now: DateTime<Utc>,
) -> Result<SyncServiceView, sqlx::Error> {
    let last_heartbeat_at: Option<DateTime<Utc>> = row.try_get("last_heartbeat_at")?;
    let failing_sources: i64 = row.try_get("failing_sources")?;
    Ok(SyncServiceView {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        tenant_slug: row.try_get("tenant_slug")?,
        component_id: row.try_get("component_id")?,
        name: row.try_get("name")?,
        service_type: row.try_get("service_type")?,
        is_platform_sync: row.try_get("is_platform_sync")?,
        partition: row.try_get("partition")?,
        endpoint: row.try_get("endpoint")?,
        version: row.try_get("version")?,
        capabilities: row.try_get("capabilities")?,
        registered_at: row.try_get("registered_at")?,
        last_heartbeat_at,
        status: compute_status(last_heartbeat_at, failing_sources, now),
        source_count: row.try_get("source_count")?,
        failing_sources,
        created_at: row.try_get("created_at")?,
    })
}

/// Sync services available to a tenant: its own edge syncs, plus the
/// platform syncs when the tenant allows them. Counts cover this tenant's
/// sources only.
pub async fn list_for_tenant(
    pool: &PgPool,
    tenant_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<SyncServiceView>, DbError> {
    let sql = format!(
        "{VIEW_SELECT} WHERE s.tenant_id = $1 OR (s.is_platform_sync AND \
         (SELECT allow_platform_sync FROM platform.tenants WHERE id = $1)) \
         ORDER BY s.is_platform_sync DESC, s.name"
    );
    let rows = sqlx::query(&sql).bind(tenant_id).fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|r| view_from_row(r, now))
        .collect::<Result<_, _>>()?)
}

/// Every sync service (platform admin).
pub async fn list_all(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<SyncServiceView>, DbError> {
    let sql = format!("{VIEW_SELECT} ORDER BY s.is_platform_sync DESC, t.slug, s.name");
    let rows = sqlx::query(&sql)
        .bind(Option::<Uuid>::None)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| view_from_row(r, now))
        .collect::<Result<_, _>>()?)
}

/// One sync service, with counts over all its sources.
pub async fn get(
    pool: &PgPool,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<SyncServiceView>, DbError> {
    let sql = format!("{VIEW_SELECT} WHERE s.id = $2");
    let row = sqlx::query(&sql)
        .bind(Option::<Uuid>::None)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(|r| view_from_row(r, now)).transpose()?)
}

/// Creates the platform sync record if missing; returns (id, created).
pub async fn ensure_platform_sync(
    tx: &mut PgConnection,
    platform_tenant_id: Uuid,
) -> Result<(Uuid, bool), DbError> {
    let existing: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM platform.sync_services WHERE tenant_id = $1 AND component_id = $2",
    )
    .bind(platform_tenant_id)
    .bind(PLATFORM_SYNC_COMPONENT_ID)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = existing {
        return Ok((id, false));
    }
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO platform.sync_services (id, tenant_id, component_id, name, service_type, is_platform_sync, partition) \
         VALUES ($1, $2, $3, $3, 'saas', true, $4)",
    )
    .bind(id)
    .bind(platform_tenant_id)
    .bind(PLATFORM_SYNC_COMPONENT_ID)
    .bind(PLATFORM_SYNC_PARTITION)
    .execute(&mut *tx)
    .await?;
    db::bump_generation(tx).await?;
    Ok((id, true))
}

/// Creates (or keeps) the record of an edge sync being onboarded; status
/// stays pending until its first Hello.
pub async fn ensure_edge_sync(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    component_id: &str,
    name: &str,
    partition: &str,
) -> Result<Uuid, DbError> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO platform.sync_services (id, tenant_id, component_id, name, service_type, is_platform_sync, partition) \
         VALUES ($1, $2, $3, $4, 'on_prem', false, $5) \
         ON CONFLICT (tenant_id, component_id) DO UPDATE SET name = EXCLUDED.name, partition = EXCLUDED.partition, updated_at = now() \
         RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(tenant_id)
    .bind(component_id)
    .bind(name)
    .bind(partition)
    .fetch_one(&mut *tx)
    .await?;
    db::bump_generation(tx).await?;
    Ok(id)
}

/// What a sync service tells about itself in Hello.
#[derive(Debug, Clone, Default)]
pub struct HelloInfo {
    /// Software version.
    pub version: String,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Hostname.
    pub hostname: String,
    /// OS.
    pub os: String,
    /// Architecture.
    pub arch: String,
}

/// Registers or updates the caller's SyncService record from its Hello:
/// platform identities as `saas` platform syncs in the platform tenant,
/// edge ones as `on_prem` in the certificate's tenant. Counts as a heartbeat.
/// Returns the record id.
pub async fn register_hello(
    pool: &PgPool,
    peer: &PeerIdentity,
    info: &HelloInfo,
    now: DateTime<Utc>,
) -> Result<Uuid, DbError> {
    let service_type = if peer.is_platform { "saas" } else { "on_prem" };
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO platform.sync_services (id, tenant_id, component_id, name, service_type, is_platform_sync, \
             partition, endpoint, version, os, arch, capabilities, registered_at, last_heartbeat_at) \
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
         ON CONFLICT (tenant_id, component_id) DO UPDATE SET \
             service_type = EXCLUDED.service_type, is_platform_sync = EXCLUDED.is_platform_sync, \
             partition = EXCLUDED.partition, endpoint = EXCLUDED.endpoint, version = EXCLUDED.version, \
             os = EXCLUDED.os, arch = EXCLUDED.arch, capabilities = EXCLUDED.capabilities, \
             registered_at = COALESCE(platform.sync_services.registered_at, EXCLUDED.registered_at), \
             last_heartbeat_at = EXCLUDED.last_heartbeat_at, updated_at = now() \
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind(Uuid::new_v4())
    .bind(peer.tenant_id)
    .bind(&peer.component_id)
    .bind(service_type)
    .bind(peer.is_platform)
    .bind(&peer.partition)
    .bind(non_empty(&info.hostname))
    .bind(non_empty(&info.version))
    .bind(non_empty(&info.os))
    .bind(non_empty(&info.arch))
    .bind(&info.capabilities)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let id: Uuid = row.try_get("id")?;
    if row.try_get::<bool, _>("inserted")? {
        db::bump_generation(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Records a heartbeat; returns the record id, or None when the caller
/// has no record yet (it must say Hello first).
pub async fn heartbeat(
    pool: &PgPool,
    peer: &PeerIdentity,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        "UPDATE platform.sync_services SET last_heartbeat_at = $3 \
         WHERE tenant_id = $1 AND component_id = $2 RETURNING id",
    )
    .bind(peer.tenant_id)
    .bind(&peer.component_id)
    .bind(now)
    .fetch_optional(pool)
    .await?)
}

/// The record id of the caller's sync service, if any.
pub async fn find_for_peer(pool: &PgPool, peer: &PeerIdentity) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM platform.sync_services WHERE tenant_id = $1 AND component_id = $2",
    )
    .bind(peer.tenant_id)
    .bind(&peer.component_id)
    .fetch_optional(pool)
    .await?)
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn status_flips_to_offline_after_two_minutes() {
        let hb = t("2025-01-01T12:00:00Z");
        assert_eq!(compute_status(Some(hb), 0, hb), SyncStatus::Online);
        assert_eq!(
            compute_status(Some(hb), 0, t("2025-01-01T12:02:00Z")),
            SyncStatus::Online,
            "exactly two minutes is still online"
        );
        assert_eq!(
            compute_status(Some(hb), 0, t("2025-01-01T12:02:01Z")),
            SyncStatus::Offline
        );
        assert_eq!(
            compute_status(Some(hb), 3, t("2025-01-01T13:00:00Z")),
            SyncStatus::Offline,
            "offline wins over degraded"
        );
    }

    #[test]
    fn failing_runs_degrade_an_online_service() {
        let hb = t("2025-01-01T12:00:00Z");
        assert_eq!(
            compute_status(Some(hb), 1, t("2025-01-01T12:01:00Z")),
            SyncStatus::Degraded
        );
    }

    #[test]
    fn never_heard_from_is_pending() {
        assert_eq!(
            compute_status(None, 0, t("2025-01-01T12:00:00Z")),
            SyncStatus::Pending
        );
    }

    #[test]
    fn heartbeat_slightly_in_the_future_counts_as_online() {
        let now = t("2025-01-01T12:00:00Z");
        assert_eq!(
            compute_status(Some(now + Duration::seconds(5)), 0, now),
            SyncStatus::Online
        );
    }
}
