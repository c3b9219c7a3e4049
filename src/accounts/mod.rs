//! Account operations shared by the HTTP routes, the CLI and bootstrap, so
//! every way of creating a user or signing in applies the same rules:
//! creation, password verification, token issuance and revocation.
//!
//! They answer with `AccountError`, which says what went wrong in account
//! terms; `error::ApiError` turns it into HTTP (`From`), and the CLI and
//! bootstrap into their own messages. `email` holds what goes by mail:
//! sign-up with its verification link, verification, password reset.

pub mod email;
pub mod mfa;
pub mod passkeys;

use secrecy::SecretString;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    app::AppState,
    audit::AuditContext,
    auth::{
        api_keys::KeyRevocation,
        oauth::ProviderAccount,
        password::{PasswordCheck, PasswordHasher},
        secret,
        throttle::Attempt,
    },
    domain::{
        AuditKind, Department, Email, FieldError, NewUser, Outcome, Password, Role, SignInMethod, User, UserName,
    },
    layers::rate_limit::SignInRequest,
    limiter::ip_subject,
    mail::{Letter, Notice},
    metrics::OutcomeLabels,
    store::{Identity, RefreshTokenRecord, Revocation, RevocationKind, Store, StoreError, UserCredentials},
};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Fields that break their rules, every one of them (400).
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// The email belongs to another account (409).
    #[error("conflict: An account with this email already exists.")]
    EmailTaken,
    /// A failed sign-in, whatever the reason, so nothing can be learnt
    /// from it (401).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A second step that failed, whatever the reason (401).
    #[error("second step failed")]
    SecondStepFailed,
    /// A second-factor code that does not prove anything now: wrong,
    /// reused, an earlier step's (403, like a wrong current password).
    #[error("wrong code")]
    WrongCode,
    /// A TOTP confirmation with no enrolment waiting (409).
    #[error("conflict: no TOTP enrolment is waiting")]
    NoPendingEnrolment,
    /// TOTP turned off while it is not on (409).
    #[error("conflict: TOTP is not on")]
    SecondFactorOff,
    /// Passkeys are off on this server (`AppState::passkeys`; 404).
    #[error("passkeys are off")]
    PasskeysOff,
    /// A passkey registration's finish with none waiting (409).
    #[error("conflict: no passkey registration is waiting")]
    NoPendingPasskey,
    /// The authenticator's registration answer did not verify (403).
    #[error("the passkey registration did not verify")]
    PasskeyRefused,
    /// A passkey sign-in that failed, whatever the reason (401).
    #[error("passkey sign-in failed")]
    PasskeySignInFailed,
    /// Throttled or over the login rate limit (429 with `Retry-After`).
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    /// The store refused or failed (`NotFound`, a conflict, the last admin).
    #[error("{}", store_error_text(.0))]
    Store(#[from] StoreError),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// A store error in the words the CLI printed before `AccountError`
/// existed (those of the `ApiError` it became).
fn store_error_text(error: &StoreError) -> String {
    match error {
        StoreError::NotFound => "not found".to_owned(),
        StoreError::Conflict(what) => format!("conflict: {what}"),
        StoreError::LastActiveAdmin => "conflict: This would leave no active admin.".to_owned(),
        StoreError::Unavailable(cause) => format!("database unavailable: {cause:#}"),
        StoreError::Other(cause) => format!("internal error: {cause:#}"),
    }
}

/// Unvalidated input for a new password account.
pub struct AccountRequest<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password: SecretString,
    pub role: Role,
    pub department: Option<String>,
    /// Whether the email counts as proven (`User::email_verified`): true
    /// for the CLI and `[bootstrap]`, whose operator vouches for it; false
    /// for a sign-up, where anyone may type any address.
    pub email_verified: bool,
}

/// Validates every field (reporting all failures at once), hashes the
/// password and stores the user. A taken email is `Conflict`.
pub async fn create_account(
    store: &dyn Store,
    hasher: &PasswordHasher,
    request: AccountRequest<'_>,
) -> Result<User, AccountError> {
    let new_user = prepare_account(hasher, request).await?;
    store.create_user(new_user).await.map_err(email_taken)
}

/// A new user from `request`: every field validated (all failures
/// reported at once), the password hashed; not stored yet.
pub async fn prepare_account(hasher: &PasswordHasher, request: AccountRequest<'_>) -> Result<NewUser, AccountError> {
    let mut errors = Vec::new();
    let email = Email::parse(request.email).map_err(|m| errors.push(FieldError::new("email", m))).ok();
    let name = UserName::parse(request.name).map_err(|m| errors.push(FieldError::new("name", m))).ok();
    // Trimmed first: the CLI has always taken `--department` with surrounding
    // tabs or line breaks, which `Department` refuses from the API.
    let department = match request.department.as_deref().map(|text| Department::parse(text.trim())) {
        None => None,
        Some(Ok(department)) => department,
        Some(Err(message)) => {
            errors.push(FieldError::new("department", message));
            None
        }
    };
    let password = match (&email, &name) {
        (Some(email), Some(name)) => {
            Password::parse(request.password, email, name).map_err(|m| errors.push(FieldError::new("password", m))).ok()
        }
        _ => None,
    };
    let (Some(email), Some(name), Some(password)) = (email, name, password) else {
        return Err(AccountError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(AccountError::Validation(errors));
    }
    let password_hash = hasher.hash(password.secret()).await?;
    Ok(NewUser {
        email,
        name,
        role: request.role,
        department,
        password_hash: Some(password_hash),
        email_verified: request.email_verified,
    })
}

/// A taken email is `EmailTaken`; other store errors pass.
fn email_taken(error: StoreError) -> AccountError {
    match error {
        StoreError::Conflict(_) => AccountError::EmailTaken,
        other => other.into(),
    }
}

/// A password sign-in that succeeded: the user, and a fresh device cookie
/// value (`auth::device`) for the client.
pub struct SignedIn {
    pub user: User,
    pub device_cookie: String,
}

/// Checks an email and password the same way whatever the outcome: the
/// login rate limit per (IP, email) and the failed-login budgets
/// (`auth::throttle`: per client, per account, per device cookie) first,
/// then one Argon2 verification (against a dummy hash when there is no
/// usable account), then the verdict. Unknown email, wrong password,
/// disabled account and password-less account all end in the same
/// `InvalidCredentials`. A success re-hashes the password when the
/// configured parameters changed, and comes with a new device cookie.
pub async fn verify_login(
    state: &AppState,
    audit: &AuditContext,
    sign_in: &SignInRequest,
    device_cookie: Option<&str>,
    email: &str,
    password: &SecretString,
) -> Result<SignedIn, AccountError> {
    // The login group's per-IP count was made before the handler; the
    // per-(IP, email) one needs the email, known only now.
    if let Err(retry_after_secs) = state.rate_limiter.admit_sign_in(sign_in, email).await {
        return Err(AccountError::TooManyRequests { retry_after_secs });
    }
    let account_key = email.trim().to_lowercase();
    let found = match Email::parse(email) {
        Ok(email) => state.store.credentials_by_email(&email).await?,
        Err(_) => None,
    };
    let (user, stored_hash) = match found {
        Some(UserCredentials { user, password_hash: Some(hash) }) => (Some(user), Some(hash)),
        Some(UserCredentials { user, password_hash: None }) => (Some(user), None),
        None => (None, None),
    };
    let now = state.clock.now();
    let attempt = Attempt {
        account: &account_key,
        client: sign_in.client_ip().map_or(0, |ip| ip_subject(ip, state.config.server.ipv6_prefix)),
        device: device_cookie.and_then(|value| state.device_cookies.verify(value, &account_key, now)),
        // A reset password changes this, which lifts the account ceiling.
        password: stored_hash.as_deref().map(secret::hash),
    };
    let budget = match state.throttle.check(&attempt).await {
        Ok(Ok(budget)) => budget,
        refused => {
            let retry_after_secs = match refused {
                Ok(Err(seconds)) => seconds,
                Ok(Ok(_)) => 1,
                // Fail closed: an unreachable Redis must not lift the ceiling.
                Err(error) => {
                    tracing::warn!(cause = %error, "the failed-login throttle is unavailable; refusing the sign-in");
                    1
                }
            };
            state.audit.record(audit.event(now, AuditKind::LoginFailure, None, Outcome::Denied));
            state.metrics.logins.get_or_create(&OutcomeLabels { outcome: "throttled" }).inc();
            return Err(AccountError::TooManyRequests { retry_after_secs });
        }
    };
    // Fetched whatever the account, so the first login of all pays for making
    // it, not the first unknown email.
    let dummy_hash = state.dummy_hash().await?;
    let hash_to_check = stored_hash.as_deref().unwrap_or(&dummy_hash);
    let checked = state.hasher.check(password, hash_to_check).await?;
    let password_ok = checked != PasswordCheck::Mismatch;
    let now = state.clock.now();
    match user {
        Some(user) if password_ok && stored_hash.is_some() && !user.disabled => {
            if let Err(error) = state.throttle.record_success(&attempt).await {
                tracing::warn!(cause = %error, "could not clear failed-login counts");
            }
            // Old parameters, or a hash of the password before NFKC.
            if checked == PasswordCheck::MatchedUnnormalised
                || stored_hash.is_some_and(|hash| state.hasher.needs_rehash(&hash))
            {
                rehash(state, user.id, password).await;
            }
            state.audit.record(audit.event(now, AuditKind::LoginSuccess, Some(user.id), Outcome::Success));
            state.metrics.logins.get_or_create(&OutcomeLabels { outcome: "success" }).inc();
            Ok(SignedIn { user, device_cookie: state.device_cookies.issue(&account_key, now) })
        }
        user => {
            if let Err(error) = state.throttle.record_failure(&attempt, budget).await {
                tracing::warn!(cause = %error, "could not count a failed login");
            }
            state.rate_limiter.count_failed_sign_in(sign_in, email).await;
            state.audit.record(audit.event(now, AuditKind::LoginFailure, user.map(|u| u.id), Outcome::Failure));
            state.metrics.logins.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
            Err(AccountError::InvalidCredentials)
        }
    }
}

/// Upgrades a hash made with old parameters; failure only costs the upgrade.
async fn rehash(state: &AppState, user_id: Uuid, password: &SecretString) {
    match state.hasher.hash(password).await {
        Ok(phc) => {
            if let Err(error) = state.store.set_password_hash(user_id, &phc).await {
                tracing::warn!(cause = %error, "could not store an upgraded password hash");
            }
        }
        Err(error) => tracing::warn!(cause = %error, "could not upgrade a password hash"),
    }
}

/// Access and refresh token, as login and refresh return them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// A signed JWT; send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(value_type = String, pattern = "^Bearer$")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single-use; trade it at `POST /auth/refresh`.
    #[schema(pattern = "^rt_[A-Za-z0-9_-]{43}$")]
    pub refresh_token: String,
    pub user: User,
}

/// A new refresh token (`rt_…`) and when it expires, issued at `now`.
pub fn new_refresh_token(state: &AppState, now: OffsetDateTime) -> Result<(String, OffsetDateTime), AccountError> {
    let refresh_ttl = time::Duration::try_from(state.config.auth.refresh_token_ttl.0).map_err(anyhow::Error::from)?;
    Ok((secret::new_token("rt_"), now + refresh_ttl))
}

/// Issues an access token and a fresh refresh token in `family`. A user
/// deleted meanwhile (during their sign-in) gets no token:
/// `InvalidCredentials`.
pub async fn issue_tokens(
    state: &AppState,
    user: User,
    family: Uuid,
    sign_in: SignInMethod,
) -> Result<TokenPair, AccountError> {
    let now = state.clock.now();
    let (refresh_token, expires_at) = new_refresh_token(state, now)?;
    let record = RefreshTokenRecord {
        token_hash: secret::hash(&refresh_token),
        family_id: family,
        user_id: user.id,
        issued_at: now,
        expires_at,
        sign_in,
    };
    state.store.insert_refresh_token(&record).await.map_err(|error| match error {
        StoreError::NotFound => AccountError::InvalidCredentials,
        other => other.into(),
    })?;
    token_pair(state, user, family, sign_in, refresh_token, now)
}

/// The answer to a sign-in or a refresh: a new access token for `user` in
/// `family`, with `refresh_token`, already stored.
pub fn token_pair(
    state: &AppState,
    user: User,
    family: Uuid,
    sign_in: SignInMethod,
    refresh_token: String,
    now: OffsetDateTime,
) -> Result<TokenPair, AccountError> {
    let (access_token, _) = state.tokens.issue(user.id, user.role, user.department.as_deref(), family, sign_in, now)?;
    Ok(TokenPair { access_token, token_type: "Bearer", expires_in: state.tokens.ttl_secs(), refresh_token, user })
}

/// How long a revocation must be remembered: until every access token it
/// could match has expired (their lifetime plus the verification leeway).
pub fn revocation_horizon(state: &AppState, now: OffsetDateTime) -> OffsetDateTime {
    now + time::Duration::try_from(state.config.auth.access_token_ttl.0).unwrap_or(time::Duration::ZERO)
        + time::Duration::minutes(1)
}

/// Cuts every token, session and API key of `user_id` issued before now:
/// logout-all, role or department change, disabling and deletion all come
/// here.
pub async fn revoke_everything(state: &AppState, user_id: Uuid) -> Result<(), AccountError> {
    // Every step runs whatever another's outcome, and the first failure is
    // reported: a store outage must not spare tokens because keys could
    // not be deleted, nor the reverse. Keys are deleted before the caches
    // drop them, so a key read again is gone.
    let keys_deleted = state.store.delete_user_api_keys(user_id).await;
    state.revocations.revoke_api_keys(KeyRevocation::User(user_id)).await;
    let signed_out = revoke_sign_ins(state, user_id).await;
    keys_deleted?;
    signed_out
}

/// Cuts every token and session of `user_id` issued before now, and any
/// sign-in waiting for its second step, and not its API keys: a password change by the signed-in owner (keys are not
/// derived from the password).
pub async fn revoke_sign_ins(state: &AppState, user_id: Uuid) -> Result<(), AccountError> {
    let now = state.clock.now();
    state
        .revocations
        .revoke(Revocation {
            kind: RevocationKind::User,
            subject: user_id,
            revoked_before: Some(now),
            expires_at: revocation_horizon(state, now),
        })
        .await?;
    state.sessions.delete_user_sessions(user_id).await?;
    state.store.revoke_user_refresh_tokens(user_id, now).await?;
    // A sign-in waiting for its second step began with what is revoked now.
    state.store.delete_user_mfa_challenges(user_id).await?;
    Ok(())
}

/// Kills one refresh family: its refresh tokens and every access token
/// issued with them.
pub async fn revoke_family(state: &AppState, family: Uuid) -> Result<(), AccountError> {
    let now = state.clock.now();
    state
        .revocations
        .revoke(Revocation {
            kind: RevocationKind::Family,
            subject: family,
            revoked_before: None,
            expires_at: revocation_horizon(state, now),
        })
        .await?;
    state.store.revoke_refresh_family(family, now).await?;
    Ok(())
}

/// How a provider account became a Rampart user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderSignIn {
    /// The provider account was linked before.
    Known,
    /// Linked now to the existing user with the same email, verified by the
    /// provider and proven by that user.
    Linked,
    /// A new password-less user.
    Created,
}

impl ProviderSignIn {
    pub fn audit_kind(self) -> AuditKind {
        match self {
            Self::Known => AuditKind::OauthLogin,
            Self::Linked => AuditKind::OauthLink,
            Self::Created => AuditKind::OauthSignup,
        }
    }
}

/// Why a provider account may not sign in (or be linked); `code()` is
/// shown on `/login`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderRefusal {
    /// The email belongs to an account, but the provider does not vouch for
    /// it: linking would hand that account to whoever typed the address.
    EmailNotVerified,
    /// The provider vouches for the email, but the account with that email
    /// has not proven it (a sign-up): whoever made it may not own the
    /// address, and linking would let them into the owner's sign-ins
    /// (pre-account hijacking). The owner signs in with the password and
    /// links the provider from `/account` (`start?link=true`).
    AccountExists,
    EmailMissing,
    EmailInvalid,
    /// Disabled, or (for a link) deleted since the link started.
    AccountDisabled,
    /// A link: the provider account is linked to another user.
    AlreadyLinked,
}

impl ProviderRefusal {
    pub fn code(self) -> &'static str {
        match self {
            Self::EmailNotVerified => "email_not_verified",
            Self::AccountExists => "account_exists",
            Self::EmailMissing => "email_missing",
            Self::EmailInvalid => "email_invalid",
            Self::AccountDisabled => "account_disabled",
            Self::AlreadyLinked => "already_linked",
        }
    }
}

/// Finds or makes the user for a provider account: by (provider, subject)
/// first; else the user with that email, linked now, but only when the
/// provider asserts the email is verified **and** that user's own email is
/// proven (`User::email_verified`); else, when nobody has the email, a new
/// password-less user with role `user` (whose email counts as proven when
/// the provider verified it), who cannot log in with a password until they
/// set one.
pub async fn sign_in_with_provider(
    state: &AppState,
    provider: &str,
    account: &ProviderAccount,
) -> Result<Result<(User, ProviderSignIn), ProviderRefusal>, AccountError> {
    let store = state.store.as_ref();
    let identity = Identity { provider: provider.to_owned(), subject: account.subject.clone() };
    let usable = |user: User, how| if user.disabled { Err(ProviderRefusal::AccountDisabled) } else { Ok((user, how)) };
    if let Some(user) = store.user_by_identity(&identity).await? {
        return Ok(usable(user, ProviderSignIn::Known));
    }
    let Some(email) = account.email.as_deref() else { return Ok(Err(ProviderRefusal::EmailMissing)) };
    let Ok(email) = Email::parse(email) else { return Ok(Err(ProviderRefusal::EmailInvalid)) };
    if let Some(existing) = store.credentials_by_email(&email).await? {
        if !account.email_verified {
            return Ok(Err(ProviderRefusal::EmailNotVerified));
        }
        if !existing.user.email_verified {
            return Ok(Err(ProviderRefusal::AccountExists));
        }
        return match link_with_notice(state, &identity, &existing.user).await {
            Ok(()) => Ok(usable(existing.user, ProviderSignIn::Linked)),
            // Linked by a concurrent callback for the same account.
            Err(StoreError::Conflict(_)) => match store.user_by_identity(&identity).await? {
                Some(user) => Ok(usable(user, ProviderSignIn::Known)),
                None => Err(anyhow::anyhow!("identity link vanished").into()),
            },
            Err(other) => Err(other.into()),
        };
    }
    let name = account
        .name
        .as_deref()
        .and_then(|name| UserName::parse(name).ok())
        .or_else(|| UserName::parse(email.as_str().split('@').next().unwrap_or_default()).ok())
        .ok_or_else(|| anyhow::anyhow!("no usable name for a new account"))?;
    let new_user = NewUser {
        email,
        name,
        role: Role::User,
        department: None,
        password_hash: None,
        email_verified: account.email_verified,
    };
    // The account and its link land together or not at all.
    let created = async {
        let mut work = store.begin().await?;
        let user = work.create_user(new_user).await?;
        work.link_identity(&identity, user.id).await?;
        work.commit().await?;
        Ok::<_, StoreError>(user)
    };
    match created.await {
        Ok(user) => Ok(Ok((user, ProviderSignIn::Created))),
        // The email was taken between the lookup and the insert: by an
        // account whose email is not known to be proven.
        Err(StoreError::Conflict(_)) => Ok(Err(ProviderRefusal::AccountExists)),
        Err(other) => Err(other.into()),
    }
}

/// What `link_provider` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderLink {
    /// The provider account is now linked to the user.
    Linked,
    /// It was linked to this user already.
    AlreadyLinked,
}

/// Links a provider account to a signed-in user (`start?link=true`): the
/// person proved control of both, so neither email matters. Refused when
/// the provider account belongs to another user, or the user is disabled
/// or gone.
pub async fn link_provider(
    state: &AppState,
    provider: &str,
    account: &ProviderAccount,
    user_id: Uuid,
) -> Result<Result<(User, ProviderLink), ProviderRefusal>, AccountError> {
    let store = state.store.as_ref();
    let user = match store.user_by_id(user_id).await {
        Ok(user) if !user.disabled => user,
        Ok(_) | Err(StoreError::NotFound) => return Ok(Err(ProviderRefusal::AccountDisabled)),
        Err(other) => return Err(other.into()),
    };
    let identity = Identity { provider: provider.to_owned(), subject: account.subject.clone() };
    let linked_to = match store.user_by_identity(&identity).await? {
        Some(owner) => owner.id,
        None => match link_with_notice(state, &identity, &user).await {
            Ok(()) => return Ok(Ok((user, ProviderLink::Linked))),
            // Linked by a concurrent callback: to whom decides.
            Err(StoreError::Conflict(_)) => {
                store.user_by_identity(&identity).await?.map(|owner| owner.id).unwrap_or_default()
            }
            Err(other) => return Err(other.into()),
        },
    };
    Ok(if linked_to == user.id { Ok((user, ProviderLink::AlreadyLinked)) } else { Err(ProviderRefusal::AlreadyLinked) })
}

/// Links `identity` to `user`, and mails the user a notice of the new way
/// in, in one unit of work.
async fn link_with_notice(state: &AppState, identity: &Identity, user: &User) -> Result<(), StoreError> {
    let mut work = state.store.begin().await?;
    work.link_identity(identity, user.id).await?;
    let notice = Notice::ProviderLinked { provider: identity.provider.clone() };
    state.mailer.enqueue(&mut *work, user, &Letter::Notice(notice), state.clock.now()).await?;
    work.commit().await?;
    state.mailer.wake();
    Ok(())
}
