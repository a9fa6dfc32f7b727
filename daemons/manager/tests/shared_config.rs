//! The cluster's shared configuration against the real etcd (`BAI_TEST_ETCD_ENDPOINTS`, one
//! namespace per test) and its TOML-file stand-in: `config/` keys read, the manager's key under
//! `nodes/manager/<id>` while it runs (gone after shutdown or lease expiry), storage hosts
//! under `volumes/` applied live to a running manager, and a watch that survives etcd going
//! away and coming back.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bai_manager::local::{configs, LocalManager};
use bai_manager::shared_config::{keys, ManagerNode, SharedConfig, Snapshot};
use bai_test_support::service_env;
use serde_json::{json, Value};
use tokio::sync::watch;

use common::{Reply, ADMIN, USER};

/// A fixed port for the cuttable etcd proxy (this test's range is 23740–23759).
const PROXY_PORT: u16 = 23741;

fn endpoints() -> Option<Vec<String>> {
    let raw = service_env("BAI_TEST_ETCD_ENDPOINTS")?;
    Some(raw.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect())
}

fn namespace(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

/// A plain etcd client, and the namespace's prefix deleted when the test is done.
struct Etcd {
    client: etcd_client::Client,
    prefix: String,
}

impl Etcd {
    async fn new(endpoints: &[String], ns: &str) -> Self {
        let client = tokio::time::timeout(Duration::from_secs(10), etcd_client::Client::connect(endpoints, None))
            .await
            .expect("etcd answers within 10 s")
            .expect("connect to etcd");
        Self { client, prefix: format!("/bai/{ns}/") }
    }

    async fn put(&self, key: &str, value: &str) {
        self.client.clone().put(format!("{}{key}", self.prefix), value, None).await.expect("etcd put");
    }

    async fn delete(&self, key: &str) {
        let options = etcd_client::DeleteOptions::new().with_prefix();
        self.client.clone().delete(format!("{}{key}", self.prefix), Some(options)).await.expect("etcd delete");
    }

    async fn get(&self, key: &str) -> Option<String> {
        let reply = self.client.clone().get(format!("{}{key}", self.prefix), None).await.expect("etcd get");
        reply.kvs().first().map(|kv| kv.value_str().unwrap().to_string())
    }

    async fn cleanup(self) {
        let options = etcd_client::DeleteOptions::new().with_prefix();
        let _ = self.client.clone().delete(self.prefix.as_str(), Some(options)).await;
    }
}

/// Waits (up to 30 s) until `f` of the current snapshot holds.
async fn until(rx: &mut watch::Receiver<Arc<Snapshot>>, what: &str, f: impl Fn(&Snapshot) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| f(s))).await;
    assert!(waited.is_ok_and(|r| r.is_ok()), "{what}: not seen within 30 s; now {:?}", *rx.borrow());
}

/// Polls `probe` every 50 ms (up to 30 s) until it gives `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    for _ in 0..600 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 30 s");
}

async fn call(addr: SocketAddr, key: (&str, &str), method: &str, path: &str, body: Option<Value>) -> Reply {
    common::request(addr, Some(key), method, path, body.as_ref()).await
}

async fn hosts(addr: SocketAddr) -> Value {
    let r = call(addr, USER, "GET", "/folders/_/hosts", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn wait_for_hosts(addr: SocketAddr, want: Value) {
    eventually(&format!("list-hosts allows {want}"), || {
        let want = want.clone();
        async move { (hosts(addr).await["allowed"] == want).then_some(()) }
    })
    .await
}

async fn create(addr: SocketAddr, name: &str, host: &str) -> Reply {
    call(addr, USER, "POST", "/folders", Some(json!({"name": name, "host": host}))).await
}

#[tokio::test]
async fn etcd_config_keys_are_read_and_watched() {
    let Some(endpoints) = endpoints() else { return };
    let ns = namespace("keys");
    let etcd = Etcd::new(&endpoints, &ns).await;
    etcd.put(keys::REDIS_ADDR, "10.1.2.3:6379").await;
    etcd.put(keys::AGENT_RPC_TOKEN, "tok-from-etcd\n").await;
    etcd.put("config/docker/registry/cr.example.com", "https://cr.example.com").await;
    let shared = SharedConfig::etcd(&endpoints, &ns).await.expect("shared configuration from etcd");
    assert!(shared.is_etcd());
    let global = shared.global();
    assert_eq!(global.redis_url.as_deref(), Some("redis://10.1.2.3:6379/4"));
    assert_eq!(global.agent_rpc_token.as_deref(), Some("tok-from-etcd"));
    assert_eq!(global.watcher_token, None);
    let registries: Vec<(String, String)> =
        shared.current().under("config/docker/registry/").map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(registries, vec![("cr.example.com".to_string(), "https://cr.example.com".to_string())]);

    // Changes arrive through the watch, and a derived view follows them.
    let mut redis = shared.derive(|s| bai_manager::shared_config::GlobalConfig::from_snapshot(s).redis_url);
    let mut snapshots = shared.subscribe();
    etcd.put(keys::REDIS_URL, "redis://elsewhere:6380/2").await;
    etcd.delete("config/docker/registry/").await;
    until(&mut snapshots, "the deleted registry", |s| s.under("config/docker/registry/").next().is_none()).await;
    redis.wait_for(|u| u.as_deref() == Some("redis://elsewhere:6380/2")).await.unwrap();
    // Writes go to etcd.
    shared.put("config/watcher/token", "w").await.unwrap();
    assert_eq!(etcd.get("config/watcher/token").await.as_deref(), Some("w"));
    shared.close();
    etcd.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_etcd_is_named() {
    let mut config = configs(std::path::Path::new("/nonexistent")).0;
    // Nothing listens on port 1.
    config.etcd.endpoints = vec!["http://127.0.0.1:1".into()];
    let err = SharedConfig::connect(&config.etcd).await.unwrap_err();
    assert_eq!(err.field, "etcd.endpoints");
    assert!(err.reason.contains("127.0.0.1:1"), "{err}");
    config.etcd.endpoints.clear();
    config.etcd.fallback_file = Some("/nonexistent/shared.toml".into());
    let err = SharedConfig::connect(&config.etcd).await.unwrap_err();
    assert_eq!(err.field, "etcd.fallback-file");
    assert!(err.reason.contains("/nonexistent/shared.toml"), "{err}");
}

#[tokio::test]
async fn the_manager_is_registered_while_it_runs() {
    let Some(endpoints) = endpoints() else { return };
    let ns = namespace("node");
    let etcd = Etcd::new(&endpoints, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut config, agent) = configs(dir.path());
    config.etcd.endpoints = endpoints.clone();
    config.etcd.namespace = ns.clone();
    config.manager.id = "mgr-a".into();
    let local = LocalManager::start_with(config, agent).await.expect("manager with etcd");
    assert_eq!(etcd.get("nodes/manager/mgr-a").await.as_deref(), Some("up"));
    assert_eq!(etcd.get("nodes/manager/mgr-a/api").await, Some(local.endpoint()));
    assert_eq!(etcd.get("nodes/manager/mgr-a/version").await.as_deref(), Some(bai_manager::VERSION));
    local.shutdown().await;
    assert_eq!(etcd.get("nodes/manager/mgr-a").await, None);
    assert_eq!(etcd.get("nodes/manager/mgr-a/api").await, None);
    etcd.cleanup().await;
}

#[tokio::test]
async fn a_dead_managers_key_goes_with_its_lease() {
    let Some(endpoints) = endpoints() else { return };
    let ns = namespace("lease");
    let etcd = Etcd::new(&endpoints, &ns).await;
    let shared = SharedConfig::etcd(&endpoints, &ns).await.unwrap();
    let node = ManagerNode { id: "mgr-dead".into(), api: "http://127.0.0.1:1".into(), version: "0".into() };
    let registration = shared.register_manager(node, Duration::from_secs(3)).await.unwrap();
    assert_eq!(etcd.get("nodes/manager/mgr-dead").await.as_deref(), Some("up"));
    // Kept alive past a lease period (renewed every second)...
    let mut snapshots = shared.subscribe();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(etcd.get("nodes/manager/mgr-dead").await.as_deref(), Some("up"));
    // ...and gone once nobody renews the lease (the watch sees the deletion too).
    registration.abandon();
    until(&mut snapshots, "the expired manager key", |s| s.get("nodes/manager/mgr-dead").is_none()).await;
    assert_eq!(etcd.get("nodes/manager/mgr-dead/api").await, None);
    shared.close();
    etcd.cleanup().await;
}

/// The storage hosts of a running manager follow its shared configuration; `change` edits it.
async fn hosts_follow_the_configuration<C, F>(local: &LocalManager, root: &std::path::Path, change: C)
where
    C: Fn(&'static str) -> F,
    F: std::future::Future<Output = ()>,
{
    let addr = local.api_addr;
    let h = hosts(addr).await;
    assert_eq!((h["default"].clone(), h["allowed"].clone()), (json!("local:volume1"), json!(["local:volume1"])));
    let refused = create(addr, "early", "local:volume2").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.json()["msg"].as_str().unwrap().starts_with("host: unknown storage host"), "{}", refused.body);

    // A host appears and takes folders, in its own directory.
    change("add").await;
    wait_for_hosts(addr, json!(["local:volume1", "local:volume2"])).await;
    assert!(hosts(addr).await["volume_info"]["local:volume2"].is_object());
    let made = create(addr, "on-two", "local:volume2").await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.json()["host"], "local:volume2");
    let id = made.json()["id"].as_str().unwrap().to_string();
    assert!(root.join("volume2").join(&id).is_dir());
    let mkdir = call(addr, USER, "POST", "/folders/on-two/mkdir", Some(json!({"path": "sub"}))).await;
    assert_eq!(mkdir.status, 201, "{}", mkdir.body);
    assert!(root.join("volume2").join(&id).join("sub").is_dir());
    let old = create(addr, "on-one", "local:volume1").await;
    assert_eq!(old.status, 201, "{}", old.body);

    // The default moves: a folder without a host goes to it.
    change("default").await;
    eventually("the new default host", || async { (hosts(addr).await["default"] == "local:volume2").then_some(()) })
        .await;
    let by_default = call(addr, USER, "POST", "/folders", Some(json!({"name": "by-default"}))).await;
    assert_eq!(by_default.status, 201, "{}", by_default.body);
    assert_eq!(by_default.json()["host"], "local:volume2");

    // Removed: no new folders, and the existing ones' files are refused naming the host, while
    // their records stay.
    change("remove").await;
    wait_for_hosts(addr, json!(["local:volume1"])).await;
    assert_eq!(hosts(addr).await["default"], "local:volume1");
    let refused = create(addr, "late", "local:volume2").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("local:volume2"), "{}", refused.body);
    let files = call(addr, USER, "GET", "/folders/on-two/files", None).await;
    assert_eq!(files.status, 400, "{}", files.body);
    assert!(files.json()["type"].as_str().unwrap().ends_with("/vfolder-operation-failed"), "{}", files.body);
    assert!(files.body.contains("local:volume2"), "{}", files.body);
    let delete = call(addr, USER, "DELETE", "/folders/on-two", None).await;
    assert_eq!(delete.status, 400, "{}", delete.body);
    assert!(root.join("volume2").join(&id).is_dir());
    let info = call(addr, USER, "GET", "/folders/on-two", None).await;
    assert_eq!(info.status, 200, "{}", info.body);
    let list = call(addr, ADMIN, "GET", "/folders?all=true", None).await;
    assert!(list.body.contains("on-two"), "{}", list.body);
    // The default host's folders are untouched.
    let files = call(addr, USER, "GET", "/folders/on-one/files", None).await;
    assert_eq!(files.status, 200, "{}", files.body);

    // Defined again: the folder works again.
    change("add").await;
    wait_for_hosts(addr, json!(["local:volume1", "local:volume2"])).await;
    let files = call(addr, USER, "GET", "/folders/on-two/files", None).await;
    assert_eq!(files.status, 200, "{}", files.body);
    assert!(files.body.contains("sub"), "{}", files.body);
}

#[tokio::test]
async fn volume_hosts_in_etcd_apply_to_a_running_manager() {
    let Some(endpoints) = endpoints() else { return };
    let ns = namespace("volumes");
    let etcd = Etcd::new(&endpoints, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut config, agent) = configs(dir.path());
    config.etcd.endpoints = endpoints.clone();
    config.etcd.namespace = ns.clone();
    let root = config.storage.root.clone();
    let local = LocalManager::start_with(config, agent).await.expect("manager with etcd");
    let etcd = Arc::new(etcd);
    let e = etcd.clone();
    hosts_follow_the_configuration(&local, &root, move |what| {
        let e = e.clone();
        async move {
            match what {
                "add" => e.put("volumes/hosts/local:volume2/path", "volume2").await,
                "default" => e.put(keys::DEFAULT_HOST, "local:volume2").await,
                _ => e.delete("volumes/").await,
            }
        }
    })
    .await;
    local.shutdown().await;
    if let Ok(etcd) = Arc::try_unwrap(etcd) {
        etcd.cleanup().await;
    }
}

#[tokio::test]
async fn a_toml_file_stands_in_for_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.toml");
    std::fs::write(&file, "[config.agent]\nrpc-token = \"from-the-file\"\n").unwrap();
    let (mut config, agent) = configs(dir.path());
    config.etcd.fallback_file = Some(file.clone());
    config.etcd.fallback_poll_interval = 0.05;
    config.manager.id = "mgr-file".into();
    // The agents' token comes from the file (the all-in-one agent is given the manager's).
    config.agent_rpc.token = None;
    let root = config.storage.root.clone();
    let local = LocalManager::start_with(config, agent).await.expect("manager with a fallback file");
    assert_eq!(local.shared.global().agent_rpc_token.as_deref(), Some("from-the-file"));
    assert!(local.shared.source().starts_with("file "), "{}", local.shared.source());
    // Nothing is registered in a file, and it is not written to.
    assert_eq!(local.shared.current().get("nodes/manager/mgr-file"), None);
    assert!(local.shared.put("config/x", "y").await.unwrap_err().to_string().contains("edit the file"));
    let base = "[config.agent]\nrpc-token = \"from-the-file\"\n";
    let f = file.clone();
    hosts_follow_the_configuration(&local, &root, move |what| {
        let text = match what {
            "add" => format!("{base}[volumes.hosts.\"local:volume2\"]\npath = \"volume2\"\n"),
            "default" => format!(
                "{base}[volumes]\ndefault_host = \"local:volume2\"\n[volumes.hosts.\"local:volume2\"]\npath = \"volume2\"\n"
            ),
            _ => base.to_string(),
        };
        let f = f.clone();
        async move {
            // A broken edit in between is ignored: the last good configuration stays.
            std::fs::write(&f, "[volumes\n").unwrap();
            tokio::time::sleep(Duration::from_millis(120)).await;
            std::fs::write(&f, text).unwrap();
        }
    })
    .await;
    local.shutdown().await;
}

/// A TCP proxy on [`PROXY_PORT`] to `target` that can be cut (listener and connections) and
/// started again, standing in for etcd going away and coming back.
struct Proxy {
    target: SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let proxy = Self { target, tasks: Arc::default() };
        proxy.open().await;
        proxy
    }

    async fn open(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", PROXY_PORT)).await.expect("bind the proxy port");
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test]
async fn the_watch_comes_back_after_etcd_does() {
    let Some(endpoints) = endpoints() else { return };
    let ns = namespace("reconnect");
    let etcd = Etcd::new(&endpoints, &ns).await;
    let target: SocketAddr = {
        let first = endpoints[0].trim_start_matches("http://");
        tokio::net::lookup_host(first).await.unwrap().next().unwrap()
    };
    let proxy = Proxy::start(target).await;
    let via_proxy = vec![format!("http://127.0.0.1:{PROXY_PORT}")];
    let shared = SharedConfig::etcd(&via_proxy, &ns).await.expect("etcd through the proxy");
    let mut snapshots = shared.subscribe();
    etcd.put("config/a", "1").await;
    until(&mut snapshots, "config/a = 1", |s| s.get("config/a") == Some("1")).await;

    // etcd goes away; a change made meanwhile is seen once it is back.
    proxy.cut();
    etcd.put("config/a", "2").await;
    etcd.put("volumes/hosts/local:volume2/path", "v2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.open().await;
    until(&mut snapshots, "the changes made while etcd was away", |s| {
        s.get("config/a") == Some("2") && s.get("volumes/hosts/local:volume2/path") == Some("v2")
    })
    .await;
    // And the watch keeps working.
    etcd.put("config/a", "3").await;
    until(&mut snapshots, "config/a = 3", |s| s.get("config/a") == Some("3")).await;
    shared.close();
    proxy.cut();
    etcd.cleanup().await;
}
