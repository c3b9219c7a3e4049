//! The `rampart` binary itself: configuration checks, key generation, user
//! creation, and a full serve → request → SIGTERM cycle.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::helpers::assert_no_secrets;

/// The binary with a clean slate: a temporary working directory (no stray
/// rampart.toml or .env) and no inherited RAMPART_ variables.
pub fn rampart(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rampart"));
    command.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("RAMPART_") {
            command.env_remove(key);
        }
    }
    command
}

pub fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("rampart.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub const CHEAP_HASH: &str = "[auth.password_hash]\nmemory_kib = 64\niterations = 1\n";

#[test]
fn config_check_names_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "[server]\nbnid = \"127.0.0.1:3000\"\n");
    let output = rampart(dir.path()).args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("server.bnid: unknown key"), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"));
}

#[test]
fn config_check_names_a_bad_duration() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "[auth]\naccess_token_ttl = \"fifteen minutes\"\n");
    let output = rampart(dir.path()).args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("auth.access_token_ttl"), "{}", stderr(&output));
}

#[test]
fn config_check_refuses_production_without_tls_or_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "placeholder").unwrap();
    let file = write_config(
        dir.path(),
        &format!("[server]\nenvironment = \"production\"\n[auth]\nsigning_key_file = \"{}\"\n", key.display()),
    );
    let output = rampart(dir.path()).args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("server.environment: production needs"), "{}", stderr(&output));
}

#[test]
fn config_check_passes_a_good_file_and_reads_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "[server]\nbind = \"127.0.0.1:4000\"\nbody_limit = \"20KiB\"\n");
    let output = rampart(dir.path()).args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration OK"));

    // ./rampart.toml is found without --config; a bad variable overrides it.
    let output = rampart(dir.path())
        .args(["config", "check"])
        .env("RAMPART_SERVER__HEADER_READ_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("server.header_read_timeout"), "{}", stderr(&output));
    assert!(stderr(&output).contains("RAMPART_SERVER__HEADER_READ_TIMEOUT"), "{}", stderr(&output));
}

#[test]
fn config_check_names_every_broken_route() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        "[proxy.upstreams.orders]\nurl = \"http://127.0.0.1:8081\"\n\
         [[proxy.routes]]\nid = \"orders\"\npath = \"/orders\"\nupstream = \"orders\"\n\
         [[proxy.routes]]\nid = \"people\"\npath = \"/people\"\nupstream = \"people\"\n\
         [[proxy.routes]]\nid = \"orders\"\npath = \"/orders2\"\nupstream = \"orders\"\n\
         [[proxy.routes]]\nid = \"sneaky\"\npath = \"/auth/x\"\nupstream = \"orders\"\n\
         [[proxy.routes]]\nid = \"slow\"\npath = \"/slow\"\nupstream = \"orders\"\nmethods = [\"GET\"]\n\
         [[proxy.routes]]\nid = \"slow-too\"\npath = \"/SLOW\"\nupstream = \"orders\"\nmethods = [\"HEAD\"]\n",
    );
    let output = rampart(dir.path()).args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    for expected in [
        "proxy.routes[1].upstream: no upstream named \"people\"",
        "proxy.routes[2].id: \"orders\" is also the id of proxy.routes[0]",
        "proxy.routes[3].path: \"/auth/x\" lies under Rampart's own \"/auth\"",
        "proxy.routes[5]: matches the same requests as proxy.routes[4]",
    ] {
        assert!(message.contains(expected), "{expected:?} missing in {message}");
    }
    assert!(!message.contains("panicked"));

    // The fixed table passes.
    let file = write_config(
        dir.path(),
        "[proxy]\ndefault_upstream = \"http://127.0.0.1:8080\"\n[proxy.upstreams.orders]\nurl = \"http://127.0.0.1:8081\"\n\
         [[proxy.routes]]\nid = \"orders\"\npath = \"/orders\"\nupstream = \"orders\"\nauth = \"public\"\n",
    );
    let output = rampart(dir.path()).args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn serve_upstream_is_checked_like_the_configuration_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = rampart(dir.path()).args(["serve", "--upstream", "ftp://127.0.0.1:8080"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("proxy.default_upstream: \"ftp://127.0.0.1:8080\""), "{}", stderr(&output));
    // It stands above the file: a good file does not hide a bad option.
    let file = write_config(dir.path(), "[proxy]\ndefault_upstream = \"http://127.0.0.1:8080\"\n");
    let output =
        rampart(dir.path()).args(["serve", "--upstream", "http://x/base", "--config"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("proxy.default_upstream: \"http://x/base\""), "{}", stderr(&output));
}

#[test]
fn keys_generate_prints_a_pkcs8_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = rampart(dir.path()).args(["keys", "generate"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("-----BEGIN PRIVATE KEY-----"));
    let output = rampart(dir.path()).args(["keys", "generate", "--alg", "HS256"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).trim().len() >= 32);
}

#[test]
fn user_create_applies_the_password_rules_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), CHEAP_HASH);
    let create = |password: &str, email: &str| {
        rampart(dir.path())
            .args(["user", "create", "--email", email, "--name", "Ada", "--role", "admin"])
            .env("RAMPART_PASSWORD", password)
            .output()
            .unwrap()
    };
    let weak = create("short", "ada@example.com");
    assert_eq!(weak.status.code(), Some(1));
    assert!(stderr(&weak).contains("--password: must be at least 15 characters"), "{}", stderr(&weak));

    let created = create("violet pancake orbit seven", "ada@example.com");
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(String::from_utf8_lossy(&created.stdout).contains("created admin ada@example.com"));
    assert!(dir.path().join("data/rampart.db").exists(), "the default database under data/");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the data folder is private");
    }

    let again = create("violet pancake orbit seven", "ADA@example.com");
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"), "emails compare without case: {}", stderr(&again));

    let via_stdin = {
        let mut child = rampart(dir.path())
            .args(["user", "create", "--email", "bob@example.com", "--name", "Bob", "--role", "user"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"another long enough passphrase\n").unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(via_stdin.status.success(), "{}", stderr(&via_stdin));

    // The operator vouches for the addresses they type: both count as proven.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use rampart::store::UserStore;
        let url = format!("sqlite://{}", dir.path().join("data/rampart.db").display());
        let store = rampart::store::SqliteStore::connect(&url, 1).await.unwrap();
        for email in ["ada@example.com", "bob@example.com"] {
            let email = rampart::domain::Email::parse(email).unwrap();
            let found = store.credentials_by_email(&email).await.unwrap().unwrap();
            assert!(found.user.email_verified, "{email:?}");
        }
    });
}

/// Lines the child printed so far, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(line) = self.0.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no line with {needle:?} in {:?}", self.0.lock().unwrap());
    }

    fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

fn address_after<'a>(line: &'a str, marker: &str) -> &'a str {
    let start = line.find(marker).unwrap() + marker.len();
    let rest = &line[start..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == ':')).unwrap_or(rest.len());
    &rest[..end]
}

/// A `rampart serve` child with its stdout collected line by line.
pub struct Served {
    child: std::process::Child,
    pub lines: Lines,
    reader: Option<std::thread::JoinHandle<()>>,
    pub public: String,
    pub admin: String,
}

impl Served {
    pub fn start(dir: &Path, config: &Path) -> Self {
        let mut child = rampart(dir)
            .args(["serve", "--config"])
            .arg(config)
            .env("RAMPART_BOOTSTRAP__ADMIN_PASSWORD", "bootstrap secret passphrase")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Lines::default();
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.0.lock().unwrap().push(line);
            }
        });
        let listening = lines.wait_for("listening on");
        let public = address_after(&listening, "http://").to_owned();
        let admin = address_after(&listening, "metrics on http://").to_owned();
        Self { child, lines, reader: Some(reader), public, admin }
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }

    /// SIGKILL: the process ends at once, mid-write if it was writing.
    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn served_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "{CHEAP_HASH}[server]\nbind = \"127.0.0.1:0\"\nadmin_bind = \"127.0.0.1:0\"\n\
             [log]\nformat = \"json\"\n[bootstrap]\nadmin_email = \"root@example.com\"\n{extra}"
        ),
    )
}

#[tokio::test]
async fn serve_runs_bootstraps_an_admin_logs_json_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = served_config(dir.path(), "");
    let served = Served::start(dir.path(), &config);
    let (public, admin) = (served.public.clone(), served.admin.clone());
    served.lines.wait_for("created the bootstrap admin");

    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{public}/health"))
        .header("authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2VjcmV0LXNpZw")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    let body = health.text().await.unwrap();
    assert_no_secrets(&body);
    assert_eq!(client.get(format!("http://{public}/metrics")).send().await.unwrap().status(), 404);
    let scrape = client.get(format!("http://{admin}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().contains("rampart_http_requests_total"));
    served.lines.wait_for("\"route\":\"/health\"");
    // The bootstrap admin's address is vouched for by the operator.
    let login = client
        .post(format!("http://{public}/auth/login"))
        .json(&serde_json::json!({"email": "root@example.com", "password": "bootstrap secret passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let login: serde_json::Value = login.json().await.unwrap();
    assert_eq!(login["user"]["email_verified"], true, "{login}");

    let lines = served.lines.clone();
    let status = served.stop();
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");

    let output = lines.all();
    for line in output.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "every line is JSON: {line}");
    }
    assert!(!output.contains("bootstrap secret passphrase"));
    assert!(!output.contains("c2VjcmV0LXNpZw"), "the bearer token never reaches the log");
    assert!(output.contains("shutting down"));
}

const BROKEN_POLICY: &str =
    "permit (principal, action, resource);\n\nforbid (principal, action, resource) when { principal.rank > 3 };\n";

#[test]
fn a_broken_policy_stops_the_start_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("broken.cedar");
    std::fs::write(&policy, BROKEN_POLICY).unwrap();
    let config = served_config(dir.path(), &format!("[policy]\nfile = \"{}\"\n", policy.display()));

    let check = rampart(dir.path()).args(["config", "check", "--config"]).arg(&config).output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    let expected = format!("{}:3:", policy.display());
    assert!(stderr(&check).contains(&expected), "{}", stderr(&check));

    let serve = rampart(dir.path()).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert_eq!(serve.status.code(), Some(1));
    assert!(stderr(&serve).contains(&expected), "{}", stderr(&serve));
    assert!(!stderr(&serve).contains("panicked"));
}

#[tokio::test]
async fn sighup_reloads_a_valid_policy_and_keeps_the_old_one_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.cedar");
    std::fs::write(&policy, rampart::policy::DEFAULT_POLICY).unwrap();
    let config = served_config(dir.path(), &format!("[policy]\nfile = \"{}\"\n", policy.display()));
    let served = Served::start(dir.path(), &config);
    served.lines.wait_for("created the bootstrap admin");
    let client = reqwest::Client::new();
    let login = client
        .post(format!("http://{}/auth/login", served.public))
        .json(&serde_json::json!({"email": "root@example.com", "password": "bootstrap secret passphrase"}))
        .send()
        .await
        .unwrap();
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let dashboard = || client.get(format!("http://{}/api/admin/dashboard", served.public)).bearer_auth(&token).send();
    assert_eq!(dashboard().await.unwrap().status(), 200);

    // Without its last rule, the default policy no longer lets admins in.
    let without_admins = rampart::policy::DEFAULT_POLICY.split("// Admins may do everything.").next().unwrap();
    std::fs::write(&policy, without_admins).unwrap();
    served.signal("HUP");
    served.lines.wait_for("policy reloaded");
    assert_eq!(dashboard().await.unwrap().status(), 403);

    std::fs::write(&policy, BROKEN_POLICY).unwrap();
    served.signal("HUP");
    served.lines.wait_for("policy reload refused");
    assert_eq!(dashboard().await.unwrap().status(), 403, "the last valid policy stays in force");
    assert!(served.stop().success());
}

#[tokio::test]
async fn sighup_reloads_the_proxy_routes_and_keeps_them_when_the_new_table_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    // An upstream nobody listens on: a routed path answers 502, an unrouted one 404.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let upstream = format!("[proxy.upstreams.app]\nurl = \"http://{closed}\"\n");
    let route = |id: &str, upstream: &str| {
        format!("[[proxy.routes]]\nid = \"{id}\"\npath = \"/{id}\"\nupstream = \"{upstream}\"\nauth = \"public\"\n")
    };
    let config = served_config(dir.path(), &format!("{upstream}{}", route("a", "app")));
    let served = Served::start(dir.path(), &config);
    served.lines.wait_for("created the bootstrap admin");
    let client = reqwest::Client::new();
    let status = |path: &'static str| {
        let client = client.clone();
        let public = served.public.clone();
        async move { client.get(format!("http://{public}{path}")).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/a").await, 502);
    assert_eq!(status("/b").await, 404);

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}{}", route("b", "app"))).unwrap();
    served.signal("HUP");
    served.lines.wait_for("proxy routes reloaded");
    assert_eq!(status("/b").await, 502, "the new route serves");

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}{}", route("c", "missing"))).unwrap();
    served.signal("HUP");
    let refusal = served.lines.wait_for("reload refused; the previous routes stay in force");
    assert!(refusal.contains("proxy.routes[2].upstream"), "{refusal}");
    assert_eq!(status("/b").await, 502, "the last valid table stays in force");
    assert_eq!(status("/c").await, 404);
    assert!(served.stop().success());
}

/// A key's last use survives a graceful restart (written at shutdown, not
/// only by the 30-second batch), and the key itself never reaches a log
/// line of the real process.
#[tokio::test]
async fn an_api_keys_last_use_is_written_at_shutdown_and_the_key_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let config = served_config(dir.path(), "");
    let client = reqwest::Client::new();
    let credentials = serde_json::json!({"email": "root@example.com", "password": "bootstrap secret passphrase"});
    let token = |public: String| {
        let (client, credentials) = (client.clone(), credentials.clone());
        async move {
            let login = client.post(format!("http://{public}/auth/login")).json(&credentials).send().await.unwrap();
            login.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        }
    };

    let served = Served::start(dir.path(), &config);
    let public = served.public.clone();
    let admin_token = token(public.clone()).await;
    let created = client
        .post(format!("http://{public}/api/profile/api-keys"))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({"name": "restart", "scopes": ["profile:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let key = created.json::<serde_json::Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    let used = client.get(format!("http://{public}/api/profile")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(used.status(), 200);
    served.lines.wait_for("\"route\":\"/api/profile\"");
    let logged = served.lines.all();
    // rk_<id>_<secret>; the secret's base64url may itself hold '_'.
    let secret = key.splitn(3, '_').nth(2).unwrap();
    assert!(!logged.contains(&key) && !logged.contains(secret), "{logged}");
    assert!(served.stop().success());

    let served = Served::start(dir.path(), &config);
    let public = served.public.clone();
    let admin_token = token(public.clone()).await;
    let listed: serde_json::Value = client
        .get(format!("http://{public}/api/profile/api-keys"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed["items"][0]["last_used_at"].is_string(), "{listed}");
    assert!(served.stop().success());
}
