//! Services inside sessions ("apps": Jupyter, TensorBoard, an HTTP or TCP server), reached
//! through the manager as the official client's `backend.ai app` does.
//!
//! - [`Client::apps`] lists a session's apps (`GET /stream/session/{ref}/apps`).
//! - [`Client::app_tunnel`] carries one TCP connection to an app over the manager's
//!   `tcpproxy` WebSocket; [`Client::forward_app`] serves a local listener with one tunnel per
//!   connection, so `http://127.0.0.1:8080/` reaches the app.
//! - [`Client::app_link`] asks for a link a browser can open without signing requests.
//!
//! The manager starts an app on first use and only for the session's owner.
//!
//! ```no_run
//! # async fn demo(client: bai_client::Client) -> bai_client::Result<()> {
//! use bai_client::AppOptions;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! // Until cancelled: every connection to 127.0.0.1:8080 reaches the session's http-server.
//! client.forward_app("my-session", "http-server", &AppOptions::default(), listener).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{seg, Body, Client};
use crate::error::{invalid, protocol, Error, Result};

/// An app a session offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// Its name, e.g. `jupyter`.
    pub name: String,
    /// `http`, `tcp`, `pty` or `preopen`.
    pub protocol: String,
    /// Its ports inside the container.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// How to build its URL from `{protocol}`, `{host}` and `{port}`, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_template: Option<String>,
    /// Arguments [`AppOptions::arguments`] may give.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_arguments: Vec<String>,
    /// Environment variables [`AppOptions::envs`] may set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_envs: Vec<String>,
}

/// What an app is started with, when it is not running yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppOptions {
    /// Extra arguments: `{"--opt": "value"}`, `{"--flag": null}`, `{"--opt": ["a", "b"]}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, Value>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
}

impl AppOptions {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if !self.arguments.is_empty() {
            query.push(("arguments", json!(self.arguments).to_string()));
        }
        if !self.envs.is_empty() {
            query.push(("envs", json!(self.envs).to_string()));
        }
        query
    }
}

/// A browser link to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLink {
    /// The absolute URL (the manager's endpoint joined with its path).
    pub url: String,
    /// When it stops working (it also stops when the session ends), RFC 3339.
    pub expires_at: String,
}

impl Client {
    /// The apps a session (by name or id) offers.
    pub async fn apps(&self, reference: &str) -> Result<Vec<AppInfo>> {
        let route = format!("/stream/session/{}/apps", seg(reference));
        self.send_json(Method::GET, &route, &[], Body::Empty).await
    }

    /// Carries `stream` to `app` in the session and back until either side closes. The app
    /// is started first when it is not running; errors before any byte flows (no such app, a
    /// failed start) are [`crate::Error::Api`].
    pub async fn app_tunnel(&self, reference: &str, app: &str, options: &AppOptions, stream: TcpStream) -> Result<()> {
        let route = format!("/stream/session/{}/tcpproxy", seg(reference));
        let mut query = vec![("app", app.to_string())];
        query.extend(options.query());
        let socket = self.websocket(&route, &query).await?;
        let (mut ws_tx, mut ws_rx) = socket.split();
        let (mut tcp_rx, mut tcp_tx) = stream.into_split();
        let upstream = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match tcp_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        ws_tx.send(Message::Binary(buf[..n].to_vec().into())).await.map_err(|e| protocol(&route, e))?
                    }
                }
            }
            let _ = ws_tx.send(Message::Close(None)).await;
            Ok(())
        };
        let downstream = async {
            while let Some(msg) = ws_rx.next().await {
                let data = match msg.map_err(|e| protocol(&route, e))? {
                    Message::Binary(data) => data,
                    Message::Text(text) => text.as_bytes().to_vec().into(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if tcp_tx.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = tcp_tx.shutdown().await;
            Ok(())
        };
        tokio::select! {
            r = upstream => r,
            r = downstream => r,
        }
    }

    /// Serves `listener` until cancelled: every connection it accepts is carried to `app` by
    /// [`Client::app_tunnel`]. The app's existence is checked first, so a wrong name fails at
    /// once; a tunnel that fails later is logged and closes only its connection.
    pub async fn forward_app(
        &self,
        reference: &str,
        app: &str,
        options: &AppOptions,
        listener: TcpListener,
    ) -> Result<()> {
        let apps = self.apps(reference).await?;
        if !apps.iter().any(|a| a.name == app) {
            let known: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
            return Err(invalid("app", format!("the session {reference:?} has no app {app:?}; it has {known:?}")));
        }
        loop {
            let (stream, peer) =
                listener.accept().await.map_err(|source| Error::Io { path: "the local listener".into(), source })?;
            let (client, reference, app, options) =
                (self.clone(), reference.to_string(), app.to_string(), options.clone());
            tokio::spawn(async move {
                if let Err(e) = client.app_tunnel(&reference, &app, &options, stream).await {
                    tracing::warn!(%peer, error = %e, "app tunnel failed");
                }
            });
        }
    }

    /// A link that opens an `http` app of the session in a browser, without signing; it works
    /// while the session runs and until [`AppLink::expires_at`].
    pub async fn app_link(&self, reference: &str, app: &str, options: &AppOptions) -> Result<AppLink> {
        let route = format!("/stream/session/{}/apps/{}/link", seg(reference), seg(app));
        let body = serde_json::to_value(options).map_err(|e| protocol(&route, e))?;
        let mut link: AppLink = self.send_json(Method::POST, &route, &[], Body::Json(body)).await?;
        if let Ok(url) = self.endpoint().join(&link.url) {
            link.url = url.to_string();
        }
        Ok(link)
    }
}
