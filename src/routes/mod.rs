//! HTTP routes. Each module exports a `router()`; `app::router` merges them
//! under the shared layer stack. Handlers stay thin: parse input, ask the
//! store (and, as it lands, the policy), shape the response.

pub mod admin_page;
pub mod audit;
pub mod auth;
pub mod blocks;
pub mod docs;
pub mod oauth;
pub mod ops;
pub mod pages;
pub mod posts;
pub mod users;
