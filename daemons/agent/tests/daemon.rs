//! The agent daemon against real Docker and Redis (started by `scripts/test`): RPC create →
//! execute → destroy through the gRPC client, refused callers, heartbeats and lifecycle events
//! on Redis, reconciliation, `kill -9` and restart, SIGTERM, and the metrics endpoint.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bai_agent::config::{AgentConfig, EventBackend, ScratchType};
use bai_agent::daemon;
use bai_agent_runtime::bus::{Envelope, EventBus, EventStream, RedisBus};
use bai_agent_runtime::rpc::{self, pb, AgentClient};
use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::{ContainerRuntime, ContainerSpec};
use bai_core::Event;
use futures::StreamExt;

struct Services {
    docker: String,
    redis: String,
    image: String,
}

use bai_test_support::service_env;

fn services() -> Option<Services> {
    Some(Services {
        docker: service_env("BAI_TEST_DOCKER_HOST")?,
        redis: service_env("BAI_TEST_REDIS_URL")?,
        image: service_env("BAI_TEST_KERNEL_IMAGE")?,
    })
}

/// Removes every container of an agent when a test ends, passed or not.
struct Cleanup {
    docker: String,
    agent_id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (docker, agent_id) = (self.docker.clone(), self.agent_id.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let Ok(docker) = DockerRuntime::connect(&docker).await else { return };
                let Ok(list) = docker.list(&[("ai.backend.owner", Some(agent_id.as_str()))]).await else { return };
                for c in list {
                    let _ = docker.destroy(&c.id).await;
                }
            });
        })
        .join();
    }
}

fn cleanup(s: &Services, config: &AgentConfig) -> Cleanup {
    Cleanup { docker: s.docker.clone(), agent_id: config.agent.id.clone() }
}

fn unique_id(test: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("i-test-{test}-{}-{nanos}", std::process::id())
}

/// A configuration on private ports and directories; each test gets its own host port range.
fn config(s: &Services, test: &str, dir: &Path, ports: u16) -> AgentConfig {
    let mut c = AgentConfig::default();
    c.agent.id = unique_id(test);
    c.agent.rpc_listen = "127.0.0.1:0".parse().unwrap();
    c.agent.metrics_listen = "127.0.0.1:0".parse().unwrap();
    c.agent.heartbeat_interval = 0.5;
    c.agent.sync_interval = 0.5;
    c.agent.stat_interval = 0.5;
    c.rpc.token = Some(format!("token-{}", c.agent.id));
    c.events.backend = EventBackend::Redis;
    c.events.redis_url = s.redis.clone();
    c.container.docker_host = s.docker.clone();
    c.container.bind_host = "127.0.0.1".into();
    c.container.port_range = [ports, ports + 19];
    c.container.scratch_root = dir.join("scratch");
    c.container.scratch_type = ScratchType::Hostdir;
    c.container.vfolder_root = dir.join("vfolders");
    c.container.stop_timeout = 2.0;
    c.resource.reserved_cpu = rust_decimal::Decimal::ZERO;
    c.resource.reserved_mem = "256m".parse().unwrap();
    c
}

async fn connect(addr: &str, token: &str) -> AgentClient {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await {
            Ok(channel) => {
                let mut client = rpc::client(channel, token).unwrap();
                if client.ping(pb::PingRequest { msg: "hi".into() }).await.is_ok() {
                    return client;
                }
            }
            Err(_) if Instant::now() < deadline => {}
            Err(e) => panic!("cannot reach the agent at {addr}: {e}"),
        }
        assert!(Instant::now() < deadline, "the agent at {addr} did not answer within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kernel_request(session: &str, kernel: &str, image: &str) -> pb::CreateKernelsRequest {
    pb::CreateKernelsRequest {
        session_id: session.into(),
        kernels: vec![pb::KernelCreationConfig {
            kernel_id: kernel.into(),
            image: image.into(),
            resource_slots: [("cpu".to_string(), "0.5".to_string()), ("mem".to_string(), "268435456".to_string())]
                .into(),
            cluster_role: "main".into(),
            ..Default::default()
        }],
        session_type: "interactive".into(),
        ..Default::default()
    }
}

fn new_ids() -> (String, String) {
    (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string())
}

/// Events from one agent, gathered as they come.
struct Events {
    stream: EventStream,
    source: String,
    seen: Vec<Event>,
}

impl Events {
    async fn new(redis: &str, source: &str) -> Self {
        let bus = RedisBus::connect(redis).await.expect("redis");
        Self { stream: bus.subscribe().await.expect("subscribe"), source: source.to_string(), seen: Vec::new() }
    }

    /// Waits (at most 30 s) for an event matching `pred`, keeping every event seen.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
            match next {
                Ok(Some(Ok(Envelope { source, event }))) if source == self.source => {
                    self.seen.push(event.clone());
                    if pred(&event) {
                        return event;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the event stream ended while waiting for {what}"),
                Err(_) => {
                    panic!("no {what} within 30 s; seen: {:?}", self.seen.iter().map(|e| e.name()).collect::<Vec<_>>())
                }
            }
        }
    }

    fn names(&self) -> Vec<&'static str> {
        self.seen.iter().map(|e| e.name()).collect()
    }
}

async fn execute(client: &mut AgentClient, request: pb::ExecuteRequest) -> (String, pb::ExecuteResult) {
    let mut stream = client.execute(request).await.expect("execute").into_inner();
    let mut out = String::new();
    while let Some(item) = stream.next().await {
        match item.expect("execute stream").event {
            Some(pb::execute_event::Event::Record(r)) if r.kind == "stdout" => out.push_str(&r.data),
            Some(pb::execute_event::Event::Record(_)) => {}
            Some(pb::execute_event::Event::Result(r)) => return (out, r),
            None => panic!("an empty execute event"),
        }
    }
    panic!("the execute stream ended without a result")
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("metrics connect");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// `name{labels} value` lines of a scrape: (name, labels, value).
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        // Chunked transfer framing lines (hex sizes) have no space.
        let Some((head, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => {
                let body = rest.trim_end_matches('}');
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| {
                        p.split_once("=\"").map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (head.to_string(), BTreeMap::new()),
        };
        out.push((name, labels, value));
    }
    out
}

fn find<'a>(
    samples: &'a [(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a (String, BTreeMap<String, String>, f64)> {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_create_execute_files_destroy_and_metrics() {
    let Some(s) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(&s, "rpc", dir.path(), 22000);
    let _cleanup = cleanup(&s, &config);
    let id = config.agent.id.clone();
    let mut events = Events::new(&s.redis, &id).await;
    let running = daemon::start(config, None).await.expect("agent start");
    let mut client = connect(&running.rpc_addr.to_string(), running.token()).await;
    events.wait_for("agent_started", |e| matches!(e, Event::AgentStarted { .. })).await;

    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.agent_id, id);
    assert_eq!(status.backend, "docker");
    assert!(status.kernels.is_empty());

    // Bad arguments are INVALID_ARGUMENT naming the field, and create nothing.
    let mut bad = kernel_request("not-a-uuid", &uuid::Uuid::new_v4().to_string(), &s.image);
    let err = client.create_kernels(bad.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("session_id"), "{err}");
    bad.session_id = uuid::Uuid::new_v4().to_string();
    bad.kernels[0].resource_slots.insert("cpu".into(), "lots".into());
    let err = client.create_kernels(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("kernels[0].resource_slots"), "{err}");
    let mut too_big = kernel_request(&uuid::Uuid::new_v4().to_string(), &uuid::Uuid::new_v4().to_string(), &s.image);
    too_big.kernels[0].resource_slots.insert("cpu".into(), "512".into());
    let err = client.create_kernels(too_big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert!(status.kernels.is_empty() && status.occupied_slots.values().all(|v| v == "0"), "{status:?}");

    // Create.
    let (session, kernel) = new_ids();
    let created =
        client.create_kernels(kernel_request(&session, &kernel, &s.image)).await.expect("create").into_inner();
    assert_eq!(created.kernels.len(), 1);
    let k = &created.kernels[0];
    assert_eq!(k.kernel_id, kernel);
    let port = k.service_ports.iter().find(|p| p.name == "http-server").expect("the image's service port");
    assert_eq!(port.container_ports, [8000]);
    assert!((22000..22020).contains(&port.host_ports[0]), "{port:?}");
    let ours = |e: &Event| e.session_id().map(|s| s.to_string()) == Some(session.clone());
    for name in ["kernel_preparing", "kernel_creating", "kernel_started"] {
        events.wait_for(name, |e| e.name() == name && ours(e)).await;
    }
    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.kernels.len(), 1);
    assert_eq!(status.occupied_slots.get("cpu").map(String::as_str), Some("0.5"));

    // Execute: query mode streams the runner's output; batch mode runs a shell command.
    let query = pb::ExecuteRequest {
        session_id: session.clone(),
        kernel_id: kernel.clone(),
        mode: "query".into(),
        code: "import sys\nfor i in range(3): print(i * 7)\n".into(),
        flush_timeout: 20.0,
        ..Default::default()
    };
    let (out, result) = execute(&mut client, query).await;
    assert_eq!(result.status, "finished", "{result:?}");
    assert_eq!(out, "0\n7\n14\n");
    let batch = pb::ExecuteRequest {
        kernel_id: kernel.clone(),
        mode: "batch".into(),
        options_json: r#"{"exec": "echo batch-$((6*7))", "timeout": 30}"#.into(),
        ..Default::default()
    };
    let (out, result) = execute(&mut client, batch).await;
    assert_eq!((result.status.as_str(), result.has_exit_code, result.exit_code), ("finished", true, 0));
    assert_eq!(out, "batch-42\n");
    let err = client
        .execute(pb::ExecuteRequest { kernel_id: kernel.clone(), mode: "sing".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("mode"), "{err}");

    // Files: upload, list, download; paths cannot leave /home/work.
    client
        .upload_file(pb::UploadFileRequest {
            kernel_id: kernel.clone(),
            path: "data/hello.txt".into(),
            content: b"hello agent".to_vec(),
        })
        .await
        .expect("upload");
    let listing = client
        .list_files(pb::ListFilesRequest { kernel_id: kernel.clone(), path: "data".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listing.abspath, "/home/work/data");
    let file = listing.files.iter().find(|f| f.filename == "hello.txt").expect("listed");
    assert_eq!(file.size, 11);
    let tar = client
        .download_file(pb::DownloadFileRequest { kernel_id: kernel.clone(), path: "data/hello.txt".into() })
        .await
        .unwrap()
        .into_inner()
        .tar;
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut content = String::new();
    entry.read_to_string(&mut content).unwrap();
    assert_eq!(content, "hello agent");
    for bad in ["../escape.txt", "/etc/passwd"] {
        let err = client
            .upload_file(pb::UploadFileRequest { kernel_id: kernel.clone(), path: bad.into(), content: b"x".to_vec() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}: {err}");
        assert!(err.message().contains("path"), "{err}");
    }
    let err = client.get_logs(pb::KernelRequest { kernel_id: uuid::Uuid::new_v4().to_string() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");

    // Metrics: wait for a statistics sweep that saw the kernel, then check names and labels.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(running.metrics_addr).await;
        if text.contains(&format!("kernel_id=\"{kernel}\""))
            && text.contains("backendai_sync_container_lifecycle_success_count_total")
        {
            break text;
        }
        assert!(Instant::now() < deadline, "no container metrics for {kernel} within 30 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let all = samples(&text);
    let agent_label = [("agent_id", id.as_str())];
    assert!(find(&all, "backendai_rpc_requests_total", &[("method", "create_kernels")])[0].2 >= 4.0);
    let failures = find(
        &all,
        "backendai_rpc_failure_requests_total",
        &[("method", "create_kernels"), ("exception", "InvalidArgument")],
    );
    assert_eq!(failures[0].2, 2.0);
    let buckets: Vec<&str> =
        find(&all, "backendai_rpc_request_duration_seconds_bucket", &[("method", "create_kernels")])
            .iter()
            .map(|(_, l, _)| l["le"].as_str())
            .collect();
    assert_eq!(buckets, ["0.001", "0.01", "0.1", "0.5", "1.0", "2.0", "5.0", "10.0", "30.0", "60.0", "+Inf"]);
    assert_eq!(find(&all, "backendai_rpc_request_duration_seconds_count", &[("method", "create_kernels")])[0].2, 4.0);
    let cpu = find(
        &all,
        "backendai_container_utilization",
        &[("container_metric_name", "mem"), ("kernel_id", &kernel), ("value_type", "current")],
    );
    assert_eq!(cpu.len(), 1, "{text}");
    assert_eq!(cpu[0].1["session_id"], session);
    assert!(cpu[0].2 > 0.0, "a running python uses memory: {:?}", cpu[0]);
    assert!(!find(
        &all,
        "backendai_device_utilization",
        &[("device_metric_name", "cpu_util"), ("value_type", "current")]
    )
    .is_empty());
    assert!(find(&all, "backendai_agent_heartbeat", &agent_label)[0].2 > 1.6e9);
    assert_eq!(find(&all, "backendai_kernel_count", &agent_label)[0].2, 1.0);
    assert!(find(&all, "backendai_agent_mem_usage", &agent_label)[0].2 > 0.0);
    assert!(find(&all, "backendai_sync_container_lifecycle_trigger_count_total", &agent_label)[0].2 >= 1.0);
    for scope in ["node", "container"] {
        assert!(
            find(&all, "backendai_stat_task_trigger_count_total", &[("agent_id", id.as_str()), ("stat_scope", scope)])
                [0]
            .2 >= 1.0
        );
        assert!(
            find(&all, "backendai_stat_task_success_count_total", &[("agent_id", id.as_str()), ("stat_scope", scope)])
                [0]
            .2 >= 1.0
        );
    }
    let stats = client
        .get_container_stats(pb::GetContainerStatsRequest { kernel_id: kernel.clone() })
        .await
        .unwrap()
        .into_inner();
    let stats: serde_json::Value = serde_json::from_str(&stats.json).unwrap();
    assert!(stats.get("mem").is_some(), "{stats}");

    // Restarted in place (same container, a new main process): the sweeps that follow read it
    // again (the agent forgets the PID it remembered for it).
    let successes = |text: &str| {
        find(
            &samples(text),
            "backendai_stat_task_success_count_total",
            &[("agent_id", id.as_str()), ("stat_scope", "container")],
        )[0]
        .2
    };
    client
        .restart_kernel(pb::RestartKernelRequest { session_id: session.clone(), kernel_id: kernel.clone() })
        .await
        .expect("restart");
    let before = successes(&scrape(running.metrics_addr).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(running.metrics_addr).await;
        if successes(&text) >= before + 2.0 {
            let all = samples(&text);
            let mem = find(
                &all,
                "backendai_container_utilization",
                &[("container_metric_name", "mem"), ("kernel_id", &kernel), ("value_type", "current")],
            );
            assert!(mem[0].2 > 0.0, "the restarted kernel's memory: {mem:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no successful container sweep after the restart within 30 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Destroy: events, resources back, metrics series gone.
    let reply = client
        .destroy_kernel(pb::DestroyKernelRequest {
            kernel_id: kernel.clone(),
            session_id: session.clone(),
            reason: "user-requested".into(),
            suppress_events: false,
        })
        .await
        .expect("destroy")
        .into_inner();
    assert_eq!(reply.reason, "user-requested");
    events.wait_for("kernel_terminating", |e| e.name() == "kernel_terminating" && ours(e)).await;
    let ended = events.wait_for("kernel_terminated", |e| e.name() == "kernel_terminated" && ours(e)).await;
    assert!(matches!(&ended, Event::KernelTerminated { reason, .. } if reason == "user-requested"), "{ended:?}");
    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert!(status.kernels.is_empty());
    assert!(status.occupied_slots.values().all(|v| v == "0"), "{status:?}");
    assert!(!scrape(running.metrics_addr).await.contains(&format!("kernel_id=\"{kernel}\"")));
    // Destroying it again is answered, as already terminated.
    let again = client
        .destroy_kernel(pb::DestroyKernelRequest {
            kernel_id: kernel.clone(),
            session_id: session.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.reason, "already-terminated");
    assert!(events.names().contains(&"agent_heartbeat"), "{:?}", events.names());
    running.shutdown().await.unwrap();
    events
        .wait_for("agent_terminated", |e| matches!(e, Event::AgentTerminated { reason } if reason == "shutdown"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_the_token_are_refused() {
    let Some(s) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(&s, "auth", dir.path(), 22020);
    let _cleanup = cleanup(&s, &config);
    let running = daemon::start(config, None).await.expect("agent start");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.rpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anonymous = pb::agent_client::AgentClient::new(channel.clone());
    let err = anonymous.get_status(pb::GetStatusRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let err = anonymous.destroy_kernel(pb::DestroyKernelRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let mut wrong = rpc::client(channel.clone(), "not-the-token").unwrap();
    let err = wrong.ping(pb::PingRequest { msg: "x".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let mut right = rpc::client(channel, running.token()).unwrap();
    assert_eq!(right.ping(pb::PingRequest { msg: "x".into() }).await.unwrap().into_inner().msg, "x");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reach_redis() {
    let Some(s) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&s, "heartbeat", dir.path(), 22040);
    config.agent.scaling_group = "sg-test".into();
    let _cleanup = cleanup(&s, &config);
    let id = config.agent.id.clone();
    let mut events = Events::new(&s.redis, &id).await;
    let running = daemon::start(config, None).await.expect("agent start");
    let beat = events.wait_for("agent_heartbeat", |e| e.name() == "agent_heartbeat").await;
    let Event::AgentHeartbeat { agent_info } = beat else { unreachable!() };
    assert_eq!(agent_info["id"], id.as_str());
    assert_eq!(agent_info["scaling_group"], "sg-test");
    assert_eq!(agent_info["architecture"], std::env::consts::ARCH);
    assert_eq!(agent_info["resource_slots"]["cpu"][0], "count");
    assert_eq!(agent_info["resource_slots"]["mem"][0], "bytes");
    assert!(agent_info["images"].as_array().unwrap().iter().any(|i| i[0] == s.image.as_str()), "{agent_info}");
    // Heartbeats keep coming, and the raw stream entry has the documented fields.
    events.seen.clear();
    events.wait_for("a second agent_heartbeat", |e| e.name() == "agent_heartbeat").await;
    let client = redis::Client::open(s.redis.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let entries: redis::streams::StreamRangeReply =
        redis::AsyncCommands::xrevrange_count(&mut conn, "events", "+", "-", 200).await.unwrap();
    let entry = entries
        .ids
        .iter()
        .find(|e| {
            e.get::<String>("source").as_deref() == Some(id.as_str())
                && e.get::<String>("name").as_deref() == Some("agent_heartbeat")
        })
        .expect("a heartbeat entry on the stream");
    let args: serde_json::Value = serde_json::from_str(&entry.get::<String>("args").unwrap()).unwrap();
    assert_eq!(args[0]["id"], id.as_str());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_cleans_up_dead_and_unknown_containers() {
    let Some(s) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(&s, "sync", dir.path(), 22060);
    let _cleanup = cleanup(&s, &config);
    let id = config.agent.id.clone();
    let mut events = Events::new(&s.redis, &id).await;
    let running = daemon::start(config, None).await.expect("agent start");
    let mut client = connect(&running.rpc_addr.to_string(), running.token()).await;
    let docker = DockerRuntime::connect(&s.docker).await.unwrap();

    // A kernel whose container dies by itself is reported and its resources come back.
    let (session, kernel) = new_ids();
    let created = client.create_kernels(kernel_request(&session, &kernel, &s.image)).await.unwrap().into_inner();
    docker.stop(&created.kernels[0].container_id, Duration::from_secs(0)).await.unwrap();
    let ended = events.wait_for("kernel_terminated", |e| e.name() == "kernel_terminated").await;
    assert!(matches!(&ended, Event::KernelTerminated { reason, .. } if reason == "self-terminated"), "{ended:?}");
    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert!(status.kernels.is_empty() && status.occupied_slots.values().all(|v| v == "0"), "{status:?}");

    // A container labelled as this agent's kernel that the agent does not hold is destroyed.
    let orphan_kernel = uuid::Uuid::new_v4().to_string();
    let labels: BTreeMap<String, String> = [
        ("ai.backend.owner".to_string(), id.clone()),
        ("ai.backend.kernel-id".to_string(), orphan_kernel.clone()),
        ("ai.backend.session-id".to_string(), session.clone()),
    ]
    .into();
    let orphan = docker
        .create(&ContainerSpec {
            name: format!("kernel.orphan.{orphan_kernel}"),
            image: s.image.clone(),
            labels,
            ..Default::default()
        })
        .await
        .unwrap();
    docker.start(&orphan).await.unwrap();
    let gone = events
        .wait_for(
            "kernel_terminated of the orphan",
            |e| matches!(e, Event::KernelTerminated { reason, .. } if reason == "terminated-unknown-container"),
        )
        .await;
    assert!(matches!(gone, Event::KernelTerminated { kernel_id, .. } if kernel_id.to_string() == orphan_kernel));
    assert!(docker.inspect(&orphan).await.is_err(), "the orphan container is gone");

    // The manager's expected set: unknown expected kernels are reported, unexpected local ones destroyed.
    let (session2, kernel2) = new_ids();
    client.create_kernels(kernel_request(&session2, &kernel2, &s.image)).await.unwrap();
    let (ghost_session, ghost) = new_ids();
    let reply = client
        .sync_kernels(pb::SyncKernelsRequest {
            kernels: vec![pb::KernelRef { kernel_id: ghost.clone(), session_id: ghost_session }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.missing, [ghost]);
    assert_eq!(reply.destroyed, [kernel2]);
    assert!(client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner().kernels.is_empty());
    let err = client
        .sync_kernels(pb::SyncKernelsRequest {
            kernels: vec![pb::KernelRef { kernel_id: "x".into(), session_id: String::new() }],
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("kernels[0].kernel_id"), "{err}");
    running.shutdown().await.unwrap();
}

struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    fn spawn(config_path: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_bai-agent"))
            .arg("--config")
            .arg(config_path)
            .env("BAI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bai-agent");
        Self { child }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "bai-agent did not exit within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_loses_nothing_and_sigterm_leaves_kernels_running() {
    let Some(s) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&s, "restart", dir.path(), 22080);
    let _cleanup = cleanup(&s, &config);
    // Fixed ports for the child process: find two free ones.
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    config.agent.rpc_listen = free();
    config.agent.metrics_listen = free();
    config.agent.sync_interval = 1.0;
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let token = config.rpc.token.clone().unwrap();
    let addr = config.agent.rpc_listen.to_string();

    let mut agent = AgentProcess::spawn(&path);
    let mut client = connect(&addr, &token).await;
    let (session, kernel) = new_ids();
    let created = client.create_kernels(kernel_request(&session, &kernel, &s.image)).await.unwrap().into_inner();
    let before = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();

    // kill -9, restart: the kernel, its ports and its slots are back.
    agent.signal(nix::sys::signal::Signal::SIGKILL);
    agent.wait();
    let mut agent = AgentProcess::spawn(&path);
    let mut client = connect(&addr, &token).await;
    let after = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(after.kernels, before.kernels);
    assert_eq!(after.occupied_slots, before.occupied_slots);
    assert_eq!(after.kernels[0].container_id, created.kernels[0].container_id);
    // The recovered kernel still runs code.
    let (out, _) = execute(
        &mut client,
        pb::ExecuteRequest {
            kernel_id: kernel.clone(),
            mode: "query".into(),
            code: "print('still here')".into(),
            flush_timeout: 20.0,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out, "still here\n");
    // Its host port is not handed out again.
    let (session2, kernel2) = new_ids();
    let second = client.create_kernels(kernel_request(&session2, &kernel2, &s.image)).await.unwrap().into_inner();
    assert_ne!(second.kernels[0].service_ports[0].host_ports, created.kernels[0].service_ports[0].host_ports);

    // SIGTERM: the agent exits cleanly and the kernels keep running.
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(agent.wait().success());
    let docker = DockerRuntime::connect(&s.docker).await.unwrap();
    for k in [&created.kernels[0], &second.kernels[0]] {
        assert!(docker.inspect(&k.container_id).await.unwrap().state.is_active(), "{} still runs", k.kernel_id);
    }
    let _agent = AgentProcess::spawn(&path);
    let mut client = connect(&addr, &token).await;
    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.kernels.len(), 2);
    for (k, sid) in [(&kernel, &session), (&kernel2, &session2)] {
        client
            .destroy_kernel(pb::DestroyKernelRequest {
                kernel_id: k.clone(),
                session_id: sid.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert!(status.kernels.is_empty() && status.occupied_slots.values().all(|v| v == "0"), "{status:?}");
}

#[test]
fn the_binary_explains_its_options_and_rejects_bad_ones() {
    let help = Command::new(env!("CARGO_BIN_EXE_bai-agent")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for option in
        ["--config", "--rpc-listen", "--metrics-listen", "--rpc-token", "--redis-url", "--backend", "--port-range"]
    {
        assert!(text.contains(option), "--help lacks {option}:\n{text}");
    }
    let sample = Command::new(env!("CARGO_BIN_EXE_bai-agent")).arg("--print-sample-config").output().unwrap();
    assert!(AgentConfig::from_toml(&String::from_utf8_lossy(&sample.stdout)).is_ok());
    let bad =
        Command::new(env!("CARGO_BIN_EXE_bai-agent")).args(["--port-range", "9-1", "--check-config"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("container.port-range"));
    let dir = tempfile::tempdir().unwrap();
    let no_token = Command::new(env!("CARGO_BIN_EXE_bai-agent"))
        .args([
            "--events",
            "memory",
            "--backend",
            "process",
            "--rpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--scratch-root")
        .arg(dir.path())
        .env_remove("BAI_AGENT_RPC_TOKEN")
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    assert!(
        String::from_utf8_lossy(&no_token.stderr).contains("rpc.token"),
        "{}",
        String::from_utf8_lossy(&no_token.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sessions_report_success_and_failure() {
    let Some(s) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(&s, "batch", dir.path(), 22100);
    let _cleanup = cleanup(&s, &config);
    let id = config.agent.id.clone();
    let mut events = Events::new(&s.redis, &id).await;
    let running = daemon::start(config, None).await.expect("agent start");
    let mut client = connect(&running.rpc_addr.to_string(), running.token()).await;
    for (command, expected, code) in [("echo done", "session_success", 0), ("exit 3", "session_failure", 3)] {
        let (session, kernel) = new_ids();
        let mut request = kernel_request(&session, &kernel, &s.image);
        request.session_type = "batch".into();
        request.startup_command = command.into();
        request.batch_timeout = 60.0;
        client.create_kernels(request).await.expect("create a batch session");
        let end = events
            .wait_for(expected, |e| {
                e.name() == expected && e.session_id().map(|x| x.to_string()) == Some(session.clone())
            })
            .await;
        match end {
            Event::SessionSuccess { reason, exit_code, .. } | Event::SessionFailure { reason, exit_code, .. } => {
                assert_eq!(exit_code, code);
                assert_eq!(reason, if code == 0 { "task-finished" } else { "task-failed" });
            }
            other => panic!("{other:?}"),
        }
        client
            .destroy_kernel(pb::DestroyKernelRequest { kernel_id: kernel, session_id: session, ..Default::default() })
            .await
            .unwrap();
    }
    let mut missing = kernel_request(&uuid::Uuid::new_v4().to_string(), &uuid::Uuid::new_v4().to_string(), &s.image);
    missing.session_type = "batch".into();
    let err = client.create_kernels(missing).await.unwrap_err();
    assert!(err.message().contains("startup_command"), "{err}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate() {
    let Some(s) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["manager".into()]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut config = config(&s, "mtls", dir.path(), 22120);
    let _cleanup = cleanup(&s, &config);
    config.rpc.tls_cert = Some(write("server.crt", &server_cert));
    config.rpc.tls_key = Some(write("server.key", &server_key));
    config.rpc.tls_client_ca = Some(write("ca.crt", &ca.pem()));
    let running = daemon::start(config, None).await.expect("agent start");
    let endpoint = |identity: bool| {
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem()))
            .domain_name("localhost");
        if identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(&client_cert, &client_key));
        }
        tonic::transport::Endpoint::from_shared(format!("https://{}", running.rpc_addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
    };
    let channel = endpoint(true).connect().await.expect("a client with a certificate connects");
    let mut client = rpc::client(channel.clone(), running.token()).unwrap();
    assert_eq!(client.ping(pb::PingRequest { msg: "tls".into() }).await.unwrap().into_inner().msg, "tls");
    // The token is still required over mTLS.
    let err = pb::agent_client::AgentClient::new(channel).ping(pb::PingRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    // Without a client certificate the handshake fails.
    let refused = match endpoint(false).connect().await {
        Err(_) => true,
        Ok(channel) => rpc::client(channel, running.token()).unwrap().ping(pb::PingRequest::default()).await.is_err(),
    };
    assert!(refused, "a client without a certificate was admitted");
    // Plain text is refused too.
    let plain =
        tonic::transport::Endpoint::from_shared(format!("http://{}", running.rpc_addr)).unwrap().connect().await;
    if let Ok(channel) = plain {
        assert!(rpc::client(channel, running.token()).unwrap().ping(pb::PingRequest::default()).await.is_err());
    }
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_settings_come_from_etcd() {
    let Some(s) = services() else { return };
    let Some(endpoints) = service_env("BAI_TEST_ETCD_ENDPOINTS") else { return };
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&s, "etcd", dir.path(), 22140);
    let _cleanup = cleanup(&s, &config);
    let namespace = config.agent.id.clone();
    let mut etcd = etcd_client::Client::connect(&endpoints, None).await.expect("etcd");
    let token = format!("etcd-token-{namespace}");
    etcd.put(format!("/bai/{namespace}/config/agent/rpc-token"), token.clone(), None).await.unwrap();
    etcd.put(format!("/bai/{namespace}/config/redis/url"), s.redis.clone(), None).await.unwrap();
    config.rpc.token = None;
    config.events.redis_url = String::new();
    config.etcd.endpoints = endpoints;
    config.etcd.namespace = namespace.clone();
    let id = config.agent.id.clone();
    let mut events = Events::new(&s.redis, &id).await;
    let running = daemon::start(config, None).await.expect("agent start with etcd settings");
    assert_eq!(running.token(), token);
    let mut client = connect(&running.rpc_addr.to_string(), &token).await;
    client.get_status(pb::GetStatusRequest {}).await.unwrap();
    events.wait_for("a heartbeat through etcd's Redis", |e| e.name() == "agent_heartbeat").await;
    running.shutdown().await.unwrap();
    etcd.delete(format!("/bai/{namespace}/"), Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
}

/// The embedded defaults: the process backend and the in-process bus, no Docker or Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_backend_and_memory_bus_run_kernels_without_docker() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = AgentConfig::default();
    c.agent.id = unique_id("process");
    c.agent.rpc_listen = "127.0.0.1:0".parse().unwrap();
    c.agent.metrics_listen = "127.0.0.1:0".parse().unwrap();
    c.rpc.token = Some("process-token".into());
    c.events.backend = EventBackend::Memory;
    c.container.backend = bai_agent::config::ContainerBackend::Process;
    c.container.process_root = dir.path().join("process");
    c.container.scratch_root = dir.path().join("scratch");
    c.container.scratch_type = ScratchType::Hostdir;
    c.resource.reserved_cpu = rust_decimal::Decimal::ZERO;
    c.resource.reserved_mem = "256m".parse().unwrap();
    let bus = std::sync::Arc::new(bai_agent_runtime::bus::MemoryBus::default());
    let mut events = bus.subscribe().await.unwrap();
    let running = daemon::start(c, Some(bus.clone())).await.expect("agent start on the process backend");
    let mut client = connect(&running.rpc_addr.to_string(), running.token()).await;
    let (session, kernel) = new_ids();
    let mut request = kernel_request(&session, &kernel, bai_agent_runtime::runtime::process::HOST_IMAGE);
    request.kernels[0].cmd = vec!["sleep".into(), "600".into()];
    client.create_kernels(request).await.expect("create on the process backend");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("an event").unwrap().unwrap();
        if e.event.name() == "kernel_started" {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    let (out, result) = execute(
        &mut client,
        pb::ExecuteRequest {
            kernel_id: kernel.clone(),
            mode: "query".into(),
            code: "print(sum(range(10)))".into(),
            flush_timeout: 20.0,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((out.as_str(), result.status.as_str()), ("45\n", "finished"));
    client
        .upload_file(pb::UploadFileRequest {
            kernel_id: kernel.clone(),
            path: "notes.txt".into(),
            content: b"abc".to_vec(),
        })
        .await
        .unwrap();
    let listing = client
        .list_files(pb::ListFilesRequest { kernel_id: kernel.clone(), path: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(listing.files.iter().any(|f| f.filename == "notes.txt" && f.size == 3), "{listing:?}");
    let mut with_mount = kernel_request(&uuid::Uuid::new_v4().to_string(), &uuid::Uuid::new_v4().to_string(), "host");
    with_mount.kernels[0].mounts =
        vec![pb::VFolderMount { folder: "f".into(), name: "f".into(), permission: "rw".into() }];
    let err = client.create_kernels(with_mount).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("mounts"), "{err}");
    client
        .destroy_kernel(pb::DestroyKernelRequest { kernel_id: kernel, session_id: session, ..Default::default() })
        .await
        .unwrap();
    assert!(client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner().kernels.is_empty());
    running.shutdown().await.unwrap();
}

async fn watcher_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("watcher connect");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: w\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_restarts_a_crashed_agent_which_recovers_its_kernels() {
    let Some(s) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&s, "watcher", dir.path(), 22160);
    let _cleanup = cleanup(&s, &config);
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    config.agent.rpc_listen = free();
    config.agent.metrics_listen = free();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let token = config.rpc.token.clone().unwrap();
    let addr = config.agent.rpc_listen.to_string();
    let watcher_addr = free();
    let mut watcher = std::process::Command::new(env!("CARGO_BIN_EXE_bai-agent"))
        .arg("--config")
        .arg(&path)
        .args(["watcher", "--listen", &watcher_addr.to_string(), "--token", "watch-token"])
        .env("BAI_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the watcher");
    let mut client = connect(&addr, &token).await;
    let (session, kernel) = new_ids();
    client.create_kernels(kernel_request(&session, &kernel, &s.image)).await.unwrap();

    let (code, _) = watcher_call(watcher_addr, "GET", "/status", None).await;
    assert_eq!(code, 401);
    let (code, _) = watcher_call(watcher_addr, "GET", "/status", Some("wrong")).await;
    assert_eq!(code, 401);
    let (code, status) = watcher_call(watcher_addr, "GET", "/status", Some("watch-token")).await;
    assert_eq!((code, status["state"].as_str()), (200, Some("running")), "{status}");
    let first_pid = status["pid"].as_u64().unwrap();

    // Crash: the watcher restarts the agent, which takes its kernel back.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let restarted = loop {
        let (_, status) = watcher_call(watcher_addr, "GET", "/status", Some("watch-token")).await;
        if status["restarts"] == 1 && status["state"] == "running" {
            break status;
        }
        assert!(Instant::now() < deadline, "no restart: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(restarted["last_exit"], "signal 9");
    assert_ne!(restarted["pid"].as_u64().unwrap(), first_pid);
    let mut client = connect(&addr, &token).await;
    let after = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(after.kernels.len(), 1, "the kernel was recovered");
    assert_eq!(after.kernels[0].kernel_id, kernel);

    // Stop is final until start.
    let (_, stopped) = watcher_call(watcher_addr, "POST", "/stop", Some("watch-token")).await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(watcher_call(watcher_addr, "GET", "/status", Some("watch-token")).await.1["state"], "stopped");
    let (_, started) = watcher_call(watcher_addr, "POST", "/start", Some("watch-token")).await;
    assert_eq!(started["state"], "running", "{started}");
    let mut client = connect(&addr, &token).await;
    client
        .destroy_kernel(pb::DestroyKernelRequest { kernel_id: kernel, session_id: session, ..Default::default() })
        .await
        .unwrap();
    let (_, stopped) = watcher_call(watcher_addr, "POST", "/stop", Some("watch-token")).await;
    assert_eq!(stopped["state"], "stopped");
    let _ = watcher.kill();
    let _ = watcher.wait();
}
