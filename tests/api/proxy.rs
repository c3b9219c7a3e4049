//! Protect mode's gateway (PROTECT.md) against a real upstream that no Rust
//! code of ours wrote: the Node service in tests/upstream (echo, SSE, slow
//! answers, websocket echo, JWKS verification with `jose`).

use std::{collections::BTreeMap, time::Duration};

use futures_util::{SinkExt, StreamExt};
use rampart::config::{ByteSize, Config, HumanDuration, RouteAuth, RouteConfig, Unauthenticated, UpstreamConfig};
use serde_json::Value;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::{
    helpers::{TestApp, spawn_with},
    upstream_rig::{Upstream, python_verifier, spawn_upstream, verify_with_python},
};

fn route(id: &str, path: &str, upstream: &str, auth: RouteAuth) -> RouteConfig {
    RouteConfig {
        id: id.into(),
        path: path.into(),
        upstream: upstream.into(),
        auth,
        rate_limit: "proxy".into(),
        ..RouteConfig::default()
    }
}

fn upstream_config(url: String) -> UpstreamConfig {
    UpstreamConfig { url, ..UpstreamConfig::default() }
}

/// A closed port: connections to it are refused.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}")
}

/// The route table most tests use, over one upstream `app`.
fn table(config: &mut Config, app: &Upstream) {
    let proxy = &mut config.proxy;
    proxy.upstreams = BTreeMap::from([
        ("app".to_owned(), upstream_config(app.url())),
        ("small".to_owned(), UpstreamConfig { max_body: ByteSize(1024), ..upstream_config(app.url()) }),
        (
            "hasty".to_owned(),
            UpstreamConfig {
                response_timeout: HumanDuration(Duration::from_millis(300)),
                ..upstream_config(app.url())
            },
        ),
        ("nowhere".to_owned(), upstream_config(closed_port())),
    ]);
    let mut routes = vec![
        route("root", "/", "app", RouteAuth::Public),
        // Prefixes stripped where the test calls the upstream's own
        // endpoints (/sse, /slow, /set-cookies, /status/…).
        RouteConfig { strip_prefix: true, ..route("open", "/open", "app", RouteAuth::Public) },
        route("optional", "/maybe", "app", RouteAuth::Optional),
        RouteConfig { methods: vec!["GET".into()], ..route("reports", "/reports", "app", RouteAuth::Public) },
        route("any-user", "/mine", "app", RouteAuth::Required),
        RouteConfig { allow_roles: vec!["manager".into()], ..route("orders", "/orders", "app", RouteAuth::Required) },
        RouteConfig { methods: vec!["GET".into()], ..route("orders-read", "/orders", "app", RouteAuth::Required) },
        RouteConfig { unauthenticated: Unauthenticated::Login, ..route("app", "/app", "app", RouteAuth::Required) },
        RouteConfig { strip_prefix: true, ..route("strip", "/strip", "app", RouteAuth::Public) },
        RouteConfig { pass_authorization: true, ..route("pass", "/pass", "app", RouteAuth::Required) },
        route("small", "/small", "small", RouteAuth::Public),
        RouteConfig { strip_prefix: true, ..route("hasty", "/hasty", "hasty", RouteAuth::Public) },
        route("nowhere", "/nowhere", "nowhere", RouteAuth::Public),
        RouteConfig { websockets: true, ..route("ws", "/ws", "app", RouteAuth::Required) },
        RouteConfig {
            websockets: true,
            strip_prefix: true,
            ..route("ws-open", "/open-ws", "app", RouteAuth::Optional)
        },
    ];
    config.proxy.routes.append(&mut routes);
}

async fn gateway_app(app: &Upstream) -> TestApp {
    spawn_with(|options| table(&mut options.config, app)).await
}

async fn echo(app: &TestApp, request: reqwest::RequestBuilder) -> Value {
    let response = app.send(request).await;
    assert_eq!(response.status, 200, "{}", response.body);
    serde_json::from_str(&response.body).expect("the upstream's echo")
}

#[tokio::test]
async fn identity_and_routing_headers_from_the_client_never_reach_the_upstream() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let token = app.token_for(&app.users.user).await;
    let seen = echo(
        &app,
        app.client
            .get(app.url("/mine/x?a=%20b&c"))
            .bearer_auth(&token)
            .header("X-Rampart-User-Id", "00000000-0000-0000-0000-000000000000")
            .header("X-Rampart-Role", "admin")
            .header("X-Rampart-Assertion", "forged")
            .header("X-Forwarded-User", "root")
            .header("X-Auth-Request-Email", "root@example.com")
            .header("Remote-User", "root")
            .header("X_Rampart_User_Id", "00000000-0000-0000-0000-000000000000")
            .header("X_Forwarded_User", "root")
            .header("X-Real-IP", "6.6.6.6")
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Forwarded-Uri", "/admin")
            .header("X-Original-URL", "/admin")
            .header("X-HTTP-Method-Override", "DELETE")
            .header("Forwarded", "for=6.6.6.6")
            .header("X-CSRF-Token", "t")
            .header("Cookie", "rampart_session=stolen; app_pref=dark")
            .header("Connection", "X-Hop")
            .header("X-Hop", "1"),
    )
    .await;
    let headers = &seen["headers"];
    assert_eq!(seen["url"], "/mine/x?a=%20b&c", "path and query byte for byte");
    assert_eq!(headers["x-rampart-user-id"], app.users.user.id.to_string());
    assert_eq!(headers["x-rampart-role"], "user");
    assert_eq!(headers["x-rampart-auth"], "bearer");
    assert_ne!(headers["x-rampart-assertion"], "forged");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "the client's own value is replaced");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], app.address.to_string());
    assert_eq!(headers["cookie"], "app_pref=dark");
    assert_eq!(headers["host"], upstream.addr.to_string(), "the upstream's own host unless preserve_host");
    for gone in [
        "authorization",
        "x-forwarded-user",
        "x-auth-request-email",
        "remote-user",
        "x-forwarded-uri",
        "x-original-url",
        "x-http-method-override",
        "forwarded",
        "x-csrf-token",
        "x-hop",
        "x_rampart_user_id",
        "x_forwarded_user",
        "x-real-ip",
    ] {
        assert!(headers.get(gone).is_none(), "{gone} reached the upstream: {headers}");
    }
    let request_id = headers["x-request-id"].as_str().expect("request id").to_owned();
    // The access log line of that request names the route and the upstream.
    let logs = app.logs.contents();
    let line =
        logs.lines().find(|line| line.contains(&request_id) && line.contains("\"status\":200")).expect("access line");
    assert!(line.contains("\"route\":\"proxy:any-user\"") && line.contains("\"upstream\":\"app\""), "{line}");
    assert!(!line.contains(&token), "no token in the log");

    // pass_authorization lets the bearer token through.
    let passed = echo(&app, app.client.get(app.url("/pass")).bearer_auth(&token)).await;
    assert_eq!(passed["headers"]["authorization"], format!("Bearer {token}"));
    // Judged by the first, read by the upstream as the second: refused.
    let twice = app
        .client
        .get(app.url("/pass"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Authorization", "Basic YWRtaW46YWRtaW4=");
    app.send(twice).await.assert_problem(400);
    // strip_prefix: "/strip/7" arrives as "/7", "/strip" as "/".
    assert_eq!(echo(&app, app.client.get(app.url("/strip/7?q=1"))).await["url"], "/7?q=1");
    assert_eq!(echo(&app, app.client.get(app.url("/strip"))).await["url"], "/");
    // A guest on a public route carries no identity.
    let guest = echo(&app, app.client.get(app.url("/open/x"))).await;
    assert!(guest["headers"].get("x-rampart-user-id").is_none());
    assert!(guest["headers"].get("x-rampart-assertion").is_none());
}

#[tokio::test]
async fn refused_path_shapes_are_400_and_never_forwarded() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    upstream.clear_received().await;
    for path in [
        "/open//x",
        "/open/%61",
        "/open/%2D",
        "/open/a%2Fb",
        "/open/a%2fb",
        "/open/a%5Cb",
        "/open/a;b",
        "/open/a%00b",
        "/open/a%0ab",
        "/open/a%zz",
        "/open/a%4",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status, 400, "{path}: {}", response.body);
        response.assert_problem(400);
    }
    // Dot segments, a raw backslash and a raw control character, which
    // reqwest would normalise or refuse to send.
    for raw in [
        "/open/../mine",
        "/open/./x",
        "/open/..",
        "/open/%2e%2e/mine",
        "/open/.%2E/mine",
        "/open/%2E/x",
        "/open/a\\b",
        "/open/a\x01b",
    ] {
        let status = raw_status(&app, &format!("GET {raw} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert!(status == 400, "{raw:?} got {status}");
    }
    // A Host that is not a host is not forwarded either (links are built from it).
    for host in ["evil.example/reset?x=", "user@evil.example", "a b"] {
        let status = raw_status(&app, &format!("GET /open/x HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert_eq!(status, 400, "{host:?}");
    }
    assert!(upstream.received().await.is_empty(), "a refused path reached the upstream");
}

/// Sends `request` as bytes and returns the status of the first response.
async fn raw_status(app: &TestApp, request: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buffer = vec![0u8; 4096];
    let read =
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.expect("answer").expect("read");
    let text = String::from_utf8_lossy(&buffer[..read]);
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn path_variants_are_judged_by_the_route_they_name() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let user = app.token_for(&app.users.user).await;
    // "/ORDERS" is the orders routes' business, not the public "/" route's.
    app.get("/ORDERS").await.assert_problem(401);
    app.get("/Orders/7").await.assert_problem(401);
    app.send(app.client.delete(app.url("/orders/7")).bearer_auth(&user)).await.assert_problem(403);
    // GET is the read route's: any signed-in user.
    assert_eq!(app.get_as("/orders/7", &user).await.status, 200);
    // A segment boundary: "/ordersx" is not under "/orders"; the root route takes it.
    assert_eq!(app.get("/ordersx").await.status, 200);
    // A path whose routes do not list the method: 405 with Allow (GET covers HEAD).
    let not_allowed = app.send(app.client.post(app.url("/reports/q1"))).await;
    not_allowed.assert_problem(405);
    assert_eq!(not_allowed.header("allow"), Some("GET, HEAD"));
    assert_eq!(app.send(app.client.head(app.url("/reports/q1"))).await.status, 200);
    // Rampart's own paths stay Rampart's whatever their case.
    assert_eq!(app.get("/AUTH/login").await.status, 404);
    assert_eq!(app.get("/health").await.status, 200);
}

#[tokio::test]
async fn without_credentials_required_routes_refuse_and_browser_routes_redirect_to_login() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let refused = app.get("/mine").await;
    refused.assert_problem(401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer realm=\"rampart\""));
    let redirect = app.get("/app/page?x=1&y=/z").await;
    assert_eq!(redirect.status, 303);
    assert_eq!(redirect.header("location"), Some("/login?next=/app/page%3Fx%3D1%26y%3D/z"));
    // A bad token is 401 on an optional route; a public route ignores it.
    let bad = app.send(app.client.get(app.url("/maybe")).bearer_auth("not-a-token")).await;
    bad.assert_problem(401);
    let ignored = echo(&app, app.client.get(app.url("/open")).bearer_auth("not-a-token")).await;
    assert!(ignored["headers"].get("x-rampart-user-id").is_none());
    // Guests pass optional routes without identity; users with it.
    let guest = echo(&app, app.client.get(app.url("/maybe"))).await;
    assert!(guest["headers"].get("x-rampart-user-id").is_none());
    let token = app.token_for(&app.users.other).await;
    let signed = echo(&app, app.client.get(app.url("/maybe")).bearer_auth(&token)).await;
    assert_eq!(signed["headers"]["x-rampart-user-id"], app.users.other.id.to_string());
}

#[tokio::test]
async fn allow_roles_binds_admins_and_denials_are_audited_with_the_route() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let manager = app.token_for(&app.users.manager).await;
    let admin = app.token_for(&app.users.admin).await;
    assert_eq!(app.send(app.client.post(app.url("/orders")).bearer_auth(&manager)).await.status, 200);
    app.send(app.client.post(app.url("/orders")).bearer_auth(&admin)).await.assert_problem(403);
    // The audit trail names the route.
    let mut found = false;
    for _ in 0..50 {
        let audit = app.get_as("/api/admin/audit?event=forbidden", &admin).await;
        if audit.body.contains("Proxy on Route orders") && audit.body.contains("proxy:orders") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "no audited denial naming the route");
}

#[tokio::test]
async fn cookie_requests_need_a_same_origin_signal_on_unsafe_methods() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let (cookie, csrf) = user_session(&app).await;
    let post = |extra: Option<(&'static str, String)>| {
        let mut request = app.client.post(app.url("/mine")).header("Cookie", &cookie);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request
    };
    app.send(post(None)).await.assert_problem(403);
    app.send(post(Some(("Origin", "https://evil.example".into())))).await.assert_problem(403);
    app.send(post(Some(("Sec-Fetch-Site", "cross-site".into())))).await.assert_problem(403);
    assert_eq!(app.send(post(Some(("Sec-Fetch-Site", "same-origin".into())))).await.status, 200);
    assert_eq!(app.send(post(Some(("Origin", format!("http://{}", app.address))))).await.status, 200);
    let with_token = echo(&app, post(Some(("X-CSRF-Token", csrf)))).await;
    assert_eq!(with_token["headers"]["x-rampart-auth"], "session");
    assert!(with_token["headers"].get("x-csrf-token").is_none());
    // Safe methods need nothing more.
    assert_eq!(app.send(app.client.get(app.url("/mine")).header("Cookie", &cookie)).await.status, 200);
}

#[tokio::test]
async fn the_assertion_verifies_with_the_jwks_in_the_upstreams_own_language_and_is_never_an_access_token() {
    let verifier = spawn_upstream(&[]).await;
    let app = gateway_app(&verifier).await;
    verifier.configure_assertion(&app.url("/.well-known/jwks.json"), Some("rampart"), Some("app")).await;

    let token = app.token_for(&app.users.manager).await;
    // "/strip/verify" reaches the upstream's "/verify".
    let verified = app.send(app.client.get(app.url("/strip/verify")).bearer_auth(&token)).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    let claims = &verified.json()["claims"];
    assert_eq!(claims["sub"], app.users.manager.id.to_string());
    assert_eq!(claims["role"], "manager");
    assert_eq!(claims["department"], "sales");
    assert_eq!(claims["email"], app.users.manager.email);
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["route"], "strip");
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], format!("http://{}/strip/verify", app.address));
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
    assert!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat") == 60);

    // The assertion as a bearer token: refused.
    let echoed = echo(&app, app.client.get(app.url("/mine")).bearer_auth(&token)).await;
    let assertion = echoed["headers"]["x-rampart-assertion"].as_str().expect("assertion").to_owned();
    app.get_as("/api/profile", &assertion).await.assert_problem(401);
    app.get_as("/mine", &assertion).await.assert_problem(401);
    // A Python upstream verifies the same assertion with PyJWT.
    if let Some(python) = python_verifier() {
        let jwks = app.url("/.well-known/jwks.json");
        let claims = verify_with_python(&python, &jwks, &assertion, Some("rampart"), Some("app")).await.expect("valid");
        assert_eq!(claims["sub"], app.users.manager.id.to_string());
        let wrong = verify_with_python(&python, &jwks, &assertion, Some("rampart"), Some("other")).await;
        assert!(wrong.is_err(), "another upstream's audience must not verify");
    }
    // An access token where an assertion is expected: the upstream refuses it.
    let direct = reqwest::Client::new()
        .get(format!("{}/verify", verifier.url()))
        .header("X-Rampart-Assertion", &token)
        .send()
        .await
        .expect("upstream answers");
    assert_eq!(direct.status(), 401, "an access token passed as an assertion");
}

#[tokio::test]
async fn upstream_failures_are_502_504_503_and_413_problems() {
    let upstream = spawn_upstream(&[]).await;
    let app = spawn_with(|options| {
        table(&mut options.config, &upstream);
        let checked = UpstreamConfig {
            health_path: "/healthz".into(),
            health_interval: HumanDuration(Duration::from_millis(100)),
            ..upstream_config(upstream.url())
        };
        options.config.proxy.upstreams.insert("checked".into(), checked);
        options
            .config
            .proxy
            .routes
            .push(RouteConfig { strip_prefix: true, ..route("checked", "/checked", "checked", RouteAuth::Public) });
    })
    .await;
    let refused = app.get("/nowhere/x").await;
    refused.assert_problem(502);
    assert!(!refused.body.contains("127.0.0.1"), "no upstream detail: {}", refused.body);
    app.get("/hasty/slow?ms=2000").await.assert_problem(504);
    assert_eq!(app.get("/hasty/slow?ms=10").await.status, 200);
    // An upload that keeps moving for longer than the response timeout is
    // not cut: the timeout runs from its last byte.
    let slow_upload = futures_util::stream::unfold(0u32, |sent| async move {
        if sent == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(vec![b'x'; 100]), sent + 1))
    });
    let uploaded =
        app.send(app.client.post(app.url("/hasty/upload")).body(reqwest::Body::wrap_stream(slow_upload))).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    assert_eq!(uploaded.json()["body_length"], 1000);

    // 413: declared, and while streaming (no Content-Length).
    let big = vec![b'x'; 4096];
    app.send(app.client.post(app.url("/small/upload")).body(big.clone())).await.assert_problem(413);
    let chunks: Vec<Vec<u8>> = big.chunks(512).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    app.send(app.client.post(app.url("/small/upload")).body(reqwest::Body::wrap_stream(stream)))
        .await
        .assert_problem(413);
    assert_eq!(app.send(app.client.post(app.url("/small/upload")).body(vec![b'x'; 512])).await.status, 200);

    // 503 with Retry-After while the health check fails; back when it passes.
    assert_eq!(app.get("/checked/x").await.status, 200);
    upstream.set_health(false).await;
    let mut down = None;
    for _ in 0..50 {
        let response = app.get("/checked/x").await;
        if response.status == 503 {
            down = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let down = down.expect("the upstream was marked down");
    down.assert_problem(503);
    assert!(down.header("retry-after").is_some());
    upstream.set_health(true).await;
    let mut back = false;
    for _ in 0..50 {
        if app.get("/checked/x").await.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the upstream came back");
    let metrics = reqwest::get(format!("http://{}/metrics", app.admin_address))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for series in [
        "rampart_upstream_requests_total{route=\"nowhere\",upstream=\"nowhere\",status=\"502\"}",
        "rampart_upstream_requests_total{route=\"hasty\",upstream=\"hasty\",status=\"504\"}",
        "rampart_upstream_duration_seconds_count{route=\"hasty\",upstream=\"hasty\"}",
        "rampart_upstream_up{upstream=\"checked\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} missing from the scrape");
    }
}

#[tokio::test]
async fn bodies_stream_both_ways_unbuffered_and_intact() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    // 5 MiB up, its hash echoed back.
    let body: Vec<u8> = (0..5 * 1024 * 1024).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let expected = hex(&sha2::Sha256::digest(&body));
    let seen = echo(&app, app.client.post(app.url("/open/upload")).body(body.clone())).await;
    assert_eq!(seen["body_length"], 5 * 1024 * 1024);
    assert_eq!(seen["body_sha256"], expected);

    // Server-sent events arrive as the upstream writes them.
    let started = std::time::Instant::now();
    let response = app.client.get(app.url("/open/sse?count=3&interval_ms=400")).send().await.expect("sse");
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let first = stream.next().await.expect("a first event").expect("bytes");
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("data:"), "{first:?}");
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.expect("bytes"));
    }
    let all_at = started.elapsed();
    assert!(
        all_at - first_at >= Duration::from_millis(600),
        "the first event waited for the others: {first_at:?} {all_at:?}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn the_upstreams_answer_passes_back_without_its_hop_headers_or_rampart_cookies() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let response = app.get("/open/set-cookies").await;
    assert_eq!(response.status, 200);
    let cookies: Vec<&str> = response.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(cookies.iter().all(|cookie| !cookie.to_ascii_lowercase().starts_with("rampart")), "{cookies:?}");
    assert!(cookies.iter().any(|cookie| cookie.starts_with("app_session=ok")), "{cookies:?}");
    assert!(response.header("server").is_none());
    assert!(response.header("x-powered-by").is_none());
    assert!(response.header("x-hop").is_none());
    assert_eq!(response.header("x-frame-options"), Some("SAMEORIGIN"), "the upstream's own value stays");
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"), "Rampart fills in the rest");
    assert!(response.header("x-request-id").is_some());
    // The upstream's own error answers are its own, not problems, and not
    // security events of Rampart's.
    let missing = app.get("/open/status/404").await;
    assert_eq!(missing.status, 404);
    assert!(!missing.body.contains("about:blank"), "{}", missing.body);
    let forbidden = app.get("/open/status/403").await;
    assert_eq!(forbidden.status, 403);
    let admin = app.token_for(&app.users.admin).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audit = app.get_as("/api/admin/audit?event=forbidden", &admin).await;
    assert!(!audit.body.contains("/open/status/403") && !audit.body.contains("proxy:open"), "{}", audit.body);
    // Outside every route and Rampart's paths: 404; a matched path with another method: 405.
    let reads_only = spawn_with(|options| {
        table(&mut options.config, &upstream);
        options.config.proxy.routes.retain(|route| route.id != "root");
    })
    .await;
    reads_only.get("/elsewhere").await.assert_problem(404);
    let not_allowed = reads_only.send(reads_only.client.put(reads_only.url("/orders"))).await;
    assert_eq!(not_allowed.status, 401, "PUT has the managers' route");
}

#[tokio::test]
async fn the_route_group_limits_proxied_requests_by_user_and_says_so() {
    let upstream = spawn_upstream(&[]).await;
    let app = spawn_with(|options| {
        table(&mut options.config, &upstream);
        let group = options.config.rate_limit.get_mut("proxy").expect("the built-in proxy group");
        group.limit = 3;
    })
    .await;
    let user = app.token_for(&app.users.user).await;
    let other = app.token_for(&app.users.other).await;
    for _ in 0..3 {
        let response = app.get_as("/mine", &user).await;
        assert_eq!(response.status, 200);
        assert!(response.header("ratelimit").is_some_and(|value| value.contains("\"proxy\"")));
    }
    let limited = app.get_as("/mine", &user).await;
    limited.assert_problem(429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(app.get_as("/mine", &other).await.status, 200, "keyed by user, not by address");
    // Rampart's own API does not count in the proxy group.
    assert_eq!(app.get_as("/api/profile", &user).await.status, 200);
}

/// The seeded user's session cookie (`rampart_session=…`) and CSRF token.
async fn user_session(app: &TestApp) -> (String, String) {
    let user = &app.users.user;
    let session =
        app.post_json("/auth/session", &serde_json::json!({"email": user.email, "password": user.password})).await;
    assert_eq!(session.status, 200, "{}", session.body);
    let cookie = session
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("rampart_session="))
        .and_then(|value| value.split(';').next())
        .expect("session cookie")
        .to_owned();
    (cookie, session.json()["csrf_token"].as_str().expect("csrf token").to_owned())
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The close code the server ends `socket` with (`None` for a close
/// without one, or the connection simply ending); `Err` past 5 s.
async fn close_code(socket: &mut Socket) -> Result<Option<u16>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(tungstenite::Message::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
}

async fn ws_request(app: &TestApp, path: &str) -> tungstenite::handshake::client::Request {
    format!("ws://{}{path}", app.address).into_client_request().expect("request")
}

#[tokio::test]
async fn websockets_echo_and_close_when_the_caller_logs_out() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    // Refused without credentials.
    let refused = tokio_tungstenite::connect_async(ws_request(&app, "/ws").await).await;
    assert!(matches!(refused, Err(tungstenite::Error::Http(ref response)) if response.status() == 401), "{refused:?}");

    let login = app.login(&app.users.user.email, &app.users.user.password).await;
    let token = login["access_token"].as_str().expect("token").to_owned();
    let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
    let mut request = ws_request(&app, "/ws").await;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    assert_eq!(response.status(), 101);
    socket.send(tungstenite::Message::text("ping 1")).await.expect("send");
    let echoed = socket.next().await.expect("an answer").expect("a message");
    assert_eq!(echoed.into_text().expect("text").as_str(), "ping 1");

    // Logging out revokes the token: the tunnel is closed within 5 s.
    let logout = app
        .send(
            app.client
                .post(app.url("/auth/logout"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"refresh_token": refresh})),
        )
        .await;
    assert!(logout.status == 204 || logout.status == 200, "{}", logout.body);
    let closed = close_code(&mut socket).await.expect("closed within 5 s");
    assert_eq!(closed, Some(1008));
}

#[tokio::test]
async fn a_cookie_websocket_from_another_origin_is_refused() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let (cookie, _) = user_session(&app).await;
    let mut evil = ws_request(&app, "/ws").await;
    evil.headers_mut().insert("cookie", cookie.parse().expect("cookie"));
    evil.headers_mut().insert("origin", "https://evil.example".parse().expect("origin"));
    let refused = tokio_tungstenite::connect_async(evil).await;
    assert!(matches!(refused, Err(tungstenite::Error::Http(ref response)) if response.status() == 403), "{refused:?}");
    let mut good = ws_request(&app, "/ws").await;
    good.headers_mut().insert("cookie", cookie.parse().expect("cookie"));
    good.headers_mut().insert("origin", format!("http://{}", app.address).parse().expect("origin"));
    let (mut socket, _) = tokio_tungstenite::connect_async(good).await.expect("same-origin upgrade");
    socket.send(tungstenite::Message::text("hi")).await.expect("send");
    assert_eq!(socket.next().await.expect("answer").expect("message").into_text().expect("text").as_str(), "hi");
}

#[tokio::test]
async fn a_broken_route_reload_keeps_the_old_table() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let mut broken = rampart::config::Config::defaults();
    table(&mut broken, &upstream);
    broken.proxy.routes.push(route("ghost", "/ghost", "no-such-upstream", RouteAuth::Public));
    let problems = app.gateway.reload(&broken).expect_err("an unknown upstream is refused");
    assert!(problems.iter().any(|problem| problem.contains("no-such-upstream")), "{problems:?}");
    assert_eq!(app.get("/open/x").await.status, 200, "the old table still serves");

    // A valid reload without an upstream drops its series from the scrape.
    let scrape = || async {
        reqwest::get(format!("http://{}/metrics", app.admin_address))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    assert!(scrape().await.contains("rampart_upstream_up{upstream=\"nowhere\"}"));
    let mut smaller = rampart::config::Config::defaults();
    table(&mut smaller, &upstream);
    smaller.proxy.upstreams.remove("nowhere");
    smaller.proxy.routes.retain(|route| route.upstream != "nowhere");
    app.gateway.reload(&smaller).expect("a valid table");
    assert!(
        !scrape().await.contains("rampart_upstream_up{upstream=\"nowhere\"}"),
        "a removed upstream's up series stays"
    );
    assert_eq!(app.get("/nowhere/x").await.status, 200, "now the root route's path");
}

/// Sends raw bytes and returns everything the server answers until it
/// closes or goes quiet for a moment.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let mut buffer = vec![0u8; 8192];
    while let Ok(Ok(read)) = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn smuggling_attempts_never_reach_the_upstream_as_a_second_request() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    upstream.clear_received().await;
    // Content-Length and Transfer-Encoding together, hiding a second request
    // in what a length-reading peer would take as the body.
    let smuggled = "GET /mine/admin-only HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunked = format!(
        "POST /open/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
    );
    let answer = raw_exchange(&app, chunked.as_bytes()).await;
    // Two Content-Lengths that disagree, and an obfuscated Transfer-Encoding.
    let doubled =
        format!("POST /open/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 45\r\n\r\n{smuggled}");
    let doubled_answer = raw_exchange(&app, doubled.as_bytes()).await;
    let obfuscated = format!(
        "POST /open/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n{smuggled}"
    );
    let obfuscated_answer = raw_exchange(&app, obfuscated.as_bytes()).await;
    for answer in [&answer, &doubled_answer, &obfuscated_answer] {
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    }
    let received = upstream.received().await;
    let urls: Vec<&str> = received.iter().filter_map(|request| request["url"].as_str()).collect();
    assert!(!urls.iter().any(|url| url.contains("admin-only")), "a smuggled request reached the upstream: {urls:?}");
    // Whatever reached the upstream carried no conflicting framing.
    for request in &received {
        let headers = &request["headers"];
        assert!(!(headers.get("content-length").is_some() && headers.get("transfer-encoding").is_some()), "{request}");
    }
    // The smuggled request, had it been parsed on Rampart's side, would be a
    // guest on a required route: 401. It must not have been answered as 200.
    assert!(!answer.contains("admin-only"), "{answer}");
}

#[tokio::test]
async fn an_idle_stream_is_cut_and_a_streaming_one_is_not() {
    let upstream = spawn_upstream(&[]).await;
    let app = spawn_with(|options| {
        table(&mut options.config, &upstream);
        let quick = UpstreamConfig {
            idle_timeout: HumanDuration(Duration::from_millis(300)),
            ..upstream_config(upstream.url())
        };
        options.config.proxy.upstreams.insert("quick".into(), quick);
        options
            .config
            .proxy
            .routes
            .push(RouteConfig { strip_prefix: true, ..route("quick", "/quick", "quick", RouteAuth::Public) });
    })
    .await;
    // One chunk, then 2 s of nothing: cut after 300 ms, never a clean end.
    let response = app.client.get(app.url("/quick/stall-body?ms=2000")).send().await.expect("headers");
    assert_eq!(response.status(), 200);
    let started = std::time::Instant::now();
    let body = response.bytes().await;
    assert!(body.is_err(), "a stalled body must not end as if complete");
    assert!(started.elapsed() < Duration::from_millis(1500), "cut at the idle timeout");
    // Events every 100 ms keep a 300 ms idle timeout from firing over 1 s.
    let events = app.client.get(app.url("/quick/sse?count=10&interval_ms=100")).send().await.expect("sse");
    let text = events.text().await.expect("a stream that keeps moving is never idle");
    assert_eq!(text.matches("data:").count(), 10, "{text}");
}

#[tokio::test]
async fn websockets_are_closed_with_1001_on_shutdown() {
    let upstream = spawn_upstream(&[]).await;
    let app = gateway_app(&upstream).await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(ws_request(&app, "/open-ws/ws").await).await.expect("a guest upgrade");
    socket.send(tungstenite::Message::text("before")).await.expect("send");
    assert_eq!(socket.next().await.expect("answer").expect("message").into_text().expect("text").as_str(), "before");
    let stopping = tokio::task::spawn_blocking(move || app.stop());
    let code = close_code(&mut socket).await.expect("closed within 5 s of shutdown");
    assert_eq!(code, Some(1001));
    stopping.await.expect("the server stopped");
}

#[tokio::test]
async fn ready_is_503_while_every_upstream_of_a_required_route_is_down() {
    let upstream = spawn_upstream(&[]).await;
    let app = spawn_with(|options| {
        let checked = UpstreamConfig {
            health_path: "/healthz".into(),
            health_interval: HumanDuration(Duration::from_millis(100)),
            ..upstream_config(upstream.url())
        };
        options.config.proxy.upstreams.insert("checked".into(), checked);
        options.config.proxy.routes.push(route("api", "/v1", "checked", RouteAuth::Required));
    })
    .await;
    assert_eq!(app.get("/ready").await.status, 200);
    upstream.set_health(false).await;
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let status = app.get("/ready").await.status;
        statuses.push(status);
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert_eq!(app.get("/health").await.status, 200, "liveness does not depend on upstreams");
    upstream.set_health(true).await;
    let mut back = false;
    for _ in 0..50 {
        if app.get("/ready").await.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back);
}

#[tokio::test]
async fn with_hs256_tokens_the_assertion_is_signed_by_its_own_published_ed25519_key() {
    let upstream = spawn_upstream(&[]).await;
    let keys = tempfile::tempdir().expect("dir");
    let secret = keys.path().join("hs256.secret");
    std::fs::write(&secret, "an HS256 secret that is long enough to be accepted here").expect("secret");
    let assertion_key = keys.path().join("assertion.pem");
    let pem = rampart::auth::keys::generate(rampart::config::JwtAlgorithm::EdDSA).expect("key");
    std::fs::write(&assertion_key, pem).expect("key file");
    let app = spawn_with(|options| {
        options.config.auth.jwt_algorithm = rampart::config::JwtAlgorithm::HS256;
        options.config.auth.signing_key_file = secret.clone();
        options.config.proxy.assertion_key_file = assertion_key.clone();
        table(&mut options.config, &upstream);
    })
    .await;
    let jwks = app.get("/.well-known/jwks.json").await.json();
    let published = jwks["keys"].as_array().expect("keys");
    assert_eq!(published.len(), 1, "only the assertion key, never the HS256 secret: {jwks}");
    assert_eq!(published[0]["alg"], "EdDSA");
    let token = app.token_for(&app.users.user).await;
    let seen = echo(&app, app.client.get(app.url("/mine")).bearer_auth(&token)).await;
    let assertion = seen["headers"]["x-rampart-assertion"].as_str().expect("assertion").to_owned();
    if let Some(python) = python_verifier() {
        let claims =
            verify_with_python(&python, &app.url("/.well-known/jwks.json"), &assertion, Some("rampart"), Some("app"))
                .await
                .expect("the assertion verifies with the published key");
        assert_eq!(claims["sub"], app.users.user.id.to_string());
    }
    // The HS256 access token is still what the API accepts; the assertion is not.
    app.get_as("/api/profile", &assertion).await.assert_problem(401);
    assert_eq!(app.get_as("/api/profile", &token).await.status, 200);
}

#[tokio::test]
async fn an_https_upstream_is_trusted_through_its_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().expect("dir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .expect("leaf");
    let (ca_file, cert_file, key_file) =
        (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&ca_file, ca.pem()).expect("ca");
    std::fs::write(&cert_file, leaf.pem()).expect("cert");
    std::fs::write(&key_file, leaf_key.serialize_pem()).expect("key");
    let cert = cert_file.display().to_string();
    let key = key_file.display().to_string();
    let upstream = spawn_upstream(&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key)]).await;
    let https = format!("https://{}", upstream.addr);
    let app = spawn_with(|options| {
        let proxy = &mut options.config.proxy;
        proxy
            .upstreams
            .insert("private-ca".into(), UpstreamConfig { ca_file: ca_file.clone(), ..upstream_config(https.clone()) });
        proxy.upstreams.insert("public-roots".into(), upstream_config(https.clone()));
        proxy.routes.push(route("trusted", "/trusted", "private-ca", RouteAuth::Public));
        proxy.routes.push(route("untrusted", "/untrusted", "public-roots", RouteAuth::Public));
    })
    .await;
    let seen = echo(&app, app.client.get(app.url("/trusted/x"))).await;
    assert_eq!(seen["url"], "/trusted/x");
    // The same server, checked against the public roots only: no answer.
    app.get("/untrusted/x").await.assert_problem(502);
}

/// Whether a new connection is served: `GET /health` answered, or the
/// connection closed unserved.
async fn served(app: &TestApp) -> (bool, Option<tokio::net::TcpStream>) {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.expect("connect");
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buffer = vec![0u8; 2048];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
        Ok(Ok(read)) if read > 0 && buffer.starts_with(b"HTTP/1.1 200") => (true, Some(stream)),
        Ok(_) => (false, None),
        Err(_) => panic!("neither answered nor closed"),
    }
}

#[tokio::test]
async fn a_websocket_tunnel_keeps_its_clients_connection_slot_until_it_ends() {
    let upstream = spawn_upstream(&[]).await;
    let app = spawn_with(|options| {
        table(&mut options.config, &upstream);
        options.config.server.max_connections_per_ip = 2;
    })
    .await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(ws_request(&app, "/open-ws/ws").await).await.expect("a guest upgrade");
    socket.send(tungstenite::Message::text("held")).await.expect("send");
    assert_eq!(socket.next().await.expect("answer").expect("message").into_text().expect("text").as_str(), "held");
    let (second, kept) = served(&app).await;
    assert!(second, "the second slot is free");
    let (third, _) = served(&app).await;
    assert!(!third, "the tunnel and the kept-alive connection hold both slots");
    drop(kept);
    socket.close(None).await.expect("close");
    drop(socket);
    let mut freed = false;
    for _ in 0..100 {
        if served(&app).await.0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the slots came back once the tunnel ended");
}

/// A stand-in upstream that reads each request and hangs up without an
/// answer, counting what it received. (Fault injection the Node upstream
/// cannot do: a peer that drops a request it has read.)
async fn hanging_up_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buffer[..read]);
                    if seen.windows(4).any(|window| window == b"\r\n\r\n") {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                }
                // Dropped: the connection closes with no response.
            });
        }
    });
    (format!("http://{address}"), received)
}

#[tokio::test]
async fn a_request_that_reached_the_upstream_is_never_sent_again() {
    let (url, received) = hanging_up_upstream().await;
    let app = spawn_with(|options| {
        options.config.proxy.upstreams.insert("flaky".into(), upstream_config(url.clone()));
        options.config.proxy.routes.push(route("flaky", "/flaky", "flaky", RouteAuth::Public));
    })
    .await;
    let ordering = std::sync::atomic::Ordering::SeqCst;
    app.send(app.client.post(app.url("/flaky/order")).body("{}")).await.assert_problem(502);
    assert_eq!(received.load(ordering), 1, "a POST the upstream read is not repeated");
    app.get("/flaky/report").await.assert_problem(502);
    assert_eq!(received.load(ordering), 2, "nor a GET: only a connection that never opened is retried");
}

/// An API key's request and token through the gateway: X-Rampart-Auth
/// `api_key`, `amr` ["api_key"] and the key's `scope` in the assertion;
/// routes need `routes:<id>` or `routes:*`; a public route forwards it
/// without identity; a websocket on a key closes when the key is revoked.
#[tokio::test]
async fn api_keys_pass_the_gateway_only_with_a_route_scope_and_are_asserted_as_keys() {
    let verifier = spawn_upstream(&[]).await;
    let app = gateway_app(&verifier).await;
    verifier.configure_assertion(&app.url("/.well-known/jwks.json"), Some("rampart"), Some("app")).await;
    let token = app.token_for(&app.users.manager).await;
    let (_, strip_key) = app.api_key(&token, &["routes:strip", "routes:any-user", "posts:read"]).await;
    let verified = app.send(app.client.get(app.url("/strip/verify")).bearer_auth(&strip_key)).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    let claims = &verified.json()["claims"];
    assert_eq!(claims["sub"], app.users.manager.id.to_string());
    assert_eq!(claims["amr"], serde_json::json!(["api_key"]));
    assert_eq!(claims["scope"], "posts:read routes:any-user routes:strip");
    let echoed = echo(&app, app.client.get(app.url("/mine")).bearer_auth(&strip_key)).await;
    assert_eq!(echoed["headers"]["x-rampart-auth"], "api_key");
    assert!(echoed["headers"].get("authorization").is_none(), "the key never reaches the upstream");

    // Even where a route passes Authorization on, a key never leaves Rampart.
    let (_, pass_key) = app.api_key(&token, &["routes:pass"]).await;
    let passed = echo(&app, app.client.get(app.url("/pass/x")).bearer_auth(&pass_key)).await;
    assert_eq!(passed["headers"]["x-rampart-auth"], "api_key");
    assert!(passed["headers"].get("authorization").is_none(), "{passed}");
    let with_token = echo(&app, app.client.get(app.url("/pass/x")).bearer_auth(&token)).await;
    assert!(with_token["headers"].get("authorization").is_some(), "a route that passes it passes a token");

    // Another route, without its scope: 403 scope_missing; routes:* opens all.
    let refused = app.get_as("/orders", &strip_key).await;
    assert_eq!(refused.assert_problem(403)["code"], "scope_missing");
    let (_, every_route) = app.api_key(&token, &["routes:*"]).await;
    assert_eq!(app.get_as("/orders", &every_route).await.status, 200);
    // A public route forwards a key with its scope as the key, and one
    // without as a guest.
    let public = echo(&app, app.client.get(app.url("/open/anything")).bearer_auth(&every_route)).await;
    assert_eq!(public["headers"]["x-rampart-auth"], "api_key");
    let guest = echo(&app, app.client.get(app.url("/open/anything")).bearer_auth(&strip_key)).await;
    assert!(guest["headers"].get("x-rampart-auth").is_none() && guest["headers"].get("x-rampart-user-id").is_none());
    assert!(guest["headers"].get("x-rampart-assertion").is_none());

    // A websocket opened with a key closes when the key is revoked.
    let (id, ws_key) = app.api_key(&token, &["routes:ws"]).await;
    let mut request = ws_request(&app, "/ws").await;
    request.headers_mut().insert("authorization", format!("Bearer {ws_key}").parse().expect("header"));
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    assert_eq!(response.status(), 101);
    let revoked =
        app.send(app.client.delete(app.url(&format!("/api/profile/api-keys/{id}"))).bearer_auth(&token)).await;
    assert_eq!(revoked.status, 204);
    assert_eq!(close_code(&mut socket).await.expect("closed within 5 s"), Some(1008));
}
