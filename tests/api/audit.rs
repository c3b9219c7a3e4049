//! `GET /api/admin/audit`: events from the store, filtered and paged.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// The audit writer is asynchronous: wait (bounded) until the store has
/// at least `count` events matching `query`.
pub async fn events(app: &TestApp, token: &str, query: &str, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let response = app.get_as(&format!("/api/admin/audit?{query}"), token).await;
        assert_eq!(response.status, 200, "{}", response.body);
        let items = response.json()["items"].as_array().unwrap().clone();
        if items.len() >= count {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("fewer than {count} events for {query:?}");
}

#[tokio::test]
async fn the_audit_trail_is_filtered_and_paged() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let user = app.token_for(&app.users.user).await;
    app.post_json("/auth/login", &json!({"email": "ghost@example.com", "password": "no such account!!"})).await;
    app.get_as("/api/admin/users", &user).await.assert_problem(403);

    let all = events(&app, &admin, "limit=100", 4).await;
    let names: Vec<&str> = all.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for expected in ["login_success", "login_failure", "forbidden"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let times: Vec<&str> = all.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {times:?}");
    for event in &all {
        for member in ["id", "time", "request_id", "event", "client_ip", "route", "outcome"] {
            assert!(event.get(member).is_some(), "{member} missing in {event}");
        }
    }

    let failures = events(&app, &admin, "event=login_failure", 1).await;
    assert!(failures.iter().all(|e| e["event"] == "login_failure" && e["outcome"] == "failure"));
    let mine = events(&app, &admin, &format!("user_id={}", app.users.user.id), 2).await;
    assert!(mine.iter().all(|e| e["user_id"] == app.users.user.id.to_string()));
    let denial = mine.iter().find(|e| e["event"] == "forbidden").expect("the 403");
    assert_eq!(denial["detail"], "ListUsers on Users");
    assert!(events(&app, &admin, "ip=127.0.0.1", 4).await.len() >= 4);
    assert!(app.get_as("/api/admin/audit?ip=10.9.9.9", &admin).await.json()["items"].as_array().unwrap().is_empty());
    assert!(
        app.get_as("/api/admin/audit?to=2000-01-01T00:00:00Z", &admin).await.json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(events(&app, &admin, "from=2000-01-01T00:00:00Z", 4).await.len() >= 4);

    let first = app.get_as("/api/admin/audit?limit=2", &admin).await.json();
    let cursor = first["next_cursor"].as_str().expect("more pages");
    let second = app.get_as(&format!("/api/admin/audit?limit=2&cursor={cursor}"), &admin).await.json();
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    assert_eq!(second["items"][0]["id"], all[2]["id"]);

    for bad in ["user_id=nope", "ip=999.1.1.1", "from=yesterday", "to=2026-13-01", "limit=0", "cursor=%%"] {
        app.get_as(&format!("/api/admin/audit?{bad}"), &admin).await.assert_problem(400);
    }
    app.get_as("/api/admin/audit", &user).await.assert_problem(403);
    app.get("/api/admin/audit").await.assert_problem(401);
}

#[tokio::test]
async fn filters_are_taken_as_sent_and_an_inverted_range_is_empty() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let inverted = app.get_as("/api/admin/audit?from=2030-01-01T00:00:00Z&to=2000-01-01T00:00:00Z", &admin).await;
    assert_eq!(inverted.status, 200, "{}", inverted.body);
    assert!(inverted.json()["items"].as_array().unwrap().is_empty());
    // 64 characters of two bytes each: the limit counts characters.
    let long_name = "é".repeat(64);
    assert_eq!(app.get_as(&format!("/api/admin/audit?event={long_name}"), &admin).await.status, 200);
    let too_long = format!("{long_name}é");
    app.get_as(&format!("/api/admin/audit?event={too_long}"), &admin).await.assert_problem(400);
    for padded in ["limit=%205", "limit=5%20", "user_id=%20019a0000-0000-7000-8000-000000000000", "ip=%20127.0.0.1"] {
        app.get_as(&format!("/api/admin/audit?{padded}"), &admin).await.assert_problem(400);
    }
}

#[tokio::test]
async fn a_flood_of_failed_requests_is_counted_exactly_and_audited_in_aggregate() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    const FLOOD: usize = 10_000;
    let mut sent = 0;
    while sent < FLOOD {
        let batch: Vec<_> = (0..100)
            .map(|_| {
                let request = app.client.get(app.url("/api/profile")).bearer_auth("not-a-token").send();
                tokio::spawn(async move { request.await.map(|r| r.status().as_u16()) })
            })
            .collect();
        for request in batch {
            assert_eq!(request.await.unwrap().unwrap(), 401);
        }
        sent += 100;
    }
    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    let line = r#"rampart_http_requests_total{method="GET",route="/api/profile",status="401"} 10000"#;
    assert!(scrape.contains(line), "the request counter saw every one");
    for priority in ["security", "traffic"] {
        let line = format!("rampart_audit_dropped_total{{priority=\"{priority}\"}} 0");
        assert!(scrape.contains(&line), "the audit queue kept up: {line}");
    }
    // The trail has the flood in aggregate: one `unauthorized` event per
    // client and route per minute, not ten thousand.
    let mut events = Vec::new();
    for _ in 0..100 {
        events = app.get_as("/api/admin/audit?event=unauthorized&limit=100", &admin).await.json()["items"]
            .as_array()
            .unwrap()
            .clone();
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let flood_events = events.iter().filter(|e| e["route"] == "/api/profile").count();
    assert!((1..=2).contains(&flood_events), "{flood_events} events for the flood (one per minute)");
}

#[tokio::test]
async fn every_audit_event_type_is_stored_with_its_fields_and_no_secret() {
    let app = crate::helpers::spawn_with(|options| {
        options.config.rate_limit.insert(
            "deletes".into(),
            rampart::config::RateLimitGroup {
                strategy: rampart::config::RateLimitStrategy::FixedWindow,
                limit: 1,
                window: "1h".parse().unwrap(),
                count: rampart::config::CountMode::All,
                paths: vec!["/api/posts/".into()],
                methods: vec!["DELETE".into()],
                on_backend_error: None,
            },
        );
    })
    .await;
    let user = app.users.user.clone();
    let admin = app.token_for(&app.users.admin).await;
    let new_password = "an entirely new passphrase";

    app.post_json(
        "/auth/signup",
        &json!({"email": "n@example.com", "password": "a long enough passphrase", "name": "N"}),
    )
    .await;
    app.post_json("/auth/login", &json!({"email": user.email, "password": "wrong password here"})).await;
    let pair = app.login(&user.email, &user.password).await;
    let refresh = json!({"refresh_token": pair["refresh_token"]});
    let rotated = app.post_json("/auth/refresh", &refresh).await.json();
    app.post_json("/auth/refresh", &refresh).await;
    let token = app.token_for(&user).await;
    app.send(app.client.post(app.url("/auth/logout")).bearer_auth(&token)).await;
    let token = app.token_for(&user).await;
    app.send(
        app.client
            .put(app.url("/api/profile/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": user.password, "new_password": new_password})),
    )
    .await;
    let path = format!("/api/admin/users/{}", app.users.other.id);
    app.send(app.client.patch(app.url(&path)).bearer_auth(&admin).json(&json!({"role": "manager"}))).await;
    app.get("/api/profile").await;
    let other = app.token_for(&app.users.manager).await;
    app.get_as("/api/admin/users", &other).await;
    let missing = format!("/api/posts/{}", uuid::Uuid::now_v7());
    app.send(app.client.delete(app.url(&missing))).await;
    app.send(app.client.delete(app.url(&missing))).await.assert_problem(429);
    app.get("/test/panic").await;
    let block = app
        .send(app.client.post(app.url("/api/admin/blocks")).bearer_auth(&admin).json(&json!({"ip": "192.0.2.44"})))
        .await;
    let block_id = block.json()["id"].as_str().unwrap().to_owned();
    app.send(app.client.delete(app.url(&format!("/api/admin/blocks/{block_id}"))).bearer_auth(&admin)).await;

    let expected = [
        "signup",
        "login_success",
        "login_failure",
        "token_refresh",
        "refresh_reuse",
        "logout",
        "password_change",
        "role_change",
        "unauthorized",
        "forbidden",
        "rate_limited",
        "server_error",
        "ip_blocked",
        "ip_unblocked",
    ];
    let mut events = Vec::new();
    for _ in 0..200 {
        events = app.get_as("/api/admin/audit?limit=100", &admin).await.json()["items"].as_array().unwrap().clone();
        if expected.iter().all(|name| events.iter().any(|e| e["event"] == *name)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for name in expected {
        let event = events.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name} event"));
        for member in ["id", "time", "request_id", "event", "client_ip", "route", "outcome"] {
            assert!(!event[member].is_null(), "{name} lacks {member}: {event}");
        }
    }
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        user.password.as_str(),
        new_password,
        pair["refresh_token"].as_str().unwrap(),
        rotated["access_token"].as_str().unwrap(),
        &token,
        &admin,
    ] {
        assert!(!text.contains(secret), "the audit trail holds a credential");
    }
}
