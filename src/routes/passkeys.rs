//! Passkeys (API.md "Second factors"): registration, listing and removal
//! under `/api/profile/passkeys`, and the passwordless sign-in at
//! `/auth/passkey/*` (`accounts::passkeys` does the work). The bodies are
//! what the browser's `PublicKeyCredential.toJSON()` gives; their shape is
//! checked here (400), their content by the ceremony (403 or 401).

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{
    Routes,
    auth::{SessionCreated, open_session, with_cookie},
    users::own_user,
};
use crate::{
    accounts::{self, passkeys},
    app::AppState,
    audit::AuditContext,
    auth::principal::Person,
    domain::SignInMethod,
    error::ApiError,
    extract::JsonBody,
    openapi::{self, tags},
    route_class::RouteClass,
    store::PasskeyRecord,
};

pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(list_passkeys))
        .routes(routes!(begin_registration))
        .routes(routes!(finish_registration))
        .routes(routes!(remove_passkey))
        .routes_of(RouteClass::SignIn, routes!(begin_sign_in))
        .routes_of(RouteClass::SignIn, routes!(finish_sign_in))
}

/// A registered passkey, as its owner sees it (never its key material).
#[derive(Serialize, ToSchema)]
struct PasskeyView {
    id: Uuid,
    #[schema(schema_with = openapi::user_name)]
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(schema_with = openapi::date_time)]
    created_at: OffsetDateTime,
    /// `null` until the passkey first signs in.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(schema_with = openapi::nullable_date_time, required = true)]
    last_used_at: Option<OffsetDateTime>,
}

impl From<PasskeyRecord> for PasskeyView {
    fn from(record: PasskeyRecord) -> Self {
        Self { id: record.id, name: record.name, created_at: record.created_at, last_used_at: record.last_used_at }
    }
}

#[derive(Serialize, ToSchema)]
struct PasskeyList {
    /// Oldest first.
    items: Vec<PasskeyView>,
}

/// The caller's passkeys.
#[utoipa::path(
    get,
    path = "/api/profile/passkeys",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The caller's passkeys, oldest first.", body = PasskeyList),
        (status = 403, description = "An API key asked (`code` `key_not_allowed`)."),
    )
)]
async fn list_passkeys(
    State(state): State<AppState>,
    Person(principal): Person,
) -> Result<Json<PasskeyList>, ApiError> {
    let items = state.store.passkeys(principal.user_id).await?.into_iter().map(PasskeyView::from).collect();
    Ok(Json(PasskeyList { items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RegistrationRequest {
    /// What the owner calls it ("Laptop", "Phone").
    #[schema(schema_with = openapi::user_name)]
    name: String,
}

/// Starts registering a passkey: the options to pass to
/// `navigator.credentials.create({publicKey})`, e.g. through
/// `PublicKeyCredential.parseCreationOptionsFromJSON`. A discoverable
/// credential with user verification is required. A new start replaces a
/// registration still waiting; each waits 5 minutes.
#[utoipa::path(
    post,
    path = "/api/profile/passkeys/register/start",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = RegistrationRequest,
    responses(
        (status = 200, description = "`PublicKeyCredentialCreationOptions` in JSON form (base64url binary).",
            body = Object),
        (status = 400, description = "A bad name."),
        (status = 403, description = "An API key asked (`code` `key_not_allowed`)."),
        (status = 409, description = "The caller has 20 passkeys already, or passkeys are off on this server (its \
                                      origin is an IP address)."),
    )
)]
async fn begin_registration(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
    JsonBody(request): JsonBody<RegistrationRequest>,
) -> Result<Json<Value>, ApiError> {
    let user = own_user(&state, principal, &audit).await?;
    Ok(Json(passkeys::begin_registration(&state, &user, &request.name).await?))
}

/// `"public-key"`, the only WebAuthn credential type.
#[derive(Serialize, Deserialize, ToSchema)]
enum CredentialType {
    #[serde(rename = "public-key")]
    PublicKey,
}

/// An authenticator's registration answer: `credential.toJSON()` of what
/// `navigator.credentials.create` gave. Binary members are base64url.
#[derive(Serialize, Deserialize, ToSchema)]
struct RegistrationCredential {
    id: String,
    #[serde(rename = "rawId")]
    raw_id: String,
    #[serde(rename = "type")]
    kind: CredentialType,
    response: AttestationResponse,
    /// Other members the browser adds (`clientExtensionResults`,
    /// `authenticatorAttachment`...) are passed on to the check.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: Map<String, Value>,
}

#[derive(Serialize, Deserialize, ToSchema)]
struct AttestationResponse {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "attestationObject")]
    attestation_object: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: Map<String, Value>,
}

/// Finishes the waiting registration with the authenticator's answer.
#[utoipa::path(
    post,
    path = "/api/profile/passkeys/register/finish",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = RegistrationCredential,
    responses(
        (status = 201, description = "The passkey is registered; the owner is told by mail.", body = PasskeyView),
        (status = 400, description = "The body is not a registration answer."),
        (status = 403, description = "The answer did not verify (wrong challenge or origin, no user verification, \
                                      not a discoverable credential), or an API key asked (`code` \
                                      `key_not_allowed`)."),
        (status = 409, description = "No registration is waiting (none started, finished already, or over 5 \
                                      minutes old), the passkey is registered already, or passkeys are off."),
    )
)]
async fn finish_registration(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
    JsonBody(credential): JsonBody<RegistrationCredential>,
) -> Result<(StatusCode, Json<PasskeyView>), ApiError> {
    let user = own_user(&state, principal, &audit).await?;
    let credential = serde_json::to_value(credential).map_err(anyhow::Error::from)?;
    let record = passkeys::finish_registration(&state, &audit, &user, credential).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Removes one of the caller's passkeys.
#[utoipa::path(
    delete,
    path = "/api/profile/passkeys/{id}",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    params(("id" = Uuid, Path, description = "The passkey's id; a malformed one is 404.")),
    responses(
        (status = 204, description = "Removed; the owner is told by mail."),
        (status = 403, description = "An API key asked (`code` `key_not_allowed`)."),
        (status = 404, description = "No such passkey of the caller's."),
    )
)]
async fn remove_passkey(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let user = own_user(&state, principal, &audit).await?;
    passkeys::remove(&state, &audit, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A passwordless sign-in's options, with the ceremony to finish.
#[derive(Serialize, ToSchema)]
struct SignInOptions {
    /// Send back to `POST /auth/passkey/finish`.
    challenge_id: Uuid,
    /// The members of `PublicKeyCredentialRequestOptions` in JSON form
    /// (`challenge`, `rpId`, `timeout`, `userVerification`...), for
    /// `PublicKeyCredential.parseRequestOptionsFromJSON`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    options: Map<String, Value>,
}

/// Starts a passwordless sign-in: no email needed, the authenticator
/// offers the user's passkeys for this site. The ceremony waits 5 minutes.
#[utoipa::path(
    post,
    path = "/auth/passkey/start",
    tag = tags::AUTH,
    responses(
        (status = 200, description = "The request options and the ceremony's id.", body = SignInOptions),
        (status = 409, description = "Passkeys are off on this server (its origin is an IP address)."),
        (status = 429, description = "Too many attempts."),
    )
)]
async fn begin_sign_in(State(state): State<AppState>) -> Result<Json<SignInOptions>, ApiError> {
    let (challenge_id, options) = passkeys::begin_sign_in(&state).await?;
    let Value::Object(options) = options else {
        return Err(anyhow::anyhow!("request options are not an object").into());
    };
    Ok(Json(SignInOptions { challenge_id, options }))
}

/// An authenticator's sign-in answer: `credential.toJSON()` of what
/// `navigator.credentials.get` gave. Binary members are base64url.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct AssertionCredential {
    id: String,
    #[serde(rename = "rawId")]
    raw_id: String,
    #[serde(rename = "type")]
    kind: CredentialType,
    response: AssertionResponse,
    /// Other members the browser adds are passed on to the check.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: Map<String, Value>,
}

#[derive(Serialize, Deserialize, ToSchema)]
struct AssertionResponse {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    signature: String,
    /// The user the discoverable credential belongs to.
    #[serde(rename = "userHandle", default, skip_serializing_if = "Option::is_none")]
    user_handle: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: Map<String, Value>,
}

impl AssertionCredential {
    pub(crate) fn into_value(self) -> Result<Value, ApiError> {
        Ok(serde_json::to_value(self).map_err(anyhow::Error::from)?)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignInRequest {
    /// From `POST /auth/passkey/start`.
    challenge_id: Uuid,
    credential: AssertionCredential,
    /// `true`: start a browser session (cookie and CSRF token) instead of
    /// answering tokens.
    #[serde(default)]
    session: bool,
}

/// What a passkey sign-in answers: tokens, or a session.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum SignedIn {
    Tokens(accounts::TokenPair),
    Session(SessionCreated),
}

/// Finishes a passwordless sign-in. A passkey counts as two factors (amr
/// `["hwk","mfa"]`): no second step follows. The ceremony is spent
/// whatever the outcome.
#[utoipa::path(
    post,
    path = "/auth/passkey/finish",
    tag = tags::AUTH,
    request_body = SignInRequest,
    responses(
        (status = 200, description = "Signed in: tokens as `POST /auth/login` gives, or with `session: true` a \
                                      session (with its cookie) as `POST /auth/session` gives.", body = SignedIn),
        (status = 400, description = "The body is not a sign-in answer."),
        (status = 401, description = "The passkey is unknown or removed, its answer does not verify, its user is \
                                      disabled, or the ceremony is spent, expired (5 minutes) or unknown."),
        (status = 409, description = "Passkeys are off on this server."),
        (status = 429, description = "Too many attempts."),
    )
)]
async fn finish_sign_in(
    State(state): State<AppState>,
    audit: AuditContext,
    headers: HeaderMap,
    JsonBody(request): JsonBody<SignInRequest>,
) -> Result<Response, ApiError> {
    let credential = request.credential.into_value()?;
    let user = passkeys::finish_sign_in(&state, &audit, request.challenge_id, credential).await?;
    if request.session {
        let (cookie, csrf_token) = open_session(&state, &headers, user.id, SignInMethod::Passkey).await?;
        let body = Json(SignedIn::Session(SessionCreated { user, csrf_token })).into_response();
        return Ok(with_cookie(body, &cookie));
    }
    let tokens = accounts::issue_tokens(&state, user, Uuid::now_v7(), SignInMethod::Passkey).await?;
    Ok(Json(SignedIn::Tokens(tokens)).into_response())
}
