//! Container registries against Debian's real registry (`/usr/bin/docker-registry`, the CNCF
//! distribution; scripts/test installs the `docker-registry` package): images pushed over the
//! Docker Registry HTTP API v2 reach the image list through `rescan_images`, whose background
//! task the test follows over `GET /events/background-task`; a registry behind basic auth
//! (htpasswd, bcrypt) is scanned with the right credentials and fails the task with the wrong
//! ones; aliases name images for session creation, and a domain's
//! `allowed_docker_registries` keeps other registries' images out.
//!
//! Fixed ports: 23700 (open registry) and 23701 (registry with basic auth).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bai_manager::config::RegistrySection;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const OPEN_PORT: u16 = 23700;
const AUTH_PORT: u16 = 23701;
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry process, killed when dropped.
struct Registry {
    _child: tokio::process::Child,
    base: String,
}

/// The registry binary, or `None` (skip) when it is missing and services are optional.
fn registry_binary() -> Option<PathBuf> {
    let path = PathBuf::from(REGISTRY_BIN);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("BAI_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{REGISTRY_BIN} is missing, but BAI_REQUIRE_SERVICES=1: install the docker-registry package (scripts/test does)");
    }
    eprintln!("skipping: {REGISTRY_BIN} is missing (scripts/test installs docker-registry)");
    None
}

/// Starts a registry on `port` storing under `dir`, behind htpasswd basic auth when `users`
/// lists (user, password) pairs.
async fn start_registry(bin: &Path, dir: &Path, port: u16, users: &[(&str, &str)]) -> Registry {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.join("data").display()
    );
    if !users.is_empty() {
        let htpasswd = dir.join("htpasswd");
        let mut lines = String::new();
        for (user, password) in users {
            let out = std::process::Command::new("htpasswd")
                .args(["-nbB", user, password])
                .output()
                .expect("htpasswd (apache2-utils, which scripts/test installs)");
            assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
            lines.push_str(String::from_utf8(out.stdout).unwrap().trim());
            lines.push('\n');
        }
        std::fs::write(&htpasswd, lines).unwrap();
        config.push_str(&format!("auth:\n  htpasswd:\n    realm: bai-test\n    path: {}\n", htpasswd.display()));
    }
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let child = tokio::process::Command::new(bin)
        .arg("serve")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start docker-registry");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(reply) = http.get(format!("{base}/v2/")).send().await {
            if reply.status().is_success() || reply.status() == 401 {
                return Registry { _child: child, base };
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the registry on port {port} did not answer: {}",
        std::fs::read_to_string(dir.join("registry.log")).unwrap()
    );
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Pushes images over the v2 API, with basic auth when `auth` is given.
struct Pusher {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Pusher {
    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Uploads a blob (monolithic upload); its descriptor.
    async fn blob(&self, repo: &str, media_type: &str, bytes: &[u8]) -> Value {
        let digest = digest_of(bytes);
        let start =
            self.req(reqwest::Method::POST, &format!("{}/v2/{repo}/blobs/uploads/", self.base)).send().await.unwrap();
        assert_eq!(start.status(), 202, "start upload: {}", start.text().await.unwrap());
        let location = start.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') { format!("{}{location}", self.base) } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .req(reqwest::Method::PUT, &format!("{location}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "finish upload: {}", put.text().await.unwrap());
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    /// Uploads a manifest under `reference`; its descriptor.
    async fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &Value) -> Value {
        let bytes = serde_json::to_vec(body).unwrap();
        let put = self
            .req(reqwest::Method::PUT, &format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", media_type)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "push manifest {repo}:{reference}: {}", put.text().await.unwrap());
        json!({"mediaType": media_type, "digest": digest_of(&bytes), "size": bytes.len()})
    }

    /// Pushes a one-layer image for `arch` with `labels`; the manifest's descriptor and the
    /// configuration's digest and the layer's size.
    async fn image(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        arch: &str,
        labels: Value,
    ) -> (Value, String, usize) {
        let layer: Vec<u8> = format!("layer of {repo} for {arch}").into_bytes();
        let (config_type, layer_type) = if media_type == OCI_MANIFEST {
            ("application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            ("application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip")
        };
        let layer_desc = self.blob(repo, layer_type, &layer).await;
        let config = json!({"architecture": arch, "os": "linux",
            "config": {"Labels": labels, "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(&layer)]}});
        let config_desc = self.blob(repo, config_type, &serde_json::to_vec(&config).unwrap()).await;
        let manifest = json!({"schemaVersion": 2, "mediaType": media_type,
            "config": config_desc, "layers": [layer_desc]});
        let desc = self.manifest(repo, reference, media_type, &manifest).await;
        (desc, config_desc["digest"].as_str().unwrap().to_string(), layer.len())
    }
}

/// The all-in-one manager's configuration with `registries`.
async fn manager_with(dir: &Path, registries: &[(&str, RegistrySection)]) -> common::AllInOne {
    let (mut config, agent) = bai_manager::local::configs(dir);
    for (name, section) in registries {
        config.registries.insert(name.to_string(), section.clone());
    }
    bai_manager::local::LocalManager::start_with(config, agent).await.expect("all-in-one manager")
}

fn section(url: &str, user: Option<(&str, &str)>, projects: &[&str]) -> RegistrySection {
    RegistrySection {
        url: url.to_string(),
        kind: "docker".into(),
        username: user.map(|u| u.0.to_string()),
        password: user.map(|u| u.1.to_string()),
        project: projects.iter().map(|p| p.to_string()).collect(),
    }
}

async fn gql(addr: std::net::SocketAddr, key: (&str, &str), query: &str, variables: Value) -> Value {
    let body = json!({"query": query, "variables": variables});
    let reply = common::request(addr, Some(key), "POST", "/admin/gql", Some(&body)).await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    let value = reply.json();
    assert!(value.get("errors").is_none(), "{query}: {value}");
    value["data"].clone()
}

const RESCAN: &str =
    "mutation($registry: String) {\n  rescan_images(registry: $registry) {\n    ok msg task_id\n  }\n}";
const IMAGES: &str = "query($is_operation: Boolean) {  images(is_operation: $is_operation) {    name registry architecture tag digest size_bytes aliases labels { key value } resource_limits { key min max }  }}";
const ALIAS: &str =
    "mutation($alias: String!, $target: String!) {  alias_image(alias: $alias, target: $target) {   ok msg  }}";
const DEALIAS: &str = "mutation($alias: String!) {  dealias_image(alias: $alias) {   ok msg  }}";

/// The frames of a server-sent-event body: (event, data).
fn frames(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut event = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim());
            }
        }
        if let Some(event) = event {
            out.push((event, serde_json::from_str(&data).unwrap_or_else(|e| panic!("{data}: {e}"))));
        }
    }
    out
}

/// Follows background task `task_id` (as the 23.09 client asks: `task_id=`) to its end: its
/// frames, the last being `server_close`.
async fn follow(addr: std::net::SocketAddr, task_id: &str) -> Vec<(String, Value)> {
    let path = format!("/events/background-task?task_id={task_id}");
    let reply =
        tokio::time::timeout(Duration::from_secs(120), common::request(addr, Some(common::ADMIN), "GET", &path, None))
            .await
            .expect("the task stream ends");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")), "{reply:?}");
    let frames = frames(&reply.body);
    assert_eq!(frames.last().map(|f| f.0.as_str()), Some("server_close"), "{}", reply.body);
    for (event, data) in &frames[..frames.len() - 1] {
        assert!(event.starts_with("bgtask_"), "{event}");
        assert_eq!(data["task_id"], task_id, "{data}");
        for key in ["status", "current_progress", "total_progress", "message"] {
            assert!(data.get(key).is_some(), "{event} without {key}: {data}");
        }
    }
    frames
}

/// Starts a rescan and follows it: the final event and its data.
async fn rescan(addr: std::net::SocketAddr, registry: Option<&str>) -> (String, Value) {
    let started = gql(addr, common::ADMIN, RESCAN, json!({"registry": registry})).await["rescan_images"].clone();
    assert_eq!(started["ok"], true, "{started}");
    let task_id = started["task_id"].as_str().unwrap_or_else(|| panic!("no task_id: {started}")).to_string();
    let frames = follow(addr, &task_id).await;
    let last = frames[frames.len() - 2].clone();
    // A late subscriber learns the same outcome at once.
    let again = follow(addr, &task_id).await;
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(again[0], last);
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_images_rescan_alias_and_allowed_registries() {
    let Some(bin) = registry_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let open = start_registry(&bin, &dir.path().join("open"), OPEN_PORT, &[]).await;
    let secured = start_registry(&bin, &dir.path().join("auth"), AUTH_PORT, &[("robot", "s3cret")]).await;

    // The open registry: a Docker v2 image, an OCI index for two architectures (plus a build
    // attestation entry, skipped), and a repository outside the configured project.
    let push = Pusher { http: reqwest::Client::new(), base: open.base.clone(), auth: None };
    let labels = json!({"ai.backend.kernelspec": "1", "ai.backend.resource.min.mem": "256m",
        "ai.backend.service-ports": "jupyter:http:8080"});
    let (_, python_config, python_size) = push.image("stable/python", "3.11", MANIFEST_V2, "amd64", labels).await;
    let (amd64, amd64_config, _) =
        push.image("stable/multi", "amd64-only", OCI_MANIFEST, "amd64", json!({"arch": "amd"})).await;
    let (arm64, arm64_config, _) =
        push.image("stable/multi", "arm64-only", OCI_MANIFEST, "arm64", json!({"arch": "arm"})).await;
    let mut attestation = amd64.clone();
    attestation["platform"] = json!({"architecture": "unknown", "os": "unknown"});
    let mut entries = vec![amd64, arm64, attestation];
    entries[0]["platform"] = json!({"architecture": "amd64", "os": "linux"});
    entries[1]["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    push.manifest("stable/multi", "1.0", OCI_INDEX, &index).await;
    push.image("community/other", "1", MANIFEST_V2, "amd64", json!({})).await;
    // The registry behind basic auth.
    let push_auth = Pusher {
        http: reqwest::Client::new(),
        base: secured.base.clone(),
        auth: Some(("robot".into(), "s3cret".into())),
    };
    let (_, secret_config, _) = push_auth.image("team/secret", "v1", MANIFEST_V2, "amd64", json!({})).await;

    let running = manager_with(
        dir.path(),
        &[
            ("local", section(&open.base, None, &["stable"])),
            ("secure", section(&secured.base, Some(("robot", "s3cret")), &[])),
            ("secure-wrong", section(&secured.base, Some(("robot", "wrong")), &[])),
            ("anonymous", section(&secured.base, None, &[])),
        ],
    )
    .await;
    let addr = running.api_addr;

    // One registry: the task ends done, with what it found.
    let (event, data) = rescan(addr, Some("local")).await;
    assert_eq!((event.as_str(), &data["status"]), ("bgtask_done", &json!("done")), "{data}");
    assert_eq!(data["message"], "registry local: 5 image(s) in 2 repositories: 5 added, 0 updated");
    let images = gql(addr, common::ADMIN, IMAGES, json!({"is_operation": false})).await["images"].clone();
    let of = |registry: &str| -> Vec<Value> {
        images.as_array().unwrap().iter().filter(|i| i["registry"] == registry).cloned().collect()
    };
    let local = of("local");
    let keys: Vec<String> = local.iter().map(|i| format!("{}:{}@{}", i["name"], i["tag"], i["architecture"])).collect();
    assert_eq!(
        keys,
        [
            r#""stable/multi":"1.0"@"aarch64""#,
            r#""stable/multi":"1.0"@"x86_64""#,
            r#""stable/multi":"amd64-only"@"x86_64""#,
            r#""stable/multi":"arm64-only"@"aarch64""#,
            r#""stable/python":"3.11"@"x86_64""#,
        ]
    );
    let python = &local[4];
    assert_eq!(python["digest"], python_config.as_str());
    assert_eq!(python["size_bytes"], python_size as u64);
    assert_eq!(python["aliases"], json!([]));
    assert!(python["labels"].as_array().unwrap().contains(&json!({"key": "ai.backend.kernelspec", "value": "1"})));
    assert_eq!(python["resource_limits"], json!([{"key": "mem", "min": "256m", "max": null}]));
    assert_eq!((&local[0]["digest"], &local[1]["digest"]), (&json!(arm64_config), &json!(amd64_config)));
    assert!(!images.to_string().contains("community/other"), "outside the project: {images}");

    // Basic auth: the right credentials scan; wrong or missing ones fail the task, saying so.
    let (event, data) = rescan(addr, Some("secure")).await;
    assert_eq!(event, "bgtask_done", "{data}");
    assert_eq!(data["message"], "registry secure: 1 image(s) in 1 repository: 1 added, 0 updated");
    let images = gql(addr, common::ADMIN, IMAGES, json!({})).await["images"].clone();
    let secret = images.as_array().unwrap().iter().find(|i| i["registry"] == "secure").expect("the secure image");
    assert_eq!((&secret["name"], &secret["digest"]), (&json!("team/secret"), &json!(secret_config)));
    let (event, data) = rescan(addr, Some("secure-wrong")).await;
    assert_eq!((event.as_str(), &data["status"]), ("bgtask_failed", &json!("failed")), "{data}");
    let msg = data["message"].as_str().unwrap();
    assert!(msg.contains("registry secure-wrong:") && msg.contains("refused the credentials of \"robot\""), "{msg}");
    let (event, data) = rescan(addr, Some("anonymous")).await;
    assert_eq!(event, "bgtask_failed", "{data}");
    assert!(data["message"].as_str().unwrap().contains("wants credentials and none are configured"), "{data}");
    // Everything: the agents and every registry; the failing ones fail the task, the others
    // are still scanned.
    let (event, data) = rescan(addr, None).await;
    assert_eq!(event, "bgtask_failed", "{data}");
    let msg = data["message"].as_str().unwrap();
    assert!(msg.starts_with("scanned 1 image tag(s) on 1 agent(s)"), "{msg}");
    assert!(msg.contains("registry local: 5 image(s) in 2 repositories: 0 added, 0 updated"), "{msg}");
    assert!(msg.contains("registry secure: 1 image(s)") && msg.contains("secure-wrong"), "{msg}");
    // An unknown registry does not start a task.
    let refused = gql(addr, common::ADMIN, RESCAN, json!({"registry": "nope"})).await["rescan_images"].clone();
    assert_eq!((&refused["ok"], &refused["task_id"]), (&json!(false), &Value::Null), "{refused}");
    assert!(refused["msg"].as_str().unwrap().starts_with("registry: no registry named \"nope\""), "{refused}");
    // Task streams: unknown tasks are 404, bad ids 400.
    let path = format!("/events/background-task?taskId={}", uuid::Uuid::new_v4());
    assert_eq!(common::request(addr, Some(common::ADMIN), "GET", &path, None).await.status, 404);
    let bad = common::request(addr, Some(common::ADMIN), "GET", "/events/background-task?taskId=x", None).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("taskId"), "{}", bad.body);

    // Aliases.
    let target = format!("127.0.0.1:{OPEN_PORT}/stable/python:3.11");
    let alias = |alias: &str, target: &str| {
        let vars = json!({"alias": alias, "target": target, "architecture": null});
        async move { gql(addr, common::ADMIN, ALIAS, vars).await["alias_image"].clone() }
    };
    assert_eq!(alias("mypy", &target).await, json!({"ok": true, "msg": "success"}));
    let again = alias("mypy", &target).await;
    assert!(again["ok"] == false && again["msg"].as_str().unwrap().contains("already names"), "{again}");
    let unknown = alias("other", &format!("127.0.0.1:{OPEN_PORT}/stable/nope:1")).await;
    assert!(unknown["ok"] == false && unknown["msg"].as_str().unwrap().starts_with("target:"), "{unknown}");
    let bad = alias("Not An Alias", &target).await;
    assert!(bad["ok"] == false && bad["msg"].as_str().unwrap().starts_with("alias:"), "{bad}");
    let images = gql(addr, common::ADMIN, IMAGES, json!({})).await["images"].clone();
    let python = images.as_array().unwrap().iter().find(|i| i["name"] == "stable/python").unwrap();
    assert_eq!(python["aliases"], json!(["mypy"]));
    let reply = common::request(
        addr,
        Some(common::USER),
        "POST",
        "/admin/gql",
        Some(&json!({"query": "mutation { dealias_image(alias: \"mypy\") { ok msg } }"})),
    )
    .await;
    assert!(
        reply.json()["errors"][0]["message"].as_str().unwrap().starts_with("Forbidden operation."),
        "{}",
        reply.body
    );

    // Sessions: the example domain allows cr.backend.ai and index.docker.io only.
    let create = |name: &str, image: &str| {
        let body = json!({"name": name, "image": image, "architecture": "x86_64", "enqueueOnly": true,
            "domain": "default", "group": "default", "type": "interactive",
            "config": {"resources": {"cpu": "1", "mem": "256m"}}});
        async move { common::request(addr, Some(common::USER), "POST", "/session", Some(&body)).await }
    };
    let refused = create("via-alias", "mypy").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("registry \\\"local\\\"") && refused.body.contains("domain \\\"default\\\""),
        "{}",
        refused.body
    );
    let unscanned = create("unscanned", &format!("127.0.0.1:{AUTH_PORT}/team/secret:v2")).await;
    assert_eq!(unscanned.status, 403, "a configured registry's host, even for a tag not scanned: {}", unscanned.body);
    let db = running.manager.db().clone();
    let domain = bai_manager::db::entities::domain::Entity::find_by_id("default").one(&db).await.unwrap().unwrap();
    let mut allowed = domain.allowed_docker_registries.0.clone();
    allowed.push("local".into());
    let mut active: bai_manager::db::entities::domain::ActiveModel = domain.into();
    active.allowed_docker_registries = Set(bai_manager::db::types::JsonOf(allowed));
    active.update(&db).await.unwrap();
    let created = create("via-alias", "mypy").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["sessionId"].as_str().unwrap().to_string();
    let query = "query($id: UUID!) { compute_session(id: $id) { image } }";
    let session = gql(addr, common::ADMIN, query, json!({"id": id})).await;
    assert_eq!(session["compute_session"]["image"], target.as_str(), "the alias resolves: {session}");
    let other = create("other-registry", &format!("127.0.0.1:{AUTH_PORT}/team/secret:v1")).await;
    assert_eq!(other.status, 403, "{}", other.body);
    let host = create("agent-image", "host").await;
    assert_eq!(host.status, 201, "the agents' own images stay allowed: {}", host.body);

    let dealias = |alias: &str| {
        let vars = json!({"alias": alias});
        async move { gql(addr, common::ADMIN, DEALIAS, vars).await["dealias_image"].clone() }
    };
    assert_eq!(dealias("mypy").await, json!({"ok": true, "msg": "success"}));
    let gone = dealias("mypy").await;
    assert!(gone["ok"] == false && gone["msg"].as_str().unwrap().contains("no alias named"), "{gone}");
    running.shutdown().await;
}

/// Registries configured in etcd under the original's keys join those of the file; the
/// file's win on a shared name, and a bad etcd entry is refused naming its key.
#[tokio::test]
async fn etcd_keys_configure_registries() {
    let Some(endpoints) = bai_test_support::service_env("BAI_TEST_ETCD_ENDPOINTS") else { return };
    let endpoints: Vec<String> =
        endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect();
    let namespace = format!("registry-test-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let mut client = etcd_client::Client::connect(&endpoints, None).await.expect("etcd");
    let prefix = format!("/bai/{namespace}/config/docker/registry");
    for (key, value) in [
        ("cr.example.com", "https://cr.example.com"),
        ("cr.example.com/type", "docker"),
        ("cr.example.com/username", "robot"),
        ("cr.example.com/password", "s3cret"),
        ("cr.example.com/project", "stable, community"),
        ("localhost%3A5000", "http://localhost:5000"),
        ("shadowed", "http://from-etcd.example.com"),
    ] {
        client.put(format!("{prefix}/{key}"), value, None).await.expect("etcd put");
    }
    let mut config = bai_manager::config::ManagerConfig::default();
    config.etcd.endpoints = endpoints.clone();
    config.etcd.namespace = namespace.clone();
    config.registries.insert("shadowed".into(), section("http://from-file.example.com", None, &[]));
    let sources = bai_manager::registry::RegistrySources::from_config(&config).unwrap();
    let resolved = sources.resolve().await.expect("registries");
    let summary: Vec<(String, String, Option<String>, Vec<String>)> =
        resolved.iter().map(|r| (r.name.clone(), r.url.to_string(), r.username.clone(), r.projects.clone())).collect();
    assert_eq!(
        summary,
        [
            (
                "cr.example.com".to_string(),
                "https://cr.example.com/".to_string(),
                Some("robot".to_string()),
                vec!["stable".to_string(), "community".to_string()]
            ),
            ("localhost:5000".into(), "http://localhost:5000/".into(), None, vec![]),
            ("shadowed".into(), "http://from-file.example.com/".into(), None, vec![]),
        ]
    );
    assert_eq!(resolved[0].password.as_deref(), Some("s3cret"));
    assert_eq!(resolved[1].host(), "localhost:5000");

    client.put(format!("{prefix}/bad/type"), "harbor2", None).await.expect("etcd put");
    client.put(format!("{prefix}/bad"), "http://bad.example.com", None).await.expect("etcd put");
    let err = sources.resolve().await.unwrap_err().to_string();
    assert!(err.contains(&format!("{prefix}/bad")) && err.contains("harbor2"), "{err}");
    client
        .delete(format!("/bai/{namespace}/"), Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .expect("etcd clean-up");
}
