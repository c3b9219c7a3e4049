//! `/openapi.json` (the document `openapi::finish` built from the router)
//! and `/docs`, a Swagger UI page over it.
//!
//! Swagger UI's files come from `utoipa-swagger-ui` (its `vendored`
//! feature embeds them at build time; nothing is fetched from a CDN, at
//! build or at run time). The page loads only its own scripts and styles,
//! so it gets a CSP like the `/admin` page's, with two narrow additions:
//! `img-src data:` for the icons Swagger UI's stylesheet inlines, and the
//! hash of the one `<style>` element its bundle writes (the colours of its
//! SVG logo); no `unsafe-inline`. Its `validatorUrl` is off, so it never
//! asks a third party to check the document. The browser test
//! (`tests/api/browser.rs`) fails on any CSP violation, so a Swagger UI
//! upgrade that needs more shows up there.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use utoipa_axum::routes;
use utoipa_swagger_ui::Config;

use super::Routes;
use crate::{app::AppState, error::ApiError, openapi::tags};

/// The page may load its own files and fetch the document; nothing else.
/// The hash is of `.logo_small_svg__cls-2{fill:#fff}.logo_small_svg__cls-3{fill:#85ea2d}`,
/// the `<style>` inside the logo that swagger-ui-bundle.js (5.32.6) inserts.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
                        style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
                        img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                        frame-ancestors 'none'";

/// `/openapi.json` is an operation of the document; the docs page and its
/// files are not (`tests/api/openapi.rs` lists them as non-API routes).
pub fn router() -> Routes {
    let config = Arc::new(Config::new(["/openapi.json"]).validator_url("none").query_config_enabled(false));
    let index_config = config.clone();
    Routes::new()
        .routes(routes!(openapi_json))
        .route("/docs", get(|| async { Redirect::permanent("/docs/") }))
        .route("/docs/", get(move || async move { docs_file("", index_config) }))
        .route("/docs/{file}", get(move |Path(file): Path<String>| async move { docs_file(&file, config) }))
}

/// This document: OpenAPI 3.1, generated from the server's own routes.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = tags::OPS,
    responses((status = 200, description = "The OpenAPI document.", body = Object))
)]
async fn openapi_json(State(state): State<AppState>) -> Response {
    let document = state.api_document.get().cloned().unwrap_or_default();
    let mut response = document.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn docs_file(file: &str, config: Arc<Config<'static>>) -> Response {
    // Only the page and the files beside it; `oauth2-redirect.html` (an
    // inline-script page for OAuth flows this API does not have) is left out.
    if file.contains('/') || file.starts_with("oauth2-redirect") {
        return ApiError::NotFound.into_response();
    }
    match utoipa_swagger_ui::serve(file, config) {
        Ok(Some(found)) => {
            let mut response = (StatusCode::OK, found.bytes.into_owned()).into_response();
            let headers = response.headers_mut();
            if let Ok(content_type) = HeaderValue::from_str(&found.content_type) {
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
            response
        }
        Ok(None) => ApiError::NotFound.into_response(),
        Err(error) => ApiError::Internal(anyhow::anyhow!("swagger ui file {file}: {error}")).into_response(),
    }
}
