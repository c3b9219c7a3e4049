//! HTTP behaviour against a real server on a random port: one test binary,
//! a module per feature.
#![allow(clippy::unwrap_used)]

mod api_keys;
mod audit;
mod auth;
mod browser;
mod cli;
mod connections;
mod defense;
mod deploy;
mod email;
mod forward_auth;
mod helpers;
mod lockout;
mod logging;
mod mfa;
mod oauth;
mod openapi;
mod ops;
mod pages;
mod passkeys;
mod pipeline;
mod postgres;
#[path = "../common/postgres_schema.rs"]
mod postgres_schema;
mod posts;
mod proxy;
mod rate_limit;
mod redis;
mod reliability;
mod sessions;
mod test_routes;
mod tls;
mod tokens;
mod upstream_rig;
mod users;
