//! Durable data behind one trait, so handlers never know which database
//! they talk to.
//!
//! `Store` speaks domain types and returns `StoreError`; it never imports
//! axum and never builds HTTP errors. SQLite (`sqlite.rs`) is the embedded
//! default; a PostgreSQL implementation plugs in behind the same trait and
//! is held to the same conformance suite (`tests/store.rs`). Migrations are
//! embedded per backend under `migrations/<backend>/`.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use uuid::Uuid;

pub use sqlite::SqliteStore;

use crate::{
    config::DatabaseConfig,
    domain::{Email, NewUser, User},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; names the field, e.g. `"email"`.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::Other(other.into()),
        }
    }
}

/// A user together with the password hash that only login may see.
#[derive(Debug)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations; safe to call on every start.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// One round trip, for `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Fails with `Conflict("email")` when the email is taken, in any case.
    async fn create_user(&self, new_user: NewUser) -> Result<User, StoreError>;
    async fn user_by_id(&self, id: Uuid) -> Result<User, StoreError>;
    async fn credentials_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<UserCredentials>, StoreError>;
    async fn count_admins(&self) -> Result<u64, StoreError>;
}

/// Opens the store that `database.url` names.
pub async fn open(config: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.url.expose_secret();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::connect(url, config.max_connections).await?,
        ))
    } else {
        Err(StoreError::Other(anyhow::anyhow!(
            "database.url: PostgreSQL is not supported by this build yet; use a sqlite: URL"
        )))
    }
}
