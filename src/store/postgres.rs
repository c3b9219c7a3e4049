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

const STATEMENT_TIMEOUT: &str = "5s";

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
}

fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    if schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(StoreError::Other(anyhow::anyhow!("schema names are letters, digits and _")))
    }
}

impl SqlStore<Postgres> {
    /// Connects to `url`; `schema`, when given, becomes the search path
    /// (created if missing), which is how tests get a database each.
    pub async fn connect(url: &str, max_connections: u32, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url).context("database.url is not a valid postgres:// URL")?;
        let mut parameters = vec![("statement_timeout", STATEMENT_TIMEOUT.to_owned())];
        if let Some(schema) = schema {
            check_schema_name(schema)?;
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .context("cannot reach PostgreSQL")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).execute(&admin).await?;
            admin.close().await;
            parameters.push(("search_path", schema.to_owned()));
        }
        options = options.options(parameters);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .context("cannot reach PostgreSQL")?;
        Ok(Self { pool })
    }

    /// Drops a test schema and everything in it.
    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        check_schema_name(schema)?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&self.pool).await?;
        Ok(())
    }
}
