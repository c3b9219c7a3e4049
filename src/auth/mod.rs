//! Authentication: who the caller is.
//!
//! - `password`: Argon2id hashing off the async workers;
//! - `keys`, `tokens`: signing keys and access JWTs;
//! - `secret`: opaque random credentials (refresh tokens, session ids, CSRF);
//! - `revocation`: the in-memory list every access token is checked against;
//! - `throttle`: failed-login budgets (per client, per account, per device);
//! - `device`: the signed device cookie of a client that signed in before;
//! - `principal`: who is calling, as handlers see it.

pub mod api_keys;
pub mod device;
pub mod failed_tokens;
pub mod keys;
pub mod oauth;
pub mod passkey;
pub mod password;
pub mod principal;
pub mod revocation;
pub mod secret;
pub mod signers;
pub mod throttle;
pub mod tokens;
pub mod totp;
