//! TLS on the API listener (`[manager] ssl-enabled`): a manager started with a self-signed
//! certificate answers `GET /` and signed requests over HTTPS, refuses plain HTTP on the same
//! port without stopping, upgrades WebSockets over TLS and shuts down gracefully; a bad
//! certificate or a missing file setting stops the start with an error naming it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
use axum::routing::get;
use axum::Router;
use bai_core::signing::{self, API_VERSION};
use bai_manager::server::StartError;
use futures::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A self-signed certificate for `127.0.0.1` and `localhost`, written to `dir`: (cert, key, PEM).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf, String) {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let pem = pair.cert.pem();
    let cert = dir.join("api.crt");
    let key = dir.join("api.key");
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, pair.key_pair.serialize_pem()).unwrap();
    (cert, key, pem)
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A signed `GET` over `client` as the official client signs it.
async fn signed_get(client: &reqwest::Client, addr: SocketAddr, key: (&str, &str), path: &str) -> reqwest::Response {
    signed(client, addr, key, "GET", path, None).await
}

/// A signed request with an optional JSON body.
async fn signed(
    client: &reqwest::Client,
    addr: SocketAddr,
    key: (&str, &str),
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let host = addr.to_string();
    let date = signing::format_request_date(chrono::Utc::now());
    let authorization = common::authorization(method, path, &host, &date, key);
    let mut request = client.request(method.parse().unwrap(), format!("https://{host}{path}"));
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    request
        .header("date", date)
        .header("x-backendai-version", API_VERSION)
        .header("content-type", "application/json")
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path());
    let (mut config, agent) = bai_manager::local::configs(dir.path());
    config.manager.ssl_enabled = true;
    config.manager.ssl_cert = Some(cert);
    config.manager.ssl_privkey = Some(key);
    let running = bai_manager::local::LocalManager::start_with(config, agent).await.unwrap();
    let addr = running.api_addr;
    assert!(running.api_tls);
    assert_eq!(running.endpoint(), format!("https://{addr}"));

    let client = https_client(&pem);
    let version = client.get(format!("https://{addr}/")).send().await.unwrap();
    assert_eq!(version.status(), 200);
    let body: serde_json::Value = version.json().await.unwrap();
    assert_eq!(body["version"], "v7.20230615");
    assert_eq!(body["manager"], bai_manager::VERSION);

    // Plain HTTP on the TLS port gets no HTTP answer: the handshake fails and the connection closes.
    let plain = reqwest::Client::new().get(format!("http://{addr}/")).timeout(Duration::from_secs(20)).send().await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // A client that does not trust the certificate is refused too.
    let untrusting = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let refused = untrusting.get(format!("https://{addr}/")).send().await;
    assert!(refused.is_err(), "an untrusted certificate was accepted: {refused:?}");

    // Neither failure disturbed the listener; signed requests work over TLS.
    let me = signed_get(&client, addr, common::USER, "/bai/whoami").await;
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["access_key"], common::USER.0);
    let anonymous = client
        .get(format!("https://{addr}/bai/whoami"))
        .header("date", signing::format_request_date(chrono::Utc::now()))
        .header("x-backendai-version", API_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // The storage side channel's URLs name this listener's scheme: https, not http.
    let made =
        signed(&client, addr, common::USER, "POST", "/folders", Some(serde_json::json!({"name": "tls-data"}))).await;
    assert!(made.status().is_success(), "{}", made.text().await.unwrap());
    let body = serde_json::json!({"path": "a.txt", "size": 2});
    let grant = signed(&client, addr, common::USER, "POST", "/folders/tls-data/request-upload", Some(body)).await;
    assert_eq!(grant.status(), 200);
    let grant: serde_json::Value = grant.json().await.unwrap();
    let url = grant["url"].as_str().unwrap();
    assert_eq!(url, format!("https://{addr}/storage/upload"));
    let token = grant["token"].as_str().unwrap();
    let uploaded = client
        .patch(format!("{url}?token={token}"))
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 204);
    // The web console's cookie is marked Secure on a TLS listener.
    let login = client
        .post(format!("https://{addr}/console/login"))
        .header("x-backendai-console", "1")
        .header("content-type", "application/json")
        .body(serde_json::json!({"access_key": common::USER.0, "secret_key": common::USER.1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    running.shutdown().await;
    let after = client.get(format!("https://{addr}/")).send().await;
    assert!(after.is_err(), "the API still answers after shutdown: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_upgrade_over_tls_and_shutdown_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path());
    let tls = bai_manager::tls::server_config(&cert, &key).unwrap();
    let app = Router::new().route(
        "/echo",
        get(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                while let Some(Ok(msg)) = socket.recv().await {
                    if let WsMessage::Text(text) = msg {
                        if socket.send(WsMessage::Text(format!("echo {}", text.as_str()).into())).await.is_err() {
                            break;
                        }
                    }
                }
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bai_manager::api::serve_tls(listener, tls, app, async {
        let _ = stopped.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(format!("wss://localhost:{}/echo", addr.port()), stream)
        .await
        .expect("WebSocket handshake over TLS");
    assert_eq!(response.status(), 101);
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello")).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "echo hello");
    ws.close(None).await.unwrap();

    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(20), server).await.expect("serve_tls ends after shutdown");
    result.unwrap().unwrap();
    // The listener lives in the accept task, which the serve loop's end aborts: the port
    // closes as soon as that task is cancelled, a moment after `serve_tls` returns.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the port still accepts 5 s after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_tls_settings_stop_the_start_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, agent) = bai_manager::local::configs(dir.path());
    config.manager.ssl_enabled = true;
    config.manager.ssl_privkey = Some(dir.path().join("api.key"));
    let err = bai_manager::local::LocalManager::start_with(config.clone(), agent.clone()).await.unwrap_err();
    assert!(matches!(&err, StartError::Config(e) if e.field == "manager.ssl-cert"), "{err}");

    let garbage = dir.path().join("api.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    config.manager.ssl_cert = Some(garbage.clone());
    let err = bai_manager::local::LocalManager::start_with(config, agent).await.unwrap_err();
    match &err {
        StartError::Tls(e) => assert_eq!(e.path, garbage),
        other => panic!("expected a TLS error, got {other}"),
    }
    assert!(err.to_string().starts_with(&format!("TLS: {}: no certificate", garbage.display())), "{err}");
    // Nothing was started: the database was never created.
    assert!(!dir.path().join("manager.db").exists());
}
