//! `/api/profile*` (the caller's own account) and the admin user routes.
//! Every decision goes through `policy::authorize`; no role checks here.

use std::cell::RefCell;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Routes;
use crate::{
    accounts,
    app::AppState,
    audit::AuditContext,
    auth::principal::{Caller, CurrentUser, Person, Principal},
    domain::{AuditKind, Department, Email, Outcome, Password, Role, User, UserName},
    error::{ApiError, FieldError},
    extract::{JsonBody, List, Page},
    mail::{Letter, Notice},
    openapi::{self, tags},
    policy::{Action, Resource},
    routes::{
        RenderedBodies,
        auth::{cleared_cookie, with_cookie},
    },
    store::{StoreError, UserChange, UserChanges},
};

pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(read_profile, update_profile))
        .routes(routes!(change_password))
        .routes(routes!(list_users))
        .routes(routes!(update_user))
        .routes(routes!(delete_user))
}

/// Ids in paths: a malformed one names no resource, so it is a 404 like a
/// missing one.
fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::NotFound)
}

/// The user an admin action targets, once the policy allows it. A missing
/// user is 404 only for callers who could act on one that existed;
/// everyone else gets the same 403 either way, so ids cannot be probed.
async fn target_user(
    state: &AppState,
    caller: &Caller,
    action: Action,
    id: Uuid,
    audit: &AuditContext,
) -> Result<User, ApiError> {
    match state.store.user_by_id(id).await {
        Ok(user) => {
            state.authorize(caller, action, Resource::User(&user), audit)?;
            Ok(user)
        }
        Err(StoreError::NotFound) => {
            let stand_in = User {
                id,
                email: String::new(),
                email_verified: false,
                name: String::new(),
                role: Role::User,
                department: None,
                disabled: false,
                created_at: state.clock.now(),
            };
            state.authorize(caller, action, Resource::User(&stand_in), audit)?;
            Err(ApiError::NotFound)
        }
        Err(other) => Err(other.into()),
    }
}

/// The signed-in user's own record, if the policy lets them manage it; a
/// token outliving its user is a 401.
pub(super) async fn own_user(state: &AppState, principal: Principal, audit: &AuditContext) -> Result<User, ApiError> {
    let user = match state.store.user_by_id(principal.user_id).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(ApiError::Unauthorized { token_sent: true }),
        Err(other) => return Err(other.into()),
    };
    state.authorize(&Caller::User(principal), Action::ManageOwnAccount, Resource::User(&user), audit)?;
    Ok(user)
}

/// The caller's own account.
#[utoipa::path(
    get,
    path = "/api/profile",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The caller's account.", body = User),
        (status = 403, description = "The policy does not let this account manage itself."),
    )
)]
async fn read_profile(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
) -> Result<Response, ApiError> {
    // The shared user: read on every call, its JSON rendered once per value.
    let user = match state.store.user_shared(principal.user_id).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(ApiError::Unauthorized { token_sent: true }),
        Err(other) => return Err(other.into()),
    };
    state.authorize(&Caller::User(principal), Action::ReadOwnAccount, Resource::User(&user), &audit)?;
    super::shared_json(&PROFILE_BODIES, &user, super::render_json)
}

thread_local! {
    static PROFILE_BODIES: RefCell<RenderedBodies<User>> = RefCell::new(RenderedBodies::new(1024));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProfileUpdate {
    #[schema(schema_with = openapi::user_name)]
    name: String,
}

/// Renames the caller (role, email and department cannot be changed here).
#[utoipa::path(
    patch,
    path = "/api/profile",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = ProfileUpdate,
    responses(
        (status = 200, description = "The renamed account.", body = User),
        (status = 403, description = "The policy does not let this account manage itself."),
    )
)]
async fn update_profile(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
    JsonBody(update): JsonBody<ProfileUpdate>,
) -> Result<Json<User>, ApiError> {
    let user = own_user(&state, principal, &audit).await?;
    let name = UserName::parse(&update.name).map_err(|m| ApiError::Validation(vec![FieldError::new("name", m)]))?;
    Ok(Json(state.store.change_user(user.id, &UserChanges { name: Some(name), ..Default::default() }).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    /// Required when the account has a password; an account made by an
    /// OAuth sign-in has none and sets its first one without it.
    #[schema(value_type = Option<String>)]
    current_password: Option<SecretString>,
    #[schema(schema_with = openapi::new_password)]
    new_password: SecretString,
}

/// Changes the caller's password; every token and session of the account,
/// the caller's own included, stops working (sign in again).
#[utoipa::path(
    put,
    path = "/api/profile/password",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every credential of the account is void.",
            headers(("Set-Cookie" = String, description = "Clears `rampart_session` (session callers)."))),
        (status = 400, description = "The new password is refused (see `errors`)."),
        (status = 403, description = "The current password is not correct, the policy does not allow it, or an API \
                                      key asked (`code` `key_not_allowed`)."),
    )
)]
async fn change_password(
    State(state): State<AppState>,
    audit: AuditContext,
    Person(principal): Person,
    JsonBody(change): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    let is_session = principal.is_session();
    let user = own_user(&state, principal, &audit).await?;
    let now = state.clock.now();
    let stored = state.store.password_hash(user.id).await?;
    // A missing current password of an account that has one is a wrong
    // one (403), not a malformed body: whether it is needed depends on the
    // account, which no request schema can state.
    let current_ok = match (&stored, &change.current_password) {
        (Some(hash), Some(current)) => state.hasher.verify(current, hash).await?,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if !current_ok {
        state.audit.record(audit.event(now, AuditKind::PasswordChange, Some(user.id), Outcome::Denied));
        return Err(ApiError::forbidden("The current password is not correct."));
    }
    let email = Email::parse(&user.email).map_err(|_| anyhow::anyhow!("stored email no longer parses"))?;
    let name = UserName::parse(&user.name).map_err(|_| anyhow::anyhow!("stored name no longer parses"))?;
    let new_password = Password::parse(change.new_password, &email, &name)
        .map_err(|m| ApiError::Validation(vec![FieldError::new("new_password", m)]))?;
    let phc = state.hasher.hash(new_password.secret()).await?;
    // The new password and the notice of it land together.
    let mut work = state.store.begin().await?;
    work.set_password_hash(user.id, &phc).await?;
    state.mailer.enqueue(&mut *work, &user, &Letter::Notice(Notice::PasswordChanged), now).await?;
    work.commit().await?;
    state.mailer.wake();
    accounts::revoke_sign_ins(&state, user.id).await?;
    state.audit.record(audit.event(now, AuditKind::PasswordChange, Some(user.id), Outcome::Success));
    let response = StatusCode::NO_CONTENT.into_response();
    Ok(if is_session { with_cookie(response, &cleared_cookie(&state)) } else { response })
}

/// Every user, a page at a time.
#[utoipa::path(
    get,
    path = "/api/admin/users",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [])),
    params(Page),
    responses(
        (status = 200, description = "A page of users.", body = List<User>),
        (status = 400, description = "A malformed `limit` or `cursor`."),
        (status = 403, description = "Only admins may list users."),
    )
)]
async fn list_users(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    page: Page,
) -> Result<Json<List<User>>, ApiError> {
    state.authorize(&caller, Action::ListUsers, Resource::Users, &audit)?;
    let rows = state.store.list_users(page.after, page.limit + 1).await?;
    Ok(Json(List::from_rows(rows, page.limit, |user| user.id)))
}

/// An admin's change to a user; absent members stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AdminUserUpdate {
    role: Option<Role>,
    #[serde(default, deserialize_with = "crate::extract::explicit_null")]
    #[schema(schema_with = openapi::department)]
    department: Option<Option<String>>,
    /// A disabled user cannot sign in, and their credentials stop working.
    disabled: Option<bool>,
}

/// Changes a user's role, department or disabled flag. A change of role or
/// department, or disabling, ends the user's tokens and sessions.
#[utoipa::path(
    patch,
    path = "/api/admin/users/{id}",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    params(("id" = Uuid, Path, description = "The user's id; a malformed one is 404.")),
    request_body = AdminUserUpdate,
    responses(
        (status = 200, description = "The changed user.", body = User),
        (status = 403, description = "Only admins may change users (whether or not the id exists)."),
        (status = 404, description = "No user has this id."),
        (status = 409, description = "This would leave no active admin."),
    )
)]
async fn update_user(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(update): JsonBody<AdminUserUpdate>,
) -> Result<Json<User>, ApiError> {
    if caller.user().is_none() {
        return Err(ApiError::Unauthorized { token_sent: false });
    }
    let id = parse_id(&id)?;
    let department = match update.department {
        Some(Some(text)) => Some(
            Department::parse(&text)
                .map_err(|message| ApiError::Validation(vec![FieldError::new("department", message)]))?,
        ),
        Some(None) => Some(None),
        None => None,
    };
    target_user(&state, &caller, Action::UpdateUser, id, &audit).await?;
    let changes = UserChanges { role: update.role, department, disabled: update.disabled, ..Default::default() };
    // The store refuses to demote or disable the last active admin, and
    // says what changed, from the row as it was, in the same transaction.
    let UserChange { user: after, role_changed, access_changed } = state.store.apply_user_change(id, &changes).await?;
    if access_changed {
        // Role and department live on in issued tokens (and access at all,
        // for a disabled user): cut them, and drop the keys everywhere.
        accounts::revoke_everything(&state, id).await?;
    }
    if role_changed {
        state.audit.record(audit.event(state.clock.now(), AuditKind::RoleChange, Some(id), Outcome::Success));
    }
    Ok(Json(after))
}

/// Deletes a user; their tokens and sessions die with them.
#[utoipa::path(
    delete,
    path = "/api/users/{id}",
    tag = tags::USERS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    params(("id" = Uuid, Path, description = "The user's id; a malformed one is 404.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "Only admins may delete users (whether or not the id exists)."),
        (status = 404, description = "No user has this id."),
        (status = 409, description = "The last active admin cannot be deleted."),
    )
)]
async fn delete_user(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if caller.user().is_none() {
        return Err(ApiError::Unauthorized { token_sent: false });
    }
    let id = parse_id(&id)?;
    target_user(&state, &caller, Action::DeleteUser, id, &audit).await?;
    match state.store.delete_user(id).await {
        Ok(()) => {}
        Err(StoreError::LastActiveAdmin) => {
            return Err(ApiError::Conflict("The last active admin cannot be deleted.".into()));
        }
        Err(other) => return Err(other.into()),
    }
    // Access tokens outlive the row: revoke them too.
    accounts::revoke_everything(&state, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
