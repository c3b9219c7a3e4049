//! `/api/posts*` and `/api/admin/dashboard`: the resource that shows RBAC
//! and ABAC. Who may do what is entirely in the policy; handlers load the
//! resource (a missing post is 404 for everyone allowed to see posts), ask
//! `authorize`, validate and store.

use std::cell::RefCell;

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
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
    auth::principal::{Caller, CurrentUser},
    domain::{Post, PostBody, PostTitle, PostWithAuthor},
    error::{ApiError, FieldError},
    extract::{JsonBody, List, Page},
    openapi::{self, tags},
    policy::{Action, Resource},
    routes::RenderedBodies,
    store::{PostsPage, StoreError},
};

pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(list_posts, create_post))
        .routes(routes!(read_post, update_post, delete_post))
        .routes(routes!(dashboard))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostInput {
    #[schema(schema_with = openapi::post_title)]
    pub title: String,
    #[schema(schema_with = openapi::post_body)]
    pub body: String,
}

impl PostInput {
    pub fn validate(&self) -> Result<(PostTitle, PostBody), ApiError> {
        let title = PostTitle::parse(&self.title).map_err(|m| FieldError::new("title", m));
        let body = PostBody::parse(&self.body).map_err(|m| FieldError::new("body", m));
        match (title, body) {
            (Ok(title), Ok(body)) => Ok((title, body)),
            (title, body) => Err(ApiError::Validation(title.err().into_iter().chain(body.err()).collect())),
        }
    }
}

/// The post at `id`; malformed ids name no post, so they are 404 too.
async fn load_post(state: &AppState, id: &str) -> Result<PostWithAuthor, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound)?;
    match state.store.post_by_id(id).await {
        Ok(post) => Ok(post),
        Err(StoreError::NotFound) => Err(ApiError::NotFound),
        Err(other) => Err(other.into()),
    }
}

/// Posts, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/posts",
    tag = tags::POSTS,
    security((), ("bearer" = []), ("cookie" = [])),
    params(Page),
    responses(
        (status = 200, description = "A page of posts, newest first.", body = List<Post>),
        (status = 400, description = "A malformed `limit` or `cursor`."),
        (status = 403, description = "The policy does not allow it (the built-in one lets everyone read)."),
    )
)]
async fn list_posts(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    page: Page,
) -> Result<Response, ApiError> {
    state.authorize(&caller, Action::ListPosts, Resource::Posts, &audit)?;
    let rows = state.store.list_posts(page.after, page.limit + 1).await?;
    // The body depends only on the rows and the limit they were read for,
    // and a shared page is only ever read for one limit.
    super::shared_json(&POSTS_PAGE_BODIES, &rows, |rows| {
        super::render_json(&List::from_rows(rows.iter().collect(), page.limit, |post| post.id))
    })
}

thread_local! {
    static POSTS_PAGE_BODIES: RefCell<RenderedBodies<PostsPage>> = RefCell::new(RenderedBodies::new(64));
}

/// One post.
#[utoipa::path(
    get,
    path = "/api/posts/{id}",
    tag = tags::POSTS,
    security((), ("bearer" = []), ("cookie" = [])),
    params(("id" = Uuid, Path, description = "The post's id; a malformed one is 404.")),
    responses(
        (status = 200, description = "The post.", body = Post),
        (status = 403, description = "The policy does not allow it (the built-in one lets everyone read)."),
        (status = 404, description = "No post has this id."),
    )
)]
async fn read_post(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Post>, ApiError> {
    let post = load_post(&state, &id).await?;
    state.authorize(&caller, Action::ReadPost, Resource::Post(&post), &audit)?;
    Ok(Json(post.post))
}

/// Writes a post as the caller.
#[utoipa::path(
    post,
    path = "/api/posts",
    tag = tags::POSTS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    request_body = PostInput,
    responses(
        (status = 201, description = "The new post.", body = Post,
            headers(("Location" = String, description = "`/api/posts/{id}` of the new post."))),
        (status = 403, description = "The policy does not allow it."),
    )
)]
async fn create_post(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
    JsonBody(input): JsonBody<PostInput>,
) -> Result<Response, ApiError> {
    let author_id = principal.user_id;
    state.authorize(&Caller::User(principal), Action::CreatePost, Resource::Posts, &audit)?;
    let (title, body) = input.validate()?;
    let post = state.store.create_post(author_id, &title, &body).await?;
    let mut response = (StatusCode::CREATED, Json(&post)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/posts/{}", post.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Replaces a post's title and body: admins any post, managers posts of
/// their department, users their own (the built-in policy).
#[utoipa::path(
    put,
    path = "/api/posts/{id}",
    tag = tags::POSTS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    params(("id" = Uuid, Path, description = "The post's id; a malformed one is 404.")),
    request_body = PostInput,
    responses(
        (status = 200, description = "The updated post.", body = Post),
        (status = 403, description = "The policy does not let the caller edit this post."),
        (status = 404, description = "No post has this id."),
    )
)]
async fn update_post(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PostInput>,
) -> Result<Json<Post>, ApiError> {
    let post = load_post(&state, &id).await?;
    state.authorize(&Caller::User(principal), Action::UpdatePost, Resource::Post(&post), &audit)?;
    let (title, body) = input.validate()?;
    Ok(Json(state.store.update_post(post.post.id, &title, &body).await?))
}

/// Deletes a post (admins and managers, under the built-in policy).
#[utoipa::path(
    delete,
    path = "/api/posts/{id}",
    tag = tags::POSTS,
    security(("bearer" = []), ("cookie" = [], "csrf" = [])),
    params(("id" = Uuid, Path, description = "The post's id; a malformed one is 404.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "The policy does not let the caller delete this post."),
        (status = 404, description = "No post has this id."),
    )
)]
async fn delete_post(
    State(state): State<AppState>,
    audit: AuditContext,
    CurrentUser(principal): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let post = load_post(&state, &id).await?;
    state.authorize(&Caller::User(principal), Action::DeletePost, Resource::Post(&post), &audit)?;
    state.store.delete_post(post.post.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
struct Dashboard {
    users: u64,
    admins: u64,
    managers: u64,
    plain_users: u64,
    disabled_users: u64,
    posts: u64,
    active_sessions: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(schema_with = openapi::date_time)]
    generated_at: OffsetDateTime,
}

/// Counts of users, posts and sessions.
#[utoipa::path(
    get,
    path = "/api/admin/dashboard",
    tag = tags::ADMIN,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Counts of users, posts and sessions.", body = Dashboard),
        (status = 403, description = "Only admins may see the dashboard."),
    )
)]
async fn dashboard(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
) -> Result<Json<Dashboard>, ApiError> {
    state.authorize(&caller, Action::ViewDashboard, Resource::AdminArea, &audit)?;
    let now = state.clock.now();
    let counts = state.store.dashboard_counts(now).await?;
    Ok(Json(Dashboard {
        users: counts.users,
        admins: counts.admins,
        managers: counts.managers,
        plain_users: counts.plain_users,
        disabled_users: counts.disabled_users,
        posts: counts.posts,
        active_sessions: counts.active_sessions,
        generated_at: now,
    }))
}
