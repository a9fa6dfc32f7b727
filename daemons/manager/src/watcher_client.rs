//! Calls to the agents' watchers (`bai-agent watcher`, `[watcher]` in the configuration): the
//! supervisor beside each agent that reports it and starts, stops or restarts it over HTTP
//! (`GET /status`, `POST /start|stop|restart`, `authorization: Bearer <token>`). The watcher of
//! an agent listens on the host of the agent's RPC address, on the configured port, as the
//! original manager finds it. The superadmin's `/resource/watcher` routes
//! ([`crate::api::resource`]) are the callers.

use std::time::Duration;

use serde_json::Value;

use crate::config::{ConfigError, WatcherSection};

/// What to ask a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherAction {
    /// `GET /status`.
    Status,
    /// `POST /start`.
    Start,
    /// `POST /stop`.
    Stop,
    /// `POST /restart`.
    Restart,
}

impl WatcherAction {
    /// The watcher's path for this action.
    pub fn path(self) -> &'static str {
        match self {
            WatcherAction::Status => "/status",
            WatcherAction::Start => "/start",
            WatcherAction::Stop => "/stop",
            WatcherAction::Restart => "/restart",
        }
    }
}

/// Why a watcher call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WatcherError {
    /// `[watcher] token` is empty.
    #[error("[watcher] token is not set, so the manager cannot call the agents' watchers")]
    NoToken,
    /// The agent's address has no host to find its watcher at.
    #[error("the agent's address {addr:?} has no host")]
    NoHost {
        /// The agent's recorded RPC address.
        addr: String,
    },
    /// No answer: connection refused, timed out, reset.
    #[error("the watcher at {url} is unreachable: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The watcher answered with an error status (401: the tokens differ).
    #[error("the watcher at {url} answered {status}{}", error_suffix(.body))]
    Status {
        /// The URL called.
        url: String,
        /// The HTTP status it answered.
        status: u16,
        /// Its body: JSON when it was JSON, else the text.
        body: Value,
    },
    /// The watcher answered 2xx with something that is not JSON.
    #[error("the watcher at {url} answered something that is not JSON: {reason}")]
    BadAnswer {
        /// The URL called.
        url: String,
        /// Why it could not be read.
        reason: String,
    },
}

fn error_suffix(body: &Value) -> String {
    match body.get("error").and_then(Value::as_str).or_else(|| body.as_str()).filter(|s| !s.is_empty()) {
        Some(message) => format!(": {message}"),
        None => String::new(),
    }
}

/// A client of the agents' watchers: one connection pool, the configured port, token and time
/// limit.
#[derive(Clone)]
pub struct WatcherClient {
    port: u16,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for WatcherClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatcherClient").field("port", &self.port).finish_non_exhaustive()
    }
}

impl WatcherClient {
    /// A client for `[watcher]` (validated beforehand by [`crate::config::ManagerConfig::validate`]).
    pub fn new(config: &WatcherSection) -> Result<Self, ConfigError> {
        let timeout = Duration::from_secs_f64(config.timeout);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError {
                field: "watcher".into(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self { port: config.port, token: config.token.clone(), http })
    }

    /// The URL of `action` on the watcher of the agent whose RPC address is `agent_addr`
    /// (`tcp://10.0.0.5:6011`, `10.0.0.5:6011`, `[::1]:6011`, …).
    pub fn url(&self, agent_addr: &str, action: WatcherAction) -> Result<String, WatcherError> {
        let host =
            crate::metrics::rpc_host(agent_addr).ok_or_else(|| WatcherError::NoHost { addr: agent_addr.into() })?;
        Ok(format!("http://{host}:{}{}", self.port, action.path()))
    }

    /// Asks the watcher of the agent at `agent_addr` for `action` and returns its JSON answer
    /// (the watcher's status after the action).
    ///
    /// Cancel safety: dropping the future abandons the HTTP request; the watcher may still
    /// carry out a start, stop or restart it already received.
    pub async fn call(&self, agent_addr: &str, action: WatcherAction) -> Result<Value, WatcherError> {
        if self.token.is_empty() {
            return Err(WatcherError::NoToken);
        }
        let url = self.url(agent_addr, action)?;
        let request = match action {
            WatcherAction::Status => self.http.get(&url),
            _ => self.http.post(&url),
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| WatcherError::Unreachable { url: url.clone(), reason: describe(&e) })?;
        let status = response.status();
        let text =
            response.text().await.map_err(|e| WatcherError::Unreachable { url: url.clone(), reason: describe(&e) })?;
        if !status.is_success() {
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(WatcherError::Status { url, status: status.as_u16(), body });
        }
        serde_json::from_str(&text).map_err(|e| WatcherError::BadAnswer { url, reason: e.to_string() })
    }
}

/// A reqwest error with its causes (reqwest's own message is only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(token: &str) -> WatcherClient {
        WatcherClient::new(&WatcherSection { port: 6009, token: token.into(), timeout: 5.0 }).unwrap()
    }

    #[test]
    fn urls_use_the_agent_host_and_the_watcher_port() {
        let c = client("t");
        assert_eq!(c.url("tcp://10.0.0.5:6011", WatcherAction::Status).unwrap(), "http://10.0.0.5:6009/status");
        assert_eq!(c.url("node01:6011", WatcherAction::Restart).unwrap(), "http://node01:6009/restart");
        assert_eq!(c.url("[::1]:6011", WatcherAction::Stop).unwrap(), "http://[::1]:6009/stop");
        assert_eq!(c.url("", WatcherAction::Start).unwrap_err(), WatcherError::NoHost { addr: String::new() });
    }

    #[tokio::test]
    async fn no_token_no_call() {
        assert_eq!(client("").call("127.0.0.1:6011", WatcherAction::Status).await.unwrap_err(), WatcherError::NoToken);
    }

    #[test]
    fn status_errors_carry_the_watchers_message() {
        let e = WatcherError::Status {
            url: "http://h:6009/status".into(),
            status: 401,
            body: serde_json::json!({"error": "missing or wrong token"}),
        };
        assert_eq!(e.to_string(), "the watcher at http://h:6009/status answered 401: missing or wrong token");
        let e = WatcherError::Status { url: "u".into(), status: 500, body: Value::String(String::new()) };
        assert_eq!(e.to_string(), "the watcher at u answered 500");
    }
}
