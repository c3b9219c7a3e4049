//! Rampart: a secure-by-default API server.
//!
//! The modules in request order:
//! - `server`: listeners, TLS (`tls`), connection limits, graceful shutdown;
//! - `layers`: the pipeline around the routes, in the order
//!   `layers::pipeline::STAGES` lists; `route_class` is how the routers tell
//!   it which routes it treats differently;
//! - `routes`: the handlers, with `extract::JsonBody` for input and
//!   `domain` types for validated values; each is registered with its
//!   OpenAPI description, which `openapi` completes and `/openapi.json` serves;
//! - `request_context`: the per-request facts the layers gather and the
//!   handlers and `audit` read;
//! - `accounts`, `auth`: account rules (answering `accounts::AccountError`),
//!   password hashing, keys;
//! - `policy`, `audit`: who may do what, and the trail of what was done
//!   (its event types live in `domain`);
//! - `store`: the `Store` traits and their SQLite and PostgreSQL backends;
//! - `error`: the one error type and its problem+json form.
//!
//! Around them: `config` (typed, layered configuration), `telemetry`
//! (redacting log output), `metrics` (each component registers its own
//! series), `clock`, `housekeeping`, and `cli` (the commands).
#![deny(unsafe_code)]

pub mod accounts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod defense;
pub mod domain;
pub mod error;
pub mod extract;
pub mod fs;
pub mod housekeeping;
pub mod html;
pub mod json;
pub mod layers;
pub mod limiter;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod proxy;
pub mod request_context;
pub mod route_class;
pub mod routes;
pub mod server;
pub mod shared;
pub mod store;
pub mod telemetry;
pub mod tls;
