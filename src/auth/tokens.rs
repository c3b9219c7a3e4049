//! Access tokens: JWTs signed with the configured algorithm only.
//!
//! Verification pins the algorithm (a token whose header names another,
//! `none` included, is refused before any key is touched), looks the key up
//! by `kid` in a fixed map (never a path or URL), and checks `iss`, `aud`,
//! `exp`, `nbf` and `iat` against the injected clock with 30 s leeway.
//! Rotation: the current key signs; keys listed in `auth.previous_key_files`
//! keep verifying until their tokens have expired.

use std::{collections::HashMap, sync::Arc};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::SigningKey;
use crate::{
    config::JwtAlgorithm,
    domain::{Role, SignInMethod},
};

/// Longest token or `kid` considered at all; anything longer is garbage.
const MAX_TOKEN_BYTES: usize = 4096;
const MAX_KID_BYTES: usize = 64;
const LEEWAY_SECS: i64 = 30;
/// The JOSE `typ` of the gateway's assertions (PROTECT.md).
pub const ASSERTION_TYP: &str = "rampart-assertion+jwt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub role: Role,
    /// UUIDv7: its timestamp is the issue time to the millisecond, which
    /// the revocation check compares with "revoked before" marks.
    pub jti: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// The refresh family this token was issued with.
    pub fam: Uuid,
    /// The user's department, for attribute-based rules; changing it
    /// revokes the user's tokens like a role change does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept: Option<String>,
    /// How the sign-in behind the token was made (RFC 8176 values, API.md's
    /// table), kept through refreshes.
    #[serde(default)]
    pub amr: Vec<String>,
}

impl AccessClaims {
    pub fn sign_in(&self) -> SignInMethod {
        SignInMethod::from_amr(&self.amr)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signed with another algorithm")]
    WrongAlgorithm,
    #[error("unknown key id")]
    UnknownKey,
    #[error("bad signature or claims")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

pub struct TokenKeys {
    algorithm: Algorithm,
    signing: EncodingKey,
    signing_kid: String,
    verifying: HashMap<String, DecodingKey>,
    jwks: JwkSet,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: time::Duration,
}

fn algorithm_of(configured: JwtAlgorithm) -> Algorithm {
    match configured {
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::HS256 => Algorithm::HS256,
    }
}

impl TokenKeys {
    /// `current` signs; `previous` only verify.
    pub fn new(
        configured: JwtAlgorithm,
        current: &SigningKey,
        previous: &[SigningKey],
        issuer: &str,
        audience: &str,
        ttl: std::time::Duration,
    ) -> anyhow::Result<Self> {
        super::signers::install();
        let algorithm = algorithm_of(configured);
        let mut verifying = HashMap::new();
        let mut jwks = JwkSet::default();
        let mut signing_kid = String::new();
        for (index, key) in std::iter::once(current).chain(previous).enumerate() {
            let encoding = key.encoding_key()?;
            let mut jwk = Jwk::from_encoding_key(&encoding, algorithm)?;
            // RFC 7638 thumbprints need the public members only; for HMAC
            // this hashes the secret, which reveals nothing usable.
            let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
            let decoding = match algorithm {
                Algorithm::HS256 => DecodingKey::from_secret(encoding.as_bytes()),
                _ => DecodingKey::from_jwk(&jwk)?,
            };
            if algorithm != Algorithm::HS256 {
                jwk.common.key_id = Some(kid.clone());
                jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                jwk.common.key_algorithm = Some(key_algorithm(algorithm));
                jwks.keys.push(jwk);
            }
            if index == 0 {
                signing_kid = kid.clone();
            }
            verifying.insert(kid, decoding);
        }
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        // Time claims are checked against the injected clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        Ok(Self {
            algorithm,
            signing: current.encoding_key()?,
            signing_kid,
            verifying,
            jwks,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl: time::Duration::try_from(ttl)?,
        })
    }

    /// The public keys, for `/.well-known/jwks.json` (empty for HS256,
    /// unless the gateway's assertion key is published).
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Publishes another verification key in the JWKS (the gateway's
    /// assertion key when access tokens use HS256).
    pub fn publish(&mut self, jwk: Jwk) {
        self.jwks.keys.push(jwk);
    }

    /// The current key, its algorithm and `kid`, for signing other JWTs
    /// (gateway assertions); `None` for HS256, whose secret must never sign
    /// anything an upstream is told to verify.
    pub fn asymmetric_signer(&self) -> Option<(Algorithm, EncodingKey, String)> {
        (self.algorithm != Algorithm::HS256).then(|| (self.algorithm, self.signing.clone(), self.signing_kid.clone()))
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl.whole_seconds()
    }

    /// Signs a new access token for `user` in refresh family `family`.
    pub fn issue(
        &self,
        user: Uuid,
        role: Role,
        department: Option<&str>,
        family: Uuid,
        sign_in: SignInMethod,
        now: OffsetDateTime,
    ) -> anyhow::Result<(String, AccessClaims)> {
        let iat = now.unix_timestamp();
        let claims = AccessClaims {
            sub: user,
            role,
            jti: uuid_v7_at(now),
            iat,
            nbf: iat,
            exp: (now + self.ttl).unix_timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            fam: family,
            dept: department.map(str::to_owned),
            amr: sign_in.amr().iter().map(|amr| (*amr).to_owned()).collect(),
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.signing_kid.clone());
        Ok((encode(&header, &claims, &self.signing)?, claims))
    }

    /// Checks signature, algorithm, key, issuer, audience and times. Says
    /// nothing about revocation: that is the caller's next step.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != self.algorithm {
            return Err(TokenError::WrongAlgorithm);
        }
        // A gateway assertion is signed with the same key but is never an
        // access token (PROTECT.md).
        if header.typ.as_deref().is_some_and(|typ| typ.eq_ignore_ascii_case(ASSERTION_TYP)) {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.filter(|kid| kid.len() <= MAX_KID_BYTES).ok_or(TokenError::UnknownKey)?;
        let key = self.verifying.get(&kid).ok_or(TokenError::UnknownKey)?;
        let claims = decode::<AccessClaims>(token, key, &self.validation).map_err(|_| TokenError::Invalid)?.claims;
        check_times(&claims, now)?;
        Ok(claims)
    }
}

fn key_algorithm(algorithm: Algorithm) -> KeyAlgorithm {
    match algorithm {
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::HS256 => KeyAlgorithm::HS256,
        _ => KeyAlgorithm::EdDSA,
    }
}

/// Tokens that passed full verification, by SHA-256 of the token text, so
/// a client presenting the same token again skips the signature check
/// (≈ 40 µs for EdDSA). Time claims are re-checked on every hit and the
/// revocation check is the caller's, as always. Bounded: a full shard is
/// emptied (entries are cheap to recompute). Claims are shared, so a hit
/// copies no strings.
pub struct VerifiedTokens {
    shards: Vec<std::sync::Mutex<HashMap<[u8; 32], Arc<AccessClaims>>>>,
    per_shard: usize,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        let shards = (0..16).map(|_| std::sync::Mutex::new(HashMap::new())).collect();
        Self { shards, per_shard: (capacity / 16).max(1) }
    }

    /// The claims of a token verified before, without a signature check;
    /// `None` when it was not (or its time claims no longer hold).
    pub fn cached(&self, token: &str, now: OffsetDateTime) -> Option<Arc<AccessClaims>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let (_, claims) = self.lookup(token);
        let claims = claims?;
        check_times(&claims, now).ok()?;
        Some(claims)
    }

    /// The token's digest, and its claims if it was verified before.
    fn lookup(&self, token: &str) -> ([u8; 32], Option<Arc<AccessClaims>>) {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let claims = self.shard(&digest).lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&digest).cloned();
        (digest, claims)
    }

    fn shard(&self, digest: &[u8; 32]) -> &std::sync::Mutex<HashMap<[u8; 32], Arc<AccessClaims>>> {
        &self.shards[usize::from(digest[0] % 16)]
    }

    /// Verifies through the cache.
    pub fn verify(&self, keys: &TokenKeys, token: &str, now: OffsetDateTime) -> Result<Arc<AccessClaims>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let (digest, cached) = self.lookup(token);
        if let Some(claims) = cached {
            check_times(&claims, now)?;
            return Ok(claims);
        }
        let claims = Arc::new(keys.verify(token, now)?);
        let mut entries = self.shard(&digest).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= self.per_shard {
            entries.clear();
        }
        entries.insert(digest, claims.clone());
        Ok(claims)
    }
}

fn check_times(claims: &AccessClaims, now: OffsetDateTime) -> Result<(), TokenError> {
    let now = now.unix_timestamp();
    if claims.exp <= now - LEEWAY_SECS {
        return Err(TokenError::Expired);
    }
    if claims.nbf > now + LEEWAY_SECS || claims.iat > now + LEEWAY_SECS {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// A UUIDv7 stamped with `now` (the injected clock), carrying sub-millisecond
/// precision in its 12 `rand_a` bits (RFC 9562 §6.2, method 3), so that a
/// revocation and a token issued a moment later are told apart.
pub fn uuid_v7_at(now: OffsetDateTime) -> Uuid {
    let nanos = now.unix_timestamp_nanos();
    let millis = u64::try_from(nanos.div_euclid(1_000_000)).unwrap_or(0);
    let fraction = u16::try_from(nanos.rem_euclid(1_000_000) * 4096 / 1_000_000).unwrap_or(0);
    let mut random = [0u8; 10];
    rand::fill(&mut random);
    random[0] = (fraction >> 8) as u8 & 0x0F;
    random[1] = (fraction & 0xFF) as u8;
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// The issue time of a UUIDv7 made by `uuid_v7_at`, in nanoseconds since
/// the epoch (to 244 ns).
pub fn uuid_v7_nanos(id: &Uuid) -> Option<i128> {
    if id.get_version_num() != 7 {
        return None;
    }
    let bytes = id.as_bytes();
    let millis = bytes[..6].iter().fold(0i128, |acc, byte| (acc << 8) | i128::from(*byte));
    let fraction = (i128::from(bytes[6] & 0x0F) << 8) | i128::from(bytes[7]);
    Some(millis * 1_000_000 + fraction * 1_000_000 / 4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{self, SigningKey};

    fn key(algorithm: JwtAlgorithm) -> SigningKey {
        SigningKey::from_bytes(algorithm, keys::generate(algorithm).expect("key").as_bytes()).expect("loads")
    }

    fn ring(algorithm: JwtAlgorithm, current: &SigningKey, previous: &[SigningKey]) -> TokenKeys {
        TokenKeys::new(algorithm, current, previous, "rampart", "rampart-api", std::time::Duration::from_secs(900))
            .expect("keys")
    }

    #[test]
    fn every_algorithm_signs_and_verifies_its_own_tokens_only() {
        let now = OffsetDateTime::now_utc();
        for algorithm in [JwtAlgorithm::EdDSA, JwtAlgorithm::ES256, JwtAlgorithm::RS256, JwtAlgorithm::HS256] {
            let keys = ring(algorithm, &key(algorithm), &[]);
            let (token, claims) = keys
                .issue(Uuid::now_v7(), Role::Manager, None, Uuid::now_v7(), SignInMethod::Password, now)
                .expect("issued");
            assert_eq!(keys.verify(&token, now), Ok(claims), "{algorithm:?}");
            let stranger = ring(algorithm, &key(algorithm), &[]);
            assert_eq!(stranger.verify(&token, now), Err(TokenError::UnknownKey), "another key of the same kind");
            assert_eq!(
                keys.jwks().keys.len(),
                usize::from(algorithm != JwtAlgorithm::HS256),
                "HS256 publishes nothing"
            );
        }
    }

    #[test]
    fn rotated_keys_keep_verifying_old_tokens_but_sign_with_the_new_one() {
        let now = OffsetDateTime::now_utc();
        let old_key = key(JwtAlgorithm::EdDSA);
        let new_key = key(JwtAlgorithm::EdDSA);
        let before = ring(JwtAlgorithm::EdDSA, &old_key, &[]);
        let (old_token, _) = before
            .issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), SignInMethod::Password, now)
            .expect("issued");

        let after = ring(JwtAlgorithm::EdDSA, &new_key, std::slice::from_ref(&old_key));
        assert!(after.verify(&old_token, now).is_ok(), "old tokens verify until they expire");
        let (new_token, _) =
            after.issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), SignInMethod::Password, now).expect("issued");
        let new_kid = jsonwebtoken::decode_header(&new_token).expect("header").kid;
        let old_kid = jsonwebtoken::decode_header(&old_token).expect("header").kid;
        assert_ne!(new_kid, old_kid, "the new key signs");
        assert_eq!(after.jwks().keys.len(), 2, "both public keys are published");
        assert_eq!(before.verify(&new_token, now), Err(TokenError::UnknownKey));
    }

    #[test]
    fn the_cache_answers_like_the_keys_and_still_checks_time() {
        let now = OffsetDateTime::now_utc();
        let keys = ring(JwtAlgorithm::EdDSA, &key(JwtAlgorithm::EdDSA), &[]);
        let cache = VerifiedTokens::new(32);
        let (token, claims) =
            keys.issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), SignInMethod::Password, now).expect("issued");
        assert_eq!(cache.verify(&keys, &token, now), Ok(Arc::new(claims.clone())));
        assert_eq!(cache.verify(&keys, &token, now), Ok(Arc::new(claims)), "a hit");
        assert_eq!(
            cache.verify(&keys, &token, now + time::Duration::hours(1)),
            Err(TokenError::Expired),
            "expiry on a hit"
        );
        let tampered = format!("{token}x");
        assert!(cache.verify(&keys, &tampered, now).is_err(), "another text is verified afresh");
        for _ in 0..100 {
            let (other, _) = keys
                .issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), SignInMethod::Password, now)
                .expect("issued");
            assert!(cache.verify(&keys, &other, now).is_ok());
        }
        assert!(cache.shards.iter().all(|shard| shard.lock().expect("lock").len() <= 2), "bounded");
    }

    #[test]
    fn time_claims_follow_the_clock_with_leeway() {
        let now = OffsetDateTime::now_utc();
        let keys = ring(JwtAlgorithm::HS256, &key(JwtAlgorithm::HS256), &[]);
        let (token, _) =
            keys.issue(Uuid::now_v7(), Role::User, None, Uuid::now_v7(), SignInMethod::Password, now).expect("issued");
        assert!(keys.verify(&token, now + time::Duration::seconds(900 + 29)).is_ok(), "within leeway");
        assert_eq!(keys.verify(&token, now + time::Duration::seconds(900 + 31)), Err(TokenError::Expired));
        assert_eq!(keys.verify(&token, now - time::Duration::seconds(31)), Err(TokenError::NotYetValid));
    }

    #[test]
    fn issue_times_round_trip_below_a_millisecond() {
        let now = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_789).expect("time");
        let id = uuid_v7_at(now);
        assert_eq!(id.get_version_num(), 7);
        let decoded = uuid_v7_nanos(&id).expect("v7");
        let actual = now.unix_timestamp_nanos();
        assert!(decoded <= actual && actual - decoded < 250, "{decoded} vs {actual}");
        let later = uuid_v7_nanos(&uuid_v7_at(now + time::Duration::microseconds(1))).expect("v7");
        assert!(later > decoded, "a microsecond later sorts later");
        assert!(uuid_v7_nanos(&Uuid::new_v4()).is_none());
    }
}
