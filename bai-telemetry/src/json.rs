//! [`JsonLayer`]: one JSON object per log line, shaped for a log store that indexes a few
//! labels (Loki: `component`, `session_id`, `user_id`, `level`).
//!
//! Each line has `timestamp` (RFC 3339, UTC), `level` (`trace`, `debug`, `info`, `warning`,
//! `error`), `component`, `target` (the module), `message`, then the event's own fields, then
//! the [context fields](CONTEXT_FIELDS) of the spans the event happened in (the innermost span
//! that has one wins; the event's own value wins over all). So an event logged anywhere inside
//! the span of an API request or of a session's dispatch carries its `session_id` and
//! `user_id` without repeating them.
//!
//! `component` is the innermost span's `component` field when one has it, else the daemon of
//! the event's crate (`bai_manager` → `manager`, `bai_agent` → `agent`: an agent embedded in
//! a manager logs as `agent`), else the layer's default.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Span fields that every event inside the span inherits, each with the other names it is
/// logged under in this code base (`session = %id` becomes `session_id`).
pub const CONTEXT_FIELDS: &[(&str, &[&str])] = &[
    ("session_id", &["session"]),
    ("user_id", &[]),
    ("access_key", &[]),
    ("kernel_id", &["kernel"]),
    ("agent_id", &[]),
];

/// Keys every line has; an event field of the same name is renamed `field.<name>`.
const RESERVED: &[&str] = &["timestamp", "level", "component", "target", "message", "span"];

/// The label a context field is logged under, if `name` is one of its names.
fn context_key(name: &str) -> Option<&'static str> {
    CONTEXT_FIELDS.iter().find(|(key, aliases)| *key == name || aliases.contains(&name)).map(|(key, _)| *key)
}

/// The `level` label: Python's names (`warning`), as the original's logs have them.
pub fn level_label(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warning",
        Level::ERROR => "error",
    }
}

/// The daemon a target's crate belongs to, if it is one of them.
fn component_of_target(target: &str) -> Option<&'static str> {
    match target.split("::").next() {
        Some("bai_manager") => Some("manager"),
        Some("bai_agent") => Some("agent"),
        _ => None,
    }
}

/// What a span contributes to the events inside it (kept in the span's extensions).
#[derive(Debug, Default)]
struct SpanContextFields {
    fields: BTreeMap<&'static str, Value>,
    component: Option<String>,
}

#[derive(Default)]
struct SpanVisitor(SpanContextFields);

impl SpanVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "component" {
            self.0.component = value.as_str().map(str::to_string).or_else(|| Some(value.to_string()));
        } else if let Some(key) = context_key(field.name()) {
            self.0.fields.insert(key, value);
        }
    }
}

impl Visit for SpanVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
}

/// An event's fields in order (`message` apart).
#[derive(Default)]
struct EventVisitor {
    message: Option<String>,
    fields: Vec<(String, Value)>,
}

impl EventVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else if !name.starts_with("log.") {
            self.fields.push((name.to_string(), value));
        }
    }
}

impl Visit for EventVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
}

/// The JSON log layer (see the module docs). `component` is the default component label;
/// lines go to `writer` (`std::io::stderr` in the daemons).
#[derive(Debug)]
pub struct JsonLayer<W> {
    component: &'static str,
    writer: W,
}

impl<W> JsonLayer<W> {
    /// A layer labelling lines `component` unless a span or the event's crate says otherwise.
    pub fn new(component: &'static str, writer: W) -> Self {
        Self { component, writer }
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut visitor = SpanVisitor::default();
        attrs.record(&mut visitor);
        if !visitor.0.fields.is_empty() || visitor.0.component.is_some() {
            span.extensions_mut().insert(visitor.0);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let mut visitor = SpanVisitor(extensions.remove::<SpanContextFields>().unwrap_or_default());
        values.record(&mut visitor);
        extensions.insert(visitor.0);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut visitor = EventVisitor::default();
        event.record(&mut visitor);
        let mut inherited: BTreeMap<&'static str, Value> = BTreeMap::new();
        let mut component = None;
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope(event) {
            // From the root to the event: inner spans override outer ones.
            for span in scope.from_root() {
                innermost = Some(span.name());
                if let Some(fields) = span.extensions().get::<SpanContextFields>() {
                    inherited.extend(fields.fields.iter().map(|(k, v)| (*k, v.clone())));
                    if let Some(c) = &fields.component {
                        component = Some(c.clone());
                    }
                }
            }
        }
        let component = component
            .or_else(|| component_of_target(meta.target()).map(str::to_string))
            .unwrap_or_else(|| self.component.to_string());
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), Value::from(level_label(meta.level())));
        line.insert("component".into(), Value::from(component));
        line.insert("target".into(), Value::from(meta.target()));
        line.insert("message".into(), Value::from(visitor.message.unwrap_or_default()));
        if let Some(name) = innermost {
            line.insert("span".into(), Value::from(name));
        }
        for (key, value) in inherited {
            line.insert(key.into(), value);
        }
        for (name, value) in visitor.fields {
            match context_key(&name) {
                Some(key) => {
                    line.insert(key.into(), value);
                }
                None if RESERVED.contains(&name.as_str()) => {
                    line.insert(format!("field.{name}"), value);
                }
                None => {
                    line.insert(name, value);
                }
            }
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // A log line that cannot be written has nowhere else to go.
        let _ = self.writer.make_writer().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    pub(crate) use bai_test_support::log_lines::LogLines as Lines;

    #[test]
    fn lines_carry_the_component_level_and_the_spans_session_and_user() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new("manager", lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("api", user_id = tracing::field::Empty, access_key = "AKIA1");
            let _r = request.enter();
            request.record("user_id", "u-1");
            tracing::info!(target: "bai_manager::api", "request accepted");
            let dispatch = tracing::info_span!("dispatch", session_id = %"s-1");
            let _d = dispatch.enter();
            tracing::warn!(target: "bai_manager::scheduler", agent = "i-a", error = "refused", "create_kernels failed");
            tracing::error!(target: "bai_manager::scheduler", session = "s-2", count = 3, ok = false, "other session");
            let agent = tracing::info_span!("rpc", component = "agent");
            let _a = agent.enter();
            tracing::info!(target: "somewhere::else", message_id = 1, "in the agent's span");
        });
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(JsonLayer::new("agent", lines.clone())),
            || {
                tracing::info!(target: "bai_manager::local", level = "loud", "outside any span");
            },
        );
        let lines = lines.json();
        assert_eq!(lines.len(), 5, "{lines:?}");
        let first = &lines[0];
        assert_eq!(first["level"], "info");
        assert_eq!(first["component"], "manager");
        assert_eq!(first["target"], "bai_manager::api");
        assert_eq!(first["message"], "request accepted");
        assert_eq!(first["user_id"], "u-1");
        assert_eq!(first["access_key"], "AKIA1");
        assert_eq!(first["span"], "api");
        assert!(first.get("session_id").is_none(), "{first}");
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        let second = &lines[1];
        assert_eq!(
            (&second["level"], &second["session_id"], &second["user_id"], &second["agent"], &second["error"]),
            (&"warning".into(), &"s-1".into(), &"u-1".into(), &"i-a".into(), &"refused".into())
        );
        // The event's own `session` is the session_id label, and wins over the span's.
        let third = &lines[2];
        assert_eq!(
            (&third["level"], &third["session_id"], &third["count"], &third["ok"]),
            (&"error".into(), &"s-2".into(), &3.into(), &false.into())
        );
        // A span's `component` wins over the process default and the target.
        let fourth = &lines[3];
        assert_eq!(
            (&fourth["component"], &fourth["span"], &fourth["session_id"]),
            (&"agent".into(), &"rpc".into(), &"s-1".into())
        );
        // A target of the manager's crate is the manager, whatever the default; reserved
        // names of event fields are kept apart.
        let fifth = &lines[4];
        assert_eq!(
            (&fifth["component"], &fifth["level"], &fifth["field.level"]),
            (&"manager".into(), &"info".into(), &"loud".into())
        );
        assert!(fifth.get("span").is_none());
    }
}
