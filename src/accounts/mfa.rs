//! Second factors: TOTP enrolment (with recovery codes), the challenge a
//! first factor gets when a second one is on, and the second step that
//! completes it. Every way in (password login, session login, provider
//! callback) asks `challenge` before it signs anyone in.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AccountError;
use crate::{
    app::AppState,
    audit::AuditContext,
    auth::{secret, totp},
    domain::{AuditKind, Outcome, SignInMethod, User},
    layers::rate_limit::SignInRequest,
    mail::{Letter, Notice},
    metrics::{EventLabels, OutcomeLabels, SECOND_FACTOR_EVENTS},
    store::{LoginKind, MfaChallenge, StoreError},
};

/// How long a challenge waits for its second step.
pub const CHALLENGE_TTL: time::Duration = time::Duration::minutes(5);
/// Second steps tried per challenge (the login rate limit counts as well).
pub const CHALLENGE_ATTEMPTS: i32 = 5;
pub const RECOVERY_CODES: usize = 10;
/// The issuer authenticator apps show next to the account.
const ISSUER: &str = "Rampart";

/// The answer to a first factor when a second one is on: no tokens, no
/// cookie, only the challenge to complete at `POST /auth/mfa`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MfaRequired {
    #[schema(value_type = bool, example = true)]
    pub mfa_required: bool,
    /// Opaque and single use; never a bearer credential.
    #[schema(pattern = "^mfa_[A-Za-z0-9_-]{43}$")]
    pub mfa_token: String,
    /// What the second step takes (as `POST /auth/mfa/options` answers).
    #[serde(flatten)]
    pub options: SecondStepOptions,
}

/// A new TOTP enrolment, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    /// Base32, for typing into an app.
    pub secret: String,
    /// `otpauth://totp/Rampart:<email>?secret=…&issuer=Rampart`.
    pub otpauth_uri: String,
    /// An SVG document: the URI's QR code.
    pub qr_svg: String,
}

/// What `POST /auth/mfa` was given.
pub enum SecondStep {
    Code(String),
    RecoveryCode(SecretString),
    /// The authenticator's answer (`credential.toJSON()`).
    Passkey(serde_json::Value),
}

/// Audits a second-factor event and counts it.
fn note(state: &AppState, audit: &AuditContext, now: OffsetDateTime, kind: AuditKind, user_id: Option<Uuid>) {
    record(state, audit, now, kind, user_id, None);
}

/// Audits a passkey's registration or removal (its id in `detail`) and
/// counts it.
pub fn note_passkey(
    state: &AppState,
    audit: &AuditContext,
    now: OffsetDateTime,
    kind: AuditKind,
    user_id: Uuid,
    passkey_id: Uuid,
) {
    record(state, audit, now, kind, Some(user_id), Some(passkey_id.to_string()));
}

fn record(
    state: &AppState,
    audit: &AuditContext,
    now: OffsetDateTime,
    kind: AuditKind,
    user_id: Option<Uuid>,
    detail: Option<String>,
) {
    let outcome = if kind == AuditKind::MfaFailure { Outcome::Failure } else { Outcome::Success };
    if let Some(event) = SECOND_FACTOR_EVENTS.into_iter().find(|event| *event == kind.as_str()) {
        state.metrics.second_factor.get_or_create(&EventLabels { event }).inc();
    }
    let mut event = audit.event(now, kind, user_id, outcome);
    event.detail = detail;
    state.audit.record(event);
}

/// The second factors `user_id` has, as `methods` lists them.
pub async fn methods(state: &AppState, user_id: Uuid) -> Result<Vec<&'static str>, AccountError> {
    Ok(second_factors(state, user_id).await?.0)
}

/// The methods, and the user's passkeys (stored form) when passkeys are on.
async fn second_factors(state: &AppState, user_id: Uuid) -> Result<(Vec<&'static str>, Vec<String>), AccountError> {
    let mut methods = Vec::new();
    if state.store.totp_factor(user_id).await?.is_some_and(|factor| factor.confirmed_at.is_some()) {
        methods.push("totp");
        if state.store.recovery_codes_left(user_id).await? > 0 {
            methods.push("recovery_code");
        }
    }
    let mut passkeys = Vec::new();
    if state.passkeys.is_some() {
        passkeys = state.store.passkeys(user_id).await?.into_iter().map(|record| record.passkey).collect();
        if !passkeys.is_empty() {
            methods.push("passkey");
        }
    }
    Ok((methods, passkeys))
}

/// A second step's passkey ceremony over the user's `passkeys` (stored
/// form): the request options and the state to keep. `None` without
/// passkeys, or with passkeys off.
fn passkey_ceremony(
    state: &AppState,
    passkeys: &[String],
) -> Result<Option<(serde_json::Value, String)>, AccountError> {
    match &state.passkeys {
        Some(party) if !passkeys.is_empty() => Ok(Some(party.start_second_step(passkeys)?)),
        _ => Ok(None),
    }
}

/// When `user` has a second factor: a stored challenge for the login of
/// `kind` that `sign_in` began, instead of signing them in.
pub async fn challenge(
    state: &AppState,
    user: &User,
    kind: LoginKind,
    sign_in: SignInMethod,
) -> Result<Option<MfaRequired>, AccountError> {
    let (methods, passkeys) = second_factors(state, user.id).await?;
    if methods.is_empty() {
        return Ok(None);
    }
    let (passkey, passkey_state) = passkey_ceremony(state, &passkeys)?.unzip();
    let token = secret::new_token("mfa_");
    let now = state.clock.now();
    state.metrics.second_factor.get_or_create(&EventLabels { event: "mfa_challenge" }).inc();
    state
        .store
        .insert_mfa_challenge(&MfaChallenge {
            token_hash: secret::hash(&token),
            user_id: user.id,
            login_kind: kind,
            sign_in,
            attempts: 0,
            expires_at: now + CHALLENGE_TTL,
            passkey_state,
        })
        .await
        .map_err(|error| match error {
            StoreError::NotFound => AccountError::InvalidCredentials,
            other => other.into(),
        })?;
    let options = SecondStepOptions { methods, expires_in: CHALLENGE_TTL.whole_seconds(), passkey };
    Ok(Some(MfaRequired { mfa_required: true, mfa_token: token, options }))
}

/// What the challenge named by `mfa_token` accepts, with a new passkey
/// ceremony when the user has passkeys (for a page that got only the
/// token: a provider sign-in's `/login?mfa=`). No attempt is counted; an
/// unknown, spent, expired or exhausted challenge is `SecondStepFailed`.
pub async fn options(state: &AppState, mfa_token: &str) -> Result<SecondStepOptions, AccountError> {
    let token_hash = secret::hash(mfa_token);
    let now = state.clock.now();
    let Some(challenge) = state.store.mfa_challenge(&token_hash, now, CHALLENGE_ATTEMPTS).await? else {
        return Err(AccountError::SecondStepFailed);
    };
    let (methods, passkeys) = second_factors(state, challenge.user_id).await?;
    let mut passkey = None;
    if let Some((options, ceremony)) = passkey_ceremony(state, &passkeys)? {
        state.store.set_mfa_passkey_state(&token_hash, &ceremony).await?;
        passkey = Some(options);
    }
    let expires_in = (challenge.expires_at - now).whole_seconds().max(0);
    Ok(SecondStepOptions { methods, expires_in, passkey })
}

/// What a challenge accepts (`POST /auth/mfa/options`, and the
/// `mfa_required` answer).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecondStepOptions {
    /// What `POST /auth/mfa` accepts for this user: `totp`,
    /// `recovery_code`, `passkey`.
    pub methods: Vec<&'static str>,
    /// Seconds the challenge still waits.
    pub expires_in: i64,
    /// With `passkey` among the methods: the options for
    /// `navigator.credentials.get` (its `publicKey` member, JSON form),
    /// naming the user's passkeys; each new set replaces the challenge's
    /// earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub passkey: Option<serde_json::Value>,
}

/// Checks a second step against the challenge named by `mfa_token`. On
/// success the challenge is spent and the user and the challenge (the
/// login to finish, the sign-in method with the code added) come back.
pub async fn complete(
    state: &AppState,
    audit: &AuditContext,
    sign_in: &SignInRequest,
    mfa_token: &str,
    step: SecondStep,
) -> Result<(User, MfaChallenge), AccountError> {
    let now = state.clock.now();
    let by_passkey = matches!(step, SecondStep::Passkey(_));
    let token_hash = secret::hash(mfa_token);
    let failed = |user_id: Option<Uuid>| {
        note(state, audit, now, AuditKind::MfaFailure, user_id);
        state.metrics.logins.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
        AccountError::SecondStepFailed
    };
    let Some(challenge) = state.store.attempt_mfa_challenge(&token_hash, now, CHALLENGE_ATTEMPTS).await? else {
        return Err(failed(None));
    };
    let user = match state.store.user_by_id(challenge.user_id).await {
        Ok(user) if !user.disabled => user,
        Ok(_) | Err(StoreError::NotFound) => return Err(failed(Some(challenge.user_id))),
        Err(other) => return Err(other.into()),
    };
    // The login group's per-(client, account) count, as for passwords.
    if let Err(retry_after_secs) = state.rate_limiter.admit_sign_in(sign_in, &user.email).await {
        return Err(AccountError::TooManyRequests { retry_after_secs });
    }
    let proven = match step {
        SecondStep::Code(code) => accept_code(state, user.id, &code, now).await?,
        SecondStep::RecoveryCode(code) => {
            let used = state.store.use_recovery_code(user.id, &recovery_code_hash(code.expose_secret()), now).await?;
            if used {
                note(state, audit, now, AuditKind::RecoveryCodeUsed, Some(user.id));
            }
            used
        }
        SecondStep::Passkey(credential) => accept_passkey(state, &challenge, credential, now).await?,
    };
    // Whoever deletes the challenge finishes the sign-in: a challenge
    // completed twice at once signs in once.
    if !proven || !state.store.take_mfa_challenge(&token_hash).await? {
        state.rate_limiter.count_failed_sign_in(sign_in, &user.email).await;
        return Err(failed(Some(user.id)));
    }
    note(state, audit, now, AuditKind::MfaSuccess, Some(user.id));
    let sign_in = if by_passkey { challenge.sign_in.with_passkey() } else { challenge.sign_in.with_code() };
    Ok((user, MfaChallenge { sign_in, ..challenge }))
}

/// Whether `credential` answers the challenge's passkey ceremony with one
/// of the user's passkeys (whose counter is then kept).
async fn accept_passkey(
    state: &AppState,
    challenge: &MfaChallenge,
    credential: serde_json::Value,
    now: OffsetDateTime,
) -> Result<bool, AccountError> {
    let (Some(party), Some(ceremony)) = (&state.passkeys, &challenge.passkey_state) else { return Ok(false) };
    let used = match party.finish_second_step(credential, ceremony) {
        Ok(used) => used,
        Err(refused) => {
            tracing::info!(cause = %refused, "a passkey second step did not verify");
            return Ok(false);
        }
    };
    let Some(record) = state.store.passkey_by_credential(used.credential_id()).await? else { return Ok(false) };
    if record.user_id != challenge.user_id {
        return Ok(false);
    }
    if let Some(updated) = used.applied_to(&record.passkey) {
        state.store.record_passkey_use(record.id, &updated, now).await?;
    }
    Ok(true)
}

/// Whether `code` proves the user's confirmed TOTP now, and its step was
/// not accepted before (recorded atomically: one use per code).
async fn accept_code(state: &AppState, user_id: Uuid, code: &str, now: OffsetDateTime) -> Result<bool, AccountError> {
    let Some(factor) = state.store.totp_factor(user_id).await? else { return Ok(false) };
    if factor.confirmed_at.is_none() {
        return Ok(false);
    }
    match totp::matching_step(&factor.secret, code, now.unix_timestamp(), factor.last_step) {
        Some(step) => Ok(state.store.accept_totp_step(user_id, step).await?),
        None => Ok(false),
    }
}

/// Starts (or restarts) a TOTP enrolment: a new secret, not active until
/// `confirm_totp`. 409 when TOTP is already on.
pub async fn begin_totp(state: &AppState, user: &User) -> Result<TotpEnrolment, AccountError> {
    let secret = totp::new_secret();
    state.store.begin_totp(user.id, &secret, state.clock.now()).await.map_err(|error| match error {
        StoreError::Conflict(_) => AccountError::Store(StoreError::Conflict("TOTP is on already; turn it off first.")),
        other => other.into(),
    })?;
    let otpauth_uri = totp::otpauth_uri(&secret, ISSUER, &user.email);
    let qr_svg = totp::qr_svg(&otpauth_uri)?;
    Ok(TotpEnrolment { secret: totp::secret_base32(&secret), otpauth_uri, qr_svg })
}

/// Turns the pending TOTP on with its first code, and returns ten new
/// recovery codes (stored hashed). The user is told by mail.
pub async fn confirm_totp(
    state: &AppState,
    audit: &AuditContext,
    user: &User,
    code: &str,
) -> Result<Vec<String>, AccountError> {
    let now = state.clock.now();
    let factor = state.store.totp_factor(user.id).await?;
    let Some(factor) = factor.filter(|factor| factor.confirmed_at.is_none()) else {
        return Err(AccountError::NoPendingEnrolment);
    };
    let Some(step) = totp::matching_step(&factor.secret, code, now.unix_timestamp(), None) else {
        note(state, audit, now, AuditKind::MfaFailure, Some(user.id));
        return Err(AccountError::WrongCode);
    };
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let hashes: Vec<[u8; 32]> = codes.iter().map(|code| recovery_code_hash(code)).collect();
    let mut work = state.store.begin().await?;
    if !work.confirm_totp(user.id, step, &hashes, now).await? {
        return Err(AccountError::NoPendingEnrolment);
    }
    state.mailer.enqueue(&mut *work, user, &Letter::Notice(Notice::SecondFactorOn), now).await?;
    work.commit().await?;
    state.mailer.wake();
    note(state, audit, now, AuditKind::MfaEnabled, Some(user.id));
    Ok(codes)
}

/// Turns TOTP off with a fresh code (not one accepted before, the
/// confirmation's included); recovery codes go with it. The user is told
/// by mail.
pub async fn disable_totp(state: &AppState, audit: &AuditContext, user: &User, code: &str) -> Result<(), AccountError> {
    let now = state.clock.now();
    let factor = state.store.totp_factor(user.id).await?;
    if factor.is_none_or(|factor| factor.confirmed_at.is_none()) {
        return Err(AccountError::SecondFactorOff);
    }
    if !accept_code(state, user.id, code, now).await? {
        note(state, audit, now, AuditKind::MfaFailure, Some(user.id));
        return Err(AccountError::WrongCode);
    }
    let mut work = state.store.begin().await?;
    work.delete_totp(user.id).await?;
    state.mailer.enqueue(&mut *work, user, &Letter::Notice(Notice::SecondFactorOff), now).await?;
    work.commit().await?;
    state.mailer.wake();
    note(state, audit, now, AuditKind::MfaDisabled, Some(user.id));
    Ok(())
}

/// Sixteen characters of Crockford's base32 alphabet (80 bits), shown in
/// groups of four: `7h2k-9qxm-4t0c-vb3e`.
fn new_recovery_code() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    let characters: Vec<char> = bytes.iter().map(|byte| char::from(ALPHABET[usize::from(byte % 32)])).collect();
    characters.chunks(4).map(|group| group.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// The stored form: SHA-256 of the code without separators or case (80
/// random bits: a fast hash is right, as for other random tokens).
fn recovery_code_hash(code: &str) -> [u8; 32] {
    let normalized: String = code.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_lowercase()).collect();
    secret::hash(&normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_random_grouped_and_typed_loosely() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3);
        assert_ne!(code, new_recovery_code());
        let loose = code.to_uppercase().replace('-', " ");
        assert_eq!(recovery_code_hash(&loose), recovery_code_hash(&code));
        assert_ne!(recovery_code_hash(&new_recovery_code()), recovery_code_hash(&code));
    }
}
