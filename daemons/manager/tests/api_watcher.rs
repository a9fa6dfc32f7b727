//! The superadmin's agent-watcher routes (`/resource/watcher…`) against real watchers
//! (`bai_agent::watcher::run`, supervising a `sleep` in place of an agent): status, stop,
//! start and restart through the manager; a regular user refused; an unknown agent 404; a
//! watcher with another token 502 naming the token; a watcher that is not there 503.

mod common;

use std::time::Duration;

use bai_agent::watcher::WatcherConfig;
use bai_core::{AgentId, ResourceSlot};
use bai_manager::db::repo::{self, AgentHeartbeatRow};
use serde_json::{json, Value};

const TOKEN: &str = "watcher-test-token";

/// A watcher on `listener` supervising `program args` with `token`; stop it by sending on the
/// returned channel (what it supervises keeps running, as an agent would).
fn watcher(
    listener: tokio::net::TcpListener,
    token: &str,
    program: &str,
    args: &[&str],
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let args = args.iter().map(|a| a.to_string()).collect();
    let mut config = WatcherConfig::new(program.into(), args, token.into());
    config.stop_grace = Duration::from_secs(5);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bai_agent::watcher::run(config, listener, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// Records an agent whose RPC address is `addr` (it never heartbeats again).
async fn register(db: &sea_orm::DatabaseConnection, id: &str, addr: &str) {
    let row = AgentHeartbeatRow::new(AgentId::new(id).unwrap(), "default", ResourceSlot::new(), addr);
    repo::upsert_agent_from_heartbeat(db, row).await.unwrap();
}

fn pid_alive(pid: u64) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superadmins_drive_an_agents_watcher_through_the_manager() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_watcher, watcher_task) = watcher(listener, TOKEN, "sleep", &["120"]);

    let dir = tempfile::tempdir().unwrap();
    let (mut config, agent) = bai_manager::local::configs(dir.path());
    config.watcher.port = port;
    config.watcher.token = TOKEN.into();
    let running = bai_manager::local::LocalManager::start_with(config, agent).await.unwrap();
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    // The embedded agent listens on 127.0.0.1, so its watcher is this one.
    let agents = repo::list_agents(&db, None, None).await.unwrap();
    assert_eq!(agents.len(), 1);
    assert!(agents[0].addr.contains("127.0.0.1:"), "{}", agents[0].addr);
    let agent_id = agents[0].id.clone();
    let body = json!({ "agent_id": agent_id });

    let status =
        common::request(addr, Some(common::ADMIN), "GET", &format!("/resource/watcher?agent_id={agent_id}"), None)
            .await;
    assert_eq!(status.status, 200, "{}", status.body);
    let status = status.json();
    assert_eq!(status["state"], "running", "{status}");
    let first_pid = status["pid"].as_u64().expect("a pid while running");
    assert!(pid_alive(first_pid));

    let stopped = common::request(addr, Some(common::ADMIN), "POST", "/resource/watcher/agent/stop", Some(&body)).await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.json()["state"], "stopped");
    assert_eq!(stopped.json()["pid"], Value::Null);
    assert!(!pid_alive(first_pid), "the supervised process survived the stop");
    let status =
        common::request(addr, Some(common::ADMIN), "GET", &format!("/resource/watcher?agent_id={agent_id}"), None)
            .await;
    assert_eq!(status.json()["state"], "stopped");

    let started =
        common::request(addr, Some(common::ADMIN), "POST", "/resource/watcher/agent/start", Some(&body)).await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.json()["state"], "running");
    let second_pid = started.json()["pid"].as_u64().unwrap();
    assert!(pid_alive(second_pid));
    let restarted =
        common::request(addr, Some(common::ADMIN), "POST", "/resource/watcher/agent/restart", Some(&body)).await;
    assert_eq!(restarted.status, 200, "{}", restarted.body);
    assert_eq!(restarted.json()["state"], "running");
    let third_pid = restarted.json()["pid"].as_u64().unwrap();
    assert_ne!(third_pid, second_pid);
    assert!(!pid_alive(second_pid) && pid_alive(third_pid));

    // A regular user is refused as on every superadmin route (401 "Unauthorized access", as
    // the original answers), and nothing is done.
    for (method, path, body) in [
        ("GET", format!("/resource/watcher?agent_id={agent_id}"), None),
        ("POST", "/resource/watcher/agent/stop".to_string(), Some(&body)),
    ] {
        let refused = common::request(addr, Some(common::USER), method, &path, body).await;
        assert_eq!(refused.status, 401, "{method} {path}: {}", refused.body);
        assert_eq!(refused.json()["msg"], "Unauthorized access");
    }
    assert!(pid_alive(third_pid));

    // Bad input and an unknown agent.
    let missing =
        common::request(addr, Some(common::ADMIN), "POST", "/resource/watcher/agent/start", Some(&json!({}))).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert!(missing.body.contains("agent_id"), "{}", missing.body);
    let unknown = common::request(addr, Some(common::ADMIN), "GET", "/resource/watcher?agent_id=i-nowhere", None).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let unknown = unknown.json();
    assert_eq!(unknown["type"], "https://api.backend.ai/probs/object-not-found");
    assert_eq!(unknown["title"], "No such agent.");
    assert_eq!(unknown["msg"], "agent \"i-nowhere\" is not registered");

    // An agent whose watcher wants another token: 502 with the watcher's 401 passed on.
    let other = tokio::net::TcpListener::bind(("127.0.0.2", port)).await.expect("127.0.0.2 is loopback too");
    // (It supervises `true`, which ends at once and is restarted: nothing to clean up.)
    let (stop_other, other_task) = watcher(other, "another-token", "true", &[]);
    register(&db, "i-other-token", "tcp://127.0.0.2:6011").await;
    let wrong = common::request(
        addr,
        Some(common::ADMIN),
        "POST",
        "/resource/watcher/agent/restart",
        Some(&json!({"agent_id": "i-other-token"})),
    )
    .await;
    assert_eq!(wrong.status, 502, "{}", wrong.body);
    let wrong = wrong.json();
    assert_eq!(wrong["type"], "https://api.backend.ai/probs/bad-gateway");
    assert_eq!(wrong["data"]["watcher_status"], 401);
    assert_eq!(wrong["data"]["url"], format!("http://127.0.0.2:{port}/restart"));
    let msg = wrong["msg"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("agent i-other-token: the watcher at http://127.0.0.2:{port}/restart answered 401"))
            && msg.contains("[watcher] token"),
        "{msg}"
    );

    // An agent whose watcher does not run: 503.
    register(&db, "i-no-watcher", "127.0.0.3:6011").await;
    let gone = common::request(addr, Some(common::ADMIN), "GET", "/resource/watcher?agent_id=i-no-watcher", None).await;
    assert_eq!(gone.status, 503, "{}", gone.body);
    let gone = gone.json();
    assert_eq!(gone["type"], "https://api.backend.ai/probs/service-unavailable");
    assert!(
        gone["msg"]
            .as_str()
            .unwrap()
            .starts_with(&format!("agent i-no-watcher: the watcher at http://127.0.0.3:{port}/status is unreachable")),
        "{gone}"
    );

    // Clean up: stop the supervised `sleep`, then the watchers and the manager.
    let stopped = common::request(addr, Some(common::ADMIN), "POST", "/resource/watcher/agent/stop", Some(&body)).await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert!(!pid_alive(third_pid));
    for (stop, task) in [(stop_watcher, watcher_task), (stop_other, other_task)] {
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
    running.shutdown().await;
}
