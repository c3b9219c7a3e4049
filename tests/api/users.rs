//! `/api/profile*` and the admin user routes (API.md "Users").

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn profile_can_be_read_and_renamed_but_nothing_else() {
    let app = spawn_app().await;
    let token = app.token_for(&app.users.user).await;
    let profile = app.get_as("/api/profile", &token).await;
    assert_eq!(profile.json()["department"], "sales");

    let renamed = app
        .send(app.client.patch(app.url("/api/profile")).bearer_auth(&token).json(&json!({"name": "  Uma U.  "})))
        .await;
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.json()["name"], "Uma U.");
    // The profile's JSON is kept with the cached user: a rename shows at once.
    let read = app.get_as("/api/profile", &token).await;
    assert_eq!(read.header("content-type"), Some("application/json"));
    assert_eq!(read.json()["name"], "Uma U.");
    assert_eq!(read.json(), renamed.json(), "the same account as PATCH answered");

    for field in ["role", "email", "department"] {
        let body = json!({"name": "X", field: "admin"});
        let refused = app.send(app.client.patch(app.url("/api/profile")).bearer_auth(&token).json(&body)).await;
        assert_eq!(refused.assert_problem(400)["errors"][0]["field"], field);
    }
    let blank =
        app.send(app.client.patch(app.url("/api/profile")).bearer_auth(&token).json(&json!({"name": "   "}))).await;
    assert_eq!(blank.assert_problem(400)["errors"][0]["field"], "name");
    app.get("/api/profile").await.assert_problem(401);
}

#[tokio::test]
async fn password_change_checks_the_current_password_and_the_rules() {
    let app = spawn_app().await;
    let user = &app.users.user;
    let token = app.token_for(user).await;
    let change = |current: &str, new: &str| {
        app.send(
            app.client
                .put(app.url("/api/profile/password"))
                .bearer_auth(&token)
                .json(&json!({"current_password": current, "new_password": new})),
        )
    };
    change("not my password at all", "a brand new passphrase").await.assert_problem(403);
    let weak = change(&user.password, "short").await.assert_problem(400);
    assert_eq!(weak["errors"][0]["field"], "new_password");
    assert_eq!(app.get_as("/api/profile", &token).await.status, 200, "failed changes revoke nothing");
    let events = app.audit_events();
    assert!(events.iter().any(|e| e["event"] == "password_change" && e["outcome"] == "denied"), "{events:?}");
}

#[tokio::test]
async fn admins_list_users_a_page_at_a_time() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let first = app.get_as("/api/admin/users?limit=3", &admin).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().expect("more pages");
    let second = app.get_as(&format!("/api/admin/users?limit=3&cursor={cursor}"), &admin).await.json();
    let rest = second["items"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert!(second["next_cursor"].is_null());
    assert_ne!(rest[0]["id"], first["items"][0]["id"]);
    for item in first["items"].as_array().unwrap().iter().chain(rest) {
        assert!(item.get("password_hash").is_none());
    }
    assert_eq!(app.get_as("/api/admin/users?limit=1000", &admin).await.json()["items"].as_array().unwrap().len(), 4);
    for bad in ["limit=0", "limit=-1", "limit=ten", "limit=1.5", "cursor=%%%", "cursor=bm90LWEtY3Vyc29y"] {
        app.get_as(&format!("/api/admin/users?{bad}"), &admin).await.assert_problem(400);
    }
}

#[tokio::test]
async fn only_admins_reach_the_admin_routes() {
    let app = spawn_app().await;
    app.get("/api/admin/users").await.assert_problem(401);
    let target = format!("/api/admin/users/{}", app.users.other.id);
    let delete_target = format!("/api/users/{}", app.users.other.id);
    for user in [&app.users.manager, &app.users.user] {
        let token = app.token_for(user).await;
        app.get_as("/api/admin/users", &token).await.assert_problem(403);
        app.send(app.client.patch(app.url(&target)).bearer_auth(&token).json(&json!({"role": "admin"})))
            .await
            .assert_problem(403);
        app.send(app.client.delete(app.url(&delete_target)).bearer_auth(&token)).await.assert_problem(403);
    }
    app.send(app.client.delete(app.url(&delete_target))).await.assert_problem(401);
    let events = app.audit_events();
    assert!(events.iter().any(|e| e["event"] == "forbidden" && e["route"] == "/api/admin/users"), "{events:?}");
    assert!(events.iter().any(|e| e["event"] == "unauthorized"), "{events:?}");
    // Nothing changed.
    let admin = app.token_for(&app.users.admin).await;
    let list = app.get_as("/api/admin/users", &admin).await.json();
    assert!(
        list["items"].as_array().unwrap().iter().all(|u| u["role"] != "admin" || u["email"] == "admin@example.com")
    );
}

#[tokio::test]
async fn a_role_change_takes_effect_and_ends_old_tokens() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let before = app.token_for(&app.users.user).await;
    let path = format!("/api/admin/users/{}", app.users.user.id);
    let changed = app
        .send(
            app.client.patch(app.url(&path)).bearer_auth(&admin).json(&json!({"role": "manager", "department": "ops"})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.json()["role"], "manager");
    assert_eq!(changed.json()["department"], "ops");
    app.get_as("/api/profile", &before).await.assert_problem(401);
    let after = app.login(&app.users.user.email, &app.users.user.password).await;
    assert_eq!(after["user"]["role"], "manager");
    let events = app.audit_events();
    assert!(events.iter().any(|e| e["event"] == "role_change" && e["user_id"] == app.users.user.id.to_string()));

    let cleared =
        app.send(app.client.patch(app.url(&path)).bearer_auth(&admin).json(&json!({"department": null}))).await;
    assert!(cleared.json()["department"].is_null());
    for bad in [json!({"role": "superuser"}), json!({"disabled": "yes"}), json!({"email": "x@example.com"})] {
        app.send(app.client.patch(app.url(&path)).bearer_auth(&admin).json(&bad)).await.assert_problem(400);
    }
    let missing = format!("/api/admin/users/{}", uuid::Uuid::now_v7());
    app.send(app.client.patch(app.url(&missing)).bearer_auth(&admin).json(&json!({"role": "user"})))
        .await
        .assert_problem(404);
    app.send(
        app.client.patch(app.url("/api/admin/users/not-a-uuid")).bearer_auth(&admin).json(&json!({"role": "user"})),
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_removed() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let own = format!("/api/admin/users/{}", app.users.admin.id);
    app.send(app.client.patch(app.url(&own)).bearer_auth(&admin).json(&json!({"role": "user"})))
        .await
        .assert_problem(409);
    app.send(app.client.patch(app.url(&own)).bearer_auth(&admin).json(&json!({"disabled": true})))
        .await
        .assert_problem(409);
    app.send(app.client.delete(app.url(&format!("/api/users/{}", app.users.admin.id))).bearer_auth(&admin))
        .await
        .assert_problem(409);
    assert_eq!(app.get_as("/api/profile", &admin).await.status, 200);
}

#[tokio::test]
async fn deleting_a_user_removes_them() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let path = format!("/api/users/{}", app.users.other.id);
    assert_eq!(app.send(app.client.delete(app.url(&path)).bearer_auth(&admin)).await.status, 204);
    app.send(app.client.delete(app.url(&path)).bearer_auth(&admin)).await.assert_problem(404);
    app.post_json("/auth/login", &json!({"email": app.users.other.email, "password": app.users.other.password}))
        .await
        .assert_problem(401);
}
