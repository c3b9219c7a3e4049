//! The request pipeline's middleware, outermost first as `app::router`
//! stacks them:
//!
//! request id → client IP → security headers → access log + metrics →
//! problem rendering → blocked clients → panic catching → URI/header size
//! limits → timeout → CORS → body limit → authenticate → rate limit → route.
//!
//! Layers that answer early return `ApiError` (or a bare status that the
//! `problem` layer fills in), so every refusal has the same problem+json body.

pub mod access_log;
pub mod authenticate;
pub mod block;
pub mod client_ip;
pub mod limits;
pub mod panic;
pub mod problem;
pub mod rate_limit;
pub mod request_id;
pub mod security_headers;
pub mod timeout;

use std::net::SocketAddr;

/// The peer of the connection a request came on, set by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);
