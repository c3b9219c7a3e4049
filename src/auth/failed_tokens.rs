//! Clients whose bearer tokens keep failing their signature check. A forged token
//! (the server's real `kid`, fresh claims, a wrong signature) costs a full
//! signature check to refuse, while an honest request costs the same check
//! once and then hits `VerifiedTokens`: a client that floods forged tokens
//! would make refusing it dearer than serving others. So failures are
//! counted per client address, and a client over `LIMIT` in a window gets
//! 401 for any token the server has not already verified, without another
//! signature check, until the window ends. A token verified before (an
//! honest client behind the same address) still works.

use std::{net::IpAddr, sync::Arc};

use crate::{
    clock::Clock,
    limiter::{
        LimitKey, Subject, ip_subject,
        memory::MemoryLimiter,
        strategy::{Quota, Strategy},
    },
};

/// Failed signature checks a client may cause per window before its
/// unknown tokens are refused unchecked: more than any test of forged
/// tokens sends, far fewer than a flood (thousands a second).
const LIMIT: u32 = 100;
const WINDOW_MS: i64 = 60_000;
/// Clients tracked at once (memory stays bounded whatever the flood).
const MAX_CLIENTS: usize = 100_000;

pub struct FailedTokens {
    counts: Arc<MemoryLimiter>,
    quota: Quota,
    v6_prefix: u8,
}

impl FailedTokens {
    pub fn new(clock: Arc<dyn Clock>, v6_prefix: u8) -> Self {
        Self {
            counts: Arc::new(MemoryLimiter::new(MAX_CLIENTS, clock)),
            quota: Quota { strategy: Strategy::FixedWindow, limit: LIMIT, window_ms: WINDOW_MS },
            v6_prefix,
        }
    }

    fn key(&self, ip: IpAddr) -> LimitKey {
        LimitKey { group: 0, subject: Subject::Ip(ip_subject(ip, self.v6_prefix)), audit: false }
    }

    /// Whether tokens from `ip` may still cost a signature check.
    pub fn may_verify(&self, ip: Option<IpAddr>) -> bool {
        ip.is_none_or(|ip| self.counts.decide_now(&self.key(ip), &self.quota, false).allowed)
    }

    /// Counts a token from `ip` that failed verification.
    pub fn failed(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.counts.decide_now(&self.key(ip), &self.quota, true);
        }
    }

    /// Starts the sweeper that drops windows that ended.
    pub fn spawn_sweeper(&self) {
        // Its key count is not a series of its own.
        self.counts.spawn_sweeper(prometheus_client::metrics::gauge::Gauge::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_client_over_the_limit_is_not_verified_until_the_window_ends() {
        let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
        let failed = FailedTokens::new(Arc::new(clock.clone()), 64);
        let (flooder, neighbour) = (Some("198.51.100.7".parse().unwrap()), Some("198.51.100.8".parse().unwrap()));
        for _ in 0..LIMIT {
            assert!(failed.may_verify(flooder));
            failed.failed(flooder);
        }
        assert!(!failed.may_verify(flooder), "over the limit");
        assert!(failed.may_verify(neighbour), "per client");
        assert!(failed.may_verify(None), "an unknown address is always verified");
        clock.advance(time::Duration::milliseconds(WINDOW_MS));
        assert!(failed.may_verify(flooder), "a new window");
    }
}
