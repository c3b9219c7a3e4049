//! Listening sockets, TLS and the connection loop.
//!
//! Connections are served by hyper directly (not `axum::serve`) because the
//! contract needs knobs axum does not expose: an idle limit against
//! slowloris clients (`connection.rs`), a cap on header buffer size, caps
//! on open connections (in all, `server.max_connections`, and per client
//! address, `server.max_connections_per_ip`), and TLS on the same loop.
//! The admin listener has its own pool of `ADMIN_CONNECTIONS`, so a flood
//! of public connections cannot starve `/metrics`. Shutdown is graceful: on
//! the signal the loops stop accepting, in-flight requests finish (up to
//! `server.shutdown_timeout`), then the process exits.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::extract::Request;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tokio_rustls::TlsAcceptor;

use crate::{
    config::Config,
    connection::{Activity, PerClient, Watched, serve_until_idle},
};

/// Connections the admin listener (`/metrics`) holds open at most, apart
/// from `server.max_connections`.
pub const ADMIN_CONNECTIONS: usize = 64;

/// Room for the request line and bookkeeping on top of the header limit,
/// so our own 414/431 checks (with problem bodies) fire before hyper's.
const HYPER_BUFFER_SLACK: usize = 4 * 1024;

pub struct Server {
    public: TcpListener,
    admin: TcpListener,
    header_read_timeout: Duration,
    max_buf_size: usize,
    max_connections: usize,
    per_client: Arc<PerClient>,
    shutdown_timeout: Duration,
}

impl Server {
    /// Binds both listeners, so their addresses are known before serving.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let server = &config.server;
        let public = TcpListener::bind(server.bind)
            .await
            .with_context(|| format!("server.bind: cannot listen on {}", server.bind))?;
        let admin = TcpListener::bind(server.admin_bind)
            .await
            .with_context(|| format!("server.admin_bind: cannot listen on {}", server.admin_bind))?;
        let wanted = server.max_header_bytes.as_usize() + server.max_uri_bytes.as_usize() + HYPER_BUFFER_SLACK;
        Ok(Self {
            public,
            admin,
            header_read_timeout: server.header_read_timeout.0,
            // hyper's minimum buffer is 8 KiB.
            max_buf_size: wanted.max(8 * 1024),
            max_connections: server.max_connections,
            per_client: PerClient::new(
                server.max_connections_per_ip,
                server.ipv6_prefix,
                server.trusted_proxies.clone(),
            ),
            shutdown_timeout: server.shutdown_timeout.0,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then drains open connections.
    pub async fn run<P: HttpService, A: HttpService>(
        self,
        public: P,
        admin: A,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let mut builder = Builder::new(TokioExecutor::new());
        // No hyper header-read timeout: `connection::serve_until_idle`
        // closes connections stuck in their headers, more cheaply.
        builder.http1().max_buf_size(self.max_buf_size);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_buf_size).unwrap_or(u32::MAX));
        let builder = Arc::new(builder);
        let graceful = Arc::new(GracefulShutdown::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let admin_permits = Arc::new(Semaphore::new(ADMIN_CONNECTIONS));

        let public_loop = accept_loop(AcceptLoop {
            listener: self.public,
            router: public,
            tls,
            builder: builder.clone(),
            graceful: graceful.clone(),
            stop: stop_rx.clone(),
            permits,
            per_client: Some(self.per_client),
            idle_limit: self.header_read_timeout,
        });
        let admin_loop = accept_loop(AcceptLoop {
            listener: self.admin,
            router: admin,
            tls: None,
            builder,
            graceful: graceful.clone(),
            stop: stop_rx,
            permits: admin_permits,
            per_client: None,
            idle_limit: self.header_read_timeout,
        });
        let public_task = tokio::spawn(public_loop);
        let admin_task = tokio::spawn(admin_loop);

        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stop_tx.send(true);
        let _ = public_task.await;
        let _ = admin_task.await;
        // The loops have ended and dropped their handles; connections hold
        // only watchers, so this is the last reference.
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            anyhow::bail!("connection tracking still shared at shutdown");
        };
        if tokio::time::timeout(self.shutdown_timeout, graceful.shutdown()).await.is_err() {
            tracing::warn!("shutdown timeout reached with connections still open; closing them");
        }
        Ok(())
    }
}

/// What the server can serve: the public and admin services of `app`,
/// made once per connection by `for_connection`.
pub trait HttpService: Clone + Send + Sync + 'static {
    type Connection: tower::Service<
            Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static;

    fn for_connection(&self, peer: SocketAddr, activity: Arc<Activity>) -> Self::Connection;
}

impl<S> HttpService for crate::layers::pipeline::Edge<S>
where
    S: tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Connection = Self;

    fn for_connection(&self, peer: SocketAddr, activity: Arc<Activity>) -> Self {
        crate::layers::pipeline::Edge::for_connection(self, peer, activity)
    }
}

struct AcceptLoop<S> {
    listener: TcpListener,
    router: S,
    tls: Option<TlsAcceptor>,
    builder: Arc<Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    stop: watch::Receiver<bool>,
    permits: Arc<Semaphore>,
    /// The per-address cap (the public listener; the admin one has none).
    per_client: Option<Arc<PerClient>>,
    /// `server.header_read_timeout`: the TLS handshake's limit, and how long
    /// a connection may do nothing (`connection.rs`).
    idle_limit: Duration,
}

async fn accept_loop<S: HttpService>(mut loop_: AcceptLoop<S>) {
    loop {
        // Waiting for a permit here is the connection cap: past it, new
        // clients wait in the kernel's backlog instead of costing memory.
        let permit = tokio::select! {
            permit = loop_.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = loop_.stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = loop_.listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Typically out of file descriptors: back off briefly.
                    tracing::warn!(cause = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = loop_.stop.changed() => return,
        };
        let slot = match &loop_.per_client {
            Some(clients) => match clients.admit(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    // Closed unserved: this address holds its share already.
                    tracing::debug!(peer = %peer.ip(), "connection refused: max_connections_per_ip reached");
                    continue;
                }
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        let router = loop_.router.clone();
        let builder = loop_.builder.clone();
        let watcher = loop_.graceful.watcher();
        let tls = loop_.tls.clone();
        let idle_limit = loop_.idle_limit;
        tokio::spawn(async move {
            let activity = Arc::new(Activity::default());
            activity.hold(Box::new((permit, slot)));
            let service = router.for_connection(peer, activity.clone());
            let watch = (activity, idle_limit);
            match tls {
                Some(acceptor) => {
                    let Some(stream) = tls_handshake(&acceptor, stream, idle_limit).await else {
                        return;
                    };
                    serve_connection(&builder, watcher, TokioIo::new(stream), service, watch).await;
                }
                None => serve_connection(&builder, watcher, TokioIo::new(stream), service, watch).await,
            }
        });
    }
}

async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(cause = %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

async fn serve_connection<I, S>(
    builder: &Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    service: S,
    (activity, idle_limit): (Arc<Activity>, Duration),
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = Watched::new(io, activity.clone());
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service)).into_owned();
    match serve_until_idle(watcher.watch(connection), &activity, idle_limit).await {
        // Clients that vanish or send garbage end up here; not our error.
        Some(Err(error)) => tracing::debug!(cause = %error, "connection ended with an error"),
        Some(Ok(())) => {}
        None => tracing::debug!("idle connection closed"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
