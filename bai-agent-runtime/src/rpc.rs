//! The manager ↔ agent protocol (`proto/agent.proto`), compiled with protox at build time: the
//! generated tonic server trait the agent implements, the client the manager calls it with, and
//! the small pieces both sides need around them — the shared-token check and slot conversions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use bai_agent_runtime::rpc::{self, pb};
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:6011").connect().await?;
//! let mut client = rpc::client(channel, "the-shared-token")?;
//! let status = client.get_status(pb::GetStatusRequest {}).await?.into_inner();
//! println!("{} runs {} kernels", status.agent_id, status.kernels.len());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use bai_core::ResourceSlot;
use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The generated messages, client (`agent_client`) and server (`agent_server`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("bai.agent.v1");
}

/// The metadata key the token travels in.
pub const AUTH_METADATA: &str = "authorization";

/// The agent's default RPC port.
pub const DEFAULT_RPC_PORT: u16 = 6011;

/// Adds `authorization: Bearer <token>` to every outgoing request.
#[derive(Clone)]
pub struct TokenInjector {
    value: MetadataValue<tonic::metadata::Ascii>,
}

impl std::fmt::Debug for TokenInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenInjector(..)")
    }
}

impl TokenInjector {
    /// An injector for `token`. Errors when the token is empty or not printable ASCII.
    pub fn new(token: &str) -> crate::Result<Self> {
        check_token(token)?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| crate::Error::invalid("rpc token", "must be printable ASCII"))?;
        Ok(Self { value })
    }
}

impl Interceptor for TokenInjector {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(AUTH_METADATA, self.value.clone());
        Ok(request)
    }
}

/// Checks incoming requests for the shared token, in constant time; anything else is
/// `UNAUTHENTICATED`.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Vec<u8>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck(..)")
    }
}

impl TokenCheck {
    /// A check for `token`. Errors when the token is empty or not printable ASCII.
    pub fn new(token: &str) -> crate::Result<Self> {
        check_token(token)?;
        Ok(Self { expected: format!("Bearer {token}").into_bytes() })
    }

    /// Whether `presented` (the whole metadata value) is the token.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        // Constant time in the length of the expected value: every byte is compared.
        let mut diff = (presented.len() != self.expected.len()) as u8;
        for (i, e) in self.expected.iter().enumerate() {
            diff |= e ^ presented.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match request.metadata().get(AUTH_METADATA) {
            Some(value) if self.accepts(value.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("the RPC token is not accepted")),
            None => Err(Status::unauthenticated("missing `authorization: Bearer <token>` metadata")),
        }
    }
}

fn check_token(token: &str) -> crate::Result<()> {
    if token.is_empty() {
        return Err(crate::Error::invalid("rpc token", "must not be empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(crate::Error::invalid("rpc token", "must be printable ASCII without spaces"));
    }
    Ok(())
}

/// Puts the trace context of a call's span into its request headers (the W3C `traceparent`),
/// for the agent to continue the trace. A daemon that exports traces passes
/// `bai_telemetry::propagation::inject` to [`traced_client`]; this crate stays free of any
/// tracing backend.
pub type ContextInjector = fn(&tracing::Span, &mut http::HeaderMap);

/// A channel that opens an `agent_rpc` client span (`otel.name` the gRPC path, e.g.
/// `bai.agent.v1.Agent/CreateKernels`) around each call, inside the caller's current span,
/// and hands it to its [`ContextInjector`] so the agent's handler joins the same trace. A
/// call answered with an error status marks its span as failed.
#[derive(Clone, Debug)]
pub struct TracedChannel {
    inner: tonic::transport::Channel,
    inject: Option<ContextInjector>,
}

impl TracedChannel {
    /// Wraps `channel`; `inject` (if any) adds each call's trace context to its headers.
    pub fn new(channel: tonic::transport::Channel, inject: Option<ContextInjector>) -> Self {
        Self { inner: channel, inject }
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = TracedCall;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> TracedCall {
        let path = request.uri().path().trim_start_matches('/');
        let method = path.rsplit('/').next().unwrap_or(path);
        let span = tracing::info_span!(
            "agent_rpc",
            otel.name = %path,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            server.address = %request.uri().authority().map(|a| a.as_str()).unwrap_or_default(),
        );
        if let Some(inject) = self.inject {
            inject(&span, request.headers_mut());
        }
        let inner = span.in_scope(|| self.inner.call(request));
        TracedCall { inner, span }
    }
}

/// The response of a [`TracedChannel`] call, polled inside its span.
#[derive(Debug)]
pub struct TracedCall {
    inner: tonic::transport::channel::ResponseFuture,
    span: tracing::Span,
}

impl std::future::Future for TracedCall {
    type Output = Result<http::Response<tonic::body::Body>, tonic::transport::Error>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let result = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll(cx));
        match &result {
            // An error status before any message comes in the headers ("trailers only").
            Ok(response) => match response.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
                Some(code) if code != "0" => {
                    this.span.record("rpc.grpc.status_code", code);
                    this.span.record("otel.status_code", "ERROR");
                }
                _ => {
                    this.span.record("rpc.grpc.status_code", "0");
                }
            },
            Err(_) => {
                this.span.record("otel.status_code", "ERROR");
            }
        }
        std::task::Poll::Ready(result)
    }
}

/// The agent client with the token injected into every call, each call in its own span.
pub type AgentClient = pb::agent_client::AgentClient<InterceptedService<TracedChannel, TokenInjector>>;

/// A client of the agent at `channel` that sends `token` with every call.
pub fn client(channel: tonic::transport::Channel, token: &str) -> crate::Result<AgentClient> {
    traced_client(channel, token, None)
}

/// [`client`], with each call's trace context put into its headers by `inject`.
pub fn traced_client(
    channel: tonic::transport::Channel,
    token: &str,
    inject: Option<ContextInjector>,
) -> crate::Result<AgentClient> {
    Ok(pb::agent_client::AgentClient::with_interceptor(TracedChannel::new(channel, inject), TokenInjector::new(token)?)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// The largest message either side accepts (file transfers are the big ones): 64 MiB.
pub const MAX_MESSAGE: usize = 64 << 20;

/// A slot map on the wire → [`ResourceSlot`]. Errors name the slot and the bad value.
pub fn slots_from_wire(field: &str, map: &BTreeMap<String, String>) -> crate::Result<ResourceSlot> {
    let json = serde_json::to_value(map).map_err(|e| crate::Error::invalid(field, e.to_string()))?;
    serde_json::from_value(json).map_err(|e| crate::Error::invalid(field, e.to_string()))
}

/// A [`ResourceSlot`] → its wire map (exact decimal strings).
pub fn slots_to_wire(slots: &ResourceSlot) -> BTreeMap<String, String> {
    match serde_json::to_value(slots) {
        Ok(serde_json::Value::Object(map)) => {
            map.into_iter().map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect()
        }
        _ => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check_accepts_only_the_token() {
        let check = TokenCheck::new("s3cret").unwrap();
        assert!(check.accepts(b"Bearer s3cret"));
        assert!(!check.accepts(b"Bearer s3cre"));
        assert!(!check.accepts(b"Bearer s3cretX"));
        assert!(!check.accepts(b"s3cret"));
        assert!(!check.accepts(b""));
        assert!(TokenCheck::new("").is_err());
        assert!(TokenCheck::new("with space").is_err());
    }

    #[test]
    fn slots_round_trip_exactly() {
        let map: BTreeMap<String, String> =
            [("cpu".to_string(), "1.5".to_string()), ("mem".to_string(), "4294967296".to_string())].into();
        let slots = slots_from_wire("resource_slots", &map).unwrap();
        assert_eq!(slots_to_wire(&slots), map);
        let bad: BTreeMap<String, String> = [("cpu".to_string(), "lots".to_string())].into();
        let err = slots_from_wire("kernels[0].resource_slots", &bad).unwrap_err().to_string();
        assert!(err.contains("kernels[0].resource_slots"), "{err}");
    }
}
