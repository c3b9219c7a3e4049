//! Rate limits over HTTP: headers, 429s, keys (IP, user, (IP, email)),
//! trusted proxies, IPv6 prefixes, failure-only counting, aggregation of
//! audit events, and exactness under concurrency.

use rampart::config::{CountMode, RateLimitGroup};
use serde_json::{Value, json};

use crate::helpers::{SpawnOptions, TestApp, TestResponse, spawn_app, spawn_with};

/// Sets a group's limit and freezes the clock at the start of a window, so
/// no test straddles a window boundary.
fn limit(options: &mut SpawnOptions, group: &str, limit: u32, window: &str) {
    let aligned = time::OffsetDateTime::from_unix_timestamp(1_800_000_000 - 1_800_000_000 % 86_400).expect("time");
    options.clock = std::sync::Arc::new(rampart::clock::ManualClock::new(aligned));
    let entry = options.config.rate_limit.get_mut(group).expect("built-in group");
    entry.limit = limit;
    entry.window = window.parse().expect("duration");
}

fn trust_loopback(options: &mut SpawnOptions) {
    options.config.server.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
}

async fn get_from(app: &TestApp, path: &str, forwarded_for: &str) -> TestResponse {
    app.send(app.client.get(app.url(path)).header("x-forwarded-for", forwarded_for)).await
}

#[tokio::test]
async fn the_sixth_login_for_one_email_is_refused_with_every_header() {
    let app = spawn_with(|options| {
        limit(options, "login", 5, "15m");
        options.config.rate_limit.get_mut("global").unwrap().limit = 100;
    })
    .await;
    let attempt = json!({"email": "victim@example.com", "password": "a wrong password!!"});
    for n in 1..=5 {
        let response = app.post_json("/auth/login", &attempt).await;
        assert_eq!(response.status, 401, "attempt {n}");
        let policy = response.header("ratelimit-policy").unwrap();
        assert!(policy.contains("\"login\";q=5;w=900") && policy.contains("\"global\";q=100;w=900"), "{policy}");
        let state = response.header("ratelimit").unwrap();
        assert!(state.contains(&format!("\"login\";r={};t=", 5 - n)), "{state}");
    }
    let refused = app.post_json("/auth/login", &attempt).await;
    refused.assert_problem(429);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    // The sliding window frees a place once the weighted count drops: at
    // most a window plus a fifth of the next (1 / limit of it) from now.
    assert!((1..=1080).contains(&retry_after), "{retry_after}");
    assert!(refused.header("ratelimit").unwrap().contains("\"login\";r=0;t="));
    assert!(refused.header("ratelimit-policy").unwrap().contains("\"login\";q=5;w=900"));
    // /auth/session shares the login budget.
    app.post_json("/auth/session", &attempt).await.assert_problem(429);
}

#[tokio::test]
async fn login_limits_count_per_ip_and_email_and_per_ip() {
    let app = spawn_with(|options| {
        limit(options, "login", 3, "15m");
        trust_loopback(options);
    })
    .await;
    let login = |email: &'static str, ip: &'static str| {
        app.send(
            app.client
                .post(app.url("/auth/login"))
                .header("x-forwarded-for", ip)
                .json(&json!({"email": email, "password": "not the password!"})),
        )
    };
    for _ in 0..3 {
        assert_eq!(login("a@example.com", "198.51.100.1").await.status, 401);
    }
    login("a@example.com", "198.51.100.1").await.assert_problem(429);
    // Another IP may still try that email; the same IP is out of budget
    // for any email (the per-IP count).
    assert_eq!(login("a@example.com", "198.51.100.2").await.status, 401);
    login("b@example.com", "198.51.100.1").await.assert_problem(429);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_client_changes_nothing() {
    let app = spawn_with(|options| limit(options, "api", 3, "1m")).await;
    for n in 0..3 {
        assert_eq!(get_from(&app, "/api/posts", &format!("203.0.113.{n}")).await.status, 200);
    }
    get_from(&app, "/api/posts", "203.0.113.99").await.assert_problem(429);
    let forged = app.send(app.client.get(app.url("/api/posts")).header("forwarded", "for=192.0.2.1")).await;
    forged.assert_problem(429);
}

#[tokio::test]
async fn a_trusted_proxy_forwards_the_client_address() {
    let app = spawn_with(|options| {
        limit(options, "api", 2, "1m");
        trust_loopback(options);
    })
    .await;
    for _ in 0..2 {
        assert_eq!(get_from(&app, "/api/posts", "203.0.113.1").await.status, 200);
    }
    get_from(&app, "/api/posts", "203.0.113.1").await.assert_problem(429);
    assert_eq!(get_from(&app, "/api/posts", "203.0.113.2").await.status, 200, "another client, another budget");
    // The rightmost untrusted hop counts, not a spoofed left part.
    get_from(&app, "/api/posts", "9.9.9.9, 203.0.113.1").await.assert_problem(429);
    let logs = app.logs.contents();
    assert!(logs.contains("\"client_ip\":\"203.0.113.2\""), "the access log shows the forwarded client");
}

#[tokio::test]
async fn ipv6_clients_in_one_prefix_share_a_limit() {
    let app = spawn_with(|options| {
        limit(options, "api", 2, "1m");
        trust_loopback(options);
    })
    .await;
    assert_eq!(get_from(&app, "/api/posts", "2001:db8:1:2::1").await.status, 200);
    assert_eq!(get_from(&app, "/api/posts", "2001:db8:1:2:ffff:ffff:ffff:fffe").await.status, 200);
    get_from(&app, "/api/posts", "2001:db8:1:2::abcd").await.assert_problem(429);
    assert_eq!(get_from(&app, "/api/posts", "2001:db8:1:3::1").await.status, 200, "the next /64 is separate");
}

#[tokio::test]
async fn a_signed_in_user_has_one_budget_across_addresses() {
    let app = spawn_with(|options| {
        limit(options, "api", 3, "1m");
        trust_loopback(options);
    })
    .await;
    let token = app.token_for(&app.users.user).await;
    let as_user = |ip: &'static str| {
        app.send(app.client.get(app.url("/api/profile")).bearer_auth(&token).header("x-forwarded-for", ip))
    };
    assert_eq!(as_user("198.51.100.1").await.status, 200);
    assert_eq!(as_user("198.51.100.2").await.status, 200);
    assert_eq!(as_user("198.51.100.1").await.status, 200);
    as_user("198.51.100.3").await.assert_problem(429);
    // A guest on one of those addresses has its own budget.
    assert_eq!(get_from(&app, "/api/posts", "198.51.100.1").await.status, 200);
}

#[tokio::test]
async fn counting_failures_only_lets_successful_logins_through() {
    let app = spawn_with(|options| {
        limit(options, "login", 2, "15m");
        options.config.rate_limit.get_mut("login").unwrap().count = CountMode::Failures;
    })
    .await;
    let user = &app.users.user;
    for _ in 0..5 {
        app.login(&user.email, &user.password).await;
    }
    let wrong = json!({"email": user.email, "password": "not the password!"});
    app.post_json("/auth/login", &wrong).await.assert_problem(401);
    app.post_json("/auth/login", &wrong).await.assert_problem(401);
    app.post_json("/auth/login", &wrong).await.assert_problem(429);
}

#[tokio::test]
async fn health_checks_are_exempt_and_unknown_routes_count() {
    let app = spawn_with(|options| limit(options, "global", 3, "15m")).await;
    for _ in 0..10 {
        let health = app.get("/health").await;
        assert_eq!(health.status, 200);
        assert!(health.header("ratelimit").is_none());
    }
    for _ in 0..3 {
        app.get("/no/such/route").await.assert_problem(404);
    }
    app.get("/no/such/route").await.assert_problem(429);
    app.get("/api/posts").await.assert_problem(429);
    assert_eq!(app.get("/ready").await.status, 200);
}

#[tokio::test]
async fn every_path_in_the_api_namespace_counts_in_the_api_group_routed_or_not() {
    let app = spawn_with(|options| limit(options, "api", 2, "1m")).await;
    let unrouted = app.get("/api/no/such/route").await;
    unrouted.assert_problem(404);
    assert!(unrouted.header("ratelimit-policy").unwrap().contains("\"api\";q=2;w=60"));
    let wrong_method = app.request(reqwest::Method::PUT, "/api/posts").await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.header("ratelimit-policy").unwrap().contains("\"api\""));
    app.get("/api/posts").await.assert_problem(429);
    let outside = app.get("/openapi.json").await;
    assert_eq!(outside.status, 200);
    assert!(!outside.header("ratelimit-policy").unwrap().contains("\"api\""), "the api group is the namespace's");
}

#[tokio::test]
async fn only_a_post_to_a_sign_in_route_is_in_the_login_group() {
    let app = spawn_app().await;
    let sign_in = app.post_json("/auth/session", &json!({"email": "a@example.com", "password": "not it at all"})).await;
    assert_eq!(sign_in.status, 401);
    assert!(sign_in.header("ratelimit-policy").unwrap().contains("\"login\""));
    let sign_out = app.request(reqwest::Method::DELETE, "/auth/session").await;
    assert!(!sign_out.header("ratelimit-policy").unwrap().contains("\"login\""), "DELETE signs out");
    let elsewhere = app.post_json("/auth/refresh", &json!({"refresh_token": "rt_nothing"})).await;
    assert!(!elsewhere.header("ratelimit-policy").unwrap().contains("\"login\""));
}

#[tokio::test]
async fn health_checks_are_exempt_whatever_the_method() {
    let app = spawn_with(|options| limit(options, "global", 1, "15m")).await;
    for _ in 0..3 {
        for path in ["/health", "/ready"] {
            let response = app.request(reqwest::Method::POST, path).await;
            assert_eq!(response.status, 405, "{path}");
            assert!(response.header("ratelimit").is_none(), "{path}");
        }
    }
    assert_eq!(app.get("/api/posts").await.status, 200, "the exempt requests used none of the budget");
}

#[tokio::test]
async fn several_groups_are_listed_together() {
    let app = spawn_with(|options| {
        limit(options, "global", 50, "15m");
        limit(options, "api", 30, "1m");
    })
    .await;
    let response = app.get("/api/posts").await;
    assert_eq!(response.header("ratelimit-policy"), Some("\"api\";q=30;w=60, \"global\";q=50;w=900"));
    let state = response.header("ratelimit").unwrap();
    assert!(state.starts_with("\"api\";r=29;t=") && state.contains(", \"global\";r=49;t="), "{state}");
}

#[tokio::test]
async fn custom_groups_match_by_path_prefix_and_method() {
    let app = spawn_with(|options| {
        options.config.rate_limit.insert(
            "writes".into(),
            RateLimitGroup {
                strategy: rampart::config::RateLimitStrategy::TokenBucket,
                limit: 2,
                window: "1m".parse().unwrap(),
                count: CountMode::All,
                paths: vec!["/api/posts".into()],
                methods: vec!["POST".into()],
                on_backend_error: None,
            },
        );
    })
    .await;
    let token = app.token_for(&app.users.user).await;
    let post = || {
        app.send(app.client.post(app.url("/api/posts")).bearer_auth(&token).json(&json!({"title": "t", "body": "b"})))
    };
    assert_eq!(post().await.status, 201);
    let second = post().await;
    assert_eq!(second.status, 201);
    assert!(second.header("ratelimit-policy").unwrap().contains("\"writes\";q=2;w=60"));
    post().await.assert_problem(429);
    assert_eq!(app.get("/api/posts").await.status, 200, "reads are not in the group");
}

#[tokio::test]
async fn a_flood_of_refusals_is_audited_once_per_key_and_window() {
    let app = spawn_with(|options| limit(options, "api", 1, "15m")).await;
    assert_eq!(app.get("/api/posts").await.status, 200);
    for _ in 0..30 {
        app.get("/api/posts").await.assert_problem(429);
    }
    let events: Vec<Value> = app
        .logs
        .contents()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == "rampart::audit" && event["event"] == "rate_limited")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"], "group api");
    let scrape =
        app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap().text().await.unwrap();
    assert!(scrape.contains("rampart_rate_limited_total{group=\"api\"} 30"), "{scrape}");
}

#[tokio::test]
async fn a_thousand_concurrent_requests_against_a_limit_of_a_hundred_admit_exactly_a_hundred() {
    let app = spawn_with(|options| {
        limit(options, "api", 100, "15m");
        // Up to a thousand connections from this one address: above the
        // per-address cap, which is not what this test is about.
        options.config.server.max_connections_per_ip = 2_000;
    })
    .await;
    let requests: Vec<_> = (0..1_000)
        .map(|_| {
            let request = app.client.get(app.url("/api/posts")).send();
            tokio::spawn(async move { request.await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for request in requests {
        match request.await.unwrap().unwrap() {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((admitted, refused), (100, 900));
}
