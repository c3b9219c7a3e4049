//! The pages for people beyond `/admin`: the `/` welcome page, where
//! `/login` sends a person after signing in (`?next=`), and the API keys
//! card of `/account` (its browser test is in `browser.rs`).

use std::{collections::BTreeMap, process::Command};

use rampart::config::{HumanDuration, RouteAuth, RouteConfig, UpstreamConfig};

use crate::helpers::{spawn_app, spawn_with};

#[tokio::test]
async fn the_root_points_a_newcomer_to_login_and_docs() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.body.contains("href=\"/login\"") && page.body.contains("href=\"/docs/\""), "{}", page.body);
    assert!(!page.body.contains("<script"), "no script on the welcome page");
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    // The rest of the site is still a problem+json 404.
    app.get("/nothing-here").await.assert_problem(404);
    assert_eq!(app.request(reqwest::Method::POST, "/").await.status, 405);
}

/// `tests/browser/login-next.mjs` runs the login page's script under Node
/// (no browser needed): `?next=` takes any path on this site, never
/// `//host`, `/\host`, another origin or a control character.
#[test]
fn login_sends_a_person_to_next_only_on_this_site() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/login-next.mjs");
    let output = match Command::new("node").arg(script).output() {
        Ok(output) => output,
        Err(error) => {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but node is missing: {error}");
            eprintln!("skipped: needs node ({error})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("NEXT_OK"), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
}

/// The card offers every scope the API takes: the fixed ones, and one per
/// protect-mode route; it says how long a key may live as configured.
#[tokio::test]
async fn the_account_page_offers_each_scope_and_the_configured_key_lifetime() {
    let app = spawn_with(|options| {
        let config = &mut options.config;
        config.api_keys.max_lifetime = HumanDuration::days(30);
        config.proxy.upstreams = BTreeMap::from([(
            "app".to_owned(),
            UpstreamConfig { url: "http://127.0.0.1:9".into(), ..Default::default() },
        )]);
        config.proxy.routes.push(RouteConfig {
            id: "orders".into(),
            path: "/orders".into(),
            upstream: "app".into(),
            auth: RouteAuth::Required,
            ..RouteConfig::default()
        });
    })
    .await;
    let user = app.token_for(&app.users.user).await;
    let page = app.get_as("/account", &user).await;
    assert_eq!(page.status, 200);
    let offered: Vec<&str> =
        page.body.split("name=\"scopes\" value=\"").skip(1).map(|rest| &rest[..rest.find('"').unwrap()]).collect();
    let fixed =
        ["posts:read", "posts:write", "posts:delete", "profile:read", "profile:write", "admin:read", "admin:write"];
    let expected: Vec<&str> = fixed.into_iter().chain(["routes:*", "routes:orders"]).collect();
    assert_eq!(offered, expected);
    assert!(page.body.contains("at most 30 days ahead"), "{}", page.body);
    // What the page offers, the API takes.
    let created = app
        .send(
            app.client
                .post(app.url("/api/profile/api-keys"))
                .bearer_auth(&user)
                .json(&serde_json::json!({"name": "every scope", "scopes": offered})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

/// `/login` links "Forgot password?" to `/reset-password`, which asks for
/// the address without a token and for the new password with one; the
/// `/verify-email` page posts its token. Neither page renders the token.
#[tokio::test]
async fn the_email_pages_post_their_forms_to_the_api_and_never_render_the_token() {
    let app = spawn_app().await;
    let login = app.get("/login").await;
    assert!(login.body.contains("<a id=\"forgot-password\" href=\"/reset-password\">Forgot password?</a>"));

    let ask = app.get("/reset-password").await;
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("action=\"/auth/password/forgot\"") && !ask.body.contains("reset-form"), "{}", ask.body);
    let token = "pr_<script>alert(1)</script>";
    let choose = app.get(&format!("/reset-password?token={}", urlencoding(token))).await;
    assert!(
        choose.body.contains("action=\"/auth/password/reset\"")
            && choose.body.contains("autocomplete=\"new-password\"")
    );
    assert!(!choose.body.contains("alert(1)"), "the token is the script's to read");
    assert!(choose.header("content-security-policy").unwrap().contains("default-src 'none'"));
    assert_eq!(choose.header("cache-control"), Some("no-store"));
    assert_eq!(choose.header("referrer-policy"), Some("no-referrer"), "the token never leaves in a Referer");

    let verify = app.get("/verify-email?token=ev_abc").await;
    assert!(verify.body.contains("action=\"/auth/email/verify\"") && verify.body.contains("/pages/email.js"));
    let bare = app.get("/verify-email").await;
    assert!(!bare.body.contains("verify-form"), "without a token there is nothing to post");
    let script = app.get("/pages/email.js").await;
    assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(script.body.contains("/auth/password/reset") && script.body.contains("/auth/email/verify"));
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
