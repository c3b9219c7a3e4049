//! The embedded default: SQLite in WAL mode with foreign keys on.
//!
//! Timestamps are stored by sqlx's `OffsetDateTime` encoding, always in UTC,
//! so text order is time order. Ids are UUIDv7 blobs, ordered by creation.

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{
    Row, SqlitePool,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError, UserCredentials};
use crate::domain::{Email, NewUser, Role, User};

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`, and its folder.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .context("database.url is not a valid sqlite: URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(folder) = Path::new(options.get_filename())
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).with_context(|| {
                format!("cannot create the database folder {}", folder.display())
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .context("cannot open the SQLite database")?;
        Ok(Self { pool })
    }
}

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: Role::from_str(&role)
            .map_err(|_| anyhow::anyhow!("users.role holds unknown value {role:?}"))?,
        department: row.try_get("department")?,
        disabled: row.try_get("disabled")?,
        created_at: row.try_get("created_at")?,
    })
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.pool)
            .await
            .context("applying SQLite migrations")?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, new_user: NewUser) -> Result<User, StoreError> {
        let now = OffsetDateTime::now_utc();
        let user = User {
            id: Uuid::now_v7(),
            email: new_user.email.as_str().to_owned(),
            name: new_user.name.as_str().to_owned(),
            role: new_user.role,
            department: new_user.department,
            disabled: false,
            created_at: now,
        };
        let result = sqlx::query(
            "INSERT INTO users (id, email, email_key, name, role, department, password_hash, disabled, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(user.id)
        .bind(&user.email)
        .bind(new_user.email.key())
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(&user.department)
        .bind(&new_user.password_hash)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(user),
            Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict("email")),
            Err(error) => Err(error.into()),
        }
    }

    async fn user_by_id(&self, id: Uuid) -> Result<User, StoreError> {
        let row = sqlx::query("SELECT id, email, name, role, department, disabled, created_at FROM users WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        user_from_row(&row)
    }

    async fn credentials_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, name, role, department, disabled, created_at, password_hash FROM users WHERE email_key = ?",
        )
            .bind(email.key())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(UserCredentials {
                user: user_from_row(&row)?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    async fn count_admins(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
