//! The gateway: which requests go upstream (`dispatch`, at the edge), and
//! what happens to them once the pipeline has authenticated and rate
//! limited them (`serve`): the route's authentication rule, CSRF, the
//! policy, the request and response header rules, the signed assertion,
//! streaming with the upstream's timeouts, and the 502/503/504 answers.
//! Forward auth (`routes::forward_auth`) shares `dispatch_path`, `admit` and
//! `identity`.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::{
    assertion::{AssertionClaims, AssertionSigner},
    body::{Activity, IdleBody, LimitedBody},
    headers::{self, Forwarding, RequestRules},
    path,
    table::{ProxyRoute, RouteTable, Selection, rampart_owns},
    upstream::Upstream,
};
use crate::{
    app::AppState,
    auth::{
        principal::{Authentication, CSRF_HEADER, Caller, Credential, Principal},
        secret,
        tokens::TokenKeys,
    },
    config::{Config, RouteAuth, Unauthenticated},
    domain::{AuditKind, Outcome},
    error::ApiError,
    layers::client_ip::{TrustedProxies, forwarded_chain},
    policy::{Decision, ProxyRequest},
    request_context::RequestContext,
};

/// Upstream bodies of at most this declared length are read whole before
/// the answer starts (`Gateway::serve`).
const BUFFERED_BODY_LIMIT: u64 = 64 * 1024;

/// What the edge does with a request.
pub enum Dispatch {
    /// One of Rampart's own routes, or no protect-mode route at all.
    Rampart,
    /// Refused before any other work (400 path shape, 405).
    Refuse(ApiError),
    /// Through this route to its upstream.
    Proxy(Proxied),
}

/// A request on its way upstream, in the request's extensions from the edge on.
#[derive(Clone)]
pub struct Proxied {
    pub route: Arc<ProxyRoute>,
    pub upstream: Arc<Upstream>,
    /// `proxy:<route id>`, the route's name in logs, metrics and audit.
    pub label: Arc<str>,
    pub metrics: Arc<RouteMetrics>,
}

/// One route's upstream series, looked up once per table rather than by
/// label strings on every request.
pub struct RouteMetrics {
    pub duration: Histogram,
    labels: RouteUpstreamLabels,
    family: Family<UpstreamRequestLabels, Counter>,
    /// `requests` by status, as met.
    by_status: std::sync::Mutex<Vec<(u16, Counter)>>,
}

impl RouteMetrics {
    pub fn count(&self, status: u16) {
        let mut known = self.by_status.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, counter)) = known.iter().find(|(seen, _)| *seen == status) {
            counter.inc();
            return;
        }
        let labels =
            UpstreamRequestLabels { route: self.labels.route.clone(), upstream: self.labels.upstream.clone(), status };
        let counter = self.family.get_or_create(&labels).clone();
        counter.inc();
        known.push((status, counter));
    }
}

/// Marks a response that came from an upstream: its error bodies are the
/// upstream's own (not replaced by a problem) and Rampart's security
/// headers only fill in what it did not set.
#[derive(Clone, Copy)]
pub struct FromUpstream;

/// The route table and the upstreams it uses, replaced whole on reload.
pub struct Routing {
    pub table: RouteTable,
    upstreams: HashMap<Arc<str>, Arc<Upstream>>,
    /// `proxy:<id>` and the metrics by route id, made once.
    labels: HashMap<Arc<str>, (Arc<str>, Arc<RouteMetrics>)>,
    health_checks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Routing {
    fn drop(&mut self) {
        for task in self.health_checks.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
    }
}

impl Routing {
    fn build(config: &Config, metrics: &UpstreamMetrics) -> Result<Self, Vec<String>> {
        let table = RouteTable::build(config)?;
        let mut upstreams = HashMap::new();
        let mut configured: Vec<(String, crate::config::UpstreamConfig)> =
            config.proxy.upstreams.iter().map(|(name, upstream)| (name.clone(), upstream.clone())).collect();
        if !config.proxy.default_upstream.is_empty() {
            configured.push((
                crate::config::proxy::DEFAULT_UPSTREAM_NAME.into(),
                crate::config::UpstreamConfig { url: config.proxy.default_upstream.clone(), ..Default::default() },
            ));
        }
        let mut problems = Vec::new();
        for (name, upstream) in configured {
            match Upstream::new(&name, &upstream) {
                Ok(upstream) => {
                    upstreams.insert(upstream.name.clone(), Arc::new(upstream));
                }
                Err(error) => problems.push(format!("proxy.upstreams.{name}: {error:#}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let labels = table
            .routes()
            .iter()
            .map(|route| {
                let labels = RouteUpstreamLabels { route: route.id.to_string(), upstream: route.upstream.to_string() };
                let route_metrics = RouteMetrics {
                    duration: metrics.duration.get_or_create(&labels).clone(),
                    labels,
                    family: metrics.requests.clone(),
                    by_status: std::sync::Mutex::new(Vec::new()),
                };
                (route.id.clone(), (Arc::from(format!("proxy:{}", route.id)), Arc::new(route_metrics)))
            })
            .collect();
        Ok(Self { table, upstreams, labels, health_checks: std::sync::Mutex::new(Vec::new()) })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamRequestLabels {
    pub route: String,
    pub upstream: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteUpstreamLabels {
    pub route: String,
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

/// PROTECT.md "Observability".
#[derive(Clone)]
struct UpstreamMetrics {
    requests: Family<UpstreamRequestLabels, Counter>,
    duration: Family<RouteUpstreamLabels, Histogram>,
    up: Family<UpstreamLabels, Gauge>,
}

impl UpstreamMetrics {
    fn new() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
            }),
            up: Family::default(),
        }
    }
}

/// What a signed-in caller is told to the upstream as.
pub struct Identity {
    pub principal: Principal,
    /// `bearer`, `session` or `api_key` (`X-Rampart-Auth`).
    pub kind: &'static str,
    pub amr: &'static [&'static str],
}

pub struct Gateway {
    routing: RwLock<Arc<Routing>>,
    assertion: Option<AssertionSigner>,
    assertion_header: Option<HeaderName>,
    strip: Vec<HeaderName>,
    /// `server.public_url`; unset, the origin a request came to (its
    /// scheme and `Host`) is taken as this server's.
    public_origin: Option<String>,
    cors_origins: Vec<String>,
    demo: bool,
    tls: bool,
    trusted: TrustedProxies,
    metrics: UpstreamMetrics,
    /// Set on shutdown; websocket tunnels close with 1001.
    pub(super) shutdown: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    /// The route table and upstreams of `config`, and the assertion signer:
    /// the access-token key, or `proxy.assertion_key_file`'s EdDSA key for
    /// HS256 deployments (published in `tokens`' JWKS).
    pub fn new(config: &Config, tokens: &mut TokenKeys, tls: bool) -> anyhow::Result<Self> {
        let metrics = UpstreamMetrics::new();
        let routing = Routing::build(config, &metrics).map_err(|problems| anyhow::anyhow!(problems.join("\n")))?;
        let proxy = &config.proxy;
        let assertion_header = if proxy.assertion_header.is_empty() {
            None
        } else {
            Some(HeaderName::from_bytes(proxy.assertion_header.to_ascii_lowercase().as_bytes())?)
        };
        let assertion = match &assertion_header {
            None => None,
            Some(_) if !proxy.assertion_key_file.as_os_str().is_empty() => {
                let (signer, jwk) = AssertionSigner::with_key_file(
                    &proxy.assertion_key_file,
                    &config.auth.issuer,
                    proxy.assertion_ttl.0,
                )?;
                tokens.publish(jwk);
                Some(signer)
            }
            Some(_) => {
                let signer = AssertionSigner::with_token_key(tokens, &config.auth.issuer, proxy.assertion_ttl.0);
                if signer.is_none() && !routing.table.is_empty() {
                    anyhow::bail!(
                        "proxy.assertion_key_file: needed with auth.jwt_algorithm = \"HS256\" (a shared secret would let upstreams mint access tokens)"
                    );
                }
                signer
            }
        };
        let strip = proxy
            .strip_request_headers
            .iter()
            .map(|name| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let public_origin = config.public_origin().map(|origin| origin.trim_end_matches('/').to_owned());
        Ok(Self {
            routing: RwLock::new(Arc::new(routing)),
            assertion,
            assertion_header,
            strip,
            public_origin,
            cors_origins: config.server.cors_origins.clone(),
            demo: config.demo.enabled,
            tls,
            trusted: TrustedProxies {
                nets: Arc::new(config.server.trusted_proxies.clone()),
                header: config.server.forwarded_header,
            },
            metrics,
            shutdown: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "upstream_requests",
            "Requests the gateway sent upstream, by route, upstream and status (502/504 when none came back)",
            self.metrics.requests.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to its response headers, by route and upstream",
            self.metrics.duration.clone(),
        );
        registry.register("upstream_up", "1 while the upstream's health check passes", self.metrics.up.clone());
    }

    fn routing(&self) -> Arc<Routing> {
        self.routing.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Whether any protect-mode route exists.
    pub fn is_active(&self) -> bool {
        !self.routing().table.is_empty()
    }

    /// The ids of the routes in force.
    pub fn route_ids(&self) -> Vec<Arc<str>> {
        self.routing().table.routes().iter().map(|route| route.id.clone()).collect()
    }

    /// Replaces the route table and upstreams with `config`'s (SIGHUP); on
    /// a problem the old table stays and the problems are returned.
    pub fn reload(&self, config: &Config) -> Result<(), Vec<String>> {
        let routing = Arc::new(Routing::build(config, &self.metrics)?);
        if self.assertion_header.is_some() && self.assertion.is_none() && !routing.table.is_empty() {
            return Err(vec![
                "proxy.assertion_key_file: routes with HS256 tokens need an assertion key, read at start (restart to add one)"
                    .into(),
            ]);
        }
        self.start_health_checks(&routing);
        let old =
            std::mem::replace(&mut *self.routing.write().unwrap_or_else(|poisoned| poisoned.into_inner()), routing);
        // An upstream the new table dropped leaves no `upstream_up` series behind.
        for name in old.upstreams.keys().filter(|name| !self.routing().upstreams.contains_key(*name)) {
            self.metrics.up.remove(&UpstreamLabels { upstream: name.to_string() });
        }
        Ok(())
    }

    /// Starts the active health checks of the current upstreams (call once
    /// inside the runtime; reloads start their own).
    pub fn start(&self) {
        self.start_health_checks(&self.routing());
    }

    fn start_health_checks(&self, routing: &Arc<Routing>) {
        let mut tasks = routing.health_checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for upstream in routing.upstreams.values() {
            let gauge = self.metrics.up.get_or_create(&UpstreamLabels { upstream: upstream.name.to_string() }).clone();
            gauge.set(1);
            let Some((_, interval)) = upstream.health.clone() else {
                continue;
            };
            let upstream = Arc::downgrade(upstream);
            let task = tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Some(upstream) = upstream.upgrade() else {
                        return;
                    };
                    let up = upstream.check().await;
                    if up != upstream.is_up() {
                        tracing::warn!(upstream = %upstream.name, up, "upstream health changed");
                    }
                    upstream.set_up(up);
                    gauge.set(i64::from(up));
                }
            });
            tasks.push(task.abort_handle());
        }
    }

    /// `/ready` is 503 while every upstream of a required route is down.
    pub fn ready(&self) -> bool {
        let routing = self.routing();
        let mut required = routing
            .table
            .routes()
            .iter()
            .filter(|route| route.auth == RouteAuth::Required)
            .filter_map(|route| routing.upstreams.get(&route.upstream))
            .peekable();
        required.peek().is_none() || required.any(|upstream| upstream.is_up())
    }

    /// Which way a request goes (the edge asks before anything else runs).
    pub fn dispatch(&self, method: &Method, headers: &HeaderMap, uri: &axum::http::Uri) -> Dispatch {
        let routing = self.routing();
        if routing.table.is_empty() {
            return Dispatch::Rampart;
        }
        let host = request_host(headers, uri);
        dispatch_in(&routing, self.demo, method, host, uri.path())
    }

    /// `dispatch` for a request described by another proxy (forward auth).
    pub fn dispatch_path(&self, method: &Method, host: Option<&str>, path: &str) -> Dispatch {
        let routing = self.routing();
        match dispatch_in(&routing, self.demo, method, host, path) {
            // Rampart's own paths are not for another proxy to ask about.
            Dispatch::Rampart => Dispatch::Refuse(ApiError::NotFound),
            other => other,
        }
    }

    /// The route's authentication and CSRF rules and the policy: `Ok` with
    /// the identity to forward (none for a guest), or the refusal.
    pub fn admit(
        &self,
        state: &AppState,
        route: &ProxyRoute,
        asked: &Asked<'_>,
        context: &RequestContext,
    ) -> Result<Option<Identity>, Refusal> {
        let refuse_guest = |token_sent: bool| match route.unauthenticated {
            Unauthenticated::Login if !token_sent => Refusal::Login(login_location(asked.path_and_query)),
            _ => Refusal::Api(ApiError::Unauthorized { token_sent }),
        };
        let caller = match context.authentication.get() {
            None | Some(Authentication::Guest) => Caller::Guest,
            // A public route judges no one: a stale or foreign credential
            // is ignored there, as if none was sent.
            Some(Authentication::Invalid { .. }) if route.auth == RouteAuth::Public => Caller::Guest,
            Some(Authentication::Invalid { token_sent }) => return Err(refuse_guest(*token_sent)),
            Some(Authentication::Unavailable) => return Err(Refusal::Api(ApiError::Unavailable)),
            Some(Authentication::Signed(principal)) => Caller::User(principal.clone()),
        };
        if route.auth == RouteAuth::Required && matches!(caller, Caller::Guest) {
            return Err(refuse_guest(false));
        }
        if let Caller::User(principal) = &caller {
            self.check_cookie_request(principal, asked).map_err(Refusal::Api)?;
        }
        let identity = caller.user().map(identity_of);
        let request = ProxyRequest { method: asked.method.as_str(), path: asked.path, client_ip: context.client_ip };
        let decision = match state.authorizer.authorize_proxy(&caller, route, &request) {
            // PROTECT.md: on a public route, an API key without the route's
            // scope is forwarded without identity, as a guest would be.
            Decision::Deny(_)
                if route.auth == RouteAuth::Public
                    && caller.user().is_some_and(|principal| principal.scopes().is_some()) =>
            {
                return match state.authorizer.authorize_proxy(&Caller::Guest, route, &request) {
                    Decision::Allow => Ok(None),
                    Decision::Deny(_) => Err(refuse_guest(false)),
                };
            }
            decision => decision,
        };
        match decision {
            Decision::Allow => Ok(identity),
            Decision::Deny(denial) => {
                let Some(user_id) = denial.user_id else {
                    return Err(refuse_guest(false));
                };
                let audit = crate::audit::AuditContext::from_facts(
                    Some(context.request_id.as_str().to_owned()),
                    context.client_ip,
                    Some(format!("proxy:{}", route.id)),
                );
                let mut event = audit.event(state.clock.now(), AuditKind::Forbidden, Some(user_id), Outcome::Denied);
                event.detail = Some(denial.detail());
                state.audit.record(event);
                context.audited.store(true, std::sync::atomic::Ordering::Relaxed);
                Err(Refusal::Api(match denial.code {
                    None => ApiError::forbidden("You are not allowed to use this route."),
                    code => ApiError::denied(code),
                }))
            }
        }
    }

    /// A cookie-authenticated unsafe request needs the session's
    /// `X-CSRF-Token`, or (forms cannot send it) `Sec-Fetch-Site:
    /// same-origin` or an allowed `Origin`. A websocket upgrade needs the
    /// allowed `Origin` whatever its method (cross-site websocket hijacking).
    fn check_cookie_request(&self, principal: &Principal, asked: &Asked<'_>) -> Result<(), ApiError> {
        let Credential::Session { csrf_hash, .. } = &principal.credential else {
            return Ok(());
        };
        let (method, headers) = (asked.method, asked.headers);
        let origin_allowed = headers
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|origin| origin == asked.origin || self.cors_origins.iter().any(|allowed| allowed == origin));
        if asks_for_websocket(headers) {
            return if origin_allowed {
                Ok(())
            } else {
                Err(ApiError::forbidden("A websocket signed in by cookie must come from an allowed Origin."))
            };
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let token_ok = headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|token| secret::matches(token, csrf_hash));
        let same_site = headers.get("sec-fetch-site").is_some_and(|value| value.as_bytes() == b"same-origin");
        if token_ok || same_site || origin_allowed {
            return Ok(());
        }
        Err(ApiError::forbidden("A request signed in by cookie needs the X-CSRF-Token header or a same-origin Origin."))
    }

    /// The identity headers and the assertion for a signed-in caller.
    pub async fn identity_headers(
        &self,
        state: &AppState,
        route: &ProxyRoute,
        identity: &Identity,
        asked: &Asked<'_>,
        request_id: &str,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
        let principal = &identity.principal;
        let mut out = vec![
            (HeaderName::from_static("x-rampart-user-id"), header_value(&principal.user_id.to_string())),
            (HeaderName::from_static("x-rampart-role"), HeaderValue::from_static(principal.role.as_str())),
            (HeaderName::from_static("x-rampart-auth"), HeaderValue::from_static(identity.kind)),
        ];
        if let (Some(signer), Some(name)) = (&self.assertion, &self.assertion_header) {
            let user = state.store.user_by_id(principal.user_id).await.map_err(|error| match error {
                crate::store::StoreError::NotFound => ApiError::Unauthorized { token_sent: true },
                other => other.into(),
            })?;
            let (iat, exp, jti) = signer.times(state.clock.now());
            let claims = AssertionClaims {
                iss: signer.issuer(),
                aud: &route.upstream,
                sub: principal.user_id,
                role: principal.role.as_str(),
                department: principal.department.as_deref(),
                email: user.email.as_str(),
                amr: identity.amr,
                scope: principal.scopes().map(|scopes| scopes.names().collect::<Vec<_>>().join(" ")),
                route: &route.id,
                htm: asked.method.as_str(),
                htu: format!("{}{}", asked.origin, asked.path),
                iat,
                exp,
                jti,
                rid: request_id,
            };
            let token = signer.sign(&claims)?;
            out.push((name.clone(), header_value(&token)));
        }
        Ok(out)
    }

    /// Sends an admitted request upstream and streams the answer back.
    pub async fn serve(
        &self,
        state: &AppState,
        proxied: &Proxied,
        request: Request,
        context: &RequestContext,
    ) -> Response {
        let (mut parts, body) = request.into_parts();
        let route = &proxied.route;
        let path = parts.uri.path().to_owned();
        let path_and_query = parts.uri.path_and_query().map_or(path.as_str(), |pq| pq.as_str()).to_owned();
        let origin = self.origin(context, &parts.headers);
        let asked = Asked {
            method: &parts.method,
            path: &path,
            path_and_query: &path_and_query,
            headers: &parts.headers,
            origin: &origin,
        };
        let identity = match self.admit(state, route, &asked, context) {
            Ok(identity) => identity,
            Err(refusal) => return refusal.into_response(),
        };
        let upstream = &proxied.upstream;
        if !upstream.is_up() {
            return ApiError::UpstreamDown { retry_after_secs: upstream.retry_after_secs() }.into_response();
        }
        // Rampart judged the first Authorization; an upstream might read
        // another. With the header passed on, there must be only one.
        if route.pass_authorization && parts.headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
            return ApiError::bad_request("Send one Authorization header.").into_response();
        }
        let websocket = route.websockets && is_websocket_upgrade(&parts.headers);
        // A tunnel re-checks its token's revocation: keep the verified claims.
        let bearer = match &identity {
            Some(identity) if websocket && matches!(identity.principal.credential, Credential::Bearer { .. }) => parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(crate::layers::authenticate::bearer_token)
                .and_then(|token| state.verified_tokens.verify(&state.tokens, token, state.clock.now()).ok()),
            _ => None,
        };
        let identity_headers = match &identity {
            Some(identity) => {
                match self.identity_headers(state, route, identity, &asked, context.request_id.as_str()).await {
                    Ok(headers) => headers,
                    Err(error) => return error.into_response(),
                }
            }
            None => Vec::new(),
        };
        let Some(uri) = upstream.uri(&route.upstream_path_and_query(&path, parts.uri.query())) else {
            return ApiError::bad_request("This path cannot be forwarded.").into_response();
        };
        let client_host = request_host(&parts.headers, &parts.uri).map(str::to_owned);
        // The host goes upstream (X-Forwarded-Host, or Host with
        // preserve_host) where frameworks build links from it: it must be a
        // host, and over HTTP/2 agree with `:authority`.
        let authority_disagrees = parts
            .uri
            .authority()
            .zip(parts.headers.get(header::HOST))
            .is_some_and(|(authority, host)| !authority.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()));
        if authority_disagrees
            || client_host
                .as_deref()
                .is_some_and(|host| host.parse::<axum::http::uri::Authority>().is_err() || host.contains('@'))
        {
            return ApiError::bad_request("The Host header is not this request's host.").into_response();
        }
        let mut outgoing = std::mem::take(&mut parts.headers);
        let chain = context.peer.map(|peer| forwarded_chain(peer, &outgoing, &self.trusted)).unwrap_or_default();
        let proto = self.forwarded_proto(context, &outgoing).to_owned();
        let host_value = client_host.as_deref().and_then(|host| HeaderValue::from_str(host).ok());
        // A long-lived API key never leaves Rampart, whatever the route.
        let api_key_sent = outgoing
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(crate::layers::authenticate::bearer_token)
            .any(crate::auth::api_keys::ApiKeys::is_api_key);
        headers::request_headers(
            &mut outgoing,
            &RequestRules {
                pass_authorization: route.pass_authorization && !api_key_sent,
                websocket,
                assertion_header: self.assertion_header.as_ref(),
                extra: &self.strip,
            },
            &Forwarding { chain: &chain, proto: &proto, host: host_value.as_ref(), request_id: &context.request_id.0 },
        );
        let host = match (&host_value, route.preserve_host) {
            (Some(host), true) => host.clone(),
            _ => header_value(upstream.authority.as_str()),
        };
        outgoing.insert(header::HOST, host);
        for (name, value) in identity_headers {
            outgoing.insert(name, value);
        }

        if websocket {
            return super::websocket::open(self, state, proxied, parts, body, uri, outgoing, identity, bearer).await;
        }

        let activity = Activity::new();
        let limited = LimitedBody::new(body, upstream.max_body, activity.clone());
        let exceeded = limited.exceeded.clone();
        let empty_body = http_body::Body::size_hint(&limited).exact() == Some(0);
        let method = parts.method.clone();
        let build = |body: Body, headers: HeaderMap| {
            let mut request = axum::http::Request::new(body);
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers;
            request
        };
        // Retried once, only where nothing can have reached the upstream: an
        // idempotent method without a body whose connection failed to open.
        let retry_headers = (method.is_idempotent() && empty_body).then(|| outgoing.clone());
        let started = Instant::now();
        let mut answer = self.send(upstream, build(Body::new(limited), outgoing), &activity).await;
        if let (Err(SendError::Connect), Some(headers)) = (&answer, retry_headers) {
            answer = self.send(upstream, build(Body::empty(), headers), &activity).await;
        }
        let metrics = &proxied.metrics;
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                let status = if exceeded.load(std::sync::atomic::Ordering::Relaxed) {
                    ApiError::PayloadTooLarge
                } else {
                    error.refusal()
                };
                metrics.count(status.status().as_u16());
                if status.status() != StatusCode::PAYLOAD_TOO_LARGE {
                    tracing::warn!(route = %route.id, upstream = %upstream.name, cause = ?error, "upstream request failed");
                }
                return status.into_response();
            }
        };
        metrics.duration.observe(started.elapsed().as_secs_f64());
        metrics.count(response.status().as_u16());
        let (mut head, incoming) = response.into_parts();
        headers::response_headers(&mut head.headers, false);
        // The client's protocol, not the upstream's (an HTTP/1.0 upstream
        // must not turn the client's keep-alive connection into 1.0).
        head.version = parts.version;
        head.extensions = Default::default();
        head.extensions.insert(FromUpstream);
        let body = IdleBody::new(incoming, upstream.idle_timeout, activity);
        // A small body of declared length is read before answering, so the
        // client gets head and body in one write (as nginx's proxy_buffering
        // does): streamed, the head went out alone and the body followed in
        // a second write and a second wake-up of the client. Bodies of
        // unknown length (server-sent events, chunked streams) and large ones
        // stream as they come.
        let small = http_body::Body::size_hint(&body).exact().is_some_and(|length| length <= BUFFERED_BODY_LIMIT);
        if small && parts.method != Method::HEAD {
            return match http_body_util::BodyExt::collect(body).await {
                Ok(collected) => Response::from_parts(head, Body::from(collected.to_bytes())),
                Err(error) => {
                    tracing::debug!(route = %route.id, cause = %error, "upstream body failed");
                    ApiError::BadGateway.into_response()
                }
            };
        }
        Response::from_parts(head, Body::new(body))
    }

    /// Sends with the upstream's `response_timeout` on the response headers.
    /// `response_timeout` runs from the last byte of the request body the
    /// upstream took (`activity`), so a long upload that keeps moving is
    /// not cut: the upstream has until then plus the timeout to answer.
    pub(super) async fn send(
        &self,
        upstream: &Upstream,
        request: axum::http::Request<Body>,
        activity: &Activity,
    ) -> Result<axum::http::Response<hyper::body::Incoming>, SendError> {
        let limit = upstream.response_timeout;
        let answer = upstream.client.request(request);
        tokio::pin!(answer);
        let timer = tokio::time::sleep(limit);
        tokio::pin!(timer);
        let result = loop {
            tokio::select! {
                result = &mut answer => break result,
                () = &mut timer => {
                    let deadline = activity.deadline(limit);
                    if deadline <= tokio::time::Instant::now() {
                        return Err(SendError::Timeout);
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        };
        match result {
            Ok(response) => Ok(response),
            Err(error) if error.is_connect() => Err(SendError::Connect),
            Err(error) => {
                tracing::debug!(cause = %error, "upstream request error");
                Err(SendError::Other)
            }
        }
    }

    /// Whether the socket peer is one of `server.trusted_proxies`.
    pub fn from_trusted_proxy(&self, context: &RequestContext) -> bool {
        context.peer.is_some_and(|peer| self.trusted.trusts(peer))
    }

    /// `https` over TLS; behind a trusted proxy, what it says it received.
    fn forwarded_proto<'h>(&self, context: &RequestContext, headers: &'h HeaderMap) -> &'h str {
        if self.from_trusted_proxy(context)
            && let Some(proto) = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok())
            && (proto == "https" || proto == "http")
        {
            return proto;
        }
        if self.tls { "https" } else { "http" }
    }

    /// Closes every websocket tunnel (with 1001) on shutdown.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// The origin the request was made to: `server.public_url`, else the
    /// scheme and host it reached Rampart by (through a trusted proxy: the
    /// ones it names).
    pub fn origin(&self, context: &RequestContext, headers: &HeaderMap) -> String {
        if let Some(origin) = &self.public_origin {
            return origin.clone();
        }
        let forwarded_host = headers.get("x-forwarded-host").filter(|_| self.from_trusted_proxy(context));
        let host = forwarded_host.or_else(|| headers.get(header::HOST)).and_then(|value| value.to_str().ok());
        format!("{}://{}", self.forwarded_proto(context, headers), host.unwrap_or_default())
    }
}

#[derive(Debug)]
pub(super) enum SendError {
    Connect,
    Timeout,
    Other,
}

impl SendError {
    /// What the client is told: 504 for no answer in time, else 502.
    pub(super) fn refusal(&self) -> ApiError {
        match self {
            SendError::Timeout => ApiError::GatewayTimeout,
            SendError::Connect | SendError::Other => ApiError::BadGateway,
        }
    }
}

fn dispatch_in(routing: &Routing, demo: bool, method: &Method, host: Option<&str>, path: &str) -> Dispatch {
    if let Err(refusal) = path::check(path) {
        return Dispatch::Refuse(ApiError::bad_request(refusal.0));
    }
    if rampart_owns(path, demo) {
        return Dispatch::Rampart;
    }
    match routing.table.select(method, host, path) {
        Selection::Route(route) => match (routing.upstreams.get(&route.upstream), routing.labels.get(&route.id)) {
            (Some(upstream), Some((label, metrics))) => Dispatch::Proxy(Proxied {
                route: route.clone(),
                upstream: upstream.clone(),
                label: label.clone(),
                metrics: metrics.clone(),
            }),
            _ => Dispatch::Refuse(ApiError::NotFound),
        },
        Selection::MethodNotAllowed { allow } => {
            Dispatch::Refuse(ApiError::MethodNotAllowed { allow: header_value(&allow) })
        }
        Selection::NoRoute => Dispatch::Rampart,
    }
}

/// The identity a principal is forwarded as.
fn identity_of(principal: &Principal) -> Identity {
    let kind = match principal.credential {
        Credential::Bearer { .. } => "bearer",
        Credential::Session { .. } => "session",
        Credential::ApiKey { .. } => "api_key",
    };
    Identity { principal: principal.clone(), kind, amr: principal.amr() }
}

/// `Host`, or the HTTP/2 `:authority`.
fn request_host<'a>(headers: &'a HeaderMap, uri: &'a axum::http::Uri) -> Option<&'a str> {
    headers.get(header::HOST).and_then(|value| value.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()))
}

/// Whether a request asks for a websocket, also as another proxy describes
/// it to forward auth: nginx and Envoy drop the hop-by-hop `Upgrade` and
/// `Connection` from the question, but not the end-to-end
/// `Sec-WebSocket-Key`.
pub fn asks_for_websocket(headers: &HeaderMap) -> bool {
    is_websocket_upgrade(headers) || headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers.get(header::UPGRADE).is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    upgrade && connection
}

/// `/login?next=<path and query, percent-encoded>`, where a browser route
/// sends a guest.
fn login_location(path_and_query: &str) -> HeaderValue {
    let next: String = path_and_query
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect();
    header_value(&format!("/login?next={next}"))
}

/// The request a decision is about: the gateway's own, or the one another
/// proxy describes to forward auth.
pub struct Asked<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub path_and_query: &'a str,
    /// Where credentials, `Origin`, `Sec-Fetch-Site` and `X-CSRF-Token` are read.
    pub headers: &'a HeaderMap,
    /// The origin it was made to (`Gateway::origin`).
    pub origin: &'a str,
}

/// Why `admit` refused.
#[derive(Debug)]
pub enum Refusal {
    Api(ApiError),
    /// A guest on a `login` route: 303 to this sign-in page (the gateway),
    /// or 401 with it in `Location` (forward auth).
    Login(HeaderValue),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Api(error) => error.into_response(),
            Refusal::Login(location) => {
                let mut response = StatusCode::SEE_OTHER.into_response();
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
        }
    }
}

/// Values built from our own ASCII text; anything else becomes empty.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}
