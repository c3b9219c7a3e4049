//! The one error type of the HTTP surface, and the only place that turns an
//! error into a response body (RFC 9457 `application/problem+json`).
//!
//! Handlers, extractors and layers return `ApiError`. Its `IntoResponse`
//! does not write the body yet: it leaves a `Problem` in the response's
//! extensions, and the `problem` layer, which knows the request id, renders
//! it. The same layer turns any other error response the framework makes
//! (405, an empty 413, a caught panic) into a problem, so no error leaves the
//! router without this shape.
//!
//! Security: the body never carries internal text. `Internal` keeps its cause
//! for the log only; titles and details below are fixed strings or come from
//! our own validation messages.

use std::borrow::Cow;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

pub use crate::domain::FieldError;
use crate::{accounts::AccountError, json, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("bad request: {0}")]
    BadRequest(Cow<'static, str>),
    /// `token_sent` selects RFC 6750's `error="invalid_token"` challenge.
    #[error("unauthorized")]
    Unauthorized { token_sent: bool },
    /// A failed sign-in: one body whatever the reason (unknown email,
    /// wrong password, disabled account), so nothing can be learnt from it.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A failed second step: one body whatever the reason (wrong or reused
    /// code, spent, expired or unknown challenge).
    #[error("second step failed")]
    SecondStepFailed,
    /// A failed passkey sign-in: one body whatever the reason (unknown or
    /// removed passkey, bad signature, spent or expired ceremony).
    #[error("passkey sign-in failed")]
    PasskeySignInFailed,
    #[error("forbidden: {0}")]
    Forbidden(Cow<'static, str>),
    /// A 403 a client must tell apart from others: `code` goes into the
    /// problem body (API.md v1.1's codes).
    #[error("forbidden ({code}): {detail}")]
    ForbiddenCode { code: &'static str, detail: Cow<'static, str> },
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(Cow<'static, str>),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("request timed out")]
    Timeout,
    #[error("service unavailable")]
    Unavailable,
    /// The store could not be reached or timed out; the cause is logged,
    /// never sent.
    #[error("database unavailable: {0:#}")]
    DatabaseUnavailable(anyhow::Error),
    /// A path with routes, none of which allows the method; `allow` is the
    /// `Allow` header's value.
    #[error("method not allowed")]
    MethodNotAllowed { allow: HeaderValue },
    /// Protect mode: the upstream refused or dropped the connection before
    /// answering.
    #[error("bad gateway")]
    BadGateway,
    /// Protect mode: no response headers within the upstream's `response_timeout`.
    #[error("gateway timeout")]
    GatewayTimeout,
    /// Protect mode: the upstream's health check marks it down.
    #[error("upstream down")]
    UpstreamDown { retry_after_secs: u64 },
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. }
            | Self::InvalidCredentials
            | Self::SecondStepFailed
            | Self::PasskeySignInFailed => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::ForbiddenCode { .. } => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout | Self::Unavailable | Self::DatabaseUnavailable(_) | Self::UpstreamDown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest(detail.into())
    }

    pub fn forbidden(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden(detail.into())
    }

    /// What an API key may never do: manage keys, passwords, second
    /// factors, or sign out (`key_not_allowed`).
    /// `auth.require_verified_email` and an unproven address.
    pub fn email_unverified() -> Self {
        Self::ForbiddenCode {
            code: "email_unverified",
            detail: "Verify your email address first: POST /auth/email/verify/request sends a new link.".into(),
        }
    }

    /// `auth.require_mfa_for` and a credential without a second factor.
    pub fn mfa_enrolment_required() -> Self {
        Self::ForbiddenCode {
            code: "mfa_enrolment_required",
            detail: "Your role needs a second factor: turn one on at /account (POST /api/profile/mfa/totp), then \
                     sign in again."
                .into(),
        }
    }

    pub fn key_not_allowed() -> Self {
        Self::ForbiddenCode {
            code: "key_not_allowed",
            detail: "An API key cannot do this; sign in as a person.".into(),
        }
    }

    /// A policy denial: with the denying rule's code, if it has one.
    pub fn denied(code: Option<&'static str>) -> Self {
        match code {
            Some("scope_missing") => {
                Self::ForbiddenCode { code: "scope_missing", detail: "This API key's scopes do not allow this.".into() }
            }
            Some(code) => Self::ForbiddenCode { code, detail: "You are not allowed to do this.".into() },
            None => Self::forbidden("You are not allowed to do this."),
        }
    }

    fn problem(self) -> Problem {
        let status = self.status();
        let mut problem = Problem::for_status(status);
        match self {
            Self::Validation(errors) => {
                problem.detail = "The request has invalid fields.".into();
                problem.errors = Some(errors);
            }
            Self::BadRequest(detail) | Self::Forbidden(detail) | Self::Conflict(detail) => {
                problem.detail = detail;
            }
            Self::ForbiddenCode { code, detail } => {
                problem.detail = detail;
                problem.code = Some(code);
            }
            Self::Unauthorized { .. } => {
                problem.detail = "Valid credentials are required.".into();
            }
            Self::InvalidCredentials => problem.detail = "The email or password is incorrect.".into(),
            Self::SecondStepFailed => {
                problem.detail =
                    "The code or passkey is wrong or was used, or the sign-in expired: sign in again.".into();
            }
            Self::PasskeySignInFailed => {
                problem.detail = "The passkey was not accepted, or the sign-in expired: start again.".into();
            }
            Self::TooManyRequests { .. } => {
                problem.detail = "Too many requests; retry after the time in Retry-After.".into();
            }
            Self::Timeout => problem.detail = "The request took too long and was stopped.".into(),
            Self::Internal(cause) | Self::DatabaseUnavailable(cause) => problem.internal = Some(format!("{cause:#}")),
            Self::BadGateway => problem.detail = "The upstream service did not answer.".into(),
            Self::GatewayTimeout => problem.detail = "The upstream service did not answer in time.".into(),
            Self::UpstreamDown { .. } => {
                problem.detail = "The upstream service is down; retry after the time in Retry-After.".into();
            }
            Self::NotFound
            | Self::PayloadTooLarge
            | Self::UnsupportedMediaType
            | Self::Unavailable
            | Self::MethodNotAllowed { .. } => {}
        }
        problem
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(what) => Self::Conflict(what.into()),
            StoreError::LastActiveAdmin => Self::Conflict("This would leave no active admin.".into()),
            StoreError::Unavailable(cause) => Self::DatabaseUnavailable(cause),
            StoreError::Other(cause) => Self::Internal(cause),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Validation(errors) => Self::Validation(errors),
            AccountError::EmailTaken => Self::Conflict("An account with this email already exists.".into()),
            AccountError::InvalidCredentials => Self::InvalidCredentials,
            AccountError::SecondStepFailed => Self::SecondStepFailed,
            AccountError::WrongCode => Self::Forbidden("The code is wrong, expired or was used already.".into()),
            AccountError::NoPendingEnrolment => {
                Self::Conflict("No TOTP enrolment is waiting: start one with POST /api/profile/mfa/totp.".into())
            }
            AccountError::SecondFactorOff => Self::Conflict("TOTP is not on.".into()),
            AccountError::PasskeysOff => Self::Conflict(
                "Passkeys are off on this server: its origin is an IP address (set webauthn.origin).".into(),
            ),
            AccountError::NoPendingPasskey => Self::Conflict(
                "No passkey registration is waiting (or it expired): start one with \
                 POST /api/profile/passkeys/register/start."
                    .into(),
            ),
            AccountError::PasskeyRefused => {
                Self::Forbidden("The authenticator's answer did not verify: start the registration again.".into())
            }
            AccountError::PasskeySignInFailed => Self::PasskeySignInFailed,
            AccountError::TooManyRequests { retry_after_secs } => Self::TooManyRequests { retry_after_secs },
            AccountError::Store(error) => error.into(),
            AccountError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = status.into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized { token_sent: true } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"rampart\", error=\"invalid_token\""),
                );
            }
            Self::Unauthorized { token_sent: false } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"rampart\""));
            }
            Self::TooManyRequests { retry_after_secs } | Self::UpstreamDown { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, allow.clone());
            }
            _ => {}
        }
        response.extensions_mut().insert(self.problem());
        response
    }
}

/// A problem waiting for its request id; rendered by the `problem` layer.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: Cow<'static, str>,
    pub errors: Option<Vec<FieldError>>,
    /// A word that tells this refusal apart (RFC 9457 extension member).
    pub code: Option<&'static str>,
    /// The cause of a 5xx, for the log line only.
    pub internal: Option<String>,
}

/// An RFC 9457 problem, the body of every error response
/// (`application/problem+json`). This type is also the `Problem` schema of
/// the OpenAPI document, so the two cannot differ.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody<'a> {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "about:blank")]
    kind: &'static str,
    /// The HTTP status phrase.
    #[schema(value_type = String, example = "Not Found")]
    title: &'static str,
    #[schema(minimum = 400, maximum = 599, example = 404)]
    status: u16,
    /// What went wrong, in words meant for people; never internal text.
    #[schema(value_type = String)]
    detail: &'a str,
    /// The `X-Request-Id` of the response, for reports and the log.
    #[schema(value_type = String)]
    request_id: &'a str,
    /// Present on validation failures: one entry per offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<FieldError>)]
    errors: Option<&'a [FieldError]>,
    /// Present where a client must tell refusals apart, e.g.
    /// `scope_missing` or `key_not_allowed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "scope_missing")]
    code: Option<&'a str>,
}

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

impl Problem {
    /// The generic problem for a status: used for errors the framework
    /// produced without going through `ApiError`.
    pub fn for_status(status: StatusCode) -> Self {
        let detail = match status {
            StatusCode::NOT_FOUND => "No resource exists at this path.",
            StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed on this path.",
            StatusCode::PAYLOAD_TOO_LARGE => "The request body is larger than the server accepts.",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "The body must be JSON with Content-Type: application/json.",
            StatusCode::URI_TOO_LONG => "The request URI is longer than the server accepts.",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "The request headers are larger than the server accepts.",
            StatusCode::REQUEST_TIMEOUT => "The request was not received in time.",
            StatusCode::SERVICE_UNAVAILABLE => "The service is unavailable; try again later.",
            StatusCode::BAD_GATEWAY => "The upstream service did not answer.",
            StatusCode::GATEWAY_TIMEOUT => "The upstream service did not answer in time.",
            StatusCode::FORBIDDEN => "This action is not allowed.",
            StatusCode::UNAUTHORIZED => "Valid credentials are required.",
            status if status.is_server_error() => {
                "Something went wrong on our side. Quote the request id when reporting it."
            }
            _ => "The request could not be processed.",
        };
        Self { status, detail: detail.into(), errors: None, code: None, internal: None }
    }

    /// The JSON body, with the request id the problem belongs to.
    pub fn to_body(&self, request_id: &str) -> Vec<u8> {
        let title = self.status.canonical_reason().unwrap_or("Error");
        // Room for the whole body at once (`to_vec` starts at 128 bytes and
        // would grow for nearly every problem).
        let mut out = Vec::with_capacity(192 + self.detail.len() + request_id.len());
        if self.errors.is_none() {
            // Floods of 401s and 429s are made of these: written directly,
            // the bytes serde_json makes of `ProblemBody` (tested).
            out.extend_from_slice(br#"{"type":"about:blank","title":"#);
            json::write_str(&mut out, title);
            out.extend_from_slice(br#","status":"#);
            out.extend_from_slice(self.status.as_str().as_bytes());
            out.extend_from_slice(br#","detail":"#);
            json::write_str(&mut out, &self.detail);
            out.extend_from_slice(br#","request_id":"#);
            json::write_str(&mut out, request_id);
            if let Some(code) = self.code {
                out.extend_from_slice(br#","code":"#);
                json::write_str(&mut out, code);
            }
            out.push(b'}');
            return out;
        }
        let body = ProblemBody {
            kind: "about:blank",
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            request_id,
            errors: self.errors.as_deref(),
            code: self.code,
        };
        // Serialising plain strings and numbers cannot fail.
        match serde_json::to_writer(&mut out, &body) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_keep_their_cause_out_of_the_body() {
        let error = ApiError::Internal(anyhow::anyhow!("SELECT * FROM users: disk I/O error at /var/db"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let problem = response.extensions().get::<Problem>().expect("problem attached");
        let body = String::from_utf8(problem.to_body("rid-1")).expect("utf-8");
        assert!(!body.contains("SELECT") && !body.contains("/var/db"), "{body}");
        assert!(problem.internal.as_deref().is_some_and(|cause| cause.contains("disk I/O")));
    }

    #[test]
    fn problem_bodies_have_every_member() {
        let body = Problem::for_status(StatusCode::NOT_FOUND).to_body("abc");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        for member in ["type", "title", "status", "detail", "request_id"] {
            assert!(json.get(member).is_some(), "missing {member}");
        }
        assert_eq!(json["status"], 404);
        assert_eq!(json["request_id"], "abc");
        assert!(json.get("errors").is_none());
    }

    #[test]
    fn the_direct_body_is_what_serde_makes_of_the_problem() {
        let statuses = [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS, StatusCode::from_u16(599).unwrap()];
        let details = ["Valid credentials are required.", "quote \" back\\slash\nnew line \u{1} ünï", ""];
        let codes = [None, Some("scope_missing"), Some("odd \" code")];
        for ((status, detail), code) in statuses.into_iter().zip(details).zip(codes) {
            let problem = Problem { status, detail: detail.into(), errors: None, code, internal: None };
            for request_id in ["01a22331-5fd7-7c0e-9365-1747380a5c76", "r\"id"] {
                let expected = serde_json::to_vec(&ProblemBody {
                    kind: "about:blank",
                    title: status.canonical_reason().unwrap_or("Error"),
                    status: status.as_u16(),
                    detail,
                    request_id,
                    errors: None,
                    code,
                })
                .unwrap();
                let body = problem.to_body(request_id);
                assert_eq!(String::from_utf8(body).unwrap(), String::from_utf8(expected).unwrap());
            }
        }
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge() {
        let response = ApiError::Unauthorized { token_sent: true }.into_response();
        let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().expect("ascii");
        assert!(challenge.starts_with("Bearer") && challenge.contains("invalid_token"));
    }
}
