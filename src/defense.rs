//! Active defence: blocked clients, and blocks that make themselves.
//!
//! A block names an address or a network, lasts until it expires or is
//! lifted, and answers 403 on every route but `/health`, before any other
//! work (`layers::block`). With `[defense] enabled`, `failed_login_threshold`
//! failed logins, or `rate_limited_threshold` 429s, from one client within
//! `window` block it for `block_for`. Every block is audited (`ip_blocked`,
//! `ip_unblocked`), counted, and POSTed to `[alerts] webhook_url` from a
//! background task with bounded retries, so no request ever waits on it.
//!
//! Blocks live in the store; each instance keeps the active ones in memory
//! and re-reads them every few seconds, so a block made on one instance
//! holds on all of them shortly after.
//!
//! A blocked client that keeps sending is audited in aggregate: its 403s
//! are counted per client (IPv6 by `server.ipv6_prefix`) and clock minute,
//! and each instance writes one `forbidden` event per client and minute,
//! with the count in its `detail`, once the minute is over.

use std::{
    collections::HashMap,
    mem,
    net::IpAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use ipnet::IpNet;
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    audit::{AuditContext, Auditor},
    clock::Clock,
    config::Config,
    domain::{AuditEvent, AuditKind, Outcome},
    layers::client_ip::canonical,
    limiter::{
        LimitKey, LimiterBackend, Subject, account_subject, ip_subject,
        strategy::{Quota, Strategy},
    },
    store::{Block, Store, StoreError},
};

const RELOAD_EVERY: Duration = Duration::from_secs(5);
const WEBHOOK_ATTEMPTS: u32 = 3;
/// Counter groups for the defence, apart from the configured rate limits.
const FAILED_LOGINS: u16 = u16::MAX - 1;
const RATE_LIMITED: u16 = u16::MAX - 2;
const UNAUTHORIZED: u16 = u16::MAX - 3;
/// Blocked clients whose refusals are counted apart in one minute; the
/// refusals of any more are counted together.
const REFUSED_CLIENTS: usize = 10_000;
const MINUTE_MS: i64 = 60_000;

/// A blocked client's refusals in the current minute.
struct Refused {
    first: OffsetDateTime,
    client_ip: Option<IpAddr>,
    request_id: Option<String>,
    count: u64,
}

/// Refusals of blocked clients in one clock minute, audited when it ends.
#[derive(Default)]
struct RefusalTally {
    /// The minute counted (Unix milliseconds / 60,000).
    minute: i64,
    clients: HashMap<u128, Refused>,
    /// Refusals of clients past `REFUSED_CLIENTS`.
    others: Option<Refused>,
}

/// Most automatic blocks in force at once; past it, no more are made (a
/// warning says so) until some expire: memory and the blocks table stay
/// bounded however many addresses an attack uses.
const MAX_AUTOMATIC_BLOCKS: usize = 10_000;
/// The automatic block that would make this many in one /24 (IPv4) or /64
/// (IPv6) blocks the whole prefix instead.
const AGGREGATE_AT: usize = 8;
const FAILED_LOGINS_REASON: &str = "too many failed logins";
const RATE_LIMITED_REASON: &str = "too many rate-limited requests";

/// The prefix whose automatic blocks are aggregated: /24 or /64.
fn aggregate_of(network: IpNet) -> Option<IpNet> {
    let length = if network.addr().is_ipv4() { 24 } else { 64 };
    (network.prefix_len() > length).then(|| IpNet::new(network.addr(), length).map(|net| net.trunc()).ok()).flatten()
}

/// Blocked networks of one family and prefix length: network address →
/// expiry (`None`: never).
type NetworksOfOneLength = HashMap<IpAddr, Option<OffsetDateTime>>;

/// The blocks in force, by prefix length: a lookup masks the address once
/// per length in use (at most 33 for IPv4, 129 for IPv6) and reads a hash
/// map, whatever the number of blocks; not a scan of every block.
#[derive(Default)]
struct BlockSet {
    /// (IPv6?, prefix length) and its networks.
    by_prefix: Vec<((bool, u8), NetworksOfOneLength)>,
    len: usize,
    /// Automatic blocks, in all and by aggregate prefix (`aggregate_of`).
    automatic: usize,
    automatic_by_prefix: HashMap<IpNet, usize>,
}

impl BlockSet {
    fn insert(&mut self, network: IpNet, expires_at: Option<OffsetDateTime>, automatic: bool) {
        let network = network.trunc();
        let key = (network.addr().is_ipv6(), network.prefix_len());
        let index = match self.by_prefix.iter().position(|(k, _)| *k == key) {
            Some(index) => index,
            None => {
                self.by_prefix.push((key, HashMap::new()));
                self.by_prefix.len() - 1
            }
        };
        let entries = &mut self.by_prefix[index].1;
        match entries.get_mut(&network.addr()) {
            // The longer of two blocks of one network holds.
            Some(held) => {
                if held.is_some_and(|at| expires_at.is_none_or(|new| new > at)) {
                    *held = expires_at;
                }
            }
            None => {
                entries.insert(network.addr(), expires_at);
                self.len += 1;
            }
        }
        if automatic {
            self.automatic += 1;
            if let Some(prefix) = aggregate_of(network) {
                *self.automatic_by_prefix.entry(prefix).or_default() += 1;
            }
        }
    }

    fn contains(&self, ip: IpAddr, now: OffsetDateTime) -> bool {
        let v6 = ip.is_ipv6();
        self.by_prefix.iter().filter(|((family, _), _)| *family == v6).any(|((_, length), entries)| {
            IpNet::new(ip, *length)
                .ok()
                .and_then(|network| entries.get(&network.trunc().addr()))
                .is_some_and(|expires_at| expires_at.is_none_or(|at| at > now))
        })
    }

    /// What an automatic block of `network` should block: `network`, its
    /// /24 or /64 when enough of that prefix is blocked already, or nothing
    /// at the cap.
    fn automatic_block_for(&self, network: IpNet) -> Option<IpNet> {
        if self.automatic >= MAX_AUTOMATIC_BLOCKS {
            return None;
        }
        match aggregate_of(network) {
            Some(prefix) if self.automatic_by_prefix.get(&prefix).copied().unwrap_or(0) + 1 >= AGGREGATE_AT => {
                Some(prefix)
            }
            _ => Some(network),
        }
    }
}

pub struct Defense {
    enabled: bool,
    failed_logins: Quota,
    rate_limited: Quota,
    block_for: time::Duration,
    v6_prefix: u8,
    active: RwLock<BlockSet>,
    /// `active.len()`, so that the common case (no blocks) costs every
    /// request one plain read instead of a shared lock and a clock read.
    held: AtomicUsize,
    counters: Arc<dyn LimiterBackend>,
    store: Arc<dyn Store>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    webhook: Option<(reqwest::Client, String)>,
    blocks_total: Counter,
    blocked_clients: Gauge,
    refusals: Mutex<RefusalTally>,
    /// `refusals.minute` while it holds any, else `i64::MAX`: the periodic
    /// check reads it without the lock.
    refusals_minute: AtomicI64,
}

#[derive(Serialize)]
struct Alert<'a> {
    event: &'static str,
    ip: &'a str,
    reason: &'a str,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
}

/// The alert webhook's HTTP client: a short timeout, and no redirects
/// followed (a 3xx is a refusal, retried like one), so the webhook cannot
/// bounce an alert to an address that `config check` never saw.
fn webhook_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// An address or network as typed: `203.0.113.7` is `203.0.113.7/32`.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from)).map(|net| net.trunc())
}

impl Defense {
    /// Adds the block counters to the scrape.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register("blocks", "Clients blocked, automatically or by an admin", self.blocks_total.clone());
        registry.register("blocked_clients", "Blocks in force now", self.blocked_clients.clone());
    }

    pub async fn load(
        config: &Config,
        counters: Arc<dyn LimiterBackend>,
        store: Arc<dyn Store>,
        audit: Arc<Auditor>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        let defense = &config.defense;
        let window_ms = i64::try_from(defense.window.0.as_millis()).unwrap_or(i64::MAX);
        let webhook =
            (!config.alerts.webhook_url.is_empty()).then(|| (webhook_client(), config.alerts.webhook_url.clone()));
        let this = Arc::new(Self {
            enabled: defense.enabled,
            failed_logins: Quota {
                strategy: Strategy::FixedWindow,
                limit: defense.failed_login_threshold.max(1),
                window_ms,
            },
            rate_limited: Quota {
                strategy: Strategy::FixedWindow,
                limit: defense.rate_limited_threshold.max(1),
                window_ms,
            },
            block_for: time::Duration::try_from(defense.block_for.0).unwrap_or(time::Duration::minutes(15)),
            v6_prefix: config.server.ipv6_prefix,
            active: RwLock::new(BlockSet::default()),
            held: AtomicUsize::new(0),
            counters,
            store,
            audit,
            clock,
            webhook,
            blocks_total: Counter::default(),
            blocked_clients: Gauge::default(),
            refusals: Mutex::new(RefusalTally::default()),
            refusals_minute: AtomicI64::new(i64::MAX),
        });
        this.reload().await?;
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                let Some(defense) = weak.upgrade() else { return };
                defense.audit_past_refusals();
                if let Err(error) = defense.reload().await {
                    tracing::warn!(cause = %error, "could not reload blocks");
                }
            }
        });
        Ok(this)
    }

    /// Re-reads the blocks in force from the store.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut blocks = BlockSet::default();
        let mut before = None;
        loop {
            let page = self.store.list_blocks(now, before, 500).await?;
            let done = page.len() < 500;
            before = page.last().map(|block| block.id);
            for block in page {
                if let Some(network) = parse_network(&block.ip) {
                    let automatic = matches!(block.reason.as_str(), FAILED_LOGINS_REASON | RATE_LIMITED_REASON);
                    blocks.insert(network, block.expires_at, automatic);
                }
            }
            if done {
                break;
            }
        }
        self.blocked_clients.set(i64::try_from(blocks.len).unwrap_or(i64::MAX));
        let mut active = self.active.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.held.store(blocks.len, Ordering::Release);
        *active = blocks;
        Ok(())
    }

    /// Whether failed logins and 429s are counted towards blocks.
    pub fn counts(&self) -> bool {
        self.enabled
    }

    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        if self.held.load(Ordering::Acquire) == 0 {
            return false;
        }
        let ip = canonical(ip);
        let now = self.clock.now();
        self.active.read().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(ip, now)
    }

    /// Counts a 403 answered to blocked client `ip` for the audit trail:
    /// one event per client and minute (`audit_past_refusals`), not one per
    /// request.
    pub fn refused(&self, ip: IpAddr, request_id: &str) {
        let now = self.clock.now();
        let minute = self.clock.unix_millis().div_euclid(MINUTE_MS);
        let past = {
            let mut tally = self.refusals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let past = (tally.minute != minute)
                .then(|| mem::replace(&mut *tally, RefusalTally { minute, ..Default::default() }));
            let first =
                || Refused { first: now, client_ip: Some(ip), request_id: Some(request_id.to_owned()), count: 0 };
            let key = ip_subject(ip, self.v6_prefix);
            let refused = if tally.clients.len() < REFUSED_CLIENTS || tally.clients.contains_key(&key) {
                tally.clients.entry(key).or_insert_with(first)
            } else {
                tally.others.get_or_insert_with(|| Refused { client_ip: None, request_id: None, ..first() })
            };
            refused.count += 1;
            self.refusals_minute.store(minute, Ordering::Release);
            past
        };
        if let Some(past) = past {
            self.audit_refusals(past);
        }
    }

    /// Audits the refusals counted in a minute that is over.
    pub fn audit_past_refusals(&self) {
        let minute = self.clock.unix_millis().div_euclid(MINUTE_MS);
        if self.refusals_minute.load(Ordering::Acquire) >= minute {
            return;
        }
        let past = {
            let mut tally = self.refusals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if tally.minute >= minute {
                return;
            }
            self.refusals_minute.store(i64::MAX, Ordering::Release);
            mem::replace(&mut *tally, RefusalTally { minute, ..Default::default() })
        };
        self.audit_refusals(past);
    }

    fn audit_refusals(&self, tally: RefusalTally) {
        let others = tally.others.map(|refused| (refused, "other blocked clients"));
        for (refused, whose) in tally.clients.into_values().map(|refused| (refused, "blocked client")).chain(others) {
            self.audit.record(AuditEvent {
                id: Uuid::now_v7(),
                time: refused.first,
                request_id: refused.request_id,
                event: AuditKind::Forbidden,
                user_id: None,
                client_ip: refused.client_ip,
                route: None,
                outcome: Outcome::Denied,
                detail: Some(format!(
                    "{whose}: {} request{} refused in the minute",
                    refused.count,
                    if refused.count == 1 { "" } else { "s" }
                )),
            });
        }
    }

    /// Blocks `network`; `duration` defaults to `block_for`.
    pub async fn block(
        &self,
        network: IpNet,
        reason: &str,
        duration: Option<time::Duration>,
        context: &AuditContext,
    ) -> Result<Block, StoreError> {
        self.insert_block(network, reason, duration, context, false).await
    }

    async fn insert_block(
        &self,
        network: IpNet,
        reason: &str,
        duration: Option<time::Duration>,
        context: &AuditContext,
        automatic: bool,
    ) -> Result<Block, StoreError> {
        let now = self.clock.now();
        let block = Block {
            id: Uuid::now_v7(),
            ip: if network.prefix_len() == network.max_prefix_len() {
                network.addr().to_string()
            } else {
                network.to_string()
            },
            reason: reason.to_owned(),
            created_at: now,
            expires_at: Some(now + duration.unwrap_or(self.block_for)),
        };
        self.store.insert_block(&block).await?;
        {
            let mut active = self.active.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            active.insert(network, block.expires_at, automatic);
            self.held.store(active.len, Ordering::Release);
            self.blocked_clients.set(i64::try_from(active.len).unwrap_or(i64::MAX));
        }
        self.blocks_total.inc();
        let mut event = context.event(now, AuditKind::IpBlocked, None, Outcome::Denied);
        event.detail = Some(format!("{} ({})", block.ip, block.reason));
        self.audit.record(event);
        self.alert(&block);
        Ok(block)
    }

    pub async fn unblock(&self, id: Uuid, context: &AuditContext) -> Result<Block, StoreError> {
        let block = self.store.delete_block(id).await?;
        self.reload().await?;
        let mut event = context.event(self.clock.now(), AuditKind::IpUnblocked, None, Outcome::Success);
        event.detail = Some(block.ip.clone());
        self.audit.record(event);
        Ok(block)
    }

    /// Counts a failed login from `ip`; past the threshold, blocks it.
    pub async fn failed_login(&self, ip: IpAddr, context: &AuditContext) {
        self.count(ip, FAILED_LOGINS, self.failed_logins, FAILED_LOGINS_REASON, context).await;
    }

    /// Counts a 429 answered to `ip`; past the threshold, blocks it.
    pub async fn rate_limited(&self, ip: IpAddr, context: &AuditContext) {
        self.count(ip, RATE_LIMITED, self.rate_limited, RATE_LIMITED_REASON, context).await;
    }

    async fn count(&self, ip: IpAddr, group: u16, quota: Quota, reason: &str, context: &AuditContext) {
        if !self.enabled || self.is_blocked(ip) {
            return;
        }
        let key = LimitKey { group, subject: Subject::Ip(ip_subject(ip, self.v6_prefix)), audit: false };
        let Ok(decision) = self.counters.decide(&key, &quota, true).await else { return };
        if decision.remaining == 0 || !decision.allowed {
            let network = match canonical(ip) {
                IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
                // IPv6 clients are blocked by the same prefix they are limited by.
                IpAddr::V6(v6) => IpNet::new(IpAddr::V6(v6), self.v6_prefix)
                    .map(|net| net.trunc())
                    .unwrap_or(IpNet::from(IpAddr::V6(v6))),
            };
            let chosen =
                self.active.read().unwrap_or_else(|poisoned| poisoned.into_inner()).automatic_block_for(network);
            let Some(network) = chosen else {
                tracing::warn!(limit = MAX_AUTOMATIC_BLOCKS, "automatic blocks at their limit: client not blocked");
                return;
            };
            if let Err(error) = self.insert_block(network, reason, None, context, true).await {
                tracing::error!(cause = %error, "could not store an automatic block");
            }
        }
    }

    /// True for the first 401 from `ip` on `route` in a minute (the one that
    /// is audited); an unknown client counts as one client.
    pub async fn first_unauthorized(&self, ip: Option<IpAddr>, route: &str) -> bool {
        let subject = Subject::IpAndAccount(ip.map_or(0, |ip| ip_subject(ip, self.v6_prefix)), account_subject(route));
        let key = LimitKey { group: UNAUTHORIZED, subject, audit: true };
        let once = Quota { strategy: Strategy::FixedWindow, limit: 1, window_ms: 60_000 };
        self.counters.decide(&key, &once, true).await.map(|decision| decision.allowed).unwrap_or(true)
    }

    /// POSTs the block to the webhook in the background, a few times at most.
    fn alert(&self, block: &Block) {
        let Some((client, url)) = self.webhook.clone() else { return };
        let body = Alert {
            event: "client_blocked",
            ip: &block.ip,
            reason: &block.reason,
            expires_at: block.expires_at,
            time: self.clock.now(),
        };
        let Ok(body) = serde_json::to_vec(&body) else { return };
        tokio::spawn(async move {
            for attempt in 1..=WEBHOOK_ATTEMPTS {
                let sent = client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => return,
                    Ok(response) => {
                        tracing::warn!(status = response.status().as_u16(), attempt, "alert webhook refused")
                    }
                    Err(error) => tracing::warn!(cause = %error, attempt, "alert webhook unreachable"),
                }
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            tracing::error!("alert webhook gave up after {WEBHOOK_ATTEMPTS} attempts");
        });
    }
}

impl Drop for Defense {
    /// What was counted in the current minute is audited at shutdown.
    fn drop(&mut self) {
        let tally = mem::take(self.refusals.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()));
        self.audit_refusals(tally);
    }
}

#[cfg(test)]
mod tests {
    use super::{AGGREGATE_AT, BlockSet, MAX_AUTOMATIC_BLOCKS, parse_network, webhook_client};
    use ipnet::IpNet;
    use std::net::IpAddr;
    use time::{Duration, OffsetDateTime};

    fn net(text: &str) -> IpNet {
        parse_network(text).expect("network")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn the_block_set_finds_addresses_and_nested_networks_until_they_expire() {
        let now = OffsetDateTime::now_utc();
        let mut set = BlockSet::default();
        set.insert(net("203.0.113.7"), Some(now + Duration::minutes(5)), false);
        set.insert(net("198.51.100.0/24"), None, false);
        set.insert(net("198.51.100.9"), Some(now - Duration::minutes(1)), false);
        set.insert(net("10.0.0.0/8"), Some(now + Duration::minutes(5)), false);
        set.insert(net("2001:db8:1::/48"), None, false);
        set.insert(net("2001:db8:2::5"), Some(now + Duration::minutes(5)), false);
        assert!(set.contains(ip("203.0.113.7"), now));
        assert!(!set.contains(ip("203.0.113.8"), now));
        assert!(!set.contains(ip("203.0.113.7"), now + Duration::minutes(6)), "expired");
        assert!(set.contains(ip("198.51.100.9"), now), "an expired address inside a lasting network");
        assert!(set.contains(ip("10.200.3.4"), now));
        assert!(set.contains(ip("2001:db8:1:ffff::1"), now));
        assert!(set.contains(ip("2001:db8:2::5"), now) && !set.contains(ip("2001:db8:2::6"), now));
        assert!(!set.contains(ip("::ffff:10.0.0.1"), now), "families are apart (canonical() maps these)");
        // A second block of one network keeps the longer expiry.
        set.insert(net("203.0.113.7"), Some(now + Duration::hours(1)), false);
        set.insert(net("203.0.113.7"), Some(now + Duration::minutes(1)), false);
        assert!(set.contains(ip("203.0.113.7"), now + Duration::minutes(30)));
        assert_eq!(set.len, 6);
    }

    #[test]
    fn lookups_read_one_map_per_prefix_length_however_many_blocks() {
        let now = OffsetDateTime::now_utc();
        let mut set = BlockSet::default();
        for n in 0..50_000u32 {
            let address = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + n * 7));
            set.insert(IpNet::from(address), Some(now + Duration::minutes(5)), false);
        }
        assert_eq!(set.by_prefix.len(), 1, "one length, one map: a lookup is one hash read");
        assert!(set.contains(IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + 49_999 * 7)), now));
        assert!(!set.contains(IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + 49_999 * 7 + 1)), now));
    }

    #[test]
    fn automatic_blocks_aggregate_by_prefix_and_stop_at_the_cap() {
        let now = Some(OffsetDateTime::now_utc() + Duration::minutes(15));
        let mut set = BlockSet::default();
        for n in 1..AGGREGATE_AT {
            let address = net(&format!("192.0.2.{n}"));
            assert_eq!(set.automatic_block_for(address), Some(address), "address {n} alone");
            set.insert(address, now, true);
        }
        assert_eq!(set.automatic_block_for(net("192.0.2.200")), Some(net("192.0.2.0/24")), "the prefix at last");
        assert_eq!(set.automatic_block_for(net("192.0.3.1")), Some(net("192.0.3.1")), "another /24 is apart");
        assert_eq!(set.automatic_block_for(net("192.0.2.0/24")), Some(net("192.0.2.0/24")));
        for n in 1..AGGREGATE_AT {
            set.insert(net(&format!("2001:db8::{n}")), now, true);
        }
        assert_eq!(set.automatic_block_for(net("2001:db8::ff")), Some(net("2001:db8::/64")));
        // An admin's blocks count towards neither.
        let mut admin = BlockSet::default();
        for n in 1..=AGGREGATE_AT {
            admin.insert(net(&format!("198.51.100.{n}")), now, false);
        }
        assert_eq!(admin.automatic_block_for(net("198.51.100.99")), Some(net("198.51.100.99")));

        let mut full = BlockSet::default();
        for n in 0..MAX_AUTOMATIC_BLOCKS as u32 {
            full.insert(IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(0x0B00_0000 + n * 256))), now, true);
        }
        assert_eq!(full.automatic_block_for(net("203.0.113.1")), None, "the cap holds");
        assert!(full.len <= MAX_AUTOMATIC_BLOCKS);
    }

    /// A webhook answering 302 to another listener: the client reports the
    /// 302 and the other listener is never contacted.
    #[tokio::test]
    async fn the_webhook_client_follows_no_redirect() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        elsewhere.set_nonblocking(true).expect("nonblocking");
        let target = format!("http://{}/stolen", elsewhere.local_addr().expect("address"));
        let webhook = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/alert", webhook.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let (mut socket, _) = webhook.accept().await.expect("accept");
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let answer =
                format!("HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            socket.write_all(answer.as_bytes()).await.expect("answer");
        });
        let response = webhook_client().post(&url).body("{}").send().await.expect("an answer");
        assert_eq!(response.status().as_u16(), 302);
        server.await.expect("server");
        let contacted = elsewhere.accept();
        assert!(
            matches!(&contacted, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
            "the redirect target was contacted: {contacted:?}"
        );
    }

    #[test]
    fn addresses_and_networks_parse() {
        assert_eq!(parse_network("203.0.113.7").map(|n| n.to_string()), Some("203.0.113.7/32".into()));
        assert_eq!(parse_network("198.51.100.9/24").map(|n| n.to_string()), Some("198.51.100.0/24".into()));
        assert_eq!(parse_network("2001:db8::1/64").map(|n| n.to_string()), Some("2001:db8::/64".into()));
        assert!(parse_network("nope").is_none());
        assert!(parse_network("300.1.1.1").is_none());
    }
}
