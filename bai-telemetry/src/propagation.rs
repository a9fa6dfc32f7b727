//! W3C trace context (`traceparent`, `tracestate`) across processes: the manager puts its
//! span's context on each agent call ([`inject`]), the agent makes its handler's span a child
//! of it ([`set_parent_from_headers`]). A context can also be kept as a `traceparent` string
//! ([`traceparent`], [`set_parent_from_traceparent`]) to continue a trace later — the
//! scheduler continues the trace of the request that created a session.
//!
//! Without the OpenTelemetry layer (nothing exported) spans have no trace context: nothing
//! is injected and parents are ignored, so these calls are always safe.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header carrying the trace id, the parent span id and the sampling decision.
pub const TRACEPARENT: &str = "traceparent";

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Adds `span`'s trace context to `headers` (HTTP or gRPC metadata). Nothing when the span
/// is not recorded.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// Makes `span` — just created, not yet entered — a child of the trace context in `headers`,
/// if they carry a valid one.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    if headers.contains_key(TRACEPARENT) {
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        // Fails only without the OpenTelemetry layer or for a span already started: then
        // there is no trace to join.
        let _ = span.set_parent(cx);
    }
}

/// `span`'s context as a `traceparent` value, when it is recorded.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = HeaderMap::new();
    inject(span, &mut headers);
    headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Makes `span` — just created, not yet entered — a child of the context in `traceparent`
/// (from [`traceparent`]); an invalid value is ignored.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if let Ok(value) = HeaderValue::from_str(traceparent) {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, value);
        set_parent_from_headers(span, &headers);
    }
}

/// Links `span` to `to` (an OpenTelemetry span link: "caused by", without being its child) —
/// a session's dispatch, a child of the request that created the session, links to the
/// scheduling pass that placed it. Nothing when either span is not recorded.
pub fn add_link(span: &tracing::Span, to: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    let to = to.context().span().span_context().clone();
    if to.is_valid() {
        span.add_link(to);
    }
}
