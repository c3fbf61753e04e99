//! A throwaway PostgreSQL database per test.
//!
//! Uses `DATABASE_URL` when set, else `postgres://postgres@127.0.0.1:5432/postgres`.
//! [`TestDb::create`] makes a fresh database with a unique name; dropping the
//! [`TestDb`] drops the database (and any roles created for it, named with
//! its prefix).

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};

/// The server URL tests use.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for the lifetime of this value.
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates a new, empty database.
    pub async fn create() -> Result<Self> {
        let admin_url = server_url();
        let name = format!("sr_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.with_context(|| {
            format!("connecting to PostgreSQL at {admin_url} (set DATABASE_URL to point tests elsewhere)")
        })?;
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .with_context(|| format!("creating test database {name}"))?;
        let options: PgConnectOptions = admin_url.parse()?;
        let url = options.database(&name).to_url_lossy().to_string();
        Ok(Self {
            name,
            url,
            admin_url,
        })
    }

    /// Connection URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Name of the test database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A small pool on the test database.
    pub async fn pool(&self) -> Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url)
            .await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        // Drop runs inside or outside a runtime; use a private one on a thread.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = admin
                        .execute(
                            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str(),
                        )
                        .await;
                    drop_roles_with_prefix(&mut admin, &name).await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// Drops roles whose name starts with `prefix` (roles are cluster-wide, so
/// per-test roles must carry the test database's name).
async fn drop_roles_with_prefix(admin: &mut PgConnection, prefix: &str) {
    let pattern = format!("{prefix}%");
    let roles: Vec<(String,)> =
        sqlx::query_as("SELECT rolname FROM pg_roles WHERE rolname LIKE $1")
            .bind(&pattern)
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for (role,) in roles {
        let _ = admin
            .execute(format!("DROP ROLE IF EXISTS \"{role}\"").as_str())
            .await;
    }
}
