//! Closing connections that do nothing, and capping connections per client.
//!
//! A client that holds a connection without a request in progress and
//! without taking any response for `server.header_read_timeout` is
//! disconnected. That covers slowloris clients (headers trickled in, never
//! finished), idle keep-alive connections, and clients that stop reading
//! their response.
//!
//! Only request and response activity counts: a request starting or ending
//! (the service marks it, `Activity::begin`), and response bytes written.
//! On HTTP/1.1 every byte the server writes is a response; on HTTP/2 the
//! written frames are read by their 9-byte headers and only HEADERS,
//! CONTINUATION and DATA frames count, so a client that opens no stream and
//! sends PINGs (answered by hyper's codec with PING frames), SETTINGS or
//! WINDOW_UPDATEs is idle. A long streaming response (server-sent events)
//! is not idle while its DATA frames go out. Counting at the I/O rather
//! than when the service polls a response body also covers a large body
//! handed over in one piece and written out slowly to a slow reader.
//!
//! Why not hyper's own header-read timeout: hyper arms it afresh for every
//! request (a boxed sleep registered in and removed from the runtime's
//! timer wheel), about 3% of a small request's cost. Here a connection has
//! one sleep per half period, and a request costs a few counter updates.
//!
//! `PerClient` caps the connections one client address holds open
//! (`server.max_connections_per_ip`), so one host cannot take every slot.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use ipnet::IpNet;

use crate::{layers::client_ip::canonical, limiter::ip_subject};

/// What one connection has been doing, shared by its service (requests)
/// and its I/O (response bytes written).
#[derive(Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Bumped by every request that starts or ends and every write of
    /// response bytes (see `Watched`).
    progress: AtomicU64,
    /// The connection's slots (the `max_connections` permit and the
    /// per-client count), released when the last holder of this activity
    /// goes: its service and its I/O (`Watched`), which a websocket tunnel
    /// takes over after an upgrade, so a tunnel keeps its slot.
    slots: std::sync::Mutex<Option<Box<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activity").field("in_flight", &self.in_flight).field("progress", &self.progress).finish()
    }
}

impl Activity {
    /// Marks a request in progress until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.progress.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Keeps `slots` until this activity is dropped.
    pub fn hold(&self, slots: Box<dyn std::any::Any + Send + Sync>) {
        *self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(slots);
    }

    fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// A request in progress (see `Activity::begin`).
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `connection` until it ends, or until it has been idle (no request
/// in progress, no progress at all) for `limit`: it is then dropped, which
/// closes the socket. Checked every half `limit`, so an idle connection
/// goes after between one and one and a half `limit`.
pub async fn serve_until_idle<F: Future>(connection: F, activity: &Activity, limit: Duration) -> Option<F::Output> {
    tokio::pin!(connection);
    let mut seen = activity.progress();
    let mut quiet_checks = 0;
    loop {
        tokio::select! {
            biased;
            output = &mut connection => return Some(output),
            () = tokio::time::sleep(limit / 2) => {
                let now = activity.progress();
                if activity.is_idle() && now == seen {
                    quiet_checks += 1;
                    if quiet_checks >= 2 {
                        return None;
                    }
                } else {
                    quiet_checks = 0;
                }
                seen = now;
            }
        }
    }
}

/// A connection's I/O, counting response bytes written as progress.
pub struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
    output: Output,
}

impl<I> Watched<I> {
    pub fn new(inner: I, activity: Arc<Activity>) -> Self {
        Self { inner, activity, output: Output::Unknown }
    }

    /// Notes the first `written` bytes of `bufs`, which went out.
    fn wrote<'a>(&mut self, written: &Poll<io::Result<usize>>, bufs: impl IntoIterator<Item = &'a [u8]>) {
        let Poll::Ready(Ok(mut left)) = *written else { return };
        let mut response = false;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let part = &buf[..left.min(buf.len())];
            left -= part.len();
            response |= self.output.wrote(part);
        }
        if response {
            self.activity.progress.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a connection writes, as far as the idle watch cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Nothing written yet.
    Unknown,
    /// HTTP/1.1: everything written is a response.
    Http1,
    /// HTTP/2: frames, of which only some are responses.
    Http2(Frames),
}

/// Where the written byte stream is in its HTTP/2 frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Frames {
    /// The frame header read so far (length, type, flags, stream).
    header: [u8; FRAME_HEADER],
    filled: usize,
    /// Payload bytes of the current frame still to pass.
    payload: usize,
    /// The current frame carries a response: its payload counts as
    /// progress too (a 16 KiB DATA frame to a slow reader takes many writes).
    responding: bool,
}

const FRAME_HEADER: usize = 9;
/// HTTP/2 frame types that carry a response (RFC 9113, section 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;

impl Output {
    /// Takes bytes written, in order; true when they carry response.
    fn wrote(&mut self, mut bytes: &[u8]) -> bool {
        if *self == Self::Unknown {
            let Some(&first) = bytes.first() else { return false };
            // A server's first HTTP/2 frame is its SETTINGS, whose 24-bit
            // length is small: the first byte is 0. HTTP/1.1 starts "HTTP/".
            *self = if first == 0 { Self::Http2(Frames::default()) } else { Self::Http1 };
        }
        let Self::Http2(frames) = self else { return !bytes.is_empty() };
        let mut response = false;
        while !bytes.is_empty() {
            if frames.payload > 0 {
                let skipped = frames.payload.min(bytes.len());
                frames.payload -= skipped;
                bytes = &bytes[skipped..];
                response |= frames.responding;
                continue;
            }
            let taken = (FRAME_HEADER - frames.filled).min(bytes.len());
            frames.header[frames.filled..frames.filled + taken].copy_from_slice(&bytes[..taken]);
            frames.filled += taken;
            bytes = &bytes[taken..];
            if frames.filled == FRAME_HEADER {
                let [a, b, c, kind, ..] = frames.header;
                frames.payload = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                frames.filled = 0;
                frames.responding = matches!(kind, DATA | HEADERS | CONTINUATION);
                response |= frames.responding;
            }
        }
        response
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for Watched<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&written, [buf]);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&written, bufs.iter().map(|buf| &**buf));
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Open connections per client address (`server.max_connections_per_ip`;
/// IPv6 by its `server.ipv6_prefix`), shared by the accept loop and the
/// connections it admitted. Peers in `server.trusted_proxies` are not
/// counted: a load balancer is many clients.
#[derive(Debug)]
pub struct PerClient {
    limit: usize,
    v6_prefix: u8,
    exempt: Vec<IpNet>,
    open: Mutex<HashMap<u128, usize>>,
}

impl PerClient {
    pub fn new(limit: usize, v6_prefix: u8, exempt: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self { limit, v6_prefix, exempt, open: Mutex::new(HashMap::new()) })
    }

    /// A slot for one more connection from `peer`, or `None` when it holds
    /// `limit` already (the connection is then closed unserved).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ClientSlot> {
        let peer = canonical(peer);
        if self.exempt.iter().any(|net| net.contains(&peer)) {
            return Some(ClientSlot(None));
        }
        let key = ip_subject(peer, self.v6_prefix);
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot(Some((self.clone(), key))))
    }
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ClientSlot(Option<(Arc<PerClient>, u128)>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some((clients, key)) = self.0.take() else { return };
        let mut open = clients.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_goes_after_one_to_one_and_a_half_periods() {
        let activity = Activity::default();
        let started = tokio::time::Instant::now();
        let ended = serve_until_idle(std::future::pending::<()>(), &activity, Duration::from_secs(10)).await;
        assert!(ended.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(10) && waited <= Duration::from_secs(15), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_keeps_the_connection() {
        let activity = Arc::new(Activity::default());
        let busy = activity.begin();
        let work = tokio::time::sleep(Duration::from_secs(60));
        let ended = serve_until_idle(work, &activity, Duration::from_secs(10)).await;
        assert!(ended.is_some(), "a 60 s request outlives a 10 s idle limit");
        drop(busy);
        let started = tokio::time::Instant::now();
        assert!(serve_until_idle(std::future::pending::<()>(), &activity, Duration::from_secs(10)).await.is_none());
        assert!(started.elapsed() <= Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_keeps_the_connection_and_silence_ends_it() {
        let activity = Arc::new(Activity::default());
        let ticker = activity.clone();
        // Progress (say, a response trickling out) every 4 s for 40 s, then silence.
        let connection = async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                ticker.progress.fetch_add(1, Ordering::Relaxed);
            }
            std::future::pending::<()>().await;
        };
        let started = tokio::time::Instant::now();
        assert!(serve_until_idle(connection, &activity, Duration::from_secs(10)).await.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(50) && waited <= Duration::from_secs(56), "{waited:?}");
    }

    /// An HTTP/2 frame header and payload.
    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
        let mut bytes = vec![length[1], length[2], length[3], kind, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn on_http2_only_headers_and_data_frames_are_responses() {
        const SETTINGS: u8 = 0x4;
        const PING: u8 = 0x6;
        const WINDOW_UPDATE: u8 = 0x8;
        let mut output = Output::Unknown;
        assert!(!output.wrote(&frame(SETTINGS, &[0; 12])), "the server's SETTINGS");
        assert!(matches!(output, Output::Http2(_)));
        assert!(!output.wrote(&frame(PING, &[7; 8])), "a PING answered");
        assert!(!output.wrote(&[frame(WINDOW_UPDATE, &[0, 0, 1, 0]), frame(SETTINGS, &[])].concat()));
        assert!(output.wrote(&frame(HEADERS, &[0x88])), "a response head");
        // A DATA frame whose payload looks like frame headers, written a
        // few bytes at a time: the payload is passed over, not read, and
        // every write of it counts, as a slow reader takes it bit by bit.
        let data = frame(DATA, &frame(PING, &[1; 8]).repeat(3));
        assert!(output.wrote(&data[..9]), "a DATA frame's header");
        assert!(data[9..].chunks(4).all(|chunk| output.wrote(chunk)), "every piece of its payload");
        let ping = frame(PING, &[2; 8]);
        assert!(!output.wrote(&ping[..5]) && !output.wrote(&ping[5..10]) && !output.wrote(&ping[10..]), "split PING");
        assert!(output.wrote(&[frame(PING, &[3; 8]), frame(DATA, b"x")].concat()), "PING then DATA in one write");
    }

    #[test]
    fn on_http1_every_write_is_a_response() {
        let mut output = Output::Unknown;
        assert!(output.wrote(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(output, Output::Http1);
        assert!(output.wrote(&[0, 0, 0, 6]));
        assert!(!output.wrote(&[]));
    }

    #[test]
    fn a_client_gets_its_limit_of_connections_and_a_trusted_proxy_is_not_counted() {
        let clients = PerClient::new(2, 64, vec!["10.0.0.1/32".parse().expect("net")]);
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let first = clients.admit(ip("192.0.2.1"));
        let second = clients.admit(ip("::ffff:192.0.2.1"));
        assert!(first.is_some() && second.is_some());
        assert!(clients.admit(ip("192.0.2.1")).is_none(), "the third from one address");
        assert!(clients.admit(ip("192.0.2.2")).is_some(), "another address");
        drop(first);
        assert!(clients.admit(ip("192.0.2.1")).is_some(), "a closed connection frees its slot");
        let _a = clients.admit(ip("2001:db8::1"));
        let _b = clients.admit(ip("2001:db8::2"));
        assert!(clients.admit(ip("2001:db8::3")).is_none(), "IPv6 by its /64");
        let proxied: Vec<_> = (0..5).map(|_| clients.admit(ip("10.0.0.1"))).collect();
        assert!(proxied.iter().all(Option::is_some), "a trusted proxy has no cap");
        drop(proxied);
        drop(second);
        let open = clients.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        assert_eq!(open.values().copied().collect::<Vec<_>>(), [2], "only the IPv6 pair is open: {open:?}");
    }
}
