//! The posts table of API.md, cell by cell, for admin, manager (same and
//! other department), user (own and other's post) and guest, plus the
//! dashboard, IDOR attempts and policy files.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, spawn_app, spawn_with};

async fn create_post(app: &TestApp, token: &str, title: &str) -> Value {
    let response = app
        .send(app.client.post(app.url("/api/posts")).bearer_auth(token).json(&json!({"title": title, "body": "text"})))
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let post = response.json();
    assert_eq!(response.header("location"), Some(format!("/api/posts/{}", post["id"].as_str().unwrap()).as_str()));
    post
}

#[derive(Clone, Copy, Debug)]
enum Actor {
    Admin,
    Manager,
    User,
    Guest,
}

struct World {
    app: TestApp,
    admin: String,
    manager: String,
    user: String,
}

impl World {
    async fn new() -> Self {
        let app = spawn_app().await;
        let admin = app.token_for(&app.users.admin).await;
        let manager = app.token_for(&app.users.manager).await;
        let user = app.token_for(&app.users.user).await;
        Self { app, admin, manager, user }
    }

    fn token(&self, actor: Actor) -> Option<&str> {
        match actor {
            Actor::Admin => Some(&self.admin),
            Actor::Manager => Some(&self.manager),
            Actor::User => Some(&self.user),
            Actor::Guest => None,
        }
    }

    /// A post by the seeded user (department sales) and one by "other"
    /// (department support).
    async fn fresh_posts(&self) -> (String, String) {
        let own = create_post(&self.app, &self.user, "by user").await["id"].as_str().unwrap().to_owned();
        let other_token = self.app.token_for(&self.app.users.other).await;
        let other = create_post(&self.app, &other_token, "by other").await["id"].as_str().unwrap().to_owned();
        (own, other)
    }

    async fn call(
        &self,
        actor: Actor,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> crate::helpers::TestResponse {
        let mut request = self.app.client.request(method, self.app.url(path));
        if let Some(token) = self.token(actor) {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.app.send(request).await
    }

    async fn title_of(&self, id: &str) -> Option<String> {
        let response = self.app.get(&format!("/api/posts/{id}")).await;
        (response.status == 200).then(|| response.json()["title"].as_str().unwrap().to_owned())
    }
}

#[tokio::test]
async fn everyone_reads_posts() {
    let world = World::new().await;
    let (own, _) = world.fresh_posts().await;
    for actor in [Actor::Admin, Actor::Manager, Actor::User, Actor::Guest] {
        let list = world.call(actor, reqwest::Method::GET, "/api/posts", None).await;
        assert_eq!(list.status, 200, "{actor:?}");
        assert_eq!(list.json()["items"].as_array().unwrap().len(), 2);
        let one = world.call(actor, reqwest::Method::GET, &format!("/api/posts/{own}"), None).await;
        assert_eq!(one.status, 200, "{actor:?}");
        assert_eq!(one.json()["author_id"], world.app.users.user.id.to_string());
    }
}

#[tokio::test]
async fn signed_in_users_create_posts_and_guests_may_not() {
    let world = World::new().await;
    for actor in [Actor::Admin, Actor::Manager, Actor::User] {
        let created =
            world.call(actor, reqwest::Method::POST, "/api/posts", Some(json!({"title": " T ", "body": "B"}))).await;
        assert_eq!(created.status, 201, "{actor:?}: {}", created.body);
        let post = created.json();
        assert_eq!(post["title"], "T");
        assert_eq!(world.title_of(post["id"].as_str().unwrap()).await.as_deref(), Some("T"), "stored");
    }
    world
        .call(Actor::Guest, reqwest::Method::POST, "/api/posts", Some(json!({"title": "T", "body": "B"})))
        .await
        .assert_problem(401);
    let list = world.app.get("/api/posts").await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "the guest's post was not stored");
}

/// The newest page is cached and its JSON kept (`PostsPage`): every write
/// shows in the very next read, and pages still chain by cursor.
#[tokio::test]
async fn the_list_shows_each_write_at_once_and_pages_by_cursor() {
    let world = World::new().await;
    let app = &world.app;
    let mut ids = Vec::new();
    for title in ["first", "second", "third"] {
        ids.push(create_post(app, &world.user, title).await["id"].as_str().unwrap().to_owned());
    }
    let titles = |list: &Value| -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|post| post["title"].as_str().unwrap().to_owned()).collect()
    };
    let first = app.get("/api/posts?limit=2").await;
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(titles(&first.json()), ["third", "second"]);
    assert_eq!(app.get("/api/posts?limit=2").await.body, first.body, "a repeated read is the same page");

    let renamed = world
        .call(
            Actor::User,
            reqwest::Method::PUT,
            &format!("/api/posts/{}", ids[2]),
            Some(json!({"title": "renamed", "body": "b"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let page = app.get("/api/posts?limit=2").await.json();
    assert_eq!(titles(&page), ["renamed", "second"]);

    let cursor = page["next_cursor"].as_str().expect("a third post remains");
    let rest = app.get(&format!("/api/posts?limit=2&cursor={cursor}")).await.json();
    assert_eq!(titles(&rest), ["first"]);
    assert!(rest["next_cursor"].is_null());

    let deleted = world.call(Actor::Admin, reqwest::Method::DELETE, &format!("/api/posts/{}", ids[2]), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let page = app.get("/api/posts?limit=2").await.json();
    assert_eq!(titles(&page), ["second", "first"]);
    assert!(page["next_cursor"].is_null());
    create_post(app, &world.user, "fourth").await;
    assert_eq!(titles(&app.get("/api/posts?limit=2").await.json()), ["fourth", "second"]);
}

#[tokio::test]
async fn updates_follow_ownership_department_and_role() {
    let world = World::new().await;
    // (actor, which post, expected status)
    let cells = [
        (Actor::Admin, "own", 200),
        (Actor::Admin, "other", 200),
        (Actor::Manager, "own", 200),   // author in the manager's department
        (Actor::Manager, "other", 403), // author in another department
        (Actor::User, "own", 200),
        (Actor::User, "other", 403),
        (Actor::Guest, "own", 401),
        (Actor::Guest, "other", 401),
    ];
    for (actor, which, expected) in cells {
        let (own, other) = world.fresh_posts().await;
        let id = if which == "own" { own } else { other };
        let title = format!("edited by {actor:?}");
        let response = world
            .call(
                actor,
                reqwest::Method::PUT,
                &format!("/api/posts/{id}"),
                Some(json!({"title": title, "body": "new"})),
            )
            .await;
        assert_eq!(response.status, expected, "{actor:?} on {which}: {}", response.body);
        let stored = world.title_of(&id).await.unwrap();
        if expected == 200 {
            assert_eq!(response.json()["title"], title);
            assert_eq!(stored, title, "{actor:?} on {which}: the store has the edit");
        } else {
            response.assert_problem(expected);
            assert_ne!(stored, title, "{actor:?} on {which}: nothing changed");
        }
    }
}

#[tokio::test]
async fn deletes_are_for_managers_and_admins() {
    let world = World::new().await;
    let cells = [
        (Actor::Admin, "own", 204),
        (Actor::Admin, "other", 204),
        (Actor::Manager, "own", 204),
        (Actor::Manager, "other", 204),
        (Actor::User, "own", 403),
        (Actor::User, "other", 403),
        (Actor::Guest, "own", 401),
        (Actor::Guest, "other", 401),
    ];
    for (actor, which, expected) in cells {
        let (own, other) = world.fresh_posts().await;
        let id = if which == "own" { own } else { other };
        let response = world.call(actor, reqwest::Method::DELETE, &format!("/api/posts/{id}"), None).await;
        assert_eq!(response.status, expected, "{actor:?} on {which}: {}", response.body);
        let still_there = world.title_of(&id).await.is_some();
        assert_eq!(still_there, expected != 204, "{actor:?} on {which}");
    }
}

#[tokio::test]
async fn missing_posts_are_404_for_those_allowed_to_see_posts() {
    let world = World::new().await;
    let missing = format!("/api/posts/{}", uuid::Uuid::now_v7());
    for actor in [Actor::Admin, Actor::Manager, Actor::User, Actor::Guest] {
        world.call(actor, reqwest::Method::GET, &missing, None).await.assert_problem(404);
        world.call(actor, reqwest::Method::GET, "/api/posts/not-a-uuid", None).await.assert_problem(404);
    }
    for actor in [Actor::Admin, Actor::Manager, Actor::User] {
        world
            .call(actor, reqwest::Method::PUT, &missing, Some(json!({"title": "t", "body": "b"})))
            .await
            .assert_problem(404);
        world.call(actor, reqwest::Method::DELETE, &missing, None).await.assert_problem(404);
    }
    world.call(Actor::Guest, reqwest::Method::DELETE, &missing, None).await.assert_problem(401);
}

#[tokio::test]
async fn the_dashboard_is_for_admins_with_real_counts() {
    let world = World::new().await;
    world.fresh_posts().await;
    let dashboard = world.call(Actor::Admin, reqwest::Method::GET, "/api/admin/dashboard", None).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    let counts = dashboard.json();
    assert_eq!(counts["users"], 4);
    assert_eq!(counts["admins"], 1);
    assert_eq!(counts["managers"], 1);
    assert_eq!(counts["plain_users"], 2);
    assert_eq!(counts["posts"], 2);
    world.call(Actor::Manager, reqwest::Method::GET, "/api/admin/dashboard", None).await.assert_problem(403);
    world.call(Actor::User, reqwest::Method::GET, "/api/admin/dashboard", None).await.assert_problem(403);
    world.call(Actor::Guest, reqwest::Method::GET, "/api/admin/dashboard", None).await.assert_problem(401);
}

#[tokio::test]
async fn post_input_is_validated() {
    let world = World::new().await;
    let long_title = "t".repeat(201);
    let long_body = "b".repeat(8001);
    let cases = [
        (json!({"title": "  ", "body": "b"}), "title"),
        (json!({"title": long_title, "body": "b"}), "title"),
        (json!({"title": "t", "body": ""}), "body"),
        (json!({"title": "t", "body": long_body}), "body"),
        (json!({"title": "t", "body": "b", "author_id": world.app.users.admin.id}), "author_id"),
        (json!({"title": "t"}), "body"),
    ];
    for (body, field) in cases {
        let problem = world.call(Actor::User, reqwest::Method::POST, "/api/posts", Some(body.clone())).await;
        let problem = if problem.status == 413 { problem.assert_problem(413) } else { problem.assert_problem(400) };
        if problem["status"] == 400 {
            assert_eq!(problem["errors"][0]["field"], field, "{body}");
        }
    }
}

#[tokio::test]
async fn idor_attempts_are_refused_and_audited() {
    let world = World::new().await;
    let (_, other) = world.fresh_posts().await;
    let response = world
        .call(
            Actor::User,
            reqwest::Method::PUT,
            &format!("/api/posts/{other}"),
            Some(json!({"title": "mine now", "body": "x"})),
        )
        .await;
    response.assert_problem(403);
    world.call(Actor::User, reqwest::Method::DELETE, &format!("/api/posts/{other}"), None).await.assert_problem(403);
    let logs = world.app.logs.contents();
    let denial = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| {
            event["event"] == "forbidden"
                && event["detail"].as_str().is_some_and(|d| d.starts_with("UpdatePost on Post"))
        })
        .expect("an audited denial naming action and resource");
    assert_eq!(denial["user_id"], world.app.users.user.id.to_string());
    // Non-admins probing user ids get the same 403 whether the id exists.
    for id in [world.app.users.admin.id, uuid::Uuid::now_v7()] {
        world
            .call(
                Actor::User,
                reqwest::Method::PATCH,
                &format!("/api/admin/users/{id}"),
                Some(json!({"role": "admin"})),
            )
            .await
            .assert_problem(403);
        world
            .call(Actor::Manager, reqwest::Method::DELETE, &format!("/api/users/{id}"), None)
            .await
            .assert_problem(403);
    }
    let scrape = world
        .app
        .client
        .get(format!("http://{}/metrics", world.app.admin_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(scrape.contains(r#"rampart_authz_decisions_total{action="UpdatePost",decision="deny"}"#), "{scrape}");
    assert!(scrape.contains(r#"rampart_authz_decisions_total{action="CreatePost",decision="allow"} 2"#), "{scrape}");
}

#[tokio::test]
async fn a_manager_without_a_department_edits_only_their_own_posts() {
    let world = World::new().await;
    let path = format!("/api/admin/users/{}", world.app.users.manager.id);
    let cleared = world.call(Actor::Admin, reqwest::Method::PATCH, &path, Some(json!({"department": null}))).await;
    assert_eq!(cleared.status, 200);
    let manager = world.app.token_for(&world.app.users.manager).await;
    let (own_by_user, _) = world.fresh_posts().await;
    let response = world
        .app
        .send(
            world
                .app
                .client
                .put(world.app.url(&format!("/api/posts/{own_by_user}")))
                .bearer_auth(&manager)
                .json(&json!({"title": "x", "body": "y"})),
        )
        .await;
    response.assert_problem(403);
}

const USERS_DELETE_OWN: &str = "\n// Users may delete their own posts.\npermit (principal is Rampart::User, action == Rampart::Action::\"DeletePost\", resource)\nwhen { resource.author == principal };\n";

fn policy_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("policy.cedar");
    std::fs::write(&path, text).unwrap();
    path
}

async fn delete_as(app: &TestApp, user: &TestUser, id: &str) -> u16 {
    let token = app.token_for(user).await;
    app.send(app.client.delete(app.url(&format!("/api/posts/{id}"))).bearer_auth(token)).await.status
}

#[tokio::test]
async fn a_custom_policy_file_changes_behaviour_without_code() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, &format!("{}{USERS_DELETE_OWN}", rampart::policy::DEFAULT_POLICY));
    let app = spawn_with(|options| options.config.policy.file = file.clone()).await;
    let user = app.token_for(&app.users.user).await;
    let other = app.token_for(&app.users.other).await;
    let own = create_post(&app, &user, "mine").await["id"].as_str().unwrap().to_owned();
    let theirs = create_post(&app, &other, "theirs").await["id"].as_str().unwrap().to_owned();
    assert_eq!(delete_as(&app, &app.users.user, &theirs).await, 403);
    assert_eq!(delete_as(&app, &app.users.user, &own).await, 204);
}

#[tokio::test]
async fn a_reload_takes_a_valid_policy_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, rampart::policy::DEFAULT_POLICY);
    let app = spawn_with(|options| options.config.policy.file = file.clone()).await;
    let user = app.token_for(&app.users.user).await;
    let first = create_post(&app, &user, "one").await["id"].as_str().unwrap().to_owned();
    let second = create_post(&app, &user, "two").await["id"].as_str().unwrap().to_owned();
    assert_eq!(delete_as(&app, &app.users.user, &first).await, 403);

    policy_file(&dir, &format!("{}{USERS_DELETE_OWN}", rampart::policy::DEFAULT_POLICY));
    app.authorizer.reload().expect("a valid policy reloads");
    assert_eq!(delete_as(&app, &app.users.user, &first).await, 204, "the new rule is in force");

    policy_file(&dir, "permit (principal, action, resource) when { resource.no_such_attribute };");
    let error = app.authorizer.reload().expect_err("an invalid policy is refused");
    assert!(error.to_string().contains("policy.cedar:1:"), "{error}");
    assert_eq!(delete_as(&app, &app.users.user, &second).await, 204, "the previous policy stays in force");
    assert_eq!(app.get("/api/posts").await.status, 200);
}

#[tokio::test]
async fn turning_the_demo_off_removes_posts_and_the_dashboard() {
    let app = spawn_with(|options| options.config.demo.enabled = false).await;
    let admin = app.token_for(&app.users.admin).await;
    for path in ["/api/posts", "/api/posts/01900000-0000-7000-8000-000000000000", "/api/admin/dashboard"] {
        app.get_as(path, &admin).await.assert_problem(404);
    }
    let document = app.get("/openapi.json").await.json();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.keys().all(|path| !path.starts_with("/api/posts") && path != "/api/admin/dashboard"), "{paths:?}");
    assert!(paths.contains_key("/api/profile"), "the rest stays");
    assert_eq!(app.get_as("/api/profile", &admin).await.status, 200);
}
