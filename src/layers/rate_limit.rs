//! Rate limits per route group (API.md "Rate limiting"): `global` on every
//! route but the health checks, `login` on `POST /auth/login` and
//! `POST /auth/session`, `api` on `/api/*`, and groups added by path prefix
//! and method in configuration.
//!
//! Keys: the user id for signed-in callers, else the client IP (IPv6 by
//! prefix); the login group counts both (IP, email) and IP. Every limited
//! response carries `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-
//! ratelimit-headers-10 syntax) listing every group that applied; a refusal
//! is a 429 problem with `Retry-After`, decided from memory (or Redis)
//! before the handler runs. 429s are audited once per key and window, not
//! once per request, so a flood cannot flood the audit trail.

use std::{net::IpAddr, sync::Arc};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde::Deserialize;

use super::access_log::RequestContext;
use crate::{
    audit::{AuditEvent, Auditor, Outcome},
    clock::Clock,
    config::{Config, CountMode, OnBackendError, RateLimitStrategy},
    error::ApiError,
    limiter::{
        LimitKey, LimiterBackend, Subject, account_subject, ip_subject,
        strategy::{Decision, Quota, Strategy},
    },
};

#[derive(Debug, Clone)]
enum Scope {
    Everything,
    Login,
    Api,
    Paths { prefixes: Vec<String>, methods: Vec<Method> },
}

#[derive(Debug, Clone)]
struct Group {
    index: u16,
    name: String,
    quota: Quota,
    failures_only: bool,
    on_backend_error: OnBackendError,
    scope: Scope,
    /// This group's member of `RateLimit-Policy`, computed once.
    policy_item: String,
    /// The name as an sf-string, for `RateLimit`.
    quoted_name: String,
    /// This group's series of `rate_limited_total`.
    limited: Counter,
}

impl Group {
    fn applies(&self, method: &Method, path: &str) -> bool {
        match &self.scope {
            Scope::Everything => true,
            Scope::Login => *method == Method::POST && (path == "/auth/login" || path == "/auth/session"),
            Scope::Api => path.starts_with("/api/"),
            Scope::Paths { prefixes, methods } => {
                prefixes.iter().any(|prefix| path.starts_with(prefix.as_str()))
                    && (methods.is_empty() || methods.contains(method))
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

pub struct RateLimiter {
    groups: Vec<Group>,
    backend: Arc<dyn LimiterBackend>,
    v6_prefix: u8,
    body_limit: usize,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    /// `RateLimit-Policy` by set of groups, for up to 8 groups (see
    /// `add_headers`): the policies never change.
    policies: Vec<Option<HeaderValue>>,
    /// 429s answered, by group.
    pub limited: Family<GroupLabels, Counter>,
    /// Decisions the backend could not make, by group.
    pub backend_errors: Family<GroupLabels, Counter>,
    last_error_log: std::sync::atomic::AtomicI64,
}

/// Paths never limited: load balancers must always reach them.
fn exempt(path: &str) -> bool {
    matches!(path, "/health" | "/ready")
}

impl RateLimiter {
    pub fn new(config: &Config, backend: Arc<dyn LimiterBackend>, audit: Arc<Auditor>, clock: Arc<dyn Clock>) -> Self {
        let limited = Family::<GroupLabels, Counter>::default();
        let groups: Vec<Group> = config
            .rate_limit
            .iter()
            .enumerate()
            .map(|(index, (name, group))| {
                let scope = match name.as_str() {
                    "global" => Scope::Everything,
                    "login" => Scope::Login,
                    "api" => Scope::Api,
                    _ => Scope::Paths {
                        prefixes: group.paths.clone(),
                        methods: group
                            .methods
                            .iter()
                            .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                            .collect(),
                    },
                };
                let strategy = match group.strategy {
                    RateLimitStrategy::FixedWindow => Strategy::FixedWindow,
                    RateLimitStrategy::SlidingWindow => Strategy::SlidingWindow,
                    RateLimitStrategy::TokenBucket => Strategy::TokenBucket,
                };
                let window_ms = i64::try_from(group.window.0.as_millis()).unwrap_or(i64::MAX);
                let window_secs = group.window.0.as_secs().max(1);
                Group {
                    index: u16::try_from(index).unwrap_or(u16::MAX),
                    name: name.clone(),
                    quota: Quota { strategy, limit: group.limit, window_ms },
                    failures_only: group.count == CountMode::Failures,
                    on_backend_error: group.on_backend_error.unwrap_or(if name == "login" {
                        OnBackendError::Deny
                    } else {
                        OnBackendError::Allow
                    }),
                    scope,
                    policy_item: format!("{};q={};w={}", sf_string(name), group.limit, window_secs),
                    quoted_name: sf_string(name),
                    limited: limited.get_or_create(&GroupLabels { group: name.clone() }).clone(),
                }
            })
            .collect();
        // Every series exists from the start, so rate() works from the first scrape.
        let backend_errors = Family::<GroupLabels, Counter>::default();
        for group in &groups {
            drop(backend_errors.get_or_create(&GroupLabels { group: group.name.clone() }));
        }
        let policies = if groups.len() <= 8 {
            (0..1u64 << groups.len()).map(|set| policy_header(&groups, set)).collect()
        } else {
            Vec::new()
        };
        Self {
            groups,
            policies,
            backend,
            v6_prefix: config.server.ipv6_prefix,
            body_limit: config.server.body_limit.as_usize(),
            audit,
            clock,
            limited,
            backend_errors,
            last_error_log: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
        }
    }

    /// The counters one request touches in `group`.
    fn keys(&self, group: &Group, ip: u128, user: Option<uuid::Uuid>, account: Option<u64>) -> Keys {
        let key = |subject| LimitKey { group: group.index, subject, audit: false };
        match (&group.scope, account) {
            (Scope::Login, Some(account)) => Keys::two(key(Subject::IpAndAccount(ip, account)), key(Subject::Ip(ip))),
            (Scope::Login, None) => Keys::one(key(Subject::Ip(ip))),
            _ => Keys::one(key(user.map_or(Subject::Ip(ip), Subject::User))),
        }
    }

    /// One group's decision over its keys: allowed only if every key is.
    async fn decide(&self, group: &Group, keys: &[LimitKey], consume: bool) -> Decision {
        let mut merged = Decision { allowed: true, remaining: group.quota.limit, reset_ms: 0, retry_after_ms: 0 };
        for key in keys {
            let answer = match self.backend.decide_at_once(key, &group.quota, consume) {
                Some(decision) => Ok(decision),
                None => self.backend.decide(key, &group.quota, consume).await,
            };
            let decision = match answer {
                Ok(decision) => decision,
                Err(error) => {
                    self.backend_errors.get_or_create(&GroupLabels { group: group.name.clone() }).inc();
                    // At most one line per 10 s: a dead backend must not flood the log.
                    let now = self.clock.unix_millis();
                    let last = self.last_error_log.load(std::sync::atomic::Ordering::Relaxed);
                    if now - last >= 10_000
                        && self
                            .last_error_log
                            .compare_exchange(
                                last,
                                now,
                                std::sync::atomic::Ordering::Relaxed,
                                std::sync::atomic::Ordering::Relaxed,
                            )
                            .is_ok()
                    {
                        tracing::warn!(group = %group.name, cause = %error, "rate-limit backend error; applying on_backend_error");
                    }
                    let allowed = group.on_backend_error == OnBackendError::Allow;
                    Decision { allowed, remaining: 0, reset_ms: 1000, retry_after_ms: 1000 }
                }
            };
            merged.allowed &= decision.allowed;
            merged.remaining = merged.remaining.min(decision.remaining);
            merged.reset_ms = merged.reset_ms.max(decision.reset_ms);
            merged.retry_after_ms = merged.retry_after_ms.max(decision.retry_after_ms);
        }
        merged
    }

    /// True the first time a key is refused in its window.
    async fn first_refusal(&self, group: &Group, key: &LimitKey) -> bool {
        let marker = LimitKey { audit: true, ..*key };
        let once = Quota { strategy: Strategy::FixedWindow, limit: 1, window_ms: group.quota.window_ms };
        let answer = match self.backend.decide_at_once(&marker, &once, true) {
            Some(decision) => Ok(decision),
            None => self.backend.decide(&marker, &once, true).await,
        };
        answer.map(|decision| decision.allowed).unwrap_or(false)
    }
}

/// The one or two counters of a group for one request, without a heap
/// allocation.
#[derive(Clone, Copy)]
struct Keys {
    items: [LimitKey; 2],
    len: usize,
}

impl Keys {
    fn one(key: LimitKey) -> Self {
        Self { items: [key, key], len: 1 }
    }

    fn two(first: LimitKey, second: LimitKey) -> Self {
        Self { items: [first, second], len: 2 }
    }
}

impl std::ops::Deref for Keys {
    type Target = [LimitKey];

    fn deref(&self) -> &[LimitKey] {
        &self.items[..self.len]
    }
}

/// An RFC 8941 sf-string: quoted, with `"` and `\` escaped.
fn sf_string(text: &str) -> String {
    let escaped: String = text
        .chars()
        .filter(|c| (' '..='~').contains(c))
        .flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] })
        .collect();
    format!("\"{escaped}\"")
}

fn seconds(ms: i64) -> i64 {
    (ms.max(0) + 999) / 1000
}

#[derive(Deserialize)]
struct LoginEmail {
    email: Option<serde_json::Value>,
}

/// What `admit` decided for an admitted request, for `finish`.
pub struct Admission<'a> {
    results: Vec<(&'a Group, Keys, Decision)>,
}

impl RateLimiter {
    /// Counts the request in every group that applies: `Err` is the 429 to
    /// answer, `Ok` gives the request back (its body re-assembled when the
    /// login group read the email from it).
    pub async fn admit(&self, request: Request) -> Result<(Request, Admission<'_>), Response> {
        let none = Admission { results: Vec::new() };
        let path = request.uri().path();
        if exempt(path) {
            return Ok((request, none));
        }
        let method = request.method();
        let applicable: Vec<&Group> = self.groups.iter().filter(|group| group.applies(method, path)).collect();
        if applicable.is_empty() {
            return Ok((request, none));
        }
        let context = request.extensions().get::<Arc<RequestContext>>().cloned();
        let ip: Option<IpAddr> = context.as_ref().and_then(|context| context.client_ip);
        let ip_subject = ip.map_or(0, |ip| ip_subject(ip, self.v6_prefix));
        let user = context.as_ref().and_then(|context| context.user_id());

        // The login group also counts per (IP, email): the email is in the body.
        let (request, account) = if applicable.iter().any(|group| matches!(group.scope, Scope::Login)) {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, self.body_limit).await else {
                return Err(ApiError::PayloadTooLarge.into_response());
            };
            let account = serde_json::from_slice::<LoginEmail>(&bytes)
                .ok()
                .and_then(|login| login.email)
                .and_then(|email| email.as_str().map(account_subject));
            (Request::from_parts(parts, Body::from(bytes)), account)
        } else {
            (request, None)
        };

        let mut results = Vec::with_capacity(applicable.len());
        for group in applicable {
            let keys = self.keys(group, ip_subject, user, account);
            let decision = self.decide(group, &keys, !group.failures_only).await;
            results.push((group, keys, decision));
        }
        if results.iter().all(|(_, _, decision)| decision.allowed) {
            return Ok((request, Admission { results }));
        }

        let retry_after_secs = results
            .iter()
            .filter(|(_, _, decision)| !decision.allowed)
            .map(|(_, _, decision)| seconds(decision.retry_after_ms))
            .max()
            .unwrap_or(1)
            .max(1);
        for (group, keys, decision) in &results {
            if decision.allowed {
                continue;
            }
            group.limited.inc();
            if let Some(key) = keys.first()
                && self.first_refusal(group, key).await
            {
                self.audit.record(AuditEvent {
                    id: uuid::Uuid::now_v7(),
                    time: self.clock.now(),
                    request_id: context.as_ref().map(|context| context.request_id.as_str().to_owned()),
                    event: "rate_limited".into(),
                    user_id: user,
                    client_ip: ip,
                    route: Some(request.uri().path().chars().take(256).collect()),
                    outcome: Outcome::Denied,
                    detail: Some(format!("group {}", group.name)),
                });
            }
        }
        if let Some(context) = &context {
            // Aggregated above; the access log must not add one per request.
            context.audited.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut response = ApiError::TooManyRequests { retry_after_secs: u64::try_from(retry_after_secs).unwrap_or(1) }
            .into_response();
        self.add_headers(&mut response, &results);
        Err(response)
    }

    /// Counts a failure in the groups that count only failures, and adds
    /// the `RateLimit` headers.
    pub async fn finish(&self, mut admission: Admission<'_>, response: &mut Response) {
        if admission.results.is_empty() {
            return;
        }
        let failed = response.status().is_client_error() || response.status().is_server_error();
        for (group, keys, decision) in admission.results.iter_mut() {
            if group.failures_only && failed && response.status() != StatusCode::TOO_MANY_REQUESTS {
                *decision = self.decide(group, keys, true).await;
            }
        }
        self.add_headers(response, &admission.results);
    }
}

/// `RateLimit-Policy` for a set of groups (bit `i`: group `i`).
fn policy_header(groups: &[Group], set: u64) -> Option<HeaderValue> {
    let items: Vec<&str> = groups
        .iter()
        .filter(|group| group.index < 64 && set >> group.index & 1 == 1)
        .map(|group| group.policy_item.as_str())
        .collect();
    HeaderValue::try_from(items.join(", ")).ok()
}

impl RateLimiter {
    fn add_headers(&self, response: &mut Response, results: &[(&Group, Keys, Decision)]) {
        let set =
            results.iter().fold(0u64, |set, (group, _, _)| set | 1u64.checked_shl(group.index.into()).unwrap_or(0));
        let policy = match self.policies.get(usize::try_from(set).unwrap_or(usize::MAX)) {
            Some(value) => value.clone(),
            None => policy_header(&self.groups, set),
        };
        let mut state = String::with_capacity(32 * results.len());
        for (index, (group, _, decision)) in results.iter().enumerate() {
            if index > 0 {
                state.push_str(", ");
            }
            state.push_str(&group.quoted_name);
            state.push_str(";r=");
            push_number(&mut state, u64::from(decision.remaining));
            state.push_str(";t=");
            push_number(&mut state, seconds(decision.reset_ms).unsigned_abs());
        }
        let headers = response.headers_mut();
        if let Some(value) = policy {
            headers.insert(&RATELIMIT_POLICY, value);
        }
        if let Ok(value) = HeaderValue::try_from(state) {
            headers.insert(&RATELIMIT, value);
        }
    }
}

/// Decimal digits without `fmt`.
fn push_number(out: &mut String, number: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = number;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&digit| char::from(digit)));
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

#[cfg(test)]
mod tests {
    use super::{push_number, sf_string};

    #[test]
    fn numbers_are_written_in_decimal() {
        for number in [0, 7, 10, 99, 840, 1_000_000_007, u64::MAX] {
            let mut out = String::new();
            push_number(&mut out, number);
            assert_eq!(out, number.to_string());
        }
    }

    #[test]
    fn names_become_structured_field_strings() {
        assert_eq!(sf_string("login"), "\"login\"");
        assert_eq!(sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(sf_string("tab\there"), "\"tabhere\"");
    }
}
