//! WebSockets through the gateway (PROTECT.md "WebSockets"): the upgrade
//! was authenticated, authorized and rate limited like any request; here it
//! is sent upstream, and after both sides switched protocols the bytes are
//! copied until either side closes, nothing moves for `idle_timeout`, the
//! caller's credentials stop being valid (checked every second against the
//! revocation list, which every instance shares through Redis, and the
//! session store), or the server shuts down (close code 1001).

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, StatusCode, Uri, request::Parts},
    response::{IntoResponse, Response},
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::{
    gateway::{FromUpstream, Gateway, Identity, Proxied},
    headers,
};
use crate::{
    app::AppState,
    auth::{principal::Credential, tokens::AccessClaims},
    error::ApiError,
};

/// How often a tunnel re-checks its caller's credentials.
const CREDENTIAL_CHECK: Duration = Duration::from_secs(1);

/// How long one write may wait for a side that does not read. A tunnel
/// blocked in a write checks nothing else, so this bounds how late a
/// revocation or shutdown can close it.
const WRITE_STALL: Duration = Duration::from_secs(3);

/// What a tunnel re-checks.
enum Watch {
    Guest,
    Bearer(Arc<AccessClaims>),
    Session { id_hash: [u8; 32], user_id: Uuid, role: crate::domain::Role },
    ApiKey(Uuid),
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn open(
    gateway: &Gateway,
    state: &AppState,
    proxied: &Proxied,
    parts: Parts,
    body: Body,
    uri: Uri,
    outgoing: HeaderMap,
    identity: Option<Identity>,
    bearer: Option<Arc<AccessClaims>>,
) -> Response {
    let watch = match &identity {
        None => Watch::Guest,
        Some(identity) => match &identity.principal.credential {
            Credential::Session { id_hash, .. } => {
                Watch::Session { id_hash: *id_hash, user_id: identity.principal.user_id, role: identity.principal.role }
            }
            Credential::Bearer { .. } => match bearer {
                Some(claims) => Watch::Bearer(claims),
                None => return ApiError::Unauthorized { token_sent: true }.into_response(),
            },
            Credential::ApiKey { key_id, .. } => Watch::ApiKey(*key_id),
        },
    };
    let mut client_request = Request::from_parts(parts, body);
    let client_upgrade = hyper::upgrade::on(&mut client_request);
    drop(client_request);

    let mut request = axum::http::Request::new(Body::empty());
    *request.uri_mut() = uri;
    *request.headers_mut() = outgoing;
    let upstream = &proxied.upstream;
    let mut response = match gateway.send(upstream, request, &super::body::Activity::new()).await {
        Ok(response) => response,
        Err(error) => {
            let refusal = error.refusal();
            proxied.metrics.count(refusal.status().as_u16());
            return refusal.into_response();
        }
    };
    proxied.metrics.count(response.status().as_u16());
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The upstream declined the upgrade: its answer goes back as it is,
        // under the same idle limit as any other body.
        let (mut head, incoming) = response.into_parts();
        headers::response_headers(&mut head.headers, false);
        head.extensions = Default::default();
        head.extensions.insert(FromUpstream);
        let body = super::body::IdleBody::new(incoming, upstream.idle_timeout, super::body::Activity::new());
        return Response::from_parts(head, Body::new(body));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let (mut head, _) = response.into_parts();
    headers::response_headers(&mut head.headers, true);
    head.extensions = Default::default();
    head.extensions.insert(FromUpstream);

    let tunnel =
        Tunnel { state: state.clone(), watch, idle: upstream.idle_timeout, shutdown: gateway.shutdown.subscribe() };
    tokio::spawn(tunnel.run(client_upgrade, upstream_upgrade));
    Response::from_parts(head, Body::empty())
}

struct Tunnel {
    state: AppState,
    watch: Watch,
    idle: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Why a tunnel ended on Rampart's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Closed,
    Idle,
    Revoked,
    Shutdown,
}

impl Tunnel {
    async fn run(mut self, client: OnUpgrade, upstream: OnUpgrade) {
        let (client, upstream) = match tokio::join!(client, upstream) {
            (Ok(client), Ok(upstream)) => (TokioIo::new(client), TokioIo::new(upstream)),
            _ => return,
        };
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
        let mut from_client = vec![0u8; 16 * 1024];
        let mut from_upstream = vec![0u8; 16 * 1024];
        // Frames the upstream sends are tracked so that a close frame of our
        // own is only ever written between two of them.
        let mut frames = FrameBoundary::default();
        let mut checks = tokio::time::interval(CREDENTIAL_CHECK);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle = tokio::time::sleep(self.idle);
        tokio::pin!(idle);
        let ending = loop {
            tokio::select! {
                read = client_read.read(&mut from_client) => match read {
                    Ok(0) | Err(_) => break Ending::Closed,
                    Ok(count) => {
                        let written = tokio::time::timeout(WRITE_STALL, upstream_write.write_all(&from_client[..count])).await;
                        if !matches!(written, Ok(Ok(()))) {
                            break Ending::Closed;
                        }
                        idle.as_mut().reset(tokio::time::Instant::now() + self.idle);
                    }
                },
                read = upstream_read.read(&mut from_upstream) => match read {
                    Ok(0) | Err(_) => break Ending::Closed,
                    Ok(count) => {
                        frames.advance(&from_upstream[..count]);
                        let written = tokio::time::timeout(WRITE_STALL, client_write.write_all(&from_upstream[..count])).await;
                        if !matches!(written, Ok(Ok(()))) {
                            break Ending::Closed;
                        }
                        idle.as_mut().reset(tokio::time::Instant::now() + self.idle);
                    }
                },
                () = &mut idle => break Ending::Idle,
                _ = checks.tick() => {
                    if !self.still_valid().await {
                        break Ending::Revoked;
                    }
                }
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        break Ending::Shutdown;
                    }
                }
            }
        };
        if ending != Ending::Closed && frames.at_boundary() {
            // 1001 "going away" on shutdown and idleness; 1008 "policy
            // violation" when the credentials were revoked.
            let code: u16 = if ending == Ending::Revoked { 1008 } else { 1001 };
            let [high, low] = code.to_be_bytes();
            let _ = tokio::time::timeout(WRITE_STALL, client_write.write_all(&[0x88, 0x02, high, low])).await;
        }
        let _ = tokio::time::timeout(WRITE_STALL, client_write.shutdown()).await;
        let _ = tokio::time::timeout(WRITE_STALL, upstream_write.shutdown()).await;
    }

    async fn still_valid(&self) -> bool {
        let state = &self.state;
        match &self.watch {
            Watch::Guest => true,
            Watch::Bearer(claims) => !state.revocations.is_token_revoked(claims),
            Watch::Session { id_hash, user_id, role } => {
                let now = state.clock.now();
                let session = match state.sessions.session(id_hash).await {
                    Ok(Some(session)) => session,
                    Ok(None) => return false,
                    // A store outage is not a revocation: keep the tunnel.
                    Err(_) => return true,
                };
                if session.absolute_expires_at <= now
                    || state.revocations.is_session_revoked(session.user_id, session.created_at)
                {
                    return false;
                }
                match state.store.user_by_id(*user_id).await {
                    Ok(user) => !user.disabled && user.role == *role,
                    Err(crate::store::StoreError::NotFound) => false,
                    Err(_) => true,
                }
            }
            // Everything that stops a key drops it from the key cache on
            // every instance; the store says the rest. An outage keeps it.
            Watch::ApiKey(key_id) => state.api_keys.still_valid(*key_id).await.unwrap_or(true),
        }
    }
}

/// Follows RFC 6455 frame headers through a byte stream, to tell whether
/// the bytes so far end exactly at a frame's end.
#[derive(Default)]
struct FrameBoundary {
    /// Header bytes of the frame being read, until its length is known.
    header: Vec<u8>,
    /// Payload bytes still to come of the current frame.
    remaining: u64,
}

impl FrameBoundary {
    fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.remaining == 0
    }

    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let step = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(bytes.len());
                self.remaining -= step as u64;
                bytes = &bytes[step..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some((header_len, payload)) = Self::parse(&self.header)
                && self.header.len() == header_len
            {
                self.header.clear();
                self.remaining = payload;
            }
        }
    }

    /// The full header length and payload length once enough is known.
    fn parse(header: &[u8]) -> Option<(usize, u64)> {
        let second = *header.get(1)?;
        let masked = second & 0x80 != 0;
        let mask = if masked { 4 } else { 0 };
        let (extra, payload) = match second & 0x7f {
            126 => (2, u64::from(u16::from_be_bytes([*header.get(2)?, *header.get(3)?]))),
            127 => {
                let bytes: [u8; 8] = header.get(2..10)?.try_into().ok()?;
                (8, u64::from_be_bytes(bytes))
            }
            short => (0, u64::from(short)),
        };
        Some((2 + extra + mask, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::FrameBoundary;

    #[test]
    fn frame_boundaries_are_found_across_split_reads() {
        let mut frames = FrameBoundary::default();
        // A 5-byte text frame, then a 300-byte binary frame (16-bit length).
        let mut stream = vec![0x81, 0x05];
        stream.extend_from_slice(b"hello");
        stream.extend_from_slice(&[0x82, 126, 0x01, 0x2c]);
        stream.extend(std::iter::repeat_n(7u8, 300));
        for chunk in stream[..10].chunks(3) {
            frames.advance(chunk);
        }
        assert!(!frames.at_boundary(), "inside the second frame's header");
        frames.advance(&stream[10..stream.len() - 1]);
        assert!(!frames.at_boundary(), "one payload byte missing");
        frames.advance(&stream[stream.len() - 1..]);
        assert!(frames.at_boundary());
        frames.advance(&[0x81, 0x00]);
        assert!(frames.at_boundary(), "an empty frame ends with its header");
    }
}
