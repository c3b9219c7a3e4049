//! Forward auth (PROTECT.md "Forward auth"): `/auth/forward` asked directly
//! the way Traefik, Caddy, nginx and Envoy ask it, and end to end through
//! real nginx running deploy/nginx/rampart-forward-auth.conf in front of
//! the Node upstream.

use std::collections::BTreeMap;

use rampart::config::{Config, RouteAuth, RouteConfig, Unauthenticated, UpstreamConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    helpers::{SpawnOptions, TestApp, TestResponse, spawn_with},
    upstream_rig::{Upstream, python_verifier, spawn_nginx, spawn_upstream, verify_with_python},
};

fn route(id: &str, path: &str, auth: RouteAuth) -> RouteConfig {
    RouteConfig {
        id: id.into(),
        path: path.into(),
        upstream: "app".into(),
        auth,
        rate_limit: "proxy".into(),
        ..RouteConfig::default()
    }
}

/// Routes over one upstream `app`, with no route at `/` (so other paths
/// are 404), and 127.0.0.1 (the tests and nginx) as a trusted proxy.
fn table(config: &mut Config, app: &Upstream) {
    config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.proxy.upstreams =
        BTreeMap::from([("app".to_owned(), UpstreamConfig { url: app.url(), ..UpstreamConfig::default() })]);
    config.proxy.routes = vec![
        route("open", "/open", RouteAuth::Public),
        route("maybe", "/maybe", RouteAuth::Optional),
        route("mine", "/mine", RouteAuth::Required),
        RouteConfig { allow_roles: vec!["manager".into()], ..route("managers", "/managers", RouteAuth::Required) },
        RouteConfig { methods: vec!["GET".into()], ..route("reads", "/reads", RouteAuth::Required) },
        RouteConfig { unauthenticated: Unauthenticated::Login, ..route("app", "/app", RouteAuth::Required) },
        RouteConfig { host: "api.example.test".into(), ..route("hosted", "/hosted", RouteAuth::Public) },
        RouteConfig { websockets: true, ..route("live", "/live", RouteAuth::Required) },
    ];
}

async fn forward_app(upstream: &Upstream) -> TestApp {
    spawn_with(|options| table(&mut options.config, upstream)).await
}

/// A forward-auth question as Traefik and Caddy ask it.
fn traefik(app: &TestApp, method: &str, uri: &str) -> reqwest::RequestBuilder {
    app.client
        .get(app.url("/auth/forward"))
        .header("X-Forwarded-Method", method)
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "api.example.test")
        .header("X-Forwarded-Uri", uri)
}

/// A forward-auth question as nginx's auth_request asks it.
fn nginx_style(app: &TestApp, method: &str, uri: &str) -> reqwest::RequestBuilder {
    app.client.get(app.url("/auth/forward")).header("X-Original-Method", method).header("X-Original-URI", uri)
}

async fn session_cookies(app: &TestApp) -> (String, String) {
    let session = app
        .post_json(
            "/auth/session",
            &serde_json::json!({"email": app.users.user.email, "password": app.users.user.password}),
        )
        .await;
    assert_eq!(session.status, 200, "{}", session.body);
    let cookies: Vec<String> = session
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter(|value| value.starts_with("rampart"))
        .filter_map(|value| value.split(';').next().map(str::to_owned))
        .collect();
    let session_cookie = cookies.iter().find(|c| c.starts_with("rampart_session=")).expect("session cookie").clone();
    (session_cookie, cookies.join("; "))
}

fn assert_no_identity(response: &TestResponse) {
    for name in ["x-rampart-user-id", "x-rampart-role", "x-rampart-auth", "x-rampart-assertion"] {
        assert!(response.header(name).is_none(), "{name} on {response:?}");
    }
}

#[tokio::test]
async fn a_signed_in_caller_gets_its_identity_and_an_assertion_for_the_forwarded_origin() {
    let upstream = spawn_upstream(&[]).await;
    let app = forward_app(&upstream).await;
    let token = app.token_for(&app.users.manager).await;
    let answer = app.send(traefik(&app, "GET", "/mine/x?y=1").bearer_auth(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("x-rampart-user-id"), Some(app.users.manager.id.to_string().as_str()));
    assert_eq!(answer.header("x-rampart-role"), Some("manager"));
    assert_eq!(answer.header("x-rampart-auth"), Some("bearer"));
    assert_eq!(answer.header("x-rampart-route"), Some("mine"));
    assert!(answer.header("ratelimit").is_some_and(|value| value.contains("\"proxy\"")), "{answer:?}");
    let assertion = answer.header("x-rampart-assertion").expect("an assertion").to_owned();
    // The assertion is no access token, even on forward auth.
    let as_token = app.send(traefik(&app, "GET", "/mine").bearer_auth(&assertion)).await;
    as_token.assert_problem(401);
    if let Some(python) = python_verifier() {
        let jwks = app.url("/.well-known/jwks.json");
        let claims = verify_with_python(&python, &jwks, &assertion, Some("rampart"), Some("app")).await.expect("valid");
        assert_eq!(claims["sub"], app.users.manager.id.to_string());
        assert_eq!(claims["route"], "mine");
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example.test/mine/x", "the forwarded proto and host, no query");
    }
    // The method named by the proxy is the one judged: POST on a cookie
    // session needs the CSRF signal, as in the gateway.
    let (session, _) = session_cookies(&app).await;
    let cookie_post = app.send(traefik(&app, "POST", "/mine").header("Cookie", &session)).await;
    cookie_post.assert_problem(403);
    let same_site = app
        .send(traefik(&app, "POST", "/mine").header("Cookie", &session).header("Sec-Fetch-Site", "same-origin"))
        .await;
    assert_eq!(same_site.status, 200, "{}", same_site.body);
    assert_eq!(same_site.header("x-rampart-auth"), Some("session"));
    assert_eq!(same_site.header("x-rampart-user-id"), Some(app.users.user.id.to_string().as_str()));
}

#[tokio::test]
async fn each_proxy_dialect_gets_the_gateways_decisions() {
    let upstream = spawn_upstream(&[]).await;
    let app = forward_app(&upstream).await;
    let user = app.token_for(&app.users.user).await;
    let manager = app.token_for(&app.users.manager).await;

    // Guests: public routes pass without identity, optional ones too.
    for path in ["/open/x", "/maybe"] {
        let guest = app.send(traefik(&app, "GET", path)).await;
        assert_eq!(guest.status, 200, "{path}: {}", guest.body);
        assert_no_identity(&guest);
        let guest = app.send(nginx_style(&app, "GET", path)).await;
        assert_eq!(guest.status, 200, "{path}: {}", guest.body);
        assert_no_identity(&guest);
    }
    // No credentials on a required route: 401; a bad token: 401, except on
    // a public route, which ignores credentials.
    let refused = app.send(traefik(&app, "GET", "/mine")).await;
    refused.assert_problem(401);
    assert!(refused.header("location").is_none());
    app.send(nginx_style(&app, "GET", "/mine")).await.assert_problem(401);
    app.send(traefik(&app, "GET", "/mine").bearer_auth("not-a-token")).await.assert_problem(401);
    let ignored = app.send(traefik(&app, "GET", "/open").bearer_auth("not-a-token")).await;
    assert_eq!(ignored.status, 200);
    assert_no_identity(&ignored);
    // A login route: 401 naming the sign-in page, for the proxy to redirect.
    let login = app.send(nginx_style(&app, "GET", "/app/page?x=1&y=/z")).await;
    login.assert_problem(401);
    assert_eq!(login.header("location"), Some("/login?next=/app/page%3Fx%3D1%26y%3D/z"));
    // allow_roles, and the denial audited with the route.
    app.send(traefik(&app, "GET", "/managers").bearer_auth(&user)).await.assert_problem(403);
    assert_eq!(app.send(traefik(&app, "GET", "/managers").bearer_auth(&manager)).await.status, 200);
    let admin = app.token_for(&app.users.admin).await;
    let mut audited = false;
    for _ in 0..50 {
        let audit = app.get_as("/api/admin/audit?event=forbidden", &admin).await;
        if audit.body.contains("Proxy on Route managers") && audit.body.contains("proxy:managers") {
            audited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(audited, "no audited denial naming the route");
    // No route, and Rampart's own paths: 404.
    app.send(traefik(&app, "GET", "/nowhere").bearer_auth(&user)).await.assert_problem(404);
    app.send(nginx_style(&app, "GET", "/api/profile").bearer_auth(&user)).await.assert_problem(404);
    // A method the route does not allow: 405 with Allow; GET covers HEAD.
    let not_allowed = app.send(nginx_style(&app, "DELETE", "/reads/1").bearer_auth(&user)).await;
    not_allowed.assert_problem(405);
    assert!(not_allowed.header("allow").is_some_and(|allow| allow.contains("GET")), "{not_allowed:?}");
    assert_eq!(app.send(traefik(&app, "HEAD", "/reads/1").bearer_auth(&user)).await.status, 200);
    // A missing method header means GET.
    let no_method =
        app.send(app.client.get(app.url("/auth/forward")).header("X-Original-URI", "/reads").bearer_auth(&user)).await;
    assert_eq!(no_method.status, 200, "{}", no_method.body);
    // No original URI at all: 400.
    app.send(app.client.get(app.url("/auth/forward")).bearer_auth(&user)).await.assert_problem(400);
    // Refused path shapes, whichever header names them.
    for uri in
        ["/open/a/../b", "/open/%2e%2e/mine", "/open//x", "/open/a;b", "/open/%61", "/open/a%2Fb", "/open/.", "x"]
    {
        app.send(nginx_style(&app, "GET", uri)).await.assert_problem(400);
        app.send(traefik(&app, "GET", uri)).await.assert_problem(400);
    }
    // The route and identity an X-Forwarded-Uri names win over the path the
    // request itself was sent to.
    assert_eq!(app.send(traefik(&app, "GET", "/mine").bearer_auth(&user)).await.status, 200);

    // A route with `host` is matched against the host the proxy names.
    let hosted = app.send(traefik(&app, "GET", "/hosted")).await;
    assert_eq!(hosted.status, 200, "{}", hosted.body);
    assert_eq!(hosted.header("x-rampart-route"), Some("hosted"));
    let elsewhere = app
        .client
        .get(app.url("/auth/forward"))
        .header("X-Forwarded-Host", "other.example.test")
        .header("X-Forwarded-Uri", "/hosted");
    app.send(elsewhere).await.assert_problem(404);

    // Envoy: /auth/forward/<original path> with the original method.
    let envoy = app.send(app.client.get(app.url("/auth/forward/mine/x?q=1")).bearer_auth(&user)).await;
    assert_eq!(envoy.status, 200, "{}", envoy.body);
    assert_eq!(envoy.header("x-rampart-user-id"), Some(app.users.user.id.to_string().as_str()));
    assert_eq!(envoy.header("x-rampart-route"), Some("mine"));
    app.send(app.client.get(app.url("/auth/forward/mine"))).await.assert_problem(401);
    app.send(app.client.post(app.url("/auth/forward/managers")).bearer_auth(&user)).await.assert_problem(403);
    app.send(app.client.delete(app.url("/auth/forward/reads")).bearer_auth(&user)).await.assert_problem(405);
    app.send(app.client.get(app.url("/auth/forward/nowhere")).bearer_auth(&user)).await.assert_problem(404);
    // Envoy passes the client's cookie and same-origin signals with the original method.
    let (session, _) = session_cookies(&app).await;
    let envoy_post = || app.client.post(app.url("/auth/forward/mine")).header("Cookie", &session);
    app.send(envoy_post()).await.assert_problem(403);
    let envoy_cookie = app.send(envoy_post().header("Sec-Fetch-Site", "same-origin")).await;
    assert_eq!(envoy_cookie.status, 200, "{}", envoy_cookie.body);
    assert_eq!(envoy_cookie.header("x-rampart-auth"), Some("session"));
    let open = app.send(app.client.put(app.url("/auth/forward/open"))).await;
    assert_eq!(open.status, 200, "{}", open.body);
    assert_eq!(raw_status(&app, "GET /auth/forward/open/../mine HTTP/1.1\r\nHost: x\r\n\r\n").await, 400);
    assert_eq!(raw_status(&app, "GET /auth/forward/open/%2e%2e/mine HTTP/1.1\r\nHost: x\r\n\r\n").await, 400);
    // Forward auth never forwards anything itself.
    assert!(upstream.received().await.is_empty(), "forward auth reached the upstream");
}

/// Sends `request` as bytes and returns the status of the first response.
async fn raw_status(app: &TestApp, request: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("answer")
        .expect("read");
    let text = String::from_utf8_lossy(&buffer[..read]);
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn only_trusted_proxies_may_ask() {
    let upstream = spawn_upstream(&[]).await;
    let app = spawn_with(|options: &mut SpawnOptions| {
        table(&mut options.config, &upstream);
        options.config.server.trusted_proxies = Vec::new();
    })
    .await;
    let token = app.token_for(&app.users.user).await;
    app.send(traefik(&app, "GET", "/mine").bearer_auth(&token)).await.assert_problem(403);
    app.send(traefik(&app, "GET", "/open")).await.assert_problem(403);
    app.send(app.client.get(app.url("/auth/forward/open"))).await.assert_problem(403);
}

#[tokio::test]
async fn the_routes_group_limits_forward_auth_with_retry_after() {
    let upstream = spawn_upstream(&[]).await;
    let app = spawn_with(|options| {
        table(&mut options.config, &upstream);
        options.config.rate_limit.get_mut("proxy").unwrap().limit = 2;
        // Two sign-ins and one profile read fit; forward auth must not count here.
        options.config.rate_limit.get_mut("global").unwrap().limit = 4;
    })
    .await;
    let user = app.token_for(&app.users.user).await;
    let other = app.token_for(&app.users.other).await;
    for _ in 0..2 {
        assert_eq!(app.send(traefik(&app, "GET", "/mine").bearer_auth(&user)).await.status, 200);
    }
    let limited = app.send(traefik(&app, "GET", "/mine").bearer_auth(&user)).await;
    limited.assert_problem(429);
    assert!(limited.header("retry-after").is_some_and(|value| value.parse::<u64>().is_ok()), "{limited:?}");
    assert!(limited.header("ratelimit").is_some_and(|value| value.contains("\"proxy\"")), "{limited:?}");
    assert!(limited.header("ratelimit-policy").is_some(), "{limited:?}");
    assert_eq!(app.send(traefik(&app, "GET", "/mine").bearer_auth(&other)).await.status, 200, "keyed by user");
    // Rampart's own API does not count in the proxy group, nor forward auth in `global`.
    let profile = app.get_as("/api/profile", &user).await;
    assert_eq!(profile.status, 200, "{}", profile.body);
    // Guests are keyed by the client address the trusted proxy names.
    let guest = |ip: &'static str| traefik(&app, "GET", "/open").header("X-Forwarded-For", ip);
    for _ in 0..2 {
        assert_eq!(app.send(guest("203.0.113.7")).await.status, 200);
    }
    app.send(guest("203.0.113.7")).await.assert_problem(429);
    assert_eq!(app.send(guest("203.0.113.8")).await.status, 200, "keyed by the forwarded client address");
}

#[tokio::test]
async fn a_forwarded_uri_sent_to_the_gateway_never_chooses_the_route() {
    let upstream = spawn_upstream(&[]).await;
    let app = forward_app(&upstream).await;
    for name in ["X-Forwarded-Uri", "X-Original-URI", "X-Original-URL", "X-Rewrite-URL"] {
        let response = app.send(app.client.get(app.url("/open/x")).header(name, "/mine")).await;
        assert_eq!(response.status, 200, "{name}: {}", response.body);
        let echo: Value = serde_json::from_str(&response.body).expect("the upstream's echo");
        assert_eq!(echo["url"], "/open/x");
        assert!(echo["headers"].get(name.to_ascii_lowercase()).is_none(), "{name} reached the upstream");
    }
    // And the other way round: a required route stays required.
    let refused = app.send(app.client.get(app.url("/mine")).header("X-Forwarded-Uri", "/open")).await;
    refused.assert_problem(401);
}

// ---- Through real nginx with deploy/nginx/rampart-forward-auth.conf.

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn nginx_forwards_signed_in_requests_with_rampart_identity_only() {
    let upstream = spawn_upstream(&[]).await;
    let app = forward_app(&upstream).await;
    let Some(nginx) = spawn_nginx("deploy/nginx/rampart-forward-auth.conf", app.address, upstream.addr).await else {
        return;
    };
    let client = plain_client();
    let token = app.token_for(&app.users.manager).await;
    let forged = [
        ("X-Rampart-User-Id", "00000000-0000-0000-0000-000000000000"),
        ("X-Rampart-Role", "admin"),
        ("X-Rampart-Auth", "session"),
        ("X-Rampart-Assertion", "forged"),
        ("X-Rampart-Route", "admin"),
    ];
    // Every other header PROTECT.md says a client cannot pass upstream.
    let smuggled = [
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Preferred-Username",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Groups",
        "X-Auth-Request-Preferred-Username",
        "X-Auth-Request-Access-Token",
        "Remote-User",
        "Remote-Groups",
        "Remote-Email",
        "X-Remote-User",
        "X-Forwarded-Uri",
        "X-Forwarded-Method",
        "X-Forwarded-Prefix",
        "X-Original-URI",
        "X-Original-URL",
        "X-Rewrite-URL",
        "Forwarded",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        "X-CSRF-Token",
        "Proxy-Authorization",
    ];
    let mut request = client.get(format!("{}/mine/x?y=1", nginx.url())).bearer_auth(&token);
    for (name, value) in forged {
        request = request.header(name, value);
    }
    for name in smuggled {
        request = request.header(name, "smuggled");
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    let headers = &echo["headers"];
    assert_eq!(echo["url"], "/mine/x?y=1");
    assert_eq!(headers["x-rampart-user-id"], app.users.manager.id.to_string());
    assert_eq!(headers["x-rampart-role"], "manager");
    assert_eq!(headers["x-rampart-auth"], "bearer");
    assert_eq!(headers["x-rampart-route"], "mine");
    assert!(headers.get("authorization").is_none(), "the bearer token reached the app");
    let leaked: Vec<&str> =
        smuggled.iter().copied().filter(|name| headers.get(name.to_ascii_lowercase()).is_some()).collect();
    assert!(leaked.is_empty(), "reached the app: {leaked:?}");
    let assertion = headers["x-rampart-assertion"].as_str().expect("assertion").to_owned();
    assert_ne!(assertion, "forged");
    if let Some(python) = python_verifier() {
        let jwks = app.url("/.well-known/jwks.json");
        let claims = verify_with_python(&python, &jwks, &assertion, Some("rampart"), Some("app")).await.expect("valid");
        assert_eq!(claims["sub"], app.users.manager.id.to_string());
        assert_eq!(claims["htu"], format!("http://{}/mine/x", nginx.addr), "the origin the client used: nginx's");
        assert_eq!(claims["htm"], "GET");
    }

    // A guest on a public route: the client's forged identity is not passed on.
    let mut request = client.get(format!("{}/open", nginx.url()));
    for (name, value) in forged {
        request = request.header(name, value);
    }
    let echo: Value = request.send().await.unwrap().json().await.unwrap();
    for name in ["x-rampart-user-id", "x-rampart-role", "x-rampart-auth", "x-rampart-assertion"] {
        assert!(echo["headers"].get(name).is_none(), "a forged {name} reached the app: {}", echo["headers"]);
    }
    assert_eq!(echo["headers"]["x-rampart-route"], "open", "Rampart's route, not the client's");

    // A session cookie: identity from it, Rampart's cookies stripped, others kept.
    let (_, rampart_cookies) = session_cookies(&app).await;
    let response = client
        .get(format!("{}/mine", nginx.url()))
        .header("Cookie", format!("app_pref=dark; {rampart_cookies}; theme=light"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-rampart-auth"], "session");
    assert_eq!(echo["headers"]["x-rampart-user-id"], app.users.user.id.to_string());
    assert_eq!(echo["headers"]["cookie"], "app_pref=dark; theme=light");
}

#[tokio::test]
async fn nginx_passes_rampart_refusals_on_to_the_client() {
    let upstream = spawn_upstream(&[]).await;
    let app = forward_app(&upstream).await;
    let Some(nginx) = spawn_nginx("deploy/nginx/rampart-forward-auth.conf", app.address, upstream.addr).await else {
        return;
    };
    let client = plain_client();
    upstream.clear_received().await;
    let user = app.token_for(&app.users.user).await;

    let refused = client.get(format!("{}/mine", nginx.url())).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer realm=\"rampart\"");
    // nginx names the request itself: a client's own X-Forwarded-Uri or
    // X-Original-URI never chooses the route.
    for name in ["X-Forwarded-Uri", "X-Original-URI"] {
        let smuggled = client.get(format!("{}/mine", nginx.url())).header(name, "/open").send().await.unwrap();
        assert_eq!(smuggled.status(), 401, "{name}");
    }
    let login = client.get(format!("{}/app/page?x=1", nginx.url())).send().await.unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/login?next=/app/page%3Fx%3D1");
    let forbidden = client.get(format!("{}/managers", nginx.url())).bearer_auth(&user).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);
    let missing = client.get(format!("{}/nowhere", nginx.url())).bearer_auth(&user).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-type"], "application/problem+json");
    let not_allowed = client.delete(format!("{}/reads", nginx.url())).bearer_auth(&user).send().await.unwrap();
    assert_eq!(not_allowed.status(), 405);
    assert!(not_allowed.headers().get("allow").is_some_and(|allow| allow == "GET, HEAD"), "{not_allowed:?}");
    // A cookie-authenticated POST needs a same-origin signal, as in the gateway.
    let (session, _) = session_cookies(&app).await;
    let post = || client.post(format!("{}/mine", nginx.url())).header("Cookie", &session).body("x");
    assert_eq!(post().send().await.unwrap().status(), 403);
    assert_eq!(post().header("Origin", "https://evil.example").send().await.unwrap().status(), 403);
    // Clients cannot ask /auth/forward through nginx (a trusted peer), however spelled.
    for path in ["/auth/forward", "/auth/forward/open", "/auth//forward", "/auth/%66orward", "/AUTH/forward"] {
        let asked = client
            .get(format!("{}{path}", nginx.url()))
            .header("X-Forwarded-Uri", "/open")
            .header("X-Original-URI", "/open")
            .send()
            .await
            .unwrap();
        assert_eq!(asked.status(), 404, "{path}");
        assert!(asked.headers().get("x-rampart-route").is_none(), "{path} was answered by forward auth");
    }
    // nginx does not normalise the URI it names to Rampart: a dot segment is 400.
    let mut stream = tokio::net::TcpStream::connect(nginx.addr).await.unwrap();
    stream.write_all(b"GET /open/%2e%2e/mine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(upstream.received().await.is_empty(), "a refused request reached the app");
    let same_origin = post().header("Sec-Fetch-Site", "same-origin").send().await.unwrap();
    assert_eq!(same_origin.status(), 200);
    let echo: Value = same_origin.json().await.unwrap();
    assert_eq!(echo["headers"]["x-rampart-auth"], "session");
    assert_eq!(echo["body_length"], 1);
}

#[tokio::test]
async fn nginx_passes_the_route_rate_limit_on_with_retry_after() {
    let upstream = spawn_upstream(&[]).await;
    let app = spawn_with(|options| {
        table(&mut options.config, &upstream);
        options.config.rate_limit.get_mut("proxy").unwrap().limit = 2;
    })
    .await;
    let Some(nginx) = spawn_nginx("deploy/nginx/rampart-forward-auth.conf", app.address, upstream.addr).await else {
        return;
    };
    let client = plain_client();
    let user = app.token_for(&app.users.user).await;
    for _ in 0..2 {
        let response = client.get(format!("{}/mine", nginx.url())).bearer_auth(&user).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let limited = client.get(format!("{}/mine", nginx.url())).bearer_auth(&user).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().get("retry-after").is_some_and(|value| !value.is_empty()), "{limited:?}");
    assert!(limited.headers().get("ratelimit").is_some(), "{limited:?}");
    assert!(limited.headers().get("allow").is_none(), "an empty Allow: {limited:?}");
}

#[tokio::test]
async fn nginx_answers_502_and_never_reaches_the_app_when_rampart_is_down() {
    let upstream = spawn_upstream(&[]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let Some(nginx) = spawn_nginx("deploy/nginx/rampart-forward-auth.conf", closed, upstream.addr).await else {
        return;
    };
    upstream.clear_received().await;
    let response = plain_client().get(format!("{}/open", nginx.url())).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert!(upstream.received().await.is_empty(), "the app was reached without Rampart's answer");
}

#[tokio::test]
async fn a_websocket_question_is_judged_as_one_though_the_proxy_drops_its_upgrade_headers() {
    let upstream = spawn_upstream(&[]).await;
    let app = forward_app(&upstream).await;
    let (session, _) = session_cookies(&app).await;
    // nginx asks without Upgrade and Connection; the key is still there.
    let ask = |path: &str, origin: &str| {
        traefik(&app, "GET", path)
            .header("Cookie", &session)
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Origin", origin.to_owned())
    };
    // A route without websockets takes none, whoever asks.
    app.send(ask("/mine", "https://api.example.test")).await.assert_problem(403);
    // Cross-site websocket hijacking: the cookie alone is not enough.
    app.send(ask("/live", "https://evil.example")).await.assert_problem(403);
    assert_eq!(app.send(ask("/live", "https://api.example.test")).await.status, 200);
}

#[tokio::test]
async fn two_names_for_the_original_request_must_agree() {
    let upstream = spawn_upstream(&[]).await;
    let app = forward_app(&upstream).await;
    // A proxy that sets only X-Original-URI passes the client's own
    // X-Forwarded-Uri: the two disagree and nothing is judged.
    let spoofed = nginx_style(&app, "GET", "/mine").header("X-Forwarded-Uri", "/open/x");
    app.send(spoofed).await.assert_problem(400);
    let method = nginx_style(&app, "DELETE", "/open/x").header("X-Forwarded-Method", "GET");
    app.send(method).await.assert_problem(400);
    let agreeing = nginx_style(&app, "GET", "/open/x").header("X-Forwarded-Uri", "/open/x");
    assert_eq!(app.send(agreeing).await.status, 200);
}

/// An API key asked about by another proxy: judged by its route scope as
/// in the gateway, answered with `X-Rampart-Auth: api_key`.
#[tokio::test]
async fn an_api_key_is_judged_by_its_route_scope() {
    let upstream = spawn_upstream(&[]).await;
    let app = forward_app(&upstream).await;
    let token = app.token_for(&app.users.manager).await;
    let (_, key) = app.api_key(&token, &["routes:mine"]).await;
    let answer = app.send(traefik(&app, "GET", "/mine/x").bearer_auth(&key)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("x-rampart-auth"), Some("api_key"));
    assert_eq!(answer.header("x-rampart-user-id"), Some(app.users.manager.id.to_string().as_str()));
    let elsewhere = app.send(nginx_style(&app, "GET", "/app/x").bearer_auth(&key)).await;
    assert_eq!(elsewhere.assert_problem(403)["code"], "scope_missing");
    assert_no_identity(&elsewhere);
}
