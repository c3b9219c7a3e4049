//! The request pipeline's layers, one file each, called by the two
//! services of `pipeline.rs` in the order `pipeline::STAGES` lists (the
//! one place that order is written down).
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
