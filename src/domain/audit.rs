//! What an audit event is: its kind, its outcome and the facts it records.
//! `audit::Auditor` logs and stores them; `routes::audit` shows them.
//!
//! Security: an event holds ids, an IP and a route template, never a
//! password, token, cookie or body.

use std::{fmt, net::IpAddr};

use serde::{Serialize, Serializer};

use super::text_enum::text_enum;
use time::OffsetDateTime;
use uuid::Uuid;

text_enum! {
    // How an audited action ended (a `//` comment: a doc comment would
    // become the schema's description and change the OpenAPI document).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Outcome {
        Success = "success",
        Failure = "failure",
        Denied = "denied",
    }
    unknown = "not an audit outcome";
}

/// Defines `AuditKind` with one name per kind: the string in the log, the
/// store and the JSON, written once.
macro_rules! audit_kinds {
    ($($(#[$doc:meta])* $kind:ident = $name:literal,)+) => {
        /// What happened. Serialised, logged and stored as its name
        /// (`login_success`, ...).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum AuditKind {
            $($(#[$doc])* $kind,)+
            /// A name this version does not know, read from the store (a row
            /// written by another version): kept and shown as stored, so
            /// reading the trail never fails on it.
            Other(Box<str>),
        }

        impl AuditKind {
            /// Every kind this version records.
            pub const ALL: &[AuditKind] = &[$(Self::$kind,)+];

            /// A known kind by its name; `None` for any other text.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($name => Some(Self::$kind),)+
                    _ => None,
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$kind => $name,)+
                    Self::Other(name) => name,
                }
            }
        }
    };
}

audit_kinds! {
    /// A password sign-in succeeded.
    LoginSuccess = "login_success",
    /// A password sign-in failed or was throttled.
    LoginFailure = "login_failure",
    Logout = "logout",
    TokenRefresh = "token_refresh",
    /// A refresh token was used twice: its family is revoked.
    RefreshReuse = "refresh_reuse",
    Signup = "signup",
    PasswordChange = "password_change",
    RoleChange = "role_change",
    /// A 401 (one per client IP and route per minute).
    Unauthorized = "unauthorized",
    /// A 403, or a denial by the policy.
    Forbidden = "forbidden",
    /// A 429 (one per rate-limit key per window).
    RateLimited = "rate_limited",
    /// A 5xx.
    ServerError = "server_error",
    IpBlocked = "ip_blocked",
    IpUnblocked = "ip_unblocked",
    /// A sign-in through a provider account linked before.
    OauthLogin = "oauth_login",
    /// A provider account linked, at its sign-in, to the user with its
    /// verified email (whose own email is proven).
    OauthLink = "oauth_link",
    /// A new user made from a provider account.
    OauthSignup = "oauth_signup",
    /// A provider sign-in that ended without a session.
    OauthFailure = "oauth_failure",
    /// A signed-in user linked a provider account (`start?link=true`).
    ProviderLinked = "provider_linked",
    /// An API key was made (its id in `detail`).
    ApiKeyCreated = "api_key_created",
    /// An API key was revoked by its owner or an admin (its id in `detail`).
    ApiKeyRevoked = "api_key_revoked",
    /// A request with an `rk_` key that is unknown, wrong, expired or
    /// revoked (one per client IP and route per minute, as 401s).
    ApiKeyRefused = "api_key_refused",
    /// A user proved their address with a verification link.
    EmailVerified = "email_verified",
    /// `POST /auth/password/forgot` (the user, when the address is an account's).
    PasswordResetRequested = "password_reset_requested",
    /// A password was set with a reset link; every credential of the user stopped.
    PasswordReset = "password_reset",
    /// A sign-in's second step succeeded (`POST /auth/mfa`).
    MfaSuccess = "mfa_success",
    /// A second step failed: a wrong or reused code, or a spent, expired or
    /// unknown challenge; also a wrong code to turn TOTP off.
    MfaFailure = "mfa_failure",
    /// TOTP was confirmed and turned on.
    MfaEnabled = "mfa_enabled",
    /// TOTP was turned off.
    MfaDisabled = "mfa_disabled",
    /// A recovery code completed a sign-in (and is spent).
    RecoveryCodeUsed = "recovery_code_used",
    /// A passkey was registered (its id in `detail`).
    PasskeyAdded = "passkey_added",
    /// A passkey was removed (its id in `detail`).
    PasskeyRemoved = "passkey_removed",
}

/// Which events give way when the audit queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditPriority {
    /// Sign-ins, sign-ups, account, password and role changes, token
    /// events, blocks: kept over traffic events.
    Security,
    /// What the status of a request tells (401, 403, 429, 5xx, a blocked
    /// client's refusals), recorded per client and window in a flood.
    Traffic,
}

impl AuditPriority {
    pub const ALL: [AuditPriority; 2] = [Self::Security, Self::Traffic];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Security => "security",
            Self::Traffic => "traffic",
        }
    }
}

impl AuditKind {
    /// The kind a stored name reads back as: a known kind, or `Other`.
    pub fn from_stored(name: String) -> Self {
        Self::parse(&name).unwrap_or_else(|| Self::Other(name.into_boxed_str()))
    }

    /// Whether the event gives way to others when the queue is full.
    pub fn priority(&self) -> AuditPriority {
        match self {
            Self::Unauthorized | Self::ApiKeyRefused | Self::Forbidden | Self::RateLimited | Self::ServerError => {
                AuditPriority::Traffic
            }
            _ => AuditPriority::Security,
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuditKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One audit event, as logged, stored and listed.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub request_id: Option<String>,
    pub event: AuditKind,
    pub user_id: Option<Uuid>,
    pub client_ip: Option<IpAddr>,
    pub route: Option<String>,
    pub outcome: Outcome,
    /// For denials: what was tried, e.g. `UpdatePost on Post "0190..."`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()).as_ref(), Some(kind));
            assert_eq!(serde_json::to_string(kind).unwrap_or_default(), format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(AuditKind::LoginSuccess.as_str(), "login_success");
        assert_eq!(AuditKind::parse("nonesuch"), None);
    }

    #[test]
    fn an_unknown_stored_name_is_kept_as_written() {
        let kind = AuditKind::from_stored("made_by_a_later_version".to_owned());
        assert_eq!(kind, AuditKind::Other("made_by_a_later_version".into()));
        assert_eq!(serde_json::to_string(&kind).unwrap_or_default(), "\"made_by_a_later_version\"");
        assert_eq!(AuditKind::from_stored("logout".to_owned()), AuditKind::Logout);
    }

    #[test]
    fn sign_ins_role_changes_and_blocks_outrank_status_events() {
        for kind in [AuditKind::LoginSuccess, AuditKind::LoginFailure, AuditKind::RoleChange, AuditKind::IpBlocked] {
            assert_eq!(kind.priority(), AuditPriority::Security, "{kind}");
        }
        for kind in [AuditKind::Unauthorized, AuditKind::Forbidden, AuditKind::RateLimited, AuditKind::ServerError] {
            assert_eq!(kind.priority(), AuditPriority::Traffic, "{kind}");
        }
    }
}
