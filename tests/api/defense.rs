//! Active defence: a brute-force pattern blocks the client (403), the block
//! is audited, counted and sent to the webhook, and an admin lifts it.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, routing::post};
use serde_json::{Value, json};

use crate::helpers::{SpawnOptions, TestApp, spawn_app, spawn_with};

/// A local webhook receiver that keeps what it is sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(body): Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), received)
}

fn defended(options: &mut SpawnOptions, webhook: &str) {
    options.config.defense.enabled = true;
    options.config.defense.failed_login_threshold = 3;
    options.config.defense.rate_limited_threshold = 5;
    options.config.alerts.webhook_url = webhook.to_owned();
    // The attacker comes through the (trusted) local proxy with its own
    // address; the admin talks directly, from 127.0.0.1.
    options.config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

async fn from(app: &TestApp, ip: &str, request: reqwest::RequestBuilder) -> crate::helpers::TestResponse {
    app.send(request.header("x-forwarded-for", ip)).await
}

async fn wait_until<F: Fn() -> bool>(what: &str, check: F) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `wait_until` for a check that asks the server; bounded at 10 s.
async fn wait_until_async<F: Fn() -> R, R: Future<Output = bool>>(what: &str, check: F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn brute_force_blocks_the_client_until_an_admin_lifts_it() {
    let (webhook, received) = receiver().await;
    let app = spawn_with(|options| defended(options, &webhook)).await;
    let attacker = "203.0.113.66";
    let guess = json!({"email": app.users.user.email, "password": "guess number one!!"});
    for _ in 0..3 {
        let response = from(&app, attacker, app.client.post(app.url("/auth/login")).json(&guess)).await;
        assert_eq!(response.status, 401);
    }
    let blocked = from(&app, attacker, app.client.get(app.url("/api/posts"))).await;
    let problem = blocked.assert_problem(403);
    assert_eq!(problem["detail"], "This client is blocked.");
    assert_eq!(from(&app, attacker, app.client.get(app.url("/health"))).await.status, 200, "/health stays open");
    assert_eq!(
        from(&app, "203.0.113.67", app.client.get(app.url("/api/posts"))).await.status,
        200,
        "neighbours are not"
    );

    wait_until("the webhook delivery", || !received.lock().unwrap().is_empty()).await;
    let alert = received.lock().unwrap()[0].clone();
    assert_eq!(alert["event"], "client_blocked");
    assert_eq!(alert["ip"], attacker);
    assert!(alert["expires_at"].as_str().is_some() && alert["time"].as_str().is_some());

    let admin = app.token_for(&app.users.admin).await;
    let blocks = app.get_as("/api/admin/blocks", &admin).await.json();
    let block = blocks["items"].as_array().unwrap().iter().find(|b| b["ip"] == attacker).expect("listed").clone();
    assert_eq!(block["reason"], "too many failed logins");

    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    assert!(scrape.contains("rampart_blocks_total 1"), "{scrape}");
    assert!(scrape.contains("rampart_blocked_clients 1"), "{scrape}");

    let lifted = app
        .send(
            app.client
                .delete(app.url(&format!("/api/admin/blocks/{}", block["id"].as_str().unwrap())))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(lifted.status, 204, "{}", lifted.body);
    assert_eq!(from(&app, attacker, app.client.get(app.url("/api/posts"))).await.status, 200, "unblocked");

    for _ in 0..100 {
        let trail = app.get_as("/api/admin/audit?limit=100", &admin).await.json();
        let names: Vec<String> =
            trail["items"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
        if names.contains(&"ip_blocked".to_owned()) && names.contains(&"ip_unblocked".to_owned()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("ip_blocked and ip_unblocked were not audited");
}

#[tokio::test]
async fn a_flood_of_refusals_blocks_the_client() {
    let (webhook, _) = receiver().await;
    let app = spawn_with(|options| {
        defended(options, &webhook);
        options.config.rate_limit.get_mut("api").unwrap().limit = 1;
    })
    .await;
    let flooder = "198.51.100.200";
    assert_eq!(from(&app, flooder, app.client.get(app.url("/api/posts"))).await.status, 200);
    for _ in 0..5 {
        assert_eq!(from(&app, flooder, app.client.get(app.url("/api/posts"))).await.status, 429);
    }
    from(&app, flooder, app.client.get(app.url("/api/posts"))).await.assert_problem(403);
}

#[tokio::test]
async fn admins_add_and_lift_blocks_by_hand() {
    let (webhook, _) = receiver().await;
    let app = spawn_with(|options| defended(options, &webhook)).await;
    let admin = app.token_for(&app.users.admin).await;
    let add = |body: Value| app.send(app.client.post(app.url("/api/admin/blocks")).bearer_auth(&admin).json(&body));
    let created = add(json!({"ip": "192.0.2.0/24", "reason": "scanner", "duration": "1h"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let block = created.json();
    assert_eq!(block["ip"], "192.0.2.0/24");
    assert!(block["expires_at"].as_str().is_some());
    from(&app, "192.0.2.77", app.client.get(app.url("/api/posts"))).await.assert_problem(403);

    assert_eq!(add(json!({"ip": "not an ip"})).await.assert_problem(400)["errors"][0]["field"], "ip");
    assert_eq!(
        add(json!({"ip": "192.0.2.1", "duration": "forever"})).await.assert_problem(400)["errors"][0]["field"],
        "duration"
    );
    add(json!({"ip": "127.0.0.0/8"})).await.assert_problem(409);
    add(json!({"ip": "192.0.2.1", "role": "x"})).await.assert_problem(400);

    let user = app.token_for(&app.users.user).await;
    app.send(app.client.post(app.url("/api/admin/blocks")).bearer_auth(&user).json(&json!({"ip": "192.0.2.9"})))
        .await
        .assert_problem(403);
    app.get("/api/admin/blocks").await.assert_problem(401);
    let missing = app
        .send(app.client.delete(app.url(&format!("/api/admin/blocks/{}", uuid::Uuid::now_v7()))).bearer_auth(&admin))
        .await;
    missing.assert_problem(404);
}

#[tokio::test]
async fn a_block_longer_than_ten_years_counts_as_ten_years() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    let add = |body: Value| app.send(app.client.post(app.url("/api/admin/blocks")).bearer_auth(&admin).json(&body));
    // Past the calendar's end (this was a panic, so a 500) and past what
    // fits in u64 milliseconds (this was a 400 for a well-formed duration).
    for duration in ["99999999d", "999999999999d", "99999999999999999999999999h"] {
        let created = add(json!({"ip": "198.51.100.7", "duration": duration})).await;
        assert_eq!(created.status, 201, "{duration}: {}", created.body);
        let expires = created.json()["expires_at"].as_str().unwrap().to_owned();
        let years: i32 = expires[..4].parse().unwrap();
        let now = time::OffsetDateTime::now_utc().year();
        assert!((now + 9..=now + 10).contains(&years), "{duration} expires {expires}");
    }
    for zero in ["0s", "0h0m"] {
        assert_eq!(
            add(json!({"ip": "198.51.100.8", "duration": zero})).await.assert_problem(400)["errors"][0]["field"],
            "duration"
        );
    }
}

#[tokio::test]
async fn a_blocked_client_reaches_the_liveness_check_but_not_the_readiness_check() {
    let (webhook, _) = receiver().await;
    let app = spawn_with(|options| defended(options, &webhook)).await;
    let admin = app.token_for(&app.users.admin).await;
    let blocked = app
        .send(app.client.post(app.url("/api/admin/blocks")).bearer_auth(&admin).json(&json!({"ip": "192.0.2.0/24"})))
        .await;
    assert_eq!(blocked.status, 201, "{}", blocked.body);
    let client = "192.0.2.10";
    assert_eq!(from(&app, client, app.client.get(app.url("/health"))).await.status, 200);
    assert_eq!(from(&app, client, app.client.head(app.url("/health"))).await.status, 200, "any method");
    from(&app, client, app.client.get(app.url("/ready"))).await.assert_problem(403);
    from(&app, client, app.client.get(app.url("/health/"))).await.assert_problem(403);
}

#[tokio::test]
async fn a_blocked_client_that_keeps_sending_is_audited_once_a_minute_with_a_count() {
    let (webhook, _) = receiver().await;
    let clock = rampart::clock::ManualClock::new(time::OffsetDateTime::now_utc());
    let app = spawn_with(|options| {
        defended(options, &webhook);
        options.clock = Arc::new(clock.clone());
    })
    .await;
    let admin = app.token_for(&app.users.admin).await;
    let blocked = app
        .send(app.client.post(app.url("/api/admin/blocks")).bearer_auth(&admin).json(&json!({"ip": "192.0.2.0/24"})))
        .await;
    assert_eq!(blocked.status, 201, "{}", blocked.body);
    const SENT: usize = 40;
    for index in 0..SENT {
        let path = if index % 2 == 0 { "/api/posts" } else { "/auth/login" };
        from(&app, "192.0.2.9", app.client.get(app.url(path))).await.assert_problem(403);
    }
    from(&app, "192.0.2.10", app.client.get(app.url("/api/posts"))).await.assert_problem(403);

    // The minute ends; the next refusal (or the periodic check) writes the
    // minute's events: one per client, with the count.
    clock.advance(time::Duration::seconds(61));
    from(&app, "192.0.2.9", app.client.get(app.url("/api/posts"))).await.assert_problem(403);
    let rows = crate::audit::events(&app, &admin, "event=forbidden&ip=192.0.2.9", 1).await;
    assert_eq!(rows.len(), 1, "one event for {SENT} refusals: {rows:#?}");
    assert_eq!(rows[0]["detail"], format!("blocked client: {SENT} requests refused in the minute"));
    assert_eq!(rows[0]["outcome"], "denied");
    let neighbour = crate::audit::events(&app, &admin, "event=forbidden&ip=192.0.2.10", 1).await;
    assert_eq!(neighbour.len(), 1);
    assert_eq!(neighbour[0]["detail"], "blocked client: 1 request refused in the minute");

    // With no further request, the periodic check (every 5 s) writes the
    // minute that is over.
    clock.advance(time::Duration::seconds(61));
    wait_until_async("the periodic audit of the last minute", || async {
        let rows = app.get_as("/api/admin/audit?event=forbidden&ip=192.0.2.9", &admin).await.json();
        rows["items"].as_array().unwrap().len() == 2
    })
    .await;

    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    let refused =
        format!(r#"rampart_http_requests_total{{method="GET",route="<unmatched>",status="403"}} {}"#, SENT + 2);
    assert!(scrape.contains(&refused), "every refusal is counted: {scrape}");
}
