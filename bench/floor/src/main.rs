//! floor: the ceiling peer (`../shared/peers/bare-axum`) answering with the
//! response bytes API.md requires of Rampart, and doing nothing else.
//!
//! Same axum and tokio setup, same routes and bodies as the ceiling, plus
//! the headers every Rampart response must carry (the helmet-style set,
//! `Cache-Control: no-store`, a UUID-long `X-Request-Id`) and, on `/api/*`,
//! the two `RateLimit` fields of the benchmark's configuration. `/flood`
//! answers what a Rampart 429 looks like. All values are static: no
//! request id is made, no limit counted, no log written.
//!
//! Its throughput divided by the ceiling's is the best ratio any server
//! that honours API.md could reach in `bench/run.sh` on the same machine:
//! what is left is `wrk`, the kernel and hyper handling the bytes.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Serialize;

#[derive(Serialize, Clone)]
struct User {
    id: &'static str,
    email: &'static str,
    name: &'static str,
    role: &'static str,
    department: Option<&'static str>,
    disabled: bool,
    created_at: &'static str,
}

#[derive(Serialize, Clone)]
struct Post {
    id: String,
    title: String,
    body: String,
    author_id: &'static str,
    created_at: &'static str,
    updated_at: &'static str,
}

#[derive(Serialize)]
struct PostList<'a> {
    items: &'a [Post],
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    uptime_seconds: u64,
    timestamp: String,
    version: &'static str,
}

struct AppState {
    started: Instant,
    user: User,
    posts_json: Bytes,
}

const USER_ID: &str = "01890a5d-ac96-774b-bcce-b302099a8057";
const CREATED: &str = "2026-01-01T00:00:00Z";

fn build_state() -> AppState {
    let user = User {
        id: USER_ID,
        email: "bench@example.com",
        name: "Bench User",
        role: "user",
        department: None,
        disabled: false,
        created_at: CREATED,
    };
    let posts: Vec<Post> = (0..20)
        .map(|i| Post {
            id: format!("01890a5d-ac96-774b-bcce-b30209{:06x}", i),
            title: format!("Benchmark post {i}"),
            body: format!("Body of benchmark post number {i}. Lorem ipsum dolor sit amet."),
            author_id: USER_ID,
            created_at: CREATED,
            updated_at: CREATED,
        })
        .collect();
    let posts_json = Bytes::from(
        serde_json::to_vec(&PostList { items: &posts, next_cursor: None }).expect("static data serialises"),
    );
    AppState { started: Instant::now(), user, posts_json }
}

/// RFC 3339 UTC timestamp from the system clock (as the ceiling makes it).
fn now_rfc3339() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

fn pair(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
    (HeaderName::from_static(name), HeaderValue::from_static(value))
}

/// API.md "Headers on every response", `Cache-Control` and `X-Request-Id`.
fn required() -> [(HeaderName, HeaderValue); 13] {
    [
        pair("x-content-type-options", "nosniff"),
        pair("x-frame-options", "DENY"),
        pair("referrer-policy", "no-referrer"),
        pair("cross-origin-opener-policy", "same-origin"),
        pair("cross-origin-resource-policy", "same-origin"),
        pair("origin-agent-cluster", "?1"),
        pair(
            "permissions-policy",
            "accelerometer=(), autoplay=(), camera=(), display-capture=(), encrypted-media=(), \
             fullscreen=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), \
             payment=(), picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), \
             sync-xhr=(), usb=(), xr-spatial-tracking=(), interest-cohort=()",
        ),
        pair("x-dns-prefetch-control", "off"),
        pair("x-permitted-cross-domain-policies", "none"),
        pair("x-xss-protection", "0"),
        pair("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
        pair("cache-control", "no-store"),
        pair("x-request-id", "01a22331-5fd7-7c0e-9365-1747380a5c76"),
    ]
}

/// The `RateLimit` fields of an `/api/*` answer under `bench/run.sh`'s limits.
fn rate_limit() -> [(HeaderName, HeaderValue); 2] {
    [
        pair("ratelimit-policy", "\"api\";q=1000000000;w=60, \"global\";q=1000000000;w=900"),
        pair("ratelimit", "\"api\";r=999114280;t=72, \"global\";r=997874798;t=1152"),
    ]
}

async fn health(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    let body = Health {
        status: "healthy",
        uptime_seconds: st.started.elapsed().as_secs(),
        timestamp: now_rfc3339(),
        version: env!("CARGO_PKG_VERSION"),
    };
    (required(), Json(body))
}

async fn profile(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    (required(), rate_limit(), Json(st.user.clone()))
}

async fn posts(State(st): State<Arc<AppState>>) -> Response {
    (required(), rate_limit(), [(header::CONTENT_TYPE, "application/json")], st.posts_json.clone()).into_response()
}

/// What a refused request looks like (`bench/run.sh` S5).
async fn flood() -> Response {
    let refusal = [
        pair("retry-after", "1132"),
        pair("ratelimit-policy", "\"api\";q=1000000000;w=60, \"global\";q=1;w=900"),
        pair("ratelimit", "\"api\";r=999999998;t=112, \"global\";r=0;t=1132"),
        pair("content-type", "application/problem+json"),
    ];
    let body = "{\"type\":\"about:blank\",\"title\":\"Too Many Requests\",\"status\":429,\
                \"detail\":\"Too many requests; retry after the time in Retry-After.\",\
                \"request_id\":\"01a22331-5fd7-7c0e-9365-1747380a5c76\"}";
    (StatusCode::TOO_MANY_REQUESTS, required(), refusal, body).into_response()
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let state = Arc::new(build_state());
    let app = Router::new()
        .route("/health", get(health))
        .route("/api/profile", get(profile))
        .route("/api/posts", get(posts))
        .route("/flood", get(flood))
        .with_state(state);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("floor: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("floor: server error: {e}");
        std::process::exit(1);
    }
}
