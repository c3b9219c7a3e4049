//! The three counting strategies, as pure state machines over an injected
//! instant (`now`, in milliseconds). Each decision is O(1) in time and
//! keeps O(1) state per key.
//!
//! - Fixed window: a counter per aligned window. Exact for the window; a
//!   client can send `limit` at the end of one window and `limit` at the
//!   start of the next.
//! - Sliding window (counter variant, as Cloudflare's): the current
//!   window's exact count plus the previous window's count weighted by how
//!   much of it still overlaps the sliding window. It assumes the previous
//!   window's requests were spread evenly; the error bound: any rolling
//!   window of the same length admits at most `limit × (1 + f)` < 2 × `limit`
//!   (f: how far into the current window), and exactly `limit` when the
//!   previous window's traffic was uniform. The first window is exact.
//! - Token bucket as GCRA: a bucket of `limit` tokens refilled at
//!   `limit / window`; bursts up to `limit`, then one request per
//!   `window / limit`. State is one timestamp.

use serde::{Deserialize, Serialize};

/// Milliseconds since an arbitrary epoch (the injected clock's).
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    FixedWindow,
    SlidingWindow,
    TokenBucket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub strategy: Strategy,
    pub limit: u32,
    pub window_ms: Millis,
}

/// What a decision tells the client (`RateLimit` fields and `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left now (`r`).
    pub remaining: u32,
    /// Milliseconds until the quota is fully available again (`t`).
    pub reset_ms: Millis,
    /// Milliseconds until one more request would be allowed (0 if allowed).
    pub retry_after_ms: Millis,
}

/// Per-key state. One variant per strategy; a key only ever sees one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Fixed { window: i64, count: u32 },
    Sliding { window: i64, current: u32, previous: u32 },
    Bucket { tat: Millis },
}

impl Quota {
    fn window(&self) -> Millis {
        self.window_ms.max(1)
    }

    pub fn fresh_state(&self, now: Millis) -> State {
        match self.strategy {
            Strategy::FixedWindow => State::Fixed { window: now.div_euclid(self.window()), count: 0 },
            Strategy::SlidingWindow => {
                State::Sliding { window: now.div_euclid(self.window()), current: 0, previous: 0 }
            }
            Strategy::TokenBucket => State::Bucket { tat: now },
        }
    }

    /// Decides one request; with `consume`, an allowed request is counted.
    /// A state left by another strategy (after a configuration change)
    /// starts afresh.
    pub fn decide(&self, state: &mut State, now: Millis, consume: bool) -> Decision {
        let matches = matches!(
            (self.strategy, &*state),
            (Strategy::FixedWindow, State::Fixed { .. })
                | (Strategy::SlidingWindow, State::Sliding { .. })
                | (Strategy::TokenBucket, State::Bucket { .. })
        );
        if !matches {
            *state = self.fresh_state(now);
        }
        let window = self.window();
        let limit = self.limit;
        match state {
            State::Fixed { window: index, count } => {
                let current = now.div_euclid(window);
                if current != *index {
                    *index = current;
                    *count = 0;
                }
                let reset_ms = (current + 1) * window - now;
                if *count < limit {
                    if consume {
                        *count += 1;
                    }
                    let used = if consume { *count } else { *count + 1 };
                    Decision { allowed: true, remaining: limit - used.min(limit), reset_ms, retry_after_ms: 0 }
                } else {
                    Decision { allowed: false, remaining: 0, reset_ms, retry_after_ms: reset_ms }
                }
            }
            State::Sliding { .. } => {
                self.roll(state, now);
                let allowed = self.sliding_estimate(state, now) + 1000 <= i64::from(limit) * 1000;
                if allowed
                    && consume
                    && let State::Sliding { current, .. } = state
                {
                    *current += 1;
                }
                let estimate = self.sliding_estimate(state, now);
                let counted = if allowed && !consume { estimate + 1000 } else { estimate };
                let remaining = u32::try_from((i64::from(limit) * 1000 - counted).max(0) / 1000).unwrap_or(0);
                let reset_ms = self.sliding_reset(state, now);
                if allowed {
                    return Decision { allowed, remaining, reset_ms, retry_after_ms: 0 };
                }
                // The estimate only falls with time (at a window turn the
                // current count becomes the previous one at full weight), so
                // the first instant that admits one more is found by bisection.
                let (mut low, mut high) = (0, 2 * window);
                while high - low > 1 {
                    let middle = (low + high) / 2;
                    let mut probe = *state;
                    self.roll(&mut probe, now + middle);
                    if self.sliding_estimate(&probe, now + middle) + 1000 <= i64::from(limit) * 1000 {
                        high = middle;
                    } else {
                        low = middle;
                    }
                }
                Decision { allowed, remaining: 0, reset_ms, retry_after_ms: high }
            }
            State::Bucket { tat } => {
                // GCRA: each request costs `interval`; at most `window`
                // worth of cost may be outstanding (a full bucket).
                let interval = (window / i64::from(limit.max(1))).max(1);
                let base = (*tat).max(now);
                let new_tat = base + interval;
                let allow_at = new_tat - window;
                if allow_at <= now {
                    if consume {
                        *tat = new_tat;
                    }
                    let outstanding = if consume { new_tat } else { base } - now;
                    let remaining = u32::try_from((window - outstanding) / interval).unwrap_or(0).min(limit);
                    Decision { allowed: true, remaining, reset_ms: outstanding.max(0), retry_after_ms: 0 }
                } else {
                    Decision { allowed: false, remaining: 0, reset_ms: base - now, retry_after_ms: allow_at - now }
                }
            }
        }
    }

    /// Moves a sliding-window state into the window that contains `now`.
    fn roll(&self, state: &mut State, now: Millis) {
        if let State::Sliding { window: index, current, previous } = state {
            let now_index = now.div_euclid(self.window());
            if now_index != *index {
                *previous = if now_index == *index + 1 { *current } else { 0 };
                *current = 0;
                *index = now_index;
            }
        }
    }

    /// previous × (share of the previous window still inside the sliding
    /// window, rounded up) + current, in thousandths of a request.
    fn sliding_estimate(&self, state: &State, now: Millis) -> i64 {
        let State::Sliding { window: index, current, previous } = state else {
            return 0;
        };
        let window = self.window();
        let left = (index + 1) * window - now;
        let weight = (1000 * left + window - 1) / window;
        i64::from(*previous) * weight + i64::from(*current) * 1000
    }

    /// Until everything counted has slid out of the window.
    fn sliding_reset(&self, state: &State, now: Millis) -> Millis {
        let State::Sliding { window: index, current, previous } = state else {
            return 0;
        };
        let window = self.window();
        let left = (index + 1) * window - now;
        if *current > 0 {
            left + window
        } else if *previous > 0 {
            left
        } else {
            0
        }
    }

    /// From this instant on, `state` behaves like a fresh key's, so it may
    /// be forgotten.
    pub fn idle_at(&self, state: &State) -> Millis {
        let window = self.window();
        match state {
            State::Fixed { window: index, .. } => (index + 1) * window,
            State::Sliding { window: index, .. } => (index + 2) * window,
            State::Bucket { tat } => *tat,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(strategy: Strategy, limit: u32, window_ms: Millis) -> Quota {
        Quota { strategy, limit, window_ms }
    }

    fn run(q: &Quota, state: &mut State, now: Millis, n: u32) -> u32 {
        (0..n).filter(|_| q.decide(state, now, true).allowed).count() as u32
    }

    #[test]
    fn fixed_window_counts_to_the_limit_then_rolls_over() {
        let q = quota(Strategy::FixedWindow, 5, 60_000);
        let mut s = q.fresh_state(0);
        let first = q.decide(&mut s, 10_000, true);
        assert_eq!(first, Decision { allowed: true, remaining: 4, reset_ms: 50_000, retry_after_ms: 0 });
        assert_eq!(run(&q, &mut s, 20_000, 10), 4);
        let denied = q.decide(&mut s, 59_999, true);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_ms, 1, "retry when the window turns");
        assert!(q.decide(&mut s, 60_000, true).allowed, "a new window starts fresh");
        assert_eq!(run(&q, &mut s, 60_001, 10), 4);
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        let q = quota(Strategy::SlidingWindow, 10, 60_000);
        let mut s = q.fresh_state(0);
        assert_eq!(run(&q, &mut s, 30_000, 20), 10, "the first window is exact");
        // 15 s into the next window, 75% of the previous 10 still count.
        assert_eq!(run(&q, &mut s, 75_000, 20), 2);
        let denied = q.decide(&mut s, 75_000, true);
        assert!(!denied.allowed);
        // previous 10 × w + current 2 ≤ 9 needs w ≤ 0.7: at 18 s in.
        assert_eq!(denied.retry_after_ms, 3_000);
        assert!(q.decide(&mut s, 78_000, true).allowed);
        // Half-way through: 10 × 0.5 + 3 = 8 → two more, then denied.
        assert_eq!(run(&q, &mut s, 90_000, 5), 2);
        // Two windows later nothing of the old traffic counts.
        assert_eq!(run(&q, &mut s, 180_000, 20), 10);
    }

    #[test]
    fn sliding_window_retry_after_is_when_a_request_would_pass() {
        let q = quota(Strategy::SlidingWindow, 5, 10_000);
        let mut s = q.fresh_state(0);
        run(&q, &mut s, 1_000, 5);
        let denied = q.decide(&mut s, 2_000, true);
        assert!(!denied.allowed);
        let retry_at = 2_000 + denied.retry_after_ms;
        assert!(!q.decide(&mut s.clone(), retry_at - 1, false).allowed, "not before");
        assert!(q.decide(&mut s, retry_at, true).allowed, "at the promised time");
    }

    #[test]
    fn token_bucket_allows_a_burst_then_refills_steadily() {
        let q = quota(Strategy::TokenBucket, 10, 10_000);
        let mut s = q.fresh_state(0);
        assert_eq!(run(&q, &mut s, 0, 20), 10, "a full bucket bursts");
        let denied = q.decide(&mut s, 0, true);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_ms, 1_000, "one token per second");
        assert!(!q.decide(&mut s, 999, true).allowed);
        assert!(q.decide(&mut s, 1_000, true).allowed);
        assert!(!q.decide(&mut s, 1_500, true).allowed);
        // Idle for a whole window: the bucket is full again, not fuller.
        assert_eq!(run(&q, &mut s, 50_000, 20), 10);
        assert!(q.idle_at(&s) <= 60_000);
    }

    #[test]
    fn peeking_never_consumes() {
        for strategy in [Strategy::FixedWindow, Strategy::SlidingWindow, Strategy::TokenBucket] {
            let q = quota(strategy, 3, 1_000);
            let mut s = q.fresh_state(0);
            for _ in 0..10 {
                assert!(q.decide(&mut s, 0, false).allowed, "{strategy:?}");
            }
            assert_eq!(run(&q, &mut s, 0, 10), 3, "{strategy:?}");
        }
    }

    #[test]
    fn remaining_counts_down_to_zero() {
        for strategy in [Strategy::FixedWindow, Strategy::SlidingWindow, Strategy::TokenBucket] {
            let q = quota(strategy, 3, 60_000);
            let mut s = q.fresh_state(0);
            let remaining: Vec<u32> = (0..3).map(|_| q.decide(&mut s, 0, true).remaining).collect();
            assert_eq!(remaining, [2, 1, 0], "{strategy:?}");
        }
    }
}
