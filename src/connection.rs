//! Closing connections that do nothing: a client that holds a connection
//! without a request in progress and without taking any response bytes
//! for `server.header_read_timeout` is disconnected. That covers slowloris
//! clients (headers trickled in, never finished), idle keep-alive
//! connections, and clients that stop reading their response.
//!
//! Why not hyper's own header-read timeout: hyper arms it afresh for every
//! request (a boxed sleep registered in and removed from the runtime's
//! timer wheel), about 3% of a small request's cost. Here a connection has
//! one sleep per half period, and a request costs a few counter updates.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

/// What one connection has been doing, shared by its service (requests)
/// and its I/O (bytes written).
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Bumped by every request that starts or ends and every write.
    progress: AtomicU64,
}

impl Activity {
    /// Marks a request in progress until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.progress.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
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

/// A connection's I/O, counting writes as progress.
pub struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> Watched<I> {
    pub fn new(inner: I, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    fn wrote(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(bytes)) if *bytes > 0) {
            self.activity.progress.fetch_add(1, Ordering::Relaxed);
        }
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
        this.wrote(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&written);
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
}
