//! The bearer-token path before authentication: `Authorization` header
//! parsing (`bearer_token`), then `TokenKeys::verify` with the default
//! algorithm (EdDSA) and the `VerifiedTokens` cache in front of it.
//!
//! Properties checked, beyond "never panics":
//! - a token is accepted only if its signing input (`header.payload`) is one
//!   this target signed with the fixed key, and its signature verifies
//!   strictly under the public key (an independent check with ed25519-dalek);
//! - an accepted token has the configured issuer and audience, the EdDSA
//!   algorithm, the key's `kid`, and times valid at the fixed clock;
//! - the cache answers exactly like the keys.
//!
//! Inputs come in five shapes: a raw header value; an edit of a valid token
//! (so the fuzzer works near valid signatures); a splice of two valid tokens'
//! parts; an arbitrary header and claims JSON, or an edit of a valid token's
//! header or claims JSON, that this target signs with the real key (so the
//! claim checks behind the signature are reached).
#![no_main]

use std::{collections::HashSet, sync::LazyLock};

use arbitrary::Arbitrary;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use rampart::{
    auth::{
        keys::SigningKey,
        tokens::{AccessClaims, TokenError, TokenKeys, VerifiedTokens},
    },
    config::JwtAlgorithm,
    domain::Role,
    layers::authenticate::bearer_token,
};
use time::OffsetDateTime;
use uuid::Uuid;

const SEED: [u8; 32] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    32,
];
/// PKCS#8 v1 of `SEED`.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n-----END PRIVATE KEY-----\n";
const ISSUER: &str = "rampart";
const AUDIENCE: &str = "rampart-api";
const NOW: i64 = 1_900_000_000;
const LEEWAY: i64 = 30;

struct Fixture {
    keys: TokenKeys,
    cache: VerifiedTokens,
    kid: String,
    signer: ed25519_dalek::SigningKey,
    public: VerifyingKey,
    /// Valid tokens (deterministic: fixed key, fixed claims).
    tokens: Vec<String>,
    /// The signing inputs of `tokens`: all this key ever signed here.
    signed: HashSet<String>,
    /// The header and claims JSON of `tokens`.
    parts: Vec<(Vec<u8>, Vec<u8>)>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).expect("fixed time")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Fixture {
    fn sign(&self, signing_input: &str) -> String {
        let signature = self.signer.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature.to_bytes()))
    }
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = SigningKey::from_bytes(JwtAlgorithm::EdDSA, KEY_PEM.as_bytes()).expect("fixed key loads");
    let keys = TokenKeys::new(JwtAlgorithm::EdDSA, &key, &[], ISSUER, AUDIENCE, std::time::Duration::from_secs(900))
        .expect("token keys");
    let kid = keys.jwks().keys[0].common.key_id.clone().expect("kid");
    let signer = ed25519_dalek::SigningKey::from_bytes(&SEED);
    let public = signer.verifying_key();
    let mut fixture = Fixture {
        keys,
        cache: VerifiedTokens::new(64),
        kid: kid.clone(),
        signer,
        public,
        tokens: Vec::new(),
        signed: HashSet::new(),
        parts: Vec::new(),
    };
    let header = format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{kid}"}}"#);
    for (n, role, dept) in [(1u128, Role::User, None), (2, Role::Admin, Some("ops")), (3, Role::Manager, Some("é"))] {
        let claims = AccessClaims {
            sub: Uuid::from_u128(n),
            role,
            jti: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n),
            iat: NOW - 10,
            nbf: NOW - 10,
            exp: NOW + 890,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            fam: Uuid::from_u128(100 + n),
            dept: dept.map(str::to_owned),
        };
        let payload = serde_json::to_vec(&claims).expect("claims json");
        let input = format!("{}.{}", b64(header.as_bytes()), b64(&payload));
        let token = fixture.sign(&input);
        assert_eq!(fixture.keys.verify(&token, now()), Ok(claims), "a fixture token verifies");
        fixture.signed.insert(input);
        fixture.tokens.push(token);
        fixture.parts.push((header.clone().into_bytes(), payload));
    }
    fixture
});

#[derive(Arbitrary, Debug)]
enum Input {
    /// An `Authorization` header value.
    Header(Vec<u8>),
    /// A valid token with `remove` bytes at `at` replaced by `insert`.
    Edit { token: u8, at: u16, remove: u8, insert: Vec<u8> },
    /// Segments taken from several valid tokens (or garbage).
    Splice { header: u8, payload: u8, signature: u8, extra: Option<String> },
    /// Arbitrary header and claims JSON, signed with the real key.
    Signed { header: Vec<u8>, claims: Vec<u8>, use_kid_header: bool },
    /// A valid token's header and claims JSON, one of them edited, then
    /// signed with the real key (near-valid claims behind a good signature).
    SignedEdit { token: u8, in_header: bool, at: u16, remove: u8, insert: Vec<u8> },
}

fuzz_target!(|input: Input| {
    let fixture = &*FIXTURE;
    match input {
        Input::Header(bytes) => {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else { return };
            let token = bearer_token(&value);
            check_bearer(&value, token);
            if let Some(token) = token {
                check(fixture, token, None);
            }
        }
        Input::Edit { token, at, remove, insert } => {
            let base = fixture.tokens[usize::from(token) % fixture.tokens.len()].as_bytes();
            let Ok(text) = String::from_utf8(edit(base, at, remove, &insert)) else { return };
            check(fixture, &text, None);
        }
        Input::Splice { header, payload, signature, extra } => {
            let part = |which: u8, index: usize| -> &str {
                let token = &fixture.tokens[usize::from(which) % fixture.tokens.len()];
                token.split('.').nth(index).unwrap_or_default()
            };
            let mut text = format!("{}.{}.{}", part(header, 0), part(payload, 1), part(signature, 2));
            if let Some(extra) = extra {
                text.push_str(&extra);
            }
            check(fixture, &text, None);
        }
        Input::Signed { header, claims, use_kid_header } => {
            let header = if use_kid_header {
                format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, fixture.kid).into_bytes()
            } else {
                header
            };
            let input = format!("{}.{}", b64(&header), b64(&claims));
            let token = fixture.sign(&input);
            check(fixture, &token, Some(&input));
        }
        Input::SignedEdit { token, in_header, at, remove, insert } => {
            let (header, claims) = &fixture.parts[usize::from(token) % fixture.parts.len()];
            let (header, claims) = if in_header {
                (edit(header, at, remove, &insert), claims.clone())
            } else {
                (header.clone(), edit(claims, at, remove, &insert))
            };
            let input = format!("{}.{}", b64(&header), b64(&claims));
            let token = fixture.sign(&input);
            check(fixture, &token, Some(&input));
        }
    }
});

/// `base` with `remove` bytes at `at` replaced by `insert`.
fn edit(base: &[u8], at: u16, remove: u8, insert: &[u8]) -> Vec<u8> {
    let at = usize::from(at) % (base.len() + 1);
    let end = (at + usize::from(remove)).min(base.len());
    let mut edited = base[..at].to_vec();
    edited.extend_from_slice(insert);
    edited.extend_from_slice(&base[end..]);
    edited
}

/// `bearer_token` returns exactly the trimmed text after `Bearer ` (any
/// case), never an empty token.
fn check_bearer(value: &HeaderValue, token: Option<&str>) {
    let expected = value.to_str().ok().and_then(|text| {
        let (scheme, rest) = text.split_once(' ')?;
        let rest = rest.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty()).then_some(rest)
    });
    assert_eq!(token, expected);
    if let Some(token) = token {
        assert!(!token.is_empty() && token.trim() == token, "{token:?}");
    }
}

fn check(fixture: &Fixture, token: &str, also_signed: Option<&str>) {
    let direct = fixture.keys.verify(token, now());
    let cached = fixture.cache.verify(&fixture.keys, token, now());
    assert_eq!(direct, cached, "the cache answers like the keys for {token:?}");
    match direct {
        Ok(claims) => check_accepted(fixture, token, also_signed, &claims),
        Err(TokenError::Malformed) if token.len() > 4096 => {}
        Err(_) => {}
    }
}

fn check_accepted(fixture: &Fixture, token: &str, also_signed: Option<&str>, claims: &AccessClaims) {
    let (signing_input, signature) = token.rsplit_once('.').expect("an accepted token has three parts");
    assert!(
        fixture.signed.contains(signing_input) || also_signed == Some(signing_input),
        "accepted a signing input this key never signed: {token:?}"
    );
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .expect("an accepted token's signature decodes");
    assert!(
        fixture.public.verify_strict(signing_input.as_bytes(), &signature).is_ok(),
        "accepted a token whose signature does not verify strictly: {token:?}"
    );
    let header = jsonwebtoken::decode_header(token).expect("an accepted token's header decodes");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(fixture.kid.as_str()));
    assert_eq!(claims.iss, ISSUER, "issuer of {token:?}");
    assert_eq!(claims.aud, AUDIENCE, "audience of {token:?}");
    assert!(claims.exp > NOW - LEEWAY, "expired: {claims:?}");
    assert!(claims.nbf <= NOW + LEEWAY && claims.iat <= NOW + LEEWAY, "not yet valid: {claims:?}");
}
