//! The embedded default: SQLite in WAL mode with foreign keys on.
//!
//! Timestamps are stored by sqlx's `OffsetDateTime` encoding, always in UTC,
//! so text order is time order. Ids are UUIDv7 blobs, ordered by creation.
//! The queries are in `sql.rs`; this file only opens the database and says
//! how SQLite takes a write lock.

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    Pool, Sqlite, Transaction,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{SqlStore, StoreError, sql::Dialect};

pub type SqliteStore = SqlStore<Sqlite>;

impl Dialect for Sqlite {
    const MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

    /// `BEGIN IMMEDIATE` takes the database's write lock at once, so the
    /// admin count read inside cannot change before the transaction writes
    /// (a deferred `BEGIN` would read under a shared lock and fail, or
    /// race, at its first write).
    async fn begin_admin_change(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, StoreError> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// `BEGIN IMMEDIATE` again: a rotation's checks and writes, or a
    /// revocation, run with no other write in between.
    async fn begin_refresh_change(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, StoreError> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl SqlStore<Sqlite> {
    /// Opens (creating if needed) the database at `url`, and its folder,
    /// with the default `database.timeout`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with_timeout(url, max_connections, Duration::from_secs(5)).await
    }

    /// `connect`, waiting at most `timeout` for a connection or the write lock.
    pub async fn connect_with_timeout(url: &str, max_connections: u32, timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .context("database.url is not a valid sqlite: URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(timeout);
        if let Some(folder) = Path::new(options.get_filename()).parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::fs::create_private_dir(folder).context("the database folder")?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(timeout)
            .connect_with(options)
            .await
            .context("cannot open the SQLite database")?;
        Ok(Self { pool })
    }
}
