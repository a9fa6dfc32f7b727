//! The transport: signing, endpoints, retries, error bodies, GraphQL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bai_core::signing::{self, RequestToSign, API_VERSION};
use bai_core::AccessKey;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use crate::config::Config;
use crate::error::{protocol, Error, GraphQlError, Problem, Result};

/// The `User-Agent` of this client.
pub const USER_AGENT: &str = concat!("bai-client/", env!("CARGO_PKG_VERSION"));

/// Characters escaped in a path segment (everything but unreserved and a few safe ones).
pub(crate) const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Escapes one path segment (a session or folder name) for a route.
pub(crate) fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// No body: sent as `text/plain` with length 0, as the official client does.
    Empty,
    /// A JSON document.
    Json(Value),
    /// Raw bytes with their content type.
    Bytes { content_type: String, data: Bytes },
}

/// A client of one manager (or a list of equivalent ones). Cheap to clone; clones share the
/// connection pool.
///
/// ```no_run
/// # async fn demo() -> bai_client::Result<()> {
/// let client = bai_client::Client::new(bai_client::Config::load()?)?;
/// println!("{}", client.server_version().await?.manager);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// The TLS settings of WebSocket connections, when not the defaults.
    websocket_tls: Option<Arc<rustls::ClientConfig>>,
    config: Config,
    /// The endpoint in use; moves on after connection errors.
    current: AtomicUsize,
}

/// What `GET /` says about the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerVersion {
    /// The API version, e.g. `v7.20230615`.
    pub version: String,
    /// The manager's version string.
    #[serde(default)]
    pub manager: String,
}

impl Client {
    /// A client for `config`.
    pub fn new(config: Config) -> Result<Self> {
        if !config.is_anonymous() && config.secret_key.is_empty() {
            return Err(Error::Config {
                field: "BACKEND_SECRET_KEY".into(),
                reason: "an access key is set but the secret key is empty".into(),
            });
        }
        if !config.is_anonymous() {
            AccessKey::new(&config.access_key).map_err(|e| Error::Config {
                field: "BACKEND_ACCESS_KEY".into(),
                reason: format!("{:?} is not an access key: {e}", config.access_key),
            })?;
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connection_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(config.skip_ssl_verification);
        if let Some(timeout) = config.read_timeout {
            builder = builder.read_timeout(timeout);
        }
        for cert in crate::tls::extra_roots(&config)? {
            let cert = reqwest::Certificate::from_der(&cert)
                .map_err(|e| Error::Config { field: "BACKEND_CA_FILE".into(), reason: e.to_string() })?;
            builder = builder.add_root_certificate(cert);
        }
        let websocket_tls = crate::tls::websocket_config(&config)?;
        let http = builder.build().map_err(|e| Error::Config { field: "http client".into(), reason: e.to_string() })?;
        Ok(Self { inner: Arc::new(Inner { http, websocket_tls, config, current: AtomicUsize::new(0) }) })
    }

    /// A client configured by [`Config::load`] (config file, then `BACKEND_*` variables).
    pub fn from_env() -> Result<Self> {
        Self::new(Config::load()?)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The rustls settings of WebSocket connections (`None`: the defaults).
    pub(crate) fn websocket_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.inner.websocket_tls.clone()
    }

    /// The endpoint requests currently go to.
    pub fn endpoint(&self) -> &Url {
        let endpoints = &self.inner.config.endpoints;
        &endpoints[self.inner.current.load(Ordering::Relaxed) % endpoints.len()]
    }

    fn rotate(&self) {
        self.inner.current.fetch_add(1, Ordering::Relaxed);
    }

    /// The URL of `route` (which starts with `/` and has its segments escaped) on the current
    /// endpoint, with `query` appended.
    pub(crate) fn url(&self, route: &str, query: &[(&str, String)]) -> Result<Url> {
        let base = self.endpoint().as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{route}")).map_err(|e| protocol(route, e))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// The signing headers for a request to `url` whose `Content-Type` is `content_type`
    /// (`None`: the request has none, e.g. a WebSocket handshake).
    pub(crate) fn signed_headers(&self, method: &Method, url: &Url, content_type: Option<&str>) -> Result<HeaderMap> {
        let config = &self.inner.config;
        let mut headers = HeaderMap::new();
        let date = signing::format_request_date(chrono::Utc::now());
        let mut put = |name: &'static str, value: &str| -> Result<()> {
            let value = HeaderValue::from_str(value).map_err(|e| protocol(format!("header {name}"), e))?;
            headers.insert(HeaderName::from_static(name), value);
            Ok(())
        };
        put("date", &date)?;
        put("x-backendai-version", API_VERSION)?;
        put("x-backendai-domain", &config.domain)?;
        if config.is_anonymous() {
            return Ok(headers);
        }
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let path_and_query = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let request = RequestToSign {
            method: method.as_str(),
            path_and_query,
            date: &date,
            host: &host,
            content_type: content_type.unwrap_or(signing::DEFAULT_CONTENT_TYPE),
            api_version: API_VERSION,
        };
        let signature = signing::sign(&config.secret_key, &request).map_err(|e| protocol("signing", e))?;
        let access_key = AccessKey::new(&config.access_key)
            .map_err(|e| Error::Config { field: "BACKEND_ACCESS_KEY".into(), reason: e.to_string() })?;
        put("authorization", &signing::authorization_header(&access_key, &signature))?;
        Ok(headers)
    }

    /// Sends a signed request and returns the response if its status is 2xx or 3xx; error
    /// statuses become [`Error::Api`]. `429` and `503` answers and connection failures are
    /// retried up to `max_retries` times with exponential backoff (honouring `Retry-After`);
    /// connection failures move on to the next endpoint.
    pub(crate) async fn send(
        &self,
        method: Method,
        route: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<Response> {
        let max_retries = self.inner.config.max_retries;
        let mut attempt = 0;
        loop {
            let url = self.url(route, query)?;
            let (content_type, payload) = match &body {
                Body::Empty => ("text/plain".to_string(), Bytes::new()),
                Body::Json(v) => ("application/json".to_string(), Bytes::from(v.to_string())),
                Body::Bytes { content_type, data } => (content_type.clone(), data.clone()),
            };
            let headers = self.signed_headers(&method, &url, Some(&content_type))?;
            let request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .headers(headers)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header(reqwest::header::CONTENT_LENGTH, payload.len())
                .body(payload);
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() && attempt < max_retries => {
                    tracing::debug!(url = %url, error = %e, "connection failed; retrying");
                    self.rotate();
                    tokio::time::sleep(backoff(attempt, None)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(unreachable(&url, &e)),
            };
            let status = response.status();
            let retryable = matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
            if retryable && attempt < max_retries {
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                tracing::debug!(url = %url, %status, attempt, "retrying");
                tokio::time::sleep(backoff(attempt, after)).await;
                attempt += 1;
                continue;
            }
            return check(method.as_str(), &url, response).await;
        }
    }

    /// [`send`](Self::send) and read the answer as JSON.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<T> {
        let response = self.send(method, route, query, body).await?;
        read_json(route, response).await
    }

    /// What the server says about itself (`GET /`, unsigned).
    pub async fn server_version(&self) -> Result<ServerVersion> {
        let url = self.url("/", &[])?;
        let response = self.inner.http.get(url.clone()).send().await.map_err(|e| unreachable(&url, &e))?;
        let response = check("GET", &url, response).await?;
        read_json("/", response).await
    }

    /// Runs a GraphQL query or mutation (`POST /admin/gql`) and returns its `data`. Errors the
    /// server lists become [`Error::GraphQl`].
    pub async fn graphql(&self, query: &str, variables: Value) -> Result<Value> {
        let body = json!({ "query": query, "variables": variables });
        let mut answer: Value = self.send_json(Method::POST, "/admin/gql", &[], Body::Json(body)).await?;
        let errors: Vec<GraphQlError> = answer
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| GraphQlError {
                        message: e["message"].as_str().unwrap_or("(no message)").to_string(),
                        path: e["path"]
                            .as_array()
                            .map(|p| {
                                p.iter().map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string)).collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !errors.is_empty() {
            return Err(Error::GraphQl { errors });
        }
        Ok(answer.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }

    /// The HTTP client, for side channels that are not signed (storage tokens).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
}

/// Backoff before retry `attempt` (0-based): `Retry-After` when given (at most 60 s), else
/// 0.5 s doubling up to 8 s.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    retry_after
        .map(|d| d.min(Duration::from_secs(60)))
        .unwrap_or_else(|| Duration::from_millis(500u64.saturating_mul(1 << attempt.min(4))))
}

pub(crate) fn unreachable(url: &Url, e: &reqwest::Error) -> Error {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    let mut shown = url.clone();
    shown.set_query(None);
    Error::Unreachable { url: shown.to_string(), reason }
}

/// Turns an error status into [`Error::Api`] with the server's problem details.
pub(crate) async fn check(method: &str, url: &Url, response: Response) -> Result<Response> {
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    Err(Error::Api {
        status: status.as_u16(),
        method: method.to_string(),
        path: url.path().to_string(),
        problem: Box::new(Problem::from_body(&body)),
    })
}

pub(crate) async fn read_json<T: DeserializeOwned>(what: &str, response: Response) -> Result<T> {
    let bytes = response.bytes().await.map_err(|e| protocol(what, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes);
        protocol(what, format!("{e} in {}", text.chars().take(300).collect::<String>()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_official_client() {
        // The vector of spec client-wire §4.4, through the client's own header builder.
        let config =
            Config::new("http://127.0.0.1:8081", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
                .unwrap();
        let client = Client::new(config).unwrap();
        let url = client.url("/events/session", &[("sessionName", "mysess01".into())]).unwrap();
        assert_eq!(&url[url::Position::BeforePath..], "/events/session?sessionName=mysess01");
        let headers = client.signed_headers(&Method::GET, &url, None).unwrap();
        let auth = headers["authorization"].to_str().unwrap();
        assert!(auth.starts_with("BackendAI signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE:"), "{auth}");
        let request = RequestToSign {
            method: "GET",
            path_and_query: "/events/session?sessionName=mysess01",
            date: headers["date"].to_str().unwrap(),
            host: "127.0.0.1:8081",
            content_type: "application/octet-stream",
            api_version: API_VERSION,
        };
        let signature = auth.rsplit(':').next().unwrap();
        assert!(signing::verify("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &request, signature).unwrap());
    }

    #[test]
    fn routes_keep_the_endpoint_prefix_and_escape_names() {
        let client = Client::new(Config::new("https://example.com/api/", "", "").unwrap()).unwrap();
        let url = client.url(&format!("/session/{}", seg("my session/x")), &[("forced", "true".into())]).unwrap();
        assert_eq!(url.as_str(), "https://example.com/api/session/my%20session%2Fx?forced=true");
        // anonymous: nothing signed
        assert!(!client.signed_headers(&Method::GET, &url, None).unwrap().contains_key("authorization"));
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert_eq!(backoff(0, None), Duration::from_millis(500));
        assert_eq!(backoff(2, None), Duration::from_secs(2));
        assert_eq!(backoff(10, None), Duration::from_secs(8));
        assert_eq!(backoff(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(backoff(0, Some(Duration::from_secs(3600))), Duration::from_secs(60));
    }

    #[test]
    fn a_keypair_needs_both_halves() {
        let err = Client::new(Config::new("http://x", "AKIAIOSFODNN7EXAMPLE", "").unwrap()).unwrap_err();
        assert!(err.to_string().contains("BACKEND_SECRET_KEY"), "{err}");
    }
}
