//! Second factors (API.md "Second factors"): TOTP enrolment, the login
//! challenge and `POST /auth/mfa`, recovery codes, `amr`, and
//! `auth.require_mfa_for`. The clock is injected: codes are computed for
//! the server's "now" as an authenticator app would, and steps, expiry and
//! reuse are walked through without sleeping.

use std::sync::Arc;

use base64::Engine;
use rampart::{auth::totp, clock::ManualClock, domain::Role};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::helpers::{TestApp, TestResponse, TestUser, spawn_with};

/// A clock 5 s into a 30-second step, so that "now" and "30 s later" are
/// always neighbouring steps.
fn step_aligned_clock() -> ManualClock {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let start = now - now.rem_euclid(totp::STEP_SECS) + 5;
    ManualClock::new(OffsetDateTime::from_unix_timestamp(start).unwrap())
}

async fn app_with_clock(clock: &ManualClock) -> TestApp {
    let clock = clock.clone();
    spawn_with(move |options| options.clock = Arc::new(clock)).await
}

/// The code an app shows now on `clock`.
fn code(secret: &[u8], clock: &ManualClock, offset_secs: i64) -> String {
    use rampart::clock::Clock;
    totp::code_at(secret, clock.now().unix_timestamp() + offset_secs)
}

/// Enrols TOTP for the bearer of `token`: (secret, recovery codes). The
/// confirmation spends the current step's code.
async fn enrol(app: &TestApp, token: &str, clock: &ManualClock) -> (Vec<u8>, Vec<String>) {
    let started = app.send(app.client.post(app.url("/api/profile/mfa/totp")).bearer_auth(token)).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let secret = totp::secret_from_base32(started.json()["secret"].as_str().unwrap()).unwrap();
    let confirmed = app
        .send(
            app.client
                .post(app.url("/api/profile/mfa/totp/confirm"))
                .bearer_auth(token)
                .json(&json!({"code": code(&secret, clock, 0)})),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let codes =
        confirmed.json()["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    (secret, codes)
}

async fn password_login(app: &TestApp, user: &TestUser) -> TestResponse {
    app.post_json("/auth/login", &json!({"email": user.email, "password": user.password})).await
}

/// A password login that must answer the challenge: its `mfa_token`.
async fn challenged(app: &TestApp, user: &TestUser) -> String {
    let login = password_login(app, user).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let body = login.json();
    assert_eq!(body["mfa_required"], true, "{}", login.body);
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn second_step(app: &TestApp, body: Value) -> TestResponse {
    app.post_json("/auth/mfa", &body).await
}

/// The claims of a JWT, unverified (the server verified it).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn audit_count(app: &TestApp, kind: &str) -> usize {
    app.audit_events().iter().filter(|event| event["event"] == kind).count()
}

#[tokio::test]
async fn totp_enrolment_puts_a_second_step_in_every_password_login_and_each_code_works_once() {
    let clock = step_aligned_clock();
    let app = app_with_clock(&clock).await;
    let user = app.users.user.clone();
    let token = app.token_for(&user).await;

    // The enrolment: base32 secret, otpauth URI, QR code as SVG; not
    // active before its confirmation.
    let started = app.send(app.client.post(app.url("/api/profile/mfa/totp")).bearer_auth(&token)).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let enrolment = started.json();
    let secret = totp::secret_from_base32(enrolment["secret"].as_str().unwrap()).unwrap();
    assert!(secret.len() >= 20, "at least 160 bits");
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Rampart:user%40example.com?secret="), "{uri}");
    assert!(enrolment["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(password_login(&app, &user).await.json()["access_token"].is_string(), "pending is not on");

    // A wrong code does not confirm; the right one does, with ten codes.
    let confirm = |code: String| {
        app.send(
            app.client.post(app.url("/api/profile/mfa/totp/confirm")).bearer_auth(&token).json(&json!({"code": code})),
        )
    };
    confirm(code(&secret, &clock, 90)).await.assert_problem(403);
    let confirmed = confirm(code(&secret, &clock, 0)).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let recovery: Vec<String> =
        confirmed.json()["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(recovery.iter().collect::<std::collections::BTreeSet<_>>().len(), 10);
    // Once on, a new enrolment is a conflict, and the factors show.
    app.send(app.client.post(app.url("/api/profile/mfa/totp")).bearer_auth(&token)).await.assert_problem(409);
    let factors = app.get_as("/api/profile/mfa", &token).await.json();
    assert_eq!(factors, json!({"totp": true, "recovery_codes_left": 10, "methods": ["totp", "recovery_code"]}));
    // A key never manages second factors, nor reads them.
    let (_, key) = app.api_key(&token, &["profile:read", "profile:write"]).await;
    for refused in [
        app.get_as("/api/profile/mfa", &key).await,
        app.send(app.client.post(app.url("/api/profile/mfa/totp")).bearer_auth(&key)).await,
        app.send(
            app.client.delete(app.url("/api/profile/mfa/totp")).bearer_auth(&key).json(&json!({"code": "123456"})),
        )
        .await,
    ] {
        assert_eq!(refused.assert_problem(403)["code"], "key_not_allowed");
    }

    // A password login now answers the challenge only: no tokens, no cookie.
    let login = password_login(&app, &user).await;
    assert_eq!(login.status, 200);
    let body = login.json();
    assert_eq!(body["mfa_required"], true);
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none(), "{}", login.body);
    assert!(login.header("set-cookie").is_none(), "no cookie before the second step");
    let mfa_token = body["mfa_token"].as_str().unwrap().to_owned();

    // The challenge is no bearer credential.
    app.get_as("/api/profile", &mfa_token).await.assert_problem(401);

    // The confirmation's code was accepted once already: refused.
    second_step(&app, json!({"mfa_token": mfa_token, "code": code(&secret, &clock, 0)})).await.assert_problem(401);
    // Thirty seconds on, the new step's code completes the login.
    clock.advance(time::Duration::seconds(30));
    let done = second_step(&app, json!({"mfa_token": mfa_token, "code": code(&secret, &clock, 0)})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let tokens = done.json();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(app.get_as("/api/profile", access).await.status, 200);
    // A spent challenge is refused, even with a good code.
    second_step(&app, json!({"mfa_token": mfa_token, "code": code(&secret, &clock, 30)})).await.assert_problem(401);

    // The same code on a new challenge, and an earlier step's: refused.
    let again = challenged(&app, &user).await;
    second_step(&app, json!({"mfa_token": again, "code": code(&secret, &clock, 0)})).await.assert_problem(401);
    second_step(&app, json!({"mfa_token": again, "code": code(&secret, &clock, -30)})).await.assert_problem(401);
    // The next step's code (a clock running ahead) works once.
    let ahead = second_step(&app, json!({"mfa_token": again, "code": code(&secret, &clock, 30)})).await;
    assert_eq!(ahead.status, 200, "{}", ahead.body);

    // A refresh keeps the amr of the sign-in.
    let refreshed = app.post_json("/auth/refresh", &json!({"refresh_token": tokens["refresh_token"]})).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(claims(refreshed.json()["access_token"].as_str().unwrap())["amr"], json!(["pwd", "otp", "mfa"]));

    assert_eq!(audit_count(&app, "mfa_enabled"), 1);
    assert_eq!(audit_count(&app, "mfa_success"), 2);
    assert!(audit_count(&app, "mfa_failure") >= 5);
    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    assert!(scrape.contains("rampart_second_factor_events_total{event=\"mfa_success\"} 2"), "{scrape}");
    // Codes and secrets never reach a log line.
    let logs = app.logs.contents();
    assert!(!logs.contains(&mfa_token) && !logs.contains(enrolment["secret"].as_str().unwrap()));
    assert!(recovery.iter().all(|code| !logs.contains(code.as_str())));
}

#[tokio::test]
async fn recovery_codes_work_once_and_challenges_expire_and_run_out_of_attempts() {
    let clock = step_aligned_clock();
    let app = app_with_clock(&clock).await;
    let user = app.users.user.clone();
    let token = app.token_for(&user).await;
    let (secret, recovery) = enrol(&app, &token, &clock).await;

    // A recovery code completes a login (typed in capitals, without dashes),
    // and is spent.
    let challenge = challenged(&app, &user).await;
    let loose = recovery[0].to_uppercase().replace('-', "");
    let done = second_step(&app, json!({"mfa_token": challenge, "recovery_code": loose})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(claims(done.json()["access_token"].as_str().unwrap())["amr"], json!(["pwd", "otp", "mfa"]));
    let challenge = challenged(&app, &user).await;
    second_step(&app, json!({"mfa_token": challenge, "recovery_code": recovery[0]})).await.assert_problem(401);
    assert_eq!(audit_count(&app, "recovery_code_used"), 1);
    assert_eq!(app.get_as("/api/profile/mfa", &token).await.json()["recovery_codes_left"], 9);

    // Neither or both of code and recovery_code: 400.
    let both = second_step(&app, json!({"mfa_token": challenge, "code": "123456", "recovery_code": recovery[1]})).await;
    assert_eq!(both.assert_problem(400)["errors"][0]["field"], "code");
    second_step(&app, json!({"mfa_token": challenge})).await.assert_problem(400);

    // Five minutes and the challenge is gone, good code or not.
    let expiring = challenged(&app, &user).await;
    clock.advance(time::Duration::minutes(5) + time::Duration::seconds(1));
    second_step(&app, json!({"mfa_token": expiring, "code": code(&secret, &clock, 0)})).await.assert_problem(401);

    // What a challenge takes can be asked with its token alone (a page that
    // got `?mfa=`): no attempt is counted, and no passkey is offered here.
    let guessed = challenged(&app, &user).await;
    for _ in 0..6 {
        let options = app.post_json("/auth/mfa/options", &json!({"mfa_token": guessed})).await;
        assert_eq!(options.status, 200, "{}", options.body);
        assert_eq!(options.json()["methods"], json!(["totp", "recovery_code"]));
        assert!(options.json().get("passkey").is_none(), "{}", options.body);
        assert!(options.json()["expires_in"].as_i64().is_some_and(|secs| secs > 0 && secs <= 300));
    }
    // A passkey answer for a user without passkeys is a failed attempt.
    let forged = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}});
    second_step(&app, json!({"mfa_token": guessed, "passkey": forged})).await.assert_problem(401);
    // Five attempts, then even the right code is refused, and the options too.
    for wrong in ["000000", "111111", "222222", "333333"] {
        let refused = second_step(&app, json!({"mfa_token": guessed, "code": wrong})).await;
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    second_step(&app, json!({"mfa_token": guessed, "code": code(&secret, &clock, 0)})).await.assert_problem(401);
    app.post_json("/auth/mfa/options", &json!({"mfa_token": guessed})).await.assert_problem(401);
    app.post_json("/auth/mfa/options", &json!({"mfa_token": "mfa_unknown"})).await.assert_problem(401);
    // An unknown or malformed challenge is the same 401.
    second_step(&app, json!({"mfa_token": "mfa_unknown", "code": code(&secret, &clock, 0)})).await.assert_problem(401);
    // Signing out everywhere ends the sign-ins waiting for their second step.
    let waiting = challenged(&app, &user).await;
    let logout_all = app.send(app.client.post(app.url("/auth/logout-all")).bearer_auth(&token)).await;
    assert_eq!(logout_all.status, 204, "{}", logout_all.body);
    second_step(&app, json!({"mfa_token": waiting, "code": code(&secret, &clock, 0)})).await.assert_problem(401);
    // The code itself was never spent: a new challenge takes it.
    let fresh = challenged(&app, &user).await;
    assert_eq!(second_step(&app, json!({"mfa_token": fresh, "code": code(&secret, &clock, 0)})).await.status, 200);
}

#[tokio::test]
async fn a_session_login_ends_its_second_step_with_a_session_and_totp_turns_off_with_a_fresh_code() {
    let clock = step_aligned_clock();
    let app = app_with_clock(&clock).await;
    let user = app.users.other.clone();
    let token = app.token_for(&user).await;
    let (secret, _) = enrol(&app, &token, &clock).await;

    let session = app.post_json("/auth/session", &json!({"email": user.email, "password": user.password})).await;
    assert_eq!(session.status, 200);
    assert_eq!(session.json()["mfa_required"], true);
    assert!(session.header("set-cookie").is_none(), "no session before the second step");
    clock.advance(time::Duration::seconds(30));
    let done =
        second_step(&app, json!({"mfa_token": session.json()["mfa_token"], "code": code(&secret, &clock, 0)})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.json()["csrf_token"].is_string() && done.json().get("access_token").is_none());
    let cookie = done.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("rampart_session="), "{cookie}");
    let profile = app.send(app.client.get(app.url("/api/profile")).header("cookie", &cookie)).await;
    assert_eq!(profile.status, 200, "{}", profile.body);

    // Off needs a code not accepted before (the last sign-in's is spent).
    let off = |code: String| {
        app.send(app.client.delete(app.url("/api/profile/mfa/totp")).bearer_auth(&token).json(&json!({"code": code})))
    };
    off(code(&secret, &clock, 0)).await.assert_problem(403);
    off("12345".to_owned()).await.assert_problem(403);
    clock.advance(time::Duration::seconds(30));
    assert_eq!(off(code(&secret, &clock, 0)).await.status, 204);
    off(code(&secret, &clock, 30)).await.assert_problem(409);
    assert_eq!(audit_count(&app, "mfa_disabled"), 1);
    // Logins are one step again.
    assert!(password_login(&app, &user).await.json()["access_token"].is_string());
    // A confirmation with nothing pending is a conflict.
    let late = app
        .send(
            app.client
                .post(app.url("/api/profile/mfa/totp/confirm"))
                .bearer_auth(&token)
                .json(&json!({"code": code(&secret, &clock, 0)})),
        )
        .await;
    late.assert_problem(409);
}

#[tokio::test]
async fn a_role_that_requires_mfa_may_only_enrol_until_it_signs_in_with_two_factors() {
    let clock = step_aligned_clock();
    let clock_for_app = clock.clone();
    let app = spawn_with(move |options| {
        options.clock = Arc::new(clock_for_app);
        options.config.auth.require_mfa_for = vec![Role::Admin];
    })
    .await;
    let admin = app.users.admin.clone();
    let token = app.token_for(&admin).await;
    assert_eq!(claims(&token)["amr"], json!(["pwd"]));

    // Everything but the profile, enrolment and signing out: 403 with the code.
    let refused = app.get_as("/api/admin/users", &token).await;
    assert_eq!(refused.assert_problem(403)["code"], "mfa_enrolment_required");
    let posts = app.get_as("/api/posts", &token).await;
    assert_eq!(posts.assert_problem(403)["code"], "mfa_enrolment_required");
    assert_eq!(app.get_as("/api/profile", &token).await.status, 200);
    let (secret, _) = enrol(&app, &token, &clock).await;
    // The credential decides: this one is still one factor.
    let still = app.get_as("/api/admin/users", &token).await;
    assert_eq!(still.assert_problem(403)["code"], "mfa_enrolment_required");

    // A sign-in with both factors lifts it.
    let challenge = challenged(&app, &admin).await;
    clock.advance(time::Duration::seconds(30));
    let done = second_step(&app, json!({"mfa_token": challenge, "code": code(&secret, &clock, 0)})).await;
    let strong = done.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get_as("/api/admin/users", &strong).await.status, 200);

    // Other roles are not concerned; signing out works for the limited.
    let user_token = app.token_for(&app.users.user).await;
    assert_eq!(app.get_as("/api/posts", &user_token).await.status, 200);
    let logout = app.send(app.client.post(app.url("/auth/logout")).bearer_auth(&token)).await;
    assert_eq!(logout.status, 204, "{}", logout.body);
}

/// The pages in Chromium: an authenticator app turned on through
/// `/account` (QR code drawn, the code computed from the key shown, ten
/// recovery codes), then a sign-in on `/login` that asks for the second
/// step. The server runs on the real clock, as the browser does.
#[tokio::test]
async fn a_person_turns_on_an_authenticator_and_signs_in_with_it_in_the_browser() {
    if !crate::browser::browser_available() {
        return;
    }
    let app = spawn_with(|_| {}).await;
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let user = app.users.manager.clone();
    crate::browser::run_browser_script(
        "mfa-pages.mjs",
        vec![
            format!("http://{}", app.address),
            user.email.clone(),
            user.password.clone(),
            target.join("mfa-enrol.png").display().to_string(),
            target.join("mfa-signed-in.png").display().to_string(),
        ],
    )
    .await;
    // The server agrees: TOTP is on, and a sign-in took the second step.
    assert_eq!(password_login(&app, &user).await.json()["mfa_required"], true);
    assert_eq!(audit_count(&app, "mfa_enabled"), 1);
    assert_eq!(audit_count(&app, "mfa_success"), 1);
}
