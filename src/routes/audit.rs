//! `GET /api/admin/audit`: the audit trail, newest first, filtered by
//! event, user, IP and time range, a page at a time.

use std::net::IpAddr;

use axum::{Json, extract::State, http::Uri};
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa_axum::routes;
use uuid::Uuid;

use super::Routes;
use crate::{
    app::AppState,
    audit::AuditContext,
    auth::principal::Caller,
    domain::{AuditEvent, AuditKind, Outcome},
    error::{ApiError, FieldError},
    extract::{List, Page},
    openapi::tags,
    policy::{Action, Resource},
    store::AuditFilter,
};

pub fn router() -> Routes {
    Routes::new().routes(routes!(list_events))
}

// An audit event as this API shows it (the document's `AuditEvent`):
// `domain::AuditEvent` with its OpenAPI description. Not a doc comment,
// which would become the schema's description.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditEvent)]
struct AuditEventView {
    id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(schema_with = crate::openapi::date_time)]
    time: OffsetDateTime,
    #[schema(required = true)]
    request_id: Option<String>,
    /// `login_success`, `login_failure`, `logout`, `token_refresh`, `refresh_reuse`, `signup`,
    /// `password_change`, `role_change`, `unauthorized`, `forbidden`, `rate_limited`, `server_error`,
    /// `ip_blocked`, `ip_unblocked`, ...
    #[schema(value_type = String)]
    event: AuditKind,
    #[schema(required = true)]
    user_id: Option<Uuid>,
    #[schema(schema_with = crate::openapi::nullable_ip_address, required = true)]
    client_ip: Option<IpAddr>,
    #[schema(required = true)]
    route: Option<String>,
    outcome: Outcome,
    /// For denials: what was tried, e.g. `UpdatePost on Post "0190..."`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    detail: Option<String>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(event: AuditEvent) -> Self {
        let AuditEvent { id, time, request_id, event, user_id, client_ip, route, outcome, detail } = event;
        Self { id, time, request_id, event, user_id, client_ip, route, outcome, detail }
    }
}

/// The filters, for the OpenAPI document (`filter_from` reads them).
#[expect(dead_code, reason = "describes the query string in the OpenAPI document only")]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// An event name, exactly.
    #[param(min_length = 1, max_length = 64)]
    event: Option<String>,
    user_id: Option<Uuid>,
    /// A client IP address, exactly.
    #[param(schema_with = crate::openapi::ip_address)]
    ip: Option<String>,
    /// Events at or after this time.
    #[param(schema_with = crate::openapi::date_time)]
    from: Option<String>,
    /// Events at or before this time.
    #[param(schema_with = crate::openapi::date_time)]
    to: Option<String>,
}

/// The filters of the query string; every malformed one is reported.
fn filter_from(uri: &Uri) -> Result<AuditFilter, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or_default())
        .map_err(|_| ApiError::bad_request("The query string is malformed."))?;
    let mut filter = AuditFilter::default();
    let mut errors = Vec::new();
    let time = |value: &str| OffsetDateTime::parse(value, &Rfc3339).ok();
    for (name, value) in pairs {
        match name.as_str() {
            "event" if value.is_empty() || value.chars().count() > 64 => {
                errors.push(FieldError::new("event", "must be 1 to 64 characters"));
            }
            "event" => filter.event = Some(value),
            "user_id" => match Uuid::parse_str(&value) {
                Ok(id) => filter.user_id = Some(id),
                Err(_) => errors.push(FieldError::new("user_id", "must be a user id (UUID)")),
            },
            "ip" => match value.parse() {
                Ok(ip) => filter.client_ip = Some(ip),
                Err(_) => errors.push(FieldError::new("ip", "must be an IP address")),
            },
            "from" => match time(&value) {
                Some(at) => filter.from = Some(at),
                None => errors.push(FieldError::new("from", "must be an RFC 3339 time")),
            },
            "to" => match time(&value) {
                Some(at) => filter.to = Some(at),
                None => errors.push(FieldError::new("to", "must be an RFC 3339 time")),
            },
            _ => {}
        }
    }
    // `from` after `to` is a well-formed filter that matches nothing: each
    // value is valid on its own, which is all the OpenAPI document can say.
    if errors.is_empty() { Ok(filter) } else { Err(ApiError::Validation(errors)) }
}

/// The audit trail, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/admin/audit",
    tag = tags::ADMIN,
    security(("bearer" = []), ("cookie" = [])),
    params(Page, AuditQuery),
    responses(
        (status = 200, description = "A page of audit events, newest first.", body = List<AuditEventView>),
        (status = 400, description = "A malformed filter, `limit` or `cursor`, named in `errors`."),
        (status = 403, description = "Only admins may read the audit trail."),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    page: Page,
    uri: Uri,
) -> Result<Json<List<AuditEventView>>, ApiError> {
    state.authorize(&caller, Action::ViewAudit, Resource::AdminArea, &audit)?;
    let filter = filter_from(&uri)?;
    let rows = state.store.list_audit_events(&filter, page.after, page.limit + 1).await?;
    let page = List::from_rows(rows, page.limit, |event| event.id);
    Ok(Json(List { items: page.items.into_iter().map(AuditEventView::from).collect(), next_cursor: page.next_cursor }))
}
