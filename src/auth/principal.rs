//! Who is calling, as handlers see it.
//!
//! The `authenticate` layer resolves credentials once per request into an
//! `Authentication` in the request extensions. Handlers take one of two
//! extractors: `Caller` (guest or signed-in; for routes guests may use) or
//! `CurrentUser` (signed-in only). Both refuse a bad credential with 401,
//! and both enforce CSRF: a state-changing request (POST, PUT, PATCH, DELETE) that is
//! authenticated by the session cookie must carry `X-CSRF-Token` matching
//! the session's token (compared in constant time), else 403.

use axum::{
    extract::FromRequestParts,
    http::{Method, request::Parts},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::secret;
use std::sync::Arc;

use crate::{
    domain::{Role, Scopes, SignInMethod},
    error::ApiError,
    request_context::RequestContext,
};

pub const SESSION_COOKIE: &str = "rampart_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone)]
pub enum Credential {
    Bearer {
        jti: Uuid,
        family: Uuid,
        expires_at: OffsetDateTime,
        /// From the token's `amr` claim.
        sign_in: SignInMethod,
    },
    Session {
        id_hash: [u8; 32],
        csrf_hash: [u8; 32],
        sign_in: SignInMethod,
    },
    /// An API key (`Authorization: Bearer rk_...`), limited to its scopes.
    ApiKey {
        key_id: Uuid,
        scopes: Scopes,
    },
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    pub department: Option<String>,
    pub credential: Credential,
}

impl Principal {
    pub fn is_session(&self) -> bool {
        matches!(self.credential, Credential::Session { .. })
    }

    /// API.md's `amr` for this credential: how its sign-in was made (a
    /// token's `amr` claim, a session's record).
    pub fn amr(&self) -> &'static [&'static str] {
        match &self.credential {
            Credential::Bearer { sign_in, .. } | Credential::Session { sign_in, .. } => sign_in.amr(),
            Credential::ApiKey { .. } => &["api_key"],
        }
    }

    /// Whether the credential came from a sign-in with two factors.
    pub fn is_multi_factor(&self) -> bool {
        match &self.credential {
            Credential::Bearer { sign_in, .. } | Credential::Session { sign_in, .. } => sign_in.is_multi_factor(),
            Credential::ApiKey { .. } => false,
        }
    }

    /// `key_not_allowed` for an API key: what only a person may do
    /// (manage keys, passwords, second factors; sign out). A fixed rule,
    /// not the policy's, so that no policy file can lift it.
    pub fn refuse_api_key(&self) -> Result<(), ApiError> {
        match self.credential {
            Credential::ApiKey { .. } => Err(ApiError::key_not_allowed()),
            _ => Ok(()),
        }
    }

    /// An API key's scopes; `None` for other credentials.
    pub fn scopes(&self) -> Option<&Scopes> {
        match &self.credential {
            Credential::ApiKey { scopes, .. } => Some(scopes),
            _ => None,
        }
    }
}

/// The outcome of the `authenticate` layer.
#[derive(Debug, Clone)]
pub enum Authentication {
    Guest,
    /// Credentials were sent and are not valid (or of an unknown scheme).
    Invalid {
        token_sent: bool,
    },
    Signed(Principal),
    /// The session could not be looked up; the cause is already logged.
    Unavailable,
}

/// Guest or signed-in user.
#[derive(Debug, Clone)]
pub enum Caller {
    Guest,
    User(Principal),
}

impl Caller {
    pub fn user(&self) -> Option<&Principal> {
        match self {
            Caller::Guest => None,
            Caller::User(principal) => Some(principal),
        }
    }
}

/// A signed-in user; guests get 401.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Principal);

/// A signed-in person: as `CurrentUser`, and an API key gets 403
/// `key_not_allowed` (`Principal::refuse_api_key`) before the body is read.
#[derive(Debug, Clone)]
pub struct Person(pub Principal);

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn check_csrf(parts: &Parts, principal: &Principal) -> Result<(), ApiError> {
    let Credential::Session { csrf_hash, .. } = &principal.credential else {
        return Ok(());
    };
    if !is_unsafe(&parts.method) {
        return Ok(());
    }
    let presented = parts.headers.get(CSRF_HEADER).and_then(|value| value.to_str().ok());
    match presented {
        Some(token) if secret::matches(token, csrf_hash) => Ok(()),
        _ => Err(ApiError::forbidden("This request needs the session's X-CSRF-Token header.")),
    }
}

fn caller_from(parts: &Parts) -> Result<Caller, ApiError> {
    let context = parts.extensions.get::<Arc<RequestContext>>();
    match context.and_then(|context| context.authentication.get()) {
        None | Some(Authentication::Guest) => Ok(Caller::Guest),
        Some(Authentication::Invalid { token_sent }) => Err(ApiError::Unauthorized { token_sent: *token_sent }),
        Some(Authentication::Unavailable) => Err(ApiError::Unavailable),
        Some(Authentication::Signed(principal)) => {
            check_csrf(parts, principal)?;
            Ok(Caller::User(principal.clone()))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        caller_from(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Person {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentUser(principal) = CurrentUser::from_request_parts(parts, state).await?;
        principal.refuse_api_key()?;
        Ok(Person(principal))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match caller_from(parts)? {
            Caller::User(principal) => Ok(CurrentUser(principal)),
            Caller::Guest => Err(ApiError::Unauthorized { token_sent: false }),
        }
    }
}
