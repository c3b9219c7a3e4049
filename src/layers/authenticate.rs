//! Resolves the caller's credentials once per request: `Authorization:
//! Bearer <JWT>` or `Bearer rk_...` (an API key) first, then the
//! `rampart_session` cookie, else guest.
//!
//! Tokens are verified (signature, algorithm, key, claims, times) and then
//! checked against the in-memory revocation list; no database read. An API
//! key is looked up in the verified-key cache (`auth::api_keys`), which
//! reads the store only when its entry is missing or stale. A session
//! costs one store read, and a write at most once a minute to extend its
//! idle timeout. What this layer decides is only *who* is
//! calling; the `Caller`/`CurrentUser` extractors turn it into 401/403.

use axum::http::{HeaderMap, HeaderValue, header};
use time::OffsetDateTime;

use crate::request_context::RequestContext;
use crate::{
    app::AppState,
    auth::{
        api_keys::{ApiKeys, KeyRefusal},
        principal::{Authentication, Credential, Principal, SESSION_COOKIE},
        secret,
        tokens::TokenError,
    },
    domain::PresentedKey,
};

/// Sessions are extended at most this often, to keep reads cheap.
const EXTEND_GRANULARITY: time::Duration = time::Duration::minutes(1);

/// Records who is calling in the request's `RequestContext`, where the
/// extractors, the rate limiter and the access log find it. Only a session
/// needs the store; that path is boxed, so the pipeline's per-request
/// future stays small for tokens and guests.
pub async fn authenticate(state: &AppState, headers: &HeaderMap, context: &RequestContext) {
    let authentication = match resolve_at_once(state, headers, context.client_ip) {
        Presented::Decided(authentication) => authentication,
        Presented::Session(session_id) => Box::pin(resolve_session(state, session_id, state.clock.now())).await,
        Presented::ApiKey(key) => Box::pin(resolve_api_key(state, key, context)).await,
    };
    let _ = context.authentication.set(authentication);
}

/// What the request's credentials settle without the store.
enum Presented<'h> {
    /// A bearer token's caller (or its refusal), or a guest.
    Decided(Authentication),
    /// A session cookie's id, to look up.
    Session(&'h str),
    /// An API key (`rk_...`), to verify.
    ApiKey(&'h str),
}

fn resolve_at_once<'h>(state: &AppState, headers: &'h HeaderMap, client: Option<std::net::IpAddr>) -> Presented<'h> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let now = state.clock.now();
        let Some(token) = bearer_token(value) else {
            return Presented::Decided(Authentication::Invalid { token_sent: false });
        };
        if ApiKeys::is_api_key(token) {
            return Presented::ApiKey(token);
        }
        // A client whose tokens keep failing gets no more signature checks
        // for a while: only tokens verified before still count.
        let verified = if state.failed_tokens.may_verify(client) {
            let verified = state.verified_tokens.verify(&state.tokens, token, now);
            // Only a failed signature check counts: it is the dear refusal,
            // and one an honest client never causes (an expired token, or
            // one of a retired key, is refused before any check).
            if matches!(verified, Err(TokenError::Invalid)) {
                state.failed_tokens.failed(client);
            }
            verified.ok()
        } else {
            state.verified_tokens.cached(token, now)
        };
        return Presented::Decided(match verified {
            Some(claims) if !state.revocations.is_token_revoked(&claims) => Authentication::Signed(Principal {
                user_id: claims.sub,
                role: claims.role,
                department: claims.dept.clone(),
                credential: Credential::Bearer {
                    jti: claims.jti,
                    family: claims.fam,
                    expires_at: OffsetDateTime::from_unix_timestamp(claims.exp).unwrap_or(now),
                    sign_in: claims.sign_in(),
                },
            }),
            _ => Authentication::Invalid { token_sent: true },
        });
    }
    match session_cookie(headers) {
        Some(session_id) => Presented::Session(session_id),
        None => Presented::Decided(Authentication::Guest),
    }
}

async fn resolve_api_key(state: &AppState, token: &str, context: &RequestContext) -> Authentication {
    match state.api_keys.verify(token).await {
        Ok(key) => Authentication::Signed(Principal {
            user_id: key.user_id,
            role: key.role,
            department: key.department.clone(),
            credential: Credential::ApiKey { key_id: key.id, scopes: key.scopes.clone() },
        }),
        Err(KeyRefusal::Unavailable) => Authentication::Unavailable,
        Err(refusal) => {
            // The access log makes its 401 an `api_key_refused` event.
            let id = PresentedKey::parse(token).map(|key| format!("key {}: ", key.id)).unwrap_or_default();
            let _ = context.refused_key.set(format!("{id}{}", refusal.as_str()));
            Authentication::Invalid { token_sent: true }
        }
    }
}

async fn resolve_session(state: &AppState, session_id: &str, now: OffsetDateTime) -> Authentication {
    let id_hash = secret::hash(session_id);
    let session = match state.sessions.session(&id_hash).await {
        Ok(Some(session)) => session,
        // An unknown or stale cookie makes a guest, not an error: public
        // pages keep working, protected ones answer 401.
        Ok(None) => return Authentication::Guest,
        Err(error) => {
            tracing::error!(cause = %error, "session lookup failed");
            return Authentication::Unavailable;
        }
    };
    if session.idle_expires_at <= now
        || session.absolute_expires_at <= now
        || state.revocations.is_session_revoked(session.user_id, session.created_at)
    {
        return Authentication::Guest;
    }
    let user = match state.store.user_by_id(session.user_id).await {
        Ok(user) if !user.disabled => user,
        Ok(_) => return Authentication::Guest,
        Err(error) => {
            tracing::error!(cause = %error, "session user lookup failed");
            return Authentication::Unavailable;
        }
    };
    let idle = time::Duration::try_from(state.config.auth.session_idle_timeout.0).unwrap_or(time::Duration::ZERO);
    let extended = (now + idle).min(session.absolute_expires_at);
    if extended - session.idle_expires_at >= EXTEND_GRANULARITY
        && let Err(error) = state.sessions.extend_session(&id_hash, extended).await
    {
        tracing::warn!(cause = %error, "could not extend a session");
    }
    Authentication::Signed(Principal {
        user_id: user.id,
        role: user.role,
        department: user.department.map(|department| department.as_str().to_owned()),
        credential: Credential::Session { id_hash, csrf_hash: session.csrf_hash, sign_in: session.sign_in },
    })
}

/// The token of `Bearer <token>` (scheme case-insensitive), if that is
/// what the header holds.
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of the `rampart_session` cookie, from any `Cookie` header.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, SESSION_COOKIE)
}

/// The first non-empty value of cookie `name`, from any `Cookie` header.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// `auth.require_mfa_for`: a person of such a role whose credential did
/// not come from a sign-in with two factors may only enrol a second factor
/// (`/api/profile/mfa…`, `/api/profile/passkeys…`), read their profile and
/// sign out (the `/auth/` routes are not under `/api/`); any other request
/// under `/api/`, through protect mode (`proxied`) or to forward auth is
/// refused with 403 `mfa_enrolment_required`. The credential decides, not
/// the account: a token from before the enrolment stays limited until the
/// user signs in again with both factors. API keys are exempt (a person
/// made them, and one so limited cannot).
pub fn enrolment_refusal(
    state: &AppState,
    context: &RequestContext,
    method: &axum::http::Method,
    path: &str,
    proxied: bool,
) -> Option<crate::error::ApiError> {
    let required = &state.config.auth.require_mfa_for;
    if required.is_empty() {
        return None;
    }
    let Some(Authentication::Signed(principal)) = context.authentication.get() else { return None };
    if matches!(principal.credential, Credential::ApiKey { .. })
        || principal.is_multi_factor()
        || !required.contains(&principal.role)
    {
        return None;
    }
    let enrolling = ["/api/profile/mfa", "/api/profile/passkeys"]
        .iter()
        .any(|prefix| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
    let reading_profile =
        path == "/api/profile" && matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
    let guarded =
        proxied || path.starts_with("/auth/forward") || (path.starts_with("/api/") && !enrolling && !reading_profile);
    guarded.then(crate::error::ApiError::mfa_enrolment_required)
}

/// `auth.require_verified_email`: a signed-in user whose address is not
/// proven may only read their profile, verify, refresh and sign out; any
/// other request under `/api/`, through protect mode (`proxied`) or to
/// forward auth is refused with 403 `email_unverified`. The user is read
/// from the store's cache, and only when the setting is on.
pub async fn unverified_refusal(
    state: &AppState,
    context: &RequestContext,
    method: &axum::http::Method,
    path: &str,
    proxied: bool,
) -> Option<crate::error::ApiError> {
    if !state.config.auth.require_verified_email {
        return None;
    }
    let user_id = context.user_id()?;
    let guarded = proxied
        || path.starts_with("/auth/forward")
        || (path.starts_with("/api/")
            && !(path == "/api/profile" && matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD)));
    if !guarded {
        return None;
    }
    match state.store.user_shared(user_id).await {
        Ok(user) if !user.email_verified => Some(crate::error::ApiError::email_unverified()),
        // A missing user, or a store failure, is the handler's to answer.
        _ => None,
    }
}
