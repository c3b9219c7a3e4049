//! `AppState`, and the public and admin services: the routes wrapped in
//! the pipeline (`layers::pipeline`; its stage order is
//! `layers::pipeline::STAGES`).

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderName, HeaderValue, Method, header},
};
use prometheus_client::metrics::gauge::Gauge;
use tower::{Layer, util::Either};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

use secrecy::{ExposeSecret, SecretString};

use crate::{
    audit::{AuditContext, Auditor},
    auth::{
        api_keys::{ApiKeys, KeyCache},
        device::DeviceCookies,
        failed_tokens::FailedTokens,
        keys,
        oauth::OAuthProviders,
        password::PasswordHasher,
        principal::Caller,
        revocation::{MemoryRevocations, RevocationList},
        secret,
        throttle::LoginThrottle,
        tokens::{TokenKeys, VerifiedTokens},
    },
    clock::Clock,
    config::Config,
    defense::Defense,
    domain::{AuditKind, Outcome},
    error::ApiError,
    layers::{
        access_log::AccessLog,
        client_ip::TrustedProxies,
        limits::RequestLimits,
        pipeline::{Edge, EdgeSettings, Gate, RecordRouteLayer},
        rate_limit::RateLimiter,
        security_headers::SecurityHeaders,
    },
    limiter::{LimiterBackend, memory::MemoryLimiter},
    metrics::Metrics,
    openapi,
    policy::{Action, Authorizer, Decision, Resource},
    proxy::Gateway,
    route_class::{RouteClass, RouteClasses},
    routes::{self, RouteParts, Routes},
    shared::{Redis, RedisLimiter, RedisRevocations, RedisSessions},
    store::{SessionStore, Store},
};

/// Verified access tokens kept to skip repeated signature checks.
const VERIFIED_TOKEN_CACHE: usize = 65_536;

/// Everything a handler may need. One shared pointer: every middleware and
/// handler clones it per request, so a clone is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub hasher: PasswordHasher,
    pub tokens: Arc<TokenKeys>,
    pub verified_tokens: Arc<VerifiedTokens>,
    /// Clients whose tokens keep failing: no more signature checks for them
    /// for a while (`auth::failed_tokens`).
    pub failed_tokens: Arc<FailedTokens>,
    /// API keys: made, verified (through their cache), their uses noted.
    pub api_keys: Arc<ApiKeys>,
    pub revocations: Arc<dyn RevocationList>,
    pub throttle: Arc<LoginThrottle>,
    /// Signs and checks `rampart_device` cookies (`auth::device`).
    pub device_cookies: DeviceCookies,
    pub audit: Arc<Auditor>,
    pub authorizer: Arc<Authorizer>,
    pub rate_limiter: Arc<RateLimiter>,
    pub defense: Arc<Defense>,
    pub sessions: Arc<dyn SessionStore>,
    /// "Sign in with …" providers (`oauth.providers`).
    pub oauth: Arc<OAuthProviders>,
    /// Set when `redis.url` is: shared counters, sessions, revocations.
    pub redis: Option<Redis>,
    /// Protect mode: the route table, upstreams and assertion signer.
    pub gateway: Arc<Gateway>,
    /// Outgoing mail: composes into the outbox; its worker sends.
    pub mailer: Arc<crate::mail::Mailer>,
    /// The WebAuthn relying party; `None` when passkeys are off (an origin
    /// derived from an IP-address `server.public_url`).
    pub passkeys: Option<crate::auth::passkey::RelyingParty>,
    /// A hash of a random password, verified against when an email is
    /// unknown so that the answer takes as long as for a real account.
    dummy_hash: tokio::sync::OnceCell<Arc<str>>,
    /// The OpenAPI document, rendered once when the router is built.
    pub api_document: std::sync::OnceLock<Bytes>,
    pub started: Instant,
    /// Whether the public listener speaks TLS (HSTS, `Secure` cookies).
    pub tls: bool,
}

impl AppState {
    /// Loads keys and revocations and starts the audit writer; call from
    /// inside the runtime.
    pub async fn build(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tls: bool,
    ) -> anyhow::Result<Self> {
        let hasher = PasswordHasher::new(&config.auth.password_hash)?;
        let authorizer = Authorizer::load(&config.policy.file)?;
        let keys = keys::load(&config.auth, &config.server.data_dir)?;
        if let Some(path) = &keys.generated {
            tracing::warn!(
                path = %path.display(),
                "generated a development signing key; production needs auth.signing_key_file"
            );
        }
        let auth = &config.auth;
        let mut tokens = TokenKeys::new(
            auth.jwt_algorithm,
            &keys.current,
            &keys.previous,
            &auth.issuer,
            &auth.audience,
            auth.access_token_ttl.0,
        )?;
        let gateway = Arc::new(Gateway::new(&config, &mut tokens, tls)?);
        let device_cookies = DeviceCookies::new(&keys.current, &keys.previous);
        let key_cache = Arc::new(KeyCache::default());
        let local_revocations =
            Arc::new(MemoryRevocations::load(store.clone(), clock.clone(), key_cache.clone()).await?);
        let api_keys = Arc::new(ApiKeys::new(store.clone(), clock.clone(), key_cache));
        api_keys.spawn_flusher();
        let audit = Arc::new(Auditor::spawn(store.clone()));
        let redis_url = config.redis.url.expose_secret();
        let redis =
            if redis_url.is_empty() { None } else { Some(Redis::connect(redis_url, &config.redis.key_prefix).await?) };
        // Keys the in-memory limiter holds (no series with Redis, which
        // keeps its own counters).
        let limiter_keys = redis.is_none().then(Gauge::default);
        let (counters, revocations, sessions): (
            Arc<dyn LimiterBackend>,
            Arc<dyn RevocationList>,
            Arc<dyn SessionStore>,
        ) = match &redis {
            Some(redis) => (
                Arc::new(RedisLimiter::new(redis.clone(), clock.clone())),
                Arc::new(RedisRevocations::start(local_revocations, redis.clone())),
                Arc::new(RedisSessions::new(redis.clone())),
            ),
            None => {
                let counters = Arc::new(MemoryLimiter::new(config.server.rate_limit_max_keys, clock.clone()));
                counters.spawn_sweeper(limiter_keys.clone().unwrap_or_default());
                (counters, local_revocations, store.clone() as Arc<dyn SessionStore>)
            }
        };
        let defense = Defense::load(&config, counters.clone(), store.clone(), audit.clone(), clock.clone()).await?;
        let rate_limiter = Arc::new(RateLimiter::new(&config, counters, audit.clone(), clock.clone()));
        let failed_tokens = Arc::new(FailedTokens::new(clock.clone(), config.server.ipv6_prefix));
        failed_tokens.spawn_sweeper();
        let mut metrics = Metrics::new();
        let registry = metrics.registry();
        authorizer.register_metrics(registry);
        rate_limiter.register_metrics(registry);
        if let Some(keys) = limiter_keys {
            registry.register("rate_limit_keys", "Rate-limit keys held in memory (after the last sweep)", keys);
        }
        defense.register_metrics(registry);
        audit.register_metrics(registry);
        gateway.register_metrics(registry);
        api_keys.register_metrics(registry);
        let mailer = Arc::new(crate::mail::Mailer::new(&config)?);
        mailer.register_metrics(registry);
        mailer.spawn_worker(store.clone(), clock.clone());
        gateway.start();
        let throttle = Arc::new(match &redis {
            Some(redis) => LoginThrottle::shared(redis.clone(), clock.clone()),
            None => LoginThrottle::new(clock.clone()),
        });
        let passkeys = crate::auth::passkey::RelyingParty::from_config(&config)
            .map_err(|message| anyhow::anyhow!("webauthn: {message}"))?;
        if passkeys.is_none() {
            tracing::warn!(
                origin = %config.webauthn_origin(),
                "passkeys are off: browsers refuse them on an IP address; set webauthn.origin or server.public_url"
            );
        }
        let state = Self(Arc::new(AppStateInner {
            passkeys,
            metrics: Arc::new(metrics),
            defense,
            authorizer: Arc::new(authorizer),
            rate_limiter,
            hasher,
            tokens: Arc::new(tokens),
            verified_tokens: Arc::new(VerifiedTokens::new(VERIFIED_TOKEN_CACHE)),
            failed_tokens,
            api_keys,
            revocations,
            sessions,
            redis,
            oauth: Arc::new(OAuthProviders::from_config(&config.oauth)?),
            throttle,
            gateway,
            mailer,
            device_cookies,
            audit,
            dummy_hash: tokio::sync::OnceCell::new(),
            api_document: std::sync::OnceLock::new(),
            started: Instant::now(),
            config,
            store,
            clock,
            tls,
        }));
        let retention = time::Duration::try_from(state.config.audit.retention.0).unwrap_or(time::Duration::days(90));
        crate::housekeeping::spawn(state.store.clone(), state.clock.clone(), retention);
        crate::housekeeping::spawn_allocator_nudge();
        Ok(state)
    }

    /// A hash of a random password with the configured parameters, made at
    /// the first login rather than at start: a start then never runs
    /// Argon2, whose 19 MiB blocks the allocator would keep while idle.
    pub async fn dummy_hash(&self) -> anyhow::Result<Arc<str>> {
        let hash = self
            .dummy_hash
            .get_or_try_init(|| async {
                let phc = self.hasher.hash(&SecretString::from(secret::new_token(""))).await?;
                Ok::<_, anyhow::Error>(Arc::from(phc))
            })
            .await?;
        Ok(hash.clone())
    }

    /// Asks the policy; see `Authorizer::authorize`. A denied guest gets
    /// 401; a denied user 403, audited as `forbidden` with the action and
    /// resource.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        resource: Resource<'_>,
        audit: &AuditContext,
    ) -> Result<(), ApiError> {
        let denial = match self.authorizer.authorize(caller, action, resource) {
            Decision::Allow => return Ok(()),
            Decision::Deny(denial) => denial,
        };
        let Some(user_id) = denial.user_id else {
            return Err(ApiError::Unauthorized { token_sent: false });
        };
        let mut event = audit.event(self.clock.now(), AuditKind::Forbidden, Some(user_id), Outcome::Denied);
        event.detail = Some(denial.detail());
        self.audit.record(event);
        Err(ApiError::denied(denial.code))
    }

    /// Whether cookies get `Secure`: over TLS, or behind a TLS proxy in production.
    pub fn secure_cookies(&self) -> bool {
        self.tls || self.config.is_production()
    }

    /// A `Set-Cookie` value: `name=value; <attributes>; Max-Age=…`, plus
    /// `Secure` whenever `secure_cookies` says so. Every cookie Rampart sets
    /// is made here.
    pub fn cookie(&self, name: &str, value: &str, attributes: &str, max_age: i64) -> String {
        let secure = if self.secure_cookies() { "; Secure" } else { "" };
        format!("{name}={value}; {attributes}; Max-Age={max_age}{secure}")
    }
}

/// Every public route, each registered together with its OpenAPI
/// description (`utoipa_axum::routes!`) and, where it has one, its route
/// class; `into_parts` gives the axum router, the document (which
/// therefore lists the same operations) and the classes. Adding a route
/// module is one `merge` here; adding a documented route is one
/// `.routes(routes!(handler))` in its module.
pub fn public_routes(demo: bool) -> Routes {
    let routes = Routes::with_openapi(openapi::base())
        // The API namespace, routed or not: 404s and 405s there count in
        // the `api` group too.
        .class_under("/api/", RouteClass::Api)
        .merge(routes::ops::router())
        .merge(routes::auth::router())
        .merge(routes::email::router())
        .merge(routes::mfa::router())
        .merge(routes::passkeys::router())
        .merge(routes::oauth::router())
        .merge(routes::forward_auth::router())
        .merge(routes::pages::router())
        .merge(routes::users::router())
        .merge(routes::api_keys::router());
    // `[demo] enabled = false` frees the posts and dashboard paths (and
    // leaves them out of the document).
    let routes = if demo { routes.merge(routes::posts::router()) } else { routes };
    routes
        .merge(routes::audit::router())
        .merge(routes::blocks::router())
        .merge(routes::admin_page::router())
        .merge(routes::docs::router())
}

/// The public service: the whole pipeline (`layers::pipeline`) around the
/// routes.
pub type PublicService = Edge<Either<Cors<Gate>, Gate>>;

/// The admin service: the same edge without access log or blocking.
pub type AdminService = Edge<Router>;

/// The public API.
pub fn router(state: AppState) -> PublicService {
    router_with(state, Router::new())
}

/// The public API plus `extra` routes under the same layers (tests use this
/// for routes that panic or echo).
pub fn router_with(state: AppState, extra: Router<AppState>) -> PublicService {
    let config = &state.config;
    let RouteParts { router: routes, mut document, classes } = public_routes(config.demo.enabled).into_parts();
    // The scope names of the routes in force join the scopes' `enum`.
    document.components.get_or_insert_with(Default::default).schemas.insert(
        routes::api_keys::SCOPE_SCHEMA.into(),
        routes::api_keys::scope_schema(&state.gateway.route_ids()).into(),
    );
    let _ = state.api_document.set(Bytes::from(openapi::finish(document, &classes).to_string()));
    let routes: Router =
        routes.merge(extra).route_layer(RecordRouteLayer).fallback(not_found).with_state(state.clone());
    let gate = Gate::new(state.clone(), routes);
    // CORS sits outside the gate: preflights are answered before
    // authentication and rate limiting, as browsers send them bare.
    let inner = match cors(&config.server.cors_origins) {
        Some(cors) => Either::Left(cors.layer(gate)),
        None => Either::Right(gate),
    };
    let settings = EdgeSettings {
        trusted: TrustedProxies {
            nets: Arc::new(config.server.trusted_proxies.clone()),
            header: config.server.forwarded_header,
        },
        headers: SecurityHeaders::new(state.tls || config.is_production()),
        limits: request_limits(config),
        timeout: config.server.request_timeout.0,
        access_log: Some(AccessLog {
            metrics: state.metrics.clone(),
            audit: state.audit.clone(),
            clock: state.clock.clone(),
            defense: state.defense.clone(),
        }),
        defense: Some(state.defense.clone()),
        route_classes: classes,
        gateway: Some(state.gateway.clone()),
    };
    Edge::new(settings, inner)
}

/// The admin listener: `/metrics` (and `/health`), with the same headers
/// and error bodies but no access log, so scrapes do not flood it.
pub fn admin_router(state: AppState) -> AdminService {
    let config = &state.config;
    let settings = EdgeSettings {
        trusted: TrustedProxies::default(),
        headers: SecurityHeaders::new(config.is_production()),
        limits: request_limits(config),
        timeout: config.server.request_timeout.0,
        access_log: None,
        defense: None,
        // Nothing on the admin listener reads a class: no limits, no blocks.
        route_classes: RouteClasses::default(),
        gateway: None,
    };
    Edge::new(settings, routes::ops::admin_router().fallback(not_found).with_state(state))
}

fn request_limits(config: &Config) -> RequestLimits {
    RequestLimits {
        max_uri_bytes: config.server.max_uri_bytes.as_usize(),
        max_header_bytes: config.server.max_header_bytes.as_usize(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// CORS stays closed (no CORS headers at all) unless origins are configured.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let request_id = HeaderName::from_static("x-request-id");
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-csrf-token"),
                request_id.clone(),
            ])
            .expose_headers([
                request_id,
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
            ])
            .allow_credentials(true)
            .max_age(std::time::Duration::from_secs(600)),
    )
}
