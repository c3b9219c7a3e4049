//! Browser sessions: the cookie, CSRF, fixation, logout and expiry.

use std::sync::Arc;

use rampart::clock::ManualClock;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::helpers::{TestApp, TestResponse, TestUser, spawn_app, spawn_with};

/// A signed-in browser: the session cookie and the CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub set_cookie: String,
}

impl Session {
    pub async fn get(&self, app: &TestApp, path: &str) -> TestResponse {
        app.send(app.client.get(app.url(path)).header("cookie", &self.cookie)).await
    }
}

pub async fn sign_in(app: &TestApp, user: &TestUser) -> Session {
    sign_in_with_cookie(app, user, None).await
}

async fn sign_in_with_cookie(app: &TestApp, user: &TestUser, old_cookie: Option<&str>) -> Session {
    let mut request =
        app.client.post(app.url("/auth/session")).json(&json!({"email": user.email, "password": user.password}));
    if let Some(cookie) = old_cookie {
        request = request.header("cookie", cookie);
    }
    let response = app.send(request).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let set_cookie = response.header("set-cookie").expect("a session cookie").to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = response.json()["csrf_token"].as_str().unwrap().to_owned();
    Session { cookie, csrf, set_cookie }
}

#[tokio::test]
async fn session_login_sets_a_hardened_cookie_and_returns_a_csrf_token() {
    let app = spawn_app().await;
    let session = sign_in(&app, &app.users.user).await;
    let attributes = &session.set_cookie;
    assert!(session.cookie.starts_with("rampart_session=") && session.cookie.len() > 40, "{attributes}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(attributes.contains(attribute), "{attribute} missing: {attributes}");
    }
    assert!(!attributes.contains("Secure"), "plain HTTP in development has no Secure flag");
    let profile = session.get(&app, "/api/profile").await;
    assert_eq!(profile.status, 200);
    assert_eq!(profile.json()["email"], app.users.user.email);
}

#[tokio::test]
async fn unsafe_cookie_requests_need_the_csrf_token() {
    let app = spawn_app().await;
    let session = sign_in(&app, &app.users.user).await;
    let rename = |csrf: Option<&str>| {
        let mut request = app
            .client
            .patch(app.url("/api/profile"))
            .header("cookie", &session.cookie)
            .json(&json!({"name": "Renamed"}));
        if let Some(token) = csrf {
            request = request.header("x-csrf-token", token);
        }
        app.send(request)
    };
    rename(None).await.assert_problem(403);
    rename(Some("wrong-token")).await.assert_problem(403);
    let ok = rename(Some(&session.csrf)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["name"], "Renamed");
    // Bearer requests need no CSRF token.
    let token = app.token_for(&app.users.user).await;
    let bearer =
        app.send(app.client.patch(app.url("/api/profile")).bearer_auth(token).json(&json!({"name": "Again"}))).await;
    assert_eq!(bearer.status, 200);
}

#[tokio::test]
async fn a_new_login_gets_a_new_session_id_and_ends_the_old_one() {
    let app = spawn_app().await;
    let first = sign_in(&app, &app.users.user).await;
    let second = sign_in_with_cookie(&app, &app.users.user, Some(&first.cookie)).await;
    assert_ne!(first.cookie, second.cookie, "no session fixation");
    first.get(&app, "/api/profile").await.assert_problem(401);
    assert_eq!(second.get(&app, "/api/profile").await.status, 200);
}

#[tokio::test]
async fn logout_deletes_the_session_on_the_server() {
    let app = spawn_app().await;
    let session = sign_in(&app, &app.users.user).await;
    let without_csrf = app.send(app.client.delete(app.url("/auth/session")).header("cookie", &session.cookie)).await;
    without_csrf.assert_problem(403);
    let out = app
        .send(
            app.client
                .delete(app.url("/auth/session"))
                .header("cookie", &session.cookie)
                .header("x-csrf-token", &session.csrf),
        )
        .await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"), "the cookie is cleared");
    // Replaying the old cookie does not bring the session back.
    session.get(&app, "/api/profile").await.assert_problem(401);
}

/// `DELETE /auth/session` ends the cookie's session on the server whatever
/// else comes with it: a valid bearer token (which used to win, leaving the
/// session alive), or a refused one.
#[tokio::test]
async fn deleting_the_session_ends_it_whatever_other_header_comes_along() {
    let app = spawn_app().await;
    let token = app.token_for(&app.users.user).await;
    let cases = [
        (format!("Bearer {token}"), 204),
        ("Bearer not-a-token".to_owned(), 401),
        ("Basic dXNlcjpwYXNz".to_owned(), 401),
    ];
    for (authorization, status) in cases {
        let session = sign_in(&app, &app.users.user).await;
        let out = app
            .send(
                app.client
                    .delete(app.url("/auth/session"))
                    .header("cookie", &session.cookie)
                    .header("authorization", &authorization),
            )
            .await;
        // A refused token is reported as refused; the session goes all the same.
        assert_eq!(out.status, status, "{authorization}: {}", out.body);
        assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"), "the cookie is cleared");
        session.get(&app, "/api/profile").await.assert_problem(401);
    }
    // The bearer token itself lives on: only the session was named.
    assert_eq!(app.get_as("/api/profile", &token).await.status, 200);
    // With the cookie alone, the CSRF rule still holds; with nothing, 401.
    let session = sign_in(&app, &app.users.user).await;
    let forged = app.send(app.client.delete(app.url("/auth/session")).header("cookie", &session.cookie)).await;
    forged.assert_problem(403);
    assert_eq!(session.get(&app, "/api/profile").await.status, 200, "a refused request deletes nothing");
    app.send(app.client.delete(app.url("/auth/session"))).await.assert_problem(401);
}

#[tokio::test]
async fn sessions_expire_when_idle_and_at_their_absolute_limit() {
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let app = spawn_with(|options| options.clock = Arc::new(clock.clone())).await;

    let idle = sign_in(&app, &app.users.user).await;
    clock.advance(Duration::minutes(29));
    assert_eq!(idle.get(&app, "/api/profile").await.status, 200, "use extends the idle timeout");
    clock.advance(Duration::minutes(29));
    assert_eq!(idle.get(&app, "/api/profile").await.status, 200);
    clock.advance(Duration::minutes(31));
    idle.get(&app, "/api/profile").await.assert_problem(401);

    let busy = sign_in(&app, &app.users.other).await;
    for _ in 0..35 {
        clock.advance(Duration::minutes(20));
        assert_eq!(busy.get(&app, "/api/profile").await.status, 200);
    }
    clock.advance(Duration::minutes(20));
    busy.get(&app, "/api/profile").await.assert_problem(401);
}
