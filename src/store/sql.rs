//! The SQL of both backends, written once.
//!
//! Every query uses `$N` placeholders, which PostgreSQL requires and sqlx
//! binds by number on SQLite too, and only SQL both understand (`FALSE`,
//! `FILTER`, `CAST`, `RETURNING`, `ON CONFLICT`). `sql_store!` instantiates
//! the trait impls for one `sqlx::Database`, given the one SQL fragment that
//! differs (the name of `GREATEST`); the rest of what differs lives in that
//! backend's file as its `Dialect` (migrations, how an admin change takes
//! its write lock) and its `connect`.
//! Rows are read through `FromRow` structs, which are generic over the
//! database already.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Database, Pool, Transaction, migrate::Migrator};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ApiKeyRecord, ApiKeyStore, AuditFilter, AuditStore, Block, BlockStore, DashboardCounts, EmailPurpose,
    EmailTokenRecord, Identity, IdentityStore, MailStore, MfaChallenge, OAuthFlow, OutboxCounts, OutboxMail,
    PasskeyRecord, PasskeyStore, PendingPasskey, PostStore, PostsPage, RefreshSuccessor, RefreshTokenRecord,
    RefreshUse, Revocation, SecondFactorStore, SessionRecord, SessionStore, Store, StoreError, TokenStore, TotpFactor,
    UnitOfWork, UserChange, UserChanges, UserCredentials, UserStore, now_stored,
};
use crate::domain::{
    AuditEvent, AuditKind, Department, Email, NewUser, Outcome, Post, PostBody, PostTitle, PostWithAuthor, Role,
    Scopes, SignInMethod, User, UserName,
};

/// A SQL database behind the store traits; `SqliteStore` and
/// `PostgresStore` name its two instances.
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
}

/// Writes in one transaction (`Store::begin`).
pub struct SqlUnitOfWork<DB: Database> {
    pub(super) transaction: Transaction<'static, DB>,
}

/// What one backend's SQL or locking needs that the other's does not.
pub trait Dialect: Database {
    /// This backend's migrations (`migrations/<backend>/`).
    const MIGRATOR: Migrator;

    /// Starts a transaction that may demote, disable or delete an admin, so
    /// that no other such transaction runs between its count of active
    /// admins and its write: without this, two concurrent demotions of the
    /// last two admins would both see two and both pass.
    fn begin_admin_change(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, StoreError>> + Send;

    /// Starts a transaction that rotates or revokes refresh tokens. On
    /// SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), which
    /// serialises it with every other write; on PostgreSQL the transaction
    /// locks the user's row itself (`sql_store!`'s `lock_user`).
    fn begin_refresh_change(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, StoreError>> + Send;
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    time: OffsetDateTime,
    request_id: Option<String>,
    event: String,
    user_id: Option<Uuid>,
    client_ip: Option<String>,
    route: Option<String>,
    outcome: Outcome,
    detail: Option<String>,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        AuditEvent {
            id: row.id,
            time: row.time,
            request_id: row.request_id,
            event: AuditKind::from_stored(row.event),
            user_id: row.user_id,
            client_ip: row.client_ip.and_then(|ip| ip.parse().ok()),
            route: row.route,
            outcome: row.outcome,
            detail: row.detail,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: Uuid,
    user_id: Uuid,
    name: String,
    scopes: String,
    secret_hash: Vec<u8>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    last_used_at: Option<OffsetDateTime>,
}

const API_KEY_COLUMNS: &str = "id, user_id, name, scopes, secret_hash, created_at, expires_at, last_used_at";

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(ApiKeyRecord {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            scopes: Scopes::from_stored(&row.scopes),
            secret_hash: row
                .secret_hash
                .try_into()
                .map_err(|_| anyhow::anyhow!("a stored key hash is not 32 bytes"))?,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct EmailTokenRow {
    token_hash: Vec<u8>,
    purpose: EmailPurpose,
    user_id: Uuid,
    email: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

const EMAIL_TOKEN_COLUMNS: &str = "token_hash, purpose, user_id, email, created_at, expires_at";

impl TryFrom<EmailTokenRow> for EmailTokenRecord {
    type Error = StoreError;

    fn try_from(row: EmailTokenRow) -> Result<Self, StoreError> {
        Ok(EmailTokenRecord {
            token_hash: row
                .token_hash
                .try_into()
                .map_err(|_| anyhow::anyhow!("a stored email token hash is not 32 bytes"))?,
            purpose: row.purpose,
            user_id: row.user_id,
            email: row.email,
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: Uuid,
    kind: String,
    sender: String,
    recipient: String,
    message: Vec<u8>,
    created_at: OffsetDateTime,
    attempts: i64,
}

impl From<OutboxRow> for OutboxMail {
    fn from(row: OutboxRow) -> Self {
        OutboxMail {
            id: row.id,
            kind: row.kind,
            sender: row.sender,
            recipient: row.recipient,
            message: row.message,
            created_at: row.created_at,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        }
    }
}

/// Mails given up are kept this long for the operator, then purged.
const FAILED_MAIL_RETENTION: time::Duration = time::Duration::days(30);

/// The user a new account becomes, before it is written.
fn user_to_create(new_user: &NewUser) -> User {
    User {
        id: Uuid::now_v7(),
        email: new_user.email.as_str().to_owned(),
        email_verified: new_user.email_verified,
        name: new_user.name.as_str().to_owned(),
        role: new_user.role,
        department: new_user.department.clone(),
        disabled: false,
        created_at: now_stored(),
    }
}

/// Maps a broken foreign key (the user is gone) to `NotFound`, anything
/// else as is.
fn missing_user(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => StoreError::NotFound,
        _ => error.into(),
    }
}

/// Maps a broken uniqueness rule to `Conflict(field)`, anything else as is.
fn conflict_on(field: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::Conflict(field)
        }
        _ => error.into(),
    }
}

/// Nine values a row: far below both backends' limit on bound values.
const AUDIT_ROWS_PER_STATEMENT: usize = 500;

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Whether `changes` take admin rights from an active admin.
fn loses_admin(role: Role, disabled: bool, changes: &UserChanges) -> bool {
    role == Role::Admin
        && !disabled
        && (changes.role.is_some_and(|role| role != Role::Admin) || changes.disabled == Some(true))
}

/// The columns of `MfaChallenge`.
macro_rules! mfa_challenge_columns {
    () => {
        "token_hash, user_id, login_kind, sign_in, attempts, expires_at, passkey_state"
    };
}

/// The columns of `PasskeyRecord`.
macro_rules! passkey_columns {
    () => {
        "id, user_id, credential_id, name, passkey, created_at, last_used_at"
    };
}

/// `prefix`, the user columns, `suffix`: one literal, so the query text
/// stays `&'static str`.
macro_rules! concat_users {
    ($prefix:literal, $suffix:literal) => {
        concat!($prefix, "id, email, email_verified, name, role, department, disabled, created_at", $suffix)
    };
}

/// The store traits for `SqlStore<$db>`; `$greatest` is the dialect's name
/// for the larger of two values (`MAX` in SQLite, `GREATEST` in PostgreSQL);
/// `$lock_row` what locks the rows a `SELECT` reads until the transaction
/// ends (nothing in SQLite, whose `BEGIN IMMEDIATE` already holds the write
/// lock; `FOR NO KEY UPDATE` in PostgreSQL, which still lets other
/// transactions insert rows that refer to the user); `$skip_locked` what
/// makes a queue's claim pass over rows another claim holds (nothing in
/// SQLite, where one write runs at a time; `FOR UPDATE SKIP LOCKED` in
/// PostgreSQL, so two instances never claim the same mail).
macro_rules! sql_store {
    ($db:ty, greatest = $greatest:literal, lock_row = $lock_row:literal, skip_locked = $skip_locked:literal) => {
        impl SqlStore<$db> {
            async fn insert_user(
                connection: &mut <$db as sqlx::Database>::Connection,
                new_user: NewUser,
            ) -> Result<User, StoreError> {
                let user = user_to_create(&new_user);
                sqlx::query(
                    "INSERT INTO users (id, email, email_key, name, role, department, password_hash, disabled, \
                                        email_verified, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $9, $8, $8)",
                )
                .bind(user.id)
                .bind(&user.email)
                .bind(new_user.email.key())
                .bind(&user.name)
                .bind(user.role.as_str())
                .bind(&user.department)
                .bind(&new_user.password_hash)
                .bind(user.created_at)
                .bind(user.email_verified)
                .execute(connection)
                .await
                .map_err(conflict_on("email"))?;
                Ok(user)
            }

            async fn insert_identity(
                connection: &mut <$db as sqlx::Database>::Connection,
                identity: &Identity,
                user_id: Uuid,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO oauth_identities (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&identity.provider)
                .bind(&identity.subject)
                .bind(user_id)
                .bind(now_stored())
                .execute(connection)
                .await
                .map_err(conflict_on("identity"))?;
                Ok(())
            }

            async fn write_password_hash(
                connection: &mut <$db as sqlx::Database>::Connection,
                id: Uuid,
                phc: &str,
            ) -> Result<(), StoreError> {
                let done = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                    .bind(phc)
                    .bind(now_stored())
                    .bind(id)
                    .execute(connection)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn write_api_key(
                connection: &mut <$db as sqlx::Database>::Connection,
                key: &ApiKeyRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO api_keys (id, user_id, name, scopes, secret_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(key.id)
                .bind(key.user_id)
                .bind(&key.name)
                .bind(key.scopes.to_stored())
                .bind(&key.secret_hash[..])
                .bind(key.created_at)
                .bind(key.expires_at)
                .execute(connection)
                .await
                .map_err(missing_user)?;
                Ok(())
            }

            /// The role, department and state of `id` inside an admin
            /// change, and how many admins are active.
            async fn admin_standing(
                transaction: &mut Transaction<'static, $db>,
                id: Uuid,
            ) -> Result<(Role, Option<String>, bool, u64), StoreError> {
                // One round trip: the lock is held for as short as it can be.
                let (role, department, disabled, active): (Role, Option<String>, bool, i64) = sqlx::query_as(
                    "SELECT role, department, disabled, \
                            (SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled) \
                     FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&mut **transaction)
                .await?;
                Ok((role, department, disabled, count(active)))
            }

            /// Ends a refused rotation: rolled back now, not when the pool
            /// next hands out its connection (on SQLite, `BEGIN IMMEDIATE`'s
            /// write lock would be held until then).
            async fn refuse(
                transaction: Transaction<'static, $db>,
                answer: RefreshUse,
            ) -> Result<RefreshUse, StoreError> {
                transaction.rollback().await?;
                Ok(answer)
            }

            /// Locks `user_id`'s row inside a refresh-token change, so that
            /// a rotation and a revocation of that user's tokens (or the
            /// user's deletion) never interleave; `None` when the user is
            /// gone, else whether they are disabled.
            async fn lock_user(
                transaction: &mut Transaction<'static, $db>,
                user_id: Uuid,
            ) -> Result<Option<bool>, StoreError> {
                Ok(sqlx::query_scalar(concat!("SELECT disabled FROM users WHERE id = $1", $lock_row))
                    .bind(user_id)
                    .fetch_optional(&mut **transaction)
                    .await?)
            }
        }

        #[async_trait]
        impl UserStore for SqlStore<$db> {
            async fn create_user(&self, new_user: NewUser) -> Result<User, StoreError> {
                Self::insert_user(&mut *self.pool.acquire().await?, new_user).await
            }

            async fn user_shared(&self, id: Uuid) -> Result<Arc<User>, StoreError> {
                let query = sqlx::query_as(concat_users!("SELECT ", " FROM users WHERE id = $1"));
                Ok(Arc::new(query.bind(id).fetch_one(&self.pool).await?))
            }

            async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError> {
                Ok(sqlx::query_as(concat_users!("SELECT ", ", password_hash FROM users WHERE email_key = $1"))
                    .bind(email.key())
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError> {
                Ok(sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn set_password_hash(&self, id: Uuid, phc: &str) -> Result<(), StoreError> {
                Self::write_password_hash(&mut *self.pool.acquire().await?, id, phc).await
            }

            async fn apply_user_change(&self, id: Uuid, changes: &UserChanges) -> Result<UserChange, StoreError> {
                // The write lock even for a rename: on SQLite a deferred
                // transaction that reads and then writes fails when another
                // write lands in between. On PostgreSQL the user's row is
                // locked too, so two changes of one user compare against
                // each other's result, never against the same old row.
                let mut transaction = <$db as Dialect>::begin_admin_change(&self.pool).await?;
                Self::lock_user(&mut transaction, id).await?;
                let (role, department, disabled, active_admins) = Self::admin_standing(&mut transaction, id).await?;
                if loses_admin(role, disabled, changes) && active_admins <= 1 {
                    // At once, not when the pool gets round to it: the lock
                    // must not outlive the refusal.
                    transaction.rollback().await?;
                    return Err(StoreError::LastActiveAdmin);
                }
                let user: User = sqlx::query_as(concat_users!(
                    "UPDATE users SET name = COALESCE(CAST($7 AS TEXT), name), \
                                      role = COALESCE(CAST($1 AS TEXT), role), \
                                      department = CASE WHEN CAST($2 AS BOOLEAN) THEN $3 ELSE department END, \
                                      disabled = COALESCE(CAST($4 AS BOOLEAN), disabled), \
                                      updated_at = $5 \
                     WHERE id = $6 RETURNING ",
                    ""
                ))
                .bind(changes.role.map(Role::as_str))
                .bind(changes.department.is_some())
                .bind(changes.department.clone().flatten())
                .bind(changes.disabled)
                .bind(now_stored())
                .bind(id)
                .bind(changes.name.as_ref().map(UserName::as_str))
                .fetch_one(&mut *transaction)
                .await?;
                // Keys never outlive the role, department or access they
                // were made under: gone with the change, in its transaction.
                let access_changed = user.role != role
                    || user.department.as_ref().map(Department::as_str) != department.as_deref()
                    || (user.disabled && !disabled);
                if access_changed {
                    sqlx::query("DELETE FROM api_keys WHERE user_id = $1").bind(id).execute(&mut *transaction).await?;
                }
                transaction.commit().await?;
                Ok(UserChange { role_changed: user.role != role, access_changed, user })
            }

            async fn delete_user(&self, id: Uuid) -> Result<(), StoreError> {
                let mut transaction = <$db as Dialect>::begin_admin_change(&self.pool).await?;
                let (role, _, disabled, active_admins) = Self::admin_standing(&mut transaction, id).await?;
                if role == Role::Admin && !disabled && active_admins <= 1 {
                    transaction.rollback().await?;
                    return Err(StoreError::LastActiveAdmin);
                }
                sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *transaction).await?;
                transaction.commit().await?;
                Ok(())
            }

            async fn list_users(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<User>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(concat_users!("SELECT ", " FROM users WHERE 1 = 1"));
                if let Some(after) = after {
                    query.push(" AND id > ").push_bind(after);
                }
                query.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
                Ok(query.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn count_admins(&self) -> Result<u64, StoreError> {
                let admins: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetch_one(&self.pool).await?;
                Ok(count(admins))
            }
        }

        #[async_trait]
        impl TokenStore for SqlStore<$db> {
            async fn insert_refresh_token(&self, record: &RefreshTokenRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at, sign_in) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&record.token_hash[..])
                .bind(record.family_id)
                .bind(record.user_id)
                .bind(record.issued_at)
                .bind(record.expires_at)
                .bind(record.sign_in.as_str())
                .execute(&self.pool)
                .await
                .map_err(missing_user)?;
                Ok(())
            }

            async fn rotate_refresh_token(
                &self,
                token_hash: &[u8; 32],
                successor: &RefreshSuccessor,
                now: OffsetDateTime,
            ) -> Result<RefreshUse, StoreError> {
                type TokenRow = (
                    Uuid,
                    Uuid,
                    OffsetDateTime,
                    Option<OffsetDateTime>,
                    Option<OffsetDateTime>,
                    OffsetDateTime,
                    SignInMethod,
                );
                const READ_TOKEN: &str = "SELECT family_id, user_id, issued_at, used_at, revoked_at, expires_at, \
                                          sign_in FROM refresh_tokens WHERE token_hash = $1";
                let mut transaction = <$db as Dialect>::begin_refresh_change(&self.pool).await?;
                let found: Option<TokenRow> =
                    sqlx::query_as(READ_TOKEN).bind(&token_hash[..]).fetch_optional(&mut *transaction).await?;
                let Some((_, user_id, ..)) = found else {
                    return Self::refuse(transaction, RefreshUse::Invalid).await;
                };
                // Under the user's lock, read the token again: a rotation or
                // revocation that committed meanwhile is seen now.
                let disabled = Self::lock_user(&mut transaction, user_id).await?;
                let found: Option<TokenRow> =
                    sqlx::query_as(READ_TOKEN).bind(&token_hash[..]).fetch_optional(&mut *transaction).await?;
                let Some((family_id, user_id, issued_at, used_at, revoked_at, expires_at, sign_in)) = found else {
                    return Self::refuse(transaction, RefreshUse::Invalid).await;
                };
                if used_at.is_some() {
                    return Self::refuse(transaction, RefreshUse::Reused { family_id, user_id }).await;
                }
                if revoked_at.is_some() || expires_at <= now || disabled != Some(false) {
                    return Self::refuse(transaction, RefreshUse::Invalid).await;
                }
                // The stored revocations too: a family or user revoked in
                // the list whose refresh tokens were not (yet) marked.
                let revoked: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM revocations \
                     WHERE (kind = 'family' AND subject = $1) \
                        OR (kind = 'user' AND subject = $2 AND revoked_before > $3)",
                )
                .bind(family_id)
                .bind(user_id)
                .bind(issued_at)
                .fetch_one(&mut *transaction)
                .await?;
                if revoked > 0 {
                    return Self::refuse(transaction, RefreshUse::Invalid).await;
                }
                sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2")
                    .bind(now)
                    .bind(&token_hash[..])
                    .execute(&mut *transaction)
                    .await?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at, sign_in) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&successor.token_hash[..])
                .bind(family_id)
                .bind(user_id)
                .bind(now)
                .bind(successor.expires_at)
                .bind(sign_in.as_str())
                .execute(&mut *transaction)
                .await?;
                transaction.commit().await?;
                Ok(RefreshUse::Rotated { family_id, user_id, sign_in })
            }

            async fn revoke_refresh_family(&self, family_id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
                let mut transaction = <$db as Dialect>::begin_refresh_change(&self.pool).await?;
                let users: Vec<Uuid> =
                    sqlx::query_scalar("SELECT DISTINCT user_id FROM refresh_tokens WHERE family_id = $1")
                        .bind(family_id)
                        .fetch_all(&mut *transaction)
                        .await?;
                for user_id in users {
                    Self::lock_user(&mut transaction, user_id).await?;
                }
                // A new statement: it sees a successor a rotation committed
                // while this waited for the lock.
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(family_id)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                Ok(())
            }

            async fn revoke_user_refresh_tokens(&self, user_id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
                let mut transaction = <$db as Dialect>::begin_refresh_change(&self.pool).await?;
                Self::lock_user(&mut transaction, user_id).await?;
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                Ok(())
            }

            async fn insert_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
                sqlx::query(concat!(
                    "INSERT INTO revocations (kind, subject, revoked_before, expires_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (kind, subject) DO UPDATE SET revoked_before = excluded.revoked_before, \
                     expires_at = ",
                    $greatest,
                    "(revocations.expires_at, excluded.expires_at)"
                ))
                .bind(revocation.kind.as_str())
                .bind(revocation.subject)
                .bind(revocation.revoked_before)
                .bind(revocation.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn active_revocations(&self, now: OffsetDateTime) -> Result<Vec<Revocation>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT kind, subject, revoked_before, expires_at FROM revocations WHERE expires_at > $1",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?)
            }
        }

        #[async_trait]
        impl SessionStore for SqlStore<$db> {
            async fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, csrf_hash, created_at, idle_expires_at, \
                                           absolute_expires_at, sign_in) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&record.id_hash[..])
                .bind(record.user_id)
                .bind(&record.csrf_hash[..])
                .bind(record.created_at)
                .bind(record.idle_expires_at)
                .bind(record.absolute_expires_at)
                .bind(record.sign_in.as_str())
                .execute(&self.pool)
                .await
                .map_err(missing_user)?;
                Ok(())
            }

            async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id_hash, user_id, csrf_hash, created_at, idle_expires_at, absolute_expires_at, sign_in \
                     FROM sessions WHERE id_hash = $1",
                )
                .bind(&id_hash[..])
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn extend_session(
                &self,
                id_hash: &[u8; 32],
                idle_expires_at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                sqlx::query("UPDATE sessions SET idle_expires_at = $1 WHERE id_hash = $2")
                    .bind(idle_expires_at)
                    .bind(&id_hash[..])
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(&id_hash[..]).execute(&self.pool).await?;
                Ok(())
            }

            async fn delete_user_sessions(&self, user_id: Uuid) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&self.pool).await?;
                Ok(())
            }
        }

        #[async_trait]
        impl PostStore for SqlStore<$db> {
            async fn create_post(
                &self,
                author_id: Uuid,
                title: &PostTitle,
                body: &PostBody,
            ) -> Result<Post, StoreError> {
                let now = now_stored();
                let post = Post {
                    id: Uuid::now_v7(),
                    title: title.as_str().to_owned(),
                    body: body.as_str().to_owned(),
                    author_id,
                    created_at: now,
                    updated_at: now,
                };
                sqlx::query(
                    "INSERT INTO posts (id, author_id, title, body, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                )
                .bind(post.id)
                .bind(post.author_id)
                .bind(&post.title)
                .bind(&post.body)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(post)
            }

            async fn post_by_id(&self, id: Uuid) -> Result<PostWithAuthor, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT p.id, p.title, p.body, p.author_id, p.created_at, p.updated_at, \
                            u.department AS author_department, u.role AS author_role \
                     FROM posts p LEFT JOIN users u ON u.id = p.author_id WHERE p.id = $1",
                )
                .bind(id)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn update_post(&self, id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError> {
                Ok(sqlx::query_as(
                    "UPDATE posts SET title = $1, body = $2, updated_at = $3 WHERE id = $4 \
                     RETURNING id, title, body, author_id, created_at, updated_at",
                )
                .bind(title.as_str())
                .bind(body.as_str())
                .bind(now_stored())
                .bind(id)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn delete_post(&self, id: Uuid) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM posts WHERE id = $1").bind(id).execute(&self.pool).await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn list_posts(&self, before: Option<Uuid>, limit: u32) -> Result<Arc<PostsPage>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, title, body, author_id, created_at, updated_at FROM posts WHERE 1 = 1",
                );
                if let Some(before) = before {
                    query.push(" AND id < ").push_bind(before);
                }
                query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
                Ok(Arc::new(query.build_query_as().fetch_all(&self.pool).await?))
            }
        }

        #[async_trait]
        impl AuditStore for SqlStore<$db> {
            async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
                let mut transaction = self.pool.begin().await?;
                // One statement per chunk: a batch from the audit queue is
                // one round trip, not one per event.
                for chunk in events.chunks(AUDIT_ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_events (id, time, request_id, event, user_id, client_ip, route, outcome, detail) ",
                    );
                    query.push_values(chunk, |mut row, event| {
                        row.push_bind(event.id)
                            .push_bind(event.time)
                            .push_bind(event.request_id.clone())
                            .push_bind(event.event.as_str())
                            .push_bind(event.user_id)
                            .push_bind(event.client_ip.map(|ip| ip.to_string()))
                            .push_bind(event.route.clone())
                            .push_bind(event.outcome.as_str())
                            .push_bind(event.detail.clone());
                    });
                    query.build().execute(&mut *transaction).await?;
                }
                transaction.commit().await?;
                Ok(())
            }

            async fn purge_audit_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
                let done =
                    sqlx::query("DELETE FROM audit_events WHERE time < $1").bind(before).execute(&self.pool).await?;
                Ok(done.rows_affected())
            }

            async fn list_audit_events(
                &self,
                filter: &AuditFilter,
                before: Option<Uuid>,
                limit: u32,
            ) -> Result<Vec<AuditEvent>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, time, request_id, event, user_id, client_ip, route, outcome, detail \
                     FROM audit_events WHERE 1 = 1",
                );
                if let Some(event) = &filter.event {
                    query.push(" AND event = ").push_bind(event.clone());
                }
                if let Some(user_id) = filter.user_id {
                    query.push(" AND user_id = ").push_bind(user_id);
                }
                if let Some(ip) = filter.client_ip {
                    query.push(" AND client_ip = ").push_bind(ip.to_string());
                }
                if let Some(from) = filter.from {
                    query.push(" AND time >= ").push_bind(from);
                }
                if let Some(to) = filter.to {
                    query.push(" AND time <= ").push_bind(to);
                }
                if let Some(before) = before {
                    query.push(" AND id < ").push_bind(before);
                }
                query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
                let rows: Vec<AuditRow> = query.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(AuditEvent::from).collect())
            }
        }

        #[async_trait]
        impl BlockStore for SqlStore<$db> {
            async fn insert_block(&self, block: &Block) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO blocks (id, ip, reason, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(block.id)
                    .bind(&block.ip)
                    .bind(&block.reason)
                    .bind(block.created_at)
                    .bind(block.expires_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_block(&self, id: Uuid) -> Result<Block, StoreError> {
                Ok(sqlx::query_as("DELETE FROM blocks WHERE id = $1 RETURNING id, ip, reason, created_at, expires_at")
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn list_blocks(
                &self,
                now: OffsetDateTime,
                before: Option<Uuid>,
                limit: u32,
            ) -> Result<Vec<Block>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, ip, reason, created_at, expires_at FROM blocks \
                     WHERE (expires_at IS NULL OR expires_at > ",
                );
                query.push_bind(now).push(")");
                if let Some(before) = before {
                    query.push(" AND id < ").push_bind(before);
                }
                query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
                Ok(query.build_query_as().fetch_all(&self.pool).await?)
            }
        }

        #[async_trait]
        impl IdentityStore for SqlStore<$db> {
            async fn user_by_identity(&self, identity: &Identity) -> Result<Option<User>, StoreError> {
                Ok(sqlx::query_as(concat_users!(
                    "SELECT ",
                    " FROM users WHERE id = (SELECT user_id FROM oauth_identities WHERE provider = $1 AND subject = $2)"
                ))
                .bind(&identity.provider)
                .bind(&identity.subject)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn link_identity(&self, identity: &Identity, user_id: Uuid) -> Result<(), StoreError> {
                Self::insert_identity(&mut *self.pool.acquire().await?, identity, user_id).await
            }

            async fn insert_oauth_flow(&self, flow: &OAuthFlow) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO oauth_flows (id_hash, provider, state_hash, pkce_verifier, nonce, redirect_to, \
                                              expires_at, link_user_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&flow.id_hash[..])
                .bind(&flow.provider)
                .bind(&flow.state_hash[..])
                .bind(&flow.pkce_verifier)
                .bind(&flow.nonce)
                .bind(&flow.redirect_to)
                .bind(flow.expires_at)
                .bind(flow.link_user_id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn take_oauth_flow(
                &self,
                id_hash: &[u8; 32],
                now: OffsetDateTime,
            ) -> Result<Option<OAuthFlow>, StoreError> {
                let flow: Option<OAuthFlow> = sqlx::query_as(
                    "DELETE FROM oauth_flows WHERE id_hash = $1 \
                     RETURNING id_hash, provider, state_hash, pkce_verifier, nonce, redirect_to, expires_at, \
                               link_user_id",
                )
                .bind(&id_hash[..])
                .fetch_optional(&self.pool)
                .await?;
                Ok(flow.filter(|flow| flow.expires_at > now))
            }
        }

        #[async_trait]
        impl ApiKeyStore for SqlStore<$db> {
            async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
                Self::write_api_key(&mut *self.pool.acquire().await?, key).await
            }

            async fn api_key(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT ");
                query.push(API_KEY_COLUMNS).push(" FROM api_keys WHERE id = ").push_bind(id);
                let row: Option<ApiKeyRow> = query.build_query_as().fetch_optional(&self.pool).await?;
                row.map(ApiKeyRecord::try_from).transpose()
            }

            async fn api_key_and_owner(&self, id: Uuid) -> Result<Option<(ApiKeyRecord, User)>, StoreError> {
                let Some(key) = self.api_key(id).await? else {
                    return Ok(None);
                };
                let query = sqlx::query_as(concat_users!("SELECT ", " FROM users WHERE id = $1"));
                let owner: Option<User> = query.bind(key.user_id).fetch_optional(&self.pool).await?;
                Ok(owner.map(|owner| (key, owner)))
            }

            async fn list_api_keys(
                &self,
                user_id: Option<Uuid>,
                now: OffsetDateTime,
                after: Option<Uuid>,
                limit: u32,
            ) -> Result<Vec<ApiKeyRecord>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT ");
                query.push(API_KEY_COLUMNS).push(" FROM api_keys WHERE expires_at > ").push_bind(now);
                if let Some(user_id) = user_id {
                    query.push(" AND user_id = ").push_bind(user_id);
                }
                if let Some(after) = after {
                    query.push(" AND id > ").push_bind(after);
                }
                query.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
                let rows: Vec<ApiKeyRow> = query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(ApiKeyRecord::try_from).collect()
            }

            async fn delete_api_key(&self, id: Uuid, owner: Option<Uuid>) -> Result<ApiKeyRecord, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("DELETE FROM api_keys WHERE id = ");
                query.push_bind(id);
                if let Some(owner) = owner {
                    query.push(" AND user_id = ").push_bind(owner);
                }
                query.push(" RETURNING ").push(API_KEY_COLUMNS);
                let row: Option<ApiKeyRow> = query.build_query_as().fetch_optional(&self.pool).await?;
                row.ok_or(StoreError::NotFound)?.try_into()
            }

            async fn delete_user_api_keys(&self, user_id: Uuid) -> Result<u64, StoreError> {
                let done =
                    sqlx::query("DELETE FROM api_keys WHERE user_id = $1").bind(user_id).execute(&self.pool).await?;
                Ok(done.rows_affected())
            }

            async fn touch_api_keys(&self, uses: &[(Uuid, OffsetDateTime)]) -> Result<(), StoreError> {
                let mut transaction = self.pool.begin().await?;
                for (id, at) in uses {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $1 \
                         WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                    )
                    .bind(*at)
                    .bind(*id)
                    .execute(&mut *transaction)
                    .await?;
                }
                transaction.commit().await?;
                Ok(())
            }
        }

        #[async_trait]
        impl MailStore for SqlStore<$db> {
            async fn email_token(
                &self,
                token_hash: &[u8; 32],
                purpose: EmailPurpose,
                now: OffsetDateTime,
            ) -> Result<Option<EmailTokenRecord>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT ");
                query.push(EMAIL_TOKEN_COLUMNS).push(" FROM email_tokens WHERE token_hash = ");
                query.push_bind(&token_hash[..]).push(" AND purpose = ").push_bind(purpose.as_str());
                query.push(" AND expires_at > ").push_bind(now);
                let row: Option<EmailTokenRow> = query.build_query_as().fetch_optional(&self.pool).await?;
                row.map(EmailTokenRecord::try_from).transpose()
            }

            async fn latest_email_token_at(
                &self,
                user_id: Uuid,
                purpose: EmailPurpose,
            ) -> Result<Option<OffsetDateTime>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT created_at FROM email_tokens WHERE user_id = $1 AND purpose = $2 \
                     ORDER BY created_at DESC LIMIT 1",
                )
                .bind(user_id)
                .bind(purpose.as_str())
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn claim_mail(
                &self,
                now: OffsetDateTime,
                lease_until: OffsetDateTime,
                limit: u32,
            ) -> Result<Vec<OutboxMail>, StoreError> {
                let rows: Vec<OutboxRow> = sqlx::query_as(concat!(
                    "UPDATE outbox SET next_attempt_at = $2, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM outbox \
                                  WHERE failed_at IS NULL AND next_attempt_at <= $1 \
                                  ORDER BY next_attempt_at, id LIMIT $3",
                    $skip_locked,
                    ") RETURNING id, kind, sender, recipient, message, created_at, \
                                 CAST(attempts AS BIGINT) AS attempts"
                ))
                .bind(now)
                .bind(lease_until)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                let mut mails: Vec<OutboxMail> = rows.into_iter().map(OutboxMail::from).collect();
                mails.sort_by_key(|mail| (mail.created_at, mail.id));
                Ok(mails)
            }

            async fn mail_sent(&self, id: Uuid) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(&self.pool).await?;
                Ok(())
            }

            async fn mail_deferred(
                &self,
                id: Uuid,
                next_attempt_at: OffsetDateTime,
                error: &str,
            ) -> Result<(), StoreError> {
                sqlx::query("UPDATE outbox SET next_attempt_at = $2, last_error = $3 WHERE id = $1")
                    .bind(id)
                    .bind(next_attempt_at)
                    .bind(error)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn mail_failed(&self, id: Uuid, at: OffsetDateTime, error: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE outbox SET failed_at = $2, last_error = $3 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .bind(error)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
                let (queued, failed): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*) FILTER (WHERE failed_at IS NULL), COUNT(*) FILTER (WHERE failed_at IS NOT NULL) \
                     FROM outbox",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(OutboxCounts { queued: count(queued), failed: count(failed) })
            }
        }

        #[async_trait]
        impl Store for SqlStore<$db> {
            async fn migrate(&self) -> Result<(), StoreError> {
                <$db as Dialect>::MIGRATOR.run(&self.pool).await.map_err(anyhow::Error::from)?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn purge_expired(&self, now: OffsetDateTime) -> Result<(), StoreError> {
                for statement in [
                    "DELETE FROM revocations WHERE expires_at <= $1",
                    "DELETE FROM sessions WHERE idle_expires_at <= $1 OR absolute_expires_at <= $1",
                    "DELETE FROM refresh_tokens WHERE expires_at <= $1",
                    "DELETE FROM oauth_flows WHERE expires_at <= $1",
                    "DELETE FROM api_keys WHERE expires_at <= $1",
                    "DELETE FROM email_tokens WHERE expires_at <= $1",
                    "DELETE FROM mfa_challenges WHERE expires_at <= $1",
                    "DELETE FROM passkey_registrations WHERE expires_at <= $1",
                    "DELETE FROM passkey_sign_ins WHERE expires_at <= $1",
                ] {
                    sqlx::query(statement).bind(now).execute(&self.pool).await?;
                }
                sqlx::query("DELETE FROM outbox WHERE failed_at <= $1")
                    .bind(now - FAILED_MAIL_RETENTION)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn count_active_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
                let sessions: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sessions WHERE idle_expires_at > $1 AND absolute_expires_at > $1",
                )
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                Ok(count(sessions))
            }

            async fn dashboard_counts(&self, now: OffsetDateTime) -> Result<DashboardCounts, StoreError> {
                // One statement: one round trip, and the figures agree with each other.
                let (users, admins, managers, plain_users, disabled, posts, sessions): (i64, i64, i64, i64, i64, i64, i64) =
                    sqlx::query_as(
                        "SELECT COUNT(*), \
                                COUNT(*) FILTER (WHERE role = 'admin'), \
                                COUNT(*) FILTER (WHERE role = 'manager'), \
                                COUNT(*) FILTER (WHERE role = 'user'), \
                                COUNT(*) FILTER (WHERE disabled), \
                                (SELECT COUNT(*) FROM posts), \
                                (SELECT COUNT(*) FROM sessions WHERE idle_expires_at > $1 AND absolute_expires_at > $1) \
                         FROM users",
                    )
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(DashboardCounts {
                    users: count(users),
                    admins: count(admins),
                    managers: count(managers),
                    plain_users: count(plain_users),
                    disabled_users: count(disabled),
                    posts: count(posts),
                    active_sessions: count(sessions),
                })
            }

            async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError> {
                Ok(Box::new(SqlUnitOfWork { transaction: self.pool.begin().await? }))
            }
        }

        #[async_trait]
        impl SecondFactorStore for SqlStore<$db> {
            async fn totp_factor(&self, user_id: Uuid) -> Result<Option<TotpFactor>, StoreError> {
                let row: Option<(Vec<u8>, OffsetDateTime, Option<OffsetDateTime>, Option<i64>)> = sqlx::query_as(
                    "SELECT secret, created_at, confirmed_at, last_step FROM totp_factors WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(secret, created_at, confirmed_at, last_step)| TotpFactor {
                    user_id,
                    secret,
                    created_at,
                    confirmed_at,
                    last_step,
                }))
            }

            async fn begin_totp(&self, user_id: Uuid, secret: &[u8], now: OffsetDateTime) -> Result<(), StoreError> {
                let done = sqlx::query(
                    "INSERT INTO totp_factors (user_id, secret, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at \
                     WHERE totp_factors.confirmed_at IS NULL",
                )
                .bind(user_id)
                .bind(secret)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(missing_user)?;
                if done.rows_affected() == 0 { Err(StoreError::Conflict("totp")) } else { Ok(()) }
            }

            async fn accept_totp_step(&self, user_id: Uuid, step: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE totp_factors SET last_step = $1 WHERE user_id = $2 AND confirmed_at IS NOT NULL \
                     AND (last_step IS NULL OR last_step < $1)",
                )
                .bind(step)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn use_recovery_code(
                &self,
                user_id: Uuid,
                code_hash: &[u8; 32],
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(user_id)
                .bind(&code_hash[..])
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn recovery_codes_left(&self, user_id: Uuid) -> Result<u64, StoreError> {
                let left: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
                        .bind(user_id)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(count(left))
            }

            async fn insert_mfa_challenge(&self, challenge: &MfaChallenge) -> Result<(), StoreError> {
                sqlx::query(
                    concat!("INSERT INTO mfa_challenges (", mfa_challenge_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                )
                .bind(&challenge.token_hash[..])
                .bind(challenge.user_id)
                .bind(challenge.login_kind.as_str())
                .bind(challenge.sign_in.as_str())
                .bind(challenge.attempts)
                .bind(challenge.expires_at)
                .bind(challenge.passkey_state.as_deref())
                .execute(&self.pool)
                .await
                .map_err(missing_user)?;
                Ok(())
            }

            async fn attempt_mfa_challenge(
                &self,
                token_hash: &[u8; 32],
                now: OffsetDateTime,
                max_attempts: i32,
            ) -> Result<Option<MfaChallenge>, StoreError> {
                // One statement: two concurrent attempts cannot both be the fifth.
                Ok(sqlx::query_as(concat!(
                    "UPDATE mfa_challenges SET attempts = attempts + 1 \
                     WHERE token_hash = $1 AND expires_at > $2 AND attempts < $3 RETURNING ",
                    mfa_challenge_columns!()
                ))
                .bind(&token_hash[..])
                .bind(now)
                .bind(max_attempts)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn mfa_challenge(
                &self,
                token_hash: &[u8; 32],
                now: OffsetDateTime,
                max_attempts: i32,
            ) -> Result<Option<MfaChallenge>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    mfa_challenge_columns!(),
                    " FROM mfa_challenges WHERE token_hash = $1 AND expires_at > $2 AND attempts < $3"
                ))
                .bind(&token_hash[..])
                .bind(now)
                .bind(max_attempts)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn set_mfa_passkey_state(&self, token_hash: &[u8; 32], passkey_state: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE mfa_challenges SET passkey_state = $1 WHERE token_hash = $2")
                    .bind(passkey_state)
                    .bind(&token_hash[..])
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn take_mfa_challenge(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM mfa_challenges WHERE token_hash = $1")
                    .bind(&token_hash[..])
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_user_mfa_challenges(&self, user_id: Uuid) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM mfa_challenges WHERE user_id = $1").bind(user_id).execute(&self.pool).await?;
                Ok(())
            }
        }

        #[async_trait]
        impl PasskeyStore for SqlStore<$db> {
            async fn passkeys(&self, user_id: Uuid) -> Result<Vec<PasskeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", passkey_columns!(), " FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"))
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn passkey_by_credential(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", passkey_columns!(), " FROM passkeys WHERE credential_id = $1"))
                    .bind(credential_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn record_passkey_use(&self, id: Uuid, passkey: &str, now: OffsetDateTime) -> Result<(), StoreError> {
                sqlx::query("UPDATE passkeys SET passkey = $1, last_used_at = $2 WHERE id = $3")
                    .bind(passkey)
                    .bind(now)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn begin_passkey_registration(
                &self,
                user_id: Uuid,
                pending: &PendingPasskey,
                expires_at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO passkey_registrations (user_id, name, state, expires_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, state = excluded.state, \
                     expires_at = excluded.expires_at",
                )
                .bind(user_id)
                .bind(&pending.name)
                .bind(&pending.state)
                .bind(expires_at)
                .execute(&self.pool)
                .await
                .map_err(missing_user)?;
                Ok(())
            }

            async fn take_passkey_registration(
                &self,
                user_id: Uuid,
                now: OffsetDateTime,
            ) -> Result<Option<PendingPasskey>, StoreError> {
                let row: Option<(String, String, OffsetDateTime)> = sqlx::query_as(
                    "DELETE FROM passkey_registrations WHERE user_id = $1 RETURNING name, state, expires_at",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.filter(|(_, _, expires_at)| *expires_at > now).map(|(name, state, _)| PendingPasskey { name, state }))
            }

            async fn insert_passkey_sign_in(
                &self,
                id: Uuid,
                state: &str,
                expires_at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO passkey_sign_ins (id, state, expires_at) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(state)
                    .bind(expires_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn take_passkey_sign_in(&self, id: Uuid, now: OffsetDateTime) -> Result<Option<String>, StoreError> {
                let row: Option<(String, OffsetDateTime)> =
                    sqlx::query_as("DELETE FROM passkey_sign_ins WHERE id = $1 RETURNING state, expires_at")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.filter(|(_, expires_at)| *expires_at > now).map(|(state, _)| state))
            }
        }

        #[async_trait]
        impl UnitOfWork for SqlUnitOfWork<$db> {
            async fn create_user(&mut self, new_user: NewUser) -> Result<User, StoreError> {
                SqlStore::<$db>::insert_user(&mut self.transaction, new_user).await
            }

            async fn link_identity(&mut self, identity: &Identity, user_id: Uuid) -> Result<(), StoreError> {
                SqlStore::<$db>::insert_identity(&mut self.transaction, identity, user_id).await
            }

            async fn set_password_hash(&mut self, id: Uuid, phc: &str) -> Result<(), StoreError> {
                SqlStore::<$db>::write_password_hash(&mut self.transaction, id, phc).await
            }

            async fn unlink_identities(&mut self, user_id: Uuid) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM oauth_identities WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *self.transaction)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn set_email_verified(&mut self, id: Uuid, email: &str) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE users SET email_verified = TRUE, updated_at = $1 WHERE id = $2 AND email = $3",
                )
                .bind(now_stored())
                .bind(id)
                .bind(email)
                .execute(&mut *self.transaction)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> Result<(), StoreError> {
                SqlStore::<$db>::write_api_key(&mut self.transaction, key).await
            }

            async fn insert_email_token(&mut self, token: &EmailTokenRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO email_tokens (token_hash, purpose, user_id, email, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&token.token_hash[..])
                .bind(token.purpose.as_str())
                .bind(token.user_id)
                .bind(&token.email)
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(&mut *self.transaction)
                .await
                .map_err(missing_user)?;
                Ok(())
            }

            async fn take_email_token(
                &mut self,
                token_hash: &[u8; 32],
                purpose: EmailPurpose,
                now: OffsetDateTime,
            ) -> Result<Option<EmailTokenRecord>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("DELETE FROM email_tokens WHERE token_hash = ");
                query.push_bind(&token_hash[..]).push(" AND purpose = ").push_bind(purpose.as_str());
                query.push(" RETURNING ").push(EMAIL_TOKEN_COLUMNS);
                let row: Option<EmailTokenRow> = query.build_query_as().fetch_optional(&mut *self.transaction).await?;
                // An expired token is gone as well: it never works again.
                Ok(row.map(EmailTokenRecord::try_from).transpose()?.filter(|token| token.expires_at > now))
            }

            async fn delete_email_tokens(&mut self, user_id: Uuid, purpose: EmailPurpose) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2")
                    .bind(user_id)
                    .bind(purpose.as_str())
                    .execute(&mut *self.transaction)
                    .await?;
                Ok(())
            }

            async fn enqueue_mail(&mut self, mail: &OutboxMail) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO outbox (id, kind, sender, recipient, message, created_at, next_attempt_at, attempts) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, 0)",
                )
                .bind(mail.id)
                .bind(&mail.kind)
                .bind(&mail.sender)
                .bind(&mail.recipient)
                .bind(&mail.message)
                .bind(mail.created_at)
                .execute(&mut *self.transaction)
                .await?;
                Ok(())
            }

            async fn confirm_totp(
                &mut self,
                user_id: Uuid,
                step: i64,
                recovery_code_hashes: &[[u8; 32]],
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE totp_factors SET confirmed_at = $1, last_step = $2 \
                     WHERE user_id = $3 AND confirmed_at IS NULL",
                )
                .bind(now)
                .bind(step)
                .bind(user_id)
                .execute(&mut *self.transaction)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *self.transaction)
                    .await?;
                for hash in recovery_code_hashes {
                    sqlx::query("INSERT INTO recovery_codes (code_hash, user_id) VALUES ($1, $2)")
                        .bind(&hash[..])
                        .bind(user_id)
                        .execute(&mut *self.transaction)
                        .await?;
                }
                Ok(true)
            }

            async fn delete_totp(&mut self, user_id: Uuid) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *self.transaction)
                    .await?;
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *self.transaction)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_passkey(&mut self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO passkeys (id, user_id, credential_id, name, passkey, created_at, last_used_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(passkey.id)
                .bind(passkey.user_id)
                .bind(&passkey.credential_id)
                .bind(&passkey.name)
                .bind(&passkey.passkey)
                .bind(passkey.created_at)
                .bind(passkey.last_used_at)
                .execute(&mut *self.transaction)
                .await
                .map_err(|error| match &error {
                    sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                        StoreError::Conflict("passkey")
                    }
                    _ => missing_user(error),
                })?;
                Ok(())
            }

            async fn delete_passkey(&mut self, id: Uuid, owner: Uuid) -> Result<PasskeyRecord, StoreError> {
                let row: Option<PasskeyRecord> = sqlx::query_as(concat!(
                    "DELETE FROM passkeys WHERE id = $1 AND user_id = $2 RETURNING ",
                    passkey_columns!()
                ))
                .bind(id)
                .bind(owner)
                .fetch_optional(&mut *self.transaction)
                .await?;
                row.ok_or(StoreError::NotFound)
            }

            async fn commit(self: Box<Self>) -> Result<(), StoreError> {
                self.transaction.commit().await?;
                Ok(())
            }
        }
    };
}

sql_store!(sqlx::Sqlite, greatest = "MAX", lock_row = "", skip_locked = "");
sql_store!(
    sqlx::Postgres,
    greatest = "GREATEST",
    lock_row = " FOR NO KEY UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED"
);
