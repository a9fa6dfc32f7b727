//! Running code in a session: a stream of console items over the execute WebSocket.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{SinkExt, Stream, StreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{seg, Client};
use crate::error::{protocol, Error, Problem, Result};

/// One thing an execution produced, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum ExecItem {
    /// Text the code wrote to stdout.
    Stdout(String),
    /// Text the code wrote to stderr.
    Stderr(String),
    /// Any other console record (`media`, `html`, `log`, …) with its data.
    Record {
        /// The record type.
        kind: String,
        /// Its data.
        data: Value,
    },
    /// The code waits for a line of input: answer with [`Execution::send_input`].
    WaitingInput {
        /// Whether the prompt is for a password (don't echo it).
        is_password: bool,
    },
    /// A batch build step ended.
    BuildFinished {
        /// Its exit code.
        exit_code: i64,
    },
    /// A batch clean step ended.
    CleanFinished {
        /// Its exit code.
        exit_code: i64,
    },
    /// The run ended; nothing follows.
    Finished {
        /// The code's exit code.
        exit_code: i64,
    },
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecRequest {
    /// Run this code in the kernel's language.
    Query(String),
    /// Run the session's files: clean, build and exec commands (`"*"`: the image's default,
    /// `None`: skip).
    Batch {
        /// The clean command.
        clean: Option<String>,
        /// The build command.
        build: Option<String>,
        /// The command to run.
        exec: Option<String>,
    },
}

impl ExecRequest {
    fn first_message(&self) -> Value {
        match self {
            Self::Query(code) => json!({"code": code, "mode": "query", "options": {}}),
            Self::Batch { clean, build, exec } => json!({
                "code": "", "mode": "batch",
                "options": {"clean": clean, "build": build, "buildLog": false, "exec": exec},
            }),
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A running execution: a [`Stream`] of [`ExecItem`]s that ends after
/// [`ExecItem::Finished`]. Dropping it closes the connection, which interrupts the code.
pub struct Execution {
    socket: Socket,
    pending: VecDeque<ExecItem>,
    finished: bool,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution").field("pending", &self.pending).field("finished", &self.finished).finish()
    }
}

/// The output of a whole run, from [`Execution::collect_output`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// The exit code.
    pub exit_code: i64,
}

impl Execution {
    /// Answers [`ExecItem::WaitingInput`] with a line.
    pub async fn send_input(&mut self, line: &str) -> Result<()> {
        self.socket.send(Message::Text(line.to_string().into())).await.map_err(|e| protocol("execute input", e))
    }

    /// Runs to the end, gathering stdout and stderr. Fails if the code asks for input.
    pub async fn collect_output(mut self) -> Result<ExecOutput> {
        let mut out = ExecOutput::default();
        while let Some(item) = self.next().await {
            match item? {
                ExecItem::Stdout(s) => out.stdout.push_str(&s),
                ExecItem::Stderr(s) => out.stderr.push_str(&s),
                ExecItem::Finished { exit_code } => out.exit_code = exit_code,
                ExecItem::WaitingInput { .. } => {
                    return Err(protocol("execute", "the code waits for input; use the stream to answer it"))
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Turns one server message into items.
    fn absorb(&mut self, text: &str) -> Result<()> {
        let message: Value = serde_json::from_str(text).map_err(|e| protocol("execute", e))?;
        let status = message["status"].as_str().unwrap_or("finished");
        if status == "error" {
            self.finished = true;
            return Err(protocol("execute", message["msg"].as_str().unwrap_or("the server reported an error")));
        }
        for record in message["console"].as_array().into_iter().flatten() {
            let kind = record.get(0).and_then(Value::as_str).unwrap_or("stdout");
            let data = record.get(1).cloned().unwrap_or(Value::Null);
            self.pending.push_back(match (kind, data) {
                ("stdout", Value::String(s)) => ExecItem::Stdout(s),
                ("stderr", Value::String(s)) => ExecItem::Stderr(s),
                (kind, data) => ExecItem::Record { kind: kind.to_string(), data },
            });
        }
        let exit_code = message["exitCode"].as_i64().unwrap_or(0);
        match status {
            "waiting-input" => self.pending.push_back(ExecItem::WaitingInput {
                is_password: message["options"]["is_password"].as_bool().unwrap_or(false),
            }),
            "build-finished" => self.pending.push_back(ExecItem::BuildFinished { exit_code }),
            "clean-finished" => self.pending.push_back(ExecItem::CleanFinished { exit_code }),
            "finished" => {
                self.finished = true;
                self.pending.push_back(ExecItem::Finished { exit_code });
            }
            _ => {}
        }
        Ok(())
    }
}

impl Stream for Execution {
    type Item = Result<ExecItem>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            match self.socket.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(Message::Text(text)))) => {
                    if let Err(e) = self.absorb(text.as_str()) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(_))) => {} // pings, pongs and binary frames carry nothing
                Poll::Ready(Some(Err(e))) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(protocol("execute", e))));
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(protocol(
                        "execute",
                        "the connection closed before the run finished",
                    ))));
                }
            }
        }
    }
}

impl Client {
    /// Starts running code in a session (by name or id) and streams what it produces.
    ///
    /// ```no_run
    /// # async fn demo(client: bai_client::Client) -> bai_client::Result<()> {
    /// use bai_client::{ExecItem, ExecRequest};
    /// use futures::StreamExt;
    /// let mut run = client.execute("my-session", &ExecRequest::Query("print(6 * 7)".into())).await?;
    /// while let Some(item) = run.next().await {
    ///     match item? {
    ///         ExecItem::Stdout(text) => print!("{text}"),
    ///         ExecItem::Finished { exit_code } => println!("exit code {exit_code}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn execute(&self, reference: &str, request: &ExecRequest) -> Result<Execution> {
        let route = format!("/stream/session/{}/execute", seg(reference));
        let mut socket = self.websocket(&route, &[]).await?;
        socket
            .send(Message::Text(request.first_message().to_string().into()))
            .await
            .map_err(|e| protocol(&route, e))?;
        Ok(Execution { socket, pending: VecDeque::new(), finished: false })
    }

    /// Opens a signed WebSocket to `route`; a refused handshake is [`Error::Api`] with the
    /// server's problem details.
    pub(crate) async fn websocket(
        &self,
        route: &str,
        query: &[(&str, String)],
    ) -> Result<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>> {
        let mut url = self.url(route, query)?;
        let headers = self.signed_headers(&Method::GET, &url, None)?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|()| protocol(route, "cannot make a WebSocket URL"))?;
        let mut handshake = url.as_str().into_client_request().map_err(|e| protocol(route, e))?;
        for (name, value) in &headers {
            handshake.headers_mut().insert(name, value.clone());
        }
        let connector = self.websocket_tls().map(tokio_tungstenite::Connector::Rustls);
        match tokio_tungstenite::connect_async_tls_with_config(handshake, None, false, connector).await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                Err(Error::Api {
                    status: response.status().as_u16(),
                    method: "GET".into(),
                    path: url.path().to_string(),
                    problem: Box::new(Problem::from_body(&body)),
                })
            }
            Err(tungstenite::Error::Io(e)) => Err(Error::Unreachable { url: url.to_string(), reason: e.to_string() }),
            Err(e) => Err(protocol(route, e)),
        }
    }

    /// Runs code to the end and returns its output (for code that needs no input).
    pub async fn run_code(&self, reference: &str, code: &str) -> Result<ExecOutput> {
        self.execute(reference, &ExecRequest::Query(code.to_string())).await?.collect_output().await
    }
}
