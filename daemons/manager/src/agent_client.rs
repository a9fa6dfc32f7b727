//! [`AgentClients`]: the manager's connections to its agents' RPC servers, one lazily
//! connected channel per agent address, every call carrying the shared token (and a client
//! certificate when the agents require mTLS). Each call runs in an `agent_rpc` span whose
//! W3C `traceparent` goes along in the call's metadata, so the agent's handler continues the
//! caller's trace.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bai_agent_runtime::rpc::{self, AgentClient};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Why an agent could not be called.
#[derive(Debug, thiserror::Error)]
pub enum AgentCallError {
    /// The address or the TLS files are unusable.
    #[error("agent {addr}: {reason}")]
    Invalid {
        /// The agent address.
        addr: String,
        /// What is wrong.
        reason: String,
    },
    /// The agent answered with an error status.
    #[error("agent {addr}: {status}")]
    Status {
        /// The agent address.
        addr: String,
        /// Its answer.
        status: tonic::Status,
    },
}

/// Channels to agents, by address.
pub struct AgentClients {
    token: String,
    tls: Option<ClientTlsConfig>,
    timeout: Duration,
    channels: Mutex<HashMap<String, tonic::transport::Channel>>,
}

impl std::fmt::Debug for AgentClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClients").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl AgentClients {
    /// Clients sending `token`; with `tls`, agents are called over TLS.
    pub fn new(token: &str, tls: Option<ClientTlsConfig>) -> Result<Self, AgentCallError> {
        rpc::TokenInjector::new(token)
            .map_err(|e| AgentCallError::Invalid { addr: String::new(), reason: e.to_string() })?;
        Ok(Self {
            token: token.to_string(),
            tls,
            timeout: Duration::from_secs(60),
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// A TLS configuration from PEM files: the agents' CA, and optionally a client
    /// certificate and key for mTLS.
    pub fn tls_from_files(ca: &Path, client: Option<(&Path, &Path)>) -> Result<ClientTlsConfig, AgentCallError> {
        let read = |p: &Path| {
            std::fs::read(p)
                .map_err(|e| AgentCallError::Invalid { addr: String::new(), reason: format!("{}: {e}", p.display()) })
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let Some((cert, key)) = client {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(tls)
    }

    /// A client of the agent at `addr` (`host:port`, optionally prefixed by `grpc://`,
    /// `http://` or `https://`). Connects lazily: an unreachable agent fails the first call.
    pub fn client(&self, addr: &str) -> Result<AgentClient, AgentCallError> {
        let hostport = addr
            .strip_prefix("grpc://")
            .or_else(|| addr.strip_prefix("http://"))
            .or_else(|| addr.strip_prefix("https://"))
            .unwrap_or(addr)
            .to_string();
        let invalid = |reason: String| AgentCallError::Invalid { addr: addr.to_string(), reason };
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            match channels.get(&hostport) {
                Some(c) => c.clone(),
                None => {
                    let scheme = if self.tls.is_some() { "https" } else { "http" };
                    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{hostport}"))
                        .map_err(|e| invalid(e.to_string()))?
                        .connect_timeout(Duration::from_secs(10))
                        .timeout(self.timeout)
                        .tcp_keepalive(Some(Duration::from_secs(30)));
                    if let Some(tls) = &self.tls {
                        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| invalid(e.to_string()))?;
                    }
                    let channel = endpoint.connect_lazy();
                    channels.insert(hostport.clone(), channel.clone());
                    channel
                }
            }
        };
        rpc::traced_client(channel, &self.token, Some(bai_telemetry::propagation::inject))
            .map_err(|e| invalid(e.to_string()))
    }

    /// Maps an RPC error status to an [`AgentCallError`] naming the agent.
    pub fn status(addr: &str, status: tonic::Status) -> AgentCallError {
        AgentCallError::Status { addr: addr.to_string(), status }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clients_are_cached_per_address_and_bad_tokens_refused() {
        assert!(AgentClients::new("", None).is_err());
        let clients = AgentClients::new("token", None).unwrap();
        clients.client("grpc://127.0.0.1:1").unwrap();
        clients.client("127.0.0.1:1").unwrap();
        assert_eq!(clients.channels.lock().unwrap().len(), 1);
        let mut c = clients.client("127.0.0.1:1").unwrap();
        let err = c.ping(bai_agent_runtime::rpc::pb::PingRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    }
}
