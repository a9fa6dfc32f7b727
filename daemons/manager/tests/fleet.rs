//! The scheduler loop at fleet scale: 40 fake agents (gRPC servers that answer `create_kernels`
//! and `destroy_kernel` by emitting the events a real agent would) and 160 sessions. Every
//! session that fits is placed, no agent is ever given more than it has, every placed session
//! reaches RUNNING through the agents' events, and destroying them gives everything back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bai_agent_runtime::bus::{Envelope, EventBus, MemoryBus};
use bai_core::{Event, ResourceSlot, SessionId, SessionStatus};
use bai_manager::agent_client::AgentClients;
use bai_manager::db::entities::{kernel, session};
use bai_manager::db::repo;
use bai_manager::db::types::JsonOf;
use bai_manager::manager::Manager;
use bai_test_support::fake_agent::serve_fake;
use chrono::Utc;
use sea_orm::Set;
use serde_json::json;

mod common;

fn session_row(name: &str, cpu: u32) -> (session::ActiveModel, Vec<kernel::ActiveModel>) {
    let slots: ResourceSlot = serde_json::from_value(json!({"cpu": cpu.to_string(), "mem": "1073741824"})).unwrap();
    let s = session::ActiveModel {
        name: Set(name.into()),
        domain_name: Set("default".into()),
        group_id: Set("2de2b969-1d04-48a6-af16-0bc8adb3c831".parse().unwrap()),
        user_uuid: Set("dfa9da54-4b28-432f-be29-c0d680c7a412".parse().unwrap()),
        access_key: Set(Some("AKIANABBDUSEREXAMPLE".into())),
        scaling_group_name: Set(Some("default".into())),
        images: Set(JsonOf(vec!["fake".into()])),
        created_at: Set(Utc::now()),
        ..Default::default()
    };
    let k = kernel::ActiveModel {
        cluster_role: Set("main".into()),
        cluster_idx: Set(1),
        image: Set(Some("fake".into())),
        architecture: Set(std::env::consts::ARCH.into()),
        requested_slots: Set(JsonOf(slots)),
        ..Default::default()
    };
    (s, vec![k])
}

/// How many sessions have `status` (one query, so polling does not crowd out the manager).
async fn count(db: &sea_orm::DatabaseConnection, status: SessionStatus) -> usize {
    let filter = repo::SessionFilter {
        access_key: None,
        domain_name: None,
        group_id: None,
        statuses: vec![status],
        limit: 1,
        offset: 0,
    };
    repo::list_sessions(db, &filter).await.unwrap().1 as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_agents_takes_every_session_that_fits_and_no_more() {
    const AGENTS: usize = 40;
    const SESSIONS: usize = 160;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fleet.db").display());
    let db = bai_manager::db::connect(&url).await.unwrap();
    bai_manager::db::migrate(&db).await.unwrap();
    repo::populate_fixture(&db, &serde_json::from_str(common::FIXTURE).unwrap()).await.unwrap();
    // The user's policy allows many concurrent sessions.
    {
        use bai_manager::db::entities::keypair_resource_policy as p;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        p::Entity::update_many()
            .set(p::ActiveModel { max_concurrent_sessions: Set(0), ..Default::default() })
            .filter(p::Column::Name.eq("default"))
            .exec(&db)
            .await
            .unwrap();
    }
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new(65536));
    let token = "fleet-token";
    let manager = Manager::new(
        "fleet",
        db.clone(),
        bus.clone(),
        Arc::new(AgentClients::new(token, None).unwrap()),
        Duration::from_secs(600),
    );
    let loops = manager.spawn(Duration::from_millis(300));
    // The in-process bus drops what is sent before the consumer reads it; the heartbeats below
    // are sent once each.
    assert!(manager.consuming(Duration::from_secs(30)).await, "the event consumer did not start");
    // Agents of 4 CPUs; sessions of 1 or 2 CPUs: 160 CPUs of capacity, 240 asked for.
    for i in 0..AGENTS {
        let id = format!("i-fake-{i:03}");
        let addr = serve_fake(id.clone(), bus.clone(), token).await;
        let info = json!({"id": id, "addr": addr, "scaling_group": "default", "architecture": std::env::consts::ARCH,
                          "resource_slots": {"cpu": ["count", "4"], "mem": ["bytes", "68719476736"]}});
        bus.produce(&Envelope::new(id, Event::AgentHeartbeat { agent_info: info })).await.unwrap();
    }
    // Every agent registered first, so that "settled" below cannot mean "not all agents seen yet".
    let registered = Instant::now() + Duration::from_secs(60);
    while repo::list_agents(&db, None, Some(bai_core::AgentStatus::Alive)).await.unwrap().len() < AGENTS {
        assert!(Instant::now() < registered, "the agents did not all register within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ids = Vec::new();
    for i in 0..SESSIONS {
        let (s, k) = session_row(&format!("fleet-{i:03}"), if i % 2 == 0 { 1 } else { 2 });
        ids.push(SessionId::from_uuid(repo::insert_session_with_kernels(&db, s, k).await.unwrap().0.id));
    }
    manager.schedule_soon();
    // Wait until the set of running sessions stops growing.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (usize::MAX, Instant::now());
    let running = loop {
        let running = count(&db, SessionStatus::Running).await;
        if running != last.0 {
            last = (running, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5)
            && running > 0
            && running + count(&db, SessionStatus::Pending).await == SESSIONS
        {
            // Settled: nothing in flight (every session runs or waits) and no change for 5 s.
            break running;
        }
        assert!(Instant::now() < deadline, "the fleet did not settle; {running} running");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Capacity is 160 CPUs: at least 100 sessions (of 1 and 2 CPUs) fit, and never more CPUs.
    assert!(running >= 100, "only {running} of {SESSIONS} sessions run");
    let mut per_agent: BTreeMap<String, u32> = BTreeMap::new();
    for id in &ids {
        let (s, kernels) = repo::get_session_with_kernels(&db, *id).await.unwrap().unwrap();
        if s.status.0 == SessionStatus::Running {
            for k in kernels {
                let cpu: u32 = k.requested_slots.0.get("cpu").try_into().unwrap();
                *per_agent.entry(k.agent.unwrap()).or_default() += cpu;
            }
        } else {
            assert_eq!(s.status.0, SessionStatus::Pending, "{} is {}", s.name, s.status.0);
        }
    }
    for (agent, cpu) in &per_agent {
        assert!(*cpu <= 4, "{agent} was given {cpu} CPUs of 4");
    }
    for a in repo::list_agents(&db, None, None).await.unwrap() {
        assert!(a.occupied_slots.0.get("cpu") <= a.available_slots.0.get("cpu"), "{} over-committed", a.id);
    }
    // Destroying the running ones frees the fleet; the waiting ones are placed in turn.
    for id in &ids {
        if repo::get_session(&db, *id).await.unwrap().unwrap().status.0 == SessionStatus::Running {
            assert_eq!(manager.destroy_session(*id, false, "user-requested").await.unwrap(), SessionStatus::Terminated);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending = count(&db, SessionStatus::Pending).await;
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} sessions still wait after the fleet was freed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for l in loops {
        l.abort();
    }
}

/// An agent that refuses a session's kernels for lack of resources (its view is fresher than
/// the manager's) sends the session back to the queue, up to `MAX_DISPATCH_RETRIES` times;
/// then the session fails like any creation error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_lack_of_resources_requeues_the_session_a_few_times() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bai_manager::scheduler::MAX_DISPATCH_RETRIES;
    use bai_test_support::fake_agent::{serve, FakeAgent};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("requeue.db").display());
    let db = bai_manager::db::connect(&url).await.unwrap();
    bai_manager::db::migrate(&db).await.unwrap();
    repo::populate_fixture(&db, &serde_json::from_str(common::FIXTURE).unwrap()).await.unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new(4096));
    let token = "requeue-token";
    let manager = Manager::new(
        "requeue",
        db.clone(),
        bus.clone(),
        Arc::new(AgentClients::new(token, None).unwrap()),
        Duration::from_secs(600),
    );
    let loops = manager.spawn(Duration::from_millis(100));
    assert!(manager.consuming(Duration::from_secs(30)).await, "the event consumer did not start");
    let refuse = Arc::new(AtomicUsize::new(2));
    let answered = Arc::new(AtomicUsize::new(0));
    let id = "i-refusing".to_string();
    let agent = FakeAgent { id: id.clone(), bus: bus.clone(), answered: answered.clone(), refuse: refuse.clone() };
    let addr = serve(agent, token).await;
    let info = json!({"id": id, "addr": addr, "scaling_group": "default", "architecture": std::env::consts::ARCH,
                      "resource_slots": {"cpu": ["count", "4"], "mem": ["bytes", "68719476736"]}});
    bus.produce(&Envelope::new(id.clone(), Event::AgentHeartbeat { agent_info: info })).await.unwrap();
    let wait = |session_id: SessionId, wanted: SessionStatus| {
        let db = db.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let s = repo::get_session(&db, session_id).await.unwrap().unwrap();
                if s.status.0 == wanted {
                    return s;
                }
                assert!(Instant::now() < deadline, "still {} ({:?}), not {wanted}", s.status.0, s.status_info);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // Refused twice, then taken: RUNNING, with the requeues recorded.
    let (s, k) = session_row("requeued", 1);
    let first = SessionId::from_uuid(repo::insert_session_with_kernels(&db, s, k).await.unwrap().0.id);
    manager.schedule_soon();
    wait(first, SessionStatus::Running).await;
    assert_eq!(refuse.load(Ordering::Relaxed), 0);
    assert_eq!(answered.load(Ordering::Relaxed), 1);
    let kernels = repo::list_kernels_of_session(&db, first).await.unwrap();
    assert_eq!(kernels[0].internal_data.as_ref().and_then(|d| d.get("dispatch_retries")), Some(&json!(2)));
    assert_eq!(kernels[0].agent.as_deref(), Some("i-refusing"));
    let agent = repo::get_agent(&db, &bai_core::AgentId::new(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(agent.occupied_slots.0.get("cpu"), bai_core::Decimal::from(1), "the requeues left nothing behind");

    // Refused every time: ERROR after the last retry.
    refuse.store(100, Ordering::Relaxed);
    let (s, k) = session_row("refused", 1);
    let second = SessionId::from_uuid(repo::insert_session_with_kernels(&db, s, k).await.unwrap().0.id);
    manager.schedule_soon();
    let s = wait(second, SessionStatus::Error).await;
    let info = s.status_info.clone().unwrap_or_default();
    assert!(info.starts_with("agent-error (") && info.contains("insufficient cpu"), "{info}");
    assert_eq!(100 - refuse.load(Ordering::Relaxed), MAX_DISPATCH_RETRIES as usize + 1, "one call, then one per retry");
    for l in loops {
        l.abort();
    }
}
