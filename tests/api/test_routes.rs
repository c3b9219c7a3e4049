//! Routes that exist only in tests: they exercise the layer stack with a
//! panic, a JSON body that carries a password, a slow handler and a slow
//! streaming response.

use std::time::Duration;

use axum::{
    Json, Router,
    body::{Body, Bytes},
    routing::{get, post},
};
use rampart::{app::AppState, extract::JsonBody};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoRequest {
    name: String,
    password: String,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/test/panic", get(panics))
        .route("/test/echo", post(echo))
        .route("/test/slow", get(slow))
        .route("/test/stream", get(stream))
}

async fn panics() -> &'static str {
    panic!("deliberate test panic at src/secret/place.rs with password hunter2");
}

async fn echo(JsonBody(request): JsonBody<EchoRequest>) -> Json<serde_json::Value> {
    // Logged on purpose: the redaction layer must blank it.
    tracing::info!(password = %request.password, name = %request.name, "echo received");
    Json(serde_json::json!({ "name": request.name }))
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "late"
}

/// Server-sent-events style: `STREAM_EVENTS` events, `STREAM_EVERY` apart.
pub const STREAM_EVENTS: u32 = 12;
pub const STREAM_EVERY: Duration = Duration::from_millis(100);

async fn stream() -> Body {
    Body::from_stream(futures_util::stream::unfold(0, |sent| async move {
        if sent == STREAM_EVENTS {
            return None;
        }
        tokio::time::sleep(STREAM_EVERY).await;
        Some((Ok::<_, std::io::Error>(Bytes::from(format!("data: {sent}\n\n"))), sent + 1))
    }))
}
