//! One conformance suite for every `Store` backend: each test runs the same
//! checks against SQLite (a temporary file) and PostgreSQL (its own schema
//! in `TEST_POSTGRES_URL`). Without that variable the PostgreSQL half is
//! skipped on a laptop, and fails under `CI=true`.
#![allow(clippy::unwrap_used)]

#[path = "common/postgres_schema.rs"]
mod postgres_schema;

use std::{future::Future, sync::Arc};

use postgres_schema::TestSchema;
use rampart::{
    domain::{
        AuditEvent, AuditKind, Department, Email, NewUser, Outcome, PostBody, PostTitle, Role, Scopes, SignInMethod,
        User, UserName,
    },
    store::{
        ApiKeyRecord, AuditFilter, Block, CachedStore, EmailPurpose, EmailTokenRecord, Identity, LoginKind,
        MfaChallenge, OAuthFlow, OutboxCounts, OutboxMail, PasskeyRecord, PendingPasskey, PostgresStore,
        RefreshSuccessor, RefreshTokenRecord, RefreshUse, Revocation, RevocationKind, SessionRecord, SqliteStore,
        Store, StoreError, UserChanges, truncate_to_stored,
    },
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Runs `check` against both backends, each on a fresh database, behind the
/// read caches as the server runs them.
async fn on_every_backend<F, Fut>(check: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::connect(&format!("sqlite://{}/store.db", dir.path().display()), 4).await.unwrap();
    sqlite.migrate().await.unwrap();
    check(Arc::new(CachedStore::new(sqlite))).await;

    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = TestSchema::create(&url, "rampart_test_").await;
            let postgres = Arc::new(CachedStore::new(PostgresStore::connect(&schema.url, 4).await.unwrap()));
            postgres.migrate().await.unwrap();
            check(postgres.clone()).await;
            schema.drop().await;
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true but TEST_POSTGRES_URL is not set"),
        _ => eprintln!("PostgreSQL half skipped: TEST_POSTGRES_URL is not set"),
    }
}

fn new_user(email: &str, role: Role, department: Option<&str>) -> NewUser {
    NewUser {
        email: Email::parse(email).unwrap(),
        name: UserName::parse("Test Person").unwrap(),
        role,
        department: department.and_then(|d| Department::parse(d).unwrap()),
        password_hash: Some("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into()),
        email_verified: false,
    }
}

/// A password-less user and their provider link, in one unit of work.
async fn create_with_identity(store: &dyn Store, new_user: NewUser, identity: &Identity) -> Result<User, StoreError> {
    let mut work = store.begin().await?;
    let user = work.create_user(new_user).await?;
    work.link_identity(identity, user.id).await?;
    work.commit().await?;
    Ok(user)
}

/// Admins that are not disabled, as the last-admin rule counts them.
async fn active_admins(store: &dyn Store) -> usize {
    let users = store.list_users(None, 1000).await.unwrap();
    users.iter().filter(|user| user.role == Role::Admin && !user.disabled).count()
}

fn hash(n: u8) -> [u8; 32] {
    [n; 32]
}

/// The successor `hash(n)` of a rotation at `now`, valid for a day.
fn successor(n: u8, now: OffsetDateTime) -> RefreshSuccessor {
    RefreshSuccessor { token_hash: hash(n), expires_at: now + Duration::days(1) }
}

#[tokio::test]
async fn migrations_are_idempotent_and_the_store_answers() {
    on_every_backend(|store| async move {
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn users_are_unique_by_email_without_case_and_round_trip() {
    on_every_backend(|store| async move {
        let ada = store.create_user(new_user("Ada@Example.com", Role::Admin, Some("eng"))).await.unwrap();
        assert_eq!(ada.email, "Ada@Example.com");
        let again = store.create_user(new_user("ada@EXAMPLE.com", Role::User, None)).await;
        assert!(matches!(again, Err(StoreError::Conflict("email"))), "{again:?}");

        let found = store.user_by_id(ada.id).await.unwrap();
        assert_eq!(found, ada);
        let credentials = store.credentials_by_email(&Email::parse("ADA@example.com").unwrap()).await.unwrap().unwrap();
        assert_eq!(credentials.user.id, ada.id);
        assert!(credentials.password_hash.unwrap().starts_with("$argon2id$"));
        assert!(store.credentials_by_email(&Email::parse("nobody@example.com").unwrap()).await.unwrap().is_none());
        assert!(matches!(store.user_by_id(Uuid::now_v7()).await, Err(StoreError::NotFound)));

        store.set_password_hash(ada.id, "$argon2id$new").await.unwrap();
        assert_eq!(store.password_hash(ada.id).await.unwrap().as_deref(), Some("$argon2id$new"));
        let renamed = store
            .change_user(ada.id, &UserChanges { name: Some(UserName::parse("Ada L.").unwrap()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(renamed.name, "Ada L.");
        assert!(matches!(store.set_password_hash(Uuid::now_v7(), "x").await, Err(StoreError::NotFound)));
    })
    .await;
}

#[tokio::test]
async fn admin_changes_apply_only_what_is_given() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("u@example.com", Role::User, Some("sales"))).await.unwrap();
        let promoted =
            store.change_user(user.id, &UserChanges { role: Some(Role::Manager), ..Default::default() }).await.unwrap();
        assert_eq!(
            (promoted.role, promoted.department.as_deref(), promoted.disabled),
            (Role::Manager, Some("sales"), false)
        );
        let cleared =
            store.change_user(user.id, &UserChanges { department: Some(None), ..Default::default() }).await.unwrap();
        assert_eq!(cleared.department, None);
        assert_eq!(cleared.role, Role::Manager);
        let disabled =
            store.change_user(user.id, &UserChanges { disabled: Some(true), ..Default::default() }).await.unwrap();
        assert!(disabled.disabled);
        let missing =
            store.change_user(Uuid::now_v7(), &UserChanges { disabled: Some(true), ..Default::default() }).await;
        assert!(matches!(missing, Err(StoreError::NotFound)));

        store.create_user(new_user("a1@example.com", Role::Admin, None)).await.unwrap();
        let a2 = store.create_user(new_user("a2@example.com", Role::Admin, None)).await.unwrap();
        assert_eq!(store.count_admins().await.unwrap(), 2);
        store.change_user(a2.id, &UserChanges { disabled: Some(true), ..Default::default() }).await.unwrap();
        assert_eq!(active_admins(&*store).await, 1);
    })
    .await;
}

#[tokio::test]
async fn users_list_in_pages_and_deletion_cascades() {
    on_every_backend(|store| async move {
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(store.create_user(new_user(&format!("p{n}@example.com"), Role::User, None)).await.unwrap().id);
        }
        let first = store.list_users(None, 2).await.unwrap();
        assert_eq!(first.iter().map(|u| u.id).collect::<Vec<_>>(), ids[..2]);
        let rest = store.list_users(Some(first[1].id), 10).await.unwrap();
        assert_eq!(rest.iter().map(|u| u.id).collect::<Vec<_>>(), ids[2..]);

        let post =
            store.create_post(ids[0], &PostTitle::parse("t").unwrap(), &PostBody::parse("b").unwrap()).await.unwrap();
        let now = OffsetDateTime::now_utc();
        store
            .insert_session(&SessionRecord {
                id_hash: hash(1),
                user_id: ids[0],
                csrf_hash: hash(2),
                created_at: now,
                idle_expires_at: now + Duration::minutes(30),
                absolute_expires_at: now + Duration::hours(12),
                sign_in: SignInMethod::Password,
            })
            .await
            .unwrap();
        store.delete_user(ids[0]).await.unwrap();
        assert!(matches!(store.post_by_id(post.id).await, Err(StoreError::NotFound)), "posts go with their author");
        assert!(store.session(&hash(1)).await.unwrap().is_none(), "sessions go with their user");
        assert!(matches!(store.delete_user(ids[0]).await, Err(StoreError::NotFound)));
    })
    .await;
}

#[tokio::test]
async fn refresh_tokens_are_single_use_and_reuse_is_detected() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("r@example.com", Role::User, None)).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let family = Uuid::now_v7();
        let record = |n: u8, expires_at| RefreshTokenRecord {
            token_hash: hash(n),
            family_id: family,
            user_id: user.id,
            issued_at: now,
            expires_at,
            // Kept by every successor, and so in each access token's amr.
            sign_in: SignInMethod::PasswordAndCode,
        };
        store.insert_refresh_token(&record(10, now + Duration::days(1))).await.unwrap();
        assert_eq!(
            store.rotate_refresh_token(&hash(10), &successor(40, now), now).await.unwrap(),
            RefreshUse::Rotated { family_id: family, user_id: user.id, sign_in: SignInMethod::PasswordAndCode }
        );
        assert_eq!(
            store.rotate_refresh_token(&hash(10), &successor(41, now), now).await.unwrap(),
            RefreshUse::Reused { family_id: family, user_id: user.id }
        );
        assert_eq!(
            store.rotate_refresh_token(&hash(40), &successor(42, now), now).await.unwrap(),
            RefreshUse::Rotated { family_id: family, user_id: user.id, sign_in: SignInMethod::PasswordAndCode },
            "the successor is live, in the same family, made the same way"
        );
        assert_eq!(
            store.rotate_refresh_token(&hash(41), &successor(43, now), now).await.unwrap(),
            RefreshUse::Invalid,
            "a refused rotation stores no successor"
        );
        assert_eq!(store.rotate_refresh_token(&hash(99), &successor(44, now), now).await.unwrap(), RefreshUse::Invalid);

        store.insert_refresh_token(&record(11, now - Duration::seconds(1))).await.unwrap();
        assert_eq!(
            store.rotate_refresh_token(&hash(11), &successor(45, now), now).await.unwrap(),
            RefreshUse::Invalid,
            "expired"
        );

        store.insert_refresh_token(&record(12, now + Duration::days(1))).await.unwrap();
        store.revoke_refresh_family(family, now).await.unwrap();
        assert_eq!(
            store.rotate_refresh_token(&hash(12), &successor(46, now), now).await.unwrap(),
            RefreshUse::Invalid,
            "revoked family"
        );
        assert_eq!(
            store.rotate_refresh_token(&hash(42), &successor(47, now), now).await.unwrap(),
            RefreshUse::Invalid,
            "the family's newest token is revoked too"
        );

        store
            .insert_refresh_token(&RefreshTokenRecord {
                family_id: Uuid::now_v7(),
                ..record(13, now + Duration::days(1))
            })
            .await
            .unwrap();
        store.revoke_user_refresh_tokens(user.id, now).await.unwrap();
        assert_eq!(
            store.rotate_refresh_token(&hash(13), &successor(48, now), now).await.unwrap(),
            RefreshUse::Invalid,
            "revoked user"
        );

        // Concurrent uses of one token: exactly one rotation.
        store
            .insert_refresh_token(&RefreshTokenRecord {
                family_id: Uuid::now_v7(),
                ..record(14, now + Duration::days(1))
            })
            .await
            .unwrap();
        let attempts: Vec<_> = (0..8u8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.rotate_refresh_token(&hash(14), &successor(50 + n, now), now).await.unwrap()
                })
            })
            .collect();
        let mut rotated = 0;
        for attempt in attempts {
            if matches!(attempt.await.unwrap(), RefreshUse::Rotated { .. }) {
                rotated += 1;
            }
        }
        assert_eq!(rotated, 1);
    })
    .await;
}

/// A revocation stored in the list (logout-all, a reused family) counts
/// even when the refresh tokens themselves were not marked (the marking
/// failed, or has not run yet): no rotation, no successor.
#[tokio::test]
async fn a_stored_revocation_of_the_family_or_user_refuses_the_rotation() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("stored@example.com", Role::User, None)).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let token = |n: u8, family_id| RefreshTokenRecord {
            token_hash: hash(n),
            family_id,
            user_id: user.id,
            issued_at: now - Duration::minutes(5),
            expires_at: now + Duration::days(1),
            sign_in: SignInMethod::Password,
        };
        let revocation = |kind, subject, revoked_before| Revocation {
            kind,
            subject,
            revoked_before,
            expires_at: now + Duration::minutes(16),
        };

        let revoked_family = Uuid::now_v7();
        store.insert_refresh_token(&token(1, revoked_family)).await.unwrap();
        store.insert_revocation(&revocation(RevocationKind::Family, revoked_family, None)).await.unwrap();
        assert_eq!(store.rotate_refresh_token(&hash(1), &successor(2, now), now).await.unwrap(), RefreshUse::Invalid);
        assert_eq!(
            store.rotate_refresh_token(&hash(2), &successor(3, now), now).await.unwrap(),
            RefreshUse::Invalid,
            "no successor was stored"
        );
        assert_eq!(
            store.rotate_refresh_token(&hash(1), &successor(4, now), now).await.unwrap(),
            RefreshUse::Invalid,
            "the refused token was not spent either (no reuse alarm)"
        );

        // A user mark voids what was issued before it, not what came after.
        let other_family = Uuid::now_v7();
        store.insert_refresh_token(&token(5, other_family)).await.unwrap();
        store
            .insert_revocation(&revocation(RevocationKind::User, user.id, Some(now - Duration::minutes(1))))
            .await
            .unwrap();
        assert_eq!(store.rotate_refresh_token(&hash(5), &successor(6, now), now).await.unwrap(), RefreshUse::Invalid);
        let after_mark = Uuid::now_v7();
        store.insert_refresh_token(&RefreshTokenRecord { issued_at: now, ..token(7, after_mark) }).await.unwrap();
        assert_eq!(
            store.rotate_refresh_token(&hash(7), &successor(8, now), now).await.unwrap(),
            RefreshUse::Rotated { family_id: after_mark, user_id: user.id, sign_in: SignInMethod::Password },
            "a sign-in after the mark is not touched by it"
        );
    })
    .await;
}

#[tokio::test]
async fn a_disabled_or_deleted_user_cannot_rotate_or_receive_a_first_token() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("gone@example.com", Role::User, None)).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let token = |n: u8| RefreshTokenRecord {
            token_hash: hash(n),
            family_id: Uuid::now_v7(),
            user_id: user.id,
            issued_at: now,
            expires_at: now + Duration::days(1),
            sign_in: SignInMethod::Password,
        };
        store.insert_refresh_token(&token(1)).await.unwrap();
        store.insert_refresh_token(&token(2)).await.unwrap();
        store.change_user(user.id, &UserChanges { disabled: Some(true), ..Default::default() }).await.unwrap();
        assert_eq!(store.rotate_refresh_token(&hash(1), &successor(3, now), now).await.unwrap(), RefreshUse::Invalid);
        store.change_user(user.id, &UserChanges { disabled: Some(false), ..Default::default() }).await.unwrap();
        store.delete_user(user.id).await.unwrap();
        assert_eq!(store.rotate_refresh_token(&hash(2), &successor(4, now), now).await.unwrap(), RefreshUse::Invalid);
        // A sign-in that read the user just before the deletion.
        let first = store.insert_refresh_token(&token(5)).await;
        assert!(matches!(first, Err(StoreError::NotFound)), "{first:?}");
        let session = SessionRecord {
            id_hash: hash(6),
            user_id: user.id,
            csrf_hash: hash(7),
            created_at: now,
            idle_expires_at: now + Duration::minutes(30),
            absolute_expires_at: now + Duration::hours(1),
            sign_in: SignInMethod::Password,
        };
        let opened = store.insert_session(&session).await;
        assert!(matches!(opened, Err(StoreError::NotFound)), "{opened:?}");
    })
    .await;
}

/// A rotation racing the revocation of its family (logout, reuse) or of its
/// user (logout-all), or the user's deletion, many times: whoever wins, no
/// successor survives the revocation, and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_racing_a_revocation_never_leaves_a_live_successor() {
    on_every_backend(|store| async move {
        let now = OffsetDateTime::now_utc();
        for round in 0..30u8 {
            let user =
                store.create_user(new_user(&format!("race{round}@example.com"), Role::User, None)).await.unwrap();
            let family = Uuid::now_v7();
            let (old, next, after) = (round * 3 + 1, round * 3 + 2, round * 3 + 3);
            store
                .insert_refresh_token(&RefreshTokenRecord {
                    token_hash: hash(old),
                    family_id: family,
                    user_id: user.id,
                    issued_at: now,
                    expires_at: now + Duration::days(1),
                    sign_in: SignInMethod::Password,
                })
                .await
                .unwrap();
            let rotation = {
                let store = store.clone();
                tokio::spawn(async move { store.rotate_refresh_token(&hash(old), &successor(next, now), now).await })
            };
            let revocation = {
                let store = store.clone();
                tokio::spawn(async move {
                    match round % 3 {
                        0 => store.revoke_refresh_family(family, now).await,
                        1 => store.revoke_user_refresh_tokens(user.id, now).await,
                        _ => store.delete_user(user.id).await,
                    }
                })
            };
            let (rotated, revoked) = (rotation.await.unwrap(), revocation.await.unwrap());
            revoked.unwrap_or_else(|error| panic!("round {round}: the revocation failed: {error:?}"));
            let rotated = rotated.unwrap_or_else(|error| panic!("round {round}: the rotation failed: {error:?}"));
            assert!(matches!(rotated, RefreshUse::Rotated { .. } | RefreshUse::Invalid), "round {round}: {rotated:?}");
            assert_eq!(
                store.rotate_refresh_token(&hash(next), &successor(after, now), now).await.unwrap(),
                RefreshUse::Invalid,
                "round {round}: the successor ({rotated:?}) outlived the revocation"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn sessions_are_stored_extended_and_deleted_by_hash() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("s@example.com", Role::User, None)).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let session = SessionRecord {
            id_hash: hash(3),
            user_id: user.id,
            csrf_hash: hash(4),
            created_at: now,
            idle_expires_at: now + Duration::minutes(30),
            absolute_expires_at: now + Duration::hours(12),
            sign_in: SignInMethod::Provider,
        };
        store.insert_session(&session).await.unwrap();
        let found = store.session(&hash(3)).await.unwrap().unwrap();
        assert_eq!((found.user_id, found.csrf_hash), (user.id, hash(4)));
        assert_eq!(found.sign_in, SignInMethod::Provider, "how the user signed in is kept");
        let later = now + Duration::hours(1);
        store.extend_session(&hash(3), later).await.unwrap();
        assert_eq!(
            store.session(&hash(3)).await.unwrap().unwrap().idle_expires_at.unix_timestamp(),
            later.unix_timestamp()
        );
        store.insert_session(&SessionRecord { id_hash: hash(5), ..session.clone() }).await.unwrap();
        assert_eq!(store.count_active_sessions(now).await.unwrap(), 2);
        assert_eq!(store.count_active_sessions(now + Duration::days(1)).await.unwrap(), 0);
        store.delete_session(&hash(3)).await.unwrap();
        assert!(store.session(&hash(3)).await.unwrap().is_none());
        assert!(store.session(&hash(5)).await.unwrap().is_some());
        store.delete_user_sessions(user.id).await.unwrap();
        assert!(store.session(&hash(5)).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn revocations_survive_and_expire() {
    on_every_backend(|store| async move {
        let now = OffsetDateTime::now_utc();
        let user = Uuid::now_v7();
        let early = Revocation {
            kind: RevocationKind::User,
            subject: user,
            revoked_before: Some(now),
            expires_at: now + Duration::minutes(5),
        };
        store.insert_revocation(&early).await.unwrap();
        let later_mark = now + Duration::seconds(10);
        store
            .insert_revocation(&Revocation {
                revoked_before: Some(later_mark),
                expires_at: now + Duration::minutes(1),
                ..early.clone()
            })
            .await
            .unwrap();
        let token = Revocation {
            kind: RevocationKind::Token,
            subject: Uuid::now_v7(),
            revoked_before: None,
            expires_at: now + Duration::minutes(15),
        };
        store.insert_revocation(&token).await.unwrap();
        let gone = Revocation {
            kind: RevocationKind::Family,
            subject: Uuid::now_v7(),
            revoked_before: None,
            expires_at: now - Duration::seconds(1),
        };
        store.insert_revocation(&gone).await.unwrap();

        let active = store.active_revocations(now).await.unwrap();
        assert_eq!(active.len(), 2, "{active:?}");
        let user_mark = active.iter().find(|r| r.kind == RevocationKind::User).unwrap();
        assert_eq!(
            user_mark.revoked_before.unwrap().unix_timestamp(),
            later_mark.unix_timestamp(),
            "the newer mark wins"
        );
        assert_eq!(
            user_mark.expires_at.unix_timestamp(),
            (now + Duration::minutes(5)).unix_timestamp(),
            "the later expiry is kept"
        );
        store.purge_expired(now + Duration::minutes(10)).await.unwrap();
        let left = store.active_revocations(now).await.unwrap();
        assert_eq!(left.iter().map(|r| r.kind).collect::<Vec<_>>(), [RevocationKind::Token]);
    })
    .await;
}

#[tokio::test]
async fn posts_list_newest_first_with_their_authors_attributes() {
    on_every_backend(|store| async move {
        let author = store.create_user(new_user("w@example.com", Role::Manager, Some("sales"))).await.unwrap();
        let title = |t: &str| PostTitle::parse(t).unwrap();
        let body = PostBody::parse("body").unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(store.create_post(author.id, &title(&format!("post {n}")), &body).await.unwrap().id);
        }
        let page = store.list_posts(None, 2).await.unwrap();
        assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), [ids[2], ids[1]]);
        let rest = store.list_posts(Some(ids[1]), 2).await.unwrap();
        assert_eq!(rest.iter().map(|p| p.id).collect::<Vec<_>>(), [ids[0]]);

        let found = store.post_by_id(ids[0]).await.unwrap();
        assert_eq!(found.author_department.as_deref(), Some("sales"));
        assert_eq!(found.author_role, Some(Role::Manager));
        let updated = store.update_post(ids[0], &title("renamed"), &body).await.unwrap();
        assert_eq!(updated.title, "renamed");
        assert!(updated.updated_at >= updated.created_at);
        store.delete_post(ids[0]).await.unwrap();
        assert!(matches!(store.delete_post(ids[0]).await, Err(StoreError::NotFound)));
        assert!(matches!(store.update_post(ids[0], &title("x"), &body).await, Err(StoreError::NotFound)));

        let counts = store.dashboard_counts(OffsetDateTime::now_utc()).await.unwrap();
        assert_eq!((counts.users, counts.managers, counts.posts), (1, 1, 2));
    })
    .await;
}

#[tokio::test]
async fn audit_events_are_stored_in_batches() {
    on_every_backend(|store| async move {
        let events: Vec<AuditEvent> = (0..3)
            .map(|n| AuditEvent {
                id: Uuid::now_v7(),
                time: OffsetDateTime::now_utc(),
                request_id: Some(format!("req-{n}")),
                event: AuditKind::LoginFailure,
                user_id: None,
                client_ip: Some("203.0.113.9".parse().unwrap()),
                route: Some("/auth/login".into()),
                outcome: Outcome::Failure,
                detail: None,
            })
            .collect();
        store.insert_audit_events(&events).await.unwrap();
        store.insert_audit_events(&[]).await.unwrap();

        let newest_first = store.list_audit_events(&AuditFilter::default(), None, 10).await.unwrap();
        assert_eq!(newest_first.iter().map(|e| e.id).collect::<Vec<_>>(), [events[2].id, events[1].id, events[0].id]);
        assert_eq!(newest_first[0].client_ip, events[2].client_ip);
        assert_eq!(newest_first[0].event, AuditKind::LoginFailure);
        let page = store.list_audit_events(&AuditFilter::default(), Some(events[2].id), 1).await.unwrap();
        assert_eq!(page[0].id, events[1].id);
        let by_ip = AuditFilter { client_ip: Some("203.0.113.9".parse().unwrap()), ..Default::default() };
        assert_eq!(store.list_audit_events(&by_ip, None, 10).await.unwrap().len(), 3);
        let other_event = AuditFilter { event: Some("signup".into()), ..Default::default() };
        assert!(store.list_audit_events(&other_event, None, 10).await.unwrap().is_empty());
        let before = AuditFilter { to: Some(OffsetDateTime::now_utc() - Duration::hours(1)), ..Default::default() };
        assert!(store.list_audit_events(&before, None, 10).await.unwrap().is_empty());
        let by_user = AuditFilter { user_id: Some(Uuid::now_v7()), ..Default::default() };
        assert!(store.list_audit_events(&by_user, None, 10).await.unwrap().is_empty());

        assert_eq!(store.purge_audit_events(OffsetDateTime::now_utc() - Duration::hours(1)).await.unwrap(), 0);
        assert_eq!(store.purge_audit_events(OffsetDateTime::now_utc() + Duration::seconds(1)).await.unwrap(), 3);
        assert!(store.list_audit_events(&AuditFilter::default(), None, 10).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn blocks_are_listed_while_in_force_and_lifted_by_id() {
    on_every_backend(|store| async move {
        let now = OffsetDateTime::now_utc();
        let block = |ip: &str, expires_at| Block {
            id: Uuid::now_v7(),
            ip: ip.into(),
            reason: "test".into(),
            created_at: now,
            expires_at,
        };
        let lasting = block("192.0.2.1", Some(now + Duration::minutes(15)));
        let forever = block("2001:db8::/64", None);
        let expired = block("192.0.2.2", Some(now - Duration::seconds(1)));
        for b in [&lasting, &forever, &expired] {
            store.insert_block(b).await.unwrap();
        }
        let active = store.list_blocks(now, None, 10).await.unwrap();
        assert_eq!(
            active.iter().map(|b| b.id).collect::<Vec<_>>(),
            [forever.id, lasting.id],
            "newest first, expired left out"
        );
        assert_eq!(store.list_blocks(now, Some(forever.id), 10).await.unwrap().len(), 1);
        assert_eq!(store.delete_block(lasting.id).await.unwrap().ip, "192.0.2.1");
        assert!(matches!(store.delete_block(lasting.id).await, Err(StoreError::NotFound)));
    })
    .await;
}

#[tokio::test]
async fn oauth_identities_link_once_and_new_accounts_are_atomic() {
    on_every_backend(|store| async move {
        let existing = store.create_user(new_user("linked@example.com", Role::User, None)).await.unwrap();
        let github = Identity { provider: "github".into(), subject: "1234".into() };
        assert!(store.user_by_identity(&github).await.unwrap().is_none());
        store.link_identity(&github, existing.id).await.unwrap();
        assert_eq!(store.user_by_identity(&github).await.unwrap().unwrap().id, existing.id);
        // One provider account, one user.
        let other = store.create_user(new_user("other@example.com", Role::User, None)).await.unwrap();
        assert!(matches!(store.link_identity(&github, other.id).await, Err(StoreError::Conflict("identity"))));
        // The same subject at another provider is another identity.
        let google = Identity { provider: "google".into(), subject: "1234".into() };
        assert!(store.user_by_identity(&google).await.unwrap().is_none());

        let password_less = NewUser { password_hash: None, ..new_user("new@example.com", Role::User, None) };
        let created = create_with_identity(&*store, password_less, &google).await.unwrap();
        assert_eq!(store.user_by_identity(&google).await.unwrap().unwrap().id, created.id);
        assert!(store.password_hash(created.id).await.unwrap().is_none(), "no password until the user sets one");

        // A taken email leaves neither a user nor a link behind.
        let gitlab = Identity { provider: "gitlab".into(), subject: "9".into() };
        let taken = create_with_identity(&*store, new_user("NEW@example.com", Role::User, None), &gitlab).await;
        assert!(matches!(taken, Err(StoreError::Conflict("email"))));
        assert!(store.user_by_identity(&gitlab).await.unwrap().is_none());
        // A linked subject cannot create a second user, and rolls back the user.
        let again = create_with_identity(&*store, new_user("third@example.com", Role::User, None), &google).await;
        assert!(matches!(again, Err(StoreError::Conflict("identity"))));
        assert_eq!(store.list_users(None, 100).await.unwrap().len(), 3);

        store.delete_user(existing.id).await.unwrap();
        assert!(store.user_by_identity(&github).await.unwrap().is_none(), "links go with their user");
    })
    .await;
}

#[tokio::test]
async fn oauth_flows_are_taken_once_and_only_before_they_expire() {
    on_every_backend(|store| async move {
        let now = OffsetDateTime::now_utc();
        let flow = OAuthFlow {
            id_hash: hash(7),
            provider: "google".into(),
            state_hash: hash(8),
            pkce_verifier: "verifier".into(),
            nonce: "nonce".into(),
            redirect_to: "/account".into(),
            expires_at: now + Duration::minutes(10),
            link_user_id: None,
        };
        store.insert_oauth_flow(&flow).await.unwrap();
        let taken = store.take_oauth_flow(&hash(7), now).await.unwrap().unwrap();
        assert_eq!((taken.provider.as_str(), taken.state_hash, taken.nonce.as_str()), ("google", hash(8), "nonce"));
        assert_eq!(taken.expires_at.unix_timestamp(), flow.expires_at.unix_timestamp());
        assert!(store.take_oauth_flow(&hash(7), now).await.unwrap().is_none(), "a flow finishes once");

        store.insert_oauth_flow(&OAuthFlow { id_hash: hash(9), ..flow.clone() }).await.unwrap();
        let late = now + Duration::minutes(11);
        assert!(store.take_oauth_flow(&hash(9), late).await.unwrap().is_none(), "expired flows are refused");

        store.insert_oauth_flow(&OAuthFlow { id_hash: hash(10), ..flow.clone() }).await.unwrap();
        store.purge_expired(late).await.unwrap();
        assert!(store.take_oauth_flow(&hash(10), now).await.unwrap().is_none(), "expired flows are purged");
    })
    .await;
}

#[tokio::test]
async fn email_verified_round_trips_and_defaults_false_for_sign_ups() {
    on_every_backend(|store| async move {
        // A sign-up: the address is not proven.
        let signed_up = store.create_user(new_user("signup@example.com", Role::User, None)).await.unwrap();
        assert!(!signed_up.email_verified);
        // The CLI, `[bootstrap]` or a verified provider sign-in: proven.
        let vouched = NewUser { email_verified: true, ..new_user("vouched@example.com", Role::Admin, None) };
        let vouched = store.create_user(vouched).await.unwrap();
        assert!(vouched.email_verified);
        let github = Identity { provider: "github".into(), subject: "77".into() };
        let from_provider =
            NewUser { password_hash: None, email_verified: true, ..new_user("provider@example.com", Role::User, None) };
        let from_provider = create_with_identity(&*store, from_provider, &github).await.unwrap();

        for (user, verified) in [(&signed_up, false), (&vouched, true), (&from_provider, true)] {
            assert_eq!(store.user_by_id(user.id).await.unwrap().email_verified, verified, "{}", user.email);
            let email = Email::parse(&user.email).unwrap();
            let credentials = store.credentials_by_email(&email).await.unwrap().unwrap();
            assert_eq!(credentials.user.email_verified, verified, "{}", user.email);
        }
        assert!(store.user_by_identity(&github).await.unwrap().unwrap().email_verified);
        let listed = store.list_users(None, 10).await.unwrap();
        let flags: Vec<(String, bool)> = listed.iter().map(|u| (u.email.clone(), u.email_verified)).collect();
        assert_eq!(
            flags,
            [
                ("signup@example.com".to_owned(), false),
                ("vouched@example.com".to_owned(), true),
                ("provider@example.com".to_owned(), true),
            ]
        );
        // A change to the user keeps it.
        let changes = UserChanges { department: Some(Department::parse("eng").unwrap()), ..Default::default() };
        let changed = store.change_user(vouched.id, &changes).await;
        assert!(changed.unwrap().email_verified);
    })
    .await;
}

#[tokio::test]
async fn a_link_flow_keeps_its_user_and_goes_with_it() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("linker@example.com", Role::User, None)).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let flow = OAuthFlow {
            id_hash: hash(20),
            provider: "github".into(),
            state_hash: hash(21),
            pkce_verifier: "verifier".into(),
            nonce: String::new(),
            redirect_to: "/account".into(),
            expires_at: now + Duration::minutes(10),
            link_user_id: Some(user.id),
        };
        store.insert_oauth_flow(&flow).await.unwrap();
        assert_eq!(store.take_oauth_flow(&hash(20), now).await.unwrap().unwrap().link_user_id, Some(user.id));
        // A deleted user's link flows go with them.
        store.insert_oauth_flow(&OAuthFlow { id_hash: hash(22), ..flow.clone() }).await.unwrap();
        store.delete_user(user.id).await.unwrap();
        assert!(store.take_oauth_flow(&hash(22), now).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn a_user_read_just_before_a_change_is_never_served_stale() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("cached@example.com", Role::User, None)).await.unwrap();
        assert_eq!(store.user_by_id(user.id).await.unwrap().role, Role::User);
        let changes = UserChanges { role: Some(Role::Manager), disabled: Some(true), ..Default::default() };
        store.change_user(user.id, &changes).await.unwrap();
        let read = store.user_by_id(user.id).await.unwrap();
        assert_eq!((read.role, read.disabled), (Role::Manager, true));
        let snapshot = store.user_shared(user.id).await.unwrap();
        assert_eq!(*snapshot, read, "the shared value is the same user");
        assert!(std::sync::Arc::ptr_eq(&snapshot, &store.user_shared(user.id).await.unwrap()), "cached, shared");
        store
            .change_user(
                user.id,
                &UserChanges { name: Some(UserName::parse("New Name").unwrap()), ..Default::default() },
            )
            .await
            .unwrap();
        assert_eq!(store.user_by_id(user.id).await.unwrap().name, "New Name");
        let renamed = store.user_shared(user.id).await.unwrap();
        assert!(renamed.name == "New Name" && !std::sync::Arc::ptr_eq(&snapshot, &renamed), "a write makes a new one");
        store.delete_user(user.id).await.unwrap();
        assert!(matches!(store.user_by_id(user.id).await, Err(StoreError::NotFound)));
        assert!(matches!(store.user_shared(user.id).await, Err(StoreError::NotFound)));
    })
    .await;
}

#[tokio::test]
async fn the_newest_posts_reflect_every_write_at_once() {
    on_every_backend(|store| async move {
        let author = store.create_user(new_user("writer@example.com", Role::User, None)).await.unwrap();
        let title = |t: &str| PostTitle::parse(t).unwrap();
        let body = PostBody::parse("body").unwrap();
        let first = store.create_post(author.id, &title("first"), &body).await.unwrap();
        assert_eq!(store.list_posts(None, 10).await.unwrap().len(), 1);
        let second = store.create_post(author.id, &title("second"), &body).await.unwrap();
        let page = store.list_posts(None, 10).await.unwrap();
        assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), [second.id, first.id], "a new post shows at once");
        assert_eq!(store.list_posts(None, 1).await.unwrap().len(), 1, "another limit is another page");
        store.update_post(first.id, &title("first, edited"), &body).await.unwrap();
        assert_eq!(store.list_posts(None, 10).await.unwrap()[1].title, "first, edited");
        store.delete_post(second.id).await.unwrap();
        assert_eq!(store.list_posts(None, 10).await.unwrap().len(), 1);
        store.delete_user(author.id).await.unwrap();
        assert!(store.list_posts(None, 10).await.unwrap().is_empty(), "a deleted author's posts go too");
    })
    .await;
}

#[tokio::test]
async fn a_unit_of_work_lands_whole_or_not_at_all() {
    on_every_backend(|store| async move {
        let github = Identity { provider: "github".into(), subject: "77".into() };

        let mut abandoned = store.begin().await.unwrap();
        let user = abandoned.create_user(new_user("uow@example.com", Role::User, None)).await.unwrap();
        abandoned.link_identity(&github, user.id).await.unwrap();
        drop(abandoned);
        assert!(matches!(store.user_by_id(user.id).await, Err(StoreError::NotFound)), "dropped: no user");
        assert!(store.user_by_identity(&github).await.unwrap().is_none(), "dropped: no link");

        let mut work = store.begin().await.unwrap();
        let user = work.create_user(new_user("uow@example.com", Role::User, None)).await.unwrap();
        work.link_identity(&github, user.id).await.unwrap();
        work.commit().await.unwrap();
        assert_eq!(store.user_by_id(user.id).await.unwrap(), user);
        assert_eq!(store.user_by_identity(&github).await.unwrap().unwrap().id, user.id);
    })
    .await;
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted() {
    on_every_backend(|store| async move {
        let only = store.create_user(new_user("only@example.com", Role::Admin, None)).await.unwrap();
        let demote = UserChanges { role: Some(Role::User), ..Default::default() };
        let disable = UserChanges { disabled: Some(true), ..Default::default() };
        assert!(matches!(store.change_user(only.id, &demote).await, Err(StoreError::LastActiveAdmin)));
        assert!(matches!(store.change_user(only.id, &disable).await, Err(StoreError::LastActiveAdmin)));
        assert!(matches!(store.delete_user(only.id).await, Err(StoreError::LastActiveAdmin)));
        // What keeps them an admin is still allowed.
        let moved = UserChanges { department: Some(Department::parse("ops").unwrap()), ..Default::default() };
        assert_eq!(store.change_user(only.id, &moved).await.unwrap().department.as_deref(), Some("ops"));
        assert_eq!(store.user_by_id(only.id).await.unwrap().role, Role::Admin);
        // A disabled admin does not count, and can go.
        let second = store.create_user(new_user("second@example.com", Role::Admin, None)).await.unwrap();
        store.change_user(second.id, &disable).await.unwrap();
        assert!(matches!(store.change_user(only.id, &demote).await, Err(StoreError::LastActiveAdmin)));
        store.delete_user(second.id).await.unwrap();
        assert_eq!(active_admins(&*store).await, 1);
    })
    .await;
}

/// Two admins each take the other's rights at the same moment, many times:
/// exactly one may win each time, so one active admin always remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_demotions_never_remove_the_last_active_admin() {
    on_every_backend(|store| async move {
        let demote = UserChanges { role: Some(Role::User), ..Default::default() };
        let disable = UserChanges { disabled: Some(true), ..Default::default() };
        // Each round races the previous round's survivor against a new admin.
        let mut survivor = store.create_user(new_user("first@example.com", Role::Admin, None)).await.unwrap();
        for round in 0..24 {
            let newcomer =
                store.create_user(new_user(&format!("admin{round}@example.com"), Role::Admin, None)).await.unwrap();
            assert_eq!(active_admins(&*store).await, 2);
            let take_rights = |id: Uuid, how: usize| {
                let store = store.clone();
                let (demote, disable) = (demote.clone(), disable.clone());
                tokio::spawn(async move {
                    match how % 3 {
                        0 => store.change_user(id, &demote).await.map(drop),
                        1 => store.change_user(id, &disable).await.map(drop),
                        _ => store.delete_user(id).await,
                    }
                })
            };
            let (first, second) = tokio::join!(take_rights(survivor.id, round), take_rights(newcomer.id, round / 3));
            let (first, second) = (first.unwrap(), second.unwrap());
            let refused = [&first, &second].into_iter().filter(|r| matches!(r, Err(StoreError::LastActiveAdmin)));
            assert_eq!(refused.count(), 1, "round {round}: exactly one is refused: {first:?} {second:?}");
            assert!(first.is_ok() || second.is_ok(), "round {round}: {first:?} {second:?}");
            assert_eq!(active_admins(&*store).await, 1, "round {round}");
            survivor = if first.is_err() { survivor } else { newcomer };
        }
    })
    .await;
}

/// What the hourly housekeeping does (`housekeeping::hourly`, run every
/// `housekeeping::EVERY`): expired sessions, refresh tokens and OAuth flows
/// go; live ones stay. Each is read back at a time when it was still live,
/// so only its deletion can hide it.
#[tokio::test]
async fn the_hourly_housekeeping_purges_what_expired() {
    assert_eq!(rampart::housekeeping::EVERY, std::time::Duration::from_secs(3600));
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("purge@example.com", Role::User, None)).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let later = now + Duration::minutes(2);
        let session = |n: u8, idle: Duration| SessionRecord {
            id_hash: hash(n),
            user_id: user.id,
            csrf_hash: hash(n),
            created_at: now,
            idle_expires_at: now + idle,
            absolute_expires_at: now + Duration::hours(10),
            sign_in: SignInMethod::Password,
        };
        store.insert_session(&session(1, Duration::minutes(1))).await.unwrap();
        store.insert_session(&session(2, Duration::minutes(30))).await.unwrap();
        let family = Uuid::now_v7();
        let refresh = |n: u8, expires: Duration| RefreshTokenRecord {
            token_hash: hash(n),
            family_id: family,
            user_id: user.id,
            issued_at: now,
            expires_at: now + expires,
            sign_in: SignInMethod::Password,
        };
        store.insert_refresh_token(&refresh(3, Duration::minutes(1))).await.unwrap();
        store.rotate_refresh_token(&hash(3), &successor(4, now), now).await.unwrap();
        let flow = |n: u8, expires: Duration| OAuthFlow {
            id_hash: hash(n),
            provider: "google".into(),
            state_hash: hash(n),
            pkce_verifier: "verifier".into(),
            nonce: String::new(),
            redirect_to: "/account".into(),
            expires_at: now + expires,
            link_user_id: None,
        };
        store.insert_oauth_flow(&flow(5, Duration::minutes(1))).await.unwrap();
        store.insert_oauth_flow(&flow(6, Duration::minutes(10))).await.unwrap();

        rampart::housekeeping::hourly(&*store, later, Duration::days(90)).await.unwrap();

        assert!(store.session(&hash(1)).await.unwrap().is_none(), "the expired session is purged");
        assert!(store.session(&hash(2)).await.unwrap().is_some(), "the live session stays");
        assert_eq!(
            store.rotate_refresh_token(&hash(3), &successor(7, now), now).await.unwrap(),
            RefreshUse::Invalid,
            "the expired (spent) refresh token is purged: no longer seen as reused"
        );
        assert_eq!(
            store.rotate_refresh_token(&hash(4), &successor(8, later), later).await.unwrap(),
            RefreshUse::Rotated { family_id: family, user_id: user.id, sign_in: SignInMethod::Password },
            "the live refresh token stays"
        );
        assert!(store.take_oauth_flow(&hash(5), now).await.unwrap().is_none(), "the expired flow is purged");
        assert!(store.take_oauth_flow(&hash(6), now).await.unwrap().is_some(), "the live flow stays");
    })
    .await;
}

#[tokio::test]
async fn api_keys_round_trip_list_per_owner_and_go_with_revocation_expiry_and_their_user() {
    on_every_backend(|store| async move {
        let now = rampart::store::now_stored();
        let ada = store.create_user(new_user("ada@example.com", Role::User, None)).await.unwrap();
        let bob = store.create_user(new_user("bob@example.com", Role::User, None)).await.unwrap();
        let key = |user_id: Uuid, n: u8, expires_at: OffsetDateTime| ApiKeyRecord {
            id: Uuid::now_v7(),
            user_id,
            name: format!("key {n}"),
            scopes: Scopes::parse(["posts:read", "routes:orders"]).unwrap(),
            secret_hash: hash(n),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        let first = key(ada.id, 1, now + Duration::days(30));
        let second = key(ada.id, 2, now + Duration::days(30));
        let expired = key(ada.id, 3, now - Duration::seconds(1));
        let bobs = key(bob.id, 4, now + Duration::days(30));
        for record in [&first, &second, &expired, &bobs] {
            store.insert_api_key(record).await.unwrap();
        }
        assert_eq!(store.api_key(first.id).await.unwrap().as_ref(), Some(&first), "round trip");
        assert!(store.api_key(Uuid::now_v7()).await.unwrap().is_none());
        let ids = |keys: Vec<ApiKeyRecord>| keys.into_iter().map(|key| key.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list_api_keys(Some(ada.id), now, None, 10).await.unwrap()), [first.id, second.id]);
        assert_eq!(ids(store.list_api_keys(Some(ada.id), now, Some(first.id), 10).await.unwrap()), [second.id]);
        assert_eq!(store.list_api_keys(None, now, None, 10).await.unwrap().len(), 3, "everyone's, expired left out");

        // Uses are kept, never moved back.
        let minute = now.replace_second(0).unwrap().replace_nanosecond(0).unwrap();
        store.touch_api_keys(&[(first.id, minute), (Uuid::now_v7(), minute)]).await.unwrap();
        store.touch_api_keys(&[(first.id, minute - Duration::minutes(5))]).await.unwrap();
        assert_eq!(store.api_key(first.id).await.unwrap().unwrap().last_used_at, Some(minute));

        // Someone else's key is not found; the owner's goes.
        assert!(matches!(store.delete_api_key(first.id, Some(bob.id)).await, Err(StoreError::NotFound)));
        assert_eq!(store.delete_api_key(first.id, Some(ada.id)).await.unwrap().id, first.id);
        assert!(matches!(store.delete_api_key(first.id, None).await, Err(StoreError::NotFound)));
        assert_eq!(store.delete_user_api_keys(ada.id).await.unwrap(), 2);
        assert!(store.api_key(second.id).await.unwrap().is_none());
        store.insert_api_key(&key(ada.id, 5, now - Duration::seconds(1))).await.unwrap();
        store.purge_expired(now).await.unwrap();
        assert!(
            store
                .list_api_keys(None, now - Duration::days(1), None, 10)
                .await
                .unwrap()
                .iter()
                .all(|k| k.user_id == bob.id)
        );

        // A user's deletion takes their keys; a key for a gone user is NotFound.
        store.delete_user(bob.id).await.unwrap();
        assert!(store.api_key(bobs.id).await.unwrap().is_none());
        assert!(matches!(
            store.insert_api_key(&key(bob.id, 6, now + Duration::days(1))).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn a_change_of_role_department_or_access_takes_the_users_api_keys_with_it() {
    on_every_backend(|store| async move {
        let now = rampart::store::now_stored();
        let user = store.create_user(new_user("cy@example.com", Role::User, Some("sales"))).await.unwrap();
        let add_key = |n: u8| {
            let store = store.clone();
            async move {
                let record = ApiKeyRecord {
                    id: Uuid::now_v7(),
                    user_id: user.id,
                    name: "job".into(),
                    scopes: Scopes::parse(["posts:read"]).unwrap(),
                    secret_hash: hash(n),
                    created_at: now,
                    expires_at: now + Duration::days(1),
                    last_used_at: None,
                };
                store.insert_api_key(&record).await.unwrap();
                record.id
            }
        };
        let key = add_key(1).await;
        let rename = UserChanges { name: Some(UserName::parse("Cy").unwrap()), ..Default::default() };
        store.change_user(user.id, &rename).await.unwrap();
        let same_role = UserChanges { role: Some(Role::User), disabled: Some(false), ..Default::default() };
        store.change_user(user.id, &same_role).await.unwrap();
        assert!(store.api_key(key).await.unwrap().is_some(), "nothing that matters changed");
        let changes = [
            UserChanges { role: Some(Role::Manager), ..Default::default() },
            UserChanges { department: Some(Department::parse("support").unwrap()), ..Default::default() },
            UserChanges { department: Some(None), ..Default::default() },
            UserChanges { disabled: Some(true), ..Default::default() },
        ];
        for (n, change) in changes.iter().enumerate() {
            let key = add_key(u8::try_from(n).unwrap() + 2).await;
            store.change_user(user.id, change).await.unwrap();
            assert!(store.api_key(key).await.unwrap().is_none(), "{change:?} keeps no key");
        }
    })
    .await;
}

/// Now, at the precision the stores keep.
fn stored_now() -> OffsetDateTime {
    truncate_to_stored(OffsetDateTime::now_utc())
}

fn mail(n: u8, created_at: OffsetDateTime) -> OutboxMail {
    OutboxMail {
        id: Uuid::now_v7(),
        kind: "verify_email".into(),
        sender: "no-reply@example.com".into(),
        recipient: format!("to{n}@example.com"),
        message: format!("Message-ID: <{n}@example.com>\r\n\r\nmail {n}\r\n").into_bytes(),
        created_at,
        attempts: 0,
    }
}

#[tokio::test]
async fn email_tokens_are_taken_once_before_they_expire_and_prove_only_their_address() {
    on_every_backend(|store| async move {
        let now = stored_now();
        let user = store.create_user(new_user("prove@example.com", Role::User, None)).await.unwrap();
        let token = |n: u8, purpose: EmailPurpose, created_at: OffsetDateTime| EmailTokenRecord {
            token_hash: hash(n),
            purpose,
            user_id: user.id,
            email: user.email.clone(),
            created_at,
            expires_at: created_at + Duration::minutes(30),
        };
        let mut work = store.begin().await.unwrap();
        work.insert_email_token(&token(1, EmailPurpose::ResetPassword, now)).await.unwrap();
        work.insert_email_token(&token(2, EmailPurpose::ResetPassword, now + Duration::seconds(5))).await.unwrap();
        work.insert_email_token(&token(3, EmailPurpose::VerifyEmail, now)).await.unwrap();
        work.insert_email_token(&token(5, EmailPurpose::ResetPassword, now)).await.unwrap();
        work.commit().await.unwrap();

        let reset = EmailPurpose::ResetPassword;
        assert!(store.email_token(&hash(1), EmailPurpose::VerifyEmail, now).await.unwrap().is_none(), "by purpose");
        assert_eq!(store.email_token(&hash(1), reset, now).await.unwrap().unwrap().user_id, user.id);
        assert_eq!(store.latest_email_token_at(user.id, reset).await.unwrap(), Some(now + Duration::seconds(5)));
        let mut work = store.begin().await.unwrap();
        let late = now + Duration::minutes(31);
        assert!(work.take_email_token(&hash(1), reset, late).await.unwrap().is_none(), "expired");
        assert!(work.take_email_token(&hash(1), reset, now).await.unwrap().is_none(), "an expired token is spent");
        assert_eq!(work.take_email_token(&hash(2), reset, now).await.unwrap().unwrap().email, "prove@example.com");
        assert!(work.take_email_token(&hash(2), reset, now).await.unwrap().is_none(), "taken once");
        work.delete_email_tokens(user.id, reset).await.unwrap();
        assert!(work.set_email_verified(user.id, "prove@example.com").await.unwrap());
        assert!(!work.set_email_verified(user.id, "someone-else@example.com").await.unwrap(), "another address");
        work.commit().await.unwrap();
        assert!(store.email_token(&hash(5), reset, now).await.unwrap().is_none(), "deleted with the others");
        assert!(store.email_token(&hash(3), EmailPurpose::VerifyEmail, now).await.unwrap().is_some(), "kept");
        assert!(store.user_by_id(user.id).await.unwrap().email_verified);

        // A token for a user who is gone is refused; tokens go with their user.
        let mut work = store.begin().await.unwrap();
        let ghost = EmailTokenRecord { user_id: Uuid::now_v7(), ..token(4, reset, now) };
        assert!(work.insert_email_token(&ghost).await.is_err());
        drop(work);
        store.delete_user(user.id).await.unwrap();
        assert!(store.email_token(&hash(3), EmailPurpose::VerifyEmail, now).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn outbox_mail_is_claimed_by_one_worker_until_its_lease_ends() {
    on_every_backend(|store| async move {
        let now = stored_now();
        let mails: Vec<OutboxMail> = (1..=3).map(|n| mail(n, now + Duration::milliseconds(i64::from(n)))).collect();
        let mut abandoned = store.begin().await.unwrap();
        abandoned.enqueue_mail(&mails[0]).await.unwrap();
        drop(abandoned);
        assert_eq!(store.outbox_counts().await.unwrap(), OutboxCounts::default(), "dropped: nothing queued");
        let mut work = store.begin().await.unwrap();
        for mail in &mails {
            work.enqueue_mail(mail).await.unwrap();
        }
        work.commit().await.unwrap();
        assert_eq!(store.outbox_counts().await.unwrap(), OutboxCounts { queued: 3, failed: 0 });

        let later = now + Duration::seconds(1);
        let lease = later + Duration::minutes(10);
        let first = store.claim_mail(later, lease, 2).await.unwrap();
        assert_eq!(first.iter().map(|m| m.id).collect::<Vec<_>>(), [mails[0].id, mails[1].id], "oldest first");
        assert_eq!((first[0].attempts, &first[0].message), (1, &mails[0].message), "whole, counted");
        let second = store.claim_mail(later, lease, 10).await.unwrap();
        assert_eq!(second.iter().map(|m| m.id).collect::<Vec<_>>(), [mails[2].id], "held mails are skipped");
        assert!(store.claim_mail(later, lease, 10).await.unwrap().is_empty());

        store.mail_sent(mails[0].id).await.unwrap();
        store.mail_deferred(mails[1].id, later + Duration::minutes(1), "421 try later").await.unwrap();
        store.mail_failed(mails[2].id, later, "550 no such user").await.unwrap();
        assert_eq!(store.outbox_counts().await.unwrap(), OutboxCounts { queued: 1, failed: 1 });
        assert!(store.claim_mail(later + Duration::seconds(59), lease, 10).await.unwrap().is_empty(), "not yet due");
        let retried = store.claim_mail(later + Duration::minutes(1), lease, 10).await.unwrap();
        assert_eq!((retried.len(), retried[0].id, retried[0].attempts), (1, mails[1].id, 2));
        // A worker that died holding it: due again when the lease ends.
        let after_lease = store.claim_mail(lease, lease + Duration::minutes(10), 10).await.unwrap();
        assert_eq!(after_lease.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(), [(mails[1].id, 3)]);

        // Given up more than 30 days ago: purged.
        store.purge_expired(later + Duration::days(31)).await.unwrap();
        assert_eq!(store.outbox_counts().await.unwrap(), OutboxCounts { queued: 1, failed: 0 });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_made_at_once_never_share_a_mail() {
    on_every_backend(|store| async move {
        let now = stored_now();
        let mut work = store.begin().await.unwrap();
        for n in 0..40 {
            work.enqueue_mail(&mail(n, now)).await.unwrap();
        }
        work.commit().await.unwrap();
        let lease = now + Duration::minutes(10);
        let claim = |store: Arc<dyn Store>| async move {
            let mut ids = Vec::new();
            loop {
                let batch = store.claim_mail(now, lease, 3).await.unwrap();
                if batch.is_empty() {
                    return ids;
                }
                ids.extend(batch.into_iter().map(|m| m.id));
            }
        };
        let (a, b, c) = tokio::join!(
            tokio::spawn(claim(store.clone())),
            tokio::spawn(claim(store.clone())),
            tokio::spawn(claim(store.clone()))
        );
        let mut all: Vec<Uuid> = [a.unwrap(), b.unwrap(), c.unwrap()].concat();
        let claimed = all.len();
        all.sort();
        all.dedup();
        assert_eq!((claimed, all.len()), (40, 40), "every mail claimed once");
    })
    .await;
}

#[tokio::test]
async fn totp_factors_confirm_once_accept_each_step_once_and_go_with_their_recovery_codes() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("totp@example.com", Role::User, None)).await.unwrap();
        let now = stored_now();
        assert!(store.totp_factor(user.id).await.unwrap().is_none());
        store.begin_totp(user.id, b"first secret bytes!!", now).await.unwrap();
        // A pending enrolment is replaced by a new one.
        store.begin_totp(user.id, b"second secret bytes!", now).await.unwrap();
        let pending = store.totp_factor(user.id).await.unwrap().unwrap();
        assert_eq!(pending.secret, b"second secret bytes!");
        assert!(pending.confirmed_at.is_none() && pending.last_step.is_none());
        assert!(!store.accept_totp_step(user.id, 5).await.unwrap(), "a pending factor accepts no code");

        let codes = [hash(1), hash(2)];
        let mut work = store.begin().await.unwrap();
        assert!(work.confirm_totp(user.id, 100, &codes, now).await.unwrap());
        work.commit().await.unwrap();
        let mut work = store.begin().await.unwrap();
        assert!(!work.confirm_totp(user.id, 101, &codes, now).await.unwrap(), "confirmed once");
        work.commit().await.unwrap();
        let on = store.totp_factor(user.id).await.unwrap().unwrap();
        assert_eq!((on.confirmed_at, on.last_step), (Some(now), Some(100)));
        assert!(matches!(store.begin_totp(user.id, b"third secret bytes!!", now).await, Err(StoreError::Conflict(_))));

        // Each step once, and never an earlier one.
        assert!(!store.accept_totp_step(user.id, 100).await.unwrap());
        assert!(!store.accept_totp_step(user.id, 99).await.unwrap());
        assert!(store.accept_totp_step(user.id, 101).await.unwrap());
        assert!(!store.accept_totp_step(user.id, 101).await.unwrap());
        // Concurrent uses of one step: exactly one wins.
        let racers: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.accept_totp_step(user.id, 102).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            winners += usize::from(racer.await.unwrap());
        }
        assert_eq!(winners, 1);

        // Recovery codes: once each, only the owner's.
        let other = store.create_user(new_user("other-totp@example.com", Role::User, None)).await.unwrap();
        assert!(!store.use_recovery_code(other.id, &hash(1), now).await.unwrap());
        assert!(store.use_recovery_code(user.id, &hash(1), now).await.unwrap());
        assert!(!store.use_recovery_code(user.id, &hash(1), now).await.unwrap());
        assert_eq!(store.recovery_codes_left(user.id).await.unwrap(), 1);

        let mut work = store.begin().await.unwrap();
        assert!(work.delete_totp(user.id).await.unwrap());
        work.commit().await.unwrap();
        assert!(store.totp_factor(user.id).await.unwrap().is_none());
        assert_eq!(store.recovery_codes_left(user.id).await.unwrap(), 0);
        assert!(!store.use_recovery_code(user.id, &hash(2), now).await.unwrap());
        assert!(matches!(
            store.begin_totp(Uuid::now_v7(), b"nobody's secret byte", now).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn mfa_challenges_count_attempts_expire_and_are_taken_once() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("challenge@example.com", Role::User, None)).await.unwrap();
        let now = stored_now();
        let challenge = |n: u8, expires_at| MfaChallenge {
            token_hash: hash(n),
            user_id: user.id,
            login_kind: LoginKind::Session,
            sign_in: SignInMethod::Provider,
            attempts: 0,
            expires_at,
            passkey_state: (n == 1).then(|| "{\"ceremony\":1}".to_owned()),
        };
        store.insert_mfa_challenge(&challenge(1, now + Duration::minutes(5))).await.unwrap();
        for attempt in 1..=3 {
            let found = store.attempt_mfa_challenge(&hash(1), now, 3).await.unwrap().unwrap();
            assert_eq!(found.attempts, attempt);
            assert_eq!(
                (found.user_id, found.login_kind, found.sign_in),
                (user.id, LoginKind::Session, SignInMethod::Provider)
            );
            assert_eq!(found.passkey_state.as_deref(), Some("{\"ceremony\":1}"));
        }
        assert!(store.attempt_mfa_challenge(&hash(1), now, 3).await.unwrap().is_none(), "out of attempts");
        assert!(store.mfa_challenge(&hash(1), now, 3).await.unwrap().is_none(), "out of attempts, also to read");
        let read = store.mfa_challenge(&hash(1), now, 4).await.unwrap().unwrap();
        assert_eq!(read.attempts, 3, "reading counts no attempt");
        store.set_mfa_passkey_state(&hash(1), "{\"ceremony\":2}").await.unwrap();
        let read = store.mfa_challenge(&hash(1), now, 4).await.unwrap().unwrap();
        assert_eq!((read.attempts, read.passkey_state.as_deref()), (3, Some("{\"ceremony\":2}")));
        assert!(store.attempt_mfa_challenge(&hash(9), now, 3).await.unwrap().is_none(), "unknown");

        store.insert_mfa_challenge(&challenge(2, now + Duration::minutes(5))).await.unwrap();
        assert!(
            store.attempt_mfa_challenge(&hash(2), now + Duration::minutes(5), 5).await.unwrap().is_none(),
            "expired"
        );
        assert!(store.take_mfa_challenge(&hash(2)).await.unwrap());
        assert!(!store.take_mfa_challenge(&hash(2)).await.unwrap(), "taken once");

        store.insert_mfa_challenge(&challenge(5, now + Duration::minutes(5))).await.unwrap();
        store.delete_user_mfa_challenges(user.id).await.unwrap();
        assert!(!store.take_mfa_challenge(&hash(5)).await.unwrap(), "a user's challenges go at once");

        store.insert_mfa_challenge(&challenge(3, now + Duration::minutes(1))).await.unwrap();
        rampart::housekeeping::hourly(&*store, now + Duration::minutes(2), Duration::days(90)).await.unwrap();
        assert!(!store.take_mfa_challenge(&hash(3)).await.unwrap(), "an expired challenge is purged");
        assert!(matches!(
            store.insert_mfa_challenge(&MfaChallenge { user_id: Uuid::now_v7(), ..challenge(4, now) }).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

fn passkey(user_id: Uuid, n: u8, created_at: OffsetDateTime) -> PasskeyRecord {
    PasskeyRecord {
        id: Uuid::now_v7(),
        user_id,
        credential_id: vec![n; 16],
        name: format!("key {n}"),
        passkey: format!("{{\"n\":{n}}}"),
        created_at,
        last_used_at: None,
    }
}

#[tokio::test]
async fn passkeys_are_unique_per_credential_removed_only_by_their_owner_and_go_with_their_user() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("passkeys@example.com", Role::User, None)).await.unwrap();
        let other = store.create_user(new_user("passkeys-other@example.com", Role::User, None)).await.unwrap();
        let now = stored_now();
        let first = passkey(user.id, 1, now);
        let second = passkey(user.id, 2, now + Duration::seconds(1));
        let mut work = store.begin().await.unwrap();
        work.insert_passkey(&first).await.unwrap();
        work.insert_passkey(&second).await.unwrap();
        work.commit().await.unwrap();
        let listed: Vec<_> = store.passkeys(user.id).await.unwrap().into_iter().map(|p| (p.id, p.name)).collect();
        assert_eq!(listed, [(first.id, "key 1".to_owned()), (second.id, "key 2".to_owned())], "oldest first");

        // One credential, one owner: registering it again (to anyone) is a conflict.
        let mut work = store.begin().await.unwrap();
        let again = work.insert_passkey(&PasskeyRecord { id: Uuid::now_v7(), ..passkey(other.id, 1, now) }).await;
        assert!(matches!(again, Err(StoreError::Conflict("passkey"))), "{again:?}");
        drop(work);
        let mut work = store.begin().await.unwrap();
        let nobody = work.insert_passkey(&passkey(Uuid::now_v7(), 7, now)).await;
        assert!(matches!(nobody, Err(StoreError::NotFound)), "{nobody:?}");
        drop(work);

        let found = store.passkey_by_credential(&[1; 16]).await.unwrap().unwrap();
        assert_eq!((found.id, found.user_id, found.last_used_at), (first.id, user.id, None));
        store.record_passkey_use(first.id, "{\"n\":\"used\"}", now + Duration::minutes(1)).await.unwrap();
        let used = store.passkey_by_credential(&[1; 16]).await.unwrap().unwrap();
        assert_eq!((used.passkey.as_str(), used.last_used_at), ("{\"n\":\"used\"}", Some(now + Duration::minutes(1))));

        // Only the owner removes it; another user's is not found.
        let mut work = store.begin().await.unwrap();
        assert!(matches!(work.delete_passkey(first.id, other.id).await, Err(StoreError::NotFound)));
        drop(work);
        let mut work = store.begin().await.unwrap();
        assert_eq!(work.delete_passkey(first.id, user.id).await.unwrap().name, "key 1");
        work.commit().await.unwrap();
        assert!(store.passkey_by_credential(&[1; 16]).await.unwrap().is_none());

        store.delete_user(user.id).await.unwrap();
        assert!(store.passkey_by_credential(&[2; 16]).await.unwrap().is_none(), "gone with the user");
    })
    .await;
}

#[tokio::test]
async fn passkey_ceremonies_are_finished_once_and_only_before_they_expire() {
    on_every_backend(|store| async move {
        let user = store.create_user(new_user("ceremony@example.com", Role::User, None)).await.unwrap();
        let now = stored_now();
        let pending = |name: &str| PendingPasskey { name: name.into(), state: format!("{{\"for\":\"{name}\"}}") };
        store.begin_passkey_registration(user.id, &pending("Laptop"), now + Duration::minutes(5)).await.unwrap();
        // A new start replaces the waiting one.
        store.begin_passkey_registration(user.id, &pending("Phone"), now + Duration::minutes(5)).await.unwrap();
        let taken = store.take_passkey_registration(user.id, now).await.unwrap().unwrap();
        assert_eq!((taken.name.as_str(), taken.state.as_str()), ("Phone", "{\"for\":\"Phone\"}"));
        assert!(store.take_passkey_registration(user.id, now).await.unwrap().is_none(), "finished once");
        store.begin_passkey_registration(user.id, &pending("Key"), now + Duration::minutes(5)).await.unwrap();
        assert!(
            store.take_passkey_registration(user.id, now + Duration::minutes(5)).await.unwrap().is_none(),
            "expired"
        );
        assert!(matches!(
            store.begin_passkey_registration(Uuid::now_v7(), &pending("Nobody"), now).await,
            Err(StoreError::NotFound)
        ));

        let id = Uuid::new_v4();
        store.insert_passkey_sign_in(id, "{\"sign_in\":1}", now + Duration::minutes(5)).await.unwrap();
        assert_eq!(store.take_passkey_sign_in(id, now).await.unwrap().as_deref(), Some("{\"sign_in\":1}"));
        assert!(store.take_passkey_sign_in(id, now).await.unwrap().is_none(), "finished once");
        let late = Uuid::new_v4();
        store.insert_passkey_sign_in(late, "{}", now + Duration::minutes(5)).await.unwrap();
        assert!(store.take_passkey_sign_in(late, now + Duration::minutes(5)).await.unwrap().is_none(), "expired");

        // The hourly housekeeping drops ceremonies nobody finished.
        let kept = Uuid::new_v4();
        store.insert_passkey_sign_in(kept, "{}", now + Duration::minutes(1)).await.unwrap();
        store.begin_passkey_registration(user.id, &pending("Old"), now + Duration::minutes(1)).await.unwrap();
        rampart::housekeeping::hourly(&*store, now + Duration::minutes(2), Duration::days(90)).await.unwrap();
        assert!(store.take_passkey_sign_in(kept, now).await.unwrap().is_none(), "purged");
        assert!(store.take_passkey_registration(user.id, now).await.unwrap().is_none(), "purged");
    })
    .await;
}
