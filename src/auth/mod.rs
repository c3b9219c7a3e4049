//! Authentication: who the caller is.
//!
//! `password` hashes and verifies with Argon2id off the async workers.
//! Token, session and key handling join here as the identity layer grows.

pub mod keys;
pub mod password;
