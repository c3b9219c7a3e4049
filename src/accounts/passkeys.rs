//! Passkeys: registration on a signed-in account, removal, and the
//! passwordless sign-in with a discoverable credential (which counts as
//! two factors: the authenticator checked the user's PIN or biometric).
//! Their use as a second step is in `mfa`. Every ceremony's state is in
//! the store for `CEREMONY_TTL`, finished once.

use serde_json::Value;
use uuid::Uuid;

use super::{AccountError, mfa};
use crate::{
    app::AppState,
    audit::AuditContext,
    auth::passkey::{CEREMONY_TTL, RelyingParty},
    domain::{AuditKind, FieldError, Outcome, User, UserName},
    mail::{Letter, Notice},
    metrics::OutcomeLabels,
    store::{PasskeyRecord, PendingPasskey, StoreError},
};

/// Passkeys one user may have.
pub const MAX_PASSKEYS: usize = 20;

fn relying_party(state: &AppState) -> Result<&RelyingParty, AccountError> {
    state.passkeys.as_ref().ok_or(AccountError::PasskeysOff)
}

/// Starts registering a passkey named `name` for `user`: the options for
/// the browser. A new start replaces a registration still waiting.
pub async fn begin_registration(state: &AppState, user: &User, name: &str) -> Result<Value, AccountError> {
    let party = relying_party(state)?;
    let name =
        UserName::parse(name).map_err(|message| AccountError::Validation(vec![FieldError::new("name", message)]))?;
    let existing: Vec<Vec<u8>> =
        state.store.passkeys(user.id).await?.into_iter().map(|passkey| passkey.credential_id).collect();
    if existing.len() >= MAX_PASSKEYS {
        return Err(AccountError::Store(StoreError::Conflict(
            "A user may have at most 20 passkeys: remove one first.",
        )));
    }
    let (options, ceremony) = party.start_registration(user, existing)?;
    let pending = PendingPasskey { name: name.as_str().to_owned(), state: ceremony };
    state.store.begin_passkey_registration(user.id, &pending, state.clock.now() + CEREMONY_TTL).await?;
    Ok(options)
}

/// Finishes the user's waiting registration with the authenticator's
/// answer and keeps the passkey; the user is told by mail.
pub async fn finish_registration(
    state: &AppState,
    audit: &AuditContext,
    user: &User,
    credential: Value,
) -> Result<PasskeyRecord, AccountError> {
    let party = relying_party(state)?;
    let now = state.clock.now();
    let pending = state.store.take_passkey_registration(user.id, now).await?.ok_or(AccountError::NoPendingPasskey)?;
    let made = party.finish_registration(credential, &pending.state).map_err(|refused| {
        tracing::info!(cause = %refused, "a passkey registration did not verify");
        AccountError::PasskeyRefused
    })?;
    let record = PasskeyRecord {
        id: Uuid::now_v7(),
        user_id: user.id,
        credential_id: made.credential_id,
        name: pending.name,
        passkey: made.passkey,
        created_at: now,
        last_used_at: None,
    };
    let mut work = state.store.begin().await?;
    work.insert_passkey(&record).await.map_err(|error| match error {
        StoreError::Conflict(_) => AccountError::Store(StoreError::Conflict("This passkey is registered already.")),
        other => other.into(),
    })?;
    let notice = Notice::PasskeyAdded { passkey_name: record.name.clone() };
    state.mailer.enqueue(&mut *work, user, &Letter::Notice(notice), now).await?;
    work.commit().await?;
    state.mailer.wake();
    mfa::note_passkey(state, audit, now, AuditKind::PasskeyAdded, user.id, record.id);
    Ok(record)
}

/// Removes one of the user's passkeys (another user's is `NotFound`); the
/// user is told by mail.
pub async fn remove(state: &AppState, audit: &AuditContext, user: &User, id: Uuid) -> Result<(), AccountError> {
    let now = state.clock.now();
    let mut work = state.store.begin().await?;
    let removed = work.delete_passkey(id, user.id).await?;
    let notice = Notice::PasskeyRemoved { passkey_name: removed.name };
    state.mailer.enqueue(&mut *work, user, &Letter::Notice(notice), now).await?;
    work.commit().await?;
    state.mailer.wake();
    mfa::note_passkey(state, audit, now, AuditKind::PasskeyRemoved, user.id, id);
    Ok(())
}

/// Starts a passwordless sign-in: the ceremony's id and the options for
/// the browser, which names no user.
pub async fn begin_sign_in(state: &AppState) -> Result<(Uuid, Value), AccountError> {
    let party = relying_party(state)?;
    let (options, ceremony) = party.start_sign_in()?;
    let id = Uuid::new_v4();
    state.store.insert_passkey_sign_in(id, &ceremony, state.clock.now() + CEREMONY_TTL).await?;
    Ok((id, options))
}

/// Finishes a passwordless sign-in: the ceremony is spent whatever the
/// outcome; the passkey must be registered (to the user the authenticator
/// names) and its signature, user verification and counter right.
pub async fn finish_sign_in(
    state: &AppState,
    audit: &AuditContext,
    ceremony_id: Uuid,
    credential: Value,
) -> Result<User, AccountError> {
    let party = relying_party(state)?;
    let now = state.clock.now();
    let failed = |user_id: Option<Uuid>, cause: &str| {
        tracing::info!(cause, "a passkey sign-in failed");
        state.audit.record(audit.event(now, AuditKind::LoginFailure, user_id, Outcome::Failure));
        state.metrics.logins.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
        AccountError::PasskeySignInFailed
    };
    let Some(ceremony) = state.store.take_passkey_sign_in(ceremony_id, now).await? else {
        return Err(failed(None, "unknown, spent or expired ceremony"));
    };
    let presented = party.identify(credential).map_err(|refused| failed(None, &refused.to_string()))?;
    let record = match state.store.passkey_by_credential(&presented.credential_id).await? {
        Some(record) if record.user_id == presented.user_id => record,
        _ => return Err(failed(None, "no such passkey")),
    };
    let user = match state.store.user_by_id(record.user_id).await {
        Ok(user) if !user.disabled => user,
        Ok(_) | Err(StoreError::NotFound) => return Err(failed(Some(record.user_id), "disabled or deleted user")),
        Err(other) => return Err(other.into()),
    };
    let used = party
        .finish_sign_in(&presented, &ceremony, &record.passkey)
        .map_err(|refused| failed(Some(user.id), &refused.to_string()))?;
    state.store.record_passkey_use(record.id, &used, now).await?;
    state.audit.record(audit.event(now, AuditKind::LoginSuccess, Some(user.id), Outcome::Success));
    state.metrics.logins.get_or_create(&OutcomeLabels { outcome: "success" }).inc();
    Ok(user)
}
