//! Lost creations are sent again (`Manager::redispatch_stalled`): a session left PREPARING by
//! a manager that died before its `create_kernels` reached the agent becomes RUNNING once the
//! dispatch timeout passes, sending a creation twice never creates twice (the agent answers a
//! kernel that exists as it is), and a creation that arrives after its session ended is undone.

mod common;

use std::time::{Duration, Instant};

use bai_agent_runtime::rpc::pb;
use bai_core::{AgentId, KernelId, KernelStatus, ResourceSlot, SessionId, SessionStatus};
use bai_manager::db::entities::{kernel, session};
use bai_manager::db::repo;
use bai_manager::db::types::JsonOf;
use chrono::Utc;
use sea_orm::Set;
use serde_json::json;

/// What a manager that died mid-dispatch leaves behind: a session and its kernel claimed
/// (PREPARING) and placed on `agent`, which never heard of them.
async fn left_preparing(db: &sea_orm::DatabaseConnection, agent: &AgentId, name: &str) -> (SessionId, KernelId) {
    let slots: ResourceSlot = serde_json::from_value(json!({"cpu": "0.1", "mem": "67108864"})).unwrap();
    let s = session::ActiveModel {
        name: Set(name.into()),
        domain_name: Set("default".into()),
        group_id: Set("2de2b969-1d04-48a6-af16-0bc8adb3c831".parse().unwrap()),
        user_uuid: Set("dfa9da54-4b28-432f-be29-c0d680c7a412".parse().unwrap()),
        access_key: Set(Some(common::USER.0.into())),
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
        // The process backend runs this for the "host" image.
        internal_data: Set(Some(json!({"cmd": ["sleep", "600"]}))),
        ..Default::default()
    };
    let (row, kernels) = repo::insert_session_with_kernels(db, s, vec![k]).await.unwrap();
    let (session_id, kernel_id) = (SessionId::from_uuid(row.id), KernelId::from_uuid(kernels[0].id));
    repo::assign_kernel_agent(db, kernel_id, agent).await.unwrap();
    repo::force_kernel_status(db, kernel_id, KernelStatus::Preparing, None, None).await.unwrap();
    repo::force_session_status(db, session_id, SessionStatus::Preparing, None, None).await.unwrap();
    (session_id, kernel_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_lost_with_its_manager_is_sent_again_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, agent_config) = bai_manager::local::configs(dir.path());
    config.manager.dispatch_timeout = 1.0;
    let running = bai_manager::local::LocalManager::start_with(config, agent_config).await.unwrap();
    let db = running.manager.db().clone();
    assert_eq!(running.manager.dispatch_timeout(), Duration::from_secs(1));
    let agent_row = repo::list_agents(&db, None, None).await.unwrap().remove(0);
    let agent = AgentId::new(&agent_row.id).unwrap();

    let (session_id, kernel_id) = left_preparing(&db, &agent, "lost-creation").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = repo::get_session(&db, session_id).await.unwrap().unwrap();
        if s.status.0 == SessionStatus::Running {
            break;
        }
        assert!(Instant::now() < deadline, "still {} ({:?}) after 30 s", s.status.0, s.status_info);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let k = repo::get_kernel(&db, kernel_id).await.unwrap().unwrap();
    assert_eq!(k.status.0, KernelStatus::Running);
    assert!(k.container_id.is_some(), "the agent's kernel_started filled the container: {k:?}");

    // The same creation once more, straight to the agent: answered with the kernel that exists,
    // nothing new created, the session still RUNNING.
    let mut client = running.manager.clients().client(&agent_row.addr).unwrap();
    let requests = bai_manager::scheduler::creation_requests(&db, session_id).await.unwrap();
    let request = requests.into_values().next().unwrap();
    let reply = client.create_kernels(request).await.expect("a repeated creation is answered").into_inner();
    assert_eq!(reply.kernels.len(), 1);
    assert_eq!(reply.kernels[0].kernel_id, kernel_id.to_string());
    assert_eq!(Some(reply.kernels[0].container_id.clone()), k.container_id);
    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    let held: Vec<&str> = status.kernels.iter().map(|k| k.kernel_id.as_str()).collect();
    assert_eq!(held, vec![kernel_id.to_string().as_str()], "the agent holds the kernel once");
    assert!(status.busy_kernels.is_empty(), "nothing in progress: {:?}", status.busy_kernels);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = repo::get_session(&db, session_id).await.unwrap().unwrap();
    assert_eq!(s.status.0, SessionStatus::Running);

    // A session that runs is left alone, and destroying it works as usual.
    assert!(running.manager.redispatch_stalled().await.unwrap().is_empty());
    assert_eq!(
        running.manager.destroy_session(session_id, false, "user-requested").await.unwrap(),
        SessionStatus::Terminated
    );

    // A creation that reaches the agent after the session ended (destroyed between the check
    // and the call): the agent starts the kernel, the manager has it TERMINATED and has the
    // agent destroy it, so nothing keeps running.
    let requests = bai_manager::scheduler::creation_requests(&db, session_id).await.unwrap();
    client.create_kernels(requests.into_values().next().unwrap()).await.expect("the late creation");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
        if status.kernels.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the late kernel still runs: {:?}", status.kernels);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let k = repo::get_kernel(&db, kernel_id).await.unwrap().unwrap();
    assert_eq!(k.status.0, KernelStatus::Terminated, "the kernel stays ended");
}
