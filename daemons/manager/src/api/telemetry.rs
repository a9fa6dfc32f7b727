//! [`trace_request`]: the span of each API request, the root of the trace that follows a
//! session from `POST /session` through the scheduler to its agents (see `bai_telemetry`).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::Instrument;

/// Middleware: runs the request in an `api_request` span named `METHOD /matched/route`
/// (`otel.kind = server`) with `http.request.method`, `http.route` and, once answered,
/// `http.response.status_code` (a 5xx marks the span failed). The signature check records
/// `access_key` and `user_id` on it ([`super::authenticate`]), session creation `session_id`,
/// so every log line of the request carries them. A request with a W3C `traceparent` header
/// continues that trace. Add it outermost so that the span covers every other middleware.
pub async fn trace_request(req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let name = if route.is_empty() { method.clone() } else { format!("{method} {route}") };
    let span = tracing::info_span!(
        "api_request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        access_key = Empty,
        user_id = Empty,
        session_id = Empty,
    );
    bai_telemetry::propagation::set_parent_from_headers(&span, req.headers());
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
