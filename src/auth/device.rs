//! Device cookies (`rampart_device`): given after a successful password
//! sign-in, they let that client keep its own failed-login budget
//! (`auth::throttle`) when others are guessing the same account.
//!
//! A cookie is `<device id>.<issued, unix seconds>.<HMAC-SHA256>`, the MAC
//! over the id, the time and the account's email, keyed with a secret
//! derived (HKDF-SHA256) from the token signing key, so every instance
//! with the same key accepts it and a rotated key keeps the ones signed
//! with a `previous_key_files` key valid. It names the account to nobody:
//! the email is only inside the MAC, and it verifies for that email alone.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::keys::SigningKey;

pub const DEVICE_COOKIE: &str = "rampart_device";
/// How long a device cookie counts (and its `Max-Age`).
pub const DEVICE_COOKIE_TTL: Duration = Duration::days(180);
const INFO: &[u8] = b"rampart device cookie v1";
const MAX_LENGTH: usize = 128;

pub struct DeviceCookies {
    /// The current key's secret first, then those of previous keys.
    secrets: Vec<[u8; 32]>,
}

impl DeviceCookies {
    pub fn new(current: &SigningKey, previous: &[SigningKey]) -> Self {
        let secrets = std::iter::once(current).chain(previous).map(|key| key.derive_secret(INFO)).collect();
        Self { secrets }
    }

    fn mac(secret: &[u8; 32], device: Uuid, issued: i64, account: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(device.as_bytes());
        mac.update(&issued.to_be_bytes());
        mac.update(account.as_bytes());
        mac
    }

    /// A new cookie value for `account` (trimmed, lower-cased email).
    pub fn issue(&self, account: &str, now: OffsetDateTime) -> String {
        let device = Uuid::now_v7();
        let issued = now.unix_timestamp();
        let tag = Self::mac(&self.secrets[0], device, issued, account).finalize().into_bytes();
        format!("{}.{issued}.{}", device.simple(), base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag))
    }

    /// The device id of a cookie made for `account` and not yet expired.
    pub fn verify(&self, value: &str, account: &str, now: OffsetDateTime) -> Option<Uuid> {
        if value.len() > MAX_LENGTH {
            return None;
        }
        let mut parts = value.split('.');
        let (Some(device), Some(issued), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let device = Uuid::try_parse(device).ok()?;
        let issued: i64 = issued.parse().ok()?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag).ok()?;
        let age = now.unix_timestamp().checked_sub(issued)?;
        if !(-60..DEVICE_COOKIE_TTL.whole_seconds()).contains(&age) {
            return None;
        }
        self.secrets
            .iter()
            .any(|secret| Self::mac(secret, device, issued, account).verify_slice(&tag).is_ok())
            .then_some(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtAlgorithm;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(JwtAlgorithm::HS256, &[byte; 40]).expect("key")
    }

    #[test]
    fn a_cookie_verifies_for_its_account_only_until_it_expires() {
        let now = OffsetDateTime::now_utc();
        let cookies = DeviceCookies::new(&key(b'a'), &[]);
        let value = cookies.issue("ada@example.com", now);
        let device = cookies.verify(&value, "ada@example.com", now).expect("verifies");
        assert!(value.starts_with(&device.simple().to_string()));
        assert_eq!(cookies.verify(&value, "bob@example.com", now), None, "another account");
        assert_eq!(cookies.verify(&value, "ada@example.com", now + DEVICE_COOKIE_TTL), None, "expired");
        let mut forged = value.clone();
        forged.replace_range(0..1, if value.starts_with('0') { "1" } else { "0" });
        assert_eq!(cookies.verify(&forged, "ada@example.com", now), None, "another id");
        assert_eq!(cookies.verify("", "ada@example.com", now), None);
        assert_eq!(cookies.verify("a.b.c.d", "ada@example.com", now), None);
        assert_eq!(DeviceCookies::new(&key(b'b'), &[]).verify(&value, "ada@example.com", now), None, "another key");
        let rotated = DeviceCookies::new(&key(b'b'), &[key(b'a')]);
        assert_eq!(rotated.verify(&value, "ada@example.com", now), Some(device), "a previous key still counts");
    }
}
