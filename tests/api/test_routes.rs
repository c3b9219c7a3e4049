//! Routes that exist only in tests: they exercise the layer stack with a
//! panic, a JSON body that carries a password, and a slow handler.

use std::time::Duration;

use axum::{
    Json, Router,
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
    Router::new().route("/test/panic", get(panics)).route("/test/echo", post(echo)).route("/test/slow", get(slow))
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
