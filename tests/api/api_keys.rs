//! API keys (API.md "API keys"): made, used, scoped, stopped, audited.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResponse, spawn_app, spawn_with};

/// Makes a key for the bearer of `token`; returns the response.
async fn create(app: &TestApp, token: &str, body: Value) -> TestResponse {
    app.send(app.client.post(app.url("/api/profile/api-keys")).bearer_auth(token).json(&body)).await
}

fn audit_events(app: &TestApp, event: &str) -> Vec<Value> {
    app.audit_events().into_iter().filter(|line| line["event"] == event).collect()
}

/// A request refused because of the key: 401 with the invalid_token challenge.
fn assert_refused_key(response: &TestResponse) {
    response.assert_problem(401);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"rampart\", error=\"invalid_token\""),
        "{response:?}"
    );
}

#[tokio::test]
async fn a_key_is_shown_once_stored_as_a_hash_and_acts_as_its_owner() {
    let app = spawn_app().await;
    let token = app.token_for(&app.users.user).await;
    let created =
        create(&app, &token, json!({"name": "  nightly export ", "scopes": ["profile:read", "posts:read"]})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let json = created.json();
    let (id, key) = (json["id"].as_str().unwrap(), json["key"].as_str().unwrap());
    let secret = key.strip_prefix(&format!("rk_{id}_")).expect("rk_<id>_<secret>");
    assert!(secret.len() >= 22 && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(json["name"], "nightly export");
    assert_eq!(json["scopes"], json!(["posts:read", "profile:read"]));
    assert!(json["last_used_at"].is_null());
    // The default expiry: 365 days ahead.
    let expires = time::OffsetDateTime::parse(
        json["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!((364..=365).contains(&days), "{days}");

    let profile = app.get_as("/api/profile", key).await;
    assert_eq!(profile.status, 200, "{}", profile.body);
    assert_eq!(profile.json()["id"], app.users.user.id.to_string());
    assert_eq!(app.get_as("/api/posts", key).await.status, 200);

    // Listed without the key or its hash, its use noted to the minute.
    let listed = app.get_as("/api/profile/api-keys", &token).await;
    assert_eq!(listed.status, 200);
    let items = listed.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert!(items[0].get("key").is_none() && !listed.body.contains(secret), "{}", listed.body);
    assert_eq!(items[0]["id"], id);
    let last_used = items[0]["last_used_at"].as_str().expect("noted at its first use");
    assert!(last_used.ends_with(":00Z"), "to the minute: {last_used}");
    // Nobody else sees it; never again is the secret in a response or log line.
    let other = app.token_for(&app.users.other).await;
    assert!(app.get_as("/api/profile/api-keys", &other).await.json()["items"].as_array().unwrap().is_empty());
    let admin = app.token_for(&app.users.admin).await;
    let all = app.get_as(&format!("/api/admin/api-keys?user_id={}", app.users.user.id), &admin).await;
    assert_eq!(all.json()["items"][0]["id"], id);
    assert!(!all.body.contains(secret));
    assert!(!app.logs.contents().contains(secret), "the secret reached a log line");

    let created = audit_events(&app, "api_key_created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["user_id"], app.users.user.id.to_string());
}

#[tokio::test]
async fn scopes_bound_what_a_key_may_do_whatever_its_owners_role() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let (_, read_only) = app.api_key(&admin, &["posts:read"]).await;
    assert_eq!(app.get_as("/api/posts", &read_only).await.status, 200);
    let write = app
        .send(app.client.post(app.url("/api/posts")).bearer_auth(&read_only).json(&json!({"title": "t", "body": "b"})))
        .await;
    assert_eq!(write.assert_problem(403)["code"], "scope_missing");
    // An admin's key without admin scopes is not an admin.
    assert_eq!(app.get_as("/api/admin/users", &read_only).await.assert_problem(403)["code"], "scope_missing");
    assert_eq!(app.get_as("/api/profile", &read_only).await.assert_problem(403)["code"], "scope_missing");

    let (_, writer) = app.api_key(&admin, &["posts:write", "admin:read"]).await;
    let post = app
        .send(app.client.post(app.url("/api/posts")).bearer_auth(&writer).json(&json!({"title": "t", "body": "b"})))
        .await;
    assert_eq!(post.status, 201, "{}", post.body);
    assert_eq!(app.get_as("/api/admin/users", &writer).await.status, 200);
    let post_id = post.json()["id"].as_str().unwrap().to_owned();
    let delete = app.send(app.client.delete(app.url(&format!("/api/posts/{post_id}"))).bearer_auth(&writer)).await;
    assert_eq!(delete.assert_problem(403)["code"], "scope_missing");
    // A scope does not lend what the role lacks: a plain user's admin key.
    let user = app.token_for(&app.users.user).await;
    let (_, user_admin_key) = app.api_key(&user, &["admin:read"]).await;
    assert!(app.get_as("/api/admin/users", &user_admin_key).await.assert_problem(403).get("code").is_none());
}

#[tokio::test]
async fn a_key_can_never_manage_keys_passwords_or_sign_out() {
    let app = spawn_app().await;
    let token = app.token_for(&app.users.user).await;
    let (id, key) = app.api_key(&token, &["profile:read", "profile:write"]).await;
    let refused = [
        create(&app, &key, json!({"name": "child", "scopes": ["posts:read"]})).await,
        app.get_as("/api/profile/api-keys", &key).await,
        app.send(app.client.delete(app.url(&format!("/api/profile/api-keys/{id}"))).bearer_auth(&key)).await,
        app.send(
            app.client
                .put(app.url("/api/profile/password"))
                .bearer_auth(&key)
                .json(&json!({"current_password": app.users.user.password, "new_password": "a brand new passphrase"})),
        )
        .await,
        app.send(app.client.post(app.url("/auth/logout-all")).bearer_auth(&key)).await,
        app.send(app.client.post(app.url("/auth/logout")).bearer_auth(&key)).await,
        app.send(app.client.delete(app.url("/auth/session")).bearer_auth(&key)).await,
        // Refused before the body is read: a bad body is still 403.
        app.send(
            app.client
                .post(app.url("/api/profile/api-keys"))
                .bearer_auth(&key)
                .header("content-type", "text/plain")
                .body("not json"),
        )
        .await,
    ];
    for response in refused {
        assert_eq!(response.assert_problem(403)["code"], "key_not_allowed", "{response:?}");
    }
    let admin = app.token_for(&app.users.admin).await;
    let (_, admin_key) = app.api_key(&admin, &["admin:read", "admin:write"]).await;
    assert_eq!(app.get_as("/api/admin/api-keys", &admin_key).await.assert_problem(403)["code"], "key_not_allowed");
    // A non-admin with a malformed filter learns nothing but 403.
    let user = app.token_for(&app.users.other).await;
    app.get_as("/api/admin/api-keys?user_id=nope", &user).await.assert_problem(403);
    // The key still works: none of that touched it.
    assert_eq!(app.get_as("/api/profile", &key).await.status, 200);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let token = app.token_for(&app.users.user).await;
    let errors = |response: TestResponse| {
        let problem = response.assert_problem(400);
        problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["field"].as_str().unwrap().to_owned(), e["message"].as_str().unwrap().to_owned()))
            .collect::<Vec<_>>()
    };
    let unknown = errors(create(&app, &token, json!({"name": "x", "scopes": ["posts:read", "posts:admin"]})).await);
    assert_eq!(unknown, [("scopes".to_owned(), "\"posts:admin\" is not a scope".to_owned())]);
    let no_route = errors(create(&app, &token, json!({"name": "x", "scopes": ["routes:nowhere"]})).await);
    assert_eq!(no_route, [("scopes".to_owned(), "\"routes:nowhere\" names no route".to_owned())]);
    assert_eq!(errors(create(&app, &token, json!({"name": "x", "scopes": []})).await)[0].0, "scopes");
    assert_eq!(errors(create(&app, &token, json!({"name": " ", "scopes": ["posts:read"]})).await)[0].0, "name");
    let past = errors(
        create(&app, &token, json!({"name": "x", "scopes": ["posts:read"], "expires_at": "2020-01-01T00:00:00Z"}))
            .await,
    );
    assert_eq!(past[0], ("expires_at".to_owned(), "must be in the future".to_owned()));
    let far = errors(
        create(&app, &token, json!({"name": "x", "scopes": ["posts:read"], "expires_at": "2999-01-01T00:00:00Z"}))
            .await,
    );
    assert_eq!(far[0], ("expires_at".to_owned(), "must be at most 365d ahead".to_owned()));
    assert_eq!(
        errors(create(&app, &token, json!({"name": "x", "scopes": ["posts:read"], "expires_at": "soon"})).await)[0].0,
        "expires_at"
    );
    create(&app, &token, json!({"name": "x", "scopes": ["posts:read"], "extra": 1})).await.assert_problem(400);
    // A time whose UTC form would leave the calendar's range: 400, no panic.
    let edge = json!({"name": "x", "scopes": ["posts:read"], "expires_at": "9999-12-31T23:59:59-01:00"});
    assert_eq!(errors(create(&app, &token, edge).await)[0].0, "expires_at");
    let null = errors(create(&app, &token, json!({"name": "x", "scopes": ["posts:read"], "expires_at": null})).await);
    assert_eq!(null[0].0, "expires_at");
    // Someone else's key, or no such key: 404 alike.
    let other = app.token_for(&app.users.other).await;
    let (id, _) = app.api_key(&other, &["posts:read"]).await;
    for path in [format!("/api/profile/api-keys/{id}"), "/api/profile/api-keys/nope".into()] {
        app.send(app.client.delete(app.url(&path)).bearer_auth(&token)).await.assert_problem(404);
    }
    // Malformed and forged keys: 401, never 500; audited as refused keys
    // (one event per client and route a minute), with the key id and why.
    assert_refused_key(&app.get_as("/api/posts", &format!("rk_{id}_wrong-secret")).await);
    for forged in ["rk_", "rk_nope_secret", &format!("rk_{}_x", uuid::Uuid::now_v7())] {
        assert_refused_key(&app.get_as("/api/profile", forged).await);
    }
    let refused = audit_events(&app, "api_key_refused");
    assert!(refused.iter().any(|event| event["detail"] == format!("key {id}: wrong_secret")), "{refused:?}");
    assert!(refused.iter().any(|event| event["detail"] == "malformed"), "{refused:?}");
}

#[tokio::test]
async fn revoking_a_key_stops_it_at_once() {
    let app = spawn_app().await;
    let token = app.token_for(&app.users.user).await;
    let (id, key) = app.api_key(&token, &["posts:read"]).await;
    assert_eq!(app.get_as("/api/posts", &key).await.status, 200);
    let revoked =
        app.send(app.client.delete(app.url(&format!("/api/profile/api-keys/{id}"))).bearer_auth(&token)).await;
    assert_eq!(revoked.status, 204);
    assert_refused_key(&app.get_as("/api/posts", &key).await);
    assert!(app.get_as("/api/profile/api-keys", &token).await.json()["items"].as_array().unwrap().is_empty());
    assert_eq!(audit_events(&app, "api_key_revoked").len(), 1);

    // An admin revokes anyone's key.
    let (id, key) = app.api_key(&token, &["posts:read"]).await;
    let admin = app.token_for(&app.users.admin).await;
    let revoked = app.send(app.client.delete(app.url(&format!("/api/admin/api-keys/{id}"))).bearer_auth(&admin)).await;
    assert_eq!(revoked.status, 204);
    assert_refused_key(&app.get_as("/api/posts", &key).await);
    // Not a manager.
    let manager = app.token_for(&app.users.manager).await;
    app.get_as("/api/admin/api-keys", &manager).await.assert_problem(403);

    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    assert!(scrape.contains("rampart_api_key_authentications_total{outcome=\"success\"} 1"), "{scrape}");
    assert!(scrape.contains("rampart_api_key_authentications_total{outcome=\"unknown\"} 2"), "{scrape}");
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let clock = rampart::clock::ManualClock::new(time::OffsetDateTime::now_utc());
    let app = spawn_with(|options| options.clock = Arc::new(clock.clone())).await;
    let token = app.token_for(&app.users.user).await;
    // Sent with an offset far from UTC: kept, shown and compared in UTC.
    let expires_at = (rampart::clock::Clock::now(&clock) + time::Duration::hours(1))
        .to_offset(time::UtcOffset::from_hms(-11, 0, 0).unwrap())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let created =
        create(&app, &token, json!({"name": "short", "scopes": ["posts:read"], "expires_at": expires_at})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.json()["key"].as_str().unwrap().to_owned();
    assert!(created.json()["expires_at"].as_str().unwrap().ends_with('Z'), "{}", created.body);
    assert_eq!(app.get_as("/api/posts", &key).await.status, 200);
    clock.advance(time::Duration::minutes(59));
    let token = app.token_for(&app.users.user).await;
    let listed = app.get_as("/api/profile/api-keys", &token).await;
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1, "listed until it expires");
    assert_eq!(app.get_as("/api/posts", &key).await.status, 200);
    clock.advance(time::Duration::minutes(2));
    assert_refused_key(&app.get_as("/api/posts", &key).await);
}

#[tokio::test]
async fn what_stops_the_owner_stops_their_keys_and_a_password_change_does_not() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let user = &app.users.user;
    let token = app.token_for(user).await;
    let (_, key) = app.api_key(&token, &["posts:read", "profile:read"]).await;

    // The owner's own password change: keys are not derived from it.
    let changed = app
        .send(
            app.client
                .put(app.url("/api/profile/password"))
                .bearer_auth(&token)
                .json(&json!({"current_password": user.password, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    assert_eq!(app.get_as("/api/profile", &key).await.status, 200);

    // Logout-all.
    let token = app.login(&user.email, "a brand new passphrase").await["access_token"].as_str().unwrap().to_owned();
    let logout = app.send(app.client.post(app.url("/auth/logout-all")).bearer_auth(&token)).await;
    assert_eq!(logout.status, 204);
    assert_refused_key(&app.get_as("/api/profile", &key).await);

    // A change of role (a manager demoted keeps nothing of the key) or
    // department, disabling, deletion: each stops the key at once.
    let patch = |id: uuid::Uuid, body: Value| {
        app.send(app.client.patch(app.url(&format!("/api/admin/users/{id}"))).bearer_auth(&admin).json(&body))
    };
    let manager = app.token_for(&app.users.manager).await;
    let (_, manager_key) = app.api_key(&manager, &["posts:read", "posts:delete"]).await;
    assert_eq!(app.get_as("/api/posts", &manager_key).await.status, 200);
    assert_eq!(patch(app.users.manager.id, json!({"role": "user"})).await.status, 200);
    assert_refused_key(&app.get_as("/api/posts", &manager_key).await);

    let other = &app.users.other;
    let other_token = app.token_for(other).await;
    let (_, key) = app.api_key(&other_token, &["posts:read"]).await;
    assert_eq!(app.get_as("/api/posts", &key).await.status, 200);
    assert_eq!(patch(other.id, json!({"department": "marketing"})).await.status, 200);
    assert_refused_key(&app.get_as("/api/posts", &key).await);
    // The department change ended the token too: sign in again.
    let other_token = app.token_for(other).await;
    let (_, key) = app.api_key(&other_token, &["posts:read"]).await;
    assert_eq!(app.get_as("/api/posts", &key).await.status, 200);
    assert_eq!(patch(other.id, json!({"disabled": true})).await.status, 200);
    assert_refused_key(&app.get_as("/api/posts", &key).await);
    // Enabled again, the owner's old keys stay dead.
    assert_eq!(patch(other.id, json!({"disabled": false})).await.status, 200);
    assert_refused_key(&app.get_as("/api/posts", &key).await);

    let token = app.login(&user.email, "a brand new passphrase").await["access_token"].as_str().unwrap().to_owned();
    let (_, key) = app.api_key(&token, &["posts:read"]).await;
    assert_eq!(app.get_as("/api/posts", &key).await.status, 200);
    let deleted = app.send(app.client.delete(app.url(&format!("/api/users/{}", user.id))).bearer_auth(&admin)).await;
    assert_eq!(deleted.status, 204);
    assert_refused_key(&app.get_as("/api/posts", &key).await);
}

#[tokio::test]
async fn keys_are_rate_limited_under_their_owners_id() {
    let app = spawn_with(|options| {
        let api = options.config.rate_limit.get_mut("api").expect("api group");
        api.limit = 4;
    })
    .await;
    let token = app.token_for(&app.users.user).await;
    let (_, key) = app.api_key(&token, &["posts:read"]).await;
    // The key creation spent one of the user's four; two with the token, one with the key...
    assert_eq!(app.get_as("/api/posts", &token).await.status, 200);
    assert_eq!(app.get_as("/api/posts", &key).await.status, 200);
    assert_eq!(app.get_as("/api/posts", &token).await.status, 200);
    // ...and the budget they share is spent, whichever credential asks.
    app.get_as("/api/posts", &key).await.assert_problem(429);
    app.get_as("/api/posts", &token).await.assert_problem(429);
    // Another user's budget is their own.
    let other = app.token_for(&app.users.other).await;
    assert_eq!(app.get_as("/api/posts", &other).await.status, 200);
}
