//! Session events as a [`Stream`] (server-sent events from `GET /events/session`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::client::{Body, Client};
use crate::error::{protocol, Result};

/// Which events a stream carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventScope {
    /// Session and kernel events.
    #[default]
    All,
    /// `session_*` only.
    Session,
    /// `kernel_*` only.
    Kernel,
}

impl EventScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::All => "*",
            Self::Session => "session",
            Self::Kernel => "kernel",
        }
    }
}

/// One event of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// The event name, e.g. `session_started`, `kernel_terminated`.
    pub name: String,
    /// The session id.
    pub session_id: Option<Uuid>,
    /// The session name.
    pub session_name: Option<String>,
    /// The kernel, for `kernel_*` events.
    pub kernel_id: Option<Uuid>,
    /// Why it happened.
    pub reason: Option<String>,
    /// The exit code, on `kernel_terminated`, `session_success` and `session_failure`.
    pub exit_code: Option<i64>,
    /// The whole event payload.
    pub data: Value,
}

impl SessionEvent {
    fn from_frame(name: String, data: &str) -> Result<Self> {
        let data: Value = serde_json::from_str(data).map_err(|e| protocol(format!("event {name}"), e))?;
        let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_string);
        Ok(Self {
            session_id: text("sessionId").and_then(|s| Uuid::parse_str(&s).ok()),
            session_name: text("sessionName"),
            kernel_id: text("kernelId").and_then(|s| Uuid::parse_str(&s).ok()),
            reason: text("reason"),
            exit_code: data.get("exitCode").and_then(Value::as_i64),
            name,
            data,
        })
    }

    /// Whether the session has ended with this event (after it, no more events come).
    pub fn is_final(&self) -> bool {
        matches!(self.name.as_str(), "session_terminated" | "session_cancelled")
    }
}

/// The events of one session, in order. Ends when the server closes the stream (it does after
/// the session's final event).
pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: BytesMut,
    done: bool,
}

impl EventStream {
    /// The events of a server-sent-event response.
    pub(crate) fn from_response(response: reqwest::Response) -> Self {
        EventStream { body: Box::pin(response.bytes_stream()), buffer: BytesMut::new(), done: false }
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("done", &self.done).finish_non_exhaustive()
    }
}

/// Splits one complete frame off the front of `buffer` (frames end with a blank line; the
/// buffer holds no CRs, see [`push`]) and returns `(event name, data)`; frames without data
/// (comments, pings) are skipped.
fn next_frame(buffer: &mut BytesMut) -> Option<(String, String)> {
    loop {
        let end = buffer.windows(2).position(|w| w == b"\n\n")?;
        let frame = buffer.split_to(end + 2);
        let text = String::from_utf8_lossy(&frame[..end]);
        let (mut name, mut data) = (String::from("message"), Vec::new());
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            }
        }
        if !data.is_empty() {
            return Some((name, data.join("\n")));
        }
    }
}

/// Appends a chunk, dropping CRs so CRLF line ends read as LF (JSON payloads escape theirs).
fn push(buffer: &mut BytesMut, chunk: &[u8]) {
    buffer.extend(chunk.iter().copied().filter(|b| *b != b'\r'));
}

impl Stream for EventStream {
    type Item = Result<SessionEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if let Some((name, data)) = next_frame(&mut self.buffer) {
                if name == "server_close" {
                    self.done = true;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(SessionEvent::from_frame(name, &data)));
            }
            match self.body.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => push(&mut self.buffer, &chunk),
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(protocol("event stream", e))));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl Client {
    /// Streams a session's events (by name or id).
    ///
    /// ```no_run
    /// # async fn demo(client: bai_client::Client) -> bai_client::Result<()> {
    /// use futures::StreamExt;
    /// let mut events = client.session_events("my-session", bai_client::EventScope::Session).await?;
    /// while let Some(event) = events.next().await {
    ///     println!("{}", event?.name);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn session_events(&self, reference: &str, scope: EventScope) -> Result<EventStream> {
        let key = if Uuid::parse_str(reference).is_ok() { "sessionId" } else { "sessionName" };
        let query = [(key, reference.to_string()), ("scope", scope.as_str().to_string())];
        let response = self.send(Method::GET, "/events/session", &query, Body::Empty).await?;
        Ok(EventStream::from_response(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_on_blank_lines_with_lf_or_crlf() {
        let mut buffer = BytesMut::new();
        push(&mut buffer, b": ping\n\nevent: session_started\ndata: {\"sessionId\": null}\n\nevent: x\r\nid: 3\r");
        push(&mut buffer, b"\ndata: 1\r\n\r\nevent: partial\ndata: 2");
        assert_eq!(next_frame(&mut buffer), Some(("session_started".into(), "{\"sessionId\": null}".into())));
        assert_eq!(next_frame(&mut buffer), Some(("x".into(), "1".into())));
        assert_eq!(next_frame(&mut buffer), None);
        assert_eq!(&buffer[..], b"event: partial\ndata: 2");
    }

    #[test]
    fn events_keep_their_payload() {
        let e = SessionEvent::from_frame(
            "kernel_terminated".into(),
            r#"{"reason":"user-requested","sessionName":"s1","exitCode":3,"kernelId":"2b7e0f6e-3c2a-4d0e-9b1a-1d2c3e4f5a6b"}"#,
        )
        .unwrap();
        assert_eq!(
            (e.exit_code, e.reason.as_deref(), e.session_name.as_deref()),
            (Some(3), Some("user-requested"), Some("s1"))
        );
        assert!(e.kernel_id.is_some() && !e.is_final());
        assert!(SessionEvent::from_frame("x".into(), "not json").is_err());
    }
}
