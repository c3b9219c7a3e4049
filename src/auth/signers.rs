//! jsonwebtoken's crypto, with Ed25519 signing keys kept once parsed.
//!
//! `jsonwebtoken::encode` asks its crypto provider for a signer on every
//! call, and the RustCrypto provider builds an Ed25519 key from the key's
//! bytes each time, which derives the public key again: a second scalar
//! multiplication beside the signature's own, half the cost of a
//! signature. The gateway signs one assertion per request, so this
//! provider keeps each Ed25519 key it has built (a handful: the current and
//! assertion keys) and lends a copy. Everything else, and all verification,
//! is the RustCrypto provider unchanged.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex, Once},
};

use ed25519_dalek::{SigningKey, pkcs8::DecodePrivateKey};
use jsonwebtoken::{
    Algorithm, EncodingKey,
    crypto::{CryptoProvider, JwtSigner, rust_crypto},
    errors::{ErrorKind, Result},
    signature::{Error, Signer},
};

/// Parsed Ed25519 keys by their PKCS#8 bytes. Keys come from files and
/// configuration, never from requests, so the map stays tiny.
static ED25519_KEYS: LazyLock<Mutex<HashMap<Vec<u8>, SigningKey>>> = LazyLock::new(Default::default);

static PROVIDER: LazyLock<CryptoProvider> =
    LazyLock::new(|| CryptoProvider { signer_factory: signer, ..rust_crypto::DEFAULT_PROVIDER.clone() });

/// Makes this the process's jsonwebtoken provider (once; later calls do
/// nothing). Call before the first token is signed or verified.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Fails only when another provider was installed first, which then
        // stays: both are RustCrypto, this one only faster.
        let _ = PROVIDER.install_default();
    });
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::EdDSA {
        return (rust_crypto::DEFAULT_PROVIDER.signer_factory)(algorithm, key);
    }
    let mut keys = ED25519_KEYS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let parsed = match keys.get(key.as_bytes()) {
        Some(parsed) => parsed.clone(),
        None => {
            let parsed = SigningKey::from_pkcs8_der(key.as_bytes()).map_err(|_| ErrorKind::InvalidEddsaKey)?;
            keys.insert(key.as_bytes().to_vec(), parsed.clone());
            parsed
        }
    };
    Ok(Box::new(Ed25519Signer(parsed)))
}

struct Ed25519Signer(SigningKey);

impl Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, Error> {
        Ok(ed25519_dalek::Signer::sign(&self.0, message).to_bytes().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Header, Validation, decode, encode};

    use super::*;
    use crate::{auth::keys, config::JwtAlgorithm};

    #[test]
    fn tokens_signed_with_a_kept_key_verify_and_equal_the_plain_providers() {
        install();
        let pem = keys::generate(JwtAlgorithm::EdDSA).expect("a key");
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).expect("key");
        let claims = serde_json::json!({"sub": "someone", "exp": 4_000_000_000u64});
        let header = Header::new(Algorithm::EdDSA);
        let first = encode(&header, &claims, &key).expect("signed");
        let second = encode(&header, &claims, &key).expect("signed again, from the kept key");
        // Ed25519 signatures are deterministic: the kept key signs as a fresh one would.
        assert_eq!(first, second);
        let plain = (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::EdDSA, &key).expect("plain signer");
        let message = first.rsplit_once('.').expect("three parts").0;
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::EdDSA).expect("sign");
        assert_eq!(signature, first.rsplit_once('.').expect("three parts").1);
        assert_eq!(
            plain.try_sign(message.as_bytes()).expect("plain"),
            Ed25519Signer(SigningKey::from_pkcs8_der(key.as_bytes()).expect("parsed"))
                .try_sign(message.as_bytes())
                .expect("kept")
        );
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("jwk");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        let decoded = decode::<serde_json::Value>(&first, &DecodingKey::from_jwk(&jwk).expect("public"), &validation);
        assert_eq!(decoded.expect("verifies").claims["sub"], "someone");
    }
}
