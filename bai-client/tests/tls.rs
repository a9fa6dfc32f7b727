//! The SDK against a manager serving TLS with a certificate no public CA signed: refused by
//! default, trusted through `ca_file` (`BACKEND_CA_FILE`) for HTTP and for the WebSocket that
//! runs code, accepted without verification under `skip_ssl_verification`; a bad CA file is a
//! configuration error naming the variable.

use std::time::Duration;

use bai_client::{Client, Config, Error, SessionSpec};
use bai_manager::local::{self, LocalManager, EXAMPLE_USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_for_http_and_websockets() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (cert, key, ca) = (dir.path().join("api.crt"), dir.path().join("api.key"), dir.path().join("ca.pem"));
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.key_pair.serialize_pem()).unwrap();
    std::fs::write(&ca, pair.cert.pem()).unwrap();
    let (mut config, agent) = local::configs(dir.path());
    config.manager.ssl_enabled = true;
    config.manager.ssl_cert = Some(cert);
    config.manager.ssl_privkey = Some(key);
    let local = LocalManager::start_with(config, agent).await.unwrap();
    let endpoint = local.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let base = || {
        let mut c = Config::new(&endpoint, EXAMPLE_USER.0, EXAMPLE_USER.1).unwrap();
        c.max_retries = 0;
        c.connection_timeout = Duration::from_secs(10);
        c
    };

    // The public roots alone do not trust it.
    let err = Client::new(base()).unwrap().list_vfolders().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");

    // With the CA: HTTP calls, a session, and code through the execute WebSocket.
    let mut trusting = base();
    trusting.ca_file = Some(ca.clone());
    let user = Client::new(trusting).unwrap();
    assert!(user.list_vfolders().await.unwrap().is_empty());
    let spec = SessionSpec::new("host").name("tls-1").resource("cpu", "1").resource("mem", "256");
    let created = tokio::time::timeout(Duration::from_secs(60), user.create_session(&spec)).await.unwrap().unwrap();
    assert_eq!(created.status, "RUNNING", "{created:?}");
    assert_eq!(user.run_code("tls-1", "print('over tls')").await.unwrap().stdout, "over tls\n");

    // Without verification (the official client's BACKEND_SKIP_SSLCERT_VALIDATION), the
    // WebSocket connects too.
    let mut skipping = base();
    skipping.skip_ssl_verification = true;
    let careless = Client::new(skipping).unwrap();
    assert_eq!(careless.run_code("tls-1", "print(6*7)").await.unwrap().stdout, "42\n");
    user.destroy_session("tls-1", false).await.unwrap();

    // A CA file that is not one names the variable.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    for path in [junk, dir.path().join("missing.pem")] {
        let mut bad = base();
        bad.ca_file = Some(path.clone());
        match Client::new(bad) {
            Err(Error::Config { field, reason }) => assert_eq!(field, "BACKEND_CA_FILE", "{path:?}: {reason}"),
            other => panic!("{path:?}: {other:?}"),
        }
    }
    local.shutdown().await;
}
