//! One access-log event and one metrics sample per request.
//!
//! The event has the time, request id, method, route template, path
//! (without the query string, which can carry codes and tokens), status,
//! latency, client IP and, once the authentication layer has set it, the
//! user id. Headers and bodies are never logged.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use axum::{
    extract::Request,
    http::{Method, StatusCode, Uri},
};
use uuid::Uuid;

use crate::{
    audit::{AuditContext, Auditor},
    clock::Clock,
    defense::Defense,
    domain::{AuditEvent, AuditKind, Outcome},
    metrics::Metrics,
    request_context::RequestContext,
    telemetry::AccessLine,
};

/// What the access-log layer needs from the application.
#[derive(Clone)]
pub struct AccessLog {
    pub metrics: Arc<Metrics>,
    pub audit: Arc<Auditor>,
    pub clock: Arc<dyn Clock>,
    pub defense: Arc<Defense>,
}

const UNMATCHED: &str = "<unmatched>";
const MAX_LOGGED_PATH: usize = 256;

/// Known methods by name; anything else shares one label.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// What the access log notes as a request comes in.
pub struct Started {
    at: Instant,
    method: &'static str,
    /// A password sign-in, whose 401 is a failed login for active defence.
    sign_in: bool,
    /// The whole URI: a cheap copy (shared bytes); only its path is logged.
    uri: Uri,
    context: Arc<RequestContext>,
}

impl AccessLog {
    /// Notes what the log line needs from the request.
    pub fn start(&self, request: &Request, context: Arc<RequestContext>) -> Started {
        Started {
            at: Instant::now(),
            method: method_label(request.method()),
            sign_in: context.route_class.signs_in(request.method()),
            uri: request.uri().clone(),
            context,
        }
    }

    /// Counts, audits and logs the answered request. Most requests need
    /// nothing asynchronous; the few that do (401s, and 429s and failed
    /// logins while active defence counts) take a boxed path, so the
    /// pipeline's per-request future does not carry that state for all.
    pub async fn finish(&self, started: Started, status: StatusCode, from_upstream: bool) {
        let latency = started.at.elapsed();
        let status = status.as_u16();
        if from_upstream {
            // An upstream's own 401, 403, 429 or 5xx is its business: logged
            // and counted, never audited or held against the client here.
            self.record(started, latency, status, false);
            return;
        }
        let defended = started.context.client_ip.is_some()
            && self.defense.counts()
            && (status == 429 || (started.sign_in && status == 401));
        if status == 401 || defended {
            Box::pin(self.finish_watched(started, latency, status, defended)).await;
        } else {
            self.record(started, latency, status, true);
        }
    }

    /// `finish` for requests active defence watches: 401 floods are audited
    /// once per client and route a minute, and refusals are counted per IP.
    async fn finish_watched(&self, started: Started, latency: Duration, status: u16, defended: bool) {
        let context = started.context.clone();
        let route = context.route_label().unwrap_or(UNMATCHED);
        let first_of_flood = status != 401 || self.defense.first_unauthorized(context.client_ip, route).await;
        self.record(started, latency, status, first_of_flood);
        if defended && let Some(ip) = context.client_ip {
            let audit = AuditContext::from_facts(
                Some(context.request_id.as_str().to_owned()),
                Some(ip),
                Some(route.to_string()),
            );
            if status == 429 {
                self.defense.rate_limited(ip, &audit).await;
            } else {
                self.defense.failed_login(ip, &audit).await;
            }
        }
    }

    /// Metrics, the audit event of the status (unless the handler made one,
    /// or `audit` is false) and the log line.
    fn record(&self, started: Started, latency: Duration, status: u16, audit: bool) {
        let Started { method, uri, context, .. } = started;
        let path = truncate(uri.path(), MAX_LOGGED_PATH);
        let (request_id, client_ip) = (&context.request_id, context.client_ip);
        let metrics = &self.metrics;
        let route = context.route_label().unwrap_or(UNMATCHED);
        metrics.traffic.record(self.clock.unix_millis(), status);
        metrics.observe_request(method, route, status, latency.as_secs_f64());
        if let Some((event, outcome)) = audited_status(status)
            && !context.audited.load(Ordering::Relaxed)
            && audit
        {
            // A 401 for an API key says which key and why.
            let refused_key = context.refused_key.get().filter(|_| status == 401);
            let event = if refused_key.is_some() { AuditKind::ApiKeyRefused } else { event };
            self.audit.record(AuditEvent {
                id: Uuid::now_v7(),
                time: self.clock.now(),
                request_id: Some(request_id.as_str().to_owned()),
                event,
                user_id: context.user_id(),
                client_ip,
                route: Some(route.to_string()),
                outcome,
                detail: refused_key.cloned(),
            });
        }
        AccessLine {
            request_id: request_id.as_str(),
            method,
            route,
            path,
            status,
            latency_ms: latency.as_secs_f64() * 1000.0,
            client_ip,
            user_id: context.user_id(),
            upstream: context.upstream(),
        }
        .log();
    }
}

/// Statuses that are security events in themselves (API.md "Audit events").
fn audited_status(status: u16) -> Option<(AuditKind, Outcome)> {
    match status {
        401 => Some((AuditKind::Unauthorized, Outcome::Denied)),
        403 => Some((AuditKind::Forbidden, Outcome::Denied)),
        429 => Some((AuditKind::RateLimited, Outcome::Denied)),
        500..=599 => Some((AuditKind::ServerError, Outcome::Failure)),
        _ => None,
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
