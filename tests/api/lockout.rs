//! Failed-login budgets (API.md "Identity", lockout rules): someone
//! else's failures never keep the owner out from their own address, the
//! per-account ceiling stops guessing for good, and a client that signed
//! in before (device cookie) or a password reset still gets in.

use std::sync::Arc;

use rampart::clock::ManualClock;
use serde_json::json;

use crate::helpers::{SpawnOptions, TestApp, TestResponse, spawn_with};

/// A frozen clock (no delay runs out between two requests on a slow
/// machine) and the local proxy trusted, so each test picks its client
/// address with `X-Forwarded-For`.
fn frozen(options: &mut SpawnOptions, clock: &ManualClock) {
    options.clock = Arc::new(clock.clone());
    options.config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

async fn login_from(app: &TestApp, ip: &str, device: Option<&str>, email: &str, password: &str) -> TestResponse {
    let mut request = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}));
    if let Some(device) = device {
        request = request.header("cookie", format!("rampart_device={device}"));
    }
    app.send(request).await
}

/// The `rampart_device` cookie a response sets, with its attributes.
fn device_cookie(response: &TestResponse) -> (String, String) {
    let set = response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|value| value.starts_with("rampart_device="))
        .unwrap_or_else(|| panic!("no device cookie: {:?}", response.headers));
    let value = set.trim_start_matches("rampart_device=").split(';').next().unwrap().to_owned();
    (value, set)
}

#[tokio::test]
async fn failures_from_one_address_do_not_slow_the_owner_at_another() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = spawn_with(|options| frozen(options, &clock)).await;
    let owner = app.users.user.clone();
    for _ in 0..5 {
        login_from(&app, "203.0.113.9", None, &owner.email, "an attacker's guess!!").await.assert_problem(401);
    }
    let throttled = login_from(&app, "203.0.113.9", None, &owner.email, "an attacker's guess!!").await;
    throttled.assert_problem(429);
    assert!(throttled.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Even the right password waits at the attacker's address ...
    login_from(&app, "203.0.113.9", None, &owner.email, &owner.password).await.assert_problem(429);
    // ... but the owner, elsewhere, is not slowed at all.
    let owner_login = login_from(&app, "198.51.100.7", None, &owner.email, &owner.password).await;
    assert_eq!(owner_login.status, 200, "{}", owner_login.body);
    let (_, set) = device_cookie(&owner_login);
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/auth"), "{set}");
    assert!(set.contains("Max-Age=15552000"), "{set}");
}

#[tokio::test]
async fn at_the_account_ceiling_only_a_device_cookie_or_a_password_reset_gets_in() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = spawn_with(|options| frozen(options, &clock)).await;
    let owner = app.users.user.clone();
    // The owner signed in from home once: that browser has a device cookie.
    let home = login_from(&app, "198.51.100.7", None, &owner.email, &owner.password).await;
    assert_eq!(home.status, 200, "{}", home.body);
    let (device, _) = device_cookie(&home);
    let token = home.json()["access_token"].as_str().unwrap().to_owned();

    // 100 failures from 100 addresses: each is a plain 401 ...
    let guess_all = |round: u8| {
        let app = &app;
        let email = owner.email.clone();
        async move {
            for i in 0..100u8 {
                let ip = format!("2001:db8:{round}:{i}::1");
                login_from(app, &ip, None, &email, "one more guess!!").await.assert_problem(401);
            }
        }
    };
    guess_all(1).await;
    // ... and then the account stops: no address without the cookie gets
    // in, not even with the right password, however long it waits.
    login_from(&app, "192.0.2.50", None, &owner.email, "one more guess!!").await.assert_problem(429);
    clock.advance(time::Duration::days(2));
    login_from(&app, "192.0.2.51", None, &owner.email, &owner.password).await.assert_problem(429);
    // A cookie made for another account, or a forged one, does not help.
    let other = login_from(&app, "192.0.2.52", None, &app.users.other.email, &app.users.other.password).await;
    let (other_device, _) = device_cookie(&other);
    login_from(&app, "192.0.2.51", Some(&other_device), &owner.email, &owner.password).await.assert_problem(429);
    let forged = format!("{}.0.AAAA", &device[..32]);
    login_from(&app, "192.0.2.51", Some(&forged), &owner.email, &owner.password).await.assert_problem(429);
    // The owner's browser, from anywhere, still gets in.
    let trusted = login_from(&app, "192.0.2.53", Some(&device), &owner.email, &owner.password).await;
    assert_eq!(trusted.status, 200, "{}", trusted.body);

    // The ceiling again; this time the owner resets the password (with a
    // session they still had), and the new password works from anywhere.
    guess_all(2).await;
    login_from(&app, "192.0.2.54", None, &owner.email, &owner.password).await.assert_problem(429);
    let token_after = trusted.json()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(token, token_after);
    let new_password = "a brand new passphrase after the attack";
    let changed = app
        .send(app.client.put(app.url("/api/profile/password")).bearer_auth(&token_after).json(&json!({
            "current_password": owner.password,
            "new_password": new_password,
        })))
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    let fresh = login_from(&app, "192.0.2.55", None, &owner.email, new_password).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
}

/// With Redis configured, every instance counts the same failures: five on
/// one instance slow the same client down on the other.
#[tokio::test]
async fn instances_on_one_redis_share_the_counts() {
    let url = match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true but TEST_REDIS_URL is not set"),
        _ => return eprintln!("skipped: TEST_REDIS_URL is not set"),
    };
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let prefix = format!("rampart-lockout-{}:", uuid::Uuid::new_v4().simple());
    // One database too, as a deployment has: the account's password hash
    // is the same on both.
    let database = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/shared.db", database.path().display());
    let on_redis = |options: &mut SpawnOptions| {
        frozen(options, &clock);
        options.config.redis.url = secrecy::SecretString::from(url.clone());
        options.config.redis.key_prefix = prefix.clone();
        options.config.database.url = secrecy::SecretString::from(database_url.clone());
    };
    let a = spawn_with(on_redis).await;
    let b = spawn_with(|options| {
        on_redis(options);
        options.seed = false;
    })
    .await;
    let owner = a.users.user.clone();
    for _ in 0..5 {
        login_from(&a, "203.0.113.9", None, &owner.email, "an attacker's guess!!").await.assert_problem(401);
    }
    login_from(&b, "203.0.113.9", None, &owner.email, "an attacker's guess!!").await.assert_problem(429);
    let elsewhere = login_from(&b, "198.51.100.7", None, &owner.email, &owner.password).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);
    // The account's count is shared too: failures on both instances reach
    // the ceiling together.
    for i in 0..100u8 {
        let app = if i % 2 == 0 { &a } else { &b };
        let ip = format!("2001:db8:7:{i}::1");
        login_from(app, &ip, None, &owner.email, "one more guess!!").await.assert_problem(401);
    }
    login_from(&a, "192.0.2.60", None, &owner.email, &owner.password).await.assert_problem(429);
    login_from(&b, "192.0.2.61", None, &owner.email, &owner.password).await.assert_problem(429);
}
