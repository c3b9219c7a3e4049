//! `spawn_app()`: a real server on random loopback ports with its own
//! SQLite database, cheap password hashing and a private log buffer.
//!
//! The server runs on its own thread and runtime with a thread-local log
//! subscriber, so each test sees exactly its own server's log lines.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::Router;
use rampart::{
    accounts::{AccountRequest, create_account},
    app::{self, AppState},
    clock::{Clock, SystemClock},
    config::{Config, PasswordHashConfig},
    domain::{Email, Role},
    policy::Authorizer,
    proxy::Gateway,
    server::Server,
    store,
    telemetry::RedactingLayer,
};
use reqwest::{Method, header::HeaderMap};
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tracing_subscriber::layer::SubscriberExt;

/// Text that must never appear in a response body: hashes, keys, seeded
/// passwords, internals.
const SECRET_MARKERS: [&str; 8] =
    ["$argon2", "PRIVATE KEY", "password_hash", "signing_key", "panicked", "src/", SEED_PASSWORD, "csrf_hash"];

#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub admin_address: SocketAddr,
    pub users: Seeded,
    /// The running server's policy engine, to trigger reloads.
    pub authorizer: Arc<Authorizer>,
    /// The running server's protect-mode gateway, to reload routes.
    pub gateway: Arc<Gateway>,
    pub client: reqwest::Client,
    pub logs: LogBuffer,
    _data_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ascii header"))
    }

    /// Asserts an RFC 9457 body with every member and this status.
    pub fn assert_problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let json = self.json();
        for member in ["type", "title", "status", "detail", "request_id"] {
            assert!(json.get(member).is_some(), "problem lacks {member}: {}", self.body);
        }
        assert_eq!(json["status"], status);
        assert_eq!(json["request_id"].as_str(), self.header("x-request-id"), "body and header ids differ");
        json
    }
}

/// Configuration for a test server: random ports, a fresh database in a
/// temporary folder, cheap Argon2.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::defaults();
    config.server.bind = "127.0.0.1:0".parse().expect("addr");
    config.server.admin_bind = "127.0.0.1:0".parse().expect("addr");
    config.server.data_dir = dir.path().to_owned();
    config.database.url = SecretString::from(format!("sqlite://{}/rampart.db", dir.path().display()));
    config.auth.password_hash = PasswordHashConfig { memory_kib: 64, iterations: 1, parallelism: 1, max_concurrent: 4 };
    // Suites send many requests from one address; the rate-limit tests
    // set real limits themselves.
    for group in config.rate_limit.values_mut() {
        group.limit = 1_000_000;
    }
    // Test harnesses send bad requests on purpose (API.md); the defence
    // tests turn it back on.
    config.defense.enabled = false;
    config
}

pub struct SpawnOptions {
    pub config: Config,
    pub extra_routes: Router<AppState>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub json_logs: bool,
    pub clock: Arc<dyn Clock>,
    /// Create the four seeded users (off for a second instance on a shared
    /// database, which finds them there instead).
    pub seed: bool,
}

/// A seeded account: every test server has one of each.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: uuid::Uuid,
    pub email: String,
    pub password: String,
}

pub struct Seeded {
    pub admin: TestUser,
    pub manager: TestUser,
    pub user: TestUser,
    pub other: TestUser,
}

/// (email, name, role, department) of the seeded accounts.
const SEEDS: [(&str, &str, Role, Option<&str>); 4] = [
    ("admin@example.com", "Ada Admin", Role::Admin, None),
    ("manager@example.com", "Max Manager", Role::Manager, Some("sales")),
    ("user@example.com", "Uma User", Role::User, Some("sales")),
    ("other@example.com", "Olaf Other", Role::User, Some("support")),
];
pub const SEED_PASSWORD: &str = "seeded account passphrase";

/// A loopback port free a moment ago (for a server the test starts and
/// stops at will).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut SpawnOptions)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = SpawnOptions {
        config: test_config(&dir),
        extra_routes: crate::test_routes::router(),
        tls: None,
        json_logs: true,
        clock: Arc::new(SystemClock),
        seed: true,
    };
    adjust(&mut options);
    start(dir, options).await
}

async fn start(dir: TempDir, options: SpawnOptions) -> TestApp {
    let logs = LogBuffer::default();
    let (ready_tx, ready_rx) =
        oneshot::channel::<(SocketAddr, SocketAddr, Vec<TestUser>, Arc<Authorizer>, Arc<Gateway>)>();
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let writer = logs.clone();
    let thread = std::thread::spawn(move || {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("debug"))
            .with(RedactingLayer::new(options.json_logs, move || writer.clone()));
        let _guard = tracing::subscriber::set_default(subscriber);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let config = Arc::new(options.config);
            let store = store::open(&config.database).await.expect("store opens");
            store.migrate().await.expect("migrations apply");
            let tls = options.tls;
            let state = AppState::build(config.clone(), store, options.clock, tls.is_some()).await.expect("state");
            let mut seeded = Vec::new();
            for (email, name, role, department) in SEEDS {
                if !options.seed {
                    let email = Email::parse(email).expect("email");
                    let found =
                        state.store.credentials_by_email(&email).await.expect("lookup").expect("seeded elsewhere");
                    seeded.push(TestUser {
                        id: found.user.id,
                        email: email.as_str().to_owned(),
                        password: SEED_PASSWORD.to_owned(),
                    });
                    continue;
                }
                let request = AccountRequest {
                    email,
                    name,
                    password: SecretString::from(SEED_PASSWORD),
                    role,
                    department: department.map(str::to_owned),
                    // Made as the CLI makes accounts: the address is vouched for.
                    email_verified: true,
                };
                let user = create_account(&*state.store, &state.hasher, request).await.expect("seed user");
                seeded.push(TestUser { id: user.id, email: email.to_owned(), password: SEED_PASSWORD.to_owned() });
            }
            let server = Server::bind(&config).await.expect("bind");
            let gateway = state.gateway.clone();
            let _ = ready_tx.send((
                server.public_addr(),
                server.admin_addr(),
                seeded,
                state.authorizer.clone(),
                gateway.clone(),
            ));
            let public = app::router_with(state.clone(), options.extra_routes);
            let admin = app::admin_router(state);
            server
                .run(public, admin, tls, async move {
                    let _ = shutdown_rx.await;
                    gateway.shut_down();
                })
                .await
                .expect("server runs");
        });
    });
    let (address, admin_address, seeded, authorizer, gateway) = ready_rx.await.expect("server started");
    let mut seeded = seeded.into_iter();
    let mut next = || seeded.next().expect("four seeded users");
    let users = Seeded { admin: next(), manager: next(), user: next(), other: next() };
    TestApp {
        address,
        admin_address,
        users,
        authorizer,
        gateway,
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
        logs,
        _data_dir: dir,
        shutdown: Some(shutdown_tx),
        thread: Some(thread),
    }
}

impl TestApp {
    /// Signs in with a password and returns the token response.
    pub async fn login(&self, email: &str, password: &str) -> serde_json::Value {
        let response = self.post_json("/auth/login", &serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(response.status, 200, "login failed: {}", response.body);
        response.json()
    }

    /// An access token for a seeded user.
    pub async fn token_for(&self, user: &TestUser) -> String {
        self.login(&user.email, &user.password).await["access_token"].as_str().expect("token").to_owned()
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> TestResponse {
        self.send(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    /// Makes an API key with `scopes` for the bearer of `token`: (id, key).
    pub async fn api_key(&self, token: &str, scopes: &[&str]) -> (String, String) {
        let request = self
            .client
            .post(self.url("/api/profile/api-keys"))
            .bearer_auth(token)
            .json(&serde_json::json!({"name": "test key", "scopes": scopes}));
        let created = self.send(request).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let json = created.json();
        (json["id"].as_str().expect("id").to_owned(), json["key"].as_str().expect("key").to_owned())
    }

    /// The audit events the server logged so far (JSON log lines).
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        self.logs
            .contents()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["target"] == "rampart::audit")
            .collect()
    }

    /// The server's `server.data_dir` (mail without SMTP lands in `outbox/`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    /// The development signing key the server generated, for forging tokens.
    pub fn signing_key_pem(&self) -> Vec<u8> {
        std::fs::read(self._data_dir.path().join("signing-key.pem")).expect("dev signing key")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn request(&self, method: Method, path: &str) -> TestResponse {
        self.send(self.client.request(method, self.url(path))).await
    }

    /// Sends and reads the whole response, asserting it leaks nothing.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        read(request.send().await.expect("request sent")).await
    }

    /// Stops the server and waits until it has drained.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn read(response: reqwest::Response) -> TestResponse {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body read");
    assert_no_secrets(&body);
    TestResponse { status, headers, body }
}

/// The shared guard every response passes: no hashes, keys or internals.
pub fn assert_no_secrets(body: &str) {
    for marker in SECRET_MARKERS {
        assert!(!body.contains(marker), "response body contains {marker:?}: {body}");
    }
}
