//! Opaque credentials (refresh tokens, session ids, CSRF tokens): 256 bits
//! from the OS-seeded CSPRNG, URL-safe base64. Only their SHA-256 is ever
//! stored; a fast hash is right here because the input is random, not a
//! password. Comparisons of presented values go through `subtle`.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh random token with a readable prefix (`rt_`, ...), 256 bits.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `presented` hashes to `expected`, in constant time.
pub fn matches(presented: &str, expected: &[u8; 32]) -> bool {
    hash(presented).ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_verifiable() {
        let a = new_token("rt_");
        let b = new_token("rt_");
        assert_ne!(a, b);
        assert!(a.starts_with("rt_") && a.len() == 3 + 43, "{a}");
        assert!(matches(&a, &hash(&a)));
        assert!(!matches(&b, &hash(&a)));
    }
}
