//! `/api/profile*` (the caller's own account) and the admin user routes.
//! Every decision goes through `policy::authorize`; no role checks here.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, patch, put},
};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::{
    accounts,
    app::AppState,
    audit::{AuditContext, Outcome},
    auth::principal::{Caller, CurrentUser, Principal},
    domain::{Email, Password, Role, User, UserName},
    error::{ApiError, FieldError},
    extract::{JsonBody, List, Page},
    policy::{Action, Resource},
    routes::auth::{cleared_cookie, with_cookie},
    store::{StoreError, UserChanges},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/profile", get(read_profile).patch(update_profile))
        .route("/api/profile/password", put(change_password))
        .route("/api/admin/users", get(list_users))
        .route("/api/admin/users/{id}", patch(update_user))
        .route("/api/users/{id}", delete(delete_user))
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
async fn own_user(state: &AppState, principal: Principal, audit: &AuditContext) -> Result<User, ApiError> {
    let user = match state.store.user_by_id(principal.user_id).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(ApiError::Unauthorized { token_sent: true }),
        Err(other) => return Err(other.into()),
    };
    state.authorize(&Caller::User(principal), Action::ManageOwnAccount, Resource::User(&user), audit)?;
    Ok(user)
}

async fn read_profile(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
) -> Result<Json<User>, ApiError> {
    Ok(Json(own_user(&state, principal, &audit).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileUpdate {
    name: String,
}

async fn update_profile(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
    JsonBody(update): JsonBody<ProfileUpdate>,
) -> Result<Json<User>, ApiError> {
    let user = own_user(&state, principal, &audit).await?;
    let name = UserName::parse(&update.name).map_err(|m| ApiError::Validation(vec![FieldError::new("name", m)]))?;
    Ok(Json(state.store.rename_user(user.id, &name).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    /// Required when the account has a password; an account made by an
    /// OAuth sign-in has none and sets its first one without it.
    current_password: Option<SecretString>,
    new_password: SecretString,
}

async fn change_password(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
    JsonBody(change): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    let is_session = principal.is_session();
    let user = own_user(&state, principal, &audit).await?;
    let now = state.clock.now();
    let stored = state.store.password_hash(user.id).await?;
    let current_ok = match (&stored, &change.current_password) {
        (Some(hash), Some(current)) => state.hasher.verify(current, hash).await?,
        (Some(_), None) => {
            return Err(ApiError::Validation(vec![FieldError::new("current_password", "is required")]));
        }
        (None, _) => true,
    };
    if !current_ok {
        state.audit.record(audit.event(now, "password_change", Some(user.id), Outcome::Denied));
        return Err(ApiError::forbidden("The current password is not correct."));
    }
    let email = Email::parse(&user.email).map_err(|_| anyhow::anyhow!("stored email no longer parses"))?;
    let name = UserName::parse(&user.name).map_err(|_| anyhow::anyhow!("stored name no longer parses"))?;
    let new_password = Password::parse(change.new_password, &email, &name)
        .map_err(|m| ApiError::Validation(vec![FieldError::new("new_password", m)]))?;
    let phc = state.hasher.hash(new_password.secret()).await?;
    state.store.set_password_hash(user.id, &phc).await?;
    accounts::revoke_everything(&state, user.id).await?;
    state.audit.record(audit.event(now, "password_change", Some(user.id), Outcome::Success));
    let response = StatusCode::NO_CONTENT.into_response();
    Ok(if is_session { with_cookie(response, &cleared_cookie(&state)) } else { response })
}

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

/// `Some(None)` for an explicit `null`, `None` when the key is absent.
fn explicit_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminUserUpdate {
    role: Option<Role>,
    #[serde(default, deserialize_with = "explicit_null")]
    department: Option<Option<String>>,
    disabled: Option<bool>,
}

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
        Some(Some(text)) if text.trim().is_empty() => Some(None),
        Some(Some(text)) if text.trim().chars().count() > 100 || text.chars().any(char::is_control) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "department",
                "must be at most 100 characters without control characters",
            )]));
        }
        Some(Some(text)) => Some(Some(text.trim().to_owned())),
        other => other,
    };
    let before = target_user(&state, &caller, Action::UpdateUser, id, &audit).await?;
    let loses_admin = before.role == Role::Admin
        && !before.disabled
        && (update.role.is_some_and(|role| role != Role::Admin) || update.disabled == Some(true));
    if loses_admin && state.store.count_active_admins().await? <= 1 {
        return Err(ApiError::Conflict("This would leave no active admin.".into()));
    }
    let changes = UserChanges { role: update.role, department, disabled: update.disabled };
    let after = state.store.change_user(id, &changes).await?;
    let role_changed = after.role != before.role;
    if role_changed || after.department != before.department || (after.disabled && !before.disabled) {
        // Role and department live on in issued tokens (and access at all,
        // for a disabled user): cut them.
        accounts::revoke_everything(&state, id).await?;
    }
    if role_changed {
        state.audit.record(audit.event(state.clock.now(), "role_change", Some(id), Outcome::Success));
    }
    Ok(Json(after))
}

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
    let user = target_user(&state, &caller, Action::DeleteUser, id, &audit).await?;
    if user.role == Role::Admin && !user.disabled && state.store.count_active_admins().await? <= 1 {
        return Err(ApiError::Conflict("The last active admin cannot be deleted.".into()));
    }
    accounts::revoke_everything(&state, id).await?;
    state.store.delete_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
