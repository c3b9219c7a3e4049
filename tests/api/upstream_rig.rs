//! Rigs for the protect-mode tests, none of which needs Rampart:
//! - `spawn_upstream`: the Node stand-in API of tests/upstream/server.js
//!   (echo, SSE, slow and stalled bodies, cookies and hop-by-hop headers,
//!   assertion checking with jose, websocket echo, a switchable health
//!   check, canned answers for any path, a log of what it received).
//! - `spawn_nginx`: an unprivileged nginx in a temporary directory running
//!   a deploy/ template with @LISTEN@, @RAMPART@ and @UPSTREAM@ filled in.
//!
//! Both are child processes killed when their handle drops; the upstream
//! also exits when its stdin (held by the handle) closes.
#![allow(dead_code)] // the protect-mode tests are the users

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tempfile::TempDir;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The Node stand-in API, listening on 127.0.0.1.
pub struct Upstream {
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts tests/upstream/server.js with these extra environment variables
/// (JWKS_URL, ASSERTION_ISSUER, ASSERTION_AUDIENCE, ASSERTION_HEADER, …).
pub async fn spawn_upstream(env: &[(&str, &str)]) -> Upstream {
    let dir = repo_path("tests/upstream");
    assert!(
        dir.join("node_modules/ws").exists() && dir.join("node_modules/jose").exists(),
        "tests/upstream/node_modules is missing: run `npm ci --prefix tests/upstream`"
    );
    let mut child = Command::new("node")
        .arg(dir.join("server.js"))
        .args(["--port", "0"])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (Node 20 is needed for tests/upstream)");
    let stdout = child.stdout.take().expect("piped stdout");
    // Owned from here on, so a failed assertion still kills it.
    let mut upstream = Upstream { addr: SocketAddr::from(([127, 0, 0, 1], 0)), child };
    let port = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect("read the upstream's stdout");
        assert!(read > 0, "tests/upstream/server.js exited before listening");
        // Keep reading, so it never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let ready: Value = serde_json::from_str(&line).expect("the upstream's first line is JSON");
        ready["listening"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("a port in {\"listening\": …}")
    })
    .await
    .expect("the port reader");
    upstream.addr.set_port(port);
    upstream
}

impl Upstream {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the upstream answers");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("JSON from the upstream")
    }

    /// `GET /healthz` answers 200 when up, 503 when down.
    pub async fn set_health(&self, up: bool) {
        self.control(reqwest::Method::POST, "/control/health", Some(json!({ "up": up }))).await;
    }

    /// How many times `GET /healthz` was called.
    pub async fn health_checks(&self) -> u64 {
        self.control(reqwest::Method::GET, "/control/health", None).await["checks"].as_u64().unwrap_or(0)
    }

    /// Where `/verify` fetches keys and what it requires (None: not checked),
    /// for a test that starts Rampart after its upstream.
    pub async fn configure_assertion(&self, jwks_url: &str, issuer: Option<&str>, audience: Option<&str>) {
        let settings =
            json!({ "jwks_url": jwks_url, "issuer": issuer.unwrap_or(""), "audience": audience.unwrap_or("") });
        self.control(reqwest::Method::POST, "/control/assertion", Some(settings)).await;
    }

    /// From now on `path` (exact, any method and query) answers `status`
    /// with these headers and body: e.g. a stand-in for Rampart's
    /// `/auth/forward` in front of nginx.
    pub async fn set_canned(&self, path: &str, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers: serde_json::Map<String, Value> =
            headers.iter().map(|(name, value)| ((*name).to_owned(), Value::from(*value))).collect();
        let canned = json!({ "path": path, "status": status, "headers": headers, "body": body });
        self.control(reqwest::Method::POST, "/control/canned", Some(canned)).await;
    }

    /// The last 100 requests it served (not /control/ ones), oldest first:
    /// `{method, url, headers}`, header names lower-case, a repeated header
    /// an array.
    pub async fn received(&self) -> Vec<Value> {
        let log = self.control(reqwest::Method::GET, "/control/requests", None).await;
        log["recent"].as_array().cloned().unwrap_or_default()
    }

    pub async fn clear_received(&self) {
        self.control(reqwest::Method::DELETE, "/control/requests", None).await;
    }
}

/// An nginx process serving a deploy/ template; killed on drop.
pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn nginx_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("NGINX") {
        return Some(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.exists() {
        return Some(debian);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("nginx")).find(|path| path.exists()))
}

/// Runs nginx with `template` (a path from the repository root, e.g.
/// "deploy/nginx/rampart-forward-auth.conf": an http-level file) inside
/// deploy/nginx/nginx.conf.test-wrapper, on a free loopback port. `None`
/// (the test then skips) only when nginx is missing outside CI.
pub async fn spawn_nginx(template: &str, rampart: SocketAddr, upstream: SocketAddr) -> Option<Nginx> {
    let Some(binary) = nginx_binary() else {
        assert!(!ci(), "CI=true but nginx is missing (.ci/run installs Debian's nginx)");
        eprintln!("skipped: needs nginx (apt-get install nginx)");
        return None;
    };
    let site = std::fs::read_to_string(repo_path(template)).unwrap_or_else(|e| panic!("read {template}: {e}"));
    let wrapper =
        std::fs::read_to_string(repo_path("deploy/nginx/nginx.conf.test-wrapper")).expect("the nginx wrapper");

    // The port is free when checked and may be taken before nginx binds it:
    // then nginx exits at once, and another port is tried.
    let mut log = String::new();
    for _ in 0..5 {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = site
            .replace("@LISTEN@", &addr.to_string())
            .replace("@RAMPART@", &rampart.to_string())
            .replace("@UPSTREAM@", &upstream.to_string());
        std::fs::write(dir.path().join("nginx.conf"), &wrapper).expect("write nginx.conf");
        std::fs::write(dir.path().join("site.conf"), config).expect("write site.conf");
        let log_path = dir.path().join("nginx.log");
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("create nginx.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
        let mut nginx = Nginx { addr, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while nginx.child.try_wait().expect("nginx status").is_none() && Instant::now() < deadline {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Some(nginx);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(log.contains("Address already in use"), "nginx did not start with {template}:\n{log}");
    }
    panic!("nginx found no free port:\n{log}");
}

/// The Python interpreter that has PyJWT for tests/upstream/verify_assertion.py:
/// `ASSERTION_VERIFIER_PYTHON` (.ci/run sets it from
/// `bash tests/upstream/install-python.sh`). `None` (the test then skips)
/// only when unset outside CI.
pub fn python_verifier() -> Option<PathBuf> {
    match std::env::var_os("ASSERTION_VERIFIER_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None => {
            assert!(!ci(), "CI=true but ASSERTION_VERIFIER_PYTHON is unset (.ci/run sets it)");
            eprintln!("skipped: needs ASSERTION_VERIFIER_PYTHON=$(bash tests/upstream/install-python.sh)");
            None
        }
    }
}

/// Checks `assertion` with PyJWT against the keys at `jwks_url` (typ
/// rampart-assertion+jwt, EdDSA/ES256/RS256, unexpired; issuer and audience
/// when given): the claims, or PyJWT's reason.
pub async fn verify_with_python(
    python: &Path,
    jwks_url: &str,
    assertion: &str,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<Value, String> {
    let mut command = Command::new(python);
    command.arg(repo_path("tests/upstream/verify_assertion.py")).args([jwks_url, assertion]);
    if let Some(issuer) = issuer {
        command.args(["--issuer", issuer]);
    }
    if let Some(audience) = audience {
        command.args(["--audience", audience]);
    }
    // Blocking, off the runtime, so a JWKS server on this runtime can answer.
    let output = tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output())
        .await
        .expect("the verifier thread")
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("claims as JSON"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_upstream_echoes_requests_byte_for_byte_and_streams_events() {
    let upstream = spawn_upstream(&[]).await;
    let client = reqwest::Client::new();

    let echo: Value = client
        .post(format!("{}/a%2Fb/%61?x=1&x=%20", upstream.url()))
        .header("X-Twice", "1")
        .header("X-Twice", "2")
        .body("hello")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["url"], "/a%2Fb/%61?x=1&x=%20");
    assert_eq!(echo["path"], "/a%2Fb/%61");
    assert_eq!(echo["query"], "x=1&x=%20");
    assert_eq!(echo["headers"]["x-twice"], json!(["1", "2"]));
    assert_eq!(echo["body_length"], 5);
    // SHA-256 of "hello".
    assert_eq!(echo["body_sha256"], "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_eq!(upstream.received().await.last().unwrap()["url"], "/a%2Fb/%61?x=1&x=%20");

    // Events arrive as they are written, not all at the end: the first and
    // the last (two 500 ms intervals apart) arrive well apart.
    let mut stream = client.get(format!("{}/sse?count=3&interval_ms=500", upstream.url())).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        arrivals.push(Instant::now());
    }
    assert_eq!(text.matches("data: ").count(), 3, "{text}");
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(spread >= Duration::from_millis(600), "the events came together: {spread:?} apart");

    upstream.set_health(false).await;
    let health = client.get(format!("{}/healthz", upstream.url())).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(upstream.health_checks().await, 1);
}

/// The forward-auth template, with the Node upstream as both the app and a
/// stand-in for Rampart's /auth/forward (canned answers): what nginx sends
/// each side and how it maps the answers, without Rampart.
#[tokio::test]
async fn nginx_forward_auth_template_copies_identity_and_maps_denials() {
    let upstream = spawn_upstream(&[]).await;
    let Some(nginx) = spawn_nginx("deploy/nginx/rampart-forward-auth.conf", upstream.addr, upstream.addr).await else {
        return;
    };
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let identity = [("X-Rampart-User-Id", "user-1"), ("X-Rampart-Role", "admin"), ("X-Rampart-Auth", "session")];
    upstream.set_canned("/auth/forward", 200, &identity, "").await;

    let echo: Value = client
        .post(format!("{}/orders/7?x=1", nginx.url()))
        .header("X-Rampart-User-Id", "forged")
        .header("Cookie", "app=1; rampart_session=secret; rampart_csrf=c")
        .body("a body for the app only")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["url"], "/orders/7?x=1");
    assert_eq!(echo["headers"]["x-rampart-user-id"], "user-1");
    assert_eq!(echo["headers"]["x-rampart-role"], "admin");
    assert_eq!(echo["headers"]["cookie"], "app=1");
    assert_eq!(echo["body_length"], 23);
    let received = upstream.received().await;
    let asked = received.iter().find(|r| r["url"] == "/auth/forward").expect("nginx asked /auth/forward");
    assert_eq!(asked["headers"]["x-original-uri"], "/orders/7?x=1");
    assert_eq!(asked["headers"]["x-original-method"], "POST");
    assert_eq!(asked["headers"]["cookie"], "app=1; rampart_session=secret; rampart_csrf=c");
    assert!(asked["headers"].get("content-length").is_none(), "the body went to the auth endpoint: {asked}");

    let limited = [("Retry-After", "7"), ("RateLimit", "\"proxy\";r=0;t=7")];
    upstream.set_canned("/auth/forward", 429, &limited, "").await;
    let response = client.get(format!("{}/orders", nginx.url())).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["ratelimit"], "\"proxy\";r=0;t=7");

    upstream.set_canned("/auth/forward", 401, &[("Location", "/login?next=%2Forders")], "").await;
    let response = client.get(format!("{}/orders", nginx.url())).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login?next=%2Forders");

    upstream.set_canned("/auth/forward", 404, &[], "").await;
    let response = client.get(format!("{}/nowhere", nginx.url())).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_python_verifier_refuses_what_is_not_a_signed_assertion() {
    let Some(python) = python_verifier() else {
        return;
    };
    // No JWKS is fetched for a token that does not even parse.
    let refused = verify_with_python(&python, "http://127.0.0.1:9/jwks.json", "not.a.jwt", None, None).await;
    assert!(refused.unwrap_err().contains("invalid: DecodeError"));
}
