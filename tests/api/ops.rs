use std::{sync::Arc, time::Duration};

use axum::{Router, routing::get};
use tokio::sync::Notify;

use crate::helpers::{read, spawn_app, spawn_with};

#[tokio::test]
async fn health_reports_status_uptime_time_and_version() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status, 200);
    let json = response.json();
    assert_eq!(json["status"], "healthy");
    assert!(json["uptime_seconds"].is_u64());
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    let timestamp = json["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z') && timestamp.contains('T'), "{timestamp}");
}

/// The body is kept per second (`routes/ops.rs`), so it must still follow
/// the (injected) clock: the same second gives the same time, the next one
/// a new time.
#[tokio::test]
async fn health_time_follows_the_clock_to_the_second() {
    use time::format_description::well_known::Rfc3339;
    let start = time::OffsetDateTime::now_utc().replace_nanosecond(250_000_000).unwrap();
    let clock = rampart::clock::ManualClock::new(start);
    let app = spawn_with(|options| options.clock = Arc::new(clock.clone())).await;
    let time_now = || async { app.get("/health").await.json()["timestamp"].as_str().unwrap().to_owned() };
    let second = |at: time::OffsetDateTime| at.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap();
    assert_eq!(time_now().await, second(start));
    clock.advance(time::Duration::milliseconds(700));
    assert_eq!(time_now().await, second(start), "same second");
    clock.advance(time::Duration::milliseconds(100));
    assert_eq!(time_now().await, second(start + time::Duration::seconds(1)));
    clock.advance(time::Duration::hours(1));
    assert_eq!(time_now().await, second(start + time::Duration::milliseconds(3_600_800)));
}

#[tokio::test]
async fn ready_checks_the_database() {
    let app = spawn_app().await;
    let response = app.get("/ready").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["database"], "up");
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_only() {
    let app = spawn_app().await;
    app.get("/health").await;
    app.get("/no/such/route").await;

    let public = app.get("/metrics").await;
    public.assert_problem(404);

    let scrape = read(app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap()).await;
    assert_eq!(scrape.status, 200);
    assert!(scrape.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    let text = scrape.body;
    assert!(text.contains(r#"rampart_http_requests_total{method="GET",route="/health",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"route="<unmatched>",status="404""#), "unmatched routes share a label: {text}");
    assert!(text.contains("rampart_http_request_duration_seconds_bucket"), "{text}");
    assert!(!text.contains("/no/such/route"), "raw paths never become labels");
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_lets_in_flight_requests_finish() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let gate = {
        let (entered, release) = (entered.clone(), release.clone());
        Router::new().route(
            "/test/gate",
            get(move || async move {
                entered.notify_one();
                release.notified().await;
                "released"
            }),
        )
    };
    let app = spawn_with(|options| options.extra_routes = gate).await;
    let request = app.client.get(app.url("/test/gate")).send();
    let in_flight = tokio::spawn(async move { request.await.map(|r| r.status().as_u16()) });
    entered.notified().await;

    let address = app.address;
    let stopper = std::thread::spawn(move || app.stop());
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(address).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "the listener closes when shutdown starts");
    assert!(!stopper.is_finished(), "the server waits for the in-flight request");

    release.notify_one();
    assert_eq!(in_flight.await.unwrap().expect("answered, not dropped"), 200);
    stopper.join().unwrap();
}

#[tokio::test]
async fn security_metrics_are_exposed_and_move() {
    let app = spawn_app().await;
    let user = &app.users.user;
    let pair = app.login(&user.email, &user.password).await;
    app.post_json("/auth/login", &serde_json::json!({"email": user.email, "password": "not the password!!"})).await;
    let refresh = serde_json::json!({"refresh_token": pair["refresh_token"]});
    assert_eq!(app.post_json("/auth/refresh", &refresh).await.status, 200);
    app.post_json("/auth/refresh", &refresh).await.assert_problem(401);

    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"rampart_logins_total{outcome="success"} 1"#,
        r#"rampart_logins_total{outcome="failure"} 1"#,
        r#"rampart_token_refreshes_total{outcome="success"} 1"#,
        r#"rampart_token_refreshes_total{outcome="reuse"} 1"#,
        r#"rampart_audit_dropped_total{priority="security"} 0"#,
        r#"rampart_audit_dropped_total{priority="traffic"} 0"#,
        "rampart_blocks_total 0",
        "rampart_blocked_clients 0",
        "# TYPE rampart_audit_queue_depth gauge",
    ] {
        assert!(scrape.contains(line), "missing {line:?} in\n{scrape}");
    }
    // Families with no sample yet (429s, backend errors, policy decisions)
    // appear with their first sample; other tests scrape those.
}

#[tokio::test]
async fn the_active_sessions_gauge_follows_sign_ins_and_outs() {
    let app = spawn_app().await;
    let scrape = || async {
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap()
    };
    assert!(scrape().await.contains("rampart_active_sessions 0"));
    let session = crate::sessions::sign_in(&app, &app.users.user).await;
    crate::sessions::sign_in(&app, &app.users.other).await;
    assert!(scrape().await.contains("rampart_active_sessions 2"));
    app.send(
        app.client
            .delete(app.url("/auth/session"))
            .header("cookie", &session.cookie)
            .header("x-csrf-token", &session.csrf),
    )
    .await;
    assert!(scrape().await.contains("rampart_active_sessions 1"));
}
