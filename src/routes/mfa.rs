//! Second factors (API.md "Second factors"): TOTP enrolment under
//! `/api/profile/mfa`, and `POST /auth/mfa`, the second step of a sign-in
//! (`accounts::mfa` does the work).

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::{
    Routes,
    auth::{SessionCreated, open_session, with_cookie},
    passkeys::AssertionCredential,
    users::own_user,
};
use crate::{
    accounts::{
        self,
        mfa::{self, SecondStep, SecondStepOptions, TotpEnrolment},
    },
    app::AppState,
    audit::AuditContext,
    auth::principal::Person,
    error::{ApiError, FieldError},
    extract::JsonBody,
    layers::rate_limit::SignInRequest,
    openapi::tags,
    route_class::RouteClass,
    store::LoginKind,
};

pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(second_factors))
        .routes(routes!(begin_totp, disable_totp))
        .routes(routes!(confirm_totp))
        .routes_of(RouteClass::SignIn, routes!(second_step))
        .routes_of(RouteClass::SignIn, routes!(second_step_options))
}

/// The caller's second factors.
#[derive(Serialize, ToSchema)]
struct SecondFactors {
    /// Whether TOTP is on (confirmed).
    totp: bool,
    /// Recovery codes not used yet.
    recovery_codes_left: u64,
    /// What a sign-in's second step accepts: `totp`, `recovery_code`.
    methods: Vec<&'static str>,
}

/// Which second factors the caller has (a person's own business: an API
/// key may not ask).
#[utoipa::path(
    get,
    path = "/api/profile/mfa",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The caller's second factors.", body = SecondFactors),
        (status = 403, description = "An API key asked (`code` `key_not_allowed`)."),
    )
)]
async fn second_factors(
    State(state): State<AppState>,
    Person(principal): Person,
) -> Result<Json<SecondFactors>, ApiError> {
    let methods = mfa::methods(&state, principal.user_id).await?;
    let recovery_codes_left = state.store.recovery_codes_left(principal.user_id).await?;
    Ok(Json(SecondFactors { totp: methods.contains(&"totp"), recovery_codes_left, methods }))
}

/// Starts a TOTP enrolment: a new secret, its `otpauth://` URI and the
/// URI's QR code. Not active until confirmed with a code; starting again
/// replaces a pending secret.
#[utoipa::path(
    post,
    path = "/api/profile/mfa/totp",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    responses(
        (status = 201, description = "The secret, shown this once.", body = TotpEnrolment),
        (status = 403, description = "An API key asked (`code` `key_not_allowed`)."),
        (status = 409, description = "TOTP is on already: turn it off first."),
    )
)]
async fn begin_totp(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
) -> Result<(StatusCode, Json<TotpEnrolment>), ApiError> {
    let user = own_user(&state, principal, &audit).await?;
    Ok((StatusCode::CREATED, Json(mfa::begin_totp(&state, &user).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    /// The six digits the authenticator app shows now.
    #[schema(pattern = "^[0-9]{6}$", example = "123456")]
    code: String,
}

#[derive(Serialize, ToSchema)]
struct RecoveryCodes {
    /// Ten single-use codes for when the app is lost, shown this once.
    recovery_codes: Vec<String>,
}

/// Turns TOTP on with a code from the app; answers ten recovery codes.
#[utoipa::path(
    post,
    path = "/api/profile/mfa/totp/confirm",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "TOTP is on; the recovery codes, shown this once.", body = RecoveryCodes),
        (status = 403, description = "The code is wrong (or an API key asked: `code` `key_not_allowed`)."),
        (status = 409, description = "No enrolment is waiting."),
    )
)]
async fn confirm_totp(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
    JsonBody(request): JsonBody<CodeRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let user = own_user(&state, principal, &audit).await?;
    let recovery_codes = mfa::confirm_totp(&state, &audit, &user, &request.code).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Turns TOTP off (its recovery codes with it); needs a fresh code.
#[utoipa::path(
    delete,
    path = "/api/profile/mfa/totp",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = CodeRequest,
    responses(
        (status = 204, description = "TOTP is off."),
        (status = 403, description = "The code is wrong or was used before, the confirmation's included (or an \
                                      API key asked: `code` `key_not_allowed`)."),
        (status = 409, description = "TOTP is not on."),
    )
)]
async fn disable_totp(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
    JsonBody(request): JsonBody<CodeRequest>,
) -> Result<StatusCode, ApiError> {
    let user = own_user(&state, principal, &audit).await?;
    mfa::disable_totp(&state, &audit, &user, &request.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body as read: which one of `code` and `recovery_code` came is
/// checked by the handler, with a clear 400 (`SecondStepBody` documents it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondStepRequest {
    mfa_token: SecretString,
    code: Option<String>,
    recovery_code: Option<SecretString>,
    passkey: Option<AssertionCredential>,
}

/// The challenge's token and exactly one second factor.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documentation only: `SecondStepRequest` is what is read
enum SecondStepBody {
    Code(CodeStep),
    RecoveryCode(RecoveryCodeStep),
    Passkey(Box<PasskeyStep>),
}

/// A TOTP code as the second step.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CodeStep {
    /// From the first factor's `{mfa_required: true, mfa_token}` answer.
    #[schema(value_type = String, pattern = "^mfa_[A-Za-z0-9_-]{43}$")]
    mfa_token: SecretString,
    /// The six digits the authenticator app shows.
    #[schema(pattern = "^[0-9]{6}$", example = "123456")]
    code: String,
}

/// A recovery code as the second step (spent by this use).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RecoveryCodeStep {
    /// From the first factor's `{mfa_required: true, mfa_token}` answer.
    #[schema(value_type = String, pattern = "^mfa_[A-Za-z0-9_-]{43}$")]
    mfa_token: SecretString,
    /// One of the ten codes shown at the confirmation, with or without dashes.
    #[schema(value_type = String, example = "7h2k-9qxm-4t0c-vb3e")]
    recovery_code: SecretString,
}

/// A passkey as the second step: the answer to the challenge's `passkey`
/// options.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PasskeyStep {
    /// From the first factor's `{mfa_required: true, mfa_token}` answer.
    #[schema(value_type = String, pattern = "^mfa_[A-Za-z0-9_-]{43}$")]
    mfa_token: SecretString,
    passkey: AssertionCredential,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OptionsRequest {
    /// From the first factor's answer, or a provider sign-in's `/login?mfa=`.
    #[schema(value_type = String, pattern = "^mfa_[A-Za-z0-9_-]{43}$")]
    mfa_token: SecretString,
}

/// What a sign-in's second step accepts, and (with passkeys) new options
/// for the authenticator: for a client that holds only the `mfa_token`.
/// Counts no attempt.
#[utoipa::path(
    post,
    path = "/auth/mfa/options",
    tag = tags::AUTH,
    request_body = OptionsRequest,
    responses(
        (status = 200, description = "The methods, and the passkey request options when `passkey` is one.",
            body = SecondStepOptions),
        (status = 401, description = "The challenge is spent, expired, out of attempts or unknown."),
        (status = 429, description = "Too many attempts."),
    )
)]
async fn second_step_options(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<OptionsRequest>,
) -> Result<Json<SecondStepOptions>, ApiError> {
    Ok(Json(mfa::options(&state, request.mfa_token.expose_secret()).await?))
}

/// What the second step answers: the login it completes.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum Completed {
    Tokens(accounts::TokenPair),
    Session(SessionCreated),
}

/// Completes a sign-in that answered `mfa_required`: the same kind of
/// login (tokens, or a browser session) that started it.
#[utoipa::path(
    post,
    path = "/auth/mfa",
    tag = tags::AUTH,
    request_body = SecondStepBody,
    responses(
        (status = 200, description = "Signed in: tokens for `POST /auth/login`, a session (with its cookie) for \
                                      `POST /auth/session` and provider sign-ins.", body = Completed),
        (status = 400, description = "Not exactly one of `code`, `recovery_code` and `passkey`."),
        (status = 401, description = "The code is wrong or was used, or the challenge is spent, expired (5 \
                                      minutes), out of attempts (5) or unknown."),
        (status = 429, description = "Too many attempts."),
    )
)]
async fn second_step(
    State(state): State<AppState>,
    audit: AuditContext,
    sign_in: SignInRequest,
    headers: HeaderMap,
    JsonBody(request): JsonBody<SecondStepRequest>,
) -> Result<Response, ApiError> {
    let step = match (request.code, request.recovery_code, request.passkey) {
        (Some(code), None, None) => SecondStep::Code(code),
        (None, Some(code), None) => SecondStep::RecoveryCode(code),
        (None, None, Some(credential)) => SecondStep::Passkey(credential.into_value()?),
        _ => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "code",
                "give exactly one of code, recovery_code and passkey",
            )]));
        }
    };
    let (user, challenge) = mfa::complete(&state, &audit, &sign_in, request.mfa_token.expose_secret(), step).await?;
    match challenge.login_kind {
        LoginKind::Tokens => {
            let tokens = accounts::issue_tokens(&state, user, uuid::Uuid::now_v7(), challenge.sign_in).await?;
            Ok(Json(Completed::Tokens(tokens)).into_response())
        }
        LoginKind::Session => {
            let (cookie, csrf_token) = open_session(&state, &headers, user.id, challenge.sign_in).await?;
            let body = Json(Completed::Session(SessionCreated { user, csrf_token })).into_response();
            Ok(with_cookie(body, &cookie))
        }
    }
}
