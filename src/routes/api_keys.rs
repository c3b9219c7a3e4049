//! API keys (API.md "API keys"): `/api/profile/api-keys` for their owner,
//! `/api/admin/api-keys` for admins. Keys are made and verified by
//! `auth::api_keys`; a key itself may never manage keys (`key_not_allowed`).

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, Uri},
};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::{
    ToSchema,
    openapi::{ArrayBuilder, ObjectBuilder, RefOr, Schema, Type},
};
use utoipa_axum::routes;
use uuid::Uuid;

use super::Routes;
use crate::{
    app::AppState,
    audit::AuditContext,
    auth::{
        api_keys::KeyRevocation,
        principal::{Caller, Credential, Person, Principal},
        tokens::uuid_v7_nanos,
    },
    config::HumanDuration,
    domain::{ApiKeyName, AuditKind, Outcome, Scope, Scopes},
    error::{ApiError, FieldError},
    extract::{JsonBody, List, Page},
    mail::{Letter, Notice},
    openapi::{self, tags},
    policy::{Action, Resource},
    store::{ApiKeyRecord, StoreError},
};

pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(create_key, list_own_keys))
        .routes(routes!(revoke_own_key))
        .routes(routes!(list_keys))
        .routes(routes!(revoke_key))
}

/// The name of the `ApiKeyScope` schema, whose `enum` lists every scope.
pub const SCOPE_SCHEMA: &str = "ApiKeyScope";

/// The `ApiKeyScope` schema: the fixed scopes, `routes:*`, and
/// `routes:<id>` for each route in `route_ids` (the routes in force when
/// the document is made).
pub fn scope_schema(route_ids: &[std::sync::Arc<str>]) -> Schema {
    let names = Scope::FIXED
        .iter()
        .map(Scope::to_string)
        .chain(route_ids.iter().map(|id| Scope::Route(id.clone()).to_string()));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "What a key may do: `posts:read` (list, read), `posts:write` (create, update), `posts:delete`, \
             `profile:read`, `profile:write`, `admin:read` (dashboard, users, audit and block listings), \
             `admin:write` (user and block changes), `routes:*` and `routes:<route id>` (protect mode).",
        ))
        .enum_values(Some(names))
        .into()
}

fn scopes_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(SCOPE_SCHEMA)))
        .min_items(Some(1))
        .max_items(Some(Scopes::MAX))
}

/// A key as listed: never the key or its hash.
#[derive(Serialize, ToSchema)]
struct ApiKey {
    id: Uuid,
    #[schema(schema_with = openapi::user_name)]
    name: String,
    #[schema(schema_with = scopes_schema)]
    scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(schema_with = openapi::date_time)]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(schema_with = openapi::date_time)]
    created_at: OffsetDateTime,
    /// To the minute; `null` until the key is first used.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(schema_with = openapi::nullable_date_time, required = true)]
    last_used_at: Option<OffsetDateTime>,
}

impl ApiKey {
    fn new(state: &AppState, record: &ApiKeyRecord) -> Self {
        Self {
            id: record.id,
            name: record.name.clone(),
            scopes: record.scopes.names().collect(),
            expires_at: record.expires_at,
            created_at: record.created_at,
            last_used_at: state.api_keys.last_used(record),
        }
    }
}

/// A key just made, with the key itself: shown this once.
#[derive(Serialize, ToSchema)]
struct CreatedApiKey {
    #[serde(flatten)]
    key: ApiKey,
    /// `rk_<id>_<secret>`: send as `Authorization: Bearer <key>`. Only its
    /// hash is kept; it is never shown again.
    #[serde(rename = "key")]
    secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewApiKey {
    #[schema(schema_with = openapi::user_name)]
    name: String,
    #[schema(schema_with = scopes_schema)]
    scopes: Vec<String>,
    /// When the key stops working: in the future, at most
    /// `api_keys.max_lifetime` (365 days by default) ahead; omitted, that
    /// maximum.
    #[serde(default, deserialize_with = "crate::extract::explicit_null")]
    #[schema(schema_with = openapi::date_time)]
    expires_at: Option<Option<String>>,
}

/// Makes an API key for the caller. The key is in this response only.
#[utoipa::path(
    post,
    path = "/api/profile/api-keys",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "The key, shown this once.", body = CreatedApiKey),
        (status = 400, description = "A bad name, an unknown scope (named in `errors`), or an expiry in the past \
                                      or beyond `api_keys.max_lifetime`."),
        (status = 403, description = "An API key asked (`code` `key_not_allowed`)."),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
    JsonBody(input): JsonBody<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let now = state.clock.now();
    let (name, scopes, expires_at) = checked(&state, input, now)?;
    // The key and its notice to the owner land together.
    let made = async {
        let owner = state.store.user_by_id(principal.user_id).await?;
        let mut work = state.store.begin().await?;
        let created = state.api_keys.create_in(&mut *work, owner.id, &name, scopes, expires_at).await?;
        let notice = Notice::ApiKeyCreated { key_name: name.as_str().to_owned() };
        state.mailer.enqueue(&mut *work, &owner, &Letter::Notice(notice), now).await?;
        work.commit().await?;
        Ok::<_, StoreError>(created)
    };
    let created = match made.await {
        Ok(created) => created,
        // The caller's account was deleted meanwhile.
        Err(StoreError::NotFound) => return Err(ApiError::Unauthorized { token_sent: true }),
        Err(other) => return Err(other.into()),
    };
    state.mailer.wake();
    if !still_stands(&state, &principal, created.record.id).await? {
        // A sign-out, or a change of the owner's access, landed while the
        // key was being made: it must not outlive what stopped the rest.
        let _ = state.store.delete_api_key(created.record.id, None).await;
        state.revocations.revoke_api_keys(KeyRevocation::Key(created.record.id)).await;
        return Err(ApiError::Unauthorized { token_sent: true });
    }
    let mut event = audit.event(now, AuditKind::ApiKeyCreated, Some(principal.user_id), Outcome::Success);
    event.detail = Some(format!("key {}", created.record.id));
    state.audit.record(event);
    let key = ApiKey::new(&state, &created.record);
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key, secret: created.key })))
}

/// Whether the credential that made key `id` still stands now that the key
/// is stored: the owner unchanged (role, department, enabled), the token
/// not revoked, the session not ended.
async fn still_stands(state: &AppState, principal: &Principal, id: Uuid) -> Result<bool, ApiError> {
    let Some((_, owner)) = state.store.api_key_and_owner(id).await? else {
        return Ok(false);
    };
    if owner.disabled
        || owner.role != principal.role
        || owner.department.as_ref().map(|d| d.as_str()) != principal.department.as_deref()
    {
        return Ok(false);
    }
    Ok(match &principal.credential {
        Credential::Bearer { jti, .. } => uuid_v7_nanos(jti)
            .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
            .is_some_and(|issued| !state.revocations.is_session_revoked(principal.user_id, issued)),
        Credential::Session { id_hash, .. } => state.sessions.session(id_hash).await?.is_some(),
        Credential::ApiKey { .. } => false,
    })
}

/// A new key's fields, checked; every field's problems at once.
fn checked(
    state: &AppState,
    input: NewApiKey,
    now: OffsetDateTime,
) -> Result<(ApiKeyName, Scopes, OffsetDateTime), ApiError> {
    let mut errors = Vec::new();
    let name = ApiKeyName::parse(&input.name).map_err(|message| errors.push(FieldError::new("name", message))).ok();
    let scopes = known_scopes(state, &input.scopes)
        .map_err(|problems| errors.extend(problems.into_iter().map(|problem| FieldError::new("scopes", problem))))
        .ok();
    let max_lifetime = time::Duration::try_from(state.config.api_keys.max_lifetime.0).unwrap_or(time::Duration::ZERO);
    let expires_at = expiry(input.expires_at, now, max_lifetime)
        .map_err(|message| errors.push(FieldError::new("expires_at", message)))
        .ok();
    match (name, scopes, expires_at) {
        (Some(name), Some(scopes), Some(expires_at)) => Ok((name, scopes, expires_at)),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// Scope names that exist, a `routes:<id>` naming a route in force.
fn known_scopes(state: &AppState, names: &[String]) -> Result<Scopes, Vec<String>> {
    let scopes = Scopes::parse(names.iter().map(String::as_str))?;
    let route_ids = state.gateway.route_ids();
    let unknown: Vec<String> = scopes
        .as_slice()
        .iter()
        .filter(|scope| scope.route().is_some_and(|id| !route_ids.iter().any(|known| &**known == id)))
        .map(|scope| format!("{:?} names no route", scope.to_string()))
        .collect();
    if unknown.is_empty() { Ok(scopes) } else { Err(unknown) }
}

/// `expires_at` as sent (absent, `null`, or a time): in the future, at
/// most `max_lifetime` ahead, in UTC; absent means the maximum.
fn expiry(
    sent: Option<Option<String>>,
    now: OffsetDateTime,
    max_lifetime: time::Duration,
) -> Result<OffsetDateTime, String> {
    let latest = now + max_lifetime;
    let Some(sent) = sent else {
        return Ok(latest);
    };
    let at = sent
        .and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok())
        .ok_or("must be an RFC 3339 time (or left out)")?;
    // Compared before the change to UTC, which years near 9999 overflow.
    if at <= now {
        return Err("must be in the future".into());
    }
    if at > latest {
        return Err(format!("must be at most {} ahead", HumanDuration(max_lifetime.unsigned_abs())));
    }
    Ok(at.to_offset(time::UtcOffset::UTC))
}

/// The caller's API keys in force, oldest first.
#[utoipa::path(
    get,
    path = "/api/profile/api-keys",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [])),
    params(Page),
    responses(
        (status = 200, description = "A page of the caller's keys (never the keys themselves).", body = List<ApiKey>),
        (status = 400, description = "A malformed `limit` or `cursor`."),
        (status = 403, description = "An API key asked (`code` `key_not_allowed`)."),
    )
)]
async fn list_own_keys(
    State(state): State<AppState>,
    Person(principal): Person,
    page: Page,
) -> Result<Json<List<ApiKey>>, ApiError> {
    list(&state, Some(principal.user_id), page).await
}

async fn list(state: &AppState, user_id: Option<Uuid>, page: Page) -> Result<Json<List<ApiKey>>, ApiError> {
    let rows = state.store.list_api_keys(user_id, state.clock.now(), page.after, page.limit + 1).await?;
    let rows = rows.iter().map(|record| ApiKey::new(state, record)).collect();
    Ok(Json(List::from_rows(rows, page.limit, |key| key.id)))
}

/// Revokes one of the caller's keys: it stops working at once, on every
/// instance.
#[utoipa::path(
    delete,
    path = "/api/profile/api-keys/{id}",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    params(("id" = Uuid, Path, description = "The key's id; a malformed one is 404.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 403, description = "An API key asked (`code` `key_not_allowed`)."),
        (status = 404, description = "The caller has no key with this id."),
    )
)]
async fn revoke_own_key(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    revoke(&state, &audit, principal.user_id, &id, Some(principal.user_id)).await
}

/// Deletes the key (only `owner`'s, when given) and drops it from every
/// instance's cache.
async fn revoke(
    state: &AppState,
    audit: &AuditContext,
    by: Uuid,
    id: &str,
    owner: Option<Uuid>,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound)?;
    let record = state.store.delete_api_key(id, owner).await?;
    state.revocations.revoke_api_keys(KeyRevocation::Key(id)).await;
    let mut event = audit.event(state.clock.now(), AuditKind::ApiKeyRevoked, Some(by), Outcome::Success);
    event.detail = Some(format!("key {id} of user {}", record.user_id));
    state.audit.record(event);
    Ok(StatusCode::NO_CONTENT)
}

/// `?user_id=` of the admin listing, for the OpenAPI document.
#[expect(dead_code, reason = "describes the query string in the OpenAPI document only")]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct KeysQuery {
    /// Only this user's keys; omitted, everyone's.
    user_id: Option<Uuid>,
}

fn user_filter(uri: &Uri) -> Result<Option<Uuid>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or_default())
        .map_err(|_| ApiError::bad_request("The query string is malformed."))?;
    let mut user_id = None;
    for (name, value) in pairs {
        if name == "user_id" {
            user_id = Some(
                Uuid::parse_str(&value)
                    .map_err(|_| ApiError::Validation(vec![FieldError::new("user_id", "must be a user id (UUID)")]))?,
            );
        }
    }
    Ok(user_id)
}

/// Every user's API keys in force (or one user's), oldest first.
#[utoipa::path(
    get,
    path = "/api/admin/api-keys",
    tag = tags::ADMIN,
    security(("bearer" = []), ("cookie" = [])),
    params(Page, KeysQuery),
    responses(
        (status = 200, description = "A page of keys (never the keys themselves).", body = List<ApiKey>),
        (status = 400, description = "A malformed `user_id`, `limit` or `cursor`."),
        (status = 403, description = "Only admins may list keys; never with an API key (`code` `key_not_allowed`)."),
    )
)]
async fn list_keys(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    page: Page,
    uri: Uri,
) -> Result<Json<List<ApiKey>>, ApiError> {
    if let Some(principal) = caller.user() {
        principal.refuse_api_key()?;
    }
    state.authorize(&caller, Action::ManageApiKeys, Resource::AdminArea, &audit)?;
    list(&state, user_filter(&uri)?, page).await
}

/// Revokes any user's API key.
#[utoipa::path(
    delete,
    path = "/api/admin/api-keys/{id}",
    tag = tags::ADMIN,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    params(("id" = Uuid, Path, description = "The key's id; a malformed one is 404.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 403, description = "Only admins may revoke others' keys; never with an API key (`code` \
                                      `key_not_allowed`)."),
        (status = 404, description = "No key has this id."),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Some(principal) = caller.user() else {
        return Err(ApiError::Unauthorized { token_sent: false });
    };
    principal.refuse_api_key()?;
    state.authorize(&caller, Action::ManageApiKeys, Resource::AdminArea, &audit)?;
    revoke(&state, &audit, principal.user_id, &id, None).await
}
