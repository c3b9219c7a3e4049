//! Bodies streamed through the gateway without buffering: the request body
//! counted against the upstream's `max_body`, the response body ended when
//! neither side has moved a byte for `idle_timeout`. Both tell one shared
//! `Activity` clock when bytes pass, so a long upload keeps a slow response
//! alive and a streaming response is activity, not idleness.

use std::{
    future::Future as _,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// When bytes last passed either way, in milliseconds since `base`.
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { base: Instant::now(), last_ms: AtomicU64::new(0) })
    }

    pub fn touch(&self) {
        let elapsed = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(elapsed, Ordering::Relaxed);
    }

    /// The moment `idle` after the last activity.
    pub fn deadline(&self, idle: Duration) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

/// The client's body on its way upstream: refused past `limit` bytes (the
/// gateway then answers 413), touching `activity` as it flows.
pub struct LimitedBody {
    inner: Body,
    remaining: u64,
    pub exceeded: Arc<AtomicBool>,
    activity: Arc<Activity>,
}

impl LimitedBody {
    pub fn new(inner: Body, limit: u64, activity: Arc<Activity>) -> Self {
        Self { inner, remaining: limit, exceeded: Arc::new(AtomicBool::new(false)), activity }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the route accepts")]
pub struct TooLarge;

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let size = data.len() as u64;
                    if size > this.remaining {
                        this.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(TooLarge.into())));
                    }
                    this.remaining -= size;
                    this.activity.touch();
                }
                Some(Ok(frame))
            }
            Some(Err(error)) => Some(Err(error.into())),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream's response body on its way to the client, ended with an
/// error (the client sees the connection cut, never a truncated success)
/// once nothing has moved for `idle`.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    activity: Arc<Activity>,
    timer: Pin<Box<Sleep>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration, activity: Arc<Activity>) -> Self {
        activity.touch();
        let timer = Box::pin(tokio::time::sleep_until(activity.deadline(idle)));
        Self { inner, idle, activity, timer }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the upstream stream was idle past its idle_timeout")]
pub struct Idle;

impl<B> HttpBody for IdleBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if matches!(frame, Some(Ok(_))) {
                this.activity.touch();
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            // The request side may have moved since the timer was set.
            let deadline = this.activity.deadline(this.idle);
            if deadline <= Instant::now() {
                return Poll::Ready(Some(Err(Idle.into())));
            }
            this.timer.as_mut().reset(deadline);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
