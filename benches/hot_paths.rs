//! Per-request costs on the hot path: access-token verification with the
//! default algorithm (EdDSA), the revocation check that follows it, and one
//! authorization decision with the default Cedar policy, a rate-limit
//! decision per strategy, client-IP extraction, and one access-log line.
//! Run with `cargo bench`; figures go to docs/performance.md.
#![allow(clippy::unwrap_used)]

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use rampart::{
    auth::{
        keys::{self, SigningKey},
        principal::{Caller, Credential, Principal},
        revocation::{MemoryRevocations, RevocationList},
        tokens::{TokenKeys, VerifiedTokens},
    },
    clock::{Clock, SystemClock},
    config::JwtAlgorithm,
    domain::{Department, Post, PostWithAuthor, Role},
    layers::client_ip::{TrustedProxies, client_ip},
    limiter::{
        LimitKey, Subject,
        memory::MemoryLimiter,
        strategy::{Quota, Strategy},
    },
    policy::{Action, Authorizer, Resource},
    store::{Revocation, RevocationKind, SqliteStore, Store},
    telemetry::{AccessLine, BatchWriter, RedactingLayer},
};
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

fn token_keys(algorithm: JwtAlgorithm) -> TokenKeys {
    let key = SigningKey::from_bytes(algorithm, keys::generate(algorithm).unwrap().as_bytes()).unwrap();
    TokenKeys::new(algorithm, &key, &[], "rampart", "rampart-api", std::time::Duration::from_secs(900)).unwrap()
}

fn verification(c: &mut Criterion) {
    let now = SystemClock.now();
    for (name, algorithm) in [("EdDSA", JwtAlgorithm::EdDSA), ("HS256", JwtAlgorithm::HS256)] {
        let keys = token_keys(algorithm);
        let (token, _) = keys
            .issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), rampart::domain::SignInMethod::Password, now)
            .unwrap();
        c.bench_function(&format!("access token verify ({name})"), |b| {
            b.iter(|| keys.verify(black_box(&token), now).unwrap())
        });
        let cache = VerifiedTokens::new(65_536);
        c.bench_function(&format!("access token verify ({name}, cached)"), |b| {
            b.iter(|| cache.verify(&keys, black_box(&token), now).unwrap())
        });
    }
}

fn revocation(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let list = runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url, 2).await.unwrap());
        store.migrate().await.unwrap();
        let list = MemoryRevocations::load(store, clock.clone(), Default::default()).await.unwrap();
        // A busy server: thousands of logged-out tokens, families and users.
        let expires_at = clock.now() + time::Duration::minutes(20);
        for index in 0..3_000 {
            let kind = [RevocationKind::Token, RevocationKind::Family, RevocationKind::User][index % 3];
            let revoked_before = (kind == RevocationKind::User).then(|| clock.now());
            list.revoke(Revocation { kind, subject: Uuid::now_v7(), revoked_before, expires_at }).await.unwrap();
        }
        list
    });
    let keys = token_keys(JwtAlgorithm::HS256);
    let (_, claims) = keys
        .issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), rampart::domain::SignInMethod::Password, clock.now())
        .unwrap();
    c.bench_function("revocation check (3,000 entries)", |b| b.iter(|| list.is_token_revoked(black_box(&claims))));
}

fn policy_decision(c: &mut Criterion) {
    let authorizer = Authorizer::load(std::path::Path::new("")).unwrap();
    let manager = Caller::User(Principal {
        user_id: Uuid::now_v7(),
        role: Role::Manager,
        department: Some("sales".into()),
        credential: Credential::Session { id_hash: [0; 32], csrf_hash: [0; 32], sign_in: Default::default() },
    });
    let now = SystemClock.now();
    let post = PostWithAuthor {
        post: Post {
            id: Uuid::now_v7(),
            title: "t".into(),
            body: "b".into(),
            author_id: Uuid::now_v7(),
            created_at: now,
            updated_at: now,
        },
        author_department: Department::parse("sales").unwrap(),
        author_role: Some(Role::User),
    };
    c.bench_function("policy decision (manager edits a colleague's post)", |b| {
        b.iter(|| {
            assert!(authorizer.is_allowed_uncached(black_box(&manager), Action::UpdatePost, Resource::Post(&post)))
        })
    });
    c.bench_function("policy decision (guest lists posts)", |b| {
        b.iter(|| {
            assert!(authorizer.is_allowed_uncached(black_box(&Caller::Guest), Action::ListPosts, Resource::Posts))
        })
    });
    c.bench_function("policy decision (manager edits a colleague's post, remembered)", |b| {
        b.iter(|| assert!(authorizer.is_allowed(black_box(&manager), Action::UpdatePost, Resource::Post(&post))))
    });
}

/// One access-log line: as the server writes it (directly), and as a
/// `tracing` event with the same fields through the redacting layer; both
/// redact, format JSON and hand the line to the batching writer.
fn access_log_line(c: &mut Criterion) {
    let (writer, _guard) = BatchWriter::spawn(std::io::sink()).unwrap();
    let subscriber = tracing_subscriber::registry().with(RedactingLayer::new(true, writer.clone()));
    let request_id = Uuid::now_v7().to_string();
    let user_id = Uuid::now_v7().to_string();
    let line = AccessLine {
        request_id: &request_id,
        method: "GET",
        route: "/api/posts/{id}",
        path: "/api/posts/01a220d2-e2bf-7631-8384-4d3fa3d52276",
        status: 200,
        latency_ms: 0.42,
        client_ip: Some("203.0.113.7".parse().unwrap()),
        user_id: Some(Uuid::now_v7()),
        upstream: None,
    };
    c.bench_function("access-log line (JSON, written directly, as the server does)", |b| {
        b.iter(|| black_box(&line).write_to(true, &writer))
    });
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function("access-log line (JSON, redacted, queued)", |b| {
            b.iter(|| {
                tracing::info!(
                    target: "rampart::access",
                    request_id = black_box(request_id.as_str()),
                    method = "GET",
                    route = "/api/posts/{id}",
                    path = "/api/posts/01a220d2-e2bf-7631-8384-4d3fa3d52276",
                    status = 200u16,
                    latency_ms = 0.42,
                    client_ip = "203.0.113.7",
                    user_id = user_id.as_str(),
                    "request"
                );
            })
        });
    });
}

fn rate_limit_decision(c: &mut Criterion) {
    let limiter = MemoryLimiter::new(2_000_000, Arc::new(SystemClock));
    for strategy in [Strategy::FixedWindow, Strategy::SlidingWindow, Strategy::TokenBucket] {
        // Limits high enough that every decision is a real count, not a refusal.
        let quota = Quota { strategy, limit: u32::MAX / 2, window_ms: 900_000 };
        let mut n: u128 = 0;
        c.bench_function(&format!("rate-limit decision ({strategy:?}, 10,000 clients)"), |b| {
            b.iter(|| {
                n = (n + 1) % 10_000;
                let key = LimitKey { group: 0, subject: Subject::Ip(n), audit: false };
                limiter.decide_now(black_box(&key), &quota, true)
            })
        });
    }
}

fn client_ip_extraction(c: &mut Criterion) {
    let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()]);
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.0.0.2".parse().unwrap());
    let peer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    c.bench_function("client IP (trusted proxy, 3 hops)", |b| {
        b.iter(|| client_ip(black_box(peer), &headers, &trusted))
    });
    let untrusted: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    c.bench_function("client IP (untrusted peer)", |b| b.iter(|| client_ip(black_box(untrusted), &headers, &trusted)));
}

criterion_group!(
    benches,
    verification,
    revocation,
    policy_decision,
    rate_limit_decision,
    client_ip_extraction,
    access_log_line
);
criterion_main!(benches);
