//! PostgreSQL, for several instances sharing one database.
//!
//! The queries are in `sql.rs`, run here on PostgreSQL's types (UUID,
//! TIMESTAMPTZ, BYTEA). Every connection gets a statement timeout, so a
//! stuck query cannot hold a request (or a pool slot) forever.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    Pool, Postgres, Transaction,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use super::{SqlStore, StoreError, sql::Dialect};

pub type PostgresStore = SqlStore<Postgres>;

impl Dialect for Postgres {
    const MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

    /// Locks every active admin's row: under READ COMMITTED a conditional
    /// UPDATE alone still lets two demotions of the last two admins pass,
    /// each counting the other as active. A second change waits here until
    /// the first commits, then counts again.
    async fn begin_admin_change(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, StoreError> {
        let mut transaction = pool.begin().await?;
        sqlx::query("SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE")
            .execute(&mut *transaction)
            .await?;
        Ok(transaction)
    }

    /// A plain transaction: rotations and revocations lock the user's row
    /// themselves (`FOR NO KEY UPDATE`), the one lock they share.
    async fn begin_refresh_change(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, StoreError> {
        Ok(pool.begin().await?)
    }
}

impl SqlStore<Postgres> {
    /// Connects to `url` (its `options` may set a search path), with the
    /// default `database.timeout`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with_timeout(url, max_connections, Duration::from_secs(5)).await
    }

    /// `connect`, waiting at most `timeout` for a connection and letting no
    /// statement run longer.
    pub async fn connect_with_timeout(url: &str, max_connections: u32, timeout: Duration) -> Result<Self, StoreError> {
        let statement_timeout = format!("{}ms", timeout.as_millis().max(1));
        let options = PgConnectOptions::from_str(url)
            .context("database.url is not a valid postgres:// URL")?
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(timeout)
            .connect_with(options)
            .await
            .context("cannot reach PostgreSQL")?;
        Ok(Self { pool })
    }
}
