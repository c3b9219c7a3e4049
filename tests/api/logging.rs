//! Log lines: one access event per request, and no secret ever, even when
//! the request carries them in every place a client can put them.

use serde_json::json;

use crate::helpers::spawn_app;

const SECRETS: [&str; 4] = [
    "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlLXNlY3JldA",
    "session-cookie-secret-value",
    "hunter2-correct-horse-battery",
    "other-cookie-secret",
];

#[tokio::test]
async fn logs_never_contain_credentials_or_passwords() {
    let app = spawn_app().await;
    let response = app
        .send(
            app.client
                .post(app.url("/test/echo"))
                .header("authorization", format!("Bearer {}", SECRETS[0]))
                .header("cookie", format!("rampart_session={}; other={}", SECRETS[1], SECRETS[3]))
                .json(&json!({"name": "Ada", "password": SECRETS[2]})),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    // An error path too, where causes are logged.
    app.send(app.client.get(app.url("/test/panic")).header("authorization", format!("Bearer {}", SECRETS[0]))).await;

    let logs = app.logs.contents();
    assert!(logs.contains("echo received"), "the handler's log line is there: {logs}");
    assert!(logs.contains("[REDACTED]"), "the password field was blanked, not dropped: {logs}");
    for secret in SECRETS {
        assert!(!logs.contains(secret), "log leaks {secret}: {logs}");
    }
}

#[tokio::test]
async fn each_request_has_one_access_event_with_its_facts() {
    let app = spawn_app().await;
    let response = app.send(app.client.get(app.url("/health")).header("x-request-id", "trace-me-1")).await;
    assert_eq!(response.status, 200);

    let logs = app.logs.contents();
    let events: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["target"] == "rampart::access" && event["request_id"] == "trace-me-1")
        .collect();
    assert_eq!(events.len(), 1, "{logs}");
    let event = &events[0];
    assert_eq!(event["method"], "GET");
    assert_eq!(event["route"], "/health");
    assert_eq!(event["status"], 200);
    assert_eq!(event["client_ip"], "127.0.0.1");
    assert!(event["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(event["time"].as_str().unwrap().ends_with('Z'));
}
