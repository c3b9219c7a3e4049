//! The outer layers on every route: security headers, problem bodies for
//! every kind of error, request ids, size limits, timeout, CORS.

use reqwest::{Method, header};
use serde_json::json;

use crate::helpers::{TestResponse, spawn_app, spawn_with};

const ALWAYS: [(&str, &str); 11] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("x-dns-prefetch-control", "off"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("cache-control", "no-store"),
];

fn assert_security_headers(response: &TestResponse) {
    for (name, value) in ALWAYS {
        assert_eq!(response.header(name), Some(value), "{name} on a {} response", response.status);
    }
    let permissions = response.header("permissions-policy").expect("permissions-policy");
    assert!(permissions.contains("camera=()") && permissions.contains("geolocation=()"), "{permissions}");
    assert!(response.header("server").is_none(), "no Server header");
    assert!(response.header("x-powered-by").is_none(), "no X-Powered-By header");
    assert!(response.header("strict-transport-security").is_none(), "no HSTS over plain HTTP in development");
    assert!(response.header("x-request-id").is_some());
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    let ok = app.get("/health").await;
    assert_eq!(ok.status, 200);
    assert_security_headers(&ok);

    let not_found = app.get("/nope").await;
    not_found.assert_problem(404);
    assert_security_headers(&not_found);

    let too_large = app
        .send(
            app.client.post(app.url("/test/echo")).header("content-type", "application/json").body(vec![b' '; 20_000]),
        )
        .await;
    too_large.assert_problem(413);
    assert_security_headers(&too_large);

    let wrong_method = app.request(Method::DELETE, "/health").await;
    wrong_method.assert_problem(405);
    assert_security_headers(&wrong_method);
    assert_eq!(wrong_method.header("allow"), Some("GET,HEAD"));

    let panicked = app.get("/test/panic").await;
    panicked.assert_problem(500);
    assert_security_headers(&panicked);
}

#[tokio::test]
async fn malformed_json_is_a_problem_without_parser_text() {
    let app = spawn_app().await;
    let response = app
        .send(app.client.post(app.url("/test/echo")).header("content-type", "application/json").body("{\"name\": "))
        .await;
    let problem = response.assert_problem(400);
    assert_eq!(problem["detail"], "The request body is not valid JSON.");
    assert!(!response.body.contains("line") && !response.body.contains("column") && !response.body.contains("EOF"));
}

#[tokio::test]
async fn unknown_and_missing_fields_are_named_in_errors() {
    let app = spawn_app().await;
    let response = app.post_json("/test/echo", &json!({"name": "a", "password": "b", "role": "admin"})).await;
    let problem = response.assert_problem(400);
    assert_eq!(problem["errors"], json!([{"field": "role", "message": "is not an accepted field"}]));

    let response = app.post_json("/test/echo", &json!({"name": "a"})).await;
    let problem = response.assert_problem(400);
    assert_eq!(problem["errors"], json!([{"field": "password", "message": "is required"}]));

    let response = app.post_json("/test/echo", &json!({"name": 5, "password": "b"})).await;
    let problem = response.assert_problem(400);
    assert_eq!(problem["errors"], json!([{"field": "name", "message": "has the wrong type"}]));
    assert!(!response.body.contains("String") && !response.body.contains("EchoRequest"), "{}", response.body);

    let response = app.post_json("/test/echo", &json!([1, 2])).await;
    response.assert_problem(400);
}

#[tokio::test]
async fn oversized_bodies_are_413_even_without_content_length() {
    let app = spawn_app().await;
    let declared =
        app.send(app.client.post(app.url("/test/echo")).header("content-type", "application/json").body(vec![
            b'x';
            10 * 1024
                + 1
        ]))
        .await;
    declared.assert_problem(413);

    // Chunked, so only counting the bytes as they arrive can stop it.
    let mut request = String::from(
        "POST /test/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..11 {
        request.push_str(&format!("400\r\n{}\r\n", " ".repeat(1024)));
    }
    request.push_str("0\r\n\r\n");
    let raw = raw_exchange(app.address, request.as_bytes()).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("content-type: application/problem+json"), "{raw}");
}

/// Writes raw bytes to the server and reads until it closes.
pub async fn raw_exchange(address: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .send(
            app.client
                .post(app.url("/test/echo"))
                .header("content-type", "text/plain")
                .body("{\"name\":\"a\",\"password\":\"b\"}"),
        )
        .await;
    response.assert_problem(415);
    let missing = app.send(app.client.post(app.url("/test/echo")).body("{}")).await;
    missing.assert_problem(415);
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let response = app.get("/test/panic").await;
    let problem = response.assert_problem(500);
    assert!(!response.body.contains("deliberate") && !response.body.contains("hunter2"), "{}", response.body);
    assert!(problem["detail"].as_str().unwrap().contains("request id"));
    assert_eq!(app.get("/health").await.status, 200, "still serving after a panic");
    let logs = app.logs.contents();
    assert!(logs.contains("deliberate test panic"), "the cause goes to the log");
    assert!(logs.contains(problem["request_id"].as_str().unwrap()), "under the request id");
}

#[tokio::test]
async fn safe_client_request_ids_are_kept_and_others_replaced() {
    let app = spawn_app().await;
    let kept = app.send(app.client.get(app.url("/health")).header("x-request-id", "abc-123_X.y")).await;
    assert_eq!(kept.header("x-request-id"), Some("abc-123_X.y"));

    for bad in ["a".repeat(65), "has space".into(), "semi;colon".into(), "<script>".into()] {
        let replaced = app.send(app.client.get(app.url("/nope")).header("x-request-id", bad.as_str())).await;
        let id = replaced.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 36, "a fresh UUID: {id}");
        assert_eq!(replaced.json()["request_id"], id);
    }
    let generated = app.get("/health").await;
    assert_eq!(generated.header("x-request-id").unwrap().len(), 36);
}

#[tokio::test]
async fn long_uris_and_huge_headers_are_refused_with_problems() {
    let app = spawn_app().await;
    let long_path = format!("/health?{}", "a".repeat(9 * 1024));
    app.get(&long_path).await.assert_problem(414);

    let mut request = app.client.get(app.url("/health"));
    for index in 0..20 {
        request = request.header(format!("x-filler-{index}"), "v".repeat(1000));
    }
    app.send(request).await.assert_problem(431);
}

#[tokio::test]
async fn a_slow_handler_is_cut_off_by_the_request_timeout() {
    let app = spawn_with(|options| {
        options.config.server.request_timeout = "50ms".parse().unwrap();
    })
    .await;
    let response = app.get("/test/slow").await;
    response.assert_problem(503);
}

#[tokio::test]
async fn cors_is_closed_unless_origins_are_configured() {
    let app = spawn_app().await;
    let preflight = app
        .send(
            app.client
                .request(Method::OPTIONS, app.url("/health"))
                .header(header::ORIGIN, "https://evil.example")
                .header("access-control-request-method", "GET"),
        )
        .await;
    assert!(preflight.header("access-control-allow-origin").is_none());

    let open = spawn_with(|options| options.config.server.cors_origins = vec!["https://app.example".into()]).await;
    let allowed = open.send(open.client.get(open.url("/health")).header(header::ORIGIN, "https://app.example")).await;
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example"));
    let other = open.send(open.client.get(open.url("/health")).header(header::ORIGIN, "https://evil.example")).await;
    assert!(other.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_request_outlasting_the_idle_limit_is_answered_then_the_idle_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_with(|options| {
        options.config.server.header_read_timeout = "200ms".parse().unwrap();
        options.config.server.request_timeout = "1s".parse().unwrap();
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream.write_all(b"GET /test/slow HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    // The request is in progress for 1 s, five idle limits: the connection
    // stays, the timeout answers, then the now idle connection is closed.
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the idle connection should be closed after the answer");
    let text = String::from_utf8_lossy(&buffer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_with(|options| options.config.server.header_read_timeout = "300ms".parse().unwrap()).await;
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    // The idle watch closes it within 1.5 × the limit; the bound only keeps a failure from hanging.
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the server should close a connection stuck in its headers");
    assert_eq!(app.get("/health").await.status, 200, "other clients are unaffected");
}
