//! The scheduler's set-based writes (`bai_manager::db::repo::bulk`) against both backends: the
//! same rows as the per-row functions would leave, chunking past `CHUNK` rows, and rows in an
//! unexpected status left alone. Each test runs on a fresh SQLite file and on a fresh
//! PostgreSQL database (`BAI_TEST_PG_URL`).

use std::collections::BTreeSet;

use bai_core::{AgentId, KernelStatus, ResourceSlot, SessionStatus};
use bai_manager::db::entities::{kernel, session};
use bai_manager::db::repo::bulk::{self, KernelPlacement, PendingExplanation, SessionPlacement};
use bai_manager::db::repo::{self, AgentHeartbeatRow};
use bai_manager::db::types::{JsonOf, Wire};
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ActiveValue::Set, DatabaseConnection};
use serde_json::json;
use uuid::Uuid;

mod common;

use common::backends::{db_test, on_postgres, on_sqlite};

const EXAMPLE_FIXTURE: &str = include_str!("../fixtures/example-users.json");
const USER_AK: &str = "AKIANABBDUSEREXAMPLE";
const USER_UUID: &str = "dfa9da54-4b28-432f-be29-c0d680c7a412";
const GROUP_ID: &str = "2de2b969-1d04-48a6-af16-0bc8adb3c831";

fn slots(cpu: i64) -> ResourceSlot {
    ResourceSlot::from_pairs([("cpu", bai_core::Decimal::from(cpu)), ("mem", bai_core::Decimal::from(1i64 << 30))])
        .unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

async fn setup(db: &DatabaseConnection, agents: usize) {
    repo::populate_fixture(db, &serde_json::from_str(EXAMPLE_FIXTURE).unwrap()).await.unwrap();
    for i in 0..agents {
        let id = format!("i-bulk{i:03}");
        let row =
            AgentHeartbeatRow::new(AgentId::new(&id).unwrap(), "default", slots(1000), &format!("10.0.0.{i}:6001"));
        repo::upsert_agent_from_heartbeat(db, row).await.unwrap();
    }
}

/// `n` PENDING sessions of `kernels` kernels each; answers (session id, kernel ids).
async fn enqueue(db: &DatabaseConnection, n: usize, kernels: usize) -> Vec<(Uuid, Vec<Uuid>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let s = session::ActiveModel {
            name: Set(format!("bulk-{i:04}")),
            domain_name: Set("default".into()),
            group_id: Set(GROUP_ID.parse().unwrap()),
            user_uuid: Set(USER_UUID.parse().unwrap()),
            access_key: Set(Some(USER_AK.into())),
            scaling_group_name: Set(Some("default".into())),
            images: Set(JsonOf(vec!["python".into()])),
            created_at: Set(at(i as i64)),
            ..Default::default()
        };
        let ks = (0..kernels)
            .map(|k| kernel::ActiveModel {
                cluster_role: Set(if k == 0 { "main" } else { "sub" }.into()),
                cluster_idx: Set(k as i32 + 1),
                image: Set(Some("python".into())),
                requested_slots: Set(JsonOf(slots(1))),
                ..Default::default()
            })
            .collect();
        let (row, ks) = repo::insert_session_with_kernels(db, s, ks).await.unwrap();
        out.push((row.id, ks.into_iter().map(|k| k.id).collect()));
    }
    out
}

db_test!(placements_write_what_the_per_row_functions_write);
async fn placements_write_what_the_per_row_functions_write(db: DatabaseConnection) {
    setup(&db, 3).await;
    // More rows than one statement takes, to cross a chunk boundary.
    let queued = enqueue(&db, bulk::CHUNK / 2 + 10, 2).await;
    let agent = |i: usize| format!("i-bulk{:03}", i % 3);
    let mut kernels = Vec::new();
    let mut sessions = Vec::new();
    for (i, (sid, kids)) in queued.iter().enumerate() {
        for (j, kid) in kids.iter().enumerate() {
            kernels.push(KernelPlacement {
                kernel_id: *kid,
                agent: agent(i + j),
                agent_addr: format!("10.0.0.{}:6001", (i + j) % 3),
                scaling_group: "default".into(),
            });
        }
        sessions.push(SessionPlacement {
            session_id: *sid,
            agent_ids: (0..kids.len()).map(|j| agent(i + j)).collect(),
            scaling_group: "default".into(),
        });
    }
    assert!(kernels.len() > bulk::CHUNK);
    let now = at(10_000);
    assert_eq!(bulk::place_kernels(&db, &kernels, now).await.unwrap(), kernels.len() as u64);
    assert_eq!(bulk::place_sessions(&db, &sessions, now).await.unwrap(), sessions.len() as u64);

    let (s, ks) =
        repo::get_session_with_kernels(&db, bai_core::SessionId::from_uuid(queued[1].0)).await.unwrap().unwrap();
    assert_eq!(s.status, Wire(SessionStatus::Scheduled));
    assert_eq!(s.status_info.as_deref(), Some("scheduled"));
    assert_eq!(s.status_data, Some(json!({})));
    assert_eq!(s.status_changed, Some(now));
    assert_eq!(s.agent_ids, Some(JsonOf(vec![agent(1), agent(2)])));
    let history = s.status_history.as_object().unwrap();
    assert_eq!(
        history.keys().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"PENDING".to_string(), &"SCHEDULED".to_string()])
    );
    assert_eq!(history["SCHEDULED"], json!(bai_manager::db::entities::iso_timestamp(now)));
    for (j, k) in ks.iter().enumerate() {
        assert_eq!(k.status, Wire(KernelStatus::Scheduled));
        assert_eq!(k.agent.as_deref(), Some(agent(1 + j).as_str()));
        assert_eq!(k.agent_addr.as_deref(), Some(format!("10.0.0.{}:6001", (1 + j) % 3).as_str()));
        assert_eq!(k.scaling_group.as_deref(), Some("default"));
        assert!(k.status_history.get("SCHEDULED").is_some(), "{:?}", k.status_history);
        assert!(k.status_history.get("PENDING").is_some(), "the earlier entries stay: {:?}", k.status_history);
    }

    // Placed again: nothing is PENDING any more, so nothing changes.
    assert_eq!(bulk::place_kernels(&db, &kernels, at(20_000)).await.unwrap(), 0);
    assert_eq!(bulk::place_sessions(&db, &sessions, at(20_000)).await.unwrap(), 0);
    let again = repo::get_session(&db, bai_core::SessionId::from_uuid(queued[1].0)).await.unwrap().unwrap();
    assert_eq!(again, s);

    // The agents' occupancy follows the kernels that hold resources.
    let touched: BTreeSet<String> = (0..3).map(agent).collect();
    let totals = bulk::recompute_occupancy(&db, &touched).await.unwrap();
    let placed_on_0 = kernels.iter().filter(|k| k.agent == agent(0)).count() as i64;
    assert_eq!(totals[&agent(0)].get("cpu"), bai_core::Decimal::from(placed_on_0));
    let row = repo::get_agent(&db, &AgentId::new(agent(0)).unwrap()).await.unwrap().unwrap();
    assert_eq!(row.occupied_slots.0, totals[&agent(0)]);
}

db_test!(claims_move_each_session_once_with_its_kernels);
async fn claims_move_each_session_once_with_its_kernels(db: DatabaseConnection) {
    setup(&db, 1).await;
    let queued = enqueue(&db, 4, 2).await;
    let ids: Vec<Uuid> = queued.iter().map(|(s, _)| *s).collect();
    for (sid, _) in &queued[..3] {
        let sid = bai_core::SessionId::from_uuid(*sid);
        repo::set_session_status(&db, sid, SessionStatus::Scheduled, None, None).await.unwrap();
        for k in repo::list_kernels_of_session(&db, sid).await.unwrap() {
            repo::set_kernel_status(&db, bai_core::KernelId::from_uuid(k.id), KernelStatus::Scheduled, None, None)
                .await
                .unwrap();
        }
    }
    // The fourth is still PENDING: not claimed.
    let now = at(500);
    let mut claimed =
        bulk::claim_sessions(&db, &ids, SessionStatus::Scheduled, SessionStatus::Preparing, now).await.unwrap();
    claimed.sort();
    let mut expected = ids[..3].to_vec();
    expected.sort();
    assert_eq!(claimed, expected);
    assert_eq!(
        bulk::move_kernels_of_sessions(&db, &claimed, KernelStatus::Scheduled, KernelStatus::Preparing, now)
            .await
            .unwrap(),
        6
    );
    // A second claim finds nothing SCHEDULED.
    assert!(bulk::claim_sessions(&db, &ids, SessionStatus::Scheduled, SessionStatus::Preparing, now)
        .await
        .unwrap()
        .is_empty());
    let rows = bulk::sessions_with_kernels(&db, &ids).await.unwrap();
    assert_eq!(rows.len(), 4);
    for (s, ks) in &rows {
        let claimed = expected.contains(&s.id);
        let (session_status, kernel_status) = if claimed {
            (SessionStatus::Preparing, KernelStatus::Preparing)
        } else {
            (SessionStatus::Pending, KernelStatus::Pending)
        };
        assert_eq!(s.status, Wire(session_status));
        assert_eq!(ks.iter().map(|k| k.cluster_role.as_str()).collect::<Vec<_>>(), ["main", "sub"]);
        assert!(ks.iter().all(|k| k.status == Wire(kernel_status)), "{ks:?}");
        if claimed {
            assert_eq!(s.status_changed, Some(now));
            assert!(s.status_history.get("PREPARING").is_some());
            assert!(s.status_history.get("SCHEDULED").is_some());
        }
    }
}

db_test!(explanations_reach_only_pending_sessions);
async fn explanations_reach_only_pending_sessions(db: DatabaseConnection) {
    setup(&db, 1).await;
    let queued = enqueue(&db, 2, 1).await;
    let second = bai_core::SessionId::from_uuid(queued[1].0);
    repo::set_session_status(&db, second, SessionStatus::Cancelled, Some("user-requested"), None).await.unwrap();
    let rows: Vec<PendingExplanation> = queued
        .iter()
        .map(|(sid, _)| PendingExplanation {
            session_id: *sid,
            status_info: "no-available-instances".into(),
            status_data: json!({"scheduler": {"retries": 3, "msg": "waiting"}}),
        })
        .collect();
    assert_eq!(bulk::explain_pending(&db, &rows).await.unwrap(), 1);
    let first = repo::get_session(&db, bai_core::SessionId::from_uuid(queued[0].0)).await.unwrap().unwrap();
    assert_eq!(first.status, Wire(SessionStatus::Pending));
    assert_eq!(first.status_info.as_deref(), Some("no-available-instances"));
    assert_eq!(first.status_data, Some(json!({"scheduler": {"retries": 3, "msg": "waiting"}})));
    let cancelled = repo::get_session(&db, second).await.unwrap().unwrap();
    assert_eq!(cancelled.status_info.as_deref(), Some("user-requested"), "a session that left PENDING is kept");
}
