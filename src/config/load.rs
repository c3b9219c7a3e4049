//! Layered loading: built-in defaults < TOML file < `.env` < process
//! environment (`RAMPART_<SECTION>__<KEY>`).
//!
//! Everything is merged into one TOML tree first and deserialized once, so a
//! key means the same wherever it comes from. Variables arrive as strings;
//! where the typed tree wants a number, boolean or list, the string is read
//! as a TOML literal (or a comma-separated list) and tried again. Errors name
//! the key and where its value came from, never echo a secret's value.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use toml::{Table, Value};

use super::Config;

/// The group defaults that API.md states; seeded first so a file can change
/// one key of a group and keep the rest.
const DEFAULT_TREE: &str = r#"
[rate_limit.global]
strategy = "sliding_window"
limit = 100
window = "15m"

[rate_limit.login]
strategy = "sliding_window"
limit = 5
window = "15m"
on_backend_error = "deny"

[rate_limit.password_reset]
strategy = "sliding_window"
limit = 5
window = "15m"
paths = ["/auth/password/"]
methods = ["POST"]

[rate_limit.api]
strategy = "sliding_window"
limit = 30
window = "1m"

[rate_limit.proxy]
strategy = "token_bucket"
limit = 1000
window = "1m"
"#;

/// Variables that steer the program rather than name a configuration key.
const NON_KEY_VARIABLES: [&str; 2] = ["RAMPART_CONFIG", "RAMPART_PASSWORD"];

/// What the loader reads. `from_process` gathers the real ones; tests build
/// it by hand so they never touch the process environment.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// Pairs read from `.env`, lower priority than `env`.
    pub dotenv: Vec<(String, String)>,
    /// `RAMPART_*` variables of the process.
    pub env: Vec<(String, String)>,
}

impl ConfigSources {
    /// The file is `--config`, else `RAMPART_CONFIG`, else `./rampart.toml`
    /// when present. `.env` is read from the working directory, without
    /// changing the process environment.
    pub fn from_process(cli_file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().filter(|(key, _)| key.starts_with("RAMPART_")).collect();
        let mut dotenv = Vec::new();
        if Path::new(".env").exists() {
            let pairs = dotenvy::from_path_iter(".env").map_err(|error| ConfigError::one(format!(".env: {error}")))?;
            for pair in pairs {
                let (key, value) = pair.map_err(|error| ConfigError::one(format!(".env: {error}")))?;
                if key.starts_with("RAMPART_") {
                    dotenv.push((key, value));
                }
            }
        }
        let named = |key: &str| env.iter().chain(dotenv.iter()).find(|(k, _)| k == key).map(|(_, v)| PathBuf::from(v));
        let file = cli_file.or_else(|| named("RAMPART_CONFIG")).or_else(|| {
            let local = PathBuf::from("rampart.toml");
            local.exists().then_some(local)
        });
        Ok(Self { file, dotenv, env })
    }

    /// The variable named `key`, from the process first, then `.env`.
    pub fn variable(&self, key: &str) -> Option<&str> {
        self.env.iter().chain(self.dotenv.iter()).find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// One or more problems, each a line that names its key.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: String) -> Self {
        Self { problems: vec![problem] }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    Variable { name: String, dotenv: bool },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Variable { name, dotenv: false } => write!(f, "from {name}"),
            Origin::Variable { name, dotenv: true } => write!(f, "from {name} in .env"),
        }
    }
}

/// Loads, merges and validates. Structural errors (unknown keys, wrong
/// types) and value problems (`Config::problems`) both end up here.
pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
    let mut tree: Table =
        toml::from_str(DEFAULT_TREE).map_err(|error| ConfigError::one(format!("built-in defaults: {error}")))?;
    let mut origins: HashMap<String, Origin> = HashMap::new();

    if let Some(path) = &sources.file {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::one(format!("cannot read {}: {error}", path.display())))?;
        let file: Table = toml::from_str(&text)
            .map_err(|error| ConfigError::one(format!("{}: {}", path.display(), error.to_string().trim_end())))?;
        record_leaves(&file, "", &Origin::File(path.clone()), &mut origins);
        merge(&mut tree, file);
    }

    let mut problems = Vec::new();
    let variables = sources.dotenv.iter().map(|pair| (pair, true)).chain(sources.env.iter().map(|pair| (pair, false)));
    for ((name, value), dotenv) in variables {
        if NON_KEY_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let Some(path) = variable_path(name) else {
            problems.push(format!("{name}: not a configuration variable (expected RAMPART_<SECTION>__<KEY>)"));
            continue;
        };
        match set_path(&mut tree, &path, Value::String(value.clone())) {
            Ok(()) => {
                origins.insert(path.join("."), Origin::Variable { name: name.clone(), dotenv });
            }
            Err(message) => problems.push(format!("{name}: {message}")),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }

    let mut config = deserialize(tree, &origins)?;
    let mut problems = config.read_secret_files();
    problems.extend(config.problems());
    if problems.is_empty() { Ok(config) } else { Err(ConfigError { problems }) }
}

fn deserialize(mut tree: Table, origins: &HashMap<String, Origin>) -> Result<Config, ConfigError> {
    // Each round fixes at most one variable's type; the bound only guards
    // against a loop that makes no progress.
    for _ in 0..=origins.len() {
        let error = match serde_path_to_error::deserialize::<_, Config>(Value::Table(tree.clone())) {
            Ok(config) => return Ok(config),
            Err(error) => error,
        };
        let path = error.path().to_string();
        let message = error.inner().to_string();
        let origin = origin_of(&path, origins);
        if let Some(Origin::Variable { .. }) = origin
            && coerce_variable(&mut tree, &path, &message)
        {
            continue;
        }
        return Err(ConfigError::one(describe(&path, &message, origin)));
    }
    Err(ConfigError::one("configuration variables could not be read".into()))
}

/// `server.foo: unknown key (in rampart.toml)`, or the value's problem.
fn describe(path: &str, message: &str, origin: Option<&Origin>) -> String {
    let origin = origin.map(|o| format!(" ({o})")).unwrap_or_default();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let parent = path.rsplit_once('.').map(|(p, _)| p).filter(|_| path.ends_with(field));
        let key = match parent {
            Some(parent) => format!("{parent}.{field}"),
            None if path == field || path == "." || path.is_empty() => field.to_owned(),
            None => format!("{path}.{field}"),
        };
        let expected = rest.split_once(", expected ").map(|(_, e)| format!("; expected {e}")).unwrap_or_default();
        return format!("{key}: unknown key{origin}{expected}");
    }
    let key = if path.is_empty() || path == "." { "configuration" } else { path };
    format!("{key}: {message}{origin}")
}

/// The source of `path`, of its nearest ancestor, or (for an unknown
/// section) of a key inside it.
fn origin_of<'a>(path: &str, origins: &'a HashMap<String, Origin>) -> Option<&'a Origin> {
    let mut candidate = path;
    loop {
        if let Some(origin) = origins.get(candidate) {
            return Some(origin);
        }
        match candidate.rsplit_once('.') {
            Some((parent, _)) => candidate = parent,
            None => break,
        }
    }
    let inside = format!("{path}.");
    origins.iter().find(|(key, _)| key.starts_with(&inside)).map(|(_, origin)| origin)
}

/// Reads a variable's string as the type the tree asked for.
fn coerce_variable(tree: &mut Table, path: &str, message: &str) -> bool {
    let keys: Vec<&str> = path.split('.').collect();
    let Some(Value::String(text)) = get_path(tree, &keys) else {
        return false;
    };
    let literal = toml::from_str::<Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .filter(|value| !value.is_str());
    let replacement = match literal {
        Some(value) => value,
        None if message.contains("sequence") => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(|part| Value::String(part.to_owned()))
                .collect(),
        ),
        None => return false,
    };
    let owned: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    set_path(tree, &owned, replacement).is_ok()
}

fn variable_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix("RAMPART_")?;
    let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    (parts.len() >= 2 && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

fn get_path<'a>(tree: &'a Table, keys: &[&str]) -> Option<&'a Value> {
    let (last, parents) = keys.split_last()?;
    let mut table = tree;
    for key in parents {
        table = table.get(*key)?.as_table()?;
    }
    table.get(*last)
}

fn set_path(tree: &mut Table, keys: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = keys.split_last() else {
        return Err("empty key".into());
    };
    let mut table = tree;
    for (depth, key) in parents.iter().enumerate() {
        let entry = table.entry(key.clone()).or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(inner) => inner,
            _ => {
                return Err(format!("{} is a value, not a section", keys[..=depth].join(".")));
            }
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => merge(existing, incoming),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn record_leaves(table: &Table, prefix: &str, origin: &Origin, origins: &mut HashMap<String, Origin>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if let Value::Table(inner) = value {
            record_leaves(inner, &path, origin, origins);
        }
        origins.insert(path, origin.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::{Environment, JwtAlgorithm, RateLimitStrategy};

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn error_of(sources: &ConfigSources) -> String {
        load(sources).expect_err("should be refused").to_string()
    }

    #[test]
    fn no_sources_give_the_documented_defaults() {
        let config = load(&ConfigSources::default()).expect("defaults load");
        assert_eq!(config.server.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(config.server.admin_bind.to_string(), "127.0.0.1:9090");
        assert_eq!(config.server.body_limit.0, 10 * 1024);
        assert_eq!(config.auth.jwt_algorithm, JwtAlgorithm::EdDSA);
        assert_eq!(config.rate_limit["login"].limit, 5);
        assert_eq!(config.rate_limit["api"].window.0.as_secs(), 60);
        assert_eq!(config.rate_limit["global"].strategy, RateLimitStrategy::SlidingWindow);
    }

    #[test]
    fn a_token_bucket_past_one_request_per_millisecond_is_refused() {
        let too_fast = file("[rate_limit.proxy]\nstrategy = \"token_bucket\"\nlimit = 100000\nwindow = \"1m\"\n");
        let error =
            load(&ConfigSources { file: Some(too_fast.path().to_owned()), ..Default::default() }).expect_err("refused");
        assert!(error.problems.iter().any(|problem| problem.starts_with("rate_limit.proxy.limit:")), "{error:?}");
        let sliding = file("[rate_limit.proxy]\nstrategy = \"sliding_window\"\nlimit = 100000\nwindow = \"1m\"\n");
        load(&ConfigSources { file: Some(sliding.path().to_owned()), ..Default::default() })
            .expect("a sliding window may");
    }

    #[test]
    fn later_layers_win_key_by_key() {
        let toml = file("[server]\nbind = \"127.0.0.1:4000\"\nbody_limit = \"20KiB\"\n[rate_limit.login]\nlimit = 9\n");
        let sources = ConfigSources {
            file: Some(toml.path().to_owned()),
            dotenv: vars(&[("RAMPART_SERVER__BODY_LIMIT", "30KiB"), ("RAMPART_SERVER__MAX_CONNECTIONS", "7")]),
            env: vars(&[("RAMPART_SERVER__BODY_LIMIT", "40KiB"), ("RAMPART_RATE_LIMIT__LOGIN__LIMIT", "6")]),
        };
        let config = load(&sources).expect("loads");
        assert_eq!(config.server.bind.port(), 4000, "file beats default");
        assert_eq!(config.server.max_connections, 7, ".env beats default");
        assert_eq!(config.server.body_limit.0, 40 * 1024, "environment beats .env and file");
        assert_eq!(config.rate_limit["login"].limit, 6);
        assert_eq!(config.rate_limit["login"].window.0.as_secs(), 900, "untouched group keys keep defaults");
    }

    #[test]
    fn variables_become_numbers_booleans_and_lists() {
        let sources = ConfigSources {
            env: vars(&[
                ("RAMPART_DEFENSE__ENABLED", "false"),
                ("RAMPART_SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.0/16"),
                ("RAMPART_SERVER__CORS_ORIGINS", "[\"https://app.example.com\"]"),
                ("RAMPART_BOOTSTRAP__ADMIN_PASSWORD", "123456789012345678"),
            ]),
            ..Default::default()
        };
        let config = load(&sources).expect("loads");
        assert!(!config.defense.enabled);
        assert_eq!(config.server.trusted_proxies.len(), 2);
        assert_eq!(config.server.cors_origins, ["https://app.example.com"]);
        use secrecy::ExposeSecret;
        assert_eq!(config.bootstrap.admin_password.expose_secret(), "123456789012345678");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_source() {
        let toml = file("[server]\nbind = \"127.0.0.1:3000\"\nbnid = \"x\"\n");
        let message = error_of(&ConfigSources { file: Some(toml.path().to_owned()), ..Default::default() });
        assert!(message.starts_with("server.bnid: unknown key"), "{message}");
        assert!(message.contains(&toml.path().display().to_string()), "{message}");

        let message = error_of(&ConfigSources { env: vars(&[("RAMPART_SERVR__BIND", "x")]), ..Default::default() });
        assert!(message.starts_with("servr: unknown key (from RAMPART_SERVR__BIND)"), "{message}");

        let message = error_of(&ConfigSources { env: vars(&[("RAMPART_BIND", "x")]), ..Default::default() });
        assert!(message.contains("RAMPART_BIND: not a configuration variable"), "{message}");
    }

    #[test]
    fn a_bad_value_is_named() {
        let toml = file("[auth]\naccess_token_ttl = \"15 minutes\"\n");
        let message = error_of(&ConfigSources { file: Some(toml.path().to_owned()), ..Default::default() });
        assert!(message.starts_with("auth.access_token_ttl:"), "{message}");

        let message = error_of(&ConfigSources {
            env: vars(&[("RAMPART_SERVER__MAX_CONNECTIONS", "many")]),
            ..Default::default()
        });
        assert!(message.starts_with("server.max_connections:"), "{message}");
        assert!(message.contains("RAMPART_SERVER__MAX_CONNECTIONS"), "{message}");

        let toml = file("[server]\nbind = \n");
        let message = error_of(&ConfigSources { file: Some(toml.path().to_owned()), ..Default::default() });
        assert!(message.contains("line 2"), "syntax errors give the line: {message}");
    }

    #[test]
    fn the_per_address_connection_cap_defaults_to_256_and_is_never_zero() {
        let config = load(&ConfigSources::default()).expect("defaults load");
        assert_eq!(config.server.max_connections_per_ip, 256);
        let message = error_of(&ConfigSources {
            env: vars(&[("RAMPART_SERVER__MAX_CONNECTIONS_PER_IP", "0")]),
            ..Default::default()
        });
        assert!(message.contains("server.max_connections_per_ip: must be greater than zero"), "{message}");
    }

    #[test]
    fn oauth_providers_are_checked_at_load() {
        let secret = file("  from-a-file \n");
        let good = file(&format!(
            "[oauth]\nredirect_allowlist = [\"/account\", \"https://app.example.com/done\"]\n\
             [oauth.providers.google]\nclient_id = \"id\"\nclient_secret_file = \"{}\"\n\
             redirect_url = \"https://api.example.com/auth/oauth/google/callback\"\n\
             [oauth.providers.github]\nclient_id = \"id\"\nredirect_url = \"https://api.example.com/auth/oauth/github/callback\"\n",
            secret.path().display()
        ));
        let config = load(&ConfigSources { file: Some(good.path().to_owned()), ..Default::default() }).expect("loads");
        use secrecy::ExposeSecret;
        assert_eq!(config.oauth.providers["google"].client_secret.expose_secret(), "from-a-file");

        let bad = file(
            "[oauth]\nredirect_allowlist = [\"//evil.example\"]\n\
             [oauth.providers.corp]\nclient_id = \"\"\nredirect_url = \"https://api.example.com/elsewhere\"\n\
             token_auth = \"private_key_jwt\"\n",
        );
        let message = error_of(&ConfigSources { file: Some(bad.path().to_owned()), ..Default::default() });
        for expected in [
            "oauth.redirect_allowlist: \"//evil.example\"",
            "oauth.providers.corp.client_id: must be set",
            "oauth.providers.corp.redirect_url: must be the absolute URL of this server's /auth/oauth/corp/callback",
            "oauth.providers.corp.token_auth:",
            "oauth.providers.corp.issuer: set issuer",
        ] {
            assert!(message.contains(expected), "{expected:?} missing in {message}");
        }
    }

    #[test]
    fn production_demands_tls_or_proxies_and_an_explicit_key() {
        let sources =
            ConfigSources { env: vars(&[("RAMPART_SERVER__ENVIRONMENT", "production")]), ..Default::default() };
        let message = error_of(&sources);
        assert!(message.contains("server.environment: production needs [tls]"), "{message}");
        assert!(message.contains("auth.signing_key_file"), "{message}");
    }

    #[test]
    fn production_refuses_trusted_proxies_that_cover_everyone() {
        let key = file("unused");
        for everyone in ["0.0.0.0/0", "::/0", "10.0.0.0/8, 0.0.0.0/0"] {
            let sources = ConfigSources {
                env: vars(&[
                    ("RAMPART_SERVER__ENVIRONMENT", "production"),
                    ("RAMPART_SERVER__TRUSTED_PROXIES", everyone),
                    ("RAMPART_AUTH__SIGNING_KEY_FILE", key.path().to_str().expect("utf-8 path")),
                ]),
                ..Default::default()
            };
            let message = error_of(&sources);
            assert!(message.contains("server.trusted_proxies: must not include 0.0.0.0/0 or ::/0"), "{message}");
        }
        let development =
            ConfigSources { env: vars(&[("RAMPART_SERVER__TRUSTED_PROXIES", "0.0.0.0/0")]), ..Default::default() };
        assert_eq!(load(&development).expect("development allows it").server.trusted_proxies.len(), 1);
    }

    #[test]
    fn urls_can_come_from_files_but_not_twice() {
        let url = file("postgres://rampart:s3cret@db.internal/rampart\n");
        let path = url.path().to_str().expect("utf-8 path");
        let config = load(&ConfigSources { env: vars(&[("RAMPART_DATABASE__URL_FILE", path)]), ..Default::default() })
            .expect("loads");
        use secrecy::ExposeSecret;
        assert_eq!(config.database.url.expose_secret(), "postgres://rampart:s3cret@db.internal/rampart");
        let both = ConfigSources {
            env: vars(&[("RAMPART_REDIS__URL_FILE", path), ("RAMPART_REDIS__URL", "redis://x")]),
            ..Default::default()
        };
        assert!(error_of(&both).contains("redis.url_file: set either"));
        let missing =
            ConfigSources { env: vars(&[("RAMPART_DATABASE__URL_FILE", "/no/such/file")]), ..Default::default() };
        assert!(error_of(&missing).contains("database.url_file: cannot read"));
    }

    #[test]
    fn protect_mode_defaults_load() {
        let config = Config::defaults();
        let proxy = &config.rate_limit["proxy"];
        assert_eq!((proxy.strategy, proxy.limit, proxy.window.0.as_secs()), (RateLimitStrategy::TokenBucket, 1000, 60));
        assert!(proxy.paths.is_empty());
        assert_eq!(config.proxy.assertion_header, "X-Rampart-Assertion");
        assert_eq!(config.proxy.assertion_ttl.0.as_secs(), 60);
        assert!(config.proxy.routes.is_empty() && config.proxy.upstreams.is_empty());
        assert!(config.demo.enabled);
        assert_eq!(config.public_origin(), None);
    }

    #[test]
    fn a_proxy_file_loads_with_its_defaults() {
        let toml = file(
            "[server]\npublic_url = \"https://api.example.com\"\n[demo]\nenabled = false\n\
             [rate_limit.orders]\nlimit = 10\nwindow = \"1m\"\n\
             [proxy.upstreams.orders]\nurl = \"http://127.0.0.1:8081\"\n\
             [[proxy.routes]]\nid = \"orders\"\npath = \"/orders\"\nupstream = \"orders\"\nrate_limit = \"orders\"\n\
             auth = \"optional\"\nunauthenticated = \"login\"\n\
             [[proxy.routes]]\nid = \"posts\"\npath = \"/api/posts\"\nupstream = \"orders\"\n",
        );
        let sources = ConfigSources {
            file: Some(toml.path().to_owned()),
            env: vars(&[("RAMPART_PROXY__DEFAULT_UPSTREAM", "http://127.0.0.1:8080")]),
            ..Default::default()
        };
        let config = load(&sources).expect("loads");
        assert_eq!(config.public_origin(), Some("https://api.example.com"));
        assert!(!config.demo.enabled, "[demo] enabled = false frees /api/posts");
        let upstream = &config.proxy.upstreams["orders"];
        assert_eq!(upstream.response_timeout.0.as_secs(), 30);
        assert_eq!(upstream.idle_timeout.0.as_secs(), 300);
        assert_eq!(upstream.max_body.0, 10 * 1024 * 1024);
        let route = &config.proxy.routes[0];
        assert_eq!(
            (route.auth, route.unauthenticated),
            (crate::config::RouteAuth::Optional, crate::config::Unauthenticated::Login)
        );
        assert_eq!(config.proxy.routes[1].rate_limit, "proxy");
        assert_eq!(config.proxy.default_upstream, "http://127.0.0.1:8080");
        let table = crate::proxy::table::RouteTable::build(&config).expect("a good table");
        assert_eq!(table.routes().len(), 3, "two routes and default_upstream's");
    }

    #[test]
    fn proxy_values_are_checked_by_key() {
        let toml = file(
            "[server]\npublic_url = \"https://api.example.com/\"\n\
             [proxy]\nassertion_ttl = \"2h\"\nassertion_header = \"X Bad\"\nstrip_request_headers = [\"ok\", \"no good\"]\n\
             default_upstream = \"ftp://x\"\n\
             [proxy.upstreams.orders]\nurl = \"http://127.0.0.1:8081/base\"\nconnect_timeout = \"0s\"\nmax_body = \"0B\"\n\
             [proxy.upstreams.tls]\nurl = \"http://127.0.0.1:8082\"\nca_file = \"/no/such/ca.pem\"\n\
             [proxy.upstreams.secure]\nurl = \"https://orders.internal\"\nca_file = \"/no/such/ca.pem\"\n\
             [rate_limit.lonely]\nlimit = 1\nwindow = \"1m\"\n\
             [[proxy.routes]]\nid = \"a\"\npath = \"/a\"\nupstream = \"orders\"\n\
             [[proxy.routes]]\nid = \"b\"\npath = \"/b\"\nupstream = \"nowhere\"\n",
        );
        let message = error_of(&ConfigSources { file: Some(toml.path().to_owned()), ..Default::default() });
        for expected in [
            "server.public_url: \"https://api.example.com/\" is not an origin",
            "proxy.assertion_ttl: must be between 1s and 1h",
            "proxy.assertion_header: \"X Bad\" is not a header name",
            "proxy.strip_request_headers[1]: \"no good\" is not a header name",
            "proxy.default_upstream: \"ftp://x\" must start with http:// or https://",
            "proxy.upstreams.orders.url: \"http://127.0.0.1:8081/base\" must be only scheme, host and port",
            "proxy.upstreams.orders.connect_timeout: must be longer than zero",
            "proxy.upstreams.orders.max_body: must be greater than zero",
            "proxy.upstreams.tls.ca_file: only applies to an https:// upstream",
            "proxy.upstreams.secure.ca_file: /no/such/ca.pem does not exist",
            "rate_limit.lonely.paths: a custom group needs at least one path prefix",
            "proxy.routes[1].upstream: no upstream named \"nowhere\"",
        ] {
            assert!(message.contains(expected), "{expected:?} missing in {message}");
        }
    }

    #[test]
    fn a_group_named_by_a_route_needs_no_paths_but_must_exist() {
        let toml = file(
            "[rate_limit.orders]\nstrategy = \"token_bucket\"\nlimit = 5\nwindow = \"1s\"\n\
             [proxy.upstreams.orders]\nurl = \"http://127.0.0.1:8081\"\n\
             [[proxy.routes]]\nid = \"orders\"\npath = \"/orders\"\nupstream = \"orders\"\nrate_limit = \"orders\"\n",
        );
        let config = load(&ConfigSources { file: Some(toml.path().to_owned()), ..Default::default() }).expect("loads");
        assert!(config.rate_limit["orders"].paths.is_empty());

        let toml = file(
            "[proxy.upstreams.orders]\nurl = \"http://127.0.0.1:8081\"\n\
             [[proxy.routes]]\nid = \"orders\"\npath = \"/orders\"\nupstream = \"orders\"\nrate_limit = \"missing\"\n\
             [rate_limit.proxy]\npaths = [\"/x\"]\n",
        );
        let message = error_of(&ConfigSources { file: Some(toml.path().to_owned()), ..Default::default() });
        assert!(message.contains("proxy.routes[0].rate_limit: no rate-limit group named \"missing\""), "{message}");
        assert!(message.contains("rate_limit.proxy.paths: the proxy group applies to proxy routes only"), "{message}");
    }

    #[test]
    fn hs256_tokens_need_an_assertion_key_once_routes_exist() {
        let strong = file("0123456789abcdef0123456789abcdef");
        let hs256 = |extra: &[(&str, &str)]| {
            let mut env = vars(&[
                ("RAMPART_AUTH__JWT_ALGORITHM", "HS256"),
                ("RAMPART_AUTH__SIGNING_KEY_FILE", strong.path().to_str().expect("utf-8 path")),
            ]);
            env.extend(vars(extra));
            ConfigSources { env, ..Default::default() }
        };
        load(&hs256(&[])).expect("no routes: no assertion to sign");
        let message = error_of(&hs256(&[("RAMPART_PROXY__DEFAULT_UPSTREAM", "http://127.0.0.1:8080")]));
        assert!(message.contains("proxy.assertion_key_file: must be set"), "{message}");
        load(&hs256(&[
            ("RAMPART_PROXY__DEFAULT_UPSTREAM", "http://127.0.0.1:8080"),
            ("RAMPART_PROXY__ASSERTION_HEADER", ""),
        ]))
        .expect("the assertion is off");
        let key = file("an EdDSA key would be here");
        load(&hs256(&[
            ("RAMPART_PROXY__DEFAULT_UPSTREAM", "http://127.0.0.1:8080"),
            ("RAMPART_PROXY__ASSERTION_KEY_FILE", key.path().to_str().expect("utf-8 path")),
        ]))
        .expect("a key file is set");
        let message = error_of(&ConfigSources {
            env: vars(&[("RAMPART_PROXY__ASSERTION_KEY_FILE", "/no/such/key.pem")]),
            ..Default::default()
        });
        assert!(message.contains("proxy.assertion_key_file: /no/such/key.pem does not exist"), "{message}");
    }

    #[test]
    fn a_short_hs256_secret_is_refused() {
        let secret = file("too-short-secret");
        let sources = ConfigSources {
            env: vars(&[
                ("RAMPART_AUTH__JWT_ALGORITHM", "HS256"),
                ("RAMPART_AUTH__SIGNING_KEY_FILE", secret.path().to_str().expect("utf-8 path")),
            ]),
            ..Default::default()
        };
        assert!(error_of(&sources).contains("at least 32 bytes"));
        let strong = file("0123456789abcdef0123456789abcdef");
        let sources = ConfigSources {
            env: vars(&[
                ("RAMPART_AUTH__JWT_ALGORITHM", "HS256"),
                ("RAMPART_AUTH__SIGNING_KEY_FILE", strong.path().to_str().expect("utf-8 path")),
                ("RAMPART_SERVER__ENVIRONMENT", "development"),
            ]),
            ..Default::default()
        };
        let config = load(&sources).expect("a 32-byte secret is accepted");
        assert_eq!(config.server.environment, Environment::Development);
    }
}
