//! `/auth/*` and `/.well-known/jwks.json`: sign-up, password login (tokens
//! or a browser session), refresh rotation, logout.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Routes;
use crate::{
    accounts::{
        self, AccountRequest, TokenPair,
        mfa::{self, MfaRequired},
    },
    app::AppState,
    audit::AuditContext,
    auth::{
        device::{DEVICE_COOKIE, DEVICE_COOKIE_TTL},
        principal::{Credential, CurrentUser, Person, SESSION_COOKIE},
        secret,
    },
    domain::{AuditKind, Outcome, Role, SignInMethod, User},
    error::ApiError,
    extract::JsonBody,
    layers::{
        authenticate::{cookie_value, session_cookie},
        rate_limit::SignInRequest,
    },
    metrics::OutcomeLabels,
    openapi::{self, tags},
    route_class::RouteClass,
    store::{LoginKind, RefreshSuccessor, RefreshUse, Revocation, RevocationKind, SessionRecord, StoreError},
};

pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(signup))
        .routes_of(RouteClass::SignIn, routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        // One path: POST signs in, DELETE signs out (`RouteClass::SignIn`).
        .routes_of(RouteClass::SignIn, routes!(create_session, delete_session))
        .routes(routes!(jwks))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(schema_with = openapi::email)]
    pub email: String,
    #[schema(schema_with = openapi::new_password)]
    pub password: SecretString,
    #[schema(schema_with = openapi::user_name)]
    pub name: String,
}

/// Creates an account with the role `user`.
#[utoipa::path(
    post,
    path = "/auth/signup",
    tag = tags::AUTH,
    request_body = SignupRequest,
    responses(
        (status = 201, description = "The new account.", body = User),
        (status = 400, description = "Invalid fields, named in `errors` (a weak password among them)."),
        (status = 409, description = "An account with this email already exists."),
    )
)]
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
        // Anyone may type any address: not proven until verified.
        email_verified: false,
    };
    let user = accounts::email::sign_up(&state, account).await?;
    state.audit.record(audit.event(state.clock.now(), AuditKind::Signup, Some(user.id), Outcome::Success));
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    /// Compared without regard to case or surrounding whitespace.
    email: String,
    #[schema(value_type = String)]
    password: SecretString,
}

/// Signs in with a password and returns an access token (JWT) and a
/// single-use refresh token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = tags::AUTH,
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; or, when the user has a second factor, the challenge to complete \
                                      at `POST /auth/mfa` (`mfa_required: true`, no tokens, no cookie).",
            body = LoginAnswer,
            headers(("Set-Cookie" = String, description = "`rampart_device=...; HttpOnly; SameSite=Strict; Path=/auth; \
                                                           Max-Age=15552000` (plus `Secure` over TLS or in \
                                                           production): this client's own failed-login budget for \
                                                           the account (see the lockout rules)."))),
        (status = 401, description = "The email or password is incorrect (the same for an unknown email, a wrong \
                                      password and a disabled account)."),
        (status = 429, description = "Too many attempts, or too many failed ones for this email."),
    )
)]
async fn login(
    State(state): State<AppState>,
    audit: AuditContext,
    sign_in: SignInRequest,
    headers: HeaderMap,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let signed_in =
        accounts::verify_login(&state, &audit, &sign_in, device_cookie(&headers), &request.email, &request.password)
            .await?;
    // A second factor is on: no tokens and no cookie until the second step.
    if let Some(challenge) = mfa::challenge(&state, &signed_in.user, LoginKind::Tokens, SignInMethod::Password).await? {
        return Ok(Json(LoginAnswer::SecondStep(challenge)).into_response());
    }
    let tokens = accounts::issue_tokens(&state, signed_in.user, Uuid::now_v7(), SignInMethod::Password).await?;
    let body = Json(LoginAnswer::Tokens(tokens)).into_response();
    Ok(with_cookie(body, &device_cookie_value(&state, &signed_in.device_cookie)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    #[schema(value_type = String)]
    refresh_token: SecretString,
}

/// Trades a refresh token for a new pair. Each refresh token works once;
/// presenting a spent one revokes its whole family.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = tags::AUTH,
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access token and refresh token.", body = TokenPair),
        (status = 401, description = "The refresh token is unknown, expired, revoked or spent."),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    audit: AuditContext,
    JsonBody(request): JsonBody<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let now = state.clock.now();
    let token_hash = secret::hash(request.refresh_token.expose_secret());
    // The successor is stored by the same transaction that spends the token,
    // so a revocation of the family or user cannot fall between the two.
    let (refresh_token, expires_at) = accounts::new_refresh_token(&state, now)?;
    let successor = RefreshSuccessor { token_hash: secret::hash(&refresh_token), expires_at };
    match state.store.rotate_refresh_token(&token_hash, &successor, now).await? {
        RefreshUse::Rotated { family_id, user_id, sign_in } => {
            let user = match state.store.user_by_id(user_id).await {
                Ok(user) if !user.disabled => user,
                _ => {
                    // Gone or disabled since the rotation: the successor,
                    // never handed out, dies with its family.
                    accounts::revoke_family(&state, family_id).await?;
                    state.audit.record(audit.event(now, AuditKind::TokenRefresh, Some(user_id), Outcome::Failure));
                    state.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
                    return Err(ApiError::Unauthorized { token_sent: false });
                }
            };
            state.audit.record(audit.event(now, AuditKind::TokenRefresh, Some(user.id), Outcome::Success));
            state.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome: "success" }).inc();
            Ok(Json(accounts::token_pair(&state, user, family_id, sign_in, refresh_token, now)?))
        }
        RefreshUse::Reused { family_id, user_id } => {
            // A spent token came back: someone holds a copy. The whole
            // family dies, the legitimate holder's newest token included.
            accounts::revoke_family(&state, family_id).await?;
            state.audit.record(audit.event(now, AuditKind::RefreshReuse, Some(user_id), Outcome::Denied));
            state.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome: "reuse" }).inc();
            Err(ApiError::Unauthorized { token_sent: false })
        }
        RefreshUse::Invalid => {
            state.audit.record(audit.event(now, AuditKind::TokenRefresh, None, Outcome::Failure));
            state.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
            Err(ApiError::Unauthorized { token_sent: false })
        }
    }
}

/// Ends the credential used: a bearer token's `jti` and refresh family,
/// or the session behind the cookie.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = tags::AUTH,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    responses(
        (status = 204, description = "Signed out; a session cookie is cleared.",
            headers(("Set-Cookie" = String, description = "Clears `rampart_session` (session callers)."))),
    )
)]
async fn logout(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let response = match principal.credential {
        // `Person` refused keys: a key is stopped by revoking it, never by
        // signing out.
        Credential::ApiKey { .. } => return Err(ApiError::key_not_allowed()),
        Credential::Bearer { jti, family, expires_at, .. } => {
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
    state.audit.record(audit.event(now, AuditKind::Logout, Some(principal.user_id), Outcome::Success));
    Ok(response)
}

/// Ends every token and session of the caller's account.
#[utoipa::path(
    post,
    path = "/auth/logout-all",
    tag = tags::AUTH,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    responses(
        (status = 204, description = "Every credential of the account is void.",
            headers(("Set-Cookie" = String, description = "Clears `rampart_session` (session callers)."))),
    )
)]
async fn logout_all(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
) -> Result<Response, ApiError> {
    accounts::revoke_everything(&state, principal.user_id).await?;
    state.audit.record(audit.event(state.clock.now(), AuditKind::Logout, Some(principal.user_id), Outcome::Success));
    let response = StatusCode::NO_CONTENT.into_response();
    Ok(if principal.is_session() { with_cookie(response, &cleared_cookie(&state)) } else { response })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionCreated {
    pub user: User,
    /// Send as `X-CSRF-Token` with every POST, PUT, PATCH and DELETE of this session.
    pub csrf_token: String,
}

/// A password sign-in's answer: the tokens, or (a second factor is on)
/// the challenge for `POST /auth/mfa`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum LoginAnswer {
    Tokens(TokenPair),
    SecondStep(MfaRequired),
}

/// A session sign-in's answer: the session, or the challenge.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum SessionAnswer {
    Session(SessionCreated),
    SecondStep(MfaRequired),
}

/// Signs in with a password and starts a browser session (a fresh session
/// id every time).
#[utoipa::path(
    post,
    path = "/auth/session",
    tag = tags::AUTH,
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; or, when the user has a second factor, the challenge to complete \
                                      at `POST /auth/mfa` (`mfa_required: true`, no cookie).",
            body = SessionAnswer,
            headers(("Set-Cookie" = String, description = "`rampart_session=...; HttpOnly; SameSite=Lax; Path=/; \
                                                           Max-Age=...` (plus `Secure` over TLS or in production), \
                                                           and the device cookie `rampart_device=...; HttpOnly; \
                                                           SameSite=Strict; Path=/auth; Max-Age=15552000`."))),
        (status = 401, description = "The email or password is incorrect."),
        (status = 429, description = "Too many attempts, or too many failed ones for this email."),
    )
)]
async fn create_session(
    State(state): State<AppState>,
    audit: AuditContext,
    sign_in: SignInRequest,
    headers: HeaderMap,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let signed_in =
        accounts::verify_login(&state, &audit, &sign_in, device_cookie(&headers), &request.email, &request.password)
            .await?;
    if let Some(challenge) = mfa::challenge(&state, &signed_in.user, LoginKind::Session, SignInMethod::Password).await?
    {
        return Ok(Json(SessionAnswer::SecondStep(challenge)).into_response());
    }
    let (cookie, csrf_token) = open_session(&state, &headers, signed_in.user.id, SignInMethod::Password).await?;
    let created = SessionAnswer::Session(SessionCreated { user: signed_in.user, csrf_token });
    let response = with_cookie(Json(created).into_response(), &cookie);
    Ok(with_cookie(response, &device_cookie_value(&state, &signed_in.device_cookie)))
}

/// Starts a browser session for `user_id` and returns its `Set-Cookie`
/// value and CSRF token. Whatever session the browser had is ended and the
/// new one gets a fresh id: no fixation.
pub(crate) async fn open_session(
    state: &AppState,
    headers: &HeaderMap,
    user_id: Uuid,
    sign_in: SignInMethod,
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
            sign_in,
        })
        .await
        .map_err(|error| match error {
            // The user was deleted while signing in.
            StoreError::NotFound => ApiError::Unauthorized { token_sent: false },
            other => other.into(),
        })?;
    let max_age = (absolute - now).whole_seconds();
    Ok((session_cookie_value(state, &session_id, max_age), csrf_token))
}

/// Ends the browser session named by the `rampart_session` cookie, on the
/// server, whatever else the request carries: a bearer token (valid or
/// not) beside the cookie does not spare the session. When the cookie is
/// the request's only credential, the CSRF rule applies as everywhere.
#[utoipa::path(
    delete,
    path = "/auth/session",
    tag = tags::AUTH,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    responses(
        (status = 204, description = "The session is deleted and the cookie cleared.",
            headers(("Set-Cookie" = String, description = "Clears `rampart_session`."))),
    )
)]
async fn delete_session(
    State(state): State<AppState>,
    audit: AuditContext,
    headers: HeaderMap,
    caller: Result<CurrentUser, ApiError>,
) -> Result<Response, ApiError> {
    let named = session_cookie(&headers).map(secret::hash);
    let id_hash = match &caller {
        Ok(CurrentUser(principal)) => match &principal.credential {
            Credential::Session { id_hash, .. } => Some(*id_hash),
            Credential::Bearer { .. } => named,
            Credential::ApiKey { .. } => return Err(ApiError::key_not_allowed()),
        },
        // A refused bearer token beside the cookie: the cookie still proves
        // its holder's session, which is ended all the same. Without such a
        // header the refusal stands (a guest, or a session without its
        // CSRF token).
        Err(_) if headers.contains_key(header::AUTHORIZATION) => named,
        Err(_) => None,
    };
    let Some(id_hash) = id_hash else {
        return match caller {
            Ok(_) => Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), &cleared_cookie(&state))),
            Err(error) => Err(error),
        };
    };
    let owner = state.sessions.session(&id_hash).await?.map(|session| session.user_id);
    state.sessions.delete_session(&id_hash).await?;
    if let Some(user_id) = owner {
        state.audit.record(audit.event(state.clock.now(), AuditKind::Logout, Some(user_id), Outcome::Success));
    }
    // The session is gone either way; a refused bearer token is still
    // reported as refused, so a client learns its token is bad.
    let answer = match caller {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    };
    Ok(with_cookie(answer, &cleared_cookie(&state)))
}

/// The JSON Web Key Set of the token signing keys.
#[expect(dead_code, reason = "describes `jsonwebtoken::jwk::JwkSet` in the OpenAPI document only")]
#[derive(ToSchema)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// A public key (RFC 7517); which members appear depends on `kty`.
#[expect(dead_code, reason = "describes `jsonwebtoken::jwk::Jwk` in the OpenAPI document only")]
#[derive(ToSchema)]
struct Jwk {
    /// `OKP` (EdDSA), `EC` (ES256) or `RSA` (RS256).
    kty: String,
    #[schema(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    /// The RFC 7638 thumbprint of the key.
    kid: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// The public keys that verify access tokens (`{"keys": []}` under HS256).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = tags::AUTH,
    responses(
        (status = 200, description = "The current and retired public keys.", body = Jwks,
            headers(("Cache-Control" = String, description = "`public, max-age=300`."))),
    )
)]
async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.tokens.jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

/// The `rampart_device` cookie the browser or client sent, if any.
fn device_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, DEVICE_COOKIE)
}

fn device_cookie_value(state: &AppState, value: &str) -> String {
    state.cookie(DEVICE_COOKIE, value, "HttpOnly; SameSite=Strict; Path=/auth", DEVICE_COOKIE_TTL.whole_seconds())
}

fn session_cookie_value(state: &AppState, session_id: &str, max_age: i64) -> String {
    state.cookie(SESSION_COOKIE, session_id, "HttpOnly; SameSite=Lax; Path=/", max_age)
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
