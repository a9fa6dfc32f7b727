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

/// The agent client with the token injected into every call.
pub type AgentClient = pb::agent_client::AgentClient<InterceptedService<tonic::transport::Channel, TokenInjector>>;

/// A client of the agent at `channel` that sends `token` with every call.
pub fn client(channel: tonic::transport::Channel, token: &str) -> crate::Result<AgentClient> {
    Ok(pb::agent_client::AgentClient::with_interceptor(channel, TokenInjector::new(token)?)
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
