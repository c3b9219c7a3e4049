//! `/api/admin/blocks`: list, add and lift blocks (see `defense`).

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get},
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    app::AppState,
    audit::AuditContext,
    auth::principal::Caller,
    config::HumanDuration,
    defense::parse_network,
    error::{ApiError, FieldError},
    extract::{JsonBody, List, Page},
    policy::{Action, Resource},
    store::{Block, StoreError},
};

/// Blocks longer than this are cut to it (a block for ever is not a
/// number `OffsetDateTime` can add).
pub const MAX_BLOCK: Duration = Duration::from_secs(3650 * 86_400);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/blocks", get(list_blocks).post(add_block))
        .route("/api/admin/blocks/{id}", delete(lift_block))
}

/// A block's `duration`: a non-zero `HumanDuration`, at most `MAX_BLOCK`.
pub fn parse_block_duration(text: &str) -> Result<Duration, &'static str> {
    match HumanDuration::parse_saturating(text) {
        Ok(duration) if !duration.0.is_zero() => Ok(duration.0.min(MAX_BLOCK)),
        _ => Err("must be a duration such as \"15m\" or \"24h\""),
    }
}

async fn list_blocks(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    page: Page,
) -> Result<Json<List<Block>>, ApiError> {
    state.authorize(&caller, Action::ManageBlocks, Resource::AdminArea, &audit)?;
    let rows = state.store.list_blocks(state.clock.now(), page.after, page.limit + 1).await?;
    Ok(Json(List::from_rows(rows, page.limit, |block| block.id)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBlock {
    ip: String,
    reason: Option<String>,
    duration: Option<String>,
}

async fn add_block(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    JsonBody(input): JsonBody<NewBlock>,
) -> Result<(StatusCode, Json<Block>), ApiError> {
    state.authorize(&caller, Action::ManageBlocks, Resource::AdminArea, &audit)?;
    let mut errors = Vec::new();
    let network = parse_network(&input.ip);
    if network.is_none() {
        errors.push(FieldError::new("ip", "must be an IP address or a CIDR network"));
    }
    let reason = input.reason.as_deref().map(str::trim).unwrap_or("blocked by an admin");
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        errors.push(FieldError::new("reason", "must be 1 to 200 characters without control characters"));
    }
    let duration = match input.duration.as_deref().map(parse_block_duration) {
        None => None,
        Some(Ok(duration)) => time::Duration::try_from(duration).ok(),
        Some(Err(message)) => {
            errors.push(FieldError::new("duration", message));
            None
        }
    };
    let Some(network) = network.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // An admin cutting off their own address could not lift the block.
    if audit.client_ip.is_some_and(|ip| network.contains(&ip)) {
        return Err(ApiError::Conflict("This block would include your own address.".into()));
    }
    let block = state.defense.block(network, reason, duration, &audit).await?;
    Ok((StatusCode::CREATED, Json(block)))
}

async fn lift_block(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.authorize(&caller, Action::ManageBlocks, Resource::AdminArea, &audit)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    match state.defense.unblock(id, &audit).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::NotFound),
        Err(other) => Err(other.into()),
    }
}
