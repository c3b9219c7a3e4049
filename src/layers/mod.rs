//! The request pipeline's layers, one file each, called in this order by
//! the two services of `pipeline.rs`:
//!
//! request id → client IP → access log + metrics (+ audit of 401/403/429/5xx,
//! defence counting) → blocked clients → URI/header size limits → timeout →
//! panic catching → CORS → body limit → authenticate → rate limit → route;
//! on the way out: problem rendering → log line → security headers.
//!
//! Layers that answer early return `ApiError` (or a bare status that the
//! `problem` layer fills in), so every refusal has the same problem+json body.

pub mod access_log;
pub mod authenticate;
pub mod block;
pub mod client_ip;
pub mod limits;
pub mod panic;
pub mod pipeline;
pub mod problem;
pub mod rate_limit;
pub mod request_id;
pub mod security_headers;
