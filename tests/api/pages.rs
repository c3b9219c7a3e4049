//! The pages for people beyond `/admin`: the `/` welcome page, and where
//! `/login` sends a person after signing in (`?next=`).

use std::process::Command;

use crate::helpers::spawn_app;

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
