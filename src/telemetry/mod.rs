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

#[derive(Default)]
struct FieldCollector {
    message: Option<String>,
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
        if name == "message"
            && let serde_json::Value::String(text) = value
        {
            self.message = Some(text);
            return;
        }
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
        let mut collector = FieldCollector::default();
        event.record(&mut collector);
        let mut fields = collector.fields;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                    fields.extend(span_fields.0.iter().cloned());
                }
            }
        }
        let metadata = event.metadata();
        let time =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let message = collector.message.unwrap_or_default();
        let line = if self.json {
            json_line(&time, metadata, &message, &fields)
        } else {
            text_line(&time, metadata, &message, &fields)
        };
        // A failed log write must not take a request down with it.
        let _ = self.make_writer.make_writer().write_all(line.as_bytes());
    }
}

fn json_line(
    time: &str,
    metadata: &tracing::Metadata<'_>,
    message: &str,
    fields: &[(&'static str, serde_json::Value)],
) -> String {
    // Written member by member (serde_json escapes every key and value), not
    // through a `Map`: one buffer instead of an allocation per member.
    let mut line = Vec::with_capacity(256 + 32 * fields.len());
    let mut member = |name: &str, value: &dyn erased::Json| {
        line.push(if line.is_empty() { b'{' } else { b',' });
        let _ = serde_json::to_writer(&mut line, name);
        line.push(b':');
        value.write(&mut line);
    };
    member("time", &time);
    member("level", &metadata.level().as_str());
    member("target", &metadata.target());
    member("message", &message);
    for (name, value) in fields {
        member(name, value);
    }
    line.extend_from_slice(b"}\n");
    String::from_utf8(line).unwrap_or_default()
}

/// A value that can be written as JSON behind a `dyn` (serde's `Serialize`
/// cannot be).
mod erased {
    pub trait Json {
        fn write(&self, out: &mut Vec<u8>);
    }

    impl<T: serde::Serialize + ?Sized> Json for T {
        fn write(&self, out: &mut Vec<u8>) {
            let _ = serde_json::to_writer(out, self);
        }
    }
}

fn text_line(
    time: &str,
    metadata: &tracing::Metadata<'_>,
    message: &str,
    fields: &[(&'static str, serde_json::Value)],
) -> String {
    use std::fmt::Write as _;
    let mut line = format!("{time} {:>5} {}: {message}", metadata.level().as_str(), metadata.target());
    for (name, value) in fields {
        // Strings are quoted and escaped so a crafted value cannot forge a
        // second log line.
        let _ = write!(line, " {name}={value}");
    }
    line.push('\n');
    line
}
