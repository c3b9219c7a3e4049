//! The `/admin` page, `/docs` and the `/account` page's API keys in a real
//! browser: Debian's Chromium driven by playwright-core (`tests/browser/`).
//! Skipped on a laptop without them, failed under CI=true (`.ci/run`
//! installs both). `oauth.rs` uses the same helpers for `/login`.

use std::{path::Path, process::Command};

use serde_json::json;

use crate::helpers::spawn_app;

/// Whether Chromium and playwright-core are installed; under CI=true their
/// absence fails the test instead.
pub fn browser_available() -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if root.join("tests/browser/node_modules/playwright-core").exists() && Path::new(&chromium).exists() {
        return true;
    }
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but Chromium or playwright-core is missing");
    eprintln!("skipped: needs {chromium} and `npm ci --prefix tests/browser`");
    false
}

/// Runs `tests/browser/<script>` with `args` and asserts it printed
/// BROWSER_OK. Screenshots are written under `target/`.
pub async fn run_browser_script(script: &str, args: Vec<String>) {
    browser_output(script, args).await;
}

/// `run_browser_script`, returning what the script printed.
pub async fn browser_output(script: &str, args: Vec<String>) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("target")).unwrap();
    let path = root.join("tests/browser").join(script);
    let output =
        tokio::task::spawn_blocking(move || Command::new("node").arg(path).args(args).output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("BROWSER_OK"), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout.into_owned()
}

#[tokio::test]
async fn an_admin_sees_charts_and_blocks_and_lifts_one_in_the_browser() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;
    // Some traffic for the charts, including a denial.
    app.get("/api/admin/users").await;
    let block = app
        .send(
            app.client
                .post(app.url("/api/admin/blocks"))
                .bearer_auth(&admin)
                .json(&json!({"ip": "203.0.113.50", "reason": "browser test"})),
        )
        .await;
    assert_eq!(block.status, 201, "{}", block.body);

    // Admins only: a guest is sent to /login, a signed-in non-admin refused.
    let guest = app.get("/admin").await;
    assert_eq!((guest.status, guest.header("location")), (303, Some("/login?next=%2Fadmin")));
    let user = app.token_for(&app.users.user).await;
    app.get_as("/admin", &user).await.assert_problem(403);
    let page = app.get_as("/admin", &admin).await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(!page.body.contains("<script>") && !page.body.contains("cdn"), "no inline script, no CDN");

    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/admin-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let args = [app.url(""), "admin@example.com".into(), crate::helpers::SEED_PASSWORD.into(), "203.0.113.50".into()];
    let mut args = args.to_vec();
    args.push(screenshot.display().to_string());
    run_browser_script("admin.mjs", args).await;
    assert!(screenshot.exists());
    let blocks = app.get_as("/api/admin/blocks", &admin).await.json();
    assert!(blocks["items"].as_array().unwrap().is_empty(), "the click lifted the block");
}

#[tokio::test]
async fn the_docs_page_shows_every_operation_under_its_csp_in_the_browser() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let document = app.get("/openapi.json").await.json();
    let operations: usize =
        document["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/docs-page.png");
    let _ = std::fs::remove_file(&screenshot);
    run_browser_script("docs.mjs", vec![app.url(""), operations.to_string(), screenshot.display().to_string()]).await;
    assert!(screenshot.exists());
}

#[tokio::test]
async fn a_user_creates_copies_uses_and_revokes_an_api_key_on_the_account_page_in_the_browser() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    // The card is the page's own markup: the page carries no key, no inline
    // script, and the strict CSP.
    let user = app.token_for(&app.users.user).await;
    let page = app.get_as("/account", &user).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"api-keys\"") && page.body.contains("value=\"posts:read\""), "{}", page.body);
    assert!(!page.body.contains("value=\"rk_"), "no key in the page");
    assert!(!page.body.contains("<script>"), "no inline script");
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");

    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/account-keys.png");
    let _ = std::fs::remove_file(&screenshot);
    let args = vec![
        app.url(""),
        app.users.user.email.clone(),
        crate::helpers::SEED_PASSWORD.into(),
        screenshot.display().to_string(),
    ];
    run_browser_script("account-keys.mjs", args).await;
    assert!(screenshot.exists());
    // The revoked key is gone from the user's list.
    let keys = app.get_as("/api/profile/api-keys", &user).await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    assert_eq!(keys.json()["items"], json!([]), "the key was revoked");
}
