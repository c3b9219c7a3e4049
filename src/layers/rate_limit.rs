//! Rate limits per route group (API.md "Rate limiting"): `global` on every
//! route that is rate limited at all (`RouteClass::rate_limited`: not the
//! health checks), `login` on sign-ins (`RouteClass::signs_in`), `api` on
//! the API namespace (`RouteClass::in_api_group`), and groups added by path
//! prefix and method in configuration. Which route is which is declared by
//! the routers, not here. The `proxy` group, and groups without `paths`,
//! are only for the gateway's routes, which name them (`Scope::Routes`).
//!
//! Keys: the user id for signed-in callers, else the client IP (IPv6 by
//! prefix); the login group counts the IP here, before the handler, and
//! (IP, email) in `accounts::verify_login` through `admit_sign_in`, once
//! the handler has read the email: this layer never reads a body. Every
//! limited response carries `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers-10 syntax) listing every group
//! that applied; a refusal is a 429 problem with `Retry-After`, decided
//! from memory (or Redis) before the handler runs (or, for (IP, email),
//! before the password is checked). 429s are audited once per key and
//! window, not once per request, so a flood cannot flood the audit trail.

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::FromRequestParts,
    http::{HeaderName, HeaderValue, Method, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use crate::{
    audit::Auditor,
    clock::Clock,
    config::{Config, CountMode, OnBackendError, RateLimitStrategy, proxy::PROXY_RATE_LIMIT_GROUP},
    domain::{AuditEvent, AuditKind, Outcome},
    error::ApiError,
    limiter::{
        LimitKey, LimiterBackend, Subject, account_subject, ip_subject,
        strategy::{Decision, Quota, Strategy},
    },
    request_context::RequestContext,
    route_class::RouteClass,
};

#[derive(Debug, Clone)]
enum Scope {
    Everything,
    Login,
    Api,
    Paths {
        prefixes: Vec<String>,
        methods: Vec<Method>,
    },
    /// Named by proxy routes (`proxy`, and groups without `paths`): never
    /// applied by path, only by the gateway to its routes.
    Routes,
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
    fn applies(&self, method: &Method, path: &str, class: RouteClass) -> bool {
        match &self.scope {
            Scope::Everything => true,
            Scope::Login => class.signs_in(method),
            Scope::Api => class.in_api_group(),
            Scope::Paths { prefixes, methods } => {
                prefixes.iter().any(|prefix| path.starts_with(prefix.as_str()))
                    && (methods.is_empty() || methods.contains(method))
            }
            Scope::Routes => false,
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
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    /// `RateLimit-Policy` by set of groups, for up to 8 groups (see
    /// `add_headers`): the policies never change.
    policies: Vec<Option<HeaderValue>>,
    /// 429s answered, by group.
    limited: Family<GroupLabels, Counter>,
    /// Decisions the backend could not make, by group.
    backend_errors: Family<GroupLabels, Counter>,
    last_error_log: std::sync::atomic::AtomicI64,
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
                    PROXY_RATE_LIMIT_GROUP => Scope::Routes,
                    _ if group.paths.is_empty() => Scope::Routes,
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
            audit,
            clock,
            limited,
            backend_errors,
            last_error_log: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
        }
    }

    /// The counter one request touches in `group` before the handler: the
    /// login group counts sign-ins per IP whoever is signed in.
    fn key(&self, group: &Group, ip: u128, user: Option<uuid::Uuid>) -> LimitKey {
        let subject = match group.scope {
            Scope::Login => Subject::Ip(ip),
            _ => user.map_or(Subject::Ip(ip), Subject::User),
        };
        LimitKey { group: group.index, subject, audit: false }
    }

    /// One group's decision for one key.
    async fn decide(&self, group: &Group, key: &LimitKey, consume: bool) -> Decision {
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
        // The header fields count down from the quota and never go back in time.
        Decision {
            remaining: decision.remaining.min(group.quota.limit),
            reset_ms: decision.reset_ms.max(0),
            retry_after_ms: decision.retry_after_ms.max(0),
            ..decision
        }
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

    /// Counts a refusal by `group` and audits it when it is the first for
    /// `key` in this window. `route` gives the path for the event, made only
    /// then: a flood's other refusals cost no copy.
    async fn note_refusal(
        &self,
        group: &Group,
        key: &LimitKey,
        context: Option<&RequestContext>,
        route: impl FnOnce() -> String,
    ) {
        group.limited.inc();
        if self.first_refusal(group, key).await {
            self.audit.record(AuditEvent {
                id: uuid::Uuid::now_v7(),
                time: self.clock.now(),
                request_id: context.map(|context| context.request_id.as_str().to_owned()),
                event: AuditKind::RateLimited,
                user_id: context.and_then(RequestContext::user_id),
                client_ip: context.and_then(|context| context.client_ip),
                route: Some(route()),
                outcome: Outcome::Denied,
                detail: Some(format!("group {}", group.name)),
            });
        }
        if let Some(context) = context {
            // Audited (or aggregated) here: the access log must not add one per request.
            context.audited.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn ip_subject(&self, context: Option<&RequestContext>) -> u128 {
        context.and_then(|context| context.client_ip).map_or(0, |ip| ip_subject(ip, self.v6_prefix))
    }

    /// The login group and its counter for `email` from this request's client.
    fn sign_in_key(&self, context: Option<&RequestContext>, email: &str) -> Option<(&Group, LimitKey)> {
        let group = self.groups.iter().find(|group| matches!(group.scope, Scope::Login))?;
        let subject = Subject::IpAndAccount(self.ip_subject(context), account_subject(email));
        Some((group, LimitKey { group: group.index, subject, audit: false }))
    }

    /// Adds the 429 and backend-error counters to the scrape.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register("rate_limited", "Requests refused with 429, by rate-limit group", self.limited.clone());
        registry.register(
            "rate_limit_backend_errors",
            "Rate-limit decisions the backend could not make, by group",
            self.backend_errors.clone(),
        );
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

/// What `admit` decided for an admitted request, for `finish`.
pub struct Admission<'a> {
    results: Vec<(&'a Group, LimitKey, Decision)>,
}

impl RateLimiter {
    /// Counts the request (its head: the body is never read) in every
    /// group that applies, by the route class in its `RequestContext`, its
    /// method and path: `Err` is the 429 to answer.
    pub async fn admit(&self, request: &Parts) -> Result<Admission<'_>, Response> {
        let none = Admission { results: Vec::new() };
        let context = request.extensions.get::<Arc<RequestContext>>().map(|context| &**context);
        let class = context.map_or(RouteClass::Normal, |context| context.route_class);
        if !class.rate_limited() {
            return Ok(none);
        }
        let (method, path) = (&request.method, request.uri.path());
        let applicable: Vec<&Group> = self.groups.iter().filter(|group| group.applies(method, path, class)).collect();
        if applicable.is_empty() {
            return Ok(none);
        }
        let ip_subject = self.ip_subject(context);
        let user = context.and_then(RequestContext::user_id);

        let mut results = Vec::with_capacity(applicable.len());
        for group in applicable {
            let key = self.key(group, ip_subject, user);
            let decision = self.decide(group, &key, !group.failures_only).await;
            results.push((group, key, decision));
        }
        if results.iter().all(|(_, _, decision)| decision.allowed) {
            return Ok(Admission { results });
        }

        let retry_after_secs = results
            .iter()
            .filter(|(_, _, decision)| !decision.allowed)
            .map(|(_, _, decision)| seconds(decision.retry_after_ms))
            .max()
            .unwrap_or(1)
            .max(1);
        for (group, key, decision) in &results {
            if !decision.allowed {
                self.note_refusal(group, key, context, || path.chars().take(256).collect()).await;
            }
        }
        let mut response = ApiError::TooManyRequests { retry_after_secs: u64::try_from(retry_after_secs).unwrap_or(1) }
            .into_response();
        self.add_headers(&mut response, &results);
        Err(response)
    }

    /// A protect-mode route's count: only its own group (`rate_limit` of
    /// the route, `proxy` by default), never `global` or `api`, keyed like
    /// the others by user id when signed in, else by client IP.
    pub async fn admit_route(&self, request: &Parts, group_name: &str) -> Result<Admission<'_>, Response> {
        // A group named only by routes a reload added is not running yet:
        // those requests count in the built-in `proxy` group until restart,
        // never in none.
        let Some(group) =
            self.groups.iter().find(|group| group.name == group_name).or_else(|| {
                self.groups.iter().find(|group| group.name == crate::config::proxy::PROXY_RATE_LIMIT_GROUP)
            })
        else {
            return Ok(Admission { results: Vec::new() });
        };
        let context = request.extensions.get::<Arc<RequestContext>>().map(|context| &**context);
        let key = self.key(group, self.ip_subject(context), context.and_then(RequestContext::user_id));
        let decision = self.decide(group, &key, !group.failures_only).await;
        let results = vec![(group, key, decision)];
        if decision.allowed {
            return Ok(Admission { results });
        }
        let route = || context.and_then(RequestContext::route_label).unwrap_or_default().to_owned();
        self.note_refusal(group, &key, context, route).await;
        let retry_after_secs = u64::try_from(seconds(decision.retry_after_ms).max(1)).unwrap_or(1);
        let mut response = ApiError::TooManyRequests { retry_after_secs }.into_response();
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
        for (group, key, decision) in admission.results.iter_mut() {
            if group.failures_only && failed && response.status() != StatusCode::TOO_MANY_REQUESTS {
                *decision = self.decide(group, key, true).await;
            }
        }
        self.add_headers(response, &admission.results);
    }

    /// The login group's count per (IP, email), for `accounts::verify_login`
    /// once it knows the email: `Err` is the 429 to answer, in seconds to
    /// wait (`Retry-After`). The IP was
    /// counted by `admit`, and the response's `RateLimit` fields show that
    /// count: an (IP, email) count is made only on sign-ins the IP's count
    /// admitted (and counted), so it is never the larger of the two.
    pub async fn admit_sign_in(&self, request: &SignInRequest, email: &str) -> Result<(), u64> {
        let context = request.0.as_deref();
        let Some((group, key)) = self.sign_in_key(context, email) else {
            return Ok(());
        };
        self.admit_key(group, &key, !group.failures_only, context).await
    }

    /// Counts a request for the account with `email` in the named group,
    /// whatever client sends it (the group's per-client count was made
    /// before the handler): `Err(retry_after_secs)` when over. A request
    /// that names an account it may not own (a password reset) is limited
    /// per address too, so no one address is mailed without bound.
    pub async fn admit_address(&self, request: &SignInRequest, group_name: &str, email: &str) -> Result<(), u64> {
        let Some(group) = self.groups.iter().find(|group| group.name == group_name) else {
            return Ok(());
        };
        let key = LimitKey { group: group.index, subject: Subject::Account(account_subject(email)), audit: false };
        self.admit_key(group, &key, true, request.0.as_deref()).await
    }

    async fn admit_key(
        &self,
        group: &Group,
        key: &LimitKey,
        consume: bool,
        context: Option<&RequestContext>,
    ) -> Result<(), u64> {
        let decision = self.decide(group, key, consume).await;
        if decision.allowed {
            return Ok(());
        }
        let route =
            || context.and_then(|context| context.route.get()).map_or_else(String::new, |route| route.as_str().into());
        self.note_refusal(group, key, context, route).await;
        Err(u64::try_from(seconds(decision.retry_after_ms).max(1)).unwrap_or(1))
    }

    /// Counts a failed sign-in per (IP, email) when the login group counts
    /// only failures.
    pub async fn count_failed_sign_in(&self, request: &SignInRequest, email: &str) {
        if let Some((group, key)) = self.sign_in_key(request.0.as_deref(), email)
            && group.failures_only
        {
            self.decide(group, &key, true).await;
        }
    }
}

/// The request a password sign-in arrives in, as `admit_sign_in` needs it
/// (client IP, caller, request id, route): an extractor that never fails,
/// so the sign-in handlers can hand it to `accounts::verify_login`.
#[derive(Clone, Default)]
pub struct SignInRequest(Option<Arc<RequestContext>>);

impl SignInRequest {
    /// The client address (after trusted proxies), when known.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.0.as_deref().and_then(|context| context.client_ip)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignInRequest {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self(parts.extensions.get::<Arc<RequestContext>>().cloned()))
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
    fn add_headers(&self, response: &mut Response, results: &[(&Group, LimitKey, Decision)]) {
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
    use std::net::IpAddr;

    use axum::http::HeaderValue;
    use secrecy::SecretString;

    use super::*;
    use crate::{
        clock::ManualClock,
        limiter::memory::MemoryLimiter,
        request_context::RequestId,
        store::{self, Store},
    };

    /// A limiter with the default groups but `login` at `limit`, on memory
    /// counters and a stopped clock, auditing into a throwaway database.
    async fn limiter(dir: &tempfile::TempDir, limit: u32, count: CountMode) -> (RateLimiter, Arc<dyn Store>) {
        let mut config = Config::defaults();
        config.database.url = SecretString::from(format!("sqlite://{}/audit.db", dir.path().display()));
        let login = config.rate_limit.get_mut("login").expect("built-in group");
        login.limit = limit;
        login.count = count;
        let store = store::open(&config.database).await.expect("store");
        store.migrate().await.expect("migrations");
        let clock: Arc<dyn Clock> =
            Arc::new(ManualClock::new(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")));
        let backend = Arc::new(MemoryLimiter::new(1_000, clock.clone()));
        let audit = Arc::new(Auditor::spawn(store.clone()));
        (RateLimiter::new(&config, backend, audit, clock), store)
    }

    fn from(ip: &str) -> SignInRequest {
        let ip: IpAddr = ip.parse().expect("ip");
        let id = RequestId(HeaderValue::from_static("test"));
        SignInRequest(Some(Arc::new(RequestContext::new(id, Some(ip), RouteClass::SignIn))))
    }

    fn refused(answer: Result<(), u64>) -> bool {
        matches!(answer, Err(retry_after_secs) if retry_after_secs >= 1)
    }

    #[tokio::test]
    async fn sign_ins_are_counted_per_ip_and_email() {
        let dir = tempfile::tempdir().expect("dir");
        let (limiter, _store) = limiter(&dir, 2, CountMode::All).await;
        let first = from("198.51.100.1");
        for _ in 0..2 {
            assert!(limiter.admit_sign_in(&first, "ada@example.com").await.is_ok());
        }
        assert!(refused(limiter.admit_sign_in(&first, "ada@example.com").await));
        assert!(refused(limiter.admit_sign_in(&first, " Ada@Example.com").await), "emails compare like emails");
        assert!(limiter.admit_sign_in(&first, "bob@example.com").await.is_ok(), "another email");
        assert!(limiter.admit_sign_in(&from("198.51.100.2"), "ada@example.com").await.is_ok(), "another IP");
        let refusals = limiter.limited.get_or_create(&GroupLabels { group: "login".into() }).get();
        assert_eq!(refusals, 2);
        assert!(
            first.0.as_ref().is_some_and(|context| context.audited.load(std::sync::atomic::Ordering::Relaxed)),
            "the access log adds no event of its own"
        );
    }

    #[tokio::test]
    async fn counting_failures_only_counts_failed_sign_ins() {
        let dir = tempfile::tempdir().expect("dir");
        let (limiter, _store) = limiter(&dir, 2, CountMode::Failures).await;
        let client = from("198.51.100.1");
        for _ in 0..5 {
            assert!(limiter.admit_sign_in(&client, "ada@example.com").await.is_ok(), "nothing failed yet");
        }
        limiter.count_failed_sign_in(&client, "ada@example.com").await;
        limiter.count_failed_sign_in(&client, "ada@example.com").await;
        assert!(refused(limiter.admit_sign_in(&client, "ada@example.com").await));
        assert!(limiter.admit_sign_in(&client, "bob@example.com").await.is_ok());
    }

    #[tokio::test]
    async fn route_groups_never_apply_to_rampart_routes_by_path() {
        let dir = tempfile::tempdir().expect("dir");
        let mut config = Config::defaults();
        config.database.url = SecretString::from(format!("sqlite://{}/audit.db", dir.path().display()));
        let mut pathed = config.rate_limit["api"].clone();
        pathed.paths = vec!["/orders".into()];
        config.rate_limit.insert("by-path".into(), pathed.clone());
        pathed.paths.clear();
        config.rate_limit.insert("by-route".into(), pathed);
        let store = store::open(&config.database).await.expect("store");
        store.migrate().await.expect("migrations");
        let clock: Arc<dyn Clock> =
            Arc::new(ManualClock::new(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")));
        let backend = Arc::new(MemoryLimiter::new(1_000, clock.clone()));
        let limiter = RateLimiter::new(&config, backend, Arc::new(Auditor::spawn(store)), clock);
        let applying = |path: &str| -> Vec<&str> {
            let groups = limiter.groups.iter();
            groups.filter(|group| group.applies(&Method::GET, path, RouteClass::Api)).map(|g| g.name.as_str()).collect()
        };
        assert_eq!(applying("/orders/1"), ["api", "by-path", "global"]);
        assert_eq!(applying("/"), ["api", "global"], "neither proxy nor a path-less group applies by path");
        let scopes =
            |name: &str| limiter.groups.iter().find(|group| group.name == name).map(|group| group.scope.clone());
        assert!(matches!(scopes("proxy"), Some(Scope::Routes)));
        assert!(matches!(scopes("by-route"), Some(Scope::Routes)));
    }

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
