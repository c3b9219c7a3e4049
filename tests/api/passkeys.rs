//! Passkeys (API.md "Second factors"): real WebAuthn ceremonies in
//! Chromium's virtual authenticator (registration, passwordless sign-in,
//! the second step, removal, replays), and what the API answers without a
//! browser: shapes, refusals, ownership, API keys, passkeys turned off.

use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, free_port, spawn_with};

/// A server whose relying party is `localhost` on its own port, as the
/// browser reaches it.
async fn localhost_app() -> (TestApp, String) {
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let public_url = base.clone();
    let app = spawn_with(move |options| {
        options.config.server.bind = format!("127.0.0.1:{port}").parse().unwrap();
        options.config.server.public_url = public_url;
    })
    .await;
    (app, base)
}

fn audit_count(app: &TestApp, kind: &str) -> usize {
    app.audit_events().iter().filter(|event| event["event"] == kind).count()
}

/// A body shaped like `credential.toJSON()` of a registration, whose
/// content no authenticator made.
fn forged_registration() -> Value {
    json!({
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {"clientDataJSON": "e30", "attestationObject": "oA"},
        "clientExtensionResults": {}
    })
}

fn forged_assertion() -> Value {
    json!({
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA", "userHandle": "AAAA"},
        "clientExtensionResults": {}
    })
}

/// Registration, passwordless sign-in, the second step and removal, each a
/// real ceremony with Chromium's virtual authenticator through the pages
/// and the API (tests/browser/passkeys.mjs asserts amr and the replays).
#[tokio::test]
async fn a_person_registers_a_passkey_signs_in_with_it_and_removes_it_in_the_browser() {
    if !crate::browser::browser_available() {
        return;
    }
    let (app, base) = localhost_app().await;
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let user = app.users.user.clone();
    crate::browser::run_browser_script(
        "passkeys.mjs",
        vec![
            base,
            user.email.clone(),
            user.password.clone(),
            target.join("passkeys-account.png").display().to_string(),
            target.join("passkeys-second-step.png").display().to_string(),
        ],
    )
    .await;
    // The server agrees: one passkey added and removed, three sign-ins by
    // passkey alone (page, API, removed one refused), two second steps.
    assert_eq!((audit_count(&app, "passkey_added"), audit_count(&app, "passkey_removed")), (1, 1));
    assert_eq!(audit_count(&app, "mfa_success"), 2);
    let added = app.audit_events().into_iter().find(|event| event["event"] == "passkey_added").unwrap();
    assert_eq!(added["user_id"], user.id.to_string());
    let notices = std::fs::read_dir(app.data_dir().join("outbox")).map(|dir| dir.count()).unwrap_or(0);
    assert!(notices >= 2, "a notice for the passkey added and one for the removal: {notices}");
    let token = app.token_for(&user).await;
    let listed = app.get_as("/api/profile/passkeys", &token).await;
    assert_eq!((listed.status, listed.json()["items"].as_array().unwrap().len()), (200, 0));
}

#[tokio::test]
async fn registration_needs_a_started_ceremony_and_an_answer_that_verifies() {
    let (app, _) = localhost_app().await;
    let token = app.token_for(&app.users.user).await;
    let finish = |body: Value| {
        app.send(app.client.post(app.url("/api/profile/passkeys/register/finish")).bearer_auth(&token).json(&body))
    };
    // Nothing started: 409, whatever the body.
    let nothing = finish(forged_registration()).await;
    assert!(nothing.assert_problem(409)["detail"].as_str().unwrap().contains("register/start"));

    let start = |body: Value| {
        app.send(app.client.post(app.url("/api/profile/passkeys/register/start")).bearer_auth(&token).json(&body))
    };
    start(json!({"name": "   "})).await.assert_problem(400);
    start(json!({"name": "Laptop", "extra": 1})).await.assert_problem(400);
    let started = start(json!({"name": "Laptop"})).await;
    assert_eq!(started.status, 200, "{}", started.body);
    let options = started.json();
    assert_eq!(options["rp"]["id"], "localhost");
    assert_eq!(options["user"]["name"], app.users.user.email);
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    assert!(options["challenge"].as_str().is_some_and(|challenge| challenge.len() >= 43), "{options}");

    // Not a registration answer at all: 400, and the ceremony still waits.
    finish(json!({"id": "AAAA"})).await.assert_problem(400);
    finish(json!({"id": "A", "rawId": "A", "type": "password", "response": {}})).await.assert_problem(400);
    // Shaped right, but no authenticator made it: 403, and the ceremony is spent.
    finish(forged_registration()).await.assert_problem(403);
    finish(forged_registration()).await.assert_problem(409);
    assert_eq!(audit_count(&app, "passkey_added"), 0);
}

#[tokio::test]
async fn passwordless_sign_in_refuses_unknown_spent_and_forged_answers() {
    let (app, _) = localhost_app().await;
    // Only the pages that run a ceremony may use WebAuthn; every other
    // response denies it, as every feature.
    let login = app.get("/login").await;
    let allowed = login.header("permissions-policy").unwrap();
    assert!(allowed.contains("publickey-credentials-get=(self)") && allowed.contains("camera=()"), "{allowed}");
    let started = app.post_json("/auth/passkey/start", &json!({})).await;
    assert_eq!(started.status, 200, "{}", started.body);
    let denied = started.header("permissions-policy").unwrap();
    assert!(denied.contains("publickey-credentials-get=()") && denied.contains("publickey-credentials-create=()"));
    let options = started.json();
    assert_eq!(options["rpId"], "localhost");
    assert_eq!(options["userVerification"], "required");
    assert!(options.get("allowCredentials").is_none_or(|list| list.as_array().is_some_and(Vec::is_empty)));
    let challenge_id = options["challenge_id"].as_str().unwrap().to_owned();

    let finish = |body: Value| app.send(app.client.post(app.url("/auth/passkey/finish")).json(&body));
    finish(json!({"challenge_id": challenge_id})).await.assert_problem(400);
    finish(json!({"challenge_id": "not-a-uuid", "credential": forged_assertion()})).await.assert_problem(400);
    let forged = finish(json!({"challenge_id": challenge_id, "credential": forged_assertion()})).await;
    let problem = forged.assert_problem(401);
    assert!(problem["detail"].as_str().unwrap().contains("passkey"), "{problem}");
    // The ceremony was spent by the failure; an unknown one is the same 401.
    finish(json!({"challenge_id": challenge_id, "credential": forged_assertion()})).await.assert_problem(401);
    let unknown = uuid::Uuid::new_v4().to_string();
    finish(json!({"challenge_id": unknown, "credential": forged_assertion()})).await.assert_problem(401);
    assert_eq!(audit_count(&app, "login_failure"), 3);
}

#[tokio::test]
async fn passkeys_are_the_owners_business_and_not_an_api_keys() {
    let (app, _) = localhost_app().await;
    let token = app.token_for(&app.users.user).await;
    let missing = uuid::Uuid::now_v7();
    let removal =
        app.send(app.client.delete(app.url(&format!("/api/profile/passkeys/{missing}"))).bearer_auth(&token)).await;
    removal.assert_problem(404);
    app.send(app.client.delete(app.url("/api/profile/passkeys/nope")).bearer_auth(&token)).await.assert_problem(404);
    app.get("/api/profile/passkeys").await.assert_problem(401);

    let (_, key) = app.api_key(&token, &["profile:read", "profile:write"]).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/profile/passkeys".to_owned()),
        (reqwest::Method::POST, "/api/profile/passkeys/register/start".to_owned()),
        (reqwest::Method::DELETE, format!("/api/profile/passkeys/{missing}")),
    ] {
        let refused = app
            .send(app.client.request(method, app.url(&path)).bearer_auth(&key).json(&json!({"name": "Key's passkey"})))
            .await;
        assert_eq!(refused.assert_problem(403)["code"], "key_not_allowed", "{path}");
    }

    // A user without passkeys gets tokens at once: no challenge.
    let login = app
        .post_json("/auth/login", &json!({"email": app.users.user.email, "password": app.users.user.password}))
        .await;
    assert!(login.json().get("access_token").is_some(), "no second factor, no challenge: {}", login.body);
}

/// A `server.public_url` on an IP address (no `[webauthn]`): browsers
/// refuse passkeys there, so the server starts with them off and says so.
#[tokio::test]
async fn passkeys_are_off_when_the_origin_is_an_ip_address() {
    let app = spawn_with(|options| options.config.server.public_url = "http://127.0.0.1:3000".into()).await;
    let started = app.post_json("/auth/passkey/start", &json!({})).await;
    assert!(started.assert_problem(409)["detail"].as_str().unwrap().contains("webauthn.origin"));
    let login = app.get("/login").await;
    assert!(!login.body.contains("passkey-sign-in"), "no passkey button on /login");
    assert!(app.logs.contents().contains("passkeys are off"));
}

/// Two instances on one PostgreSQL database behind one origin: a
/// registration and a sign-in begun on one are finished on the other (the
/// ceremonies are in the database, not in an instance's memory).
#[tokio::test]
async fn a_ceremony_begun_on_one_instance_is_finished_on_another() {
    if !crate::browser::browser_available() {
        return;
    }
    let Some(url) = crate::postgres::postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = crate::postgres_schema::TestSchema::create(&url, "rampart_passkeys_").await;
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let instance = |bind_port: Option<u16>, seed: bool| {
        let (database, origin) = (schema.url.clone(), origin.clone());
        spawn_with(move |options| {
            options.config.database.url = SecretString::from(database);
            options.config.webauthn.origin = origin;
            if let Some(port) = bind_port {
                options.config.server.bind = format!("127.0.0.1:{port}").parse().unwrap();
            }
            options.seed = seed;
        })
    };
    let a = instance(Some(port), true).await;
    let b = instance(None, false).await;
    let user = a.users.manager.clone();
    let (token_a, token_b) = (a.token_for(&user).await, b.token_for(&user).await);
    let output = crate::browser::browser_output(
        "passkey-instances.mjs",
        vec![origin.clone(), format!("http://{}", b.address), token_a, token_b],
    )
    .await;
    let answers: Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
    assert_eq!((answers["registered"].as_u64(), answers["name"].as_str()), (Some(201), Some("Shared")), "{answers}");
    assert_eq!(answers["signed_in"], 200, "{answers}");
    let access = answers["access_token"].as_str().unwrap();
    let profile = b.get_as("/api/profile", access).await;
    assert_eq!(profile.json()["email"], user.email);
    a.stop();
    b.stop();
    schema.drop().await;
}

/// `auth.require_mfa_for`: a one-factor credential of such a role may set
/// up a passkey (it is how it gets a second factor), not use the API.
#[tokio::test]
async fn a_role_that_requires_mfa_may_register_a_passkey_with_one_factor() {
    let port = free_port();
    let app = spawn_with(move |options| {
        options.config.server.bind = format!("127.0.0.1:{port}").parse().unwrap();
        options.config.auth.require_mfa_for = vec![rampart::domain::Role::Admin];
    })
    .await;
    let token = app.token_for(&app.users.admin).await;
    let refused = app.get_as("/api/admin/users", &token).await;
    assert_eq!(refused.assert_problem(403)["code"], "mfa_enrolment_required");
    assert_eq!(app.get_as("/api/profile/passkeys", &token).await.status, 200);
    let started = app
        .send(
            app.client
                .post(app.url("/api/profile/passkeys/register/start"))
                .bearer_auth(&token)
                .json(&json!({"name": "Admin key"})),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
}
