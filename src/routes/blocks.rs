//! `/api/admin/blocks`: list, add and lift blocks (see `defense`).

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Routes;
use crate::{
    app::AppState,
    audit::AuditContext,
    auth::principal::Caller,
    config::HumanDuration,
    defense::parse_network,
    error::{ApiError, FieldError},
    extract::{JsonBody, List, Page},
    openapi::{self, tags},
    policy::{Action, Resource},
    store::{self, StoreError},
};

/// Blocks longer than this are cut to it (a block for ever is not a
/// number `OffsetDateTime` can add).
pub const MAX_BLOCK: Duration = Duration::from_secs(3650 * 86_400);

pub fn router() -> Routes {
    Routes::new().routes(routes!(list_blocks, add_block)).routes(routes!(lift_block))
}

/// A block's `duration`: a non-zero `HumanDuration`, at most `MAX_BLOCK`.
pub fn parse_block_duration(text: &str) -> Result<Duration, &'static str> {
    match HumanDuration::parse_saturating(text) {
        Ok(duration) if !duration.0.is_zero() => Ok(duration.0.min(MAX_BLOCK)),
        _ => Err("must be a duration such as \"15m\" or \"24h\""),
    }
}

/// A blocked client, as the API shows it.
#[derive(Serialize, ToSchema)]
struct Block {
    id: Uuid,
    /// An IP or CIDR, normalised (`203.0.113.7`, `2001:db8::/64`).
    ip: String,
    reason: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(schema_with = openapi::date_time)]
    created_at: OffsetDateTime,
    /// `null`: the block never ends.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(schema_with = openapi::nullable_date_time, required = true)]
    expires_at: Option<OffsetDateTime>,
}

impl From<store::Block> for Block {
    fn from(block: store::Block) -> Self {
        Self {
            id: block.id,
            ip: block.ip,
            reason: block.reason,
            created_at: block.created_at,
            expires_at: block.expires_at,
        }
    }
}

/// The blocks in force, newest first.
#[utoipa::path(
    get,
    path = "/api/admin/blocks",
    tag = tags::ADMIN,
    security(("bearer" = []), ("cookie" = [])),
    params(Page),
    responses(
        (status = 200, description = "A page of blocks in force, newest first.", body = List<Block>),
        (status = 400, description = "A malformed `limit` or `cursor`."),
        (status = 403, description = "Only admins may list blocks."),
    )
)]
async fn list_blocks(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    page: Page,
) -> Result<Json<List<Block>>, ApiError> {
    state.authorize(&caller, Action::ListBlocks, Resource::AdminArea, &audit)?;
    let rows = state.store.list_blocks(state.clock.now(), page.after, page.limit + 1).await?;
    let rows = rows.into_iter().map(Block::from).collect();
    Ok(Json(List::from_rows(rows, page.limit, |block| block.id)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewBlock {
    #[schema(schema_with = openapi::ip_network)]
    ip: String,
    #[schema(schema_with = openapi::block_reason)]
    reason: Option<String>,
    #[schema(schema_with = openapi::block_duration)]
    duration: Option<String>,
}

/// Blocks an address or network: every request from it gets 403.
#[utoipa::path(
    post,
    path = "/api/admin/blocks",
    tag = tags::ADMIN,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = NewBlock,
    responses(
        (status = 201, description = "The block, in force at once.", body = Block),
        (status = 403, description = "Only admins may manage blocks."),
        (status = 409, description = "The block would include the caller's own address."),
    )
)]
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
    Ok((StatusCode::CREATED, Json(block.into())))
}

/// Lifts a block.
#[utoipa::path(
    delete,
    path = "/api/admin/blocks/{id}",
    tag = tags::ADMIN,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    params(("id" = Uuid, Path, description = "The block's id; a malformed one is 404.")),
    responses(
        (status = 204, description = "Lifted."),
        (status = 403, description = "Only admins may manage blocks."),
        (status = 404, description = "No block has this id."),
    )
)]
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
