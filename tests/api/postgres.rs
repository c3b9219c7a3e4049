//! The server on PostgreSQL: the same routes work when `database.url` is a
//! `postgres://` URL (here with its own schema through the URL's
//! `options`). Skipped without `TEST_POSTGRES_URL`, failed under CI=true.

use secrecy::SecretString;
use serde_json::json;

use crate::{helpers::spawn_with, postgres_schema::TestSchema};

pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true but TEST_POSTGRES_URL is not set"),
        _ => None,
    }
}

#[tokio::test]
async fn the_api_runs_on_postgresql() {
    let Some(url) = postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = TestSchema::create(&url, "rampart_api_").await;
    let app = spawn_with(|options| options.config.database.url = SecretString::from(schema.url.clone())).await;

    assert_eq!(app.get("/ready").await.status, 200);
    let signup = app
        .post_json(
            "/auth/signup",
            &json!({"email": "pg@example.com", "password": "postgres passphrase ok", "name": "Pg"}),
        )
        .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    let pair = app.login("pg@example.com", "postgres passphrase ok").await;
    let token = pair["access_token"].as_str().unwrap();
    let created = app
        .send(app.client.post(app.url("/api/posts")).bearer_auth(token).json(&json!({"title": "on pg", "body": "b"})))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(app.get("/api/posts").await.json()["items"][0]["title"], "on pg");
    let rotated = app.post_json("/auth/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(rotated.status, 200);
    app.post_json("/auth/refresh", &json!({"refresh_token": pair["refresh_token"]})).await.assert_problem(401);
    let admin = app.token_for(&app.users.admin).await;
    let dashboard = app.get_as("/api/admin/dashboard", &admin).await.json();
    assert_eq!(dashboard["users"], 5);

    app.stop();
    schema.drop().await;
}
