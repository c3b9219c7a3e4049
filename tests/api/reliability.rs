//! Reliability under faults (the promises that need a real process to
//! break): a `rampart serve` killed with SIGKILL in the middle of a stream
//! of writes (sign-ups, posts, refresh rotations, API keys) loses none it
//! acknowledged, and shows nothing half-written after a restart, on SQLite
//! and on PostgreSQL.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    cli::{CHEAP_HASH, Served, write_config},
    connections::connect_from,
};

const ADMIN_EMAIL: &str = "root@example.com";
/// `Served::start` gives the bootstrap admin this password.
const ADMIN_PASSWORD: &str = "bootstrap secret passphrase";

/// What the writers were told succeeded.
#[derive(Default)]
struct Acknowledged {
    signups: Vec<String>,
    posts: Vec<(String, String)>,
    /// API keys whose creation was answered 201 in full.
    api_keys: Vec<String>,
    /// Each writer's refresh chain: the last token a rotation handed out.
    chains: Vec<Chain>,
}

impl Acknowledged {
    fn writes(&self) -> usize {
        self.signups.len()
            + self.posts.len()
            + self.api_keys.len()
            + self.chains.iter().map(|c| c.rotations).sum::<usize>()
    }
}

struct Chain {
    latest: String,
    rotations: usize,
    /// A rotation was sent and never answered: the server may have
    /// committed it, so `latest` may be spent (and its use counts as reuse).
    unsettled: bool,
}

async fn login(client: &reqwest::Client, base: &str) -> Value {
    let login = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    login.json::<Value>().await.unwrap()
}

async fn admin_token(client: &reqwest::Client, base: &str) -> String {
    login(client, base).await["access_token"].as_str().unwrap().to_owned()
}

/// Writes sign-ups, posts, refresh rotations and API keys from one of four
/// clients until the server stops answering; records each 2xx.
async fn write_until_killed(base: String, token: String, acknowledged: Arc<Mutex<Acknowledged>>, writer: usize) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for n in 0.. {
        let email = format!("crash-{writer}-{n}@example.com");
        let signup = client
            .post(format!("{base}/auth/signup"))
            .json(&json!({"email": email, "password": "violet pancake orbit nine", "name": "Crash Test"}))
            .send()
            .await;
        match signup {
            Ok(response) if response.status() == 201 => acknowledged.lock().unwrap().signups.push(email),
            Ok(response) => assert!(response.status().is_server_error(), "{}", response.status()),
            Err(_) => return,
        }
        let title = format!("crash {writer} {n}");
        let post = client
            .post(format!("{base}/api/posts"))
            .bearer_auth(&token)
            .json(&json!({"title": title, "body": "written before the crash"}))
            .send()
            .await;
        match post {
            Ok(response) if response.status() == 201 => {
                let id = response.json::<Value>().await.map(|body| body["id"].as_str().unwrap_or_default().to_owned());
                // An answer cut mid-body was never acknowledged.
                if let Ok(id) = id {
                    acknowledged.lock().unwrap().posts.push((id, title));
                }
            }
            Ok(response) => assert!(response.status().is_server_error(), "{}", response.status()),
            Err(_) => return,
        }
        let latest = acknowledged.lock().unwrap().chains[writer].latest.clone();
        let rotation = client.post(format!("{base}/auth/refresh")).json(&json!({"refresh_token": latest})).send().await;
        let rotated = match rotation {
            Ok(response) if response.status() == 200 => response.json::<Value>().await.ok(),
            Ok(response) => {
                assert!(response.status().is_server_error(), "{}", response.status());
                None
            }
            Err(_) => None,
        };
        {
            let mut acknowledged = acknowledged.lock().unwrap();
            let chain = &mut acknowledged.chains[writer];
            match rotated {
                Some(body) => {
                    chain.latest = body["refresh_token"].as_str().unwrap().to_owned();
                    chain.rotations += 1;
                }
                None => {
                    chain.unsettled = true;
                    return;
                }
            }
        }
        let created = client
            .post(format!("{base}/api/profile/api-keys"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("crash {writer} {n}"), "scopes": ["posts:read"]}))
            .send()
            .await;
        match created {
            Ok(response) if response.status() == 201 => {
                if let Ok(body) = response.json::<Value>().await {
                    acknowledged.lock().unwrap().api_keys.push(body["key"].as_str().unwrap().to_owned());
                }
            }
            Ok(response) => assert!(response.status().is_server_error(), "{}", response.status()),
            Err(_) => return,
        }
    }
}

/// Starts the server, writes from four clients, kills it with SIGKILL once
/// `before_kill` writes were acknowledged, restarts it, and checks every
/// acknowledged write. Returns (acknowledged, found) counts.
async fn kill_during_writes(dir: &Path, config: &Path, before_kill: usize) -> (Acknowledged, Value) {
    let served = Served::start(dir, config);
    let base = format!("http://{}", served.public);
    let client = reqwest::Client::new();
    let token = admin_token(&client, &base).await;
    let mut chains = Vec::new();
    for _ in 0..4 {
        let latest = login(&client, &base).await["refresh_token"].as_str().unwrap().to_owned();
        chains.push(Chain { latest, rotations: 0, unsettled: false });
    }
    let acknowledged = Arc::new(Mutex::new(Acknowledged { chains, ..Acknowledged::default() }));
    let writers: Vec<_> = (0..4)
        .map(|writer| tokio::spawn(write_until_killed(base.clone(), token.clone(), acknowledged.clone(), writer)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = acknowledged.lock().unwrap().writes();
        if done >= before_kill {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} writes in a minute");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    served.kill_hard();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = Arc::try_unwrap(acknowledged).ok().unwrap().into_inner().unwrap();

    // Restarted on the same data: every acknowledged write is there.
    let served = Served::start(dir, config);
    let base = format!("http://{}", served.public);
    let token = admin_token(&client, &base).await;
    let mut users = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/admin/users?limit=100");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = client.get(url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        for user in page["items"].as_array().unwrap() {
            users.insert(user["email"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    for email in &acknowledged.signups {
        assert!(users.contains(email), "acknowledged sign-up {email} is missing after the crash");
    }
    for (id, title) in &acknowledged.posts {
        let post = client.get(format!("{base}/api/posts/{id}")).send().await.unwrap();
        assert_eq!(post.status(), 200, "acknowledged post {id} is missing after the crash");
        assert_eq!(post.json::<Value>().await.unwrap()["title"], title.as_str());
    }
    for key in &acknowledged.api_keys {
        let read = client.get(format!("{base}/api/posts?limit=1")).bearer_auth(key).send().await.unwrap();
        assert_eq!(read.status(), 200, "an acknowledged API key no longer works after the crash");
    }
    // A chain's last handed-out token still rotates, unless a rotation was
    // in flight at the kill (then it may have been spent: 401 is right).
    let mut unsettled = 0;
    for chain in &acknowledged.chains {
        let rotated = client
            .post(format!("{base}/auth/refresh"))
            .json(&json!({"refresh_token": chain.latest}))
            .send()
            .await
            .unwrap();
        if chain.unsettled {
            unsettled += 1;
            assert!(matches!(rotated.status().as_u16(), 200 | 401), "{}", rotated.status());
        } else {
            assert_eq!(rotated.status(), 200, "an acknowledged refresh rotation was lost in the crash");
        }
    }
    // The restarted server takes writes again.
    let again = client
        .post(format!("{base}/api/posts"))
        .bearer_auth(&token)
        .json(&json!({"title": "after the crash", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert!(served.stop().success());
    let found = json!({"users": users.len(), "signups_acknowledged": acknowledged.signups.len(),
                       "posts_acknowledged": acknowledged.posts.len(), "api_keys_acknowledged": acknowledged.api_keys.len(),
                       "rotations_acknowledged": acknowledged.chains.iter().map(|c| c.rotations).sum::<usize>(),
                       "chains_with_a_rotation_in_flight": unsettled});
    (acknowledged, found)
}

/// Nothing half-written: every sign-up (acknowledged or not) has its
/// verification token, written in the same transaction as the user.
fn assert_no_signup_without_its_token(rows: &[(String, i64)]) {
    let crash_users: Vec<&(String, i64)> = rows.iter().filter(|(email, _)| email.starts_with("crash-")).collect();
    assert!(!crash_users.is_empty());
    for (email, tokens) in crash_users {
        assert_eq!(*tokens, 1, "{email} has {tokens} verification tokens");
    }
}

const SIGNUP_TOKENS: &str = "SELECT u.email, (SELECT COUNT(*) FROM email_tokens t WHERE t.user_id = u.id \
                             AND t.purpose = 'verify_email') FROM users u";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_write_through_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{CHEAP_HASH}[server]\nbind = \"127.0.0.1:0\"\nadmin_bind = \"127.0.0.1:0\"\n\
             [rate_limit.global]\nlimit = 1000000\n[rate_limit.api]\nlimit = 1000000\n\
             [rate_limit.login]\nlimit = 1000000\n[defense]\nenabled = false\n[log]\nformat = \"json\"\n[bootstrap]\nadmin_email = \"{ADMIN_EMAIL}\"\n"
        ),
    );
    let (_, found) = kill_during_writes(dir.path(), &config, 200).await;
    eprintln!("sqlite after kill -9: {found}");

    let url = format!("sqlite://{}/data/rampart.db", dir.path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
    assert_eq!(integrity, "ok");
    let rows: Vec<(String, i64)> = sqlx::query_as(SIGNUP_TOKENS).fetch_all(&pool).await.unwrap();
    assert_no_signup_without_its_token(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_keeps_every_acknowledged_write_through_a_kill_9() {
    let Some(url) = crate::postgres::postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = crate::postgres_schema::TestSchema::create(&url, "rampart_crash_").await;
    let dir = tempfile::tempdir().unwrap();
    let database_file = dir.path().join("database-url");
    std::fs::write(&database_file, &schema.url).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{CHEAP_HASH}[server]\nbind = \"127.0.0.1:0\"\nadmin_bind = \"127.0.0.1:0\"\n\
             [database]\nurl_file = \"{}\"\n\
             [rate_limit.global]\nlimit = 1000000\n[rate_limit.api]\nlimit = 1000000\n\
             [rate_limit.login]\nlimit = 1000000\n[defense]\nenabled = false\n[log]\nformat = \"json\"\n[bootstrap]\nadmin_email = \"{ADMIN_EMAIL}\"\n",
            database_file.display()
        ),
    );
    let (_, found) = kill_during_writes(dir.path(), &config, 200).await;
    eprintln!("postgresql after kill -9: {found}");

    let pool = sqlx::PgPool::connect(&schema.url).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(SIGNUP_TOKENS).fetch_all(&pool).await.unwrap();
    assert_no_signup_without_its_token(&rows);
    pool.close().await;
    schema.drop().await;
}

/// One request's fate during a shutdown.
enum Fate {
    /// Answered in full: when it started and ended.
    Served { started: Instant, ended: Instant },
    /// Never answered (refused or closed before any response).
    NotServed,
    /// Headers came, the body did not: the one thing that must not happen.
    Cut(String),
}

/// SIGTERM while sign-ins (each an Argon2 verification at the default
/// cost, so some are always in flight) and reads stream in: every request
/// the server began answering is answered in full, the ones in flight at
/// the signal among them, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_every_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nbind = \"127.0.0.1:0\"\nadmin_bind = \"127.0.0.1:0\"\nshutdown_timeout = \"30s\"\n\
             [rate_limit.global]\nlimit = 1000000\n[rate_limit.login]\nlimit = 1000000\n\
             [rate_limit.api]\nlimit = 1000000\n[defense]\nenabled = false\n\
             [log]\nformat = \"json\"\n[bootstrap]\nadmin_email = \"{ADMIN_EMAIL}\"\n"
        ),
    );
    let served = Served::start(dir.path(), &config);
    let base = format!("http://{}", served.public);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fates = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..8)
        .map(|n| {
            let (base, stop, fates) = (base.clone(), stop.clone(), fates.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let request = if n % 2 == 0 {
                        client
                            .post(format!("{base}/auth/login"))
                            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
                    } else {
                        client.get(format!("{base}/api/posts"))
                    };
                    let fate = match request.send().await {
                        Err(_) => Fate::NotServed,
                        Ok(response) => {
                            let status = response.status();
                            match response.json::<Value>().await {
                                Ok(_) if status.is_success() => Fate::Served { started, ended: Instant::now() },
                                Ok(body) => Fate::Cut(format!("{status}: {body}")),
                                Err(error) => Fate::Cut(format!("{status}: {error}")),
                            }
                        }
                    };
                    let not_served = matches!(fate, Fate::NotServed);
                    fates.lock().unwrap().push(fate);
                    if not_served {
                        return;
                    }
                }
            })
        })
        .collect();
    // Load for a moment, then the signal.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fates.lock().unwrap().len() < 40 {
        assert!(Instant::now() < deadline, "no load");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let signalled = Instant::now();
    let status = tokio::task::spawn_blocking(move || served.stop()).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(status.success(), "exit status after SIGTERM: {status:?}");

    let fates = fates.lock().unwrap();
    let cut: Vec<&String> =
        fates.iter().filter_map(|fate| if let Fate::Cut(why) = fate { Some(why) } else { None }).collect();
    assert!(cut.is_empty(), "answers cut or refused during the shutdown: {cut:?}");
    let served = fates.iter().filter(|fate| matches!(fate, Fate::Served { .. })).count();
    let in_flight = fates
        .iter()
        .filter(|fate| matches!(fate, Fate::Served { started, ended } if *started < signalled && *ended > signalled))
        .count();
    let not_served = fates.len() - served;
    eprintln!(
        "shutdown under load: {served} served, {in_flight} of them in flight at SIGTERM, none cut; {not_served} sent after the listener closed"
    );
    assert!(in_flight >= 1, "no request was in flight at the signal; the test proved nothing");
}

/// A TCP relay to PostgreSQL that the test can cut (every connection
/// dropped; new ones closed at once, or held without an answer) and
/// restore: the database "stopped" or unreachable as the server sees it,
/// without stopping the one the other tests use.
struct CuttableRelay {
    address: std::net::SocketAddr,
    /// 0 up, 1 refusing (closed at once), 2 hanging (held, never answered).
    mode: Arc<std::sync::atomic::AtomicU8>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableRelay {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (relay_mode, relay_links) = (mode.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = match relay_mode.load(std::sync::atomic::Ordering::SeqCst) {
                    0 => tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }),
                    1 => continue, // dropped: closed at once
                    _ => tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        drop(client);
                    }),
                };
                relay_links.lock().unwrap().push(link.abort_handle());
            }
        });
        Self { address, mode, links }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn cut(&self) {
        self.set(1);
    }

    fn hang(&self) {
        self.set(2);
    }

    fn restore(&self) {
        self.set(0);
    }
}

/// PostgreSQL unreachable under load: requests that need it get 503
/// problem+json within `database.timeout` (no hang), `/ready` says 503,
/// `/health` stays 200, and everything works again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_means_quick_503s_and_recovery_without_a_restart() {
    let Some(url) = crate::postgres::postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = crate::postgres_schema::TestSchema::create(&url, "rampart_outage_").await;
    let parsed = url::Url::parse(&schema.url).unwrap();
    let target = tokio::net::lookup_host((parsed.host_str().unwrap(), parsed.port().unwrap_or(5432)))
        .await
        .unwrap()
        .next()
        .unwrap();
    let relay = CuttableRelay::start(target).await;
    let mut through_relay = parsed.clone();
    through_relay.set_host(Some("127.0.0.1")).unwrap();
    through_relay.set_port(Some(relay.address.port())).unwrap();
    let app = crate::helpers::spawn_with(|options| {
        options.config.database.url = secrecy::SecretString::from(through_relay.to_string());
        options.config.database.timeout = rampart::config::HumanDuration::secs(2);
    })
    .await;
    let admin = app.token_for(&app.users.admin).await;
    let users = || app.get_as("/api/admin/users?limit=5", &admin);
    assert_eq!(users().await.status, 200);

    relay.cut();
    let cut_at = Instant::now();
    let mut slowest = Duration::ZERO;
    for n in 0..5 {
        let started = Instant::now();
        let down = if n % 2 == 0 {
            users().await
        } else {
            let body = json!({"email": format!("outage{n}@example.com"), "password": "violet pancake orbit nine", "name": "Out Age"});
            app.post_json("/auth/signup", &body).await
        };
        slowest = slowest.max(started.elapsed());
        let problem = down.assert_problem(503);
        assert!(!down.body.contains("sqlx") && !down.body.contains("5432"), "no internals: {problem}");
    }
    assert!(slowest < Duration::from_secs(2) + Duration::from_millis(1500), "a request waited {slowest:?}");
    assert_eq!(app.get("/ready").await.status, 503);
    assert_eq!(app.get("/health").await.status, 200);
    let to_503 = cut_at.elapsed();

    // Unreachable rather than stopped: connections are held unanswered.
    // No request waits much past database.timeout (2 s).
    relay.hang();
    let started = Instant::now();
    users().await.assert_problem(503);
    let hung = started.elapsed();
    assert!(hung < Duration::from_millis(3500), "waited {hung:?} on an unreachable database");
    assert_eq!(app.get("/health").await.status, 200);

    relay.restore();
    let restored_at = Instant::now();
    let deadline = restored_at + Duration::from_secs(30);
    while users().await.status != 200 {
        assert!(Instant::now() < deadline, "no recovery within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = restored_at.elapsed();
    assert_eq!(app.get("/ready").await.status, 200);
    let signup = app
        .post_json(
            "/auth/signup",
            &json!({"email": "after@example.com", "password": "violet pancake orbit nine", "name": "After"}),
        )
        .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    eprintln!(
        "database outage: 5 requests answered 503 in {to_503:?} (slowest {slowest:?}); unreachable: 503 after {hung:?}; \
         recovered {recovery:?} after it came back"
    );
    app.stop();
    schema.drop().await;
}

/// A PostgreSQL cluster of this test's own (initdb as the `postgres`
/// user), on a free port, to stop hard and start again.
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    const BIN: &'static str = "/usr/lib/postgresql/15/bin";

    fn as_postgres(args: &[&str]) -> std::process::Output {
        std::process::Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output().unwrap()
    }

    fn create() -> Option<Self> {
        if !Path::new(Self::BIN).exists() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("rampart-pg-").tempdir_in("/tmp").unwrap();
        let chown = std::process::Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).status().ok()?;
        if !chown.success() {
            return None;
        }
        let data = dir.path().join("data");
        let initdb = Self::as_postgres(&[
            &format!("{}/initdb", Self::BIN),
            "-D",
            data.to_str().unwrap(),
            "--auth=trust",
            "--username=postgres",
        ]);
        assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
        let cluster = Self { dir, port: crate::helpers::free_port() };
        cluster.start();
        Some(cluster)
    }

    fn start(&self) {
        let data = self.dir.path().join("data");
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let log = self.dir.path().join("log");
        let started = Self::as_postgres(&[
            &format!("{}/pg_ctl", Self::BIN),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &options,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ]);
        assert!(started.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&started.stderr));
    }

    /// `immediate`: every backend killed at once, no checkpoint (a crash,
    /// as far as the data is concerned).
    fn stop_immediately(&self) {
        let data = self.dir.path().join("data");
        let stopped = Self::as_postgres(&[
            &format!("{}/pg_ctl", Self::BIN),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
        assert!(stopped.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&stopped.stderr));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Self::as_postgres(&[
            &format!("{}/pg_ctl", Self::BIN),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]);
    }
}

/// PostgreSQL restarted (stopped immediately, started again) under a
/// stream of sign-ups: no request hangs (each answers 201, or 503 while it
/// is down), writing works again by itself afterwards, and every sign-up
/// acknowledged before, during or after is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_under_writes_loses_nothing_acknowledged() {
    if crate::postgres::postgres_url().is_none() {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    }
    let Some(cluster) = OwnPostgres::create() else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but no PostgreSQL 15 binaries");
        eprintln!("skipped: no PostgreSQL binaries to run a private cluster");
        return;
    };
    let app = crate::helpers::spawn_with(|options| {
        options.config.database.url = secrecy::SecretString::from(cluster.url());
        options.config.database.timeout = rampart::config::HumanDuration::secs(2);
    })
    .await;
    let app = Arc::new(app);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new((Vec::<String>::new(), 0usize, Duration::ZERO)));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (app, stop, outcomes) = (app.clone(), stop.clone(), outcomes.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let email = format!("restart-{writer}-{n}@example.com");
                    n += 1;
                    let body = json!({"email": email, "password": "violet pancake orbit nine", "name": "Re Start"});
                    let started = Instant::now();
                    let response = app.post_json("/auth/signup", &body).await;
                    let took = started.elapsed();
                    let mut outcomes = outcomes.lock().unwrap();
                    outcomes.2 = outcomes.2.max(took);
                    match response.status {
                        201 => outcomes.0.push(email),
                        503 => outcomes.1 += 1,
                        other => panic!("{other}: {}", response.body),
                    }
                }
            })
        })
        .collect();
    let acknowledged = || outcomes.lock().unwrap().0.len();
    let wait_for = |count: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged() < count {
            assert!(Instant::now() < deadline, "only {} sign-ups", acknowledged());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    wait_for(40).await;
    cluster.stop_immediately();
    // Down until a writer has met it (however slow a loaded machine is).
    let deadline = Instant::now() + Duration::from_secs(30);
    while outcomes.lock().unwrap().1 == 0 {
        assert!(Instant::now() < deadline, "no request met the stopped database");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let down_at = Instant::now();
    cluster.start();
    let before = acknowledged();
    wait_for(before + 40).await;
    let recovered = down_at.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let (signed_up, unavailable, slowest) = outcomes.lock().unwrap().clone();
    assert!(slowest < Duration::from_secs(4), "a request waited {slowest:?}");

    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT email FROM users").fetch_all(&pool).await.unwrap();
    let stored: BTreeSet<String> = stored.into_iter().collect();
    let missing: Vec<&String> = signed_up.iter().filter(|email| !stored.contains(*email)).collect();
    assert!(missing.is_empty(), "acknowledged, then lost in the restart: {missing:?}");
    eprintln!(
        "postgresql restart under writes: {} sign-ups acknowledged, all found; {unavailable} answered 503; slowest \
         answer {slowest:?}; writing again {recovered:?} after the start",
        signed_up.len()
    );
    pool.close().await;
}

/// `count` requests one after another on one keep-alive connection: their
/// latencies, sorted.
async fn latencies(client: &reqwest::Client, url: &str, count: usize) -> Vec<Duration> {
    let mut all = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let response = client.get(url).send().await.expect("the normal client is served");
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        all.push(started.elapsed());
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// 2,000 idle connections and 200 slowloris clients (a request head
/// dribbled a byte at a time) from other addresses: a normal client is
/// still answered, every request of it, and the dribblers are cut off
/// once `server.header_read_timeout` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_slowloris_do_not_starve_a_normal_client() {
    let app = crate::helpers::spawn_with(|options| {
        options.config.server.header_read_timeout = rampart::config::HumanDuration::secs(2);
    })
    .await;
    let server = app.address;
    let url = app.url("/api/posts");
    let client = reqwest::Client::new();
    let idle_before = latencies(&client, &url, 200).await;

    // 2,000 idle connections from 20 addresses (100 each, under the
    // per-address cap of 256).
    let mut idle = Vec::new();
    for n in 0..2_000 {
        let from = format!("127.0.1.{}", 1 + n % 20);
        idle.push(connect_from(&from, server).await);
    }
    // 200 slowloris clients from 10 more addresses.
    let slow_started = Instant::now();
    let slowloris: Vec<_> = (0..200)
        .map(|n| {
            let from = format!("127.0.2.{}", 1 + n % 10);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream = connect_from(&from, server).await;
                let head = b"GET /api/posts HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                for byte in head.iter().cycle() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if slow_started.elapsed() > Duration::from_secs(20) {
                        panic!("a slowloris connection was never cut");
                    }
                }
                // Cut by the server: whatever it wrote (a 408, or nothing) ends.
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
                slow_started.elapsed()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let under_abuse = latencies(&client, &url, 200).await;
    let mut cut_after = Duration::ZERO;
    for slow in slowloris {
        cut_after = cut_after.max(slow.await.unwrap());
    }
    assert!(cut_after < Duration::from_secs(2) + Duration::from_secs(3), "dribblers held on for {cut_after:?}");
    let (p50, p99) = (percentile(&under_abuse, 50), percentile(&under_abuse, 99));
    eprintln!(
        "connection abuse: normal client p50 {:?} / p99 {:?} idle, p50 {p50:?} / p99 {p99:?} with 2,000 idle and 200 \
         slowloris connections; every slowloris cut by {cut_after:?} (header_read_timeout 2 s)",
        percentile(&idle_before, 50),
        percentile(&idle_before, 99),
    );
    // Starvation, not speed: a starved client waits for seconds.
    assert!(p99 < Duration::from_secs(1), "the normal client waited {p99:?}");
    drop(idle);
}
