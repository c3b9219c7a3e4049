//! Per-request costs on the hot path: access-token verification with the
//! default algorithm (EdDSA), and the revocation check that follows it.
//! Run with `cargo bench`; figures go to docs/performance.md.
#![allow(clippy::unwrap_used)]

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use rampart::{
    auth::{
        keys::{self, SigningKey},
        revocation::{MemoryRevocations, RevocationList},
        tokens::TokenKeys,
    },
    clock::{Clock, SystemClock},
    config::JwtAlgorithm,
    domain::Role,
    store::{Revocation, RevocationKind, SqliteStore, Store},
};
use uuid::Uuid;

fn token_keys(algorithm: JwtAlgorithm) -> TokenKeys {
    let key = SigningKey::from_bytes(algorithm, keys::generate(algorithm).unwrap().as_bytes()).unwrap();
    TokenKeys::new(algorithm, &key, &[], "rampart", "rampart-api", std::time::Duration::from_secs(900)).unwrap()
}

fn verification(c: &mut Criterion) {
    let now = SystemClock.now();
    for (name, algorithm) in [("EdDSA", JwtAlgorithm::EdDSA), ("HS256", JwtAlgorithm::HS256)] {
        let keys = token_keys(algorithm);
        let (token, _) = keys.issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), now).unwrap();
        c.bench_function(&format!("access token verify ({name})"), |b| {
            b.iter(|| keys.verify(black_box(&token), now).unwrap())
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
        let list = MemoryRevocations::load(store, clock.clone()).await.unwrap();
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
    let (_, claims) = keys.issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), clock.now()).unwrap();
    c.bench_function("revocation check (3,000 entries)", |b| b.iter(|| list.is_token_revoked(black_box(&claims))));
}

criterion_group!(benches, verification, revocation);
criterion_main!(benches);
