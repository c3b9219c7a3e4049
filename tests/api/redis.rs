//! Shared state through Redis: the Redis limiter answers like the memory
//! one, two instances on one PostgreSQL + Redis behave as one, and a dead
//! Redis fails as configured and recovers. Skipped without
//! `TEST_POSTGRES_URL`/`TEST_REDIS_URL` on a laptop; failed under CI=true.

use std::{process::Stdio, sync::Arc, time::Duration};

use rampart::{
    clock::ManualClock,
    limiter::{
        LimitKey, LimiterBackend, Subject,
        memory::MemoryLimiter,
        strategy::{Quota, Strategy},
    },
    shared::{Redis, RedisLimiter},
};
use secrecy::SecretString;
use serde_json::json;

use crate::{
    helpers::{free_port, spawn_with},
    postgres_schema::TestSchema,
};

fn required(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true but {name} is not set"),
        _ => {
            eprintln!("skipped: {name} is not set");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_redis_limiter_decides_exactly_like_the_memory_limiter() {
    let Some(url) = required("TEST_REDIS_URL") else { return };
    let clock = ManualClock::new(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap());
    let redis = Redis::connect(&url, &unique("rampart-test-")).await.unwrap();
    let shared = RedisLimiter::new(redis, Arc::new(clock.clone()));
    let memory = MemoryLimiter::new(10_000, Arc::new(clock.clone()));
    // A fixed pseudo-random walk through time, with peeks and counted requests.
    let mut seed: u64 = 42;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    for (group, strategy) in
        [Strategy::FixedWindow, Strategy::SlidingWindow, Strategy::TokenBucket].into_iter().enumerate()
    {
        let quota = Quota { strategy, limit: 5, window_ms: 10_000 };
        let group = u16::try_from(group).unwrap();
        for step in 0..400 {
            let key = LimitKey { group, subject: Subject::Ip(u128::from(next() % 3)), audit: false };
            let consume = next() % 4 != 0;
            let expected = memory.decide(&key, &quota, consume).await.unwrap();
            let actual = shared.decide(&key, &quota, consume).await.unwrap();
            assert_eq!(actual, expected, "{strategy:?}, step {step}");
            clock.advance(time::Duration::milliseconds(i64::try_from(next() % 1_500).unwrap()));
        }
    }
}

/// One deployment's configuration for `rampart serve` processes: a fresh
/// PostgreSQL schema (its URL in a file), a Redis prefix, one signing key.
struct Deployment {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    schema: TestSchema,
}

async fn deployment(postgres: &str, redis: &str, extra: &str) -> Deployment {
    let schema = TestSchema::create(postgres, "rampart_procs_").await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("signing-key.pem");
    std::fs::write(&key_file, rampart::auth::keys::generate(rampart::config::JwtAlgorithm::EdDSA).unwrap()).unwrap();
    let database_file = dir.path().join("database-url");
    std::fs::write(&database_file, &schema.url).unwrap();
    let config = dir.path().join("rampart.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nadmin_bind = \"127.0.0.1:0\"\n\
             [database]\nurl_file = \"{}\"\n[redis]\nurl = \"{redis}\"\nkey_prefix = \"{}:\"\n\
             [auth]\nsigning_key_file = \"{}\"\n[auth.password_hash]\nmemory_kib = 64\niterations = 1\n\
             [log]\nformat = \"json\"\n[bootstrap]\nadmin_email = \"root@example.com\"\n{extra}",
            database_file.display(),
            unique("rampart-procs-"),
            key_file.display()
        ),
    )
    .unwrap();
    Deployment { dir, config, schema }
}

/// Makes a `user` account with the password the tests sign in with,
/// through `rampart user create` on the deployment's configuration.
fn create_user(dir: &std::path::Path, config: &std::path::Path, email: &str, name: &str) {
    let created = crate::cli::rampart(dir)
        .args(["user", "create", "--email", email, "--name", name, "--role", "user", "--config"])
        .arg(config)
        .env("RAMPART_PASSWORD", "violet pancake orbit nine")
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
}

/// Two `rampart serve` processes on one PostgreSQL schema and one Redis
/// prefix, sharing a signing key: what one does, the other sees.
#[tokio::test]
async fn two_processes_on_postgresql_and_redis_behave_as_one() {
    let (Some(postgres), Some(redis)) = (required("TEST_POSTGRES_URL"), required("TEST_REDIS_URL")) else { return };
    let Deployment { dir, config, schema } = deployment(&postgres, &redis, "").await;
    create_user(dir.path(), &config, "pat@example.com", "Pat");
    let a = crate::cli::Served::start(dir.path(), &config);
    let b = crate::cli::Served::start(dir.path(), &config);
    let client = reqwest::Client::new();
    let (on_a, on_b) =
        (|path: &str| format!("http://{}{path}", a.public), |path: &str| format!("http://{}{path}", b.public));
    let credentials = json!({"email": "pat@example.com", "password": "violet pancake orbit nine"});

    // A session made on A works on B.
    let session = client.post(on_a("/auth/session")).json(&credentials).send().await.unwrap();
    assert_eq!(session.status(), 200);
    let cookie = session.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let profile = client.get(on_b("/api/profile")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(profile.status(), 200, "a session from A works on B");

    // Logout on A kills the access token on B at once.
    let login = |url: String| {
        let client = client.clone();
        let credentials = credentials.clone();
        async move { client.post(url).json(&credentials).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let pair = login(on_a("/auth/login")).await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(client.get(on_b("/api/profile")).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(client.post(on_a("/auth/logout")).bearer_auth(&token).send().await.unwrap().status(), 204);
    assert_eq!(
        client.get(on_b("/api/profile")).bearer_auth(&token).send().await.unwrap().status(),
        401,
        "dead on B at once"
    );

    // A refresh token spent on A is reuse on B, and the family dies.
    let pair = login(on_a("/auth/login")).await;
    let spent = json!({"refresh_token": pair["refresh_token"]});
    let rotated: serde_json::Value =
        client.post(on_a("/auth/refresh")).json(&spent).send().await.unwrap().json().await.unwrap();
    assert_eq!(client.post(on_b("/auth/refresh")).json(&spent).send().await.unwrap().status(), 401);
    let newest = rotated["access_token"].as_str().unwrap();
    assert_eq!(
        client.get(on_b("/api/profile")).bearer_auth(newest).send().await.unwrap().status(),
        401,
        "the family died"
    );

    assert!(a.stop().success());
    assert!(b.stop().success());
    schema.drop().await;
}

#[tokio::test]
async fn a_global_limit_holds_across_processes() {
    let (Some(postgres), Some(redis)) = (required("TEST_POSTGRES_URL"), required("TEST_REDIS_URL")) else { return };
    let extra = "[rate_limit.global]\nlimit = 20\nwindow = \"1h\"\n";
    let Deployment { dir, config, schema } = deployment(&postgres, &redis, extra).await;
    let a = crate::cli::Served::start(dir.path(), &config);
    let b = crate::cli::Served::start(dir.path(), &config);
    let client = reqwest::Client::new();
    let mut admitted = 0;
    for n in 0..40 {
        let host = if n % 2 == 0 { &a.public } else { &b.public };
        match client.get(format!("http://{host}/api/posts")).send().await.unwrap().status().as_u16() {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 20, "one budget for both processes");
    assert!(a.stop().success());
    assert!(b.stop().success());
    schema.drop().await;
}

/// A private redis-server on a free port, to stop and start at will.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Option<Self> {
        Self::start_with(port, None)
    }

    /// With `aof_dir`, every write is appended to a file there and synced
    /// before Redis answers (`appendfsync always`), and read back on start.
    fn start_with(port: u16, aof_dir: Option<&std::path::Path>) -> Option<Self> {
        let mut command = std::process::Command::new("redis-server");
        command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
        match aof_dir {
            Some(dir) => command.args(["--appendonly", "yes", "--appendfsync", "always", "--dir"]).arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
        let started = Self { port, child: Some(child) };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(started);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn a_dead_redis_fails_as_configured_without_hanging_and_recovers() {
    if required("TEST_REDIS_URL").is_none() {
        return;
    }
    let port = free_port();
    let Some(mut redis) = OwnRedis::start(port) else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but redis-server cannot be started");
        eprintln!("skipped: no redis-server binary");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let app = spawn_with(|o| {
        o.config.redis.url = SecretString::from(url.clone());
        o.config.rate_limit.get_mut("login").unwrap().limit = 1_000;
    })
    .await;
    let wrong = json!({"email": "nobody@example.com", "password": "not a real password"});
    assert_eq!(app.get("/ready").await.json()["redis"], "up");
    assert_eq!(app.post_json("/auth/login", &wrong).await.status, 401);

    redis.stop();
    let started = std::time::Instant::now();
    app.get("/ready").await.assert_problem(503);
    assert_eq!(app.get("/api/posts").await.status, 200, "api and global fail open by default");
    let login = app.post_json("/auth/login", &wrong).await;
    assert_eq!(login.status, 429, "login fails closed by default: {}", login.body);
    assert!(started.elapsed() < Duration::from_secs(5), "no request hangs on a dead Redis: {:?}", started.elapsed());
    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    assert!(scrape.contains("rampart_rate_limit_backend_errors_total{group=\"login\"}"), "{scrape}");

    let _again = OwnRedis::start(port).expect("redis restarts");
    let mut recovered = false;
    for _ in 0..100 {
        if app.get("/ready").await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "ready again once Redis is back, without a restart");
    let mut login_ok = false;
    for _ in 0..50 {
        if app.post_json("/auth/login", &wrong).await.status == 401 {
            login_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(login_ok, "the login limiter works again");
}

/// Extending a session never brings back one deleted in between: the
/// extension reads the session, a logout deletes it before the write, and
/// the write (`SET … XX`) then finds nothing to overwrite. `join!` polls
/// the extension first, so its read reaches Redis before the delete.
#[tokio::test]
async fn a_session_deleted_during_its_extension_stays_deleted() {
    use rampart::store::{SessionRecord, SessionStore};
    let Some(url) = required("TEST_REDIS_URL") else { return };
    let sessions = rampart::shared::RedisSessions::new(Redis::connect(&url, &unique("rampart-test-")).await.unwrap());
    let now = time::OffsetDateTime::now_utc();
    for round in 0..20u8 {
        let id_hash = [round; 32];
        let record = SessionRecord {
            id_hash,
            user_id: uuid::Uuid::now_v7(),
            csrf_hash: [9; 32],
            created_at: now,
            idle_expires_at: now + time::Duration::minutes(30),
            absolute_expires_at: now + time::Duration::hours(8),
            sign_in: rampart::domain::SignInMethod::Provider,
        };
        sessions.insert_session(&record).await.unwrap();
        let kept = sessions.session(&id_hash).await.unwrap().expect("stored");
        assert_eq!(kept.sign_in, rampart::domain::SignInMethod::Provider, "Redis keeps how the user signed in");
        sessions.delete_session(&id_hash).await.unwrap();
        sessions.insert_session(&record).await.unwrap();
        let later = now + time::Duration::hours(1);
        let (extended, deleted) =
            tokio::join!(sessions.extend_session(&id_hash, later), sessions.delete_session(&id_hash));
        extended.unwrap();
        deleted.unwrap();
        assert!(sessions.session(&id_hash).await.unwrap().is_none(), "round {round}: the session came back");
        // And an extension of a session that is already gone writes nothing.
        sessions.extend_session(&id_hash, later).await.unwrap();
        assert!(sessions.session(&id_hash).await.unwrap().is_none(), "round {round}: extended from nothing");
    }
}

/// An instance that missed a revocation's message (here: it was never
/// published, only written to the store, as when every publish attempt
/// failed) still applies it after its periodic reload, not only when it
/// resubscribes.
#[tokio::test]
async fn a_revocation_whose_message_was_missed_arrives_with_the_periodic_reload() {
    use rampart::{
        auth::revocation::{MemoryRevocations, RevocationList},
        shared::RedisRevocations,
        store::{Revocation, RevocationKind},
    };
    let Some(url) = required("TEST_REDIS_URL") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = rampart::config::Config::defaults();
    config.database.url = SecretString::from(format!("sqlite://{}/rampart.db", dir.path().display()));
    let store = rampart::store::open(&config.database).await.unwrap();
    store.migrate().await.unwrap();
    let clock: Arc<dyn rampart::clock::Clock> = Arc::new(rampart::clock::SystemClock);
    let local = Arc::new(MemoryRevocations::load(store.clone(), clock, Default::default()).await.unwrap());
    let prefix = unique("rampart-test-");
    let redis = Redis::connect(&url, &prefix).await.unwrap();
    let revocations = RedisRevocations::start_with_reload(local, redis.clone(), Duration::from_millis(100));
    let user = uuid::Uuid::now_v7();
    let now = time::OffsetDateTime::now_utc();
    let session_made = now - time::Duration::minutes(1);
    // Wait until the subscriber listens (its first reload, made on
    // subscribing, is then behind it): a published marker arrives.
    let marker = uuid::Uuid::now_v7();
    let message = json!({
        "kind": "user",
        "subject": marker,
        "revoked_before": now.unix_timestamp_nanos(),
        "expires_at": (now + time::Duration::minutes(20)).unix_timestamp_nanos(),
    })
    .to_string();
    let mut listening = false;
    for _ in 0..100 {
        let mut connection = redis.connection.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("{prefix}revocations"))
            .arg(&message)
            .query_async(&mut connection)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if revocations.is_session_revoked(marker, session_made) {
            listening = true;
            break;
        }
    }
    assert!(listening, "the subscriber never listened");
    assert!(!revocations.is_session_revoked(user, session_made));
    // Written by another instance whose publish never arrived.
    store
        .insert_revocation(&Revocation {
            kind: RevocationKind::User,
            subject: user,
            revoked_before: Some(now),
            expires_at: now + time::Duration::minutes(20),
        })
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..100 {
        if revocations.is_session_revoked(user, session_made) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the revocation was not reloaded within 5 s");
}

/// Protect mode across instances: a websocket tunnel held by B closes
/// within 5 s of its token being revoked on A.
#[tokio::test]
async fn a_websocket_on_one_instance_closes_when_its_token_is_revoked_on_another() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

    let (Some(postgres), Some(redis)) = (required("TEST_POSTGRES_URL"), required("TEST_REDIS_URL")) else { return };
    let upstream = crate::upstream_rig::spawn_upstream(&[]).await;
    let routes = format!(
        "[proxy.upstreams.app]\nurl = \"{}\"\n[[proxy.routes]]\nid = \"ws\"\npath = \"/ws\"\nupstream = \"app\"\nwebsockets = true\n",
        upstream.url()
    );
    let Deployment { dir, config, schema } = deployment(&postgres, &redis, &routes).await;
    create_user(dir.path(), &config, "sam@example.com", "Sam");
    let a = crate::cli::Served::start(dir.path(), &config);
    let b = crate::cli::Served::start(dir.path(), &config);
    let client = reqwest::Client::new();
    let credentials = json!({"email": "sam@example.com", "password": "violet pancake orbit nine"});
    let pair: serde_json::Value = client
        .post(format!("http://{}/auth/login", a.public))
        .json(&credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = pair["access_token"].as_str().unwrap().to_owned();

    let mut request = format!("ws://{}/ws", b.public).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade on B");
    socket.send(tungstenite::Message::text("hello")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap().into_text().unwrap().as_str(), "hello");

    let logout = client.post(format!("http://{}/auth/logout", a.public)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(tungstenite::Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the tunnel on B outlived the logout on A by 5 s");

    assert!(a.stop().success());
    assert!(b.stop().success());
    schema.drop().await;
}

/// API keys on two processes: a key made on A works on B (whose cache then
/// holds it); revoked on A, or stopped by its owner's logout-all on A, it
/// is refused on B at B's next request.
#[tokio::test]
async fn an_api_key_stopped_on_one_instance_is_refused_on_the_other_at_once() {
    let (Some(postgres), Some(redis)) = (required("TEST_POSTGRES_URL"), required("TEST_REDIS_URL")) else { return };
    let Deployment { dir, config, schema } = deployment(&postgres, &redis, "").await;
    create_user(dir.path(), &config, "kim@example.com", "Kim");
    let a = crate::cli::Served::start(dir.path(), &config);
    let b = crate::cli::Served::start(dir.path(), &config);
    let client = reqwest::Client::new();
    let (on_a, on_b) =
        (|path: &str| format!("http://{}{path}", a.public), |path: &str| format!("http://{}{path}", b.public));
    let credentials = json!({"email": "kim@example.com", "password": "violet pancake orbit nine"});
    let pair: serde_json::Value =
        client.post(on_a("/auth/login")).json(&credentials).send().await.unwrap().json().await.unwrap();
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let make_key = || {
        let (client, token, url) = (client.clone(), token.clone(), on_a("/api/profile/api-keys"));
        async move {
            let created = client
                .post(url)
                .bearer_auth(&token)
                .json(&json!({"name": "job", "scopes": ["profile:read"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            let created: serde_json::Value = created.json().await.unwrap();
            (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned())
        }
    };
    let status_on_b = |key: String| {
        let (client, url) = (client.clone(), on_b("/api/profile"));
        async move { client.get(url).bearer_auth(key).send().await.unwrap().status().as_u16() }
    };

    let (id, key) = make_key().await;
    let (_, second) = make_key().await;
    assert_eq!(status_on_b(key.clone()).await, 200, "a key made on A works on B");
    assert_eq!(status_on_b(second.clone()).await, 200);
    let revoked = client.delete(on_a(&format!("/api/profile/api-keys/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(status_on_b(key).await, 401, "revoked on A, refused on B at once");
    assert_eq!(status_on_b(second.clone()).await, 200, "the owner's other key is untouched");
    assert_eq!(client.post(on_a("/auth/logout-all")).bearer_auth(&token).send().await.unwrap().status(), 204);
    assert_eq!(status_on_b(second).await, 401, "logout-all on A stops the key on B");

    assert!(a.stop().success());
    assert!(b.stop().success());
    schema.drop().await;
}

/// Redis restarted (killed and started again) under a signed-in session
/// and a counted limit: no request hangs meanwhile; without persistence
/// the restart forgets sessions and counters, and limits count exactly
/// again from then on; with an append-only file synced on every write
/// (docs/deploy.md) both survive it.
#[tokio::test]
async fn a_redis_restart_forgets_counts_and_sessions_unless_it_persists_them() {
    if required("TEST_REDIS_URL").is_none() {
        return;
    }
    for persistent in [false, true] {
        let aof = tempfile::tempdir().unwrap();
        let aof_dir = persistent.then(|| aof.path());
        let port = free_port();
        let Some(mut redis) = OwnRedis::start_with(port, aof_dir) else {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but redis-server cannot be started");
            eprintln!("skipped: no redis-server binary");
            return;
        };
        let url = format!("redis://127.0.0.1:{port}/0");
        let app = spawn_with(|o| {
            o.config.redis.url = SecretString::from(url.clone());
            o.config.rate_limit.get_mut("api").unwrap().limit = 5;
        })
        .await;
        let user = app.users.user.clone();
        let session = app
            .send(
                app.client
                    .post(app.url("/auth/session"))
                    .json(&json!({"email": user.email, "password": user.password})),
            )
            .await;
        assert_eq!(session.status, 200);
        let cookie = session.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
        let as_guest = || app.send(app.client.get(app.url("/api/posts")));
        for _ in 0..3 {
            assert_eq!(as_guest().await.status, 200);
        }

        redis.stop();
        let started = std::time::Instant::now();
        assert_eq!(as_guest().await.status, 200, "the api group fails open");
        let by_cookie = app.send(app.client.get(app.url("/api/profile")).header("cookie", &cookie)).await;
        assert_eq!(by_cookie.status, 503, "sessions live in Redis: {}", by_cookie.body);
        assert!(started.elapsed() < Duration::from_secs(5), "nothing hangs: {:?}", started.elapsed());
        let _again = OwnRedis::start_with(port, aof_dir).expect("redis restarts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while app.get("/ready").await.status != 200 {
            assert!(std::time::Instant::now() < deadline, "not ready after the restart");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let by_cookie = app.send(app.client.get(app.url("/api/profile")).header("cookie", &cookie)).await;
        // The limit counts from where Redis left it: a fresh window without
        // persistence (5 more, less the lost session's request, now a
        // guest's), the same window with it (2 more; the session's request
        // counted under its user).
        let allowed = if persistent { 2 } else { 4 };
        for n in 0..allowed {
            assert_eq!(as_guest().await.status, 200, "request {n} after the restart (persistent: {persistent})");
        }
        as_guest().await.assert_problem(429);
        if persistent {
            assert_eq!(by_cookie.status, 200, "the session survived the restart");
        } else {
            by_cookie.assert_problem(401);
        }
    }
}
