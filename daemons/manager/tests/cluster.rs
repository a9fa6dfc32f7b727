//! A production-shaped cluster, every part a real process or service: one `bai-manager` on
//! PostgreSQL, Redis and etcd, and three `bai-agent` processes on Docker, each with its own id,
//! RPC port and host-port range. The RPC token and the Redis URL come from etcd, for the
//! manager and the agents alike; the manager registers under `nodes/manager/<id>`.
//!
//! 1. A multi-node session of three kernels, each as large as a whole agent, spans the three
//!    agents and runs.
//! 2. 200 sessions created at once (each on its own connection): every one ends up RUNNING or
//!    PENDING with a reason, the RUNNING ones fill the agents exactly, and no agent is ever
//!    over-committed (checked while they arrive and once they settle).
//! 3. `kill -9` of an agent: it becomes LOST within the heartbeat timeout and its sessions keep
//!    their kernels (the containers outlive the agent process); restarted on the same
//!    configuration it is ALIVE again and holds the same kernels.
//! 4. Everything is destroyed: the agents' slots come back and no container is left.
//!
//! Needs `BAI_TEST_PG_URL`, `BAI_TEST_REDIS_URL`, `BAI_TEST_ETCD_ENDPOINTS`,
//! `BAI_TEST_DOCKER_HOST` and `BAI_TEST_KERNEL_IMAGE` (scripts/test sets them), and the
//! `bai-agent` binary beside this test's (`cargo nextest run --workspace` builds it; or set
//! `BAI_AGENT_BIN`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bai_agent_runtime::rpc::pb;
use bai_core::{AgentId, AgentStatus, ResourceSlot, SessionId, SessionStatus};
use bai_manager::agent_client::AgentClients;
use bai_manager::db::entities::{agent, kernel, session};
use bai_manager::db::repo;
use bai_test_support::{service_env, AgentContainers};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{json, Value};

mod common;

const TOKEN: &str = "cluster-test-token";
const SESSIONS: usize = 200;
/// Ports of this test: the API, three agents' RPC, and their host-port ranges.
const API_PORT: u16 = 23800;
const RPC_PORTS: [u16; 3] = [23801, 23802, 23803];
const HOST_PORTS: [(u16, u16); 3] = [(23810, 23819), (23820, 23829), (23830, 23839)];

/// A daemon child process, killed (SIGKILL) when dropped; its log is printed if the test fails.
struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &str, program: &Path, args: &[&str], log: PathBuf) -> Self {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .env("BAI_LOG", std::env::var("BAI_CLUSTER_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        Self { name: name.into(), child: Some(child), log }
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_9();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let lines: Vec<&str> = lines.into_iter().filter(|l| !l.contains("scratch quota NOT enforced")).collect();
            eprintln!("--- {} (last 80 lines) ---\n{}", self.name, lines[lines.len().saturating_sub(80)..].join("\n"));
        }
    }
}

/// The `bai-agent` binary: `BAI_AGENT_BIN`, else beside this test's binary.
fn agent_binary() -> PathBuf {
    if let Ok(path) = std::env::var("BAI_AGENT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/cluster-<hash> → target/<profile>/bai-agent
    let path = exe.parent().and_then(Path::parent).expect("target/<profile>").join("bai-agent");
    assert!(
        path.exists(),
        "{} does not exist: build it with `cargo build -p bai-agent` (the workspace test run builds it) \
         or set BAI_AGENT_BIN",
        path.display()
    );
    path
}

/// `url` with its database index (`/N`) replaced, so this test's events stay apart from other
/// tests' on the same Redis.
fn redis_db(url: &str, index: u8) -> String {
    let (scheme, rest) = url.split_once("://").expect("a redis:// URL");
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}/{index}")
}

struct Cluster {
    dir: tempfile::TempDir,
    docker: String,
    etcd: String,
    namespace: String,
}

impl Cluster {
    fn agent_id(&self, n: usize) -> String {
        format!("i-cluster-{}-{n}", std::process::id())
    }

    fn write_agent_config(&self, n: usize) -> PathBuf {
        let root = self.dir.path().join(format!("agent-{n}"));
        std::fs::create_dir_all(&root).unwrap();
        let (low, high) = HOST_PORTS[n];
        let config = format!(
            "[agent]\nid = \"{id}\"\nscaling-group = \"default\"\nrpc-listen = \"127.0.0.1:{rpc}\"\n\
             metrics-listen = \"127.0.0.1:0\"\nheartbeat-interval = 0.5\nsync-interval = 2.0\nstat-interval = 2.0\n\
             [events]\nbackend = \"redis\"\n\
             [etcd]\nendpoints = [\"{etcd}\"]\nnamespace = \"{ns}\"\n\
             [container]\nbackend = \"docker\"\ndocker-host = \"{docker}\"\nbind-host = \"127.0.0.1\"\n\
             port-range = [{low}, {high}]\nscratch-root = \"{root}/scratch\"\nscratch-type = \"hostdir\"\n\
             vfolder-root = \"{vf}\"\nstop-timeout = 1.0\nprocess-root = \"{root}/process\"\n\
             [resource]\nreserved-cpu = 0\nreserved-mem = \"1g\"\n",
            id = self.agent_id(n),
            rpc = RPC_PORTS[n],
            etcd = self.etcd,
            ns = self.namespace,
            docker = self.docker,
            root = root.display(),
            vf = self.dir.path().join("vfolders").display(),
        );
        let path = root.join("agent.toml");
        std::fs::write(&path, config).unwrap();
        path
    }

    fn start_agent(&self, n: usize) -> Daemon {
        let config = self.dir.path().join(format!("agent-{n}/agent.toml"));
        let log = self.dir.path().join(format!("agent-{n}.log"));
        Daemon::spawn(&self.agent_id(n), &agent_binary(), &["--config", config.to_str().unwrap()], log)
    }
}

/// The test's sessions with their kernels.
async fn sessions(db: &DatabaseConnection, ids: &[SessionId]) -> Vec<(session::Model, Vec<kernel::Model>)> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(repo::get_session_with_kernels(db, *id).await.unwrap().unwrap_or_else(|| panic!("{id} vanished")));
    }
    out
}

async fn agents(db: &DatabaseConnection, cluster: &Cluster) -> Vec<agent::Model> {
    let mut out = Vec::new();
    for n in 0..3 {
        let id = AgentId::new(cluster.agent_id(n)).unwrap();
        out.push(repo::get_agent(db, &id).await.unwrap().unwrap_or_else(|| panic!("no agent {id}")));
    }
    out
}

/// No agent holds more than it has, and what it holds is exactly what its live kernels asked
/// for (`strict`: every kernel of the agent is settled).
fn check_not_overcommitted(agents: &[agent::Model], all: &[(session::Model, Vec<kernel::Model>)], strict: bool) {
    let mut placed: BTreeMap<String, ResourceSlot> = BTreeMap::new();
    for (_, kernels) in all {
        for k in kernels.iter().filter(|k| !k.status.0.is_terminal()) {
            if let Some(agent) = &k.agent {
                *placed.entry(agent.clone()).or_default() += &k.requested_slots.0;
            }
        }
    }
    for a in agents {
        assert!(
            a.occupied_slots.0 <= a.available_slots.0,
            "agent {} is over-committed: {:?} of {:?}",
            a.id,
            a.occupied_slots.0,
            a.available_slots.0
        );
        let kernels = placed.get(&a.id).cloned().unwrap_or_default();
        assert!(kernels <= a.available_slots.0, "kernels placed on {} exceed it: {kernels:?}", a.id);
        if strict {
            assert!(
                kernels == a.occupied_slots.0,
                "agent {} counts {:?} occupied but its kernels asked for {kernels:?}",
                a.id,
                a.occupied_slots.0
            );
        }
    }
}

async fn wait_agent_status(db: &DatabaseConnection, id: &str, status: AgentStatus, limit: Duration) {
    common::wait_for(limit, &format!("agent {id} did not become {status}"), || async {
        let a = repo::get_agent(db, &AgentId::new(id).unwrap()).await.map_err(|e| e.to_string())?.ok_or("no row")?;
        if a.status.0 == status {
            Ok(())
        } else {
            Err(a.status.0.to_string())
        }
    })
    .await
}

/// Destroys a session the normal way: its agents' slots count as free only once the agents
/// report its kernels gone (a forced destroy frees them at once, before the containers are).
async fn destroy(api: SocketAddr, s: &session::Model) {
    let reply = common::request(api, Some(common::USER), "DELETE", &format!("/session/{}", s.id), None).await;
    assert!(matches!(reply.status, 200 | 204 | 404), "destroying {}: {reply:?}", s.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agent_processes_on_postgres_redis_and_etcd() {
    let (Some(pg), Some(redis), Some(etcd), Some(docker), Some(image)) = (
        service_env("BAI_TEST_PG_URL"),
        service_env("BAI_TEST_REDIS_URL"),
        service_env("BAI_TEST_ETCD_ENDPOINTS"),
        service_env("BAI_TEST_DOCKER_HOST"),
        service_env("BAI_TEST_KERNEL_IMAGE"),
    ) else {
        return;
    };
    let etcd = etcd.split(',').next().unwrap().trim().to_string();
    let cluster = Cluster {
        dir: tempfile::tempdir().unwrap(),
        docker: docker.clone(),
        etcd: etcd.clone(),
        namespace: common::backends::unique("cluster_"),
    };
    let _containers: Vec<AgentContainers> =
        (0..3).map(|n| AgentContainers { docker: docker.clone(), agent: cluster.agent_id(n) }).collect();

    // A fresh database; cluster-wide values in etcd.
    let admin = bai_manager::db::connect(&pg).await.unwrap();
    let db_name = common::backends::unique("bai_cluster_");
    admin.execute_unprepared(&format!("CREATE DATABASE {db_name}")).await.unwrap();
    let db_url = common::backends::with_database(&pg, &db_name);
    let mut kv = etcd_client::Client::connect([etcd.as_str()], None).await.unwrap();
    let prefix = format!("/bai/{}/config", cluster.namespace);
    kv.put(format!("{prefix}/agent/rpc-token"), TOKEN, None).await.unwrap();
    kv.put(format!("{prefix}/redis/url"), redis_db(&redis, 11), None).await.unwrap();

    let dir = cluster.dir.path();
    let mut fixture: Value = serde_json::from_str(common::FIXTURE).unwrap();
    for policy in fixture["keypair_resource_policies"].as_array_mut().unwrap() {
        policy["max_concurrent_sessions"] = json!(1000);
    }
    std::fs::write(dir.join("fixture.json"), fixture.to_string()).unwrap();
    std::fs::write(
        dir.join("manager.toml"),
        format!(
            "[manager]\nid = \"manager-cluster\"\napi-listen = \"127.0.0.1:{API_PORT}\"\nmetrics-listen = \"127.0.0.1:0\"\n\
             heartbeat-timeout = 3.0\nschedule-interval = 0.3\n\
             [db]\nurl = \"{db_url}\"\n[events]\nbackend = \"redis\"\n\
             [etcd]\nendpoints = [\"{etcd}\"]\nnamespace = \"{ns}\"\n\
             [storage]\nroot = \"{vf}\"\n",
            ns = cluster.namespace,
            vf = dir.join("vfolders").display(),
        ),
    )
    .unwrap();
    let api: SocketAddr = ([127, 0, 0, 1], API_PORT).into();
    let _manager = Daemon::spawn(
        "bai-manager",
        Path::new(env!("CARGO_BIN_EXE_bai-manager")),
        &[
            "--config",
            dir.join("manager.toml").to_str().unwrap(),
            "start-server",
            "--fixture",
            dir.join("fixture.json").to_str().unwrap(),
        ],
        dir.join("manager.log"),
    );
    let mut daemons: Vec<Daemon> = (0..3)
        .map(|n| {
            cluster.write_agent_config(n);
            cluster.start_agent(n)
        })
        .collect();
    common::wait_for(Duration::from_secs(60), "the manager did not listen", || async {
        tokio::net::TcpStream::connect(api).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    let db = bai_manager::db::connect(&db_url).await.unwrap();
    common::wait_for(Duration::from_secs(60), "the three agents did not all register ALIVE", || async {
        let alive = repo::list_agents(&db, None, Some(AgentStatus::Alive)).await.map_err(|e| e.to_string())?;
        let ids: BTreeSet<String> = alive.iter().map(|a| a.id.clone()).collect();
        if (0..3).all(|n| ids.contains(&cluster.agent_id(n))) {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    let node = kv.get(format!("/bai/{}/nodes/manager/manager-cluster", cluster.namespace), None).await.unwrap();
    assert_eq!(node.kvs().first().map(|kv| kv.value_str().unwrap().to_string()).as_deref(), Some("up"));
    let capacity = agents(&db, &cluster).await[0].available_slots.0.clone();
    assert!(!capacity.get("cpu").is_zero(), "the agents report no cpu: {capacity:?}");
    let whole_cpu = capacity.get("cpu").to_string();
    eprintln!("each agent has {capacity:?}");

    // 1. A multi-node session as large as the three agents together.
    let mut body = common::create_body("cluster-mn", &image, &whole_cpu, "256m", false);
    body["clusterSize"] = json!(3);
    body["clusterMode"] = json!("multi-node");
    let reply = common::request(api, Some(common::USER), "POST", "/session", Some(&body)).await;
    assert!(matches!(reply.status, 200 | 201), "creating the multi-node session: {reply:?}");
    let mn: SessionId = reply.json()["sessionId"].as_str().unwrap().parse().unwrap();
    let (s, kernels) = common::wait_for(Duration::from_secs(90), "the multi-node session did not run", || async {
        let (s, k) = repo::get_session_with_kernels(&db, mn).await.map_err(|e| e.to_string())?.ok_or("gone")?;
        match s.status.0 {
            SessionStatus::Running => Ok((s, k)),
            st if st.is_dead() => panic!("the multi-node session ended: {st} {:?}", s.status_info),
            st => Err(format!("{st} {:?}", s.status_info)),
        }
    })
    .await;
    let spanned: BTreeSet<String> = kernels.iter().filter_map(|k| k.agent.clone()).collect();
    assert_eq!(kernels.len(), 3, "{kernels:?}");
    assert_eq!(spanned.len(), 3, "the kernels are not on three agents: {spanned:?}");
    assert_eq!(kernels.iter().filter(|k| k.cluster_role == "main").count(), 1, "one main kernel");
    check_not_overcommitted(&agents(&db, &cluster).await, &[(s.clone(), kernels)], true);
    destroy(api, &s).await;
    common::wait_for(Duration::from_secs(60), "the multi-node session did not end and free the agents", || async {
        let s = repo::get_session(&db, mn).await.map_err(|e| e.to_string())?.ok_or("gone")?;
        let busy: Vec<String> = agents(&db, &cluster)
            .await
            .iter()
            .filter(|a| !a.occupied_slots.0.is_zero())
            .map(|a| a.id.clone())
            .collect();
        if s.status.0.is_dead() && busy.is_empty() {
            Ok(())
        } else {
            Err(format!("{} with {busy:?} still occupied", s.status.0))
        }
    })
    .await;

    // 2. 200 sessions at once, each half an agent: six run, the rest wait with a reason.
    let half_cpu = (capacity.get("cpu") / rust_decimal::Decimal::TWO).to_string();
    let started = Instant::now();
    let creations = (0..SESSIONS).map(|i| {
        let (image, half_cpu) = (image.clone(), half_cpu.clone());
        tokio::spawn(async move {
            common::create_session(api, &format!("cluster-{i:03}"), &image, &half_cpu, "128m", true).await
        })
    });
    let mut ids = Vec::with_capacity(SESSIONS);
    for c in futures::future::join_all(creations).await {
        ids.push(c.expect("a creation task panicked"));
    }
    eprintln!("{SESSIONS} sessions accepted in {:?}", started.elapsed());
    let settled = |s: &session::Model| match s.status.0 {
        SessionStatus::Running => true,
        SessionStatus::Pending => s.status_info.as_deref().is_some_and(|i| !i.is_empty()),
        _ => false,
    };
    let all = common::wait_for(Duration::from_secs(180), "the 200 sessions did not settle", || async {
        let all = sessions(&db, &ids).await;
        // While they arrive, too: never more placed on an agent than it has.
        check_not_overcommitted(&agents(&db, &cluster).await, &all, false);
        let unsettled: Vec<String> = all
            .iter()
            .filter(|(s, _)| !settled(s))
            .map(|(s, _)| format!("{} {} {:?}", s.name, s.status.0, s.status_info))
            .take(5)
            .collect();
        let running = all.iter().filter(|(s, _)| s.status.0 == SessionStatus::Running).count();
        if unsettled.is_empty() && running == 6 {
            Ok(all)
        } else {
            Err(format!("{running} running; unsettled: {unsettled:?}"))
        }
    })
    .await;
    let agent_rows = agents(&db, &cluster).await;
    check_not_overcommitted(&agent_rows, &all, true);
    let mut per_agent: BTreeMap<String, usize> = BTreeMap::new();
    for (s, kernels) in all.iter().filter(|(s, _)| s.status.0 == SessionStatus::Running) {
        assert_eq!(kernels.len(), 1, "{}", s.name);
        *per_agent.entry(kernels[0].agent.clone().expect("a running kernel has an agent")).or_default() += 1;
    }
    assert_eq!(per_agent.values().copied().collect::<Vec<_>>(), [2, 2, 2], "two sessions per agent: {per_agent:?}");
    let reasons: BTreeSet<&str> = all
        .iter()
        .filter(|(s, _)| s.status.0 == SessionStatus::Pending)
        .filter_map(|(s, _)| s.status_info.as_deref())
        .collect();
    eprintln!("settled after {:?}; pending reasons: {reasons:?}", started.elapsed());

    // 3. kill -9 of the first agent: LOST, its sessions keep their kernels; back on restart.
    let victim = cluster.agent_id(0);
    let on_victim: BTreeSet<String> = all
        .iter()
        .filter(|(s, k)| s.status.0 == SessionStatus::Running && k[0].agent.as_deref() == Some(victim.as_str()))
        .map(|(_, k)| k[0].id.to_string())
        .collect();
    assert_eq!(on_victim.len(), 2);
    daemons[0].kill_9();
    let killed = Instant::now();
    wait_agent_status(&db, &victim, AgentStatus::Lost, Duration::from_secs(20)).await;
    eprintln!("LOST {:?} after the kill (heartbeat timeout 3 s)", killed.elapsed());
    for (s, _) in sessions(&db, &ids).await.iter().filter(|(_, k)| on_victim.contains(&k[0].id.to_string())) {
        assert_eq!(s.status.0, SessionStatus::Running, "{} on the lost agent: {:?}", s.name, s.status_info);
    }
    daemons[0] = cluster.start_agent(0);
    wait_agent_status(&db, &victim, AgentStatus::Alive, Duration::from_secs(30)).await;
    let clients = AgentClients::new(TOKEN, None).unwrap();
    let held: BTreeSet<String> =
        common::wait_for(Duration::from_secs(30), "the restarted agent lost kernels", || async {
            let mut client = clients.client(&format!("127.0.0.1:{}", RPC_PORTS[0])).map_err(|e| e.to_string())?;
            let status = client.get_status(pb::GetStatusRequest {}).await.map_err(|e| e.to_string())?.into_inner();
            let held: BTreeSet<String> = status.kernels.iter().map(|k| k.kernel_id.clone()).collect();
            if held == on_victim {
                Ok(held)
            } else {
                Err(format!("holds {held:?}, expected {on_victim:?}"))
            }
        })
        .await;
    eprintln!("the restarted agent holds {} kernels again", held.len());
    check_not_overcommitted(&agents(&db, &cluster).await, &sessions(&db, &ids).await, true);

    // 4. Everything destroyed: the waiting sessions first (so none is placed meanwhile).
    let all = sessions(&db, &ids).await;
    for (s, _) in all.iter().filter(|(s, _)| s.status.0 == SessionStatus::Pending) {
        destroy(api, s).await;
    }
    for (s, _) in all.iter().filter(|(s, _)| !s.status.0.is_dead()) {
        destroy(api, s).await;
    }
    common::wait_for(Duration::from_secs(120), "the cluster did not empty", || async {
        let alive = sessions(&db, &ids).await.iter().filter(|(s, _)| !s.status.0.is_dead()).count();
        let busy: Vec<String> = agents(&db, &cluster)
            .await
            .iter()
            .filter(|a| !a.occupied_slots.0.is_zero())
            .map(|a| a.id.clone())
            .collect();
        let out = Command::new("docker")
            .args(["-H", &docker, "ps", "-aq", "--filter", &format!("label=ai.backend.session-id={mn}")])
            .output()
            .map_err(|e| e.to_string())?;
        let mut containers = String::from_utf8_lossy(&out.stdout).split_whitespace().count();
        for n in 0..3 {
            let filter = format!("label=ai.backend.owner={}", cluster.agent_id(n));
            let out = Command::new("docker").args(["-H", &docker, "ps", "-q", "--filter", &filter]).output();
            containers += out.map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().count()).unwrap_or(0);
        }
        if alive == 0 && busy.is_empty() && containers == 0 {
            Ok(())
        } else {
            Err(format!("{alive} sessions alive, {busy:?} occupied, {containers} containers running"))
        }
    })
    .await;

    drop(daemons);
    db.close().await.unwrap();
    let _ =
        kv.delete(format!("/bai/{}", cluster.namespace), Some(etcd_client::DeleteOptions::new().with_prefix())).await;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).await.unwrap();
}
