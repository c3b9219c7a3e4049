//! The access-log line, one per request: the hottest log event, so the
//! server writes it straight into the batch writer instead of going
//! through `tracing`'s per-field dispatch. The bytes are the ones
//! `RedactingLayer` makes of the same event (tested below), with the same
//! redaction of free text (request id, route, path); the other values are
//! numbers, an IP address and a UUID. The level filter still applies.
//!
//! Until `init` installs the process's writer (in tests, which capture
//! logs with their own subscriber), the line is an ordinary event.

use std::{io::Write as _, net::IpAddr, sync::OnceLock};

use tracing_subscriber::fmt::MakeWriter;
use uuid::Uuid;

use super::{BatchWriter, LineBuffers, frame, scrub, with_line_buffers, write_name};
use crate::json::write_str as write_json_str;

pub const TARGET: &str = "rampart::access";

struct Direct {
    json: bool,
    writer: BatchWriter,
}

static DIRECT: OnceLock<Direct> = OnceLock::new();

/// From now on, access lines go straight to `writer` (see the module doc).
pub(super) fn write_directly_to(json: bool, writer: BatchWriter) {
    let _ = DIRECT.set(Direct { json, writer });
}

/// What the access log says about one answered request.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// The route template, or `<unmatched>`.
    pub route: &'a str,
    /// Without the query string, which can carry codes and tokens.
    pub path: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub client_ip: Option<IpAddr>,
    pub user_id: Option<Uuid>,
    /// The upstream of a protect-mode route.
    pub upstream: Option<&'a str>,
}

impl AccessLine<'_> {
    /// Logs the line at INFO under `rampart::access`, if that is enabled.
    pub fn log(&self) {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        match DIRECT.get() {
            Some(direct) => self.write_to(direct.json, &direct.writer),
            None => self.emit_event(),
        }
    }

    fn emit_event(&self) {
        let user_id = self.user_id.map(|id| id.to_string());
        tracing::info!(
            target: TARGET,
            request_id = self.request_id,
            method = self.method,
            route = self.route,
            path = self.path,
            status = self.status,
            latency_ms = self.latency_ms,
            client_ip = self.client_ip.map(tracing::field::display),
            user_id = user_id.as_deref(),
            upstream = self.upstream,
            "request"
        );
    }

    /// Writes the line to `writer` (what `log` does once `init` has run).
    pub fn write_to(&self, json: bool, writer: &BatchWriter) {
        let write = |buffers: &mut LineBuffers| {
            self.render(json, buffers);
            // A failed log write must not take a request down with it.
            let _ = writer.make_writer().write_all(&buffers.line);
        };
        with_line_buffers(write);
    }

    /// The whole line, in `buffers.line`.
    fn render(&self, json: bool, buffers: &mut LineBuffers) {
        let LineBuffers { line, fields, scratch, .. } = buffers;
        line.clear();
        fields.clear();
        let text = |fields: &mut Vec<u8>, name: &str, value: &str| {
            write_name(fields, json, name);
            write_json_str(fields, value);
        };
        text(fields, "request_id", &scrub(self.request_id));
        text(fields, "method", self.method);
        text(fields, "route", &scrub(self.route));
        text(fields, "path", &scrub(self.path));
        write_name(fields, json, "status");
        let _ = serde_json::to_writer(&mut *fields, &self.status);
        write_name(fields, json, "latency_ms");
        let _ = serde_json::to_writer(&mut *fields, &self.latency_ms);
        if let Some(ip) = self.client_ip {
            scratch.clear();
            write_ip(scratch, ip);
            text(fields, "client_ip", scratch);
        }
        if let Some(user_id) = self.user_id {
            text(fields, "user_id", user_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        }
        if let Some(upstream) = self.upstream {
            text(fields, "upstream", &scrub(upstream));
        }
        frame(line, json, "INFO", TARGET, "request", fields);
    }
}

/// An IPv4 address digit by digit (`Ipv4Addr`'s `Display` goes through
/// `fmt` for each octet); IPv6 through `Display`.
fn write_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            let _ = std::fmt::Write::write_fmt(out, format_args!("{v6}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::{Captured as Capture, RedactingLayer};

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in
            ["0.0.0.0", "1.2.3.4", "10.100.255.9", "203.0.113.7", "255.255.255.255", "2001:db8::1", "::ffff:1.2.3.4"]
        {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = String::new();
            write_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    /// The line with its time blanked: the two ways write different times.
    fn timeless(line: &[u8], json: bool) -> String {
        let text = String::from_utf8(line.to_vec()).unwrap();
        let at = if json { "{\"time\":\"".len() } else { 0 };
        let time = "2026-11-28T08:40:07.226642157Z".len();
        format!("{}<time>{}", &text[..at], &text[at + time..])
    }

    #[test]
    fn the_direct_line_is_the_line_the_layer_makes_of_the_event() {
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let path = format!("/api/posts/\"quoted\"\\/{jwt}");
        let lines = [
            AccessLine {
                request_id: "01a220d2-e2bf-7631-8384-4d3fa3d52276",
                method: "GET",
                route: "/api/posts/{id}",
                path: &path,
                status: 404,
                latency_ms: 0.123_456,
                client_ip: Some("203.0.113.7".parse().unwrap()),
                user_id: Some(Uuid::now_v7()),
                upstream: None,
            },
            AccessLine {
                request_id: jwt,
                method: "OTHER",
                route: "<unmatched>",
                path: "/",
                status: 200,
                latency_ms: 12.0,
                client_ip: Some("2001:db8::1".parse().unwrap()),
                user_id: None,
                upstream: Some("orders"),
            },
            AccessLine {
                request_id: "r",
                method: "POST",
                route: "/auth/login",
                path: "/auth/login",
                status: 401,
                latency_ms: 1e-7,
                client_ip: None,
                user_id: None,
                upstream: None,
            },
        ];
        for json in [true, false] {
            for line in &lines {
                let capture = Capture::default();
                let writer = capture.clone();
                let subscriber = tracing_subscriber::registry().with(RedactingLayer::new(json, move || writer.clone()));
                tracing::subscriber::with_default(subscriber, || line.emit_event());
                let from_event = capture.0.lock().unwrap().clone();

                let mut buffers = LineBuffers::default();
                line.render(json, &mut buffers);
                assert_eq!(timeless(&buffers.line, json), timeless(&from_event, json));
                let text = String::from_utf8(buffers.line.clone()).unwrap();
                assert!(!text.contains("eyJzdWIiOiIxIn0"), "{text}");
                assert_eq!(text.lines().count(), 1, "{text}");
            }
        }
    }
}
