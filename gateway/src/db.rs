//! PostgreSQL access: the pool, platform migrations (schema `platform`),
//! tenant migrations (one schema per tenant, each with its own
//! `_sqlx_migrations`), the config generation counter, and transactions
//! scoped to one tenant schema.

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use thiserror::Error;
use uuid::Uuid;

/// Control-plane migrations (`migrations/platform`).
pub static PLATFORM_MIGRATOR: Migrator = sqlx::migrate!("../migrations/platform");
/// Tenant data-plane migrations (`migrations/tenant`). The migrator's own
/// session-level lock is off: [`migrate_tenant_schema`] takes a
/// transaction-level lock per schema instead, which cannot leak onto a
/// pooled connection when a migration fails.
pub static TENANT_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("../migrations/tenant");
    migrator.set_locking(false);
    migrator
});

/// Arbitrary key serialising creation of the `platform` schema across gateways.
const PLATFORM_SCHEMA_LOCK: i64 = 0x5352_5f50_4c41_5446; // "SR_PLATF"

/// A storage failure.
#[derive(Debug, Error)]
pub enum DbError {
    /// Could not connect.
    #[error("connecting to PostgreSQL: {0}; check database_url and that the server is up")]
    Connect(#[source] sqlx::Error),
    /// A query failed.
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migrating {target}: {source}")]
    Migrate {
        /// Which schema.
        target: String,
        /// The cause.
        source: sqlx::migrate::MigrateError,
    },
    /// A schema name that is not one this gateway generates.
    #[error("refusing schema name {0:?}: tenant schemas are t_<32 hex digits>")]
    BadSchemaName(String),
}

/// Statements slower than this are logged as warnings. sqlx's default (1 s)
/// fired for every stream that waited its turn for a tenant's DIRE lock
/// behind another stream of the same tenant, which is expected and logged
/// by DIRE itself (`lock_wait_ms`); a statement this slow is not.
const SLOW_STATEMENT: Duration = Duration::from_secs(10);

/// Opens a pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()
        .map_err(DbError::Connect)?
        .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT);
    PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)
}

/// Longest [`close_pool`] waits for connections still being returned.
const CLOSE_STRAGGLERS: Duration = Duration::from_secs(5);

/// Closes a pool and every connection it opened, so the caller may drop the
/// database next. `Pool::close` of sqlx 0.8.6 can return while a connection
/// is still on its way back (sqlx issue #3217, fixed after 0.8.6): a dropped
/// `PoolConnection` is returned by a spawned task that pings it first, and
/// lands in the idle queue after `close` drained it for the last time. Such a
/// straggler stayed connected and, when the demo dropped its database, was
/// terminated mid-ping with a warning. Closing again until the pool is empty
/// closes each one as it arrives; a connection a task still holds after
/// [`CLOSE_STRAGGLERS`] is logged and left to that task.
pub async fn close_pool(pool: &PgPool) {
    let started = std::time::Instant::now();
    loop {
        pool.close().await;
        if pool.size() == 0 {
            return;
        }
        if started.elapsed() >= CLOSE_STRAGGLERS {
            tracing::warn!(
                open = pool.size(),
                "database connections still in use after closing the pool; they close when their tasks end"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Creates schema `platform` and applies the control-plane migrations
/// (idempotent; safe with several gateways starting at once).
pub async fn migrate_platform(pool: &PgPool) -> Result<(), DbError> {
    let mut conn = pool.acquire().await?.detach();
    let result = async {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(PLATFORM_SCHEMA_LOCK)
            .execute(&mut conn)
            .await?;
        sqlx::query("CREATE SCHEMA IF NOT EXISTS platform")
            .execute(&mut conn)
            .await?;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(PLATFORM_SCHEMA_LOCK)
            .execute(&mut conn)
            .await?;
        sqlx::query("SET search_path TO platform")
            .execute(&mut conn)
            .await?;
        PLATFORM_MIGRATOR
            .run_direct(&mut conn)
            .await
            .map_err(|source| DbError::Migrate {
                target: "schema platform".into(),
                source,
            })
    }
    .await;
    // The connection had its search_path changed: never return it to the pool.
    let _ = conn.close().await;
    result
}

/// The schema of a tenant: `t_<uuid simple hex>`.
pub fn tenant_schema_name(tenant_id: Uuid) -> String {
    format!("t_{}", tenant_id.simple())
}

/// Double-quoted identifier for a schema this gateway generated.
pub fn quoted_schema(schema: &str) -> Result<String, DbError> {
    let valid = schema.len() == 34
        && schema.starts_with("t_")
        && schema[2..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if valid {
        Ok(format!("\"{schema}\""))
    } else {
        Err(DbError::BadSchemaName(schema.to_string()))
    }
}

/// Creates a tenant schema (if missing) and applies the tenant migrations
/// to it. `tx` must be inside a transaction: the schema is created
/// atomically with whatever else the transaction does, and the search_path
/// is set with `SET LOCAL`, so it ends with the transaction.
pub async fn migrate_tenant_schema(tx: &mut PgConnection, schema: &str) -> Result<(), DbError> {
    let conn = tx;
    let quoted = quoted_schema(schema)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(schema)
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("SET LOCAL search_path TO {quoted}"))
        .execute(&mut *conn)
        .await?;
    // run_direct: `run` trips the "Acquire is not general enough" lifetime
    // error inside async fns that must be Send.
    TENANT_MIGRATOR
        .run_direct(&mut *conn)
        .await
        .map_err(|source| DbError::Migrate {
            target: format!("schema {schema}"),
            source,
        })
}

/// Applies the tenant migrations to every tenant's schema (startup).
/// Returns how many schemas were checked.
pub async fn migrate_all_tenants(pool: &PgPool) -> Result<usize, DbError> {
    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT schema_name FROM platform.tenants ORDER BY created_at")
            .fetch_all(pool)
            .await?;
    if schemas.is_empty() {
        return Ok(0);
    }
    let mut conn = pool.acquire().await?;
    for schema in &schemas {
        let mut tx = conn.begin().await?;
        migrate_tenant_schema(&mut tx, schema).await?;
        tx.commit().await?;
    }
    Ok(schemas.len())
}

/// Begins a transaction whose unqualified table names resolve to the
/// tenant's schema only (`SET LOCAL search_path`, so the pooled connection
/// is clean again after commit or rollback). The ingest pipeline writes
/// tenant data through this.
pub async fn begin_tenant_tx(
    pool: &PgPool,
    schema: &str,
) -> Result<Transaction<'static, Postgres>, DbError> {
    let quoted = quoted_schema(schema)?;
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("SET LOCAL search_path TO {quoted}"))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Bumps the config generation inside `tx` (every change that can alter a
/// config document does this in its own transaction).
pub async fn bump_generation(tx: &mut PgConnection) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "UPDATE platform.config_generation SET value = value + 1 RETURNING value",
    )
    .fetch_one(tx)
    .await?)
}

/// Whether an error is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// Opens a plain connection (for one-off admin work like bootstrap).
pub async fn connect_one(url: &str) -> Result<PgConnection, DbError> {
    PgConnection::connect(url).await.map_err(DbError::Connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_generated_and_checked() {
        let id = Uuid::from_u128(0xabc);
        let name = tenant_schema_name(id);
        assert_eq!(name, "t_00000000000000000000000000000abc");
        assert_eq!(quoted_schema(&name).unwrap(), format!("\"{name}\""));
        for bad in [
            "public",
            "t_x",
            "t_0000000000000000000000000000ABC0",
            "t_\"; drop",
        ] {
            assert!(quoted_schema(bad).is_err(), "{bad}");
        }
    }
}
