//! The signed assertion an upstream may believe (PROTECT.md "The
//! assertion"): a short-lived JWT naming the caller, the route and the one
//! request it was made for (`htm`, `htu`, `rid`), signed with an asymmetric
//! key that `/.well-known/jwks.json` publishes. Its `typ` keeps it apart
//! from access tokens both ways: `TokenKeys::verify` refuses it, and an
//! upstream checking `typ` refuses an access token.

use std::path::Path;

use jsonwebtoken::{
    Algorithm, EncodingKey, Header, encode,
    jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    auth::{
        keys::SigningKey,
        tokens::{ASSERTION_TYP, TokenKeys},
    },
    config::JwtAlgorithm,
};

/// The claims, in PROTECT.md's order.
#[derive(Debug, Serialize)]
pub struct AssertionClaims<'a> {
    pub iss: &'a str,
    /// The upstream's name.
    pub aud: &'a str,
    pub sub: Uuid,
    pub role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<&'a str>,
    pub email: &'a str,
    pub amr: &'a [&'static str],
    /// An API key's scopes, space-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub route: &'a str,
    pub htm: &'a str,
    pub htu: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub rid: &'a str,
}

pub struct AssertionSigner {
    header: Header,
    key: EncodingKey,
    issuer: String,
    ttl_secs: i64,
}

impl AssertionSigner {
    /// Signs with the access-token key (EdDSA, ES256, RS256).
    pub fn with_token_key(tokens: &TokenKeys, issuer: &str, ttl: std::time::Duration) -> Option<Self> {
        let (algorithm, key, kid) = tokens.asymmetric_signer()?;
        Some(Self::new(algorithm, key, kid, issuer, ttl))
    }

    /// Signs with an EdDSA key of its own (`proxy.assertion_key_file`, for
    /// HS256 deployments); the second value is its JWK, to publish.
    pub fn with_key_file(path: &Path, issuer: &str, ttl: std::time::Duration) -> anyhow::Result<(Self, Jwk)> {
        let key = SigningKey::from_file(JwtAlgorithm::EdDSA, path)?.encoding_key()?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        Ok((Self::new(Algorithm::EdDSA, key, kid, issuer, ttl), jwk))
    }

    fn new(algorithm: Algorithm, key: EncodingKey, kid: String, issuer: &str, ttl: std::time::Duration) -> Self {
        let mut header = Header::new(algorithm);
        header.kid = Some(kid);
        header.typ = Some(ASSERTION_TYP.to_owned());
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(60).max(1);
        Self { header, key, issuer: issuer.to_owned(), ttl_secs }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `iat` and `exp` from `now`; a fresh `jti`.
    pub fn times(&self, now: OffsetDateTime) -> (i64, i64, Uuid) {
        let iat = now.unix_timestamp();
        (iat, iat + self.ttl_secs, Uuid::new_v4())
    }

    pub fn sign(&self, claims: &AssertionClaims<'_>) -> anyhow::Result<String> {
        Ok(encode(&self.header, claims, &self.key)?)
    }
}
