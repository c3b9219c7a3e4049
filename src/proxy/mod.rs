//! Protect mode (PROTECT.md): Rampart in front of an API it did not write,
//! as its gateway or as the forward-auth service of another proxy.
//!
//! - `table`, `path`: the route table of `[[proxy.routes]]` and the path
//!   shapes refused before any matching;
//! - `gateway`: which requests go upstream, and their journey there and back;
//! - `headers`: what crosses in either direction; `assertion`: the signed
//!   statement of who is calling; `body`: streaming with limits and idle
//!   timeouts; `upstream`: the pooled client and health of one upstream;
//! - `websocket`: upgraded connections, closed when credentials are revoked.

pub mod assertion;
pub mod body;
pub mod gateway;
pub mod headers;
pub mod path;
pub mod table;
pub mod upstream;
pub mod websocket;

pub use gateway::{Dispatch, FromUpstream, Gateway, Proxied};
