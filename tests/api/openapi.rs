//! `/openapi.json` describes exactly the router's routes, is valid OpenAPI
//! 3.1, and `/docs` shows it under a strict CSP.
//!
//! Validity is checked by `openapi-spec-validator` (PyPI, pinned in
//! `tests/openapi/requirements.txt`), which carries the official OpenAPI 3.1
//! schema: `.ci/run` installs it into a virtualenv and names it in
//! `OPENAPI_SPEC_VALIDATOR`; otherwise it is looked up on `PATH`. Skipped on
//! a laptop without it, failed under CI=true.
//!
//! The route table is read from the router itself: axum has no public
//! listing, so the paths come from its `Debug` output (which names every
//! registered path) and the methods from asking the live server each path
//! with each method as a guest without a body (a 405 means "no such
//! method"; anything else, even 401 or 415, means a handler is there). If
//! axum's `Debug` output changes shape, the parse finds no paths and the
//! test fails loudly rather than passing on an empty table.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use reqwest::Method;
use serde_json::Value;

use crate::helpers::spawn_app;

/// Routes that are deliberately not API operations: HTML pages and their
/// script, style and image files.
const NON_API_ROUTES: [(&str, &str); 20] = [
    ("GET", "/"),
    ("GET", "/admin"),
    ("GET", "/admin/admin.js"),
    ("GET", "/admin/admin.css"),
    ("GET", "/docs"),
    ("GET", "/docs/"),
    ("GET", "/docs/{file}"),
    ("GET", "/login"),
    ("GET", "/account"),
    ("GET", "/pages/pages.css"),
    ("GET", "/pages/login.js"),
    ("GET", "/pages/account.js"),
    ("GET", "/verify-email"),
    ("GET", "/reset-password"),
    ("GET", "/pages/email.js"),
    // Envoy's ext_authz asks forward auth at /auth/forward/<original path>.
    ("GET", "/auth/forward/{*path}"),
    ("POST", "/auth/forward/{*path}"),
    ("PUT", "/auth/forward/{*path}"),
    ("PATCH", "/auth/forward/{*path}"),
    ("DELETE", "/auth/forward/{*path}"),
];

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

type Operations = BTreeSet<(String, String)>;

/// Every path registered on the public router, from its `Debug` output:
/// `Router { path_router: PathRouter { .., node: Node { paths: {RouteId(n):
/// "/path", ..} } }, fallback_router: .. }`.
fn router_paths() -> BTreeSet<String> {
    let router = rampart::app::public_routes(true).into_parts().router;
    let full = format!("{router:?}");
    // The fallback router's own catch-all paths are not routes.
    let debug = full.split("fallback_router").next().expect("some output");
    let mut paths = BTreeSet::new();
    for (index, _) in debug.match_indices("RouteId(") {
        let rest = &debug[index..];
        let Some(start) = rest.find("): \"") else { continue };
        let path = &rest[start + 4..];
        let Some(end) = path.find('"') else { continue };
        let path = &path[..end];
        if path.starts_with('/') && !path.contains("__private__") {
            paths.insert(path.to_owned());
        }
    }
    assert!(paths.contains("/health") && paths.len() > 10, "could not read the routes from axum's Debug: {full}");
    paths
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.starts_with('{') { "01900000-0000-7000-8000-000000000000" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// (METHOD, path template) of every route of the running server.
async fn router_operations(app: &crate::helpers::TestApp) -> Operations {
    let mut operations = Operations::new();
    for path in router_paths() {
        for method in METHODS {
            let response = app.request(method.clone(), &concrete(&path)).await;
            if response.status != 405 {
                operations.insert((method.to_string(), path.clone()));
            }
        }
    }
    operations
}

fn documented_operations(document: &Value) -> Operations {
    let mut operations = Operations::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

fn describe(operations: &Operations) -> String {
    operations.iter().map(|(method, path)| format!("{method} {path}")).collect::<Vec<_>>().join(", ")
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_of_the_router() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    let document = response.json();
    assert_eq!(document["openapi"], "3.1.0");

    let documented = documented_operations(&document);
    let routed = router_operations(&app).await;
    let non_api: Operations = NON_API_ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();

    let stale: Operations = non_api.difference(&routed).cloned().collect();
    assert!(stale.is_empty(), "listed as non-API routes but not routed: {}", describe(&stale));
    let undocumented: Operations = routed.difference(&documented).filter(|op| !non_api.contains(op)).cloned().collect();
    assert!(undocumented.is_empty(), "routes missing from /openapi.json: {}", describe(&undocumented));
    let unrouted: Operations = documented.difference(&routed).cloned().collect();
    assert!(unrouted.is_empty(), "documented operations without a route: {}", describe(&unrouted));
}

#[tokio::test]
async fn every_error_response_is_documented_as_problem_json_with_a_request_id() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json").await.json();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for status in ["500", "503"] {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
            }
            if path != "/health" && path != "/ready" {
                assert!(responses.contains_key("429"), "{method} {path} lacks 429");
                assert!(responses["429"]["headers"]["Retry-After"]["required"] == true, "{method} {path}");
            }
            for (status, response) in responses {
                let header = &response["headers"]["X-Request-Id"];
                assert_eq!(header["required"], true, "{method} {path} {status} lacks X-Request-Id");
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/problem+json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/Problem", "{method} {path} {status}");
                }
            }
        }
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(
        (schemes["cookie"]["in"].as_str(), schemes["cookie"]["name"].as_str()),
        (Some("cookie"), Some("rampart_session"))
    );
    assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
    let create = &document["paths"]["/api/posts"]["post"];
    assert_eq!(create["responses"]["201"]["headers"]["Location"]["required"], true);
    assert_eq!(create["security"][1], serde_json::json!({"cookie": [], "csrf": []}));
}

#[tokio::test]
async fn the_document_and_the_docs_page_carry_the_security_headers() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json").await;
    assert_eq!(document.header("content-type"), Some("application/json"));
    assert_eq!(document.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(document.header("content-security-policy"), Some("default-src 'none'; frame-ancestors 'none'"));

    let redirect = app.get("/docs").await;
    assert_eq!((redirect.status, redirect.header("location")), (308, Some("/docs/")));
    let page = app.get("/docs/").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(!page.body.contains("<script>"), "no inline script");
    let script = app.get("/docs/swagger-initializer.js").await;
    assert!(script.body.contains("\"/openapi.json\""), "{}", script.body);
    assert!(script.body.contains("\"validatorUrl\": \"none\""), "{}", script.body);
    app.get("/docs/oauth2-redirect.html").await.assert_problem(404);
    app.get("/docs/no-such-file.js").await.assert_problem(404);
}

/// The validator named by `OPENAPI_SPEC_VALIDATOR`, else the one on `PATH`;
/// under CI=true its absence fails the test instead.
fn spec_validator() -> Option<PathBuf> {
    if let Some(named) = std::env::var_os("OPENAPI_SPEC_VALIDATOR") {
        let named = PathBuf::from(named);
        assert!(named.is_file(), "OPENAPI_SPEC_VALIDATOR names {}, which does not exist", named.display());
        return Some(named);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("openapi-spec-validator")).find(|path| path.is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but openapi-spec-validator is missing");
    eprintln!(
        "skipped: needs openapi-spec-validator on PATH, or \
         OPENAPI_SPEC_VALIDATOR=\"$(bash tests/openapi/install.sh)\""
    );
    None
}

#[tokio::test]
async fn the_served_document_passes_the_official_openapi_3_1_schema() {
    let Some(validator) = spec_validator() else { return };
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    // The bytes as served, not a re-serialisation of them.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &response.body).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&validator)
            .args(["--schema", "3.1", "--validation-errors", "all"])
            .arg(&file)
            .output()
            .unwrap_or_else(|error| panic!("{} does not run: {error}", validator.display()))
    })
    .await
    .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.contains(": OK"), "not valid OpenAPI 3.1:\n{report}");
}

/// What the validator also finds, checked without it: every response
/// object has the `description` OpenAPI requires.
#[tokio::test]
async fn every_response_has_a_description() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json").await.json();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let description = response["description"].as_str().unwrap_or_default();
                assert!(!description.trim().is_empty(), "{method} {path} {status} has no description");
            }
        }
    }
}

/// The licence is the crate's, as an SPDX expression (OpenAPI 3.1's
/// `identifier`).
#[tokio::test]
async fn the_document_names_the_crates_license() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json").await.json();
    let license = &document["info"]["license"];
    assert_eq!(license, &serde_json::json!({"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"}));
    assert_eq!(license["identifier"], env!("CARGO_PKG_LICENSE"));
}
