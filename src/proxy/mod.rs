//! Protect mode (PROTECT.md): Rampart in front of other HTTP APIs. `table`
//! is the route table and its matching rules; `path` the rules a path must
//! pass before any of them.

pub mod path;
pub mod table;
