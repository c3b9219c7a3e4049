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

use std::{cell::RefCell, collections::HashMap, sync::Arc, thread::LocalKey};

use axum::{
    body::Bytes,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::error::ApiError;

/// JSON bodies of values the store shares: while a read is cached the store
/// hands out the same `Arc` again (`store::CachedStore`), so its body is
/// rendered once and reused; a write makes a new value and so a new body.
/// Each route keeps one per worker thread (`thread_local!`), so the hot path
/// takes no lock. Holding the `Arc` keeps its address from being reused
/// while it is a key here.
pub struct RenderedBodies<T> {
    bodies: HashMap<usize, (Arc<T>, Bytes)>,
    capacity: usize,
}

impl<T> RenderedBodies<T> {
    /// At most `capacity` bodies; past that the memory starts over.
    pub fn new(capacity: usize) -> Self {
        Self { bodies: HashMap::new(), capacity }
    }
}

/// A 200 JSON response showing `value`, rendered once per shared value:
/// `render` makes the body (with `render_json`) and must depend on nothing
/// else that can change.
pub fn shared_json<T: 'static>(
    memory: &'static LocalKey<RefCell<RenderedBodies<T>>>,
    value: &Arc<T>,
    render: impl FnOnce(&T) -> Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let key = Arc::as_ptr(value) as usize;
    if let Some(body) = memory.with_borrow(|memory| memory.bodies.get(&key).map(|(_, body)| body.clone())) {
        return Ok(json_response(body));
    }
    let body = render(value)?;
    memory.with_borrow_mut(|memory| {
        if memory.bodies.len() >= memory.capacity {
            memory.bodies.clear();
        }
        memory.bodies.insert(key, (value.clone(), body.clone()));
    });
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
