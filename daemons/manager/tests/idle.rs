//! Idle checkers end to end under paused time: a manager core (SQLite, the in-process bus,
//! its API) with a fake agent. Time moves only when a test advances it (a blocking task
//! holds off tokio's auto-advance, so waiting for the database never moves the clock): a
//! session idle past its timeout is terminated with the reason, one with traffic through the
//! API is not, nor is a batch session; the lifetime limit terminates; low utilisation after the
//! grace period terminates, high does not.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bai_agent_runtime::bus::{Envelope, EventBus, MemoryBus};
use bai_core::{AgentId, AgentStatus, Event, KernelId, SessionId, SessionStatus, SessionType};
use bai_manager::agent_client::AgentClients;
use bai_manager::api::keypairs::DbKeypairs;
use bai_manager::api::KeypairStore;
use bai_manager::db::entities::{kernel, keypair_resource_policy, session};
use bai_manager::db::repo;
use bai_manager::db::types::{JsonOf, Wire};
use bai_manager::idle::{IdleConfig, ThresholdOperator, UtilizationConfig};
use bai_manager::manager::Manager;
use futures::StreamExt;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

const TOKEN: &str = "idle-token";
const AGENT: &str = "i-idle";
const GROUP: &str = "2de2b969-1d04-48a6-af16-0bc8adb3c831";
const USER_UUID: &str = "dfa9da54-4b28-432f-be29-c0d680c7a412";

/// A manager with a fake agent, its API, and the events it sent.
struct Harness {
    db: DatabaseConnection,
    manager: Arc<Manager>,
    bus: Arc<dyn EventBus>,
    agent_addr: String,
    api: std::net::SocketAddr,
    events: Arc<Mutex<Vec<Event>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Held while the test runs: a running blocking task stops tokio's auto-advance.
    _gate: std::sync::mpsc::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Sleeps `ms` of real time (the tokio clock is paused).
async fn real_sleep(ms: u64) {
    tokio::task::spawn_blocking(move || std::thread::sleep(Duration::from_millis(ms))).await.unwrap();
}

/// Waits (up to 30 s of real time) for `probe` to answer.
async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        real_sleep(10).await;
    }
}

/// The manager with `idle` settings and the default keypair resource policy's `idle_timeout`
/// and `max_session_lifetime` set; the clock is paused when this returns.
async fn harness(idle: IdleConfig, idle_timeout: i64, max_session_lifetime: i32) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("manager.db").display());
    let db = bai_manager::db::connect(&url).await.unwrap();
    bai_manager::db::migrate(&db).await.unwrap();
    repo::populate_fixture(&db, &serde_json::from_str(common::FIXTURE).unwrap()).await.unwrap();
    keypair_resource_policy::Entity::update_many()
        .set(keypair_resource_policy::ActiveModel {
            idle_timeout: Set(idle_timeout),
            max_session_lifetime: Set(max_session_lifetime),
            ..Default::default()
        })
        .filter(keypair_resource_policy::Column::Name.eq("default"))
        .exec(&db)
        .await
        .unwrap();

    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new(1 << 16));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut stream = bus.subscribe().await.unwrap();
    let seen = events.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(Ok(envelope)) = stream.next().await {
            seen.lock().unwrap().push(envelope.event);
        }
    }));
    let clients = Arc::new(AgentClients::new(TOKEN, None).unwrap());
    // Agents never go LOST here: no heartbeats flow unless a test sends them.
    let manager = Manager::new("idle-test", db.clone(), bus.clone(), clients, Duration::from_secs(365 * 86_400));
    manager.idle().set_config(idle);
    tasks.extend(manager.spawn(Duration::from_secs(3600)));
    assert!(manager.consuming(Duration::from_secs(30)).await, "the event consumer did not start");
    let agent_addr = bai_test_support::fake_agent::serve_fake(AGENT.into(), bus.clone(), TOKEN).await;

    let keypairs: Arc<dyn KeypairStore> = Arc::new(DbKeypairs::new(db.clone()));
    let router = bai_manager::server::app(bai_manager::server::api_state(manager.clone(), keypairs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tasks.push(tokio::spawn(async move {
        let _ = bai_manager::api::serve(listener, router, std::future::pending()).await;
    }));

    tokio::time::pause();
    let (gate, held) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = held.recv();
    });
    let h = Harness { db, manager, bus, agent_addr, api, events, tasks, _gate: gate, _dir: dir };
    h.heartbeat(json!({})).await;
    let agent = AgentId::new(AGENT).unwrap();
    wait_for("the agent to register", || async {
        repo::get_agent(&h.db, &agent).await.unwrap().filter(|a| a.status.0 == AgentStatus::Alive)
    })
    .await;
    h
}

impl Harness {
    /// Sends the agent's heartbeat with these kernel statistics.
    async fn heartbeat(&self, kernel_stats: Value) {
        let info = json!({
            "id": AGENT, "addr": format!("grpc://{}", self.agent_addr), "scaling_group": "default",
            "region": "local", "architecture": std::env::consts::ARCH, "version": "test",
            "resource_slots": {"cpu": ["count", "8"], "mem": ["bytes", "17179869184"]},
            "kernel_stats": kernel_stats,
        });
        self.bus.produce(&Envelope::new(AGENT, Event::AgentHeartbeat { agent_info: info })).await.unwrap();
    }

    /// A RUNNING session of the example user (1 CPU, 1 GiB), created now by the idle clock.
    async fn running_session(&self, name: &str, session_type: SessionType) -> (SessionId, KernelId) {
        let slots: bai_core::ResourceSlot = serde_json::from_value(json!({"cpu": "1", "mem": "1073741824"})).unwrap();
        let s = session::ActiveModel {
            name: Set(name.into()),
            session_type: Set(Wire(session_type)),
            domain_name: Set("default".into()),
            group_id: Set(GROUP.parse().unwrap()),
            user_uuid: Set(USER_UUID.parse().unwrap()),
            access_key: Set(Some(common::USER.0.into())),
            scaling_group_name: Set(Some("default".into())),
            images: Set(JsonOf(vec!["sim".into()])),
            startup_command: Set((session_type == SessionType::Batch).then(|| "sleep 1d".to_string())),
            created_at: Set(self.manager.idle().now()),
            ..Default::default()
        };
        let k = kernel::ActiveModel {
            cluster_role: Set("main".into()),
            cluster_idx: Set(1),
            session_type: Set(Wire(session_type)),
            image: Set(Some("sim".into())),
            architecture: Set(std::env::consts::ARCH.into()),
            requested_slots: Set(JsonOf(slots)),
            ..Default::default()
        };
        let (row, kernels) = repo::insert_session_with_kernels(&self.db, s, vec![k]).await.unwrap();
        let id = SessionId::from_uuid(row.id);
        self.manager.schedule_soon();
        wait_for(&format!("{name} RUNNING"), || async {
            (self.status(id).await == SessionStatus::Running).then_some(())
        })
        .await;
        (id, KernelId::from_uuid(kernels[0].id))
    }

    async fn session(&self, id: SessionId) -> session::Model {
        repo::get_session(&self.db, id).await.unwrap().unwrap()
    }

    async fn status(&self, id: SessionId) -> SessionStatus {
        self.session(id).await.status.0
    }

    /// Moves the clock `by` (a multiple of the 5 s check interval), one check interval at a
    /// time, each time waiting for the idle check it triggers to finish: nothing the checks
    /// wait for (the database, the agent) ever sees the clock jump under it.
    async fn advance(&self, by: Duration) {
        let step = CHECK_INTERVAL;
        assert_eq!(by.as_millis() % step.as_millis(), 0, "advance by multiples of {step:?}");
        for _ in 0..(by.as_millis() / step.as_millis()) {
            let before = self.manager.idle().passes();
            // A millisecond more: the timer wheel rounds deadlines up to the next millisecond.
            tokio::time::advance(step + Duration::from_millis(2)).await;
            let what = format!("the idle check after {before} at {}", self.manager.idle().now());
            wait_for(&what, || async { (self.manager.idle().passes() > before).then_some(()) }).await;
        }
    }

    /// Waits until `id` has ended and answers its row.
    async fn ended(&self, id: SessionId) -> session::Model {
        wait_for("the session to end", || async {
            let s = self.session(id).await;
            s.status.0.is_terminal().then_some(s)
        })
        .await
    }

    /// Runs code in the session through `POST /session/{id}` as its owner.
    async fn execute(&self, id: SessionId) {
        let body = json!({"mode": "query", "code": "print(1)", "runId": "r1"});
        let reply = common::request(self.api, Some(common::USER), "POST", &format!("/session/{id}"), Some(&body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["result"]["status"], "finished", "{}", reply.body);
    }

    /// The session's `idleChecks` from `GET /session/{id}`.
    async fn idle_checks(&self, id: SessionId) -> Value {
        let reply = common::request(self.api, Some(common::USER), "GET", &format!("/session/{id}"), None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["idleChecks"].clone()
    }

    /// The session's `idle_checks` from GraphQL `compute_session`.
    async fn gql_idle_checks(&self, id: SessionId) -> Value {
        let query = "query($id: UUID!) { compute_session(id: $id) { idle_checks status status_info } }";
        let body = json!({"query": query, "variables": {"id": id.to_string()}});
        let reply = common::request(self.api, Some(common::USER), "POST", "/admin/gql", Some(&body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let text = reply.json()["data"]["compute_session"]["idle_checks"].as_str().unwrap().to_string();
        serde_json::from_str(&text).unwrap()
    }

    fn terminating_reasons(&self, id: SessionId) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::SessionTerminating { session_id, reason } if *session_id == id => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The check interval of every test.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

fn network(threshold: u64) -> IdleConfig {
    IdleConfig {
        check_interval: CHECK_INTERVAL,
        network_timeout: Some(Duration::from_secs(threshold)),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_network_idle_session_is_terminated_and_busy_and_batch_ones_are_not() {
    // The policy's idle_timeout (600 s) wins over the configured threshold.
    let h = harness(network(60), 600, 0).await;
    let (idle, _) = h.running_session("idle", SessionType::Interactive).await;
    let (busy, _) = h.running_session("busy", SessionType::Interactive).await;
    let (batch, _) = h.running_session("batch", SessionType::Batch).await;

    // Five minutes in: nobody is idle yet; the report counts down.
    h.advance(Duration::from_secs(300)).await;
    h.execute(busy).await;
    let checks = h.idle_checks(idle).await;
    let remaining = checks["network_timeout"]["remaining"].as_f64().unwrap();
    // The clock started with the wall clock's time, which kept running while the sessions
    // started: a few seconds more at most.
    assert!((290.0..=330.0).contains(&remaining), "{checks}");
    assert_eq!(checks["network_timeout"]["remaining_time_type"], "expire_after");
    assert_eq!(checks["session_lifetime"]["remaining"], Value::Null, "no lifetime limit: {checks}");
    let gql = h.gql_idle_checks(idle).await;
    let from_gql = gql["network_timeout"]["remaining"].as_f64().unwrap();
    assert!(from_gql <= remaining && from_gql > remaining - 5.0, "{gql}");
    assert_eq!(h.idle_checks(batch).await["network_timeout"]["remaining"], Value::Null, "batch sessions are exempt");

    // Twenty minutes with code run every two in the busy one.
    for _ in 0..8 {
        h.advance(Duration::from_secs(120)).await;
        h.execute(busy).await;
    }
    let s = h.ended(idle).await;
    assert_eq!(s.status.0, SessionStatus::Terminated);
    assert_eq!(s.status_info.as_deref(), Some("idle-timeout"));
    let data = s.status_data.unwrap();
    assert_eq!(data["idle_checker"], "network_timeout", "{data}");
    assert_eq!(data["threshold"], 600.0, "{data}");
    let idle_for = data["idle_for"].as_f64().unwrap();
    assert!((600.0..=610.0).contains(&idle_for), "checked every 5 s: {data}");
    assert_eq!(h.terminating_reasons(idle), vec!["idle-timeout".to_string()]);
    let k = repo::list_kernels_of_session(&h.db, idle).await.unwrap().remove(0);
    assert_eq!(k.status_info.as_deref(), Some("idle-timeout"), "the agent was told why");

    assert_eq!(h.status(busy).await, SessionStatus::Running);
    assert_eq!(h.status(batch).await, SessionStatus::Running);
    assert!(h.terminating_reasons(busy).is_empty());
    // An ended session has nothing to report.
    assert_eq!(h.gql_idle_checks(idle).await, json!({}));

    // Once the traffic stops, the busy one goes too.
    h.advance(Duration::from_secs(610)).await;
    let s = h.ended(busy).await;
    assert_eq!(s.status_info.as_deref(), Some("idle-timeout"));
    assert_eq!(h.status(batch).await, SessionStatus::Running);
}

#[tokio::test]
async fn a_session_past_its_lifetime_is_terminated() {
    // No network checker; the policy gives sessions an hour.
    let config = IdleConfig { check_interval: CHECK_INTERVAL, ..Default::default() };
    let h = harness(config, 0, 3600).await;
    let (id, _) = h.running_session("short-lived", SessionType::Batch).await;
    h.advance(Duration::from_secs(1800)).await;
    let checks = h.idle_checks(id).await;
    let remaining = checks["session_lifetime"]["remaining"].as_f64().unwrap();
    assert!((1790.0..=1830.0).contains(&remaining), "{checks}");
    assert!(checks.get("network_timeout").is_none(), "not enabled: {checks}");
    assert_eq!(h.status(id).await, SessionStatus::Running);

    h.advance(Duration::from_secs(1805)).await;
    let s = h.ended(id).await;
    assert_eq!(s.status_info.as_deref(), Some("idle-session-lifetime"));
    let data = s.status_data.unwrap();
    assert_eq!(data["idle_checker"], "session_lifetime", "{data}");
    assert_eq!(data["threshold"], 3600.0, "{data}");
    assert_eq!(h.terminating_reasons(id), vec!["idle-session-lifetime".to_string()]);
}

#[tokio::test]
async fn the_reports_follow_this_managers_policy_changes_at_once() {
    let config = IdleConfig { check_interval: CHECK_INTERVAL, ..Default::default() };
    let h = harness(config, 0, 3600).await;
    let (id, _) = h.running_session("watched", SessionType::Batch).await;
    let remaining = |checks: Value| checks["session_lifetime"]["remaining"].as_f64().unwrap();
    let before = remaining(h.idle_checks(id).await);
    assert!((3500.0..=3600.0).contains(&before), "{before}");
    // The report's limits are cached briefly; a change through this manager drops them.
    let mutation = "mutation { modify_keypair_resource_policy(name: \"default\", \
                    props: {max_session_lifetime: 7200}) { ok msg } }";
    let reply =
        common::request(h.api, Some(common::ADMIN), "POST", "/admin/gql", Some(&json!({"query": mutation}))).await;
    assert_eq!(reply.json()["data"]["modify_keypair_resource_policy"]["ok"], true, "{}", reply.body);
    let after = remaining(h.idle_checks(id).await);
    assert!((7100.0..=7200.0).contains(&after), "{after}");
    let gql = remaining(h.gql_idle_checks(id).await);
    assert!((7100.0..=7200.0).contains(&gql), "GraphQL agrees: {gql}");
}

#[tokio::test]
async fn low_utilisation_after_the_grace_period_terminates_and_high_does_not() {
    let config = IdleConfig {
        check_interval: CHECK_INTERVAL,
        utilization: Some(UtilizationConfig {
            time_window: Duration::from_secs(3600),
            initial_grace_period: Duration::from_secs(120),
            operator: ThresholdOperator::And,
            thresholds: [("cpu_util".to_string(), 30.0), ("mem".to_string(), 30.0)].into_iter().collect(),
        }),
        ..Default::default()
    };
    // A negative idle_timeout leaves the configured window (1 h) in force.
    let h = harness(config, -1, 0).await;
    let (lazy, lazy_kernel) = h.running_session("lazy", SessionType::Interactive).await;
    let (worker, worker_kernel) = h.running_session("worker", SessionType::Interactive).await;
    let stats = |cpu: &str, mem: &str| {
        json!({"cpu_util": {"current": cpu, "capacity": "100", "pct": cpu},
                                              "mem": {"current": mem, "capacity": null, "pct": "0"}})
    };
    // The worker keeps a CPU busy; memory use is low in both (100 MiB of 1 GiB).
    let report = json!({
        lazy_kernel.to_string(): stats("2.00", "104857600"),
        worker_kernel.to_string(): stats("85.00", "104857600"),
    });
    // Heartbeats every 30 s for 70 minutes.
    let mut steps = None;
    for step in 0..140 {
        h.heartbeat(report.clone()).await;
        h.advance(Duration::from_secs(30)).await;
        if step == 10 {
            // Past the grace period: the averages are reported.
            let checks = h.idle_checks(lazy).await;
            let u = &checks["utilization"];
            assert_eq!(u["remaining_time_type"], "grace_period", "{checks}");
            assert_eq!(u["extra"]["thresholds_check_operator"], "and", "{checks}");
            let cpu = &u["extra"]["resources"]["cpu_util"];
            assert_eq!(cpu[1], 30.0, "{checks}");
            assert!((cpu[0].as_f64().unwrap() - 2.0).abs() < 1e-9, "{checks}");
            let mem = u["extra"]["resources"]["mem"][0].as_f64().unwrap();
            assert!((mem - 100.0 / 1024.0 * 100.0).abs() < 1e-6, "memory against the session's 1 GiB: {checks}");
        }
        if h.status(lazy).await != SessionStatus::Running {
            steps = Some(step + 1);
            break;
        }
    }
    let s = h.ended(lazy).await;
    assert_eq!(s.status_info.as_deref(), Some("idle-utilization"));
    let data = s.status_data.unwrap();
    assert_eq!(data["idle_checker"], "utilization", "{data}");
    assert_eq!(data["time_window"], 3600.0, "{data}");
    assert_eq!(data["resources"]["cpu_util"]["threshold"], 30.0, "{data}");
    // Not before the grace period and a full window of samples: 120 s + 3600 s.
    let steps = steps.expect("the lazy session ended within 70 minutes");
    assert!((123..=127).contains(&steps), "ended after {steps} steps of 30 s");
    assert_eq!(h.terminating_reasons(lazy), vec!["idle-utilization".to_string()]);
    assert_eq!(h.status(worker).await, SessionStatus::Running, "busy CPU: not idle with `and`");
}

#[tokio::test]
async fn idle_settings_come_from_etcd_in_either_of_the_originals_shapes() {
    let Some(endpoints) = bai_test_support::service_env("BAI_TEST_ETCD_ENDPOINTS") else { return };
    let endpoints: Vec<String> =
        endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect();
    let namespace = format!("idle-{}", uuid::Uuid::new_v4().simple());
    let etcd = bai_manager::config::EtcdSection {
        endpoints: endpoints.clone(),
        namespace: namespace.clone(),
        ..Default::default()
    };
    let mut client = etcd_client::Client::connect(&endpoints, None).await.expect("etcd");
    let prefix = format!("/bai/{namespace}/config/idle");

    // Nothing in etcd: the file's settings stay.
    let mut section = bai_manager::config::IdleSection::default();
    bai_manager::idle::fetch_etcd(&etcd, &mut section).await.unwrap();
    assert_eq!(section, bai_manager::config::IdleSection::default());

    // One JSON value, as the brief's operators write it.
    client.put(format!("{prefix}/enabled"), "network_timeout,utilization", None).await.unwrap();
    let checkers = json!({
        "network_timeout": {"threshold": "10m"},
        "utilization": {"initial-grace-period": "5m", "resource-thresholds": {"cpu_util": {"average": 30}, "mem": {"average": 30}},
                        "thresholds-check-operator": "and", "time-window": "12h"}
    });
    client.put(format!("{prefix}/checkers"), checkers.to_string(), None).await.unwrap();
    bai_manager::idle::fetch_etcd(&etcd, &mut section).await.unwrap();
    let config = IdleConfig::from_section(&section).unwrap();
    assert_eq!(config.network_timeout, Some(Duration::from_secs(600)));
    let u = config.utilization.unwrap();
    assert_eq!((u.time_window, u.operator), (Duration::from_secs(43_200), ThresholdOperator::And));

    // A tree of keys, as the original's `etcd put-json` leaves them.
    client.delete(format!("{prefix}/checkers"), None).await.unwrap();
    client.put(format!("{prefix}/checkers/network_timeout/threshold"), "30m", None).await.unwrap();
    client
        .put(format!("{prefix}/checkers/utilization/resource-thresholds/cpu_util/average"), "12.5", None)
        .await
        .unwrap();
    let mut section = bai_manager::config::IdleSection::default();
    bai_manager::idle::fetch_etcd(&etcd, &mut section).await.unwrap();
    let config = IdleConfig::from_section(&section).unwrap();
    assert_eq!(config.network_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(config.utilization.unwrap().thresholds["cpu_util"], 12.5);

    // A bad value names the key; the start would fail with it.
    client.put(format!("{prefix}/checkers/network_timeout/threshold"), "soon", None).await.unwrap();
    let mut section = bai_manager::config::IdleSection::default();
    bai_manager::idle::fetch_etcd(&etcd, &mut section).await.unwrap();
    let err = IdleConfig::from_section(&section).unwrap_err();
    assert_eq!(err.field, "idle.checkers.network_timeout.threshold", "{err}");
    client.put(format!("{prefix}/checkers"), "{not json", None).await.unwrap();
    let err = bai_manager::idle::fetch_etcd(&etcd, &mut section).await.unwrap_err();
    assert!(err.field.ends_with("/config/idle/checkers") && err.reason.contains("not JSON"), "{err}");

    client.delete(format!("/bai/{namespace}/"), Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
}
