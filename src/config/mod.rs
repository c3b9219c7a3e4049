//! Typed configuration: the tree of API.md's "Command line and
//! configuration", its defaults, and the checks that run once at start.
//!
//! Loading (defaults < TOML file < `.env` < `RAMPART_*` variables) lives in
//! `load`; this module only describes the shape and what a valid value is.
//! Every struct denies unknown keys, so a typo stops the start instead of
//! being ignored. Secrets are `SecretString`s: their `Debug` prints nothing.

mod load;
pub mod proxy;
pub mod units;

use crate::domain::Role;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use load::{ConfigError, ConfigSources, load};
pub use proxy::{DemoConfig, ProxyConfig, RouteAuth, RouteConfig, Unauthenticated, UpstreamConfig};
pub use units::{ByteSize, HumanDuration};

/// The whole configuration. Build it with `load` (or `Config::defaults()`
/// in tests): the rate-limit group defaults come from the loader's tree.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub bootstrap: BootstrapConfig,
    #[serde(default)]
    pub rate_limit: BTreeMap<String, RateLimitGroup>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub defense: DefenseConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub oauth: OAuthConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub api_keys: ApiKeysConfig,
    /// Passkeys: the relying party browsers bind them to.
    #[serde(default)]
    pub webauthn: WebauthnConfig,
    /// Outgoing mail: verification and reset links, security notices.
    #[serde(default)]
    pub email: EmailConfig,
    /// Protect mode: upstreams and the route table.
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub demo: DemoConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit events older than this are deleted (hourly).
    pub retention: HumanDuration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention: HumanDuration::days(90) }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The longest an API key may live (and how long one does when its
    /// `expires_at` is omitted).
    pub max_lifetime: HumanDuration,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self { max_lifetime: HumanDuration::days(365) }
    }
}

/// The WebAuthn relying party. Both empty: derived from
/// `server.public_url` (else `http://localhost:<bind port>`, development).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnConfig {
    /// The domain passkeys are bound to (`example.com`): the origin's host
    /// or a suffix of it. "" = the origin's host.
    pub rp_id: String,
    /// The origin the pages are served from (`https://app.example.com`).
    pub origin: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtps://host:465` (implicit TLS), `smtp://host:587?tls=required`
    /// (STARTTLS), or plain `smtp://host:port` to a loopback host only;
    /// the user may be in the URL, never the password. "" = no SMTP: mails
    /// are written as `.eml` files under `<server.data_dir>/outbox/`.
    pub smtp_url: String,
    pub smtp_password: SecretString,
    pub smtp_password_file: PathBuf,
    /// PEM certificates to trust for the SMTP server besides the public
    /// roots (a private CA).
    pub ca_file: PathBuf,
    /// The `From` of every mail.
    pub from: String,
    /// The first retry of a mail the server did not take comes this long
    /// after; each next one waits twice as long, at most an hour.
    pub retry_after: HumanDuration,
    /// A mail still not accepted this long after it was queued is given up.
    pub give_up_after: HumanDuration,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_url: String::new(),
            smtp_password: SecretString::default(),
            smtp_password_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            from: "Rampart <no-reply@localhost>".into(),
            retry_after: HumanDuration::secs(30),
            give_up_after: HumanDuration::days(3),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Listener for `/metrics`; never the public one.
    pub admin_bind: SocketAddr,
    pub environment: Environment,
    pub body_limit: ByteSize,
    pub data_dir: PathBuf,
    /// How long a connection may hold no request and take no response
    /// bytes (slowloris, idle keep-alive); also the TLS handshake's limit.
    pub header_read_timeout: HumanDuration,
    pub request_timeout: HumanDuration,
    pub shutdown_timeout: HumanDuration,
    pub max_connections: usize,
    /// Open connections one client address may hold (IPv6: per
    /// `ipv6_prefix`); peers in `trusted_proxies` are not capped.
    pub max_connections_per_ip: usize,
    pub max_header_bytes: ByteSize,
    pub max_uri_bytes: ByteSize,
    pub trusted_proxies: Vec<IpNet>,
    /// Which header the trusted proxies write: only that one is read, so a
    /// client cannot slip in the other (a proxy passes it through).
    pub forwarded_header: ForwardedHeader,
    pub cors_origins: Vec<String>,
    /// IPv6 clients share rate limits by this prefix length.
    pub ipv6_prefix: u8,
    /// Most distinct rate-limit keys kept in memory (see `limiter::memory`).
    pub rate_limit_max_keys: usize,
    /// The origin clients use (`https://api.example.com`): links, same-origin
    /// checks, the assertion's `htu`. "" = not configured.
    pub public_url: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, most load balancers).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded` (RFC 7239) `for=` elements.
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            admin_bind: SocketAddr::from(([127, 0, 0, 1], 9090)),
            environment: Environment::Development,
            body_limit: ByteSize::kib(10),
            data_dir: PathBuf::from("data"),
            header_read_timeout: HumanDuration::secs(10),
            request_timeout: HumanDuration::secs(30),
            shutdown_timeout: HumanDuration::secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_header_bytes: ByteSize::kib(16),
            max_uri_bytes: ByteSize::kib(8),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            cors_origins: Vec::new(),
            ipv6_prefix: 64,
            rate_limit_max_keys: 2_000_000,
            public_url: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// May carry a password (postgres://user:pass@host), hence secret.
    pub url: SecretString,
    /// A file holding the URL instead, so the password stays out of the TOML.
    pub url_file: PathBuf,
    pub auto_migrate: bool,
    pub max_connections: u32,
    /// The longest a request waits on the database: for a connection from
    /// the pool, for a PostgreSQL statement (`statement_timeout`), for
    /// SQLite's write lock. Past it the request gets 503.
    pub timeout: HumanDuration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://data/rampart.db"),
            url_file: PathBuf::new(),
            auto_migrate: true,
            max_connections: 8,
            timeout: HumanDuration::secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: SecretString,
    /// A file holding the URL instead (it may carry a password).
    pub url_file: PathBuf,
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: SecretString::default(), url_file: PathBuf::new(), key_prefix: "rampart:".into() }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
pub enum JwtAlgorithm {
    #[default]
    EdDSA,
    ES256,
    RS256,
    HS256,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub jwt_algorithm: JwtAlgorithm,
    pub signing_key_file: PathBuf,
    /// Keys that signed before the current one; they verify, never sign.
    pub previous_key_files: Vec<PathBuf>,
    pub access_token_ttl: HumanDuration,
    pub refresh_token_ttl: HumanDuration,
    pub session_idle_timeout: HumanDuration,
    pub session_absolute_timeout: HumanDuration,
    pub issuer: String,
    pub audience: String,
    pub password_hash: PasswordHashConfig,
    /// Users who have not proven their address may only verify it, read
    /// their profile and sign out (403 `email_unverified`).
    pub require_verified_email: bool,
    /// Roles whose credentials must come from a sign-in with two factors;
    /// others may only enrol one, read their profile and sign out (403
    /// `mfa_enrolment_required`).
    pub require_mfa_for: Vec<Role>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_algorithm: JwtAlgorithm::EdDSA,
            signing_key_file: PathBuf::new(),
            previous_key_files: Vec::new(),
            access_token_ttl: HumanDuration::mins(15),
            refresh_token_ttl: HumanDuration::days(30),
            session_idle_timeout: HumanDuration::mins(30),
            session_absolute_timeout: HumanDuration::hours(12),
            issuer: "rampart".into(),
            audience: "rampart-api".into(),
            password_hash: PasswordHashConfig::default(),
            require_verified_email: false,
            require_mfa_for: Vec::new(),
        }
    }
}

/// Argon2id cost. The defaults are OWASP's (19 MiB, t=2, p=1); tests lower
/// them through configuration, never by changing these numbers.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordHashConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once; more wait, so memory stays bounded under a
    /// login flood. Default on Linux: one per core, since hashing threads
    /// run only on idle CPU there (`SCHED_IDLE`, `auth/password.rs`) and
    /// cannot hold reads back; elsewhere half the cores (at least one), so
    /// logins never hold every core while reads wait.
    pub max_concurrent: usize,
}

impl Default for PasswordHashConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let max_concurrent = if cfg!(target_os = "linux") { cores } else { (cores / 2).max(1) };
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1, max_concurrent }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    pub admin_email: String,
    pub admin_name: String,
    pub admin_password: SecretString,
    pub admin_password_file: PathBuf,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitStrategy {
    FixedWindow,
    SlidingWindow,
    TokenBucket,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CountMode {
    #[default]
    All,
    Failures,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateLimitGroup {
    #[serde(default = "RateLimitGroup::default_strategy")]
    pub strategy: RateLimitStrategy,
    pub limit: u32,
    pub window: HumanDuration,
    #[serde(default)]
    pub count: CountMode,
    /// Path prefixes this group covers (for groups beyond the built-in three).
    #[serde(default)]
    pub paths: Vec<String>,
    /// HTTP methods this group covers; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
    pub on_backend_error: Option<OnBackendError>,
}

impl RateLimitGroup {
    fn default_strategy() -> RateLimitStrategy {
        RateLimitStrategy::SlidingWindow
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefenseConfig {
    pub enabled: bool,
    pub failed_login_threshold: u32,
    pub rate_limited_threshold: u32,
    pub window: HumanDuration,
    pub block_for: HumanDuration,
}

impl Default for DefenseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failed_login_threshold: 20,
            rate_limited_threshold: 200,
            window: HumanDuration::mins(5),
            block_for: HumanDuration::mins(15),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub webhook_url: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsConfig {
    pub fn is_configured(&self) -> bool {
        !self.cert_file.as_os_str().is_empty() || !self.key_file.as_os_str().is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    pub redirect_allowlist: Vec<String>,
    pub providers: BTreeMap<String, OAuthProviderConfig>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self { redirect_allowlist: vec!["/account".into()], providers: BTreeMap::new() }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthProviderConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    pub client_secret_file: PathBuf,
    pub issuer: String,
    pub auth_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub redirect_url: String,
    /// Empty: `["openid", "email", "profile"]`, or GitHub's
    /// `["read:user", "user:email"]`.
    pub scopes: Vec<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub token_auth: String,
    /// The button's label on `/login` ("Sign in with …"); defaults to the
    /// provider's name.
    pub display_name: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON in production, readable text in development.
    #[default]
    Auto,
    Json,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `"info"` or `"rampart=debug,info"`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Auto, level: "info".into() }
    }
}

impl Config {
    /// Defaults for everything, as a file with no keys would give.
    pub fn defaults() -> Self {
        match load(&ConfigSources::default()) {
            Ok(config) => config,
            // The built-in tree is covered by a unit test; reaching this is a bug.
            Err(error) => panic!("built-in configuration defaults are invalid: {error}"),
        }
    }

    /// `server.public_url`, when configured (an origin, checked at load).
    pub fn public_origin(&self) -> Option<&str> {
        (!self.server.public_url.is_empty()).then_some(self.server.public_url.as_str())
    }

    /// Where links in mail point: `server.public_url`, else
    /// `http://<server.bind>` (development).
    pub fn link_base(&self) -> String {
        match self.public_origin() {
            Some(origin) => origin.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.server.bind),
        }
    }

    /// The origin passkey ceremonies must come from: `webauthn.origin`,
    /// else `server.public_url`, else `http://localhost:<bind port>`.
    pub fn webauthn_origin(&self) -> String {
        if !self.webauthn.origin.is_empty() {
            return self.webauthn.origin.clone();
        }
        match self.public_origin() {
            Some(origin) => origin.trim_end_matches('/').to_owned(),
            None => format!("http://localhost:{}", self.server.bind.port()),
        }
    }

    pub fn is_production(&self) -> bool {
        self.server.environment == Environment::Production
    }

    pub fn json_logs(&self) -> bool {
        match self.log.format {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => self.is_production(),
        }
    }

    /// Reads `*_file` secrets into their keys. A file and an inline value
    /// for the same key is an error: which one wins would be a guess.
    pub fn read_secret_files(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let default_database_url = DatabaseConfig::default().url;
        let pairs: [(&str, &mut SecretString, &PathBuf, &str); 3] = [
            ("database.url", &mut self.database.url, &self.database.url_file, default_database_url.expose_secret()),
            ("redis.url", &mut self.redis.url, &self.redis.url_file, ""),
            ("email.smtp_password", &mut self.email.smtp_password, &self.email.smtp_password_file, ""),
        ];
        for (key, value, file, default) in pairs {
            read_secret_file(&mut problems, key, value, file, default);
        }
        for (name, provider) in &mut self.oauth.providers {
            let key = format!("oauth.providers.{name}.client_secret");
            read_secret_file(&mut problems, &key, &mut provider.client_secret, &provider.client_secret_file, "");
        }
        problems
    }

    /// Every problem with the values themselves, each naming its key. Empty
    /// means the configuration may start a server.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let route_table_problems = crate::proxy::table::RouteTable::build(self).err().unwrap_or_default();
        let mut problem = |key: &str, message: &str| problems.push(format!("{key}: {message}"));
        let server = &self.server;

        if server.body_limit.0 == 0 {
            problem("server.body_limit", "must be greater than zero");
        }
        if server.max_connections == 0 {
            problem("server.max_connections", "must be greater than zero");
        }
        if server.max_connections_per_ip == 0 {
            problem("server.max_connections_per_ip", "must be greater than zero");
        }
        if server.max_header_bytes.0 < 1024 {
            problem("server.max_header_bytes", "must be at least 1KiB");
        }
        if server.ipv6_prefix == 0 || server.ipv6_prefix > 128 {
            problem("server.ipv6_prefix", "must be between 1 and 128");
        }
        if server.rate_limit_max_keys < 1024 {
            problem("server.rate_limit_max_keys", "must be at least 1024");
        }
        if server.max_uri_bytes.0 < 256 {
            problem("server.max_uri_bytes", "must be at least 256B");
        }
        for (key, value) in [
            ("server.header_read_timeout", server.header_read_timeout),
            ("server.request_timeout", server.request_timeout),
            ("auth.access_token_ttl", self.auth.access_token_ttl),
            ("auth.refresh_token_ttl", self.auth.refresh_token_ttl),
            ("auth.session_idle_timeout", self.auth.session_idle_timeout),
            ("auth.session_absolute_timeout", self.auth.session_absolute_timeout),
        ] {
            if value.0.is_zero() {
                problem(key, "must be longer than zero");
            }
        }
        if self.auth.session_idle_timeout > self.auth.session_absolute_timeout {
            problem("auth.session_idle_timeout", "must not exceed auth.session_absolute_timeout");
        }
        if self.auth.issuer.trim().is_empty() {
            problem("auth.issuer", "must not be empty");
        }
        if self.auth.audience.trim().is_empty() {
            problem("auth.audience", "must not be empty");
        }
        let hash = self.auth.password_hash;
        if hash.memory_kib < 8 * hash.parallelism.max(1) || hash.iterations == 0 || hash.parallelism == 0 {
            problem(
                "auth.password_hash",
                "memory_kib must be at least 8 × parallelism, iterations and parallelism at least 1",
            );
        }
        if hash.max_concurrent == 0 {
            problem("auth.password_hash.max_concurrent", "must be at least 1");
        }
        for origin in &server.cors_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://")) || origin.ends_with('/') {
                problem(
                    "server.cors_origins",
                    &format!("{origin:?} is not an origin like \"https://app.example.com\""),
                );
            }
        }

        let url = self.database.url.expose_secret();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problem("database.url", "must start with sqlite: or postgres://");
        }
        if self.database.max_connections == 0 {
            problem("database.max_connections", "must be at least 1");
        }
        if self.database.timeout.0.is_zero() {
            problem("database.timeout", "must be longer than zero");
        }

        for (name, group) in &self.rate_limit {
            if group.limit == 0 {
                problem(&format!("rate_limit.{name}.limit"), "must be at least 1");
            }
            if group.window.0.is_zero() {
                problem(&format!("rate_limit.{name}.window"), "must be longer than zero");
            }
            // The token bucket keeps time in milliseconds: past one request
            // per millisecond its interval would round to nothing.
            if group.strategy == RateLimitStrategy::TokenBucket && u128::from(group.limit) > group.window.0.as_millis()
            {
                problem(
                    &format!("rate_limit.{name}.limit"),
                    "a token_bucket allows at most one request per millisecond of its window; use sliding_window for more",
                );
            }
            let builtin = matches!(name.as_str(), "global" | "login" | "api" | proxy::PROXY_RATE_LIMIT_GROUP);
            let named_by_route = self.proxy.routes.iter().any(|route| route.rate_limit == *name);
            if !builtin && group.paths.is_empty() && !named_by_route {
                problem(
                    &format!("rate_limit.{name}.paths"),
                    "a custom group needs at least one path prefix, or a proxy route naming it in rate_limit",
                );
            }
            if name == proxy::PROXY_RATE_LIMIT_GROUP && !group.paths.is_empty() {
                problem(
                    &format!("rate_limit.{name}.paths"),
                    "the proxy group applies to proxy routes only; define another group for paths",
                );
            }
        }

        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            problem("tls", "cert_file and key_file must be set together");
        }
        let webhook = &self.alerts.webhook_url;
        if !webhook.is_empty() {
            let loopback_http = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|prefix| webhook.starts_with(prefix));
            if !(webhook.starts_with("https://") || (loopback_http && !self.is_production())) {
                problem("alerts.webhook_url", "must be an https:// URL (plain http only to loopback in development)");
            }
        }
        if self.defense.failed_login_threshold == 0 || self.defense.rate_limited_threshold == 0 {
            problem("defense", "thresholds must be at least 1");
        }
        if self.api_keys.max_lifetime.0 < std::time::Duration::from_secs(60)
            || self.api_keys.max_lifetime.0 > std::time::Duration::from_secs(10 * 366 * 86_400)
        {
            problem("api_keys.max_lifetime", "must be between 1m and 10 years");
        }
        for message in crate::mail::config_problems(self) {
            let (key, message) = message.split_once(": ").unwrap_or(("email", &message));
            problem(key, message);
        }
        if self.audit.retention.0 < std::time::Duration::from_secs(3600) {
            problem("audit.retention", "must be at least 1h");
        }
        if self.defense.window.0.is_zero() || self.defense.block_for.0.is_zero() {
            problem("defense", "window and block_for must be longer than zero");
        }

        for entry in &self.oauth.redirect_allowlist {
            if !is_redirect_target(entry) {
                problem(
                    "oauth.redirect_allowlist",
                    &format!("{entry:?} is neither a local path like \"/account\" nor an http(s) URL"),
                );
            }
        }
        for (name, provider) in &self.oauth.providers {
            let key = |field: &str| format!("oauth.providers.{name}.{field}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                problem(&key(""), "provider names are lower-case letters, digits and '-' (they appear in URLs)");
            }
            if provider.client_id.trim().is_empty() {
                problem(&key("client_id"), "must be set");
            }
            let redirect = &provider.redirect_url;
            let callback = format!("/auth/oauth/{name}/callback");
            if !(redirect.starts_with("https://") || redirect.starts_with("http://")) || !redirect.ends_with(&callback)
            {
                problem(&key("redirect_url"), &format!("must be the absolute URL of this server's {callback}"));
            } else if redirect.starts_with("http://") && self.is_production() {
                problem(&key("redirect_url"), "must be https:// in production");
            }
            if !matches!(provider.token_auth.as_str(), "" | "client_secret_basic" | "client_secret_post") {
                problem(&key("token_auth"), "must be client_secret_basic or client_secret_post");
            }
            let explicit = [&provider.auth_url, &provider.token_url, &provider.userinfo_url];
            let has_endpoints = explicit.iter().all(|url| !url.is_empty());
            if !provider.issuer.is_empty() && explicit.iter().any(|url| !url.is_empty()) {
                problem(
                    &key("issuer"),
                    "set either issuer (OIDC discovery) or auth_url/token_url/userinfo_url, not both",
                );
            } else if provider.issuer.is_empty() && !has_endpoints && !matches!(name.as_str(), "google" | "github") {
                problem(&key("issuer"), "set issuer (OIDC discovery) or auth_url, token_url and userinfo_url");
            }
            let urls = [
                ("issuer", &provider.issuer),
                ("auth_url", &provider.auth_url),
                ("token_url", &provider.token_url),
                ("userinfo_url", &provider.userinfo_url),
            ];
            for (field, url) in urls {
                if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
                    problem(&key(field), "must be an http(s) URL");
                }
            }
        }

        if self.is_production() {
            if !self.tls.is_configured() && server.trusted_proxies.is_empty() {
                problem(
                    "server.environment",
                    "production needs [tls] cert_file/key_file, or server.trusted_proxies for a TLS-terminating proxy",
                );
            }
            if server.trusted_proxies.iter().any(|network| network.prefix_len() == 0) {
                problem(
                    "server.trusted_proxies",
                    "must not include 0.0.0.0/0 or ::/0 in production: every client could then choose its own address",
                );
            }
            if self.auth.signing_key_file.as_os_str().is_empty() {
                problem(
                    "auth.signing_key_file",
                    "production needs an explicit signing key (see `rampart keys generate`); the generated development key is refused",
                );
            }
        }
        if self.auth.jwt_algorithm == JwtAlgorithm::HS256
            && let Some(message) = hs256_secret_problem(&self.auth.signing_key_file)
        {
            problem("auth.signing_key_file", &message);
        }
        if let Err(message) = crate::auth::passkey::RelyingParty::from_config(self) {
            problem("webauthn", &message);
        }
        for (key, message) in proxy::problems(self) {
            problem(&key, &message);
        }
        problems.extend(route_table_problems);
        problems
    }
}

/// Replaces `value` by the trimmed contents of `file` when one is given.
fn read_secret_file(problems: &mut Vec<String>, key: &str, value: &mut SecretString, file: &Path, default: &str) {
    if file.as_os_str().is_empty() {
        return;
    }
    if value.expose_secret() != default {
        problems.push(format!("{key}_file: set either {key} or {key}_file, not both"));
        return;
    }
    match std::fs::read_to_string(file) {
        Ok(text) => *value = SecretString::from(text.trim().to_owned()),
        Err(error) => problems.push(format!("{key}_file: cannot read {}: {error}", file.display())),
    }
}

/// Where a finished OAuth sign-in may land: a local path (not `//host`,
/// which browsers read as another site) or an absolute http(s) URL.
fn is_redirect_target(entry: &str) -> bool {
    let local = entry.starts_with('/') && !entry.starts_with("//") && !entry.contains('\\');
    let absolute = entry.starts_with("https://") || entry.starts_with("http://");
    (local || absolute) && !entry.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// HS256 needs a secret of at least 32 bytes; anything shorter is guessable.
fn hs256_secret_problem(path: &Path) -> Option<String> {
    if path.as_os_str().is_empty() {
        return None; // development: a strong secret is generated
    }
    match std::fs::read(path) {
        Ok(bytes) if bytes.trim_ascii().len() >= 32 => None,
        Ok(_) => Some("the HS256 secret must be at least 32 bytes".into()),
        Err(error) => Some(format!("cannot read {}: {error}", path.display())),
    }
}
