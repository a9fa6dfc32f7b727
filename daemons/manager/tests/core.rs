//! The manager core end to end in one process: SQLite, the in-process bus and a real agent
//! (the `bai_agent` library on the process backend). A session inserted as the API will insert
//! it is scheduled, dispatched, started, destroyed; one that does not fit waits with the
//! scheduler's explanation; silent agents become LOST and come back on their next heartbeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bai_agent::config::{AgentConfig, ContainerBackend, EventBackend, ScratchType};
use bai_agent_runtime::bus::{EventBus, MemoryBus};
use bai_core::{AgentId, AgentStatus, KernelId, SessionId, SessionStatus};
use bai_manager::agent_client::AgentClients;
use bai_manager::db::entities::{kernel, session};
use bai_manager::db::repo;
use bai_manager::db::types::JsonOf;
use bai_manager::manager::Manager;
use chrono::Utc;
use sea_orm::{DatabaseConnection, Set};
use serde_json::json;

mod common;

const FIXTURE: &str = include_str!("../fixtures/example-users.json");
const GROUP: &str = "2de2b969-1d04-48a6-af16-0bc8adb3c831";
const ADMIN: &str = "f38dea23-50fa-42a0-b5ae-338f5f4693f4";
const ADMIN_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

async fn database(dir: &std::path::Path) -> DatabaseConnection {
    let url = format!("sqlite://{}?mode=rwc", dir.join("manager.db").display());
    let db = bai_manager::db::connect(&url).await.expect("sqlite");
    bai_manager::db::migrate(&db).await.expect("migrate");
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    repo::populate_fixture(&db, &fixture).await.expect("fixture");
    db
}

fn agent_config(dir: &std::path::Path, id: &str) -> AgentConfig {
    let mut c = AgentConfig::default();
    c.agent.id = id.into();
    c.agent.rpc_listen = "127.0.0.1:0".parse().unwrap();
    c.agent.metrics_listen = "127.0.0.1:0".parse().unwrap();
    c.agent.heartbeat_interval = 0.2;
    c.rpc.token = Some("core-token".into());
    c.events.backend = EventBackend::Memory;
    c.container.backend = ContainerBackend::Process;
    c.container.process_root = dir.join("process");
    c.container.scratch_root = dir.join("scratch");
    c.container.scratch_type = ScratchType::Hostdir;
    c.resource.reserved_cpu = rust_decimal::Decimal::ZERO;
    c.resource.reserved_mem = "256m".parse().unwrap();
    c
}

fn new_session(name: &str, cpu: &str) -> (session::ActiveModel, Vec<kernel::ActiveModel>) {
    let slots: bai_core::ResourceSlot = serde_json::from_value(json!({"cpu": cpu, "mem": "134217728"})).unwrap();
    let s = session::ActiveModel {
        name: Set(name.into()),
        domain_name: Set("default".into()),
        group_id: Set(GROUP.parse().unwrap()),
        user_uuid: Set(ADMIN.parse().unwrap()),
        access_key: Set(Some(ADMIN_KEY.into())),
        scaling_group_name: Set(Some("default".into())),
        images: Set(JsonOf(vec!["host".into()])),
        created_at: Set(Utc::now()),
        ..Default::default()
    };
    let k = kernel::ActiveModel {
        cluster_role: Set("main".into()),
        cluster_idx: Set(1),
        image: Set(Some("host".into())),
        architecture: Set(std::env::consts::ARCH.into()),
        requested_slots: Set(JsonOf(slots)),
        internal_data: Set(Some(json!({"cmd": ["sleep", "600"]}))),
        ..Default::default()
    };
    (s, vec![k])
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(db: &DatabaseConnection, id: SessionId) -> SessionStatus {
    repo::get_session(db, id).await.unwrap().unwrap().status.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_scheduled_started_and_destroyed_on_sqlite() {
    common::backends::on_sqlite(session_flow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_scheduled_started_and_destroyed_on_postgres() {
    common::backends::on_postgres(session_flow).await;
}

/// A session that fits runs on a real agent and is destroyed; one that does not waits with the
/// scheduler's explanation; the agent's shutdown is recorded.
async fn session_flow(db: DatabaseConnection) {
    let dir = tempfile::tempdir().unwrap();
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    repo::populate_fixture(&db, &fixture).await.expect("fixture");
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::default());
    let clients = Arc::new(AgentClients::new("core-token", None).unwrap());
    let manager = Manager::new("test-manager", db.clone(), bus.clone(), clients, Duration::from_secs(40));
    let loops = manager.spawn(Duration::from_millis(200));
    assert!(manager.consuming(Duration::from_secs(30)).await, "the event consumer did not start");
    let agent_name = format!("i-core-{}", common::backends::unique("").replace('_', "-"));
    let agent =
        bai_agent::daemon::start(agent_config(dir.path(), &agent_name), Some(bus.clone())).await.expect("agent");

    let agent_id = AgentId::new(&agent_name).unwrap();
    let registered = wait_for("the agent to register", || async {
        repo::get_agent(&db, &agent_id).await.unwrap().filter(|a| a.status.0 == AgentStatus::Alive)
    })
    .await;
    assert!(registered.available_slots.0.get("cpu") > rust_decimal::Decimal::ZERO);

    // A session that fits runs.
    let (s, k) = new_session("fits", "1");
    let (row, kernels) = repo::insert_session_with_kernels(&db, s, k).await.unwrap();
    let id = SessionId::from_uuid(row.id);
    manager.schedule_soon();
    wait_for("RUNNING", || async { (status(&db, id).await == SessionStatus::Running).then_some(()) }).await;
    let k = repo::get_kernel(&db, KernelId::from_uuid(kernels[0].id)).await.unwrap().unwrap();
    assert_eq!(k.agent.as_deref(), Some(agent_name.as_str()));
    assert!(k.container_id.is_some());
    let history = repo::get_session(&db, id).await.unwrap().unwrap().status_history;
    for step in ["PENDING", "SCHEDULED", "PREPARING", "RUNNING"] {
        assert!(history.get(step).is_some(), "{step} missing from {history}");
    }
    let occupied = repo::get_agent(&db, &agent_id).await.unwrap().unwrap().occupied_slots.0;
    assert_eq!(occupied.get("cpu"), rust_decimal::Decimal::ONE);
    assert_eq!(agent.agent.kernels().kernel_ids(), vec![KernelId::from_uuid(kernels[0].id)]);

    // One that cannot fit waits, with the scheduler's reason.
    let (s, k) = new_session("too-big", "4096");
    let (big, _) = repo::insert_session_with_kernels(&db, s, k).await.unwrap();
    let big = SessionId::from_uuid(big.id);
    manager.schedule_soon();
    let waiting = wait_for("the scheduler's explanation", || async {
        repo::get_session(&db, big)
            .await
            .unwrap()
            .filter(|s| s.status_data.as_ref().and_then(|d| d.pointer("/scheduler/msg")).is_some())
    })
    .await;
    assert_eq!(waiting.status.0, SessionStatus::Pending);
    assert!(waiting.status_info.is_some(), "{waiting:?}");

    // Destroy: the agent destroys the kernel and everything comes back.
    let after = manager.destroy_session(id, false, "user-requested").await.unwrap();
    assert_eq!(after, SessionStatus::Terminated);
    assert!(agent.agent.kernels().kernel_ids().is_empty());
    let occupied = repo::get_agent(&db, &agent_id).await.unwrap().unwrap().occupied_slots.0;
    assert_eq!(occupied.get("cpu"), rust_decimal::Decimal::ZERO);
    let k = repo::get_kernel(&db, KernelId::from_uuid(kernels[0].id)).await.unwrap().unwrap();
    assert_eq!(k.status_info.as_deref(), Some("user-requested"));
    // A pending session is cancelled at once.
    assert_eq!(manager.destroy_session(big, false, "user-requested").await.unwrap(), SessionStatus::Cancelled);

    // The agent stops: TERMINATED.
    agent.shutdown().await.unwrap();
    wait_for("the agent to be TERMINATED", || async {
        repo::get_agent(&db, &agent_id).await.unwrap().filter(|a| a.status.0 == AgentStatus::Terminated)
    })
    .await;
    for l in loops {
        l.abort();
    }
}

#[tokio::test]
async fn silent_agents_become_lost_and_return_with_a_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let t0 = Utc::now();
    let registry = bai_manager::lifecycle::Registry::new(Duration::from_secs(40), t0);
    let info = json!({
        "id": "i-lost", "addr": "grpc://127.0.0.1:1", "scaling_group": "default", "region": "local",
        "resource_slots": {"cpu": ["count", "4"], "mem": ["bytes", "8589934592"]}, "architecture": "x86_64", "version": "test",
    });
    registry.heartbeat(&db, "i-lost", &info, t0).await.unwrap();
    let id = AgentId::new("i-lost").unwrap();
    let agent = repo::get_agent(&db, &id).await.unwrap().unwrap();
    assert_eq!(agent.status.0, AgentStatus::Alive);
    assert_eq!(agent.available_slots.0.get("cpu"), rust_decimal::Decimal::from(4));
    assert!(registry.sweep(&db, t0 + chrono::Duration::seconds(39)).await.unwrap().is_empty());
    assert_eq!(registry.sweep(&db, t0 + chrono::Duration::seconds(41)).await.unwrap(), vec![id.clone()]);
    assert_eq!(repo::get_agent(&db, &id).await.unwrap().unwrap().status.0, AgentStatus::Lost);
    registry.heartbeat(&db, "i-lost", &info, t0 + chrono::Duration::seconds(50)).await.unwrap();
    assert_eq!(repo::get_agent(&db, &id).await.unwrap().unwrap().status.0, AgentStatus::Alive);
    // A heartbeat with a bad slot names it and changes nothing.
    let mut bad = info.clone();
    bad["resource_slots"]["cpu"] = json!(["count", "lots"]);
    let err = registry.heartbeat(&db, "i-lost", &bad, t0).await.unwrap_err().to_string();
    assert!(err.contains("resource_slots.cpu"), "{err}");
    assert_eq!(
        repo::get_agent(&db, &id).await.unwrap().unwrap().available_slots.0.get("cpu"),
        rust_decimal::Decimal::from(4)
    );
}

#[tokio::test]
async fn scaling_group_settings_drive_the_pass_and_old_sessions_time_out() {
    use bai_manager::db::entities::scaling_group;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    scaling_group::Entity::update_many()
        .set(scaling_group::ActiveModel {
            scheduler: Set("lifo".into()),
            scheduler_opts: Set(json!({"pending_timeout": 60, "agent_selection_strategy": "concentrated"})),
            ..Default::default()
        })
        .filter(scaling_group::Column::Name.eq("default"))
        .exec(&db)
        .await
        .unwrap();
    let sg = repo::get_scaling_group(&db, "default").await.unwrap().unwrap();
    let group = bai_manager::scheduler::group_config(&sg);
    assert_eq!(group.pending_timeout, Some(chrono::TimeDelta::seconds(60)));
    assert_eq!((group.queue.name(), group.selector.name()), ("lifo", "concentrated"));
    let (mut old, k) = new_session("old-one", "1");
    old.created_at = Set(Utc::now() - chrono::Duration::seconds(120));
    let (old, _) = repo::insert_session_with_kernels(&db, old, k).await.unwrap();
    let (fresh, k) = new_session("fresh-one", "1");
    let (fresh, _) = repo::insert_session_with_kernels(&db, fresh, k).await.unwrap();
    // No agents: nothing is placed, the old session is cancelled, the fresh one waits.
    let report =
        bai_manager::scheduler::schedule_pass(&db, &bai_scheduler::Config::default(), Utc::now()).await.unwrap();
    assert_eq!(report.cancelled, vec![SessionId::from_uuid(old.id)]);
    assert!(report.scheduled.is_empty());
    let old = repo::get_session(&db, SessionId::from_uuid(old.id)).await.unwrap().unwrap();
    assert_eq!((old.status.0, old.status_info.as_deref()), (SessionStatus::Cancelled, Some("pending-timeout")));
    assert_eq!(status(&db, SessionId::from_uuid(fresh.id)).await, SessionStatus::Pending);
    // A bad policy falls back to the default one instead of stopping the scheduler.
    let mut broken = sg.clone();
    broken.scheduler = "no-such-policy".into();
    let fallback = bai_manager::scheduler::group_config(&broken);
    assert_eq!((fallback.queue.name(), fallback.selector.name()), ("fifo", "dispersed"));
}
