//! Email verification and password reset (`accounts::email` does the work).

use axum::{Json, extract::State, http::StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::Routes;
use crate::{
    accounts::email,
    app::AppState,
    audit::AuditContext,
    auth::principal::CurrentUser,
    domain::{Email, FieldError, User},
    error::ApiError,
    extract::JsonBody,
    layers::rate_limit::SignInRequest,
    openapi::{self, tags},
};

/// The rate-limit group of `/auth/password/*`, counted per client before
/// the handler and per address in it.
pub const PASSWORD_RESET_GROUP: &str = "password_reset";

pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(request_verification))
        .routes(routes!(verify_email))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
}

/// Mails the caller a link that proves their address.
#[utoipa::path(
    post,
    path = "/auth/email/verify/request",
    tag = tags::AUTH,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    responses(
        (status = 202, description = "A link is on its way, unless the address is already verified or a link \
                                      went out less than a minute ago (the answer is the same)."),
    )
)]
async fn request_verification(
    State(state): State<AppState>,
    CurrentUser(principal): CurrentUser,
) -> Result<StatusCode, ApiError> {
    email::request_verification(&state, principal.user_id).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyEmailRequest {
    /// The `token` of the mailed link (`/verify-email?token=...`).
    #[schema(pattern = "^ev_[A-Za-z0-9_-]{43}$")]
    token: String,
}

/// Proves the address a verification link went to.
#[utoipa::path(
    post,
    path = "/auth/email/verify",
    tag = tags::AUTH,
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "The address is verified.", body = User),
        (status = 400, description = "The link is invalid, expired or already used (`errors[0].field` is `token`)."),
    )
)]
async fn verify_email(
    State(state): State<AppState>,
    audit: AuditContext,
    JsonBody(request): JsonBody<VerifyEmailRequest>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(email::verify_email(&state, &audit, &request.token).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ForgotPasswordRequest {
    #[schema(schema_with = openapi::email)]
    email: String,
}

/// Mails a password reset link, if an account has this address.
#[utoipa::path(
    post,
    path = "/auth/password/forgot",
    tag = tags::AUTH,
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "The same answer, in the same time, whether or not an account has the \
                                      address; a link (30 minutes, single use) is mailed if one has."),
        (status = 400, description = "Not an email address."),
        (status = 429, description = "Too many requests from this client, or for this address."),
    )
)]
async fn forgot_password(
    State(state): State<AppState>,
    audit: AuditContext,
    request_info: SignInRequest,
    JsonBody(request): JsonBody<ForgotPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let address = Email::parse(&request.email).map_err(|m| ApiError::Validation(vec![FieldError::new("email", m)]))?;
    if let Err(retry_after_secs) =
        state.rate_limiter.admit_address(&request_info, PASSWORD_RESET_GROUP, address.as_str()).await
    {
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }
    email::forgot_password(&state, audit, address);
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetPasswordRequest {
    /// The `token` of the mailed link (`/reset-password?token=...`).
    #[schema(pattern = "^pr_[A-Za-z0-9_-]{43}$")]
    token: String,
    #[schema(schema_with = openapi::new_password)]
    password: SecretString,
}

/// Sets a new password with a reset link, and signs the account out
/// everywhere.
#[utoipa::path(
    post,
    path = "/auth/password/reset",
    tag = tags::AUTH,
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "The password is set; every token, session, refresh family and API key of \
                                      the account is revoked, and a notice is mailed."),
        (status = 400, description = "The link is invalid, expired or already used (`token`), or the password \
                                      breaks the rules (`password`; the link stays usable)."),
        (status = 429, description = "Too many requests from this client."),
    )
)]
async fn reset_password(
    State(state): State<AppState>,
    audit: AuditContext,
    JsonBody(request): JsonBody<ResetPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    email::reset_password(&state, &audit, &request.token, request.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
