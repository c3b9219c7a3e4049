//! Logging with `tracing`: one line per event, JSON in production and
//! readable text in development, written by `RedactingLayer`.
//!
//! Security: the layer is the last line of defence against secrets in logs.
//! A field whose name looks sensitive (password, token, secret, key,
//! authorization, cookie, ...) is printed as `[REDACTED]` whatever its value,
//! and any value that carries a bearer token, a JWT or a session cookie is
//! scrubbed. Code should still never log such things; this catches mistakes.

mod access;
mod redact;
mod writer;

use std::{
    cell::{Cell, RefCell},
    io::Write,
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{Event, Metadata, Subscriber, callsite::Identifier, field::Field};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    fmt::MakeWriter,
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
};

pub use access::AccessLine;
pub use redact::{REDACTED, is_sensitive_name, scrub};
pub use writer::{BatchGuard, BatchWriter};

use crate::{config::Config, json::write_str as write_json_str};

/// Installs the process-wide subscriber. Call once, from `main`, and keep
/// the returned guard until exit: lines are written to stdout in batches by
/// a background thread (`writer.rs`; a request never waits on the terminal
/// or the pipe), and dropping the guard writes what is still waiting. If
/// stdout cannot keep up, lines past 4 MiB waiting per thread are dropped (and
/// counted) rather than slowing requests down; audit events still reach the
/// store.
pub fn init(config: &Config) -> anyhow::Result<BatchGuard> {
    let filter = EnvFilter::try_new(&config.log.level).map_err(|error| anyhow::anyhow!("log.level: {error}"))?;
    let (writer, guard) = BatchWriter::spawn(std::io::stdout())?;
    let subscriber = Registry::default().with(filter).with(RedactingLayer::new(config.json_logs(), writer.clone()));
    tracing::subscriber::set_global_default(subscriber)?;
    access::write_directly_to(config.json_logs(), writer);
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
    /// Bit `i` set: field `i` of this call site has a secret-looking name.
    sensitive: u64,
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
        let secret = match field.index() {
            index if index < 64 => self.sensitive >> index & 1 == 1,
            _ => is_sensitive_name(name),
        };
        if secret {
            let _ = serde_json::to_writer(&mut *self.fields, REDACTED);
            return;
        }
        let out = &mut *self.fields;
        let _ = match value {
            FieldValue::Text(text) => {
                write_json_str(out, &scrub(text));
                Ok(())
            }
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
        write_json_str(out, name);
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
    static BUFFERS: RefCell<LineBuffers> = RefCell::new(LineBuffers::default());
}

/// Runs `write` with this thread's buffers, or fresh ones on re-entry (a
/// subscriber logging while it logs) or during thread teardown.
fn with_line_buffers(write: impl FnOnce(&mut LineBuffers)) {
    let mut write = Some(write);
    let _ = BUFFERS.try_with(|cell| {
        if let (Ok(mut buffers), Some(write)) = (cell.try_borrow_mut(), write.take()) {
            write(&mut buffers);
        }
    });
    if let Some(write) = write {
        write(&mut LineBuffers::default());
    }
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
            let sensitive = sensitive_fields(event.metadata());
            event.record(&mut LineVisitor { json: self.json, sensitive, message, fields, scratch });
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
            frame(line, self.json, metadata.level().as_str(), metadata.target(), message, fields);
            // A failed log write must not take a request down with it.
            let _ = self.make_writer.make_writer().write_all(line);
        };
        with_line_buffers(write);
    }
}

/// Puts a line together: time, level, target and message, then the
/// fields already written (`,"name":value` or ` name=value`).
fn frame(line: &mut Vec<u8>, json: bool, level: &str, target: &str, message: &str, fields: &[u8]) {
    if json {
        line.extend_from_slice(b"{\"time\":\"");
        write_now(line);
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(level.as_bytes());
        line.extend_from_slice(b"\",\"target\":");
        write_json_str(line, target);
        line.extend_from_slice(b",\"message\":");
        write_json_str(line, message);
        line.extend_from_slice(fields);
        line.extend_from_slice(b"}\n");
    } else {
        write_now(line);
        // ` {level:>5} {target}: {message}`, without `fmt`.
        line.resize(line.len() + 6 - level.len().min(5), b' ');
        line.extend_from_slice(level.as_bytes());
        line.push(b' ');
        line.extend_from_slice(target.as_bytes());
        line.extend_from_slice(b": ");
        line.extend_from_slice(message.as_bytes());
        line.extend_from_slice(fields);
        line.push(b'\n');
    }
}

/// Which fields of an event's call site have secret-looking names, as a
/// bit set by field index. The names of a call site never change, so each
/// thread works this out once per call site instead of once per field of
/// every event.
fn sensitive_fields(metadata: &'static Metadata<'static>) -> u64 {
    const REMEMBERED: usize = 64;
    thread_local! {
        static KNOWN: RefCell<Vec<(Identifier, u64)>> = const { RefCell::new(Vec::new()) };
    }
    let compute = || {
        metadata
            .fields()
            .iter()
            .filter(|field| field.index() < 64 && is_sensitive_name(field.name()))
            .fold(0u64, |mask, field| mask | 1 << field.index())
    };
    let callsite = metadata.callsite();
    KNOWN
        .try_with(|cell| {
            let Ok(mut known) = cell.try_borrow_mut() else { return compute() };
            if let Some((_, mask)) = known.iter().find(|(id, _)| *id == callsite) {
                return *mask;
            }
            let mask = compute();
            if known.len() < REMEMBERED {
                known.push((callsite, mask));
            }
            mask
        })
        .unwrap_or_else(|_| compute())
}

/// RFC 3339 in UTC with nanoseconds (`2026-11-28T08:40:07.226642157Z`),
/// written digit by digit: `time`'s formatter allocated for every line.
#[cfg(test)]
fn write_time(out: &mut Vec<u8>, now: time::OffsetDateTime) {
    out.extend_from_slice(&rfc3339_seconds(now));
    write_fraction(out, now.nanosecond());
}

/// The current time as `write_time` writes it. Each thread keeps the
/// text up to the second, so most lines only write the fraction.
fn write_now(out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
    }
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let (seconds, nanos) = (since_epoch.as_secs(), since_epoch.subsec_nanos());
    let prefix = SECOND
        .try_with(|cell| {
            let (cached_second, cached_prefix) = cell.get();
            if cached_second == seconds {
                return cached_prefix;
            }
            let prefix = prefix_of(seconds);
            cell.set((seconds, prefix));
            prefix
        })
        .unwrap_or_else(|_| prefix_of(seconds));
    out.extend_from_slice(&prefix);
    write_fraction(out, nanos);
}

fn prefix_of(unix_seconds: u64) -> [u8; 19] {
    let at = i64::try_from(unix_seconds)
        .ok()
        .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    rfc3339_seconds(at)
}

/// `2026-11-28T08:40:07`: the RFC 3339 text of `at` (a UTC time) up to the
/// second, for log lines (which add their own nine-digit fraction).
fn rfc3339_seconds(at: time::OffsetDateTime) -> [u8; 19] {
    fn digits(out: &mut [u8], value: u32) {
        let mut value = value;
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    let (year, month, day) = at.to_calendar_date();
    let (hour, minute, second) = at.to_hms();
    let mut text = *b"0000-00-00T00:00:00";
    digits(&mut text[0..4], u32::try_from(year).unwrap_or(0));
    digits(&mut text[5..7], u32::from(u8::from(month)));
    digits(&mut text[8..10], u32::from(day));
    digits(&mut text[11..13], u32::from(hour));
    digits(&mut text[14..16], u32::from(minute));
    digits(&mut text[17..19], u32::from(second));
    text
}

/// `.226642157Z`
fn write_fraction(out: &mut Vec<u8>, nanos: u32) {
    let mut text = *b".000000000Z";
    let mut value = nanos;
    for slot in text[1..10].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&text);
}

/// A `Write` that keeps what is written: the tests' stdout.
#[cfg(test)]
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_time_is_written_as_its_rfc3339_form() {
        for _ in 0..3 {
            let mut cached = Vec::new();
            write_now(&mut cached);
            let parsed = time::OffsetDateTime::parse(
                std::str::from_utf8(&cached).unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            let mut direct = Vec::new();
            write_time(&mut direct, parsed);
            assert_eq!(cached, direct);
            assert!((time::OffsetDateTime::now_utc() - parsed).abs() < time::Duration::seconds(5));
        }
    }

    #[test]
    fn secret_field_names_are_found_once_per_call_site() {
        let callsite = tracing::callsite!(name: "test", kind: tracing::metadata::Kind::EVENT, fields: user, api_token, route, session_id);
        let metadata = tracing::Callsite::metadata(callsite);
        let mask = sensitive_fields(metadata);
        assert_eq!(mask, 0b1010);
        assert_eq!(sensitive_fields(metadata), mask);
    }

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
