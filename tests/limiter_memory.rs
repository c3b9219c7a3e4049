//! Limiter memory with 1,000,000 distinct clients, measured as the growth
//! of this process's resident set (its own test binary, so nothing else
//! runs beside it). The stated bound is in docs/api.md.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rampart::{
    clock::SystemClock,
    limiter::{
        LimitKey, Subject,
        memory::MemoryLimiter,
        strategy::{Quota, Strategy},
    },
};

const BOUND_MIB: f64 = 100.0;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

#[test]
fn a_million_distinct_clients_fit_in_the_stated_bound() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc on this system");
        return;
    }
    let before = rss_mib();
    let limiter = MemoryLimiter::new(2_000_000, Arc::new(SystemClock));
    let quota = Quota { strategy: Strategy::SlidingWindow, limit: 100, window_ms: 900_000 };
    for n in 0..1_000_000u128 {
        let key = LimitKey { group: 0, subject: Subject::Ip(n << 64), audit: false };
        assert!(limiter.decide_now(&key, &quota, true).allowed);
    }
    assert_eq!(limiter.len(), 1_000_000);
    let grown = rss_mib() - before;
    println!("1,000,000 rate-limit keys: +{grown:.1} MiB resident");
    assert!(grown < BOUND_MIB, "{grown:.1} MiB for 1,000,000 keys");
}
