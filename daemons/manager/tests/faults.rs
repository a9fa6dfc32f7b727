//! Faults, with real components and no mocks:
//!
//! 1. a kernel's Docker container removed outside bai: the session ends with the agent's
//!    reason and the agent's slots come back (needs `BAI_TEST_DOCKER_HOST` and
//!    `BAI_TEST_KERNEL_IMAGE`);
//! 2. the Redis of the event bus killed and restarted: heartbeats resume, new sessions run and
//!    old ones can be destroyed (a private `redis-server`; runs when `BAI_TEST_REDIS_URL` is
//!    set, which says scripts/test installed Redis);
//! 3. the `bai-manager` process (with its embedded agent) killed with SIGKILL while sessions
//!    are being scheduled, then restarted on the same database: no session is lost, none is
//!    placed twice, none stays stuck mid-dispatch (lost creations are sent again), no agent is
//!    over-committed.
//!
//! Every child process and container is removed when a test ends, passed or not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bai_agent::config::ContainerBackend;
use bai_core::{AgentId, AgentStatus, ResourceSlot, SessionId, SessionStatus};
use bai_manager::config::EventBackend;
use bai_manager::db::repo;
use bai_manager::local::{self, LocalManager};
use bai_test_support::service_env;
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};

mod common;

/// Waits until the session has `status`.
async fn wait_status(db: &DatabaseConnection, id: SessionId, status: SessionStatus, limit: Duration) {
    common::wait_for(limit, &format!("session {id} did not become {status}"), || async {
        let s = repo::get_session(db, id).await.map_err(|e| e.to_string())?.ok_or("no such session")?;
        if s.status.0 == status {
            Ok(())
        } else {
            Err(format!("{} ({:?})", s.status.0, s.status_info))
        }
    })
    .await
}

async fn agent_row(db: &DatabaseConnection, id: &str) -> bai_manager::db::entities::agent::Model {
    repo::get_agent(db, &AgentId::new(id).unwrap()).await.unwrap().unwrap_or_else(|| panic!("no agent {id}"))
}

fn is_zero(slots: &ResourceSlot) -> bool {
    *slots == ResourceSlot::new()
        || serde_json::to_value(slots).unwrap().as_object().unwrap().values().all(|v| v == "0")
}

/// The daemons' logs on the test's output when `BAI_LOG` is set (e.g. `BAI_LOG=warn`).
fn logs() {
    if let Ok(filter) = std::env::var("BAI_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

// 1. A container killed outside bai -------------------------------------------------------

/// Removes the agent's containers when the test ends, passed or not.
struct Containers {
    docker: String,
    agent: String,
}

impl Containers {
    fn ids(&self, label: &str) -> Vec<String> {
        let out = Command::new("docker")
            .args(["-H", &self.docker, "ps", "-aq", "--filter", label])
            .output()
            .expect("the docker command line");
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = self.ids(&format!("label=ai.backend.owner={}", self.agent));
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["-H", &self.docker, "rm", "-f"]).args(&ids).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_outside_bai_ends_its_session_and_frees_the_agent() {
    let (Some(docker), Some(image)) = (service_env("BAI_TEST_DOCKER_HOST"), service_env("BAI_TEST_KERNEL_IMAGE"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, mut agent) = local::configs(dir.path());
    agent.agent.id = format!("i-faults-docker-{}", std::process::id());
    agent.agent.sync_interval = 1.0;
    agent.container.backend = ContainerBackend::Docker;
    agent.container.docker_host = docker.clone();
    agent.container.bind_host = "127.0.0.1".into();
    agent.container.port_range = [23400, 23419];
    let containers = Containers { docker, agent: agent.agent.id.clone() };
    let agent_id = agent.agent.id.clone();
    let local = LocalManager::start_with(config, agent).await.unwrap();
    let db = local.manager.db().clone();

    let id = common::create_session(local.api_addr, "faults-docker", &image, "1", "256m", false).await;
    wait_status(&db, id, SessionStatus::Running, Duration::from_secs(60)).await;
    assert!(!is_zero(&agent_row(&db, &agent_id).await.occupied_slots.0), "a running kernel occupies slots");
    let found = containers.ids(&format!("label=ai.backend.session-id={id}"));
    assert_eq!(found.len(), 1, "one container for session {id}: {found:?}");

    // Removed behind bai's back.
    let out = Command::new("docker").args(["-H", &containers.docker, "rm", "-f", &found[0]]).output().unwrap();
    assert!(out.status.success(), "docker rm -f: {}", String::from_utf8_lossy(&out.stderr));

    let ended =
        common::wait_for(Duration::from_secs(30), "the session did not end after its container was removed", || {
            let db = db.clone();
            async move {
                let s = repo::get_session(&db, id).await.map_err(|e| e.to_string())?.ok_or("no such session")?;
                if matches!(s.status.0, SessionStatus::Terminated | SessionStatus::Error) {
                    Ok(s)
                } else {
                    Err(format!("{} ({:?})", s.status.0, s.status_info))
                }
            }
        })
        .await;
    let info = ended.status_info.clone().unwrap_or_default();
    eprintln!("the session ended {} ({info})", ended.status.0);
    assert!(
        ["self-terminated", "container-not-found"].iter().any(|r| info.contains(r)),
        "the session ended as {} with status_info {info:?}",
        ended.status.0
    );
    let (_, kernels) = repo::get_session_with_kernels(&db, id).await.unwrap().unwrap();
    assert!(kernels.iter().all(|k| k.status.0.is_terminal()), "{kernels:?}");
    common::wait_for(Duration::from_secs(10), "the agent's slots did not come back", || {
        let (db, agent_id) = (db.clone(), agent_id.clone());
        async move {
            let a = agent_row(&db, &agent_id).await;
            if is_zero(&a.occupied_slots.0) {
                Ok(())
            } else {
                Err(format!("occupied {:?}", a.occupied_slots.0))
            }
        }
    })
    .await;
    // The agent is still usable.
    assert_eq!(agent_row(&db, &agent_id).await.status.0, AgentStatus::Alive);
    local.shutdown().await;
}

// 2. Redis restarted ----------------------------------------------------------------------

/// A private `redis-server` on a fixed port, killed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server on PATH (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {port} within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child: Some(child), port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port below 32768 (outside Linux's ephemeral range, so nothing grabs it while a
/// daemon restarts).
fn free_port(from: u16) -> u16 {
    let base = from + (std::process::id() % 500) as u16 * 4;
    (base..base + 2000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 32768")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_reconnected_to() {
    if service_env("BAI_TEST_REDIS_URL").is_none() {
        return;
    }
    logs();
    let mut redis = Redis::start(free_port(26000));
    let dir = tempfile::tempdir().unwrap();
    let (mut config, mut agent) = local::configs(dir.path());
    config.events.backend = EventBackend::Redis;
    config.events.redis_url = redis.url();
    config.manager.heartbeat_timeout = 2.0;
    agent.agent.id = format!("i-faults-redis-{}", std::process::id());
    let agent_id = agent.agent.id.clone();
    // The embedded agent shares the manager's bus: both talk to the private Redis.
    let local = LocalManager::start_with(config, agent).await.unwrap();
    assert_eq!(local.manager.bus().name(), "redis");
    let db = local.manager.db().clone();

    let old = common::create_session(local.api_addr, "faults-before", "host", "0.5", "64m", false).await;
    wait_status(&db, old, SessionStatus::Running, Duration::from_secs(30)).await;

    // Redis dies: heartbeats stop reaching the manager, which marks the agent LOST.
    redis.kill();
    common::wait_for(Duration::from_secs(15), "the agent was not marked LOST while Redis was down", || {
        let (db, agent_id) = (db.clone(), agent_id.clone());
        async move {
            match agent_row(&db, &agent_id).await.status.0 {
                AgentStatus::Lost => Ok(()),
                other => Err(other.to_string()),
            }
        }
    })
    .await;

    // Redis is back (empty: no stream, no consumer group): the heartbeats arrive again.
    let _redis = Redis::start(redis.port);
    common::wait_for(Duration::from_secs(20), "heartbeats did not resume after Redis restarted", || {
        let (db, agent_id) = (db.clone(), agent_id.clone());
        async move {
            match agent_row(&db, &agent_id).await.status.0 {
                AgentStatus::Alive => Ok(()),
                other => Err(other.to_string()),
            }
        }
    })
    .await;

    // A new session runs (its kernel events travel over the new Redis) and the old one ends.
    let new = common::create_session(local.api_addr, "faults-after", "host", "0.5", "64m", true).await;
    wait_status(&db, new, SessionStatus::Running, Duration::from_secs(30)).await;
    let reply = common::request(local.api_addr, Some(common::USER), "DELETE", "/session/faults-before", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    wait_status(&db, old, SessionStatus::Terminated, Duration::from_secs(20)).await;
    let reply = common::request(local.api_addr, Some(common::USER), "DELETE", "/session/faults-after", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    wait_status(&db, new, SessionStatus::Terminated, Duration::from_secs(20)).await;
    local.shutdown().await;
}

// 3. kill -9 of the manager mid-scheduling -------------------------------------------------

/// A `bai-manager start-server --all-in-one` child process, killed when dropped; its kernels
/// (process-backend processes under `process_root`) are killed too.
struct ManagerProcess {
    child: Option<Child>,
    process_root: PathBuf,
    log: PathBuf,
}

impl ManagerProcess {
    fn spawn(dir: &Path, db_url: &str, api: SocketAddr) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("manager.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bai-manager"))
            .arg("--config")
            .arg(dir.join("manager.toml"))
            .args(["--db-url", db_url, "start-server", "--all-in-one", "--api-listen", &api.to_string()])
            .arg("--agent-config")
            .arg(dir.join("agent.toml"))
            .arg("--fixture")
            .arg(dir.join("fixture.json"))
            .env("BAI_LOG", "info,bai_manager::lifecycle=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bai-manager");
        Self { child: Some(child), process_root: dir.join("process"), log: dir.join("manager.log") }
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        self.kill_9();
        bai_agent_runtime::runtime::process::ProcessRuntime::kill_all(&self.process_root);
        static PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if std::thread::panicking() && !PRINTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> =
                log.lines().filter(|l| !l.contains("scratch quota") && !l.contains("session enqueued")).collect();
            eprintln!(
                "--- the manager's log (last 150 lines) ---\n{}",
                lines[lines.len().saturating_sub(150)..].join("\n")
            );
        }
    }
}

/// Waits until the manager's API answers and an agent is ALIVE.
async fn wait_ready(db_url: &str, api: SocketAddr, log: &Path) -> DatabaseConnection {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(api).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bai-manager did not listen on {api} within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = bai_manager::db::connect(db_url).await.unwrap();
    common::wait_for(Duration::from_secs(20), "the embedded agent did not register", || {
        let db = db.clone();
        async move {
            let alive = repo::list_agents(&db, None, Some(AgentStatus::Alive)).await.map_err(|e| e.to_string())?;
            if alive.is_empty() {
                Err("no ALIVE agent".into())
            } else {
                Ok(())
            }
        }
    })
    .await;
    db
}

/// Every session of the test with its kernels.
type Sessions = Vec<(bai_manager::db::entities::session::Model, Vec<bai_manager::db::entities::kernel::Model>)>;

async fn sessions(db: &DatabaseConnection, ids: &[SessionId]) -> Sessions {
    let mut out = Vec::new();
    for id in ids {
        let found = repo::get_session_with_kernels(db, *id).await.unwrap();
        out.push(found.unwrap_or_else(|| panic!("session {id} vanished")));
    }
    out
}

fn summary(all: &Sessions) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (s, _) in all {
        *counts.entry(s.status.0.to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_mid_scheduling_loses_and_doubles_nothing() {
    const SESSIONS: usize = 30;
    let dir = tempfile::tempdir().unwrap();

    let api: SocketAddr = ([127, 0, 0, 1], free_port(27000)).into();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("manager.db").display());
    std::fs::write(
        dir.path().join("manager.toml"),
        "[manager]\nid = \"manager-faults\"\nmetrics-listen = \"127.0.0.1:0\"\nschedule-interval = 0.2\n\
         heartbeat-timeout = 10.0\ndispatch-timeout = 2.0\n[events]\nbackend = \"memory\"\n\
         [agent-rpc]\ntoken = \"faults-token\"\n",
    )
    .unwrap();
    let agent_id = format!("i-faults-restart-{}", std::process::id());
    std::fs::write(
        dir.path().join("agent.toml"),
        format!(
            "[agent]\nid = \"{agent_id}\"\nrpc-listen = \"127.0.0.1:{1}\"\nmetrics-listen = \"127.0.0.1:0\"\n\
             heartbeat-interval = 0.2\nsync-interval = 1.0\n[container]\nbackend = \"process\"\n\
             scratch-root = \"{0}/scratch\"\nscratch-type = \"hostdir\"\nprocess-root = \"{0}/process\"\n\
             [resource]\nreserved-cpu = 0\nreserved-mem = \"256m\"\n",
            dir.path().display(),
            // A fixed RPC port, as deployed agents have: the kernels keep their agent's address.
            free_port(28000)
        ),
    )
    .unwrap();
    // The example users, allowed many concurrent sessions.
    let mut fixture: Value = serde_json::from_str(common::FIXTURE).unwrap();
    for policy in fixture["keypair_resource_policies"].as_array_mut().unwrap() {
        policy["max_concurrent_sessions"] = json!(100);
    }
    std::fs::write(dir.path().join("fixture.json"), fixture.to_string()).unwrap();
    let log = dir.path().join("manager.log");

    let mut manager = ManagerProcess::spawn(dir.path(), &db_url, api);
    let db = wait_ready(&db_url, api, &log).await;
    let capacity = agent_row(&db, &agent_id).await.available_slots.0;

    // Enqueue quickly; kill -9 while the scheduler is placing and dispatching them.
    let mut ids = Vec::new();
    for i in 0..SESSIONS {
        ids.push(common::create_session(api, &format!("faults-k9-{i:02}"), "host", "0.1", "64m", true).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = summary(&sessions(&db, &ids).await);
        // Some placed, not everything settled yet.
        if counts.get("RUNNING").copied().unwrap_or(0) >= 1 || Instant::now() > deadline {
            eprintln!("killing the manager with {counts:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    manager.kill_9();
    let at_kill = sessions(&db, &ids).await;
    let before = summary(&at_kill);
    let in_flight = at_kill.iter().filter(|(s, _)| s.status.0.is_being_created()).count();
    eprintln!("{in_flight} session(s) mid-dispatch at the kill");
    db.close().await.unwrap();

    // Restart on the same database.
    let _manager = ManagerProcess::spawn(dir.path(), &db_url, api);
    let db = wait_ready(&db_url, api, &log).await;

    // Settled: every session runs, waits with a reason, or ended with a reason. Sessions the
    // dead manager left mid-dispatch are either announced again by the agent (it holds their
    // kernels) or, when their create_kernels never arrived, sent again once the dispatch
    // timeout (2 s here) passes: none stays PREPARING or CREATING.
    let clients = std::sync::Arc::new(bai_manager::agent_client::AgentClients::new("faults-token", None).unwrap());
    let settled = |s: &bai_manager::db::entities::session::Model| match s.status.0 {
        SessionStatus::Running => true,
        SessionStatus::Pending => s.status_info.as_deref().is_some_and(|i| !i.is_empty()),
        st if st.is_dead() => s.status_info.as_deref().is_some_and(|i| !i.is_empty()),
        _ => false,
    };
    let all = common::wait_for(Duration::from_secs(30), "the sessions did not settle after the restart", || {
        let (db, ids, before) = (db.clone(), ids.clone(), before.clone());
        async move {
            let all = sessions(&db, &ids).await;
            let unsettled: Vec<String> = all
                .iter()
                .filter(|(s, _)| !settled(s))
                .map(|(s, _)| format!("{} {} ({:?})", s.name, s.status.0, s.status_info))
                .collect();
            if unsettled.is_empty() {
                Ok(all)
            } else {
                Err(format!("before the kill {before:?}; unsettled: {unsettled:?}"))
            }
        }
    })
    .await;
    eprintln!("after the restart: {:?}", summary(&all));
    assert_eq!(all.len(), SESSIONS, "every enqueued session still exists");

    // No kernel placed twice, each running kernel on one known agent; the agent's occupied
    // slots are exactly what its running kernels asked for, and within its capacity.
    let mut expected: BTreeMap<String, ResourceSlot> = BTreeMap::new();
    for (s, kernels) in &all {
        assert_eq!(kernels.len(), 1, "{} has {} kernels", s.name, kernels.len());
        let k = &kernels[0];
        match s.status.0 {
            SessionStatus::Running => {
                let agent = k.agent.clone().unwrap_or_else(|| panic!("running {} has no agent", s.name));
                assert_eq!(agent, agent_id, "{} placed on an unknown agent", s.name);
                assert_eq!(s.agent_ids.as_ref().map(|a| a.0.clone()), Some(vec![agent.clone()]), "{}", s.name);
                *expected.entry(agent).or_default() += &k.requested_slots.0;
            }
            SessionStatus::Pending => assert!(k.agent.is_none(), "pending {} holds agent {:?}", s.name, k.agent),
            _ => assert!(k.status.0.is_terminal(), "{} ended but its kernel is {}", s.name, k.status.0),
        }
    }
    let agent = agent_row(&db, &agent_id).await;
    let want = expected.get(&agent_id).cloned().unwrap_or_default();
    assert!(
        agent.occupied_slots.0 <= want && want <= agent.occupied_slots.0,
        "the agent's occupied slots {:?} are not the sum of its placed kernels' slots {want:?}",
        agent.occupied_slots.0
    );
    assert!(agent.occupied_slots.0 <= capacity, "over-committed: {:?} of {:?}", agent.occupied_slots.0, capacity);
    let running: std::collections::BTreeSet<String> =
        all.iter().filter(|(s, _)| s.status.0 == SessionStatus::Running).map(|(_, k)| k[0].id.to_string()).collect();
    assert!(!running.is_empty(), "nothing runs after the restart: {:?}", summary(&all));
    // The agent itself holds exactly the RUNNING kernels: none twice, none forgotten.
    let mut client = clients.client(&agent.addr).unwrap();
    let status = client.get_status(bai_agent_runtime::rpc::pb::GetStatusRequest {}).await.unwrap().into_inner();
    let held: Vec<String> = status.kernels.iter().map(|k| k.kernel_id.clone()).collect();
    let held_set: std::collections::BTreeSet<String> = held.iter().cloned().collect();
    assert_eq!(held.len(), held_set.len(), "the agent holds a kernel twice: {held:?}");
    assert_eq!(held_set, running, "the agent's kernels are the RUNNING sessions' kernels");

    // Everything can be cleaned up: every session ends and the agent is empty again.
    for (s, _) in &all {
        if !s.status.0.is_dead() {
            // forced: a session stuck PREPARING cannot be destroyed otherwise.
            let path = format!("/session/{}?forced=true", s.id);
            let reply = common::request(api, Some(common::USER), "DELETE", &path, None).await;
            if reply.status == 404 {
                // Ended meanwhile (a waiting session placed as the others freed the agent).
                let now = repo::get_session(&db, SessionId::from_uuid(s.id)).await.unwrap().unwrap();
                eprintln!("{} ended before its turn: {} ({:?})", s.name, now.status.0, now.status_info);
                assert!(now.status.0.is_dead(), "destroying {}: {reply:?}", s.name);
            } else {
                assert_eq!(reply.status, 200, "destroying {}: {reply:?}", s.name);
            }
        }
    }
    common::wait_for(Duration::from_secs(20), "the sessions did not all end", || {
        let (db, ids) = (db.clone(), ids.clone());
        async move {
            let all = sessions(&db, &ids).await;
            let alive: Vec<String> = all
                .iter()
                .filter(|(s, _)| !s.status.0.is_dead())
                .map(|(s, _)| format!("{} {}", s.name, s.status.0))
                .collect();
            if alive.is_empty() {
                Ok(())
            } else {
                Err(format!("{alive:?}"))
            }
        }
    })
    .await;
    assert!(is_zero(&agent_row(&db, &agent_id).await.occupied_slots.0), "the agent's slots came back");
    let status = client.get_status(bai_agent_runtime::rpc::pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert!(status.kernels.is_empty(), "the agent still holds {:?}", status.kernels);
}
