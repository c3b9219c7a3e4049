//! Logging with `tracing`: one line per event, JSON in production and
//! readable text in development, written by `RedactingLayer`.
//!
//! Security: the layer is the last line of defence against secrets in logs.
//! A field whose name looks sensitive (password, token, secret, key,
//! authorization, cookie, ...) is printed as `[REDACTED]` whatever its value,
//! and any value that carries a bearer token, a JWT or a session cookie is
//! scrubbed. Code should still never log such things; this catches mistakes.

mod redact;
mod writer;

use std::io::Write;

use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    fmt::MakeWriter,
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
};

pub use redact::{REDACTED, is_sensitive_name, scrub};
pub use writer::{BatchGuard, BatchWriter};

use crate::config::Config;

/// Installs the process-wide subscriber. Call once, from `main`, and keep
/// the returned guard until exit: lines are written to stdout in batches by
/// a background thread (`writer.rs`; a request never waits on the terminal
/// or the pipe), and dropping the guard writes what is still waiting. If
/// stdout cannot keep up, lines past 16 MiB waiting are dropped (and
/// counted) rather than slowing requests down; audit events still reach the
/// store.
pub fn init(config: &Config) -> anyhow::Result<BatchGuard> {
    let filter = EnvFilter::try_new(&config.log.level).map_err(|error| anyhow::anyhow!("log.level: {error}"))?;
    let (writer, guard) = BatchWriter::spawn(std::io::stdout())?;
    let subscriber = Registry::default().with(filter).with(RedactingLayer::new(config.json_logs(), writer));
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(guard)
}

/// Formats events itself so that every field passes through redaction.
pub struct RedactingLayer<W> {
    json: bool,
    make_writer: W,
}

impl<W> RedactingLayer<W> {
    pub fn new(json: bool, make_writer: W) -> Self {
        Self { json, make_writer }
    }
}

/// Fields recorded on a span, already redacted, kept for its events.
struct SpanFields(Vec<(&'static str, serde_json::Value)>);

/// Collects a span's fields (rare: spans are not on the request path).
#[derive(Default)]
struct FieldCollector {
    fields: Vec<(&'static str, serde_json::Value)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: serde_json::Value) {
        let name = field.name();
        let value = if is_sensitive_name(name) {
            serde_json::Value::String(REDACTED.into())
        } else {
            match value {
                serde_json::Value::String(text) => serde_json::Value::String(scrub(&text).into_owned()),
                other => other,
            }
        };
        self.fields.push((name, value));
    }
}

impl tracing::field::Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}").into());
    }
}

/// One value of an event field, before encoding.
enum FieldValue<'a> {
    Text(&'a str),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Bool(bool),
}

/// Writes an event's fields straight into the line's buffers as they are
/// visited: every value redacted, then JSON-encoded (so a crafted value
/// cannot forge a second line in either format). No map, no value tree:
/// this runs for every request's access-log line.
struct LineVisitor<'b> {
    json: bool,
    /// The message, scrubbed, not yet encoded.
    message: &'b mut String,
    /// `,"name":value` (JSON) or ` name=value` (text) per field.
    fields: &'b mut Vec<u8>,
    /// Room for `Debug` values.
    scratch: &'b mut String,
}

impl LineVisitor<'_> {
    fn push(&mut self, field: &Field, value: FieldValue<'_>) {
        let name = field.name();
        if name == "message" {
            if let FieldValue::Text(text) = value {
                self.message.push_str(&scrub(text));
            }
            return;
        }
        write_name(self.fields, self.json, name);
        if is_sensitive_name(name) {
            let _ = serde_json::to_writer(&mut *self.fields, REDACTED);
            return;
        }
        let out = &mut *self.fields;
        let _ = match value {
            FieldValue::Text(text) => serde_json::to_writer(out, &*scrub(text)),
            FieldValue::Signed(number) => serde_json::to_writer(out, &number),
            FieldValue::Unsigned(number) => serde_json::to_writer(out, &number),
            FieldValue::Float(number) => serde_json::to_writer(out, &number),
            FieldValue::Bool(flag) => serde_json::to_writer(out, &flag),
        };
    }
}

fn write_name(out: &mut Vec<u8>, json: bool, name: &str) {
    if json {
        out.push(b',');
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
    } else {
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
    }
}

impl tracing::field::Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, FieldValue::Text(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::Signed(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::Unsigned(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::Float(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let mut scratch = std::mem::take(self.scratch);
        scratch.clear();
        let _ = write!(scratch, "{value:?}");
        self.push(field, FieldValue::Text(&scratch));
        *self.scratch = scratch;
    }
}

/// Per-thread buffers reused from line to line.
#[derive(Default)]
struct LineBuffers {
    line: Vec<u8>,
    message: String,
    fields: Vec<u8>,
    scratch: String,
}

thread_local! {
    static BUFFERS: std::cell::RefCell<LineBuffers> = std::cell::RefCell::new(LineBuffers::default());
}

impl<S, W> Layer<S> for RedactingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut collector = FieldCollector::default();
        attrs.record(&mut collector);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(collector.fields));
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        let mut collector = FieldCollector::default();
        values.record(&mut collector);
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<SpanFields>() {
                fields.0.extend(collector.fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |buffers: &mut LineBuffers| {
            let LineBuffers { line, message, fields, scratch } = buffers;
            line.clear();
            message.clear();
            fields.clear();
            event.record(&mut LineVisitor { json: self.json, message, fields, scratch });
            if let Some(scope) = ctx.event_scope(event) {
                for span in scope.from_root() {
                    if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                        for (name, value) in &span_fields.0 {
                            write_name(fields, self.json, name);
                            let _ = serde_json::to_writer(&mut *fields, value);
                        }
                    }
                }
            }
            let metadata = event.metadata();
            if self.json {
                line.extend_from_slice(b"{\"time\":\"");
                write_time(line, time::OffsetDateTime::now_utc());
                line.extend_from_slice(b"\",\"level\":\"");
                line.extend_from_slice(metadata.level().as_str().as_bytes());
                line.extend_from_slice(b"\",\"target\":");
                let _ = serde_json::to_writer(&mut *line, metadata.target());
                line.extend_from_slice(b",\"message\":");
                let _ = serde_json::to_writer(&mut *line, message.as_str());
                line.extend_from_slice(fields);
                line.extend_from_slice(b"}\n");
            } else {
                use std::io::Write as _;
                write_time(line, time::OffsetDateTime::now_utc());
                let _ = write!(line, " {:>5} {}: {message}", metadata.level().as_str(), metadata.target());
                line.extend_from_slice(fields);
                line.push(b'\n');
            }
            // A failed log write must not take a request down with it.
            let _ = self.make_writer.make_writer().write_all(line);
        };
        // Re-entry (a subscriber logging while it logs) gets fresh buffers.
        let reused = BUFFERS.try_with(|cell| cell.try_borrow_mut().map(|mut buffers| write(&mut buffers)).is_ok());
        if reused != Ok(true) {
            write(&mut LineBuffers::default());
        }
    }
}

/// RFC 3339 in UTC with nanoseconds (`2026-11-28T08:40:07.226642157Z`),
/// written digit by digit: `time`'s formatter allocated for every line.
fn write_time(out: &mut Vec<u8>, now: time::OffsetDateTime) {
    fn digits(out: &mut Vec<u8>, value: u32, width: u32) {
        for position in (0..width).rev() {
            out.push(b'0' + ((value / 10u32.pow(position)) % 10) as u8);
        }
    }
    digits(out, u32::try_from(now.year()).unwrap_or(0), 4);
    out.push(b'-');
    digits(out, u32::from(u8::from(now.month())), 2);
    out.push(b'-');
    digits(out, u32::from(now.day()), 2);
    out.push(b'T');
    digits(out, u32::from(now.hour()), 2);
    out.push(b':');
    digits(out, u32::from(now.minute()), 2);
    out.push(b':');
    digits(out, u32::from(now.second()), 2);
    out.push(b'.');
    digits(out, now.nanosecond(), 9);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::write_time;

    #[test]
    fn times_are_rfc3339_with_nanoseconds() {
        let mut out = Vec::new();
        write_time(&mut out, time::macros::datetime!(2026-01-02 03:04:05.000000067 UTC));
        assert_eq!(String::from_utf8(out).unwrap(), "2026-01-02T03:04:05.000000067Z");
        let parsed = time::OffsetDateTime::parse(
            "2026-01-02T03:04:05.000000067Z",
            &time::format_description::well_known::Rfc3339,
        );
        assert!(parsed.is_ok());
    }
}
