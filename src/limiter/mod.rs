//! Rate limiting: counting strategies (`strategy`) and backends that keep
//! the counters (`memory`; a shared Redis backend implements the same
//! `LimiterBackend`). The HTTP side (groups, keys, headers, 429s) is
//! `layers::rate_limit`.

pub mod memory;
pub mod strategy;

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    net::IpAddr,
};

use async_trait::async_trait;
use uuid::Uuid;

use strategy::{Decision, Quota};

/// Who is counted: an IP (IPv6 grouped by prefix), a signed-in user, or an
/// IP together with the account a login names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Ip(u128),
    User(Uuid),
    IpAndAccount(u128, u64),
    /// One account (by email) from every address: a password reset's
    /// per-address count.
    Account(u64),
}

/// One counter: a group (by index) and a subject. `audit` keys track
/// "already audited a 429 in this window" next to the real counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub group: u16,
    pub subject: Subject,
    pub audit: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("rate-limit backend unavailable: {0}")]
pub struct BackendError(pub String);

#[async_trait]
pub trait LimiterBackend: Send + Sync + 'static {
    /// Decides one request for `key`; with `consume`, an allowed request
    /// is counted. Atomic per key.
    async fn decide(&self, key: &LimitKey, quota: &Quota, consume: bool) -> Result<Decision, BackendError>;

    /// `decide` without waiting, for a backend that never waits (memory):
    /// the caller then skips the boxed future `decide` costs. `None` (the
    /// default, as for Redis) sends the caller to `decide`.
    fn decide_at_once(&self, _key: &LimitKey, _quota: &Quota, _consume: bool) -> Option<Decision> {
        None
    }
}

/// An IP as a counter subject: IPv4 (and IPv4-mapped IPv6) as is, IPv6 cut
/// to its first `v6_prefix` bits, so rotating addresses inside one
/// allocation does not escape a limit.
pub fn ip_subject(ip: IpAddr, v6_prefix: u8) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => {
                let bits = u128::from(v6);
                let prefix = u32::from(v6_prefix.min(128));
                if prefix == 0 { 0 } else { bits & (u128::MAX << (128 - prefix)) }
            }
        },
    }
}

/// A login's account, as a number: the email lower-cased and trimmed.
pub fn account_subject(email: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    email.trim().to_lowercase().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_in_one_prefix_share_a_subject() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_subject(a, 64), ip_subject(b, 64));
        assert_ne!(ip_subject(a, 64), ip_subject(c, 64));
        assert_ne!(ip_subject(a, 128), ip_subject(b, 128));
        assert_eq!(ip_subject(a, 48), ip_subject(c, 48));
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(ip_subject(v4, 64), ip_subject(mapped, 64));
        assert_ne!(ip_subject(v4, 64), ip_subject("192.0.2.8".parse().expect("ip"), 64), "IPv4 is never grouped");
    }

    #[test]
    fn accounts_compare_like_emails() {
        assert_eq!(account_subject(" Ada@Example.com"), account_subject("ada@example.com"));
        assert_ne!(account_subject("ada@example.com"), account_subject("bob@example.com"));
    }
}
