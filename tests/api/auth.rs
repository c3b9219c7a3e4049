//! Sign-up, login, refresh rotation and logout (API.md "Authentication").

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

fn without_request_id(mut body: Value) -> Value {
    body.as_object_mut().expect("object").remove("request_id");
    body
}

async fn refresh(app: &TestApp, token: &str) -> crate::helpers::TestResponse {
    app.post_json("/auth/refresh", &json!({ "refresh_token": token })).await
}

#[tokio::test]
async fn signup_creates_a_plain_user() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/auth/signup",
            &json!({"email": " New@Example.com ", "password": "a long enough passphrase", "name": "Newt"}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let user = response.json();
    assert_eq!(user["email"], "New@Example.com");
    assert_eq!(user["role"], "user");
    assert_eq!(user["disabled"], false);
    assert!(user["department"].is_null());
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    assert_eq!(response.header("cache-control"), Some("no-store"));
    // The new account can sign in (emails compare without case).
    app.login("new@example.com", "a long enough passphrase").await;
}

#[tokio::test]
async fn signup_refuses_privilege_fields_weak_passwords_and_duplicates() {
    let app = spawn_app().await;
    for field in ["role", "id", "department", "disabled"] {
        let mut body = json!({"email": "x@example.com", "password": "a long enough passphrase", "name": "X"});
        body[field] = json!("admin");
        let problem = app.post_json("/auth/signup", &body).await.assert_problem(400);
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let weak = [
        ("short", "must be at least 15 characters"),
        ("passwordpassword", "is too common"),
        ("123456789012345", "is too common"),
        ("xx-x@example.com-xx", "must not contain your email address"),
        ("aaaaaaaaaaaaaaaaaaaa", "is too common"),
    ];
    for (password, message) in weak {
        let problem = app
            .post_json("/auth/signup", &json!({"email": "x@example.com", "password": password, "name": "X"}))
            .await
            .assert_problem(400);
        assert_eq!(problem["errors"][0], json!({"field": "password", "message": message}), "{password}");
    }
    let bad_email = app
        .post_json(
            "/auth/signup",
            &json!({"email": "not-an-email", "password": "a long enough passphrase", "name": "X"}),
        )
        .await
        .assert_problem(400);
    assert_eq!(bad_email["errors"][0]["field"], "email");

    let taken = app
        .post_json(
            "/auth/signup",
            &json!({"email": "USER@example.com", "password": "a long enough passphrase", "name": "X"}),
        )
        .await;
    taken.assert_problem(409);
}

#[tokio::test]
async fn login_returns_a_token_pair_and_the_user() {
    let app = spawn_app().await;
    let body = app.login(&app.users.user.email, &app.users.user.password).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(body["user"]["email"], app.users.user.email);
    let profile = app.get_as("/api/profile", body["access_token"].as_str().unwrap()).await;
    assert_eq!(profile.status, 200);
    assert_eq!(profile.json()["id"], app.users.user.id.to_string());
}

#[tokio::test]
async fn failed_logins_look_the_same_whatever_the_reason() {
    let app = spawn_app().await;
    // Disable the manager so all three failure kinds can be compared.
    let admin = app.token_for(&app.users.admin).await;
    let path = format!("/api/admin/users/{}", app.users.manager.id);
    let disabled =
        app.send(app.client.patch(app.url(&path)).bearer_auth(&admin).json(&json!({"disabled": true}))).await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);

    let attempts = [
        json!({"email": "nobody@example.com", "password": "whatever password here"}),
        json!({"email": app.users.user.email, "password": "the wrong password!!"}),
        json!({"email": app.users.manager.email, "password": app.users.manager.password}),
    ];
    let mut bodies = Vec::new();
    for attempt in &attempts {
        let response = app.post_json("/auth/login", attempt).await;
        response.assert_problem(401);
        bodies.push(without_request_id(response.json()));
    }
    assert_eq!(bodies[0], bodies[1], "unknown email and wrong password");
    assert_eq!(bodies[1], bodies[2], "wrong password and disabled account");
}

#[tokio::test]
async fn repeated_failures_slow_an_account_down() {
    // A frozen clock: the delay after the fifth failure cannot run out
    // between two requests on a slow machine.
    let clock = rampart::clock::ManualClock::new(time::OffsetDateTime::now_utc());
    let app = crate::helpers::spawn_with(|options| options.clock = std::sync::Arc::new(clock.clone())).await;
    let wrong = json!({"email": app.users.other.email, "password": "definitely not it!!"});
    for _ in 0..5 {
        app.post_json("/auth/login", &wrong).await.assert_problem(401);
    }
    let throttled = app.post_json("/auth/login", &wrong).await;
    throttled.assert_problem(429);
    assert!(throttled.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // The same happens for an email that has no account.
    let ghost = json!({"email": "ghost@example.com", "password": "definitely not it!!"});
    for _ in 0..5 {
        app.post_json("/auth/login", &ghost).await.assert_problem(401);
    }
    app.post_json("/auth/login", &ghost).await.assert_problem(429);
    // Other accounts are untouched.
    app.login(&app.users.user.email, &app.users.user.password).await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_kills_the_family() {
    let app = spawn_app().await;
    let first = app.login(&app.users.user.email, &app.users.user.password).await;
    let first_refresh = first["refresh_token"].as_str().unwrap();

    let second = refresh(&app, first_refresh).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let second = second.json();
    let second_refresh = second["refresh_token"].as_str().unwrap();
    let second_access = second["access_token"].as_str().unwrap();
    assert_ne!(second_refresh, first_refresh, "a new refresh token each time");
    assert_eq!(app.get_as("/api/profile", second_access).await.status, 200);

    // The spent token comes back: reuse. Everything in the family dies,
    // including the newer refresh token and its access token.
    refresh(&app, first_refresh).await.assert_problem(401);
    refresh(&app, second_refresh).await.assert_problem(401);
    let after = app.get_as("/api/profile", second_access).await;
    after.assert_problem(401);
    assert!(after.header("www-authenticate").unwrap().starts_with("Bearer"));

    // A separate login (another family) is unaffected.
    let other_login = app.token_for(&app.users.user).await;
    assert_eq!(app.get_as("/api/profile", &other_login).await.status, 200);

    refresh(&app, "rt_not-a-real-token").await.assert_problem(401);
    app.post_json("/auth/refresh", &json!({})).await.assert_problem(400);
}

#[tokio::test]
async fn logout_ends_the_access_token_and_its_refresh_family() {
    let app = spawn_app().await;
    let pair = app.login(&app.users.user.email, &app.users.user.password).await;
    let access = pair["access_token"].as_str().unwrap();
    let out = app.send(app.client.post(app.url("/auth/logout")).bearer_auth(access)).await;
    assert_eq!(out.status, 204, "{}", out.body);
    app.get_as("/api/profile", access).await.assert_problem(401);
    refresh(&app, pair["refresh_token"].as_str().unwrap()).await.assert_problem(401);
    // Logging out without credentials is a 401 with a challenge.
    let anonymous = app.send(app.client.post(app.url("/auth/logout"))).await;
    anonymous.assert_problem(401);
    assert!(anonymous.header("www-authenticate").is_some());
}

#[tokio::test]
async fn logout_all_ends_every_token_and_session() {
    let app = spawn_app().await;
    let user = &app.users.user;
    let first = app.login(&user.email, &user.password).await;
    let second = app.login(&user.email, &user.password).await;
    let session = crate::sessions::sign_in(&app, user).await;

    let out = app
        .send(app.client.post(app.url("/auth/logout-all")).bearer_auth(first["access_token"].as_str().unwrap()))
        .await;
    assert_eq!(out.status, 204, "{}", out.body);
    for pair in [&first, &second] {
        app.get_as("/api/profile", pair["access_token"].as_str().unwrap()).await.assert_problem(401);
        refresh(&app, pair["refresh_token"].as_str().unwrap()).await.assert_problem(401);
    }
    session.get(&app, "/api/profile").await.assert_problem(401);
    // Signing in again right away works.
    let fresh = app.token_for(user).await;
    assert_eq!(app.get_as("/api/profile", &fresh).await.status, 200);
}

#[tokio::test]
async fn jwks_publishes_the_verifying_key() {
    let app = spawn_app().await;
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status, 200);
    let keys = response.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert!(keys[0].get("d").is_none(), "no private part");
    let token = app.token_for(&app.users.user).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), keys[0]["kid"].as_str());
}

#[tokio::test]
async fn hs256_signs_with_a_configured_secret_and_publishes_no_keys() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("hs256.secret");
    std::fs::write(&secret_file, rampart::auth::keys::generate(rampart::config::JwtAlgorithm::HS256).unwrap()).unwrap();
    let app = crate::helpers::spawn_with(|options| {
        options.config.auth.jwt_algorithm = rampart::config::JwtAlgorithm::HS256;
        options.config.auth.signing_key_file = secret_file.clone();
    })
    .await;
    assert_eq!(app.get("/.well-known/jwks.json").await.json(), json!({"keys": []}));
    let token = app.token_for(&app.users.user).await;
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, jsonwebtoken::Algorithm::HS256);
    assert_eq!(app.get_as("/api/profile", &token).await.status, 200);
}

#[tokio::test]
async fn session_and_logout_routes_refuse_bad_input_and_missing_credentials() {
    let app = spawn_app().await;
    app.post_json("/auth/session", &json!({"email": app.users.user.email})).await.assert_problem(400);
    app.post_json("/auth/session", &json!({"email": app.users.user.email, "password": "wrong password here"}))
        .await
        .assert_problem(401);
    app.send(app.client.delete(app.url("/auth/session"))).await.assert_problem(401);
    app.send(app.client.post(app.url("/auth/logout-all"))).await.assert_problem(401);
    app.post_json("/auth/login", &json!({"email": 5, "password": "x"})).await.assert_problem(400);
    app.post_json("/auth/signup", &json!({"email": "a@b.c"})).await.assert_problem(400);
}

#[tokio::test]
async fn authentication_events_are_audited_without_secrets() {
    let app = spawn_app().await;
    let user = &app.users.user;
    app.post_json(
        "/auth/signup",
        &json!({"email": "fresh@example.com", "password": "a long enough passphrase", "name": "F"}),
    )
    .await;
    let pair = app.login(&user.email, &user.password).await;
    app.post_json("/auth/login", &json!({"email": user.email, "password": "not the password!!"})).await;
    let rotated = refresh(&app, pair["refresh_token"].as_str().unwrap()).await.json();
    refresh(&app, pair["refresh_token"].as_str().unwrap()).await;
    app.send(app.client.post(app.url("/auth/logout")).bearer_auth(rotated["access_token"].as_str().unwrap())).await;

    let logs = app.logs.contents();
    let events: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == "rampart::audit")
        .collect();
    for (name, outcome) in [
        ("signup", "success"),
        ("login_success", "success"),
        ("login_failure", "failure"),
        ("token_refresh", "success"),
        ("refresh_reuse", "denied"),
    ] {
        let event = events.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name} in {events:?}"));
        assert_eq!(event["outcome"], outcome, "{name}");
        assert_eq!(event["client_ip"], "127.0.0.1");
        assert!(event["request_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(event["route"].as_str().unwrap().starts_with("/auth/"));
    }
    for secret in
        [user.password.as_str(), pair["refresh_token"].as_str().unwrap(), pair["access_token"].as_str().unwrap()]
    {
        assert!(!logs.contains(secret), "a credential reached the log");
    }
}

/// Logout-all voids every refresh token of the account, whichever family;
/// deletion and disabling do too (the rotation checks the user under the
/// same lock the revocation takes).
#[tokio::test]
async fn refresh_after_logout_all_deletion_or_disabling_is_refused() {
    let app = spawn_app().await;
    let user = &app.users.user;
    let signed_in = app.login(&user.email, &user.password).await;
    let elsewhere = app.login(&user.email, &user.password).await;
    let token = signed_in["access_token"].as_str().unwrap();
    let out = app.send(app.client.post(app.url("/auth/logout-all")).bearer_auth(token)).await;
    assert_eq!(out.status, 204, "{}", out.body);
    for pair in [&signed_in, &elsewhere] {
        refresh(&app, pair["refresh_token"].as_str().unwrap()).await.assert_problem(401);
    }
    // A sign-in after the logout-all is a new start.
    let after = app.login(&user.email, &user.password).await;
    assert_eq!(refresh(&app, after["refresh_token"].as_str().unwrap()).await.status, 200);

    let admin = app.token_for(&app.users.admin).await;
    let manager = app.login(&app.users.manager.email, &app.users.manager.password).await;
    let path = format!("/api/admin/users/{}", app.users.manager.id);
    let disabled =
        app.send(app.client.patch(app.url(&path)).bearer_auth(&admin).json(&json!({"disabled": true}))).await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    refresh(&app, manager["refresh_token"].as_str().unwrap()).await.assert_problem(401);

    let other = app.login(&app.users.other.email, &app.users.other.password).await;
    let deleted =
        app.send(app.client.delete(app.url(&format!("/api/users/{}", app.users.other.id))).bearer_auth(&admin)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    refresh(&app, other["refresh_token"].as_str().unwrap()).await.assert_problem(401);
}

/// Passwords are compared in their NFKC form: a ligature or fullwidth
/// letters sign in as the plain letters they stand for, and back.
#[tokio::test]
async fn passwords_sign_in_by_their_nfkc_form() {
    let app = spawn_app().await;
    let created = app
        .post_json(
            "/auth/signup",
            &json!({"email": "nfkc@example.com", "password": "the ﬁne ｆｕｌｌｗｉｄｔｈ passphrase", "name": "Norma"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    app.login("nfkc@example.com", "the fine fullwidth passphrase").await;
    app.login("nfkc@example.com", "the ﬁne ｆｕｌｌｗｉｄｔｈ passphrase").await;
    app.post_json("/auth/login", &json!({"email": "nfkc@example.com", "password": "the fine fullwidth passphrasf"}))
        .await
        .assert_problem(401);
    // The rules see the NFKC form too: fullwidth "password" is still common.
    let common = app
        .post_json(
            "/auth/signup",
            &json!({"email": "common@example.com", "password": "ｐａｓｓｗｏｒｄｐａｓｓｗｏｒｄ", "name": "C"}),
        )
        .await
        .assert_problem(400);
    assert_eq!(common["errors"][0]["message"], "is too common");
}
