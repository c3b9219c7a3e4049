//! What goes by mail: sign-up with its verification link, verification on
//! request, and password reset.
//!
//! A mailed link carries a 256-bit token (`ev_...` to verify, `pr_...` to
//! reset) of which only the SHA-256 is stored, with the address it went
//! to: it proves that address only, once, before it expires. The token and
//! its mail are written in one unit of work, so a link is never mailed
//! without a token behind it, nor a token kept whose mail was lost.

use secrecy::SecretString;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{AccountError, AccountRequest, email_taken, prepare_account, revoke_everything};
use crate::{
    app::AppState,
    audit::AuditContext,
    auth::secret,
    domain::{AuditKind, Email, FieldError, Outcome, Password, User, UserName},
    mail::{Letter, Notice},
    store::{EmailPurpose, EmailTokenRecord, StoreError, UnitOfWork},
};

/// How long a verification link works.
pub const VERIFY_TTL: Duration = Duration::hours(24);
/// How long a reset link works.
pub const RESET_TTL: Duration = Duration::minutes(30);
/// At most one verification mail per user in this time.
pub const VERIFY_REQUEST_INTERVAL: Duration = Duration::minutes(1);

const VERIFY_PREFIX: &str = "ev_";
const RESET_PREFIX: &str = "pr_";
/// A token's length: its prefix and 43 characters of base64url.
const TOKEN_LEN: usize = 3 + 43;

/// The one answer for every unusable link, so it tells nothing about why.
fn invalid_link() -> AccountError {
    AccountError::Validation(vec![FieldError::new("token", "The link is invalid, expired or already used.")])
}

/// The stored hash of `token` when it has the shape of a `prefix` token.
fn token_hash(token: &str, prefix: &str) -> Option<[u8; 32]> {
    let well_formed = token.len() == TOKEN_LEN
        && token.starts_with(prefix)
        && token[prefix.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| secret::hash(token))
}

/// Writes a fresh `purpose` token for `user` and its mail into `work`.
async fn queue_link(
    state: &AppState,
    work: &mut dyn UnitOfWork,
    user: &User,
    purpose: EmailPurpose,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let (prefix, ttl, page) = match purpose {
        EmailPurpose::VerifyEmail => (VERIFY_PREFIX, VERIFY_TTL, "/verify-email"),
        EmailPurpose::ResetPassword => (RESET_PREFIX, RESET_TTL, "/reset-password"),
    };
    let token = secret::new_token(prefix);
    work.insert_email_token(&EmailTokenRecord {
        token_hash: secret::hash(&token),
        purpose,
        user_id: user.id,
        email: user.email.clone(),
        created_at: now,
        expires_at: now + ttl,
    })
    .await?;
    let link = state.mailer.link(&format!("{page}?token={token}"));
    let letter = match purpose {
        EmailPurpose::VerifyEmail => Letter::VerifyEmail { link },
        EmailPurpose::ResetPassword => Letter::ResetPassword { link },
    };
    state.mailer.enqueue(work, user, &letter, now).await
}

/// A sign-up: the new user and their verification mail, stored together.
pub async fn sign_up(state: &AppState, request: AccountRequest<'_>) -> Result<User, AccountError> {
    let new_user = prepare_account(&state.hasher, request).await?;
    let now = state.clock.now();
    let mut work = state.store.begin().await?;
    let user = work.create_user(new_user).await.map_err(email_taken)?;
    queue_link(state, &mut *work, &user, EmailPurpose::VerifyEmail, now).await?;
    work.commit().await.map_err(email_taken)?;
    state.mailer.wake();
    Ok(user)
}

/// Mails the user a new verification link, unless their address is
/// proven, they are disabled, or a link went out less than a minute ago
/// (each silently: the caller learns nothing they could not see).
pub async fn request_verification(state: &AppState, user_id: Uuid) -> Result<(), AccountError> {
    let user = state.store.user_by_id(user_id).await?;
    if user.email_verified || user.disabled {
        return Ok(());
    }
    let now = state.clock.now();
    if let Some(last) = state.store.latest_email_token_at(user.id, EmailPurpose::VerifyEmail).await?
        && now - last < VERIFY_REQUEST_INTERVAL
    {
        return Ok(());
    }
    let mut work = state.store.begin().await?;
    queue_link(state, &mut *work, &user, EmailPurpose::VerifyEmail, now).await?;
    work.commit().await?;
    state.mailer.wake();
    Ok(())
}

/// Spends a verification token: the address it went to is proven, and
/// every other verification link of the user stops working.
pub async fn verify_email(state: &AppState, audit: &AuditContext, token: &str) -> Result<User, AccountError> {
    let hash = token_hash(token, VERIFY_PREFIX).ok_or_else(invalid_link)?;
    let now = state.clock.now();
    let mut work = state.store.begin().await?;
    let Some(record) = work.take_email_token(&hash, EmailPurpose::VerifyEmail, now).await? else {
        return Err(invalid_link());
    };
    // The user's address is no longer the one the link went to.
    if !work.set_email_verified(record.user_id, &record.email).await? {
        return Err(invalid_link());
    }
    work.delete_email_tokens(record.user_id, EmailPurpose::VerifyEmail).await?;
    work.commit().await?;
    state.audit.record(audit.event(now, AuditKind::EmailVerified, Some(record.user_id), Outcome::Success));
    Ok(state.store.user_by_id(record.user_id).await?)
}

/// Mails a reset link to the account with `email`, if there is one that
/// is not disabled. The caller answers before this is done, the same for
/// every address, so neither the answer nor its timing tells whether the
/// account exists: the lookup and the mail happen in a task of their own.
pub fn forgot_password(state: &AppState, audit: AuditContext, email: Email) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = send_reset_link(&state, &audit, &email).await {
            tracing::warn!(cause = %error, "a password reset link could not be queued");
        }
    });
}

async fn send_reset_link(state: &AppState, audit: &AuditContext, email: &Email) -> Result<(), AccountError> {
    let now = state.clock.now();
    let user = match state.store.credentials_by_email(email).await? {
        Some(credentials) if !credentials.user.disabled => credentials.user,
        // Nobody to mail; recorded without a user, so a probe shows.
        _ => {
            state.audit.record(audit.event(now, AuditKind::PasswordResetRequested, None, Outcome::Failure));
            return Ok(());
        }
    };
    let mut work = state.store.begin().await?;
    // Only the newest link works: an older mail read later cannot be used.
    work.delete_email_tokens(user.id, EmailPurpose::ResetPassword).await?;
    queue_link(state, &mut *work, &user, EmailPurpose::ResetPassword, now).await?;
    work.commit().await?;
    state.mailer.wake();
    state.audit.record(audit.event(now, AuditKind::PasswordResetRequested, Some(user.id), Outcome::Success));
    Ok(())
}

/// Spends a reset token on a new password. A password that breaks the
/// rules leaves the token unspent, so the person can try another. The
/// link proves the address as well; every token, session, refresh family
/// and API key of the user is revoked, and a notice is mailed. When the
/// address was not proven before, provider links are removed too.
pub async fn reset_password(
    state: &AppState,
    audit: &AuditContext,
    token: &str,
    password: SecretString,
) -> Result<(), AccountError> {
    let hash = token_hash(token, RESET_PREFIX).ok_or_else(invalid_link)?;
    let now = state.clock.now();
    let Some(record) = state.store.email_token(&hash, EmailPurpose::ResetPassword, now).await? else {
        return Err(invalid_link());
    };
    let user = match state.store.user_by_id(record.user_id).await {
        Ok(user) if !user.disabled => user,
        Ok(_) | Err(StoreError::NotFound) => return Err(invalid_link()),
        Err(other) => return Err(other.into()),
    };
    let email = Email::parse(&user.email).map_err(|_| anyhow::anyhow!("stored email no longer parses"))?;
    let name = UserName::parse(&user.name).map_err(|_| anyhow::anyhow!("stored name no longer parses"))?;
    let password = Password::parse(password, &email, &name)
        .map_err(|message| AccountError::Validation(vec![FieldError::new("password", message)]))?;
    let phc = state.hasher.hash(password.secret()).await?;

    let mut work = state.store.begin().await?;
    // Taken in the transaction: of two resets with one link, one wins.
    if work.take_email_token(&hash, EmailPurpose::ResetPassword, now).await?.is_none() {
        return Err(invalid_link());
    }
    work.set_password_hash(user.id, &phc).await?;
    // An address proven only now: whoever held the account before could
    // have linked their own provider account to it (a "trojan
    // identifier"); the owner links theirs again.
    let unlinked = if user.email_verified { 0 } else { work.unlink_identities(user.id).await? };
    work.set_email_verified(user.id, &record.email).await?;
    work.delete_email_tokens(user.id, EmailPurpose::ResetPassword).await?;
    state.mailer.enqueue(&mut *work, &user, &Letter::Notice(Notice::PasswordReset), now).await?;
    work.commit().await?;
    state.mailer.wake();
    revoke_everything(state, user.id).await?;
    let mut event = audit.event(now, AuditKind::PasswordReset, Some(user.id), Outcome::Success);
    if unlinked > 0 {
        event.detail = Some(format!("unlinked_providers={unlinked}"));
    }
    state.audit.record(event);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_of_the_right_shape_are_looked_up() {
        let token = secret::new_token(RESET_PREFIX);
        assert_eq!(token_hash(&token, RESET_PREFIX), Some(secret::hash(&token)));
        assert_eq!(token_hash(&token, VERIFY_PREFIX), None);
        assert_eq!(token_hash(&token[..TOKEN_LEN - 1], RESET_PREFIX), None);
        assert_eq!(token_hash(&format!("{}%", &token[..TOKEN_LEN - 1]), RESET_PREFIX), None);
        assert_eq!(token_hash("", RESET_PREFIX), None);
    }
}
