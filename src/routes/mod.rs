//! HTTP routes. Each module exports a `router()`; `app::router` merges them
//! under the shared layer stack. Handlers stay thin: parse input, ask the
//! store (and, as it lands, the policy), shape the response.

pub mod admin_page;
pub mod audit;
pub mod auth;
pub mod blocks;
pub mod docs;
pub mod oauth;
pub mod ops;
pub mod pages;
pub mod posts;
pub mod users;

use axum::{
    body::Bytes,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{error::ApiError, store::Snapshot};

/// A 200 JSON response showing `snapshot`, serialised once per snapshot and
/// kept in it (`store::Snapshot`): `shape` makes what the API shows of the
/// snapshot's value, and must depend on nothing else that can change.
pub fn snapshot_json<T, S: Serialize>(snapshot: &Snapshot<T>, shape: impl FnOnce() -> S) -> Result<Response, ApiError> {
    let body = match snapshot.rendered.get() {
        Some(body) => body.clone(),
        None => {
            let body = render_json(&shape())?;
            let _ = snapshot.rendered.set(body.clone());
            body
        }
    };
    Ok(json_response(body))
}

/// `value` as JSON bytes, to keep and answer with `json_response`.
pub fn render_json(value: &impl Serialize) -> Result<Bytes, ApiError> {
    Ok(Bytes::from(serde_json::to_vec(value).map_err(anyhow::Error::from)?))
}

/// A 200 response of JSON rendered before (what `Json` would answer).
pub fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}
