//! `/api/posts*` and `/api/admin/dashboard`: the resource that shows RBAC
//! and ABAC. Who may do what is entirely in the policy; handlers load the
//! resource (a missing post is 404 for everyone allowed to see posts), ask
//! `authorize`, validate and store.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    app::AppState,
    audit::AuditContext,
    auth::principal::{Caller, CurrentUser},
    domain::{Post, PostBody, PostTitle, PostWithAuthor},
    error::{ApiError, FieldError},
    extract::{JsonBody, List, Page},
    policy::{Action, Resource},
    store::{DashboardCounts, StoreError},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/posts", get(list_posts).post(create_post))
        .route("/api/posts/{id}", get(read_post).put(update_post).delete(delete_post))
        .route("/api/admin/dashboard", get(dashboard))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostInput {
    pub title: String,
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

async fn list_posts(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
    page: Page,
) -> Result<Json<List<Post>>, ApiError> {
    state.authorize(&caller, Action::ListPosts, Resource::Posts, &audit)?;
    let rows = state.store.list_posts(page.after, page.limit + 1).await?;
    Ok(Json(List::from_rows(rows, page.limit, |post| post.id)))
}

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

#[derive(Serialize)]
struct Dashboard {
    #[serde(flatten)]
    counts: DashboardCounts,
    #[serde(with = "time::serde::rfc3339")]
    generated_at: OffsetDateTime,
}

async fn dashboard(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Caller,
) -> Result<Json<Dashboard>, ApiError> {
    state.authorize(&caller, Action::ViewDashboard, Resource::AdminArea, &audit)?;
    let now = state.clock.now();
    Ok(Json(Dashboard { counts: state.store.dashboard_counts(now).await?, generated_at: now }))
}
