//! `/auth/*` and `/.well-known/jwks.json`: sign-up, password login (tokens
//! or a browser session), refresh rotation, logout.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    accounts::{self, AccountRequest, TokenPair},
    app::AppState,
    audit::{AuditContext, Outcome},
    auth::{
        principal::{Credential, CurrentUser, SESSION_COOKIE},
        secret,
    },
    domain::{Role, User},
    error::ApiError,
    extract::JsonBody,
    layers::authenticate::session_cookie,
    metrics::OutcomeLabels,
    store::{RefreshUse, Revocation, RevocationKind, SessionRecord},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/signup", post(signup))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/logout-all", post(logout_all))
        .route("/auth/session", post(create_session).delete(delete_session))
        .route("/.well-known/jwks.json", get(jwks))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    pub password: SecretString,
    pub name: String,
}

async fn signup(
    State(state): State<AppState>,
    audit: AuditContext,
    JsonBody(request): JsonBody<SignupRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let account = AccountRequest {
        email: &request.email,
        name: &request.name,
        password: request.password,
        role: Role::User,
        department: None,
    };
    let user = accounts::create_account(&*state.store, &state.hasher, account).await?;
    state.audit.record(audit.event(state.clock.now(), "signup", Some(user.id), Outcome::Success));
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: SecretString,
}

async fn login(
    State(state): State<AppState>,
    audit: AuditContext,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let user = accounts::verify_login(&state, &audit, &request.email, &request.password).await?;
    Ok(Json(accounts::issue_tokens(&state, user, Uuid::now_v7()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: SecretString,
}

async fn refresh(
    State(state): State<AppState>,
    audit: AuditContext,
    JsonBody(request): JsonBody<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let now = state.clock.now();
    let token_hash = secret::hash(request.refresh_token.expose_secret());
    match state.store.use_refresh_token(&token_hash, now).await? {
        RefreshUse::Rotated { family_id, user_id } => {
            let user = match state.store.user_by_id(user_id).await {
                Ok(user) if !user.disabled => user,
                _ => {
                    state.audit.record(audit.event(now, "token_refresh", Some(user_id), Outcome::Failure));
                    state.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
                    return Err(ApiError::Unauthorized { token_sent: false });
                }
            };
            state.audit.record(audit.event(now, "token_refresh", Some(user.id), Outcome::Success));
            state.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome: "success" }).inc();
            Ok(Json(accounts::issue_tokens(&state, user, family_id).await?))
        }
        RefreshUse::Reused { family_id, user_id } => {
            // A spent token came back: someone holds a copy. The whole
            // family dies, the legitimate holder's newest token included.
            accounts::revoke_family(&state, family_id).await?;
            state.audit.record(audit.event(now, "refresh_reuse", Some(user_id), Outcome::Denied));
            state.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome: "reuse" }).inc();
            Err(ApiError::Unauthorized { token_sent: false })
        }
        RefreshUse::Invalid => {
            state.audit.record(audit.event(now, "token_refresh", None, Outcome::Failure));
            state.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
            Err(ApiError::Unauthorized { token_sent: false })
        }
    }
}

/// Ends the credential used: a bearer token's `jti` and refresh family,
/// or the session behind the cookie.
async fn logout(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let response = match principal.credential {
        Credential::Bearer { jti, family, expires_at } => {
            let expires_at = expires_at.max(now) + time::Duration::minutes(1);
            state
                .revocations
                .revoke(Revocation { kind: RevocationKind::Token, subject: jti, revoked_before: None, expires_at })
                .await?;
            accounts::revoke_family(&state, family).await?;
            StatusCode::NO_CONTENT.into_response()
        }
        Credential::Session { id_hash, .. } => {
            state.sessions.delete_session(&id_hash).await?;
            with_cookie(StatusCode::NO_CONTENT.into_response(), &cleared_cookie(&state))
        }
    };
    state.audit.record(audit.event(now, "logout", Some(principal.user_id), Outcome::Success));
    Ok(response)
}

async fn logout_all(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
) -> Result<Response, ApiError> {
    accounts::revoke_everything(&state, principal.user_id).await?;
    state.audit.record(audit.event(state.clock.now(), "logout", Some(principal.user_id), Outcome::Success));
    let response = StatusCode::NO_CONTENT.into_response();
    Ok(if principal.is_session() { with_cookie(response, &cleared_cookie(&state)) } else { response })
}

#[derive(Serialize)]
struct SessionCreated {
    user: User,
    csrf_token: String,
}

async fn create_session(
    State(state): State<AppState>,
    audit: AuditContext,
    headers: HeaderMap,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let user = accounts::verify_login(&state, &audit, &request.email, &request.password).await?;
    let (cookie, csrf_token) = open_session(&state, &headers, user.id).await?;
    Ok(with_cookie(Json(SessionCreated { user, csrf_token }).into_response(), &cookie))
}

/// Starts a browser session for `user_id` and returns its `Set-Cookie`
/// value and CSRF token. Whatever session the browser had is ended and the
/// new one gets a fresh id: no fixation.
pub(crate) async fn open_session(
    state: &AppState,
    headers: &HeaderMap,
    user_id: Uuid,
) -> Result<(String, String), ApiError> {
    if let Some(old) = session_cookie(headers) {
        state.sessions.delete_session(&secret::hash(old)).await?;
    }
    let session_id = secret::new_token("");
    let csrf_token = secret::new_token("");
    let now = state.clock.now();
    let auth = &state.config.auth;
    let absolute = now + time::Duration::try_from(auth.session_absolute_timeout.0).map_err(anyhow::Error::from)?;
    let idle =
        (now + time::Duration::try_from(auth.session_idle_timeout.0).map_err(anyhow::Error::from)?).min(absolute);
    state
        .sessions
        .insert_session(&SessionRecord {
            id_hash: secret::hash(&session_id),
            user_id,
            csrf_hash: secret::hash(&csrf_token),
            created_at: now,
            idle_expires_at: idle,
            absolute_expires_at: absolute,
        })
        .await?;
    let max_age = (absolute - now).whole_seconds();
    Ok((session_cookie_value(state, &session_id, max_age), csrf_token))
}

async fn delete_session(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
) -> Result<Response, ApiError> {
    if let Credential::Session { id_hash, .. } = &principal.credential {
        state.sessions.delete_session(id_hash).await?;
        state.audit.record(audit.event(state.clock.now(), "logout", Some(principal.user_id), Outcome::Success));
    }
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), &cleared_cookie(&state)))
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.tokens.jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

fn session_cookie_value(state: &AppState, session_id: &str, max_age: i64) -> String {
    let secure = if state.secure_cookies() { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={session_id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}")
}

pub fn cleared_cookie(state: &AppState) -> String {
    session_cookie_value(state, "", 0)
}

pub fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
