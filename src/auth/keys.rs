//! Access-token signing keys: loading, development generation, and
//! `rampart keys generate`.
//!
//! Asymmetric keys are PKCS#8 PEM; an HS256 secret is the file's bytes
//! (trimmed, at least 32). Without `auth.signing_key_file`, development
//! generates `signing-key.pem` under `server.data_dir` (mode 0600) and
//! says so; production refuses to start that way (see `Config::problems`).
//! Key material is written only to stdout or to a 0600 file, never logged.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use anyhow::Context;
use base64::Engine;
use jsonwebtoken::EncodingKey;

use crate::config::{AuthConfig, JwtAlgorithm};

pub const DEV_KEY_FILE: &str = "signing-key.pem";

/// A private key (or HMAC secret) for one algorithm.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: JwtAlgorithm,
    material: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?}, [REDACTED])", self.algorithm)
    }
}

impl SigningKey {
    pub fn from_bytes(algorithm: JwtAlgorithm, bytes: &[u8]) -> anyhow::Result<Self> {
        let material = match algorithm {
            JwtAlgorithm::HS256 => bytes.trim_ascii().to_vec(),
            JwtAlgorithm::EdDSA => ed25519_v1_pem(bytes)?.into_bytes(),
            _ => bytes.to_vec(),
        };
        let key = Self { algorithm, material };
        key.encoding_key()?;
        Ok(key)
    }

    pub fn from_file(algorithm: JwtAlgorithm, path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(algorithm, &bytes)
            .with_context(|| format!("{} does not hold a {algorithm:?} key", path.display()))
    }

    /// A 32-byte secret for another purpose (`info`), derived from the key
    /// material with HKDF-SHA256: one key file, independent secrets.
    pub fn derive_secret(&self, info: &[u8]) -> [u8; 32] {
        let mut secret = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"rampart"), &self.material)
            .expand(info, &mut secret)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        secret
    }

    pub fn encoding_key(&self) -> anyhow::Result<EncodingKey> {
        let key = match self.algorithm {
            JwtAlgorithm::EdDSA => EncodingKey::from_ed_pem(&self.material)?,
            JwtAlgorithm::ES256 => EncodingKey::from_ec_pem(&self.material)?,
            JwtAlgorithm::RS256 => EncodingKey::from_rsa_pem(&self.material)?,
            JwtAlgorithm::HS256 => {
                if self.material.len() < 32 {
                    anyhow::bail!("an HS256 secret must be at least 32 bytes");
                }
                EncodingKey::from_secret(&self.material)
            }
        };
        Ok(key)
    }
}

/// The signing key and the previous keys that still verify.
pub struct KeyRing {
    pub current: SigningKey,
    pub previous: Vec<SigningKey>,
    /// Set when a development key was generated on this start.
    pub generated: Option<PathBuf>,
}

pub fn load(auth: &AuthConfig, data_dir: &Path) -> anyhow::Result<KeyRing> {
    let algorithm = auth.jwt_algorithm;
    let previous = auth
        .previous_key_files
        .iter()
        .map(|path| SigningKey::from_file(algorithm, path).context("auth.previous_key_files"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !auth.signing_key_file.as_os_str().is_empty() {
        let current = SigningKey::from_file(algorithm, &auth.signing_key_file).context("auth.signing_key_file")?;
        return Ok(KeyRing { current, previous, generated: None });
    }
    let path = data_dir.join(DEV_KEY_FILE);
    if path.exists() {
        let current = SigningKey::from_file(algorithm, &path).with_context(|| {
            format!(
                "the development key was made for another algorithm; delete {} or set auth.signing_key_file",
                path.display()
            )
        })?;
        return Ok(KeyRing { current, previous, generated: None });
    }
    crate::fs::create_private_dir(data_dir)?;
    let text = generate(algorithm)?;
    crate::fs::write_private(&path, text.as_bytes())?;
    let current = SigningKey::from_bytes(algorithm, text.as_bytes())?;
    Ok(KeyRing { current, previous, generated: Some(path) })
}

/// A new key for `algorithm`, in the format `auth.signing_key_file` expects.
pub fn generate(algorithm: JwtAlgorithm) -> anyhow::Result<String> {
    let pem = match algorithm {
        JwtAlgorithm::EdDSA => {
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            ed25519_pem(seed)?
        }
        JwtAlgorithm::ES256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_pem(),
        JwtAlgorithm::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 3072)?;
            key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)?.to_string()
        }
        JwtAlgorithm::HS256 => {
            let mut secret = [0u8; 48];
            rand::fill(&mut secret);
            let mut text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
            text.push('\n');
            text
        }
    };
    Ok(pem)
}

/// Ed25519 PKCS#8 keys come in two shapes (RFC 8410 v1, and v2 with the
/// public key inside, as ring and rcgen write them); the JWT library wants
/// v1, so every key is re-encoded that way.
fn ed25519_v1_pem(bytes: &[u8]) -> anyhow::Result<String> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, KeypairBytes};
    let text = std::str::from_utf8(bytes).context("the key file is not PEM text")?;
    let pair = KeypairBytes::from_pkcs8_pem(text).map_err(|_| anyhow::anyhow!("not an Ed25519 PKCS#8 PEM key"))?;
    ed25519_pem(pair.secret_key)
}

fn ed25519_pem(secret_key: [u8; 32]) -> anyhow::Result<String> {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes, spki::der::pem::LineEnding};
    let pair = KeypairBytes { secret_key, public_key: None };
    Ok(pair.to_pkcs8_pem(LineEnding::LF).map_err(|_| anyhow::anyhow!("cannot encode the Ed25519 key"))?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_for_their_algorithm_only() {
        for algorithm in [JwtAlgorithm::EdDSA, JwtAlgorithm::ES256, JwtAlgorithm::HS256] {
            let text = generate(algorithm).expect("generated");
            assert!(SigningKey::from_bytes(algorithm, text.as_bytes()).is_ok(), "{algorithm:?}");
        }
        let ed = generate(JwtAlgorithm::EdDSA).expect("generated");
        assert!(ed.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(SigningKey::from_bytes(JwtAlgorithm::ES256, ed.as_bytes()).is_err());
        assert!(SigningKey::from_bytes(JwtAlgorithm::HS256, b"short").is_err());
        let v2 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ring key").serialize_pem();
        assert!(SigningKey::from_bytes(JwtAlgorithm::EdDSA, v2.as_bytes()).is_ok(), "v2 keys are accepted too");
        let secret = generate(JwtAlgorithm::HS256).expect("generated");
        assert_ne!(secret, generate(JwtAlgorithm::HS256).expect("generated"), "secrets are random");
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = SigningKey::from_bytes(JwtAlgorithm::HS256, &[b'k'; 40]).expect("key");
        assert!(!format!("{key:?}").contains("kkkk"));
    }
}
