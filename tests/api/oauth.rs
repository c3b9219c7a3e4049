//! "Sign in with …" against a real OpenID provider: oidc-provider (npm,
//! pinned in tests/oidc/package.json) started on loopback, driven through
//! its login and consent pages by an HTTP client that keeps cookies like a
//! browser. Skipped on a laptop without `npm ci --prefix tests/oidc`,
//! failed under CI=true (`.ci/run` installs it).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use reqwest::{StatusCode, Url, redirect::Policy};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::{
    audit::events,
    browser::{browser_available, run_browser_script},
    helpers::{TestApp, spawn_with},
};
use rampart::config::OAuthProviderConfig;

const CLIENT_ID: &str = "rampart-test";
const CLIENT_SECRET: &str = "rampart-test-client-secret-not-for-production";

/// The provider process; killed when dropped.
struct OidcProvider {
    child: Child,
    issuer: String,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider_script() -> Option<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    if root.join("node_modules/oidc-provider").exists() {
        return Some(root.join("provider.mjs"));
    }
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but tests/oidc/node_modules is missing");
    eprintln!("skipped: needs `npm ci --prefix tests/oidc`");
    None
}

fn start_provider(script: &Path, redirect_uris: &[String]) -> OidcProvider {
    let child = Command::new("node")
        .arg(script)
        .args(redirect_uris)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    // Owned from here on, so a failed assertion still kills it.
    let mut provider = OidcProvider { child, issuer: String::new() };
    let mut reader = BufReader::new(provider.child.stdout.take().unwrap());
    let mut line = String::new();
    while provider.issuer.is_empty() {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the provider exited before printing its issuer");
        if let Some(issuer) = line.trim().strip_prefix("ISSUER ") {
            provider.issuer = issuer.to_owned();
        }
    }
    // Keep reading, so the provider never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    provider
}

/// A Rampart server with two providers on one real OpenID provider:
/// `test` (its real issuer) and `mixup` (a discovery document naming
/// another issuer while pointing at the same endpoints).
struct OAuthWorld {
    app: TestApp,
    _provider: OidcProvider,
}

async fn world() -> Option<OAuthWorld> {
    world_on("127.0.0.1").await
}

/// `world()` with Rampart's callbacks on `host` (a browser that should use
/// passkeys reaches Rampart as `localhost`, where they work).
async fn world_on(host: &str) -> Option<OAuthWorld> {
    let script = provider_script()?;
    // The provider must know Rampart's callback before Rampart knows the
    // provider's issuer: reserve Rampart's port first.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let callback = |name: &str| format!("http://{host}:{port}/auth/oauth/{name}/callback");
    let provider = start_provider(&script, &[callback("test"), callback("mixup"), callback("plain")]);
    let issuer = provider.issuer.clone();
    let app = spawn_with(|options| {
        let config = &mut options.config;
        config.server.bind = format!("127.0.0.1:{port}").parse().unwrap();
        config.oauth.redirect_allowlist = vec!["/account".into(), "/welcome".into()];
        // A protect-mode route, asked about through forward auth: its answer
        // carries the assertion, and with it the session's `amr`.
        config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        config.proxy.upstreams.insert(
            "app".into(),
            rampart::config::UpstreamConfig { url: format!("http://{nowhere}"), ..Default::default() },
        );
        config.proxy.routes.push(rampart::config::RouteConfig {
            id: "mine".into(),
            path: "/mine".into(),
            upstream: "app".into(),
            ..Default::default()
        });
        for (name, issuer) in [("test", issuer.clone()), ("mixup", format!("{issuer}/mixup"))] {
            config.oauth.providers.insert(
                name.into(),
                OAuthProviderConfig {
                    client_id: CLIENT_ID.into(),
                    client_secret: SecretString::from(CLIENT_SECRET),
                    issuer,
                    redirect_url: callback(name),
                    display_name: format!("{name} provider"),
                    ..Default::default()
                },
            );
        }
        // The same provider as a plain OAuth 2.0 one: explicit endpoints,
        // no ID token, the account read from its userinfo endpoint.
        config.oauth.providers.insert(
            "plain".into(),
            OAuthProviderConfig {
                client_id: CLIENT_ID.into(),
                client_secret: SecretString::from(CLIENT_SECRET),
                auth_url: format!("{issuer}/auth"),
                token_url: format!("{issuer}/token"),
                userinfo_url: format!("{issuer}/me"),
                redirect_url: callback("plain"),
                ..Default::default()
            },
        );
    })
    .await;
    Some(OAuthWorld { app, _provider: provider })
}

/// A browser: keeps cookies, follows no redirects by itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").expect("a Location header").to_str().unwrap().to_owned()
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// Starts a sign-in at `provider` and checks the authorization request
/// Rampart sends the browser to; returns its URL.
async fn start_flow(world: &OAuthWorld, browser: &reqwest::Client, provider: &str, redirect_to: Option<&str>) -> Url {
    let query = redirect_to.map(|target| serde_urlencoded::to_string([("redirect_to", target)]).unwrap());
    let path = format!("/auth/oauth/{provider}/start?{}", query.unwrap_or_default());
    let start = browser.get(world.app.url(&path)).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let cookies = set_cookies(&start);
    assert!(
        cookies.iter().any(|c| c.starts_with("rampart_oauth=") && c.contains("HttpOnly") && c.contains("Max-Age=600")),
        "{cookies:?}"
    );
    let authorize = Url::parse(&location(&start)).unwrap();
    let params: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    let param = |name: &str| params.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("state").is_some_and(|s| s.len() >= 16));
    // A nonce for OpenID Connect providers; plain OAuth 2.0 has no ID token to carry it.
    assert_eq!(param("nonce").is_some_and(|n| n.len() >= 16), provider != "plain");
    assert_eq!(param("redirect_uri"), Some(world.app.url(&format!("/auth/oauth/{provider}/callback"))));
    authorize
}

/// Follows the provider's pages from `authorize`: signs in as `login` and
/// gives consent. Returns the callback URL the provider sends the browser to.
async fn drive(world: &OAuthWorld, browser: &reqwest::Client, authorize: Url, login: &str) -> Url {
    let mut next = authorize;
    for _ in 0..10 {
        let response = browser.get(next.clone()).send().await.unwrap();
        if response.status().is_redirection() {
            let target = next.join(&location(&response)).unwrap();
            if target.port() == Some(world.app.address.port()) {
                return target;
            }
            next = target;
            continue;
        }
        let page = response.text().await.unwrap();
        let form = if page.contains("name=\"prompt\" value=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "any password")]
        } else if page.contains("name=\"prompt\" value=\"consent\"") {
            vec![("prompt", "consent")]
        } else {
            panic!("unexpected provider page: {page}");
        };
        let submitted = browser.post(next.clone()).form(&form).send().await.unwrap();
        assert!(submitted.status().is_redirection(), "{}", submitted.status());
        next = next.join(&location(&submitted)).unwrap();
    }
    panic!("the provider never sent the browser back");
}

/// Starts a sign-in, lets `tamper` change the authorization request on its
/// way to the provider, and signs in there as `login`.
async fn sign_in_at_provider(
    world: &OAuthWorld,
    browser: &reqwest::Client,
    provider: &str,
    login: &str,
    tamper: impl FnOnce(Url) -> Url,
) -> Url {
    let authorize = start_flow(world, browser, provider, None).await;
    drive(world, browser, tamper(authorize), login).await
}

/// Follows the callback; returns (status, Location, Set-Cookie values).
async fn finish(browser: &reqwest::Client, callback: Url) -> (StatusCode, String, Vec<String>) {
    let response = browser.get(callback).send().await.unwrap();
    (response.status(), location(&response), set_cookies(&response))
}

fn has_session(cookies: &[String]) -> bool {
    cookies.iter().any(|c| c.starts_with("rampart_session=") && !c.starts_with("rampart_session=;"))
}

async fn profile(world: &OAuthWorld, browser: &reqwest::Client) -> (StatusCode, Value) {
    let response = browser.get(world.app.url("/api/profile")).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts a failed callback: `/login?error=<code>`, no session, and an
/// `oauth_failure` event naming the reason.
async fn assert_refused(world: &OAuthWorld, result: (StatusCode, String, Vec<String>), code: &str) {
    let (status, location, cookies) = result;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("/login?error={code}"));
    assert!(!has_session(&cookies), "no session on failure: {cookies:?}");
    let admin = world.app.token_for(&world.app.users.admin).await;
    let failures = events(&world.app, &admin, "event=oauth_failure&limit=100", 1).await;
    let reason = format!("reason={code}");
    for _ in 0..100 {
        let failures = events(&world.app, &admin, "event=oauth_failure&limit=100", 1).await;
        if failures.iter().any(|e| e["detail"].as_str().is_some_and(|d| d.ends_with(&reason))) {
            let event = failures.iter().find(|e| e["detail"].as_str().unwrap().ends_with(&reason)).unwrap();
            assert_eq!(event["outcome"], "failure");
            assert!(event["route"].as_str().unwrap().starts_with("/auth/oauth/"));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no oauth_failure event with {reason}: {failures:?}");
}

#[tokio::test]
async fn a_new_user_signs_in_with_the_provider_and_gets_a_password_less_account() {
    let Some(world) = world().await else { return };
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "test", "alice", |url| url).await;
    assert!(callback.query_pairs().any(|(key, value)| key == "iss" && value == world._provider.issuer));
    let secrets: Vec<String> = callback
        .query_pairs()
        .filter(|(key, _)| key == "code" || key == "state")
        .map(|(_, v)| v.into_owned())
        .collect();
    let (status, location, cookies) = finish(&browser, callback).await;
    let logs = world.app.logs.contents();
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "the code and state are never logged");
    }
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/account"));
    assert!(has_session(&cookies), "{cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("rampart_oauth=;") && c.contains("Max-Age=0")), "flow cookie cleared");

    let (status, user) = profile(&world, &browser).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((user["email"].as_str(), user["role"].as_str()), (Some("alice@example.org"), Some("user")));
    assert_eq!(user["email_verified"], true, "the provider verified the address");
    let page = browser.get(world.app.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("alice@example.org") && page.contains("Sign out"), "{page}");

    let admin = world.app.token_for(&world.app.users.admin).await;
    let signups = events(&world.app, &admin, "event=oauth_signup", 1).await;
    assert_eq!(signups[0]["user_id"], user["id"]);
    assert_eq!(signups[0]["detail"], "provider=test");

    // No password yet: a password login fails like any wrong password.
    let login =
        world.app.post_json("/auth/login", &json!({"email": "alice@example.org", "password": "x".repeat(20)})).await;
    login.assert_problem(401);
    // The session sets a first password (no current one to give), then it works.
    let csrf = cookies.iter().find_map(|c| c.strip_prefix("rampart_csrf=")).unwrap().split(';').next().unwrap();
    let set = browser
        .put(world.app.url("/api/profile/password"))
        .header("x-csrf-token", csrf)
        .json(&json!({"new_password": "a long enough first password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    let login = world
        .app
        .post_json("/auth/login", &json!({"email": "alice@example.org", "password": "a long enough first password"}))
        .await;
    assert_eq!(login.status, 200, "{}", login.body);

    // Signing in again finds the same user by (provider, subject).
    let again = self::browser();
    let callback = sign_in_at_provider(&world, &again, "test", "alice", |url| url).await;
    let (status, _, cookies) = finish(&again, callback).await;
    assert!(status == StatusCode::SEE_OTHER && has_session(&cookies));
    assert_eq!(profile(&world, &again).await.1["id"], user["id"]);
    let logins = events(&world.app, &admin, "event=oauth_login", 1).await;
    assert_eq!(logins[0]["user_id"], user["id"]);
}

#[tokio::test]
async fn a_verified_email_links_the_existing_account_and_an_unverified_one_does_not() {
    let Some(world) = world().await else { return };
    let seeded = world.app.users.user.clone();

    let mallory = browser();
    let callback = sign_in_at_provider(&world, &mallory, "test", "unverified-user", |url| url).await;
    assert_refused(&world, finish(&mallory, callback).await, "email_not_verified").await;
    assert_eq!(profile(&world, &mallory).await.0, StatusCode::UNAUTHORIZED);

    let uma = browser();
    let callback = sign_in_at_provider(&world, &uma, "test", "verified-user", |url| url).await;
    let (status, location, cookies) = finish(&uma, callback).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/account"));
    assert!(has_session(&cookies));
    // The seeded account is made as the CLI makes accounts: its email is
    // proven, so the provider's verified address links to it.
    let linked = profile(&world, &uma).await.1;
    assert_eq!(
        (linked["id"].as_str(), linked["email_verified"].as_bool()),
        (Some(seeded.id.to_string().as_str()), Some(true))
    );
    let admin = world.app.token_for(&world.app.users.admin).await;
    let links = events(&world.app, &admin, "event=oauth_link", 1).await;
    assert_eq!(links[0]["user_id"], seeded.id.to_string());

    // An unverified address nobody has makes an account of its own.
    let fresh = browser();
    let callback = sign_in_at_provider(&world, &fresh, "test", "unverified-new", |url| url).await;
    let (status, _, cookies) = finish(&fresh, callback).await;
    assert!(status == StatusCode::SEE_OTHER && has_session(&cookies));
    let made = profile(&world, &fresh).await.1;
    assert_eq!(
        (made["email"].as_str(), made["email_verified"].as_bool()),
        (Some("fresh-unverified@example.org"), Some(false))
    );
}

#[tokio::test]
async fn a_wrong_or_missing_state_ends_without_a_session() {
    let Some(world) = world().await else { return };
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "test", "bob", |url| url).await;
    let mut wrong = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .into_owned()
        .map(|(key, value)| if key == "state" { (key, "forged-state-value".into()) } else { (key, value) })
        .collect();
    wrong.query_pairs_mut().clear().extend_pairs(&pairs);
    assert_refused(&world, finish(&browser, wrong).await, "invalid_state").await;
    // The failed attempt spent the flow and cleared its cookie: the genuine
    // callback is refused too.
    assert_refused(&world, finish(&browser, callback).await, "flow_missing").await;

    let callback = sign_in_at_provider(&world, &browser, "test", "bob", |url| url).await;
    let mut missing = callback.clone();
    let pairs: Vec<(String, String)> = callback.query_pairs().into_owned().filter(|(key, _)| key != "state").collect();
    missing.query_pairs_mut().clear().extend_pairs(&pairs);
    assert_refused(&world, finish(&browser, missing).await, "invalid_state").await;
}

#[tokio::test]
async fn a_replayed_code_and_a_callback_without_the_flow_cookie_are_refused() {
    let Some(world) = world().await else { return };
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "test", "carol", |url| url).await;

    // Another browser (no flow cookie) presenting the callback: refused,
    // and the flow stays usable for its own browser.
    let stranger = self::browser();
    assert_refused(&world, finish(&stranger, callback.clone()).await, "flow_missing").await;

    let (status, _, cookies) = finish(&browser, callback.clone()).await;
    assert!(status == StatusCode::SEE_OTHER && has_session(&cookies), "the real browser signs in");
    // The same callback again: the flow cookie is gone.
    assert_refused(&world, finish(&browser, callback.clone()).await, "flow_missing").await;

    // The used code with a fresh flow's state: the provider refuses it.
    let other = self::browser();
    let fresh = sign_in_at_provider(&world, &other, "test", "carol", |url| url).await;
    let new_state = fresh.query_pairs().find(|(key, _)| key == "state").unwrap().1.into_owned();
    let mut replay = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .into_owned()
        .map(|(key, value)| if key == "state" { (key, new_state.clone()) } else { (key, value) })
        .collect();
    replay.query_pairs_mut().clear().extend_pairs(&pairs);
    assert_refused(&world, finish(&other, replay).await, "code_rejected").await;
}

#[tokio::test]
async fn redirect_to_must_be_on_the_allow_list() {
    let Some(world) = world().await else { return };
    let browser = browser();
    for target in ["https://evil.example/", "//evil.example/account", "/account/../admin", "/welcome?x=1"] {
        let url = format!("/auth/oauth/test/start?{}", serde_urlencoded::to_string([("redirect_to", target)]).unwrap());
        let response = world.app.get(&url).await;
        let problem = response.assert_problem(400);
        assert!(problem["detail"].as_str().unwrap().contains("allow-list"), "{problem}");
        assert!(response.header("location").is_none());
    }
    let admin = world.app.token_for(&world.app.users.admin).await;
    let refused = events(&world.app, &admin, "event=oauth_failure", 4).await;
    assert!(refused.iter().all(|e| e["detail"] == "provider=test reason=redirect_not_allowed"), "{refused:?}");
    assert_eq!(world.app.get("/auth/oauth/nope/start").await.status, 404);

    let authorize = start_flow(&world, &browser, "test", Some("/welcome")).await;
    let callback = drive(&world, &browser, authorize, "dave").await;
    let (status, location, cookies) = finish(&browser, callback).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/welcome"));
    assert!(has_session(&cookies));
}

#[tokio::test]
async fn an_id_token_with_a_wrong_nonce_or_issuer_is_refused() {
    let Some(world) = world().await else { return };
    // The browser swaps the nonce on the way to the provider: the provider
    // signs an ID token for another nonce.
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "test", "erin", |url| {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .map(|(key, value)| if key == "nonce" { (key, "attacker-chosen-nonce-value".into()) } else { (key, value) })
            .collect();
        let mut tampered = url.clone();
        tampered.query_pairs_mut().clear().extend_pairs(&pairs);
        tampered
    })
    .await;
    assert_refused(&world, finish(&browser, callback).await, "invalid_id_token").await;

    // Mix-up: the provider configured as `mixup` claims another issuer; the
    // response's `iss` gives it away...
    let browser = self::browser();
    let callback = sign_in_at_provider(&world, &browser, "mixup", "erin", |url| url).await;
    assert_refused(&world, finish(&browser, callback).await, "issuer_mismatch").await;
    // ...and without `iss`, the ID token's issuer does.
    let browser = self::browser();
    let callback = sign_in_at_provider(&world, &browser, "mixup", "erin", |url| url).await;
    let mut stripped = callback.clone();
    let pairs: Vec<(String, String)> = callback.query_pairs().into_owned().filter(|(key, _)| key != "iss").collect();
    stripped.query_pairs_mut().clear().extend_pairs(&pairs);
    assert_refused(&world, finish(&browser, stripped).await, "invalid_id_token").await;
}

#[tokio::test]
async fn the_login_page_offers_each_provider_and_explains_errors() {
    let Some(world) = world().await else { return };
    let page = world.app.get("/login?error=email_not_verified").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(page.body.contains("href=\"/auth/oauth/test/start\"") && page.body.contains("Sign in with test provider"));
    assert!(page.body.contains("not verified"), "the error is explained");
    let hostile = world.app.get("/login?error=%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert!(!hostile.body.contains("<script>alert"), "codes are never echoed");
    assert!(!page.body.contains("<script>") && !page.body.contains("style="), "no inline code");
    // Not signed in: /account sends the browser to /login.
    let account = world.app.get("/account").await;
    assert_eq!((account.status, account.header("location")), (303, Some("/login")));
}

/// The browser check: Debian's Chromium (playwright-core from
/// tests/browser) signs in on `/login` with the provider and with a
/// password, and lands on `/account` both times. Screenshots go to
/// `target/login-*.png`.
#[tokio::test]
async fn a_person_signs_in_on_the_login_page_with_the_provider_and_with_a_password() {
    if !browser_available() {
        return;
    }
    let Some(world) = world().await else { return };
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let user = world.app.users.other.clone();
    let args =
        [world.app.url(""), "browser-person".into(), "browser-person@example.org".into(), user.email, user.password];
    let mut args = args.to_vec();
    args.push(target.join("login").display().to_string());
    run_browser_script("oauth.mjs", args).await;
    for name in ["login-oauth.png", "login-password.png"] {
        assert!(target.join(name).exists(), "{name}");
    }
}

#[tokio::test]
async fn a_plain_oauth2_provider_signs_in_through_its_userinfo_endpoint() {
    let Some(world) = world().await else { return };
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "plain", "olga", |url| url).await;
    let (status, location, cookies) = finish(&browser, callback).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/account"), "{cookies:?}");
    assert!(has_session(&cookies));
    assert_eq!(profile(&world, &browser).await.1["email"], "olga@example.org");
    // At another provider (`test`, OIDC) the same person is another
    // (provider, subject); its verified email links it to the same account.
    let again = self::browser();
    let callback = sign_in_at_provider(&world, &again, "test", "olga", |url| url).await;
    let (status, _, cookies) = finish(&again, callback).await;
    assert!(status == StatusCode::SEE_OTHER && has_session(&cookies));
    assert_eq!(profile(&world, &again).await.1["id"], profile(&world, &browser).await.1["id"]);
}

/// A password account made by `POST /auth/signup`: its email is not proven.
async fn sign_up(world: &OAuthWorld, email: &str, password: &str) -> Value {
    let signup =
        world.app.post_json("/auth/signup", &json!({"email": email, "password": password, "name": "Sign Up"})).await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    let user = signup.json();
    assert_eq!(user["email_verified"], false, "a sign-up has not proven its email: {user}");
    user
}

/// Starts a link (`start?link=true`) in `browser`, with `token` as a bearer
/// when given (else the browser's session cookie), and signs in at the
/// provider as `login`. Returns the callback URL.
async fn link_at_provider(
    world: &OAuthWorld,
    browser: &reqwest::Client,
    provider: &str,
    login: &str,
    token: Option<&str>,
) -> Url {
    let mut start = browser.get(world.app.url(&format!("/auth/oauth/{provider}/start?link=true")));
    if let Some(token) = token {
        start = start.bearer_auth(token);
    }
    let start = start.send().await.unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let authorize = Url::parse(&location(&start)).unwrap();
    drive(world, browser, authorize, login).await
}

/// The pre-account hijacking (Sudhodanan & Paverd, 2022): someone
/// signs up with the victim's address first; the victim's later provider
/// sign-in, whose provider verified that address, must not land in (or be
/// linked to) the account they made, which they could still enter with
/// their password.
#[tokio::test]
async fn a_sign_up_with_someone_elses_email_does_not_capture_their_provider_sign_in() {
    let Some(world) = world().await else { return };
    let attacker_password = "attacker chosen passphrase";
    let planted = sign_up(&world, "victim@example.org", attacker_password).await;

    // The victim signs in at the provider, which says victim@example.org
    // is verified.
    let victim = browser();
    let callback = sign_in_at_provider(&world, &victim, "test", "victim", |url| url).await;
    assert_refused(&world, finish(&victim, callback).await, "account_exists").await;
    assert_eq!(profile(&world, &victim).await.0, StatusCode::UNAUTHORIZED, "no session");

    // Nothing was linked: the same provider account is refused again, and
    // no link event names the planted account.
    let again = browser();
    let callback = sign_in_at_provider(&world, &again, "test", "victim", |url| url).await;
    assert_refused(&world, finish(&again, callback).await, "account_exists").await;
    let admin = world.app.token_for(&world.app.users.admin).await;
    let events_of_planted =
        events(&world.app, &admin, &format!("user_id={}", planted["id"].as_str().unwrap()), 1).await;
    assert!(
        events_of_planted.iter().all(|e| !e["event"].as_str().unwrap().starts_with("oauth_")),
        "{events_of_planted:?}"
    );

    // The password account is as it was.
    let login = world.app.login("victim@example.org", attacker_password).await;
    assert_eq!(login["user"], planted, "unchanged");
    let token = login["access_token"].as_str().unwrap();
    let own = world.app.get_as("/api/profile", token).await.json();
    assert_eq!((own["id"].clone(), own["email_verified"].clone()), (planted["id"].clone(), json!(false)));

    // Admin listings show who has proven their address.
    let users = world.app.get_as("/api/admin/users?limit=100", &admin).await.json();
    let verified = |email: &str| {
        users["items"].as_array().unwrap().iter().find(|u| u["email"] == email).unwrap()["email_verified"].clone()
    };
    assert_eq!((verified("victim@example.org"), verified("admin@example.com")), (json!(false), json!(true)));

    // The login page explains what to do.
    let page = world.app.get("/login?error=account_exists").await;
    assert!(page.body.contains("link the provider"), "{}", page.body);
}

/// `start?link=true` while signed in (by session cookie or by bearer token)
/// links the provider account to the caller (`provider_linked`, no new
/// session); from then on that provider's sign-in lands in that account.
#[tokio::test]
async fn a_signed_in_person_links_a_provider_and_then_signs_in_with_it() {
    let Some(world) = world().await else { return };
    let password = "a long passphrase of their own";
    let owner = sign_up(&world, "owner@example.org", password).await;
    let owner_id = owner["id"].as_str().unwrap().to_owned();

    // The owner's provider sign-in is refused (their email is not proven)...
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "test", "owner", |url| url).await;
    assert_refused(&world, finish(&browser, callback).await, "account_exists").await;
    // ...so they sign in with the password and link the provider.
    let session = browser
        .post(world.app.url("/auth/session"))
        .json(&json!({"email": "owner@example.org", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::OK);
    let page = browser.get(world.app.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("href=\"/auth/oauth/test/start?link=true\""), "{page}");
    let callback = link_at_provider(&world, &browser, "test", "owner", None).await;
    let (status, location, cookies) = finish(&browser, callback).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/account"));
    assert!(!has_session(&cookies), "a link opens no session: {cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("rampart_oauth=;")), "flow cookie cleared");
    assert_eq!(profile(&world, &browser).await.1["id"], owner_id.as_str(), "still signed in as before");
    let admin = world.app.token_for(&world.app.users.admin).await;
    let linked = events(&world.app, &admin, "event=provider_linked", 1).await;
    assert_eq!(
        (linked[0]["user_id"].as_str(), linked[0]["detail"].as_str()),
        (Some(owner_id.as_str()), Some("provider=test"))
    );

    // A provider sign-in now lands in the owner's account.
    let elsewhere = self::browser();
    let callback = sign_in_at_provider(&world, &elsewhere, "test", "owner", |url| url).await;
    let (status, location, cookies) = finish(&elsewhere, callback).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/account"));
    assert!(has_session(&cookies));
    assert_eq!(profile(&world, &elsewhere).await.1["id"], owner_id.as_str());

    // With a bearer token: another user links another provider account.
    let other = world.app.users.other.clone();
    let token = world.app.token_for(&other).await;
    let api_client = self::browser();
    let callback = link_at_provider(&world, &api_client, "test", "second-person", Some(&token)).await;
    let (status, location, cookies) = finish(&api_client, callback).await;
    assert_eq!((status, location.as_str(), has_session(&cookies)), (StatusCode::SEE_OTHER, "/account", false));
    let fresh = self::browser();
    let callback = sign_in_at_provider(&world, &fresh, "test", "second-person", |url| url).await;
    finish(&fresh, callback).await;
    assert_eq!(profile(&world, &fresh).await.1["id"], other.id.to_string());

    // Linking the same provider account again changes nothing.
    let callback = link_at_provider(&world, &browser, "test", "owner", None).await;
    let (status, location, _) = finish(&browser, callback).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/account"));
    // A provider account linked to someone else cannot be linked again.
    let owner_token = world.app.login("owner@example.org", password).await["access_token"].as_str().unwrap().to_owned();
    let thief = self::browser();
    let callback = link_at_provider(&world, &thief, "test", "second-person", Some(&owner_token)).await;
    assert_refused(&world, finish(&thief, callback).await, "already_linked").await;
    let linked = events(&world.app, &admin, "event=provider_linked", 2).await;
    assert_eq!(linked.len(), 2, "one event per new link: {linked:?}");
}

/// The pre-account hijacking case, resolved by Rampart's own proof: the
/// sign-up whose address was never verified is not linked; once its owner
/// follows the mailed link, the provider sign-in lands in it, and a notice
/// of the new way in is mailed.
#[tokio::test]
async fn a_sign_up_is_linked_by_a_provider_only_after_its_address_is_verified() {
    let Some(world) = world().await else { return };
    let password = "a long passphrase of their own";
    let user = sign_up(&world, "prover@example.org", password).await;
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "test", "prover", |url| url).await;
    assert_refused(&world, finish(&browser, callback).await, "account_exists").await;

    let outbox = crate::email::outbox(&world.app);
    let mails = crate::email::wait_for_mails(&outbox, 1).await;
    let token = crate::email::mail_to(&mails, "prover@example.org", "Confirm your email").token("/verify-email");
    let verified = world.app.post_json("/auth/email/verify", &json!({ "token": token })).await;
    assert_eq!(verified.status, 200, "{}", verified.body);

    let callback = sign_in_at_provider(&world, &browser, "test", "prover", |url| url).await;
    let (status, _, cookies) = finish(&browser, callback).await;
    assert!(status == StatusCode::SEE_OTHER && has_session(&cookies), "{status} {cookies:?}");
    assert_eq!(profile(&world, &browser).await.1["id"], user["id"]);
    let mails = crate::email::wait_for_mails(&outbox, 2).await;
    let notice = crate::email::mail_to(&mails, "prover@example.org", "sign-in method was linked");
    assert!(notice.text().contains("test"), "names the provider");
}

/// A "trojan identifier": someone signs up with another person's address
/// and links their own provider account to it. When the address's owner
/// takes the account back with a reset link, that link is removed with
/// every other credential.
#[tokio::test]
async fn a_reset_that_proves_the_address_removes_provider_links_made_before() {
    let Some(world) = world().await else { return };
    let planted = sign_up(&world, "target@example.org", "attacker chosen passphrase").await;
    let attacker = world.app.login("target@example.org", "attacker chosen passphrase").await;
    let token = attacker["access_token"].as_str().unwrap();
    let attacker_browser = browser();
    let callback = link_at_provider(&world, &attacker_browser, "test", "mallory", Some(token)).await;
    assert_eq!(finish(&attacker_browser, callback).await.0, StatusCode::SEE_OTHER);

    // The owner of the address resets the password from the mailed link.
    let outbox = crate::email::outbox(&world.app);
    assert_eq!(world.app.post_json("/auth/password/forgot", &json!({"email": "target@example.org"})).await.status, 202);
    let mails = crate::email::wait_for_mails(&outbox, 3).await; // verify, link notice, reset
    let link = crate::email::mail_to(&mails, "target@example.org", "Reset your password").token("/reset-password");
    let reset = world
        .app
        .post_json("/auth/password/reset", &json!({"token": link, "password": "the owner's own passphrase"}))
        .await;
    assert_eq!(reset.status, 204, "{}", reset.body);

    // The attacker's provider sign-in no longer lands in the account.
    let again = self::browser();
    let callback = sign_in_at_provider(&world, &again, "test", "mallory", |url| url).await;
    finish(&again, callback).await;
    assert_ne!(profile(&world, &again).await.1["id"], planted["id"]);
    let admin = world.app.token_for(&world.app.users.admin).await;
    let resets = events(&world.app, &admin, "event=password_reset", 1).await;
    assert_eq!(resets[0]["detail"], "unlinked_providers=1");
}

/// `start?link=true` needs a signed-in caller: a guest or a bad token gets a
/// 401 problem, no flow cookie and no redirect. Needs no real provider: the
/// refusal comes before the provider is asked anything.
#[tokio::test]
async fn linking_a_provider_needs_a_signed_in_caller() {
    let app = spawn_with(|options| {
        options.config.oauth.providers.insert(
            "plain".into(),
            OAuthProviderConfig {
                client_id: CLIENT_ID.into(),
                client_secret: SecretString::from(CLIENT_SECRET),
                auth_url: "https://provider.invalid/auth".into(),
                token_url: "https://provider.invalid/token".into(),
                userinfo_url: "https://provider.invalid/me".into(),
                redirect_url: "http://127.0.0.1:1/auth/oauth/plain/callback".into(),
                ..Default::default()
            },
        );
    })
    .await;
    let guest = app.get("/auth/oauth/plain/start?link=true").await;
    guest.assert_problem(401);
    assert!(guest.header("location").is_none() && guest.header("set-cookie").is_none(), "{guest:?}");
    assert!(guest.header("www-authenticate").is_some());
    let forged = app.send(app.client.get(app.url("/auth/oauth/plain/start?link=true")).bearer_auth("not.a.jwt")).await;
    forged.assert_problem(401);
    assert!(forged.header("set-cookie").is_none());
    app.get("/auth/oauth/plain/start?link=maybe").await.assert_problem(400);

    // A bad token does not stop a plain sign-in, which reads no credentials.
    let sign_in = app.send(app.client.get(app.url("/auth/oauth/plain/start")).bearer_auth("not.a.jwt")).await;
    assert_eq!(sign_in.status, 302, "{}", sign_in.body);
    // Signed in, the link starts.
    let token = app.token_for(&app.users.user).await;
    let signed_in = app.send(app.client.get(app.url("/auth/oauth/plain/start?link=true")).bearer_auth(&token)).await;
    assert_eq!(signed_in.status, 302, "{}", signed_in.body);
    assert!(signed_in.header("location").unwrap().starts_with("https://provider.invalid/auth?"));
    assert!(signed_in.header("set-cookie").unwrap().starts_with("rampart_oauth="));
    // An API key never adds a way to sign in as its owner.
    let (_, key) = app.api_key(&token, &["posts:read", "profile:read", "profile:write"]).await;
    let by_key = app.send(app.client.get(app.url("/auth/oauth/plain/start?link=true")).bearer_auth(&key)).await;
    assert_eq!(by_key.assert_problem(403)["code"], "key_not_allowed");
    assert!(by_key.header("set-cookie").is_none() && by_key.header("location").is_none());
    // Nor does it open the account page, which is for people.
    let page = app.send(app.client.get(app.url("/account")).bearer_auth(&key)).await;
    assert_eq!((page.status, page.header("location")), (303, Some("/login")));

    // With a session cookie, only a navigation from this site starts a link.
    let user = &app.users.user;
    let session = app.post_json("/auth/session", &json!({"email": user.email, "password": user.password})).await;
    assert_eq!(session.status, 200, "{}", session.body);
    let cookie = session.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let navigate = |site: Option<&str>| {
        let request = app.client.get(app.url("/auth/oauth/plain/start?link=true")).header("cookie", &cookie);
        match site {
            Some(site) => request.header("sec-fetch-site", site),
            None => request,
        }
    };
    for site in ["cross-site", "same-site"] {
        let refused = app.send(navigate(Some(site))).await;
        refused.assert_problem(403);
        assert!(refused.header("set-cookie").is_none(), "{site}");
    }
    for site in [Some("same-origin"), Some("none"), None] {
        assert_eq!(app.send(navigate(site)).await.status, 302, "{site:?}");
    }
}

/// The `amr` of the assertion forward auth gives `browser` for `/mine`.
async fn forwarded_amr(world: &OAuthWorld, browser: &reqwest::Client) -> Value {
    assertion_amr(browser.get(world.app.url("/auth/forward")).header("X-Original-URI", "/mine")).await
}

/// The `amr` of the assertion in forward auth's answer to `request`.
async fn assertion_amr(request: reqwest::RequestBuilder) -> Value {
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let assertion = answer.headers()["x-rampart-assertion"].to_str().unwrap().to_owned();
    let payload = assertion.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    claims["amr"].clone()
}

#[tokio::test]
async fn a_provider_session_is_reported_as_oauth_and_a_password_session_as_pwd() {
    let Some(world) = world().await else { return };
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "test", "amr-person", |url| url).await;
    let (status, _, cookies) = finish(&browser, callback).await;
    assert!(status == StatusCode::SEE_OTHER && has_session(&cookies));
    assert_eq!(forwarded_amr(&world, &browser).await, json!(["oauth"]));

    let by_password = self::browser();
    let user = &world.app.users.user;
    let session = by_password
        .post(world.app.url("/auth/session"))
        .json(&json!({"email": user.email, "password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::OK);
    assert_eq!(forwarded_amr(&world, &by_password).await, json!(["pwd"]));
}

/// A provider sign-in of a user with TOTP on ends at `/login?mfa=`, with
/// no session; the second step opens the session, whose `amr` is then
/// `oauth`, `otp`, `mfa`.
#[tokio::test]
async fn a_provider_sign_in_of_a_user_with_a_second_factor_ends_at_the_second_step() {
    let Some(world) = world().await else { return };
    let browser = browser();
    let callback = sign_in_at_provider(&world, &browser, "test", "mfa-person", |url| url).await;
    let (status, _, cookies) = finish(&browser, callback).await;
    assert!(status == StatusCode::SEE_OTHER && has_session(&cookies));
    let csrf = cookies
        .iter()
        .find_map(|cookie| cookie.strip_prefix("rampart_csrf="))
        .map(|rest| rest.split(';').next().unwrap().to_owned())
        .expect("the CSRF cookie");
    // TOTP turned on with that session.
    let started =
        browser.post(world.app.url("/api/profile/mfa/totp")).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::CREATED);
    let secret = started.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    let secret = rampart::auth::totp::secret_from_base32(&secret).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let confirmed = browser
        .post(world.app.url("/api/profile/mfa/totp/confirm"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"code": rampart::auth::totp::code_at(&secret, now)}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    let recovery = confirmed.json::<Value>().await.unwrap()["recovery_codes"][0].as_str().unwrap().to_owned();

    // The next provider sign-in stops at the second step.
    let again = self::browser();
    let callback = sign_in_at_provider(&world, &again, "test", "mfa-person", |url| url).await;
    let (status, location, cookies) = finish(&again, callback).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let mfa_token = location.strip_prefix("/login?mfa=").expect("to the second step").to_owned();
    assert!(mfa_token.starts_with("mfa_") && !has_session(&cookies), "{location} {cookies:?}");
    assert_eq!(profile(&world, &again).await.0, StatusCode::UNAUTHORIZED);
    // (The confirmation spent this step's code: a recovery code.)
    let done = again
        .post(world.app.url("/auth/mfa"))
        .json(&json!({"mfa_token": mfa_token, "recovery_code": recovery}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(has_session(&set_cookies(&done)));
    assert_eq!(profile(&world, &again).await.0, StatusCode::OK);
    assert_eq!(forwarded_amr(&world, &again).await, json!(["oauth", "otp", "mfa"]));
}

/// A provider sign-in of a user with a passkey, in Chromium with its
/// virtual authenticator (tests/browser/oauth-passkey.mjs): `/login?mfa=`
/// offers the passkey (learnt from `POST /auth/mfa/options`), and the
/// session it opens reports `oauth`, `hwk`, `mfa`.
#[tokio::test]
async fn a_provider_sign_in_of_a_user_with_a_passkey_ends_with_the_passkey_on_the_login_page() {
    if !browser_available() {
        return;
    }
    let Some(world) = world_on("localhost").await else { return };
    let base = world.app.url("").replace("127.0.0.1", "localhost");
    let args =
        vec![base.trim_end_matches('/').to_owned(), "passkey-person".into(), "passkey-person@example.org".into()];
    let output = crate::browser::browser_output("oauth-passkey.mjs", args).await;
    let session = output.lines().find_map(|line| line.strip_prefix("SESSION ")).expect("the session cookie");
    let request = reqwest::Client::new()
        .get(world.app.url("/auth/forward"))
        .header("X-Original-URI", "/mine")
        .header("cookie", format!("rampart_session={session}"));
    assert_eq!(assertion_amr(request).await, json!(["oauth", "hwk", "mfa"]));
}
