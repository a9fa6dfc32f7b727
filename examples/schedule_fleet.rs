//! The manager's scheduling throughput with the database in the loop, the way kube-scheduler's
//! `scheduler_perf` and KWOK measure it: simulated agents (real gRPC endpoints that accept
//! `create_kernels` without starting anything and answer with the events a real agent sends,
//! `bai_test_support::fake_agent`), a queue of single-kernel sessions enqueued in the database,
//! then the manager's own loops (scheduler passes, dispatch, event handling) until every
//! session is RUNNING.
//!
//! ```text
//! cargo run --release -p bai-examples --example schedule_fleet -- \
//!     [--agents 1000] [--sessions 10000] [--db-url postgres://…/db | sqlite://…]
//! ```
//!
//! It reports three moments: every session out of PENDING (placed, SCHEDULED), every
//! session dispatched (its `create_kernels` answered by its agent), every session RUNNING
//! (the agents' events handled). The baseline, measured in the same run on the same queue:
//! `bai_scheduler::plan` alone, in memory, on the snapshot the first pass reads. The last line
//! is `scheduled_per_sec=<r> dispatched_per_sec=<r> running_per_sec=<r> planner_per_sec=<r>
//! ratio=<dispatched/planner> target_ratio=<dispatched/2000>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bai_agent_runtime::bus::{EventBus, MemoryBus};
use bai_core::{AgentId, ResourceSlot, SessionStatus};
use bai_manager::agent_client::AgentClients;
use bai_manager::db::entities::{kernel, keypair_resource_policy, session};
use bai_manager::db::repo::{self, AgentHeartbeatRow};
use bai_manager::db::types::JsonOf;
use bai_manager::manager::Manager;
use bai_test_support::fake_agent::serve_fake_counted;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;

const TOKEN: &str = "schedule-fleet-token";

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut agents = 1000usize;
    let mut sessions = 10_000usize;
    let mut db_url: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--agents" => agents = value()?.parse()?,
            "--sessions" => sessions = value()?.parse()?,
            "--db-url" => db_url = Some(value()?),
            "-h" | "--help" => {
                println!("usage: schedule_fleet [--agents N] [--sessions M] [--db-url URL]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; see --help").into()),
        }
    }
    if agents == 0 || sessions == 0 {
        return Err("--agents and --sessions must be at least 1".into());
    }
    let dir = tempfile::tempdir()?;
    let url = db_url.unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("fleet.db").display()));
    let backend = url.split(':').next().unwrap_or("?").to_string();
    let db = bai_manager::db::connect(&url).await?;
    bai_manager::db::migrate(&db).await?;
    repo::populate_fixture(&db, &serde_json::from_str(bai_manager::local::EXAMPLE_FIXTURE)?).await?;
    keypair_resource_policy::Entity::update_many()
        .set(keypair_resource_policy::ActiveModel { max_concurrent_sessions: Set(0), ..Default::default() })
        .filter(keypair_resource_policy::Column::Name.eq("default"))
        .exec(&db)
        .await?;

    // Enough capacity for every session: the run measures placement, not waiting.
    let cpu_per_agent = sessions.div_ceil(agents) + 1;
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new(1 << 20));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    for i in 0..agents {
        let id = format!("i-sim-{i:05}");
        let addr = serve_fake_counted(id.clone(), bus.clone(), TOKEN, answered.clone()).await;
        let slots: ResourceSlot =
            serde_json::from_value(json!({"cpu": cpu_per_agent.to_string(), "mem": "1099511627776"}))?;
        repo::upsert_agent_from_heartbeat(&db, AgentHeartbeatRow::new(AgentId::new(&id)?, "default", slots, &addr))
            .await?;
    }
    eprintln!("{agents} simulated agents up in {:.1} s", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let slots: ResourceSlot = serde_json::from_value(json!({"cpu": "1", "mem": "268435456"}))?;
    for i in 0..sessions {
        let s = session::ActiveModel {
            name: Set(format!("sim-{i:06}")),
            domain_name: Set("default".into()),
            group_id: Set("2de2b969-1d04-48a6-af16-0bc8adb3c831".parse()?),
            user_uuid: Set("dfa9da54-4b28-432f-be29-c0d680c7a412".parse()?),
            access_key: Set(Some(bai_manager::local::EXAMPLE_USER.0.into())),
            scaling_group_name: Set(Some("default".into())),
            images: Set(JsonOf(vec!["sim".into()])),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        };
        let k = kernel::ActiveModel {
            cluster_role: Set("main".into()),
            cluster_idx: Set(1),
            image: Set(Some("sim".into())),
            architecture: Set(std::env::consts::ARCH.into()),
            requested_slots: Set(JsonOf(slots.clone())),
            ..Default::default()
        };
        repo::insert_session_with_kernels(&db, s, vec![k]).await?;
        if (i + 1) % 2000 == 0 {
            eprintln!("  enqueued {} of {sessions}", i + 1);
        }
    }
    eprintln!("{sessions} sessions enqueued in {:.1} s (not counted)", started.elapsed().as_secs_f64());

    // The baseline: the planner alone on the same queue, in memory.
    let snapshot = bai_manager::scheduler::build_snapshot(&db).await?;
    let planned = Instant::now();
    let plan = bai_scheduler::plan(&snapshot, &bai_scheduler::Config::default(), chrono::Utc::now());
    let planner_secs = planned.elapsed().as_secs_f64();
    if plan.placements.len() != sessions {
        return Err(format!("the planner placed {} of {sessions}", plan.placements.len()).into());
    }

    let manager =
        Manager::new("sim", db.clone(), bus, Arc::new(AgentClients::new(TOKEN, None)?), Duration::from_secs(3600));
    let metrics = Arc::new(bai_manager::metrics::ManagerMetrics::new());
    manager.set_metrics(metrics.clone());
    let started = Instant::now();
    let loops = manager.spawn(Duration::from_millis(100));
    let mut scheduled_at = None;
    let mut dispatched_at = None;
    let mut last_report = Instant::now();
    let running_at = loop {
        // Read before the database: a session counted as dispatched has surely left PENDING.
        let dispatched = answered.load(std::sync::atomic::Ordering::Relaxed);
        let pending = count(&db, &[SessionStatus::Pending]).await?;
        let running = count(&db, &[SessionStatus::Running]).await?;
        if pending == 0 && scheduled_at.is_none() {
            scheduled_at = Some(started.elapsed());
        }
        if dispatched >= sessions && dispatched_at.is_none() {
            dispatched_at = Some(started.elapsed());
        }
        if running == sessions {
            break started.elapsed();
        }
        let failed = count(&db, &[SessionStatus::Error, SessionStatus::Cancelled, SessionStatus::Terminated]).await?;
        if failed > 0 {
            return Err(format!("{failed} sessions failed").into());
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "  {:>5.1} s: {pending} pending, {dispatched} dispatched, {running} running",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err(format!("not done after 30 minutes: {pending} pending, {running} running").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for l in loops {
        l.abort();
    }
    if std::env::var_os("BAI_BENCH_METRICS").is_some() {
        // Where the time went: the manager's own event and action histograms (sums and counts).
        for line in metrics.encode().lines() {
            if (line.contains("_sum") || line.contains("_count")) && !line.starts_with('#') {
                eprintln!("  {line}");
            }
        }
    }
    let scheduled_secs = scheduled_at.unwrap_or(running_at).as_secs_f64();
    let dispatched_secs = dispatched_at.unwrap_or(running_at).as_secs_f64();
    let running_secs = running_at.as_secs_f64();
    let rate = |secs: f64| sessions as f64 / secs.max(1e-9);
    let planner_rate = rate(planner_secs);
    println!(
        "backend={backend} agents={agents} sessions={sessions}: all placed (out of PENDING) in {scheduled_secs:.2} s, \
         all dispatched (create_kernels answered) in {dispatched_secs:.2} s, all RUNNING in {running_secs:.2} s; \
         the planner alone: {:.1} ms",
        planner_secs * 1000.0
    );
    println!(
        "scheduled_per_sec={:.0} dispatched_per_sec={:.0} running_per_sec={:.0} planner_per_sec={planner_rate:.0} \
         ratio={:.4} target_ratio={:.2}",
        rate(scheduled_secs),
        rate(dispatched_secs),
        rate(running_secs),
        rate(dispatched_secs) / planner_rate,
        rate(dispatched_secs) / 2000.0
    );
    Ok(())
}

/// How many sessions have one of `statuses`.
async fn count(
    db: &sea_orm::DatabaseConnection,
    statuses: &[SessionStatus],
) -> Result<usize, Box<dyn std::error::Error>> {
    let filter = repo::SessionFilter { statuses: statuses.to_vec(), limit: 1, ..repo::SessionFilter::default() };
    Ok(repo::list_sessions(db, &filter).await?.1 as usize)
}
