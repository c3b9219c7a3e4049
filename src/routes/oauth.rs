//! `GET /auth/oauth/{provider}/start` and `/callback`: "Sign in with …".
//!
//! `start` keeps the flow (hashes of its id and `state`, the PKCE verifier,
//! the nonce, where to land) in the store for ten minutes and gives the
//! browser only the flow id, in an HttpOnly cookie scoped to
//! `/auth/oauth/`. `callback` takes that flow (once: it is deleted as it is
//! read), checks `state` and the RFC 9207 `iss`, lets `auth::oauth` redeem
//! the code and check the ID token, and `accounts` pick the user. Any
//! failure lands on `/login?error=<code>` with no session and an
//! `oauth_failure` audit event saying why.
//!
//! `start?link=true` (signed in, by session or bearer) keeps the caller's
//! id in the flow; its callback links the provider account to that user
//! (`provider_linked`) and opens no session: the way a person whose
//! sign-in ended in `account_exists` adds the provider from `/account`.

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use utoipa_axum::routes;

use super::Routes;
use crate::{
    accounts::{self, ProviderLink, ProviderRefusal, ProviderSignIn, mfa},
    app::AppState,
    audit::AuditContext,
    auth::{oauth::OAuthError, principal::Caller, secret},
    domain::{AuditEvent, AuditKind, Outcome},
    error::ApiError,
    metrics::OutcomeLabels,
    openapi::tags,
    routes::auth::{open_session, with_cookie},
    store::{LoginKind, OAuthFlow},
};

/// The flow cookie: HttpOnly, sent only to `/auth/oauth/…`. `SameSite=Lax`
/// because the callback is a top-level navigation from the provider's site.
pub const FLOW_COOKIE: &str = "rampart_oauth";
/// A JavaScript-readable copy of the session's CSRF token, so that pages
/// (`/account`) can send `X-CSRF-Token`. `SameSite=Strict`; it is useless
/// without the HttpOnly session cookie.
pub const CSRF_COOKIE: &str = "rampart_csrf";
const FLOW_TTL_SECS: i64 = 600;
const DEFAULT_LANDING: &str = "/account";

pub fn router() -> Routes {
    Routes::new().routes(routes!(start)).routes(routes!(callback))
}

#[derive(Deserialize)]
struct StartQuery {
    redirect_to: Option<String>,
    #[serde(default)]
    link: bool,
}

/// Starts "Sign in with <provider>": a redirect to the provider, with
/// `state`, PKCE (S256) and, for OpenID Connect, a nonce. With
/// `link=true`, a signed-in person links a provider account to their own
/// account instead.
#[utoipa::path(
    get,
    path = "/auth/oauth/{provider}/start",
    tag = tags::AUTH,
    security((), ("bearer" = []), ("cookie" = [])),
    params(
        ("provider" = String, Path, description = "A provider of `oauth.providers`."),
        ("redirect_to" = Option<String>, Query,
            description = "Where a finished sign-in lands: exactly an entry of `oauth.redirect_allowlist`; \
                           default `/account`."),
        ("link" = Option<bool>, Query,
            description = "`true`: link the provider account the person signs in with at the provider to the \
                           signed-in caller (session cookie or bearer token) instead of signing in; the callback \
                           opens no session. Default `false`."),
    ),
    responses(
        (status = 302, description = "To the provider's authorization endpoint, with the flow cookie.",
            headers(
                ("Location" = String, description = "The provider's authorization URL."),
                ("Set-Cookie" = String, description = "`rampart_oauth=<flow id>; HttpOnly; SameSite=Lax; \
                                                       Path=/auth/oauth/; Max-Age=600`."),
            )),
        (status = 303, description = "The provider's metadata could not be fetched.",
            headers(("Location" = String, description = "`/login?error=provider_unavailable`."))),
        (status = 400, description = "`redirect_to` is not on the allow-list, or the query string is malformed."),
        (status = 401, description = "`link=true` without being signed in."),
        (status = 403, description = "`link=true` by session cookie from a navigation another site started \
                                      (`Sec-Fetch-Site` other than `same-origin` or `none`), by an API key, or \
                                      by a user whose address is unverified while `auth.require_verified_email` \
                                      is on (`code` `email_unverified`)."),
        (status = 404, description = "No provider has this name."),
    )
)]
async fn start(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Result<Caller, ApiError>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let provider = state.oauth.get(&name).ok_or(ApiError::NotFound)?;
    let query = serde_urlencoded::from_str::<StartQuery>(raw.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::bad_request("The query string is not valid."))?;
    // A sign-in looks at no credentials; a link needs the caller's.
    let link_user_id = if query.link {
        match caller? {
            Caller::User(principal) => {
                // A new way to sign in as the owner: never for an API key.
                principal.refuse_api_key()?;
                // The session cookie (SameSite=Lax) comes with a top-level
                // navigation from any site: a link is started from this
                // site's pages only, so another site cannot start one.
                if principal.is_session() && is_cross_site(&headers) {
                    return Err(ApiError::forbidden("Link a provider from this site's /account page."));
                }
                // `auth.require_verified_email`: linking is none of what an
                // unverified user may do (verify, sign out, read the profile).
                if state.config.auth.require_verified_email
                    && !state.store.user_shared(principal.user_id).await?.email_verified
                {
                    return Err(ApiError::email_unverified());
                }
                Some(principal.user_id)
            }
            Caller::Guest => return Err(ApiError::Unauthorized { token_sent: false }),
        }
    } else {
        None
    };
    let redirect_to = match query.redirect_to {
        None => DEFAULT_LANDING.to_owned(),
        Some(target) if state.config.oauth.redirect_allowlist.contains(&target) => target,
        Some(_) => {
            state.audit.record(failure_event(&state, &audit, &name, "redirect_not_allowed"));
            return Err(ApiError::bad_request("redirect_to is not on the allow-list (oauth.redirect_allowlist)."));
        }
    };
    let authorization = match state.oauth.start(provider).await {
        Ok(authorization) => authorization,
        Err(error) => return Ok(fail(&state, &audit, &name, &error.to_string(), error.code())),
    };
    let flow_id = secret::new_token("");
    let now = state.clock.now();
    state
        .store
        .insert_oauth_flow(&OAuthFlow {
            id_hash: secret::hash(&flow_id),
            provider: name,
            state_hash: secret::hash(&authorization.state),
            pkce_verifier: authorization.pkce_verifier,
            nonce: authorization.nonce,
            redirect_to,
            expires_at: now + time::Duration::seconds(FLOW_TTL_SECS),
            link_user_id,
        })
        .await?;
    let location = HeaderValue::from_str(authorization.url.as_str()).map_err(anyhow::Error::from)?;
    let response = (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    Ok(with_cookie(response, &flow_cookie(&state, &flow_id, FLOW_TTL_SECS)))
}

#[derive(Deserialize, Default)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// Why a callback ended without a session: the code for `/login?error=`
/// and, for the log, what happened.
struct Failure {
    code: &'static str,
    detail: String,
}

impl Failure {
    fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}

impl From<OAuthError> for Failure {
    fn from(error: OAuthError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

impl From<ProviderRefusal> for Failure {
    fn from(refusal: ProviderRefusal) -> Self {
        Self::new(refusal.code(), refusal.code())
    }
}

/// Where the provider sends the browser back. Success and every failure
/// are a 303: to the flow's landing path with a session, or to
/// `/login?error=<code>` without one. An existing account is joined by
/// email only when the provider verified the email and the account's own
/// email is proven; else `account_exists`. A link flow (`start?link=true`)
/// links the provider account to the user who started it and opens no
/// session.
#[utoipa::path(
    get,
    path = "/auth/oauth/{provider}/callback",
    tag = tags::AUTH,
    params(
        ("provider" = String, Path, description = "The provider the flow was started with."),
        ("code" = Option<String>, Query, description = "The authorization code."),
        ("state" = Option<String>, Query, description = "The flow's `state`."),
        ("iss" = Option<String>, Query, description = "The provider's issuer (RFC 9207)."),
        ("error" = Option<String>, Query, description = "The provider's refusal, e.g. `access_denied`."),
    ),
    responses(
        (status = 303, description = "Signed in (to the landing path, with the session and `rampart_csrf` \
                                      cookies), linked (a `link=true` flow: to the landing path, no new session) \
                                      or refused (to `/login?error=<code>`, e.g. `account_exists`); the flow \
                                      cookie is cleared.",
            headers(
                ("Location" = String, description = "The landing path, or `/login?error=<code>`."),
                ("Set-Cookie" = String, description = "The flow cookie cleared; on success also the session."),
            )),
    )
)]
async fn callback(
    State(state): State<AppState>,
    audit: AuditContext,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A query that does not parse is a failed callback like any other.
    let query = serde_urlencoded::from_str::<CallbackQuery>(raw.as_deref().unwrap_or(""));
    let outcome = match query {
        Ok(query) => finish(&state, &name, query, &headers).await?,
        Err(error) => Err(Failure::new("invalid_request", format!("callback query: {error}"))),
    };
    let (user, how, redirect_to) = match outcome {
        Ok(done) => done,
        Err(failure) => return Ok(fail(&state, &audit, &name, &failure.detail, failure.code)),
    };
    let how = match how {
        Done::SignIn(how) => how,
        Done::Link(link) => {
            // A link is no sign-in: the caller keeps the credentials they
            // started it with, and gets no new session.
            if link == ProviderLink::Linked {
                let mut event =
                    audit.event(state.clock.now(), AuditKind::ProviderLinked, Some(user.id), Outcome::Success);
                event.detail = Some(format!("provider={name}"));
                state.audit.record(event);
            }
            return Ok(with_cookie(see_other(&redirect_to)?, &flow_cookie(&state, "", 0)));
        }
    };
    let mut event = audit.event(state.clock.now(), how.audit_kind(), Some(user.id), Outcome::Success);
    event.detail = Some(format!("provider={name}"));
    state.audit.record(event);
    // A second factor is on: the provider was the first; `/login` asks for
    // the second and `POST /auth/mfa` opens the session.
    if let Some(challenge) =
        mfa::challenge(&state, &user, LoginKind::Session, crate::domain::SignInMethod::Provider).await?
    {
        let second_step = format!("/login?mfa={}", challenge.mfa_token);
        return Ok(with_cookie(see_other(&second_step)?, &flow_cookie(&state, "", 0)));
    }
    let (session_cookie, csrf_token) =
        open_session(&state, &headers, user.id, crate::domain::SignInMethod::Provider).await?;
    state.metrics.logins.get_or_create(&OutcomeLabels { outcome: "success" }).inc();
    let response = see_other(&redirect_to)?;
    let response = with_cookie(response, &session_cookie);
    let response = with_cookie(response, &csrf_cookie(&state, &csrf_token));
    Ok(with_cookie(response, &flow_cookie(&state, "", 0)))
}

/// What a callback did: a sign-in, or a link (`start?link=true`).
enum Done {
    SignIn(ProviderSignIn),
    Link(ProviderLink),
}

type Finished = (crate::domain::User, Done, String);

async fn finish(
    state: &AppState,
    name: &str,
    query: CallbackQuery,
    headers: &HeaderMap,
) -> Result<Result<Finished, Failure>, ApiError> {
    let Some(provider) = state.oauth.get(name) else {
        return Ok(Err(Failure::new("unknown_provider", "no such provider")));
    };
    let Some(flow_id) = flow_cookie_value(headers) else {
        return Ok(Err(Failure::new("flow_missing", "no flow cookie: the sign-in did not start in this browser")));
    };
    // Taken (deleted) before anything else is checked: a flow is finished
    // at most once, whatever the outcome.
    let Some(flow) = state.store.take_oauth_flow(&secret::hash(flow_id), state.clock.now()).await? else {
        return Ok(Err(Failure::new("flow_expired", "the flow is unknown, used or expired")));
    };
    if flow.provider != name {
        return Ok(Err(Failure::new("invalid_state", "the flow belongs to another provider")));
    }
    if let Some(error) = query.error {
        let code = if error == "access_denied" { "access_denied" } else { "provider_error" };
        return Ok(Err(Failure::new(code, format!("the provider answered error={error}"))));
    }
    let state_matches =
        query.state.as_deref().is_some_and(|given| bool::from(secret::hash(given).ct_eq(&flow.state_hash)));
    if !state_matches {
        return Ok(Err(Failure::new("invalid_state", "state is missing or does not match the flow")));
    }
    match state.oauth.check_response_issuer(provider, query.iss.as_deref()).await {
        Ok(true) => {}
        Ok(false) => return Ok(Err(Failure::new("issuer_mismatch", "the response's iss is not this provider"))),
        Err(error) => return Ok(Err(error.into())),
    }
    let Some(code) = query.code.filter(|code| !code.is_empty()) else {
        return Ok(Err(Failure::new("invalid_request", "no authorization code")));
    };
    // A link started by credentials revoked since (logout-all, a password
    // change) is void, like the credentials.
    let started = flow.expires_at - time::Duration::seconds(FLOW_TTL_SECS);
    if let Some(user_id) = flow.link_user_id
        && state.revocations.is_session_revoked(user_id, started)
    {
        return Ok(Err(Failure::new("flow_expired", "the account's credentials were revoked since the link started")));
    }
    let account = match state.oauth.finish(provider, code, flow.pkce_verifier, &flow.nonce).await {
        Ok(account) => account,
        Err(error) => return Ok(Err(error.into())),
    };
    let done = match flow.link_user_id {
        Some(user_id) => {
            accounts::link_provider(state, name, &account, user_id).await?.map(|(user, link)| (user, Done::Link(link)))
        }
        None => {
            accounts::sign_in_with_provider(state, name, &account).await?.map(|(user, how)| (user, Done::SignIn(how)))
        }
    };
    Ok(done.map(|(user, how)| (user, how, flow.redirect_to)).map_err(Failure::from))
}

fn failure_event(state: &AppState, audit: &AuditContext, provider: &str, code: &str) -> AuditEvent {
    let mut event = audit.event(state.clock.now(), AuditKind::OauthFailure, None, Outcome::Failure);
    event.detail = Some(format!("provider={provider} reason={code}"));
    event
}

/// Ends a flow without a session: audited, logged with the reason, and the
/// browser sent to `/login` with a code the page turns into a sentence.
fn fail(state: &AppState, audit: &AuditContext, provider: &str, detail: &str, code: &'static str) -> Response {
    tracing::warn!(provider, reason = code, detail, "oauth sign-in failed");
    state.audit.record(failure_event(state, audit, provider, code));
    state.metrics.logins.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
    let response = see_other(&format!("/login?error={code}")).unwrap_or_else(|_| StatusCode::SEE_OTHER.into_response());
    with_cookie(response, &flow_cookie(state, "", 0))
}

fn see_other(location: &str) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(location).map_err(anyhow::Error::from)?;
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
}

fn flow_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    state.cookie(FLOW_COOKIE, value, "HttpOnly; SameSite=Lax; Path=/auth/oauth/", max_age)
}

pub fn csrf_cookie(state: &AppState, csrf_token: &str) -> String {
    let max_age = i64::try_from(state.config.auth.session_absolute_timeout.0.as_secs()).unwrap_or(i64::MAX);
    state.cookie(CSRF_COOKIE, csrf_token, "SameSite=Strict; Path=/", max_age)
}

/// Whether the browser says another site (or a sibling subdomain) started
/// this request (Fetch Metadata); a client that sends no such header is
/// taken at its word.
fn is_cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").is_some_and(|site| !matches!(site.to_str(), Ok("same-origin" | "none")))
}

fn flow_cookie_value(headers: &HeaderMap) -> Option<&str> {
    crate::layers::authenticate::cookie_value(headers, FLOW_COOKIE)
}
