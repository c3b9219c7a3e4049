//! Growing delays after failed logins, per account (by email, whether or
//! not the account exists, so the behaviour reveals nothing).
//!
//! The first 4 consecutive failures cost nothing; from the 5th the next
//! attempt must wait 1 s, 2 s, 4 s, ... up to 15 minutes, so an attacker
//! gets a handful of guesses an hour while the real user is kept out for at
//! most 15 minutes at a time. From the 100th consecutive failure the wait
//! is an hour per attempt (NIST SP 800-63B-4 caps consecutive failures at
//! 100). A success resets the count. Memory is bounded: at the cap, expired
//! entries are dropped, and while it is still full new emails are not
//! tracked (the login rate limit still applies to them).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use time::{Duration, OffsetDateTime};

use crate::clock::Clock;

const FREE_FAILURES: u32 = 4;
const MAX_DELAY: Duration = Duration::minutes(15);
const HARD_LIMIT: u32 = 100;
const HARD_LIMIT_DELAY: Duration = Duration::hours(1);
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    next_allowed: OffsetDateTime,
}

pub struct LoginThrottle {
    entries: Mutex<HashMap<String, Failures>>,
    clock: Arc<dyn Clock>,
}

/// The delay after `count` consecutive failures.
pub fn delay_after(count: u32) -> Duration {
    if count >= HARD_LIMIT {
        return HARD_LIMIT_DELAY;
    }
    if count <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let exponent = count - FREE_FAILURES - 1;
    if exponent >= 10 {
        return MAX_DELAY;
    }
    Duration::seconds(1 << exponent).min(MAX_DELAY)
}

impl LoginThrottle {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { entries: Mutex::new(HashMap::new()), clock }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Err(seconds)` while the account must wait.
    pub fn check(&self, account: &str) -> Result<(), u64> {
        let now = self.clock.now();
        match self.entries().get(account) {
            Some(failures) if failures.next_allowed > now => {
                let wait = (failures.next_allowed - now).whole_seconds().max(1);
                Err(u64::try_from(wait).unwrap_or(1))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, account: &str) {
        let now = self.clock.now();
        let mut entries = self.entries();
        if entries.len() >= MAX_TRACKED && !entries.contains_key(account) {
            entries.retain(|_, failures| failures.count >= FREE_FAILURES && failures.next_allowed > now);
            if entries.len() >= MAX_TRACKED {
                return;
            }
        }
        let failures = entries.entry(account.to_owned()).or_insert(Failures { count: 0, next_allowed: now });
        failures.count = failures.count.saturating_add(1);
        failures.next_allowed = now + delay_after(failures.count);
    }

    pub fn record_success(&self, account: &str) {
        self.entries().remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn delays_grow_then_cap() {
        assert_eq!(delay_after(1), Duration::ZERO);
        assert_eq!(delay_after(4), Duration::ZERO);
        assert_eq!(delay_after(5), Duration::seconds(1));
        assert_eq!(delay_after(6), Duration::seconds(2));
        assert_eq!(delay_after(10), Duration::seconds(32));
        assert_eq!(delay_after(20), MAX_DELAY);
        assert_eq!(delay_after(99), MAX_DELAY);
        assert_eq!(delay_after(100), HARD_LIMIT_DELAY);
    }

    #[test]
    fn an_account_waits_after_failures_and_a_success_resets_it() {
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH + Duration::days(20_000));
        let throttle = LoginThrottle::new(Arc::new(clock.clone()));
        for _ in 0..4 {
            assert_eq!(throttle.check("ada@example.com"), Ok(()));
            throttle.record_failure("ada@example.com");
        }
        assert_eq!(throttle.check("ada@example.com"), Ok(()), "four failures are free");
        throttle.record_failure("ada@example.com");
        assert_eq!(throttle.check("ada@example.com"), Err(1));
        assert_eq!(throttle.check("bob@example.com"), Ok(()), "other accounts are unaffected");
        clock.advance(Duration::seconds(1));
        assert_eq!(throttle.check("ada@example.com"), Ok(()));
        throttle.record_failure("ada@example.com");
        assert_eq!(throttle.check("ada@example.com"), Err(2));
        clock.advance(Duration::seconds(2));
        throttle.record_success("ada@example.com");
        throttle.record_failure("ada@example.com");
        assert_eq!(throttle.check("ada@example.com"), Ok(()), "the count restarted");
    }
}
