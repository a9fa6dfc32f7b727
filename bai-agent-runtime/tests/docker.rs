//! A real Docker Engine is reachable through bollard and speaks API 1.41 (Docker 20.10) or
//! newer. `scripts/test` starts one (or reuses a working one) and sets `BAI_TEST_DOCKER_HOST`.

use std::time::Duration;

use bollard::{Docker, API_DEFAULT_VERSION};

use bai_test_support::service_env;

/// Parses "1.41" into (1, 41).
fn api_version(text: &str) -> (u64, u64) {
    let parse = |part: Option<&str>| part.and_then(|p| p.trim().parse().ok());
    let mut parts = text.split('.');
    match (parse(parts.next()), parse(parts.next())) {
        (Some(major), Some(minor)) => (major, minor),
        _ => panic!("unparsable Docker API version {text:?}"),
    }
}

/// Connects to `host` (`unix:///path`, a bare socket path, or `tcp://`/`http://`) and negotiates
/// the API version down to the engine's.
async fn connect(host: &str) -> Docker {
    let docker = if let Some(addr) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
        Docker::connect_with_http(&format!("http://{addr}"), 120, API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_unix(host.strip_prefix("unix://").unwrap_or(host), 120, API_DEFAULT_VERSION)
    }
    .unwrap_or_else(|err| panic!("cannot connect to Docker at {host}: {err}"));
    match tokio::time::timeout(Duration::from_secs(30), docker.negotiate_version()).await {
        Ok(Ok(docker)) => docker,
        Ok(Err(err)) => panic!("Docker at {host} is unreachable (version negotiation failed): {err}"),
        Err(_) => panic!("Docker at {host} did not answer within 30 s"),
    }
}

#[tokio::test]
async fn docker_engine_is_reachable() {
    let Some(host) = service_env("BAI_TEST_DOCKER_HOST") else { return };
    let docker = connect(&host).await;

    let pong = docker.ping().await.unwrap_or_else(|err| panic!("ping to Docker at {host} failed: {err}"));
    assert_eq!(pong, "OK", "unexpected /_ping answer");

    let version = docker.version().await.unwrap_or_else(|err| panic!("GET /version on {host} failed: {err}"));
    let engine = version.version.clone().unwrap_or_default();
    let api = version.api_version.clone().unwrap_or_default();
    assert!(!engine.trim().is_empty(), "engine version is empty: {version:?}");
    assert!(!api.trim().is_empty(), "API version is empty: {version:?}");
    assert!(api_version(&api) >= (1, 41), "Docker API {api} is older than 1.41 (engine {engine})");

    // The client talks the engine's API version (or its own, if that is older).
    let client = docker.client_version();
    let negotiated = (client.major_version as u64, client.minor_version as u64);
    assert!(negotiated <= api_version(&api), "client API {negotiated:?} is newer than the engine's {api}");
    assert!(negotiated >= (1, 41), "negotiated API {negotiated:?} is older than 1.41");
    eprintln!("Docker Engine {engine}, API {api}, client speaks {}.{}", negotiated.0, negotiated.1);
}
