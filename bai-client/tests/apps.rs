//! Apps (services) inside sessions, end to end on Docker: the kernel image declares an HTTP
//! server and a TCP echo server; the SDK lists them, forwards local ports to them through the
//! manager's `tcpproxy` WebSocket (the agent starts each on first use), opens a browser link;
//! another user cannot reach them, and the ports go when the session ends. Needs
//! `BAI_TEST_DOCKER_HOST` and `BAI_TEST_KERNEL_IMAGE` (scripts/test sets them).

use std::time::Duration;

use bai_agent::config::ContainerBackend;
use bai_client::{AppOptions, Client, Config, SessionSpec};
use bai_manager::local::{self, LocalManager, EXAMPLE_ADMIN, EXAMPLE_USER};
use bai_test_support::{service_env, AgentContainers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A local port forwarded to `app` of `session`, served in the background.
async fn forward(client: &Client, session: &str, app: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, session, app) = (client.clone(), session.to_string(), app.to_string());
    let task = tokio::spawn(async move {
        client.forward_app(&session, &app, &AppOptions::default(), listener).await.unwrap();
    });
    (addr, task)
}

async fn echo_round_trip(addr: std::net::SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(60), conn.read_exact(&mut back)).await.unwrap().unwrap();
    back
}

/// The ports of the agent's range (23300–23319) that accept connections.
async fn published() -> Vec<u16> {
    let mut open = Vec::new();
    for port in 23300..=23319 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            open.push(port);
        }
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_reached_through_the_manager_by_their_owner_only() {
    let (Some(docker), Some(image)) = (service_env("BAI_TEST_DOCKER_HOST"), service_env("BAI_TEST_KERNEL_IMAGE"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, mut agent) = local::configs(dir.path());
    agent.agent.id = format!("i-apps-{}", std::process::id());
    agent.container.backend = ContainerBackend::Docker;
    agent.container.docker_host = docker.clone();
    agent.container.port_range = [23300, 23319];
    let _containers = AgentContainers { docker, agent: agent.agent.id.clone() };
    let local = LocalManager::start_with(config, agent).await.unwrap();
    let user = Client::new(Config::new(&local.endpoint(), EXAMPLE_USER.0, EXAMPLE_USER.1).unwrap()).unwrap();
    let admin = Client::new(Config::new(&local.endpoint(), EXAMPLE_ADMIN.0, EXAMPLE_ADMIN.1).unwrap()).unwrap();

    let mut spec = SessionSpec::new(&image).name("apps-1").resource("cpu", "1").resource("mem", "256m");
    spec.max_wait_seconds = 120;
    assert_eq!(user.create_session(&spec).await.unwrap().status, "RUNNING");

    // The image's apps, as `backend.ai apps` reads them.
    let apps = user.apps("apps-1").await.unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["http-server", "echo"], "{apps:?}");
    assert_eq!(apps[0].protocol, "http");
    assert_eq!(apps[0].ports, [8000]);
    assert_eq!(apps[0].url_template.as_deref(), Some("http://{host}:{port}/"));
    assert_eq!(apps[0].allowed_arguments, ["--directory"]);
    assert_eq!((apps[1].protocol.as_str(), apps[1].ports.as_slice()), ("tcp", &[7000][..]));

    // The TCP echo service, started on the first connection; two connections at once.
    let (echo, echo_task) = forward(&user, "apps-1", "echo").await;
    let (a, b) = tokio::join!(echo_round_trip(echo, b"hello through the manager"), echo_round_trip(echo, b"second"));
    assert_eq!((a.as_slice(), b.as_slice()), (&b"hello through the manager"[..], &b"second"[..]));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo_round_trip(echo, &big).await, big, "300 kB echo back intact");

    // The HTTP server serves the session's /home/work.
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello from the kernel").unwrap();
    user.upload_to_session("apps-1", &[(file.clone(), "hello.txt".into())]).await.unwrap();
    let (web, web_task) = forward(&user, "apps-1", "http-server").await;
    let body = reqwest::get(format!("http://{web}/hello.txt")).await.unwrap().text().await.unwrap();
    assert_eq!(body, "hello from the kernel");

    // A browser link works without signing, for HTTP apps only; a forged token does not.
    let link = user.app_link("apps-1", "http-server", &AppOptions::default()).await.unwrap();
    assert!(link.url.starts_with(&format!("{}/app-proxy/", local.endpoint())), "{link:?}");
    let response = reqwest::get(format!("{}hello.txt", link.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    // The app's pages run sandboxed, in an opaque origin: never as the console's origin.
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.starts_with("sandbox ") && !csp.contains("allow-same-origin"), "{csp}");
    assert_eq!(response.text().await.unwrap(), "hello from the kernel");
    let forged = format!("{}/app-proxy/7b7d.00/hello.txt", local.endpoint());
    assert_eq!(reqwest::get(forged).await.unwrap().status(), 403);
    let err = user.app_link("apps-1", "echo", &AppOptions::default()).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // Wrong app, refused arguments, someone else's session.
    let no_app = user
        .app_tunnel("apps-1", "jupyter", &AppOptions::default(), TcpStream::connect(echo).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(no_app.status(), Some(404), "{no_app}");
    assert!(no_app.to_string().contains("jupyter"), "{no_app}");
    let mut evil = AppOptions::default();
    evil.arguments.insert("--cgi".into(), serde_json::Value::Null);
    let err = user.app_link("apps-1", "http-server", &evil).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("--cgi"), "{err}");
    let foreign = admin.apps("apps-1").await.unwrap_err();
    assert_eq!(foreign.status(), Some(404), "another user (even an admin) does not see the apps: {foreign}");
    let foreign = admin.app_link("apps-1", "http-server", &AppOptions::default()).await.unwrap_err();
    assert_eq!(foreign.status(), Some(404), "{foreign}");

    // The session ends: its link stops working and its host ports are free again.
    assert_eq!(published().await.len(), 2, "the two apps' host ports are published");
    user.destroy_session("apps-1", true).await.unwrap();
    let gone = reqwest::get(format!("{}hello.txt", link.url)).await.unwrap();
    assert_eq!(gone.status(), 404, "the link of an ended session");
    assert_eq!(published().await, Vec::<u16>::new(), "the host ports are released");
    echo_task.abort();
    web_task.abort();
    local.shutdown().await;
}
