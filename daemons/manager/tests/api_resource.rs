//! `/resource/*` (spec §9) on an all-in-one manager: the presets, check-presets before and after
//! a session starts, allocatability against the agent and the keypair policy, bad parameters,
//! and the superadmin's usage recount.

mod common;

use bai_core::{AgentStatus, Decimal, ResourceSlot};
use bai_manager::db::entities::{keypair_resource_policy, resource_preset};
use bai_manager::db::repo;
use bai_manager::db::types::{DefaultForUnspecified, JsonOf, Wire};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::{json, Value};

fn session_body(name: &str) -> Value {
    json!({"tag": null, "name": name,
        "config": {"mounts": [], "environ": {}, "resources": {"cpu": "1", "mem": "256m"}, "resource_opts": {},
                   "scalingGroup": null, "mount_map": {}, "preopen_ports": null},
        "dependencies": [], "callback_url": null, "architecture": std::env::consts::ARCH,
        "clusterSize": 1, "clusterMode": "single-node", "starts_at": null, "bootstrap_script": null,
        "owner_access_key": null, "domain": "default", "group": "default", "type": "interactive",
        "enqueueOnly": false, "maxWaitSeconds": 0, "reuseIfExists": true, "startupCommand": null,
        "image": "host"})
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap()
}

/// The single agent's free slots, from the database.
async fn agent_free(running: &bai_manager::server::RunningManager) -> ResourceSlot {
    let agents = repo::list_agents(running.manager.db(), None, Some(AgentStatus::Alive)).await.unwrap();
    assert_eq!(agents.len(), 1);
    &agents[0].available_slots.0 - &agents[0].occupied_slots.0
}

fn preset<'a>(reply: &'a Value, name: &str) -> &'a Value {
    reply["presets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {reply}"))
}

async fn check(addr: std::net::SocketAddr, query: &str) -> common::Reply {
    common::request(addr, Some(common::USER), "POST", &format!("/resource/check-presets{query}"), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presets_and_check_presets() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    // A preset no node can hold, and one of another scaling group.
    repo::create_scaling_group(
        &db,
        bai_manager::db::entities::scaling_group::ActiveModel { name: Set("other".into()), ..Default::default() },
    )
    .await
    .unwrap();
    for (name, cpu, group) in [("98-huge", "100000", None), ("99-elsewhere", "1", Some("other"))] {
        repo::create_resource_preset(
            &db,
            resource_preset::ActiveModel {
                name: Set(name.into()),
                resource_slots: Set(JsonOf(serde_json::from_value(json!({"cpu": cpu, "mem": "1073741824"})).unwrap())),
                shared_memory: Set(None),
                scaling_group_name: Set(group.map(String::from)),
            },
        )
        .await
        .unwrap();
    }

    // GET /resource/presets
    let unsigned = common::request(addr, None, "GET", "/resource/presets", None).await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.body);
    let reply = common::request(addr, Some(common::USER), "GET", "/resource/presets", None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    let listed = reply.json();
    let names: Vec<&str> = listed["presets"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["01-small", "02-medium", "03-large", "98-huge", "99-elsewhere"]);
    let small = preset(&listed, "01-small");
    assert_eq!(small["resource_slots"]["cpu"], "1");
    assert_eq!(small["resource_slots"]["mem"], "1073741824");
    assert_eq!(small["shared_memory"], Value::Null);
    assert_eq!(preset(&listed, "02-medium")["shared_memory"], "1073741824");
    let only_default =
        common::request(addr, Some(common::USER), "GET", "/resource/presets?scaling_group=default", None).await;
    assert_eq!(only_default.json()["presets"].as_array().unwrap().len(), 4, "{}", only_default.body);

    // POST /resource/check-presets, nothing running (the default policy is UNLIMITED).
    let free = agent_free(&running).await;
    let reply = check(addr, "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let before = reply.json();
    for key in [
        "keypair_limits",
        "keypair_using",
        "keypair_remaining",
        "group_limits",
        "group_using",
        "group_remaining",
        "scaling_group_remaining",
        "scaling_groups",
        "presets",
    ] {
        assert!(before.get(key).is_some(), "{key} missing: {before}");
    }
    assert_eq!(before["keypair_limits"]["cpu"], "Infinity");
    assert_eq!(before["keypair_remaining"]["mem"], "Infinity");
    assert_eq!(before["keypair_using"]["cpu"], "0");
    assert_eq!(before["group_limits"]["cpu"], "NaN");
    assert_eq!(before["group_remaining"]["mem"], "NaN");
    let sgroups = before["scaling_groups"].as_object().unwrap();
    assert_eq!(sgroups.keys().collect::<Vec<_>>(), ["default"]);
    assert_eq!(before["scaling_groups"]["default"]["using"]["cpu"], "0");
    assert_eq!(dec(&before["scaling_groups"]["default"]["remaining"]["cpu"]), free.get("cpu"));
    assert_eq!(dec(&before["scaling_groups"]["default"]["remaining"]["mem"]), free.get("mem"));
    assert_eq!(dec(&before["scaling_group_remaining"]["cpu"]), free.get("cpu"));
    let names: Vec<&str> = before["presets"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["01-small", "02-medium", "03-large", "98-huge", "99-elsewhere"]);
    for p in before["presets"].as_array().unwrap() {
        let cpu = dec(&p["resource_slots"]["cpu"]);
        let mem = dec(&p["resource_slots"]["mem"]);
        let fits = cpu <= free.get("cpu") && mem <= free.get("mem");
        assert_eq!(p["allocatable"], fits, "{p} against {free}");
    }
    assert_eq!(preset(&before, "98-huge")["allocatable"], false);
    assert_eq!(preset(&before, "01-small")["allocatable"], true, "the agent has 1 CPU and 1 GiB free: {free}");
    // the same with the scaling group named, or the group by name
    let named = check(addr, "?scaling_group=default&group=default").await;
    assert_eq!(named.status, 200, "{}", named.body);
    assert_eq!(named.json()["scaling_groups"], before["scaling_groups"]);
    assert_eq!(named.json()["presets"].as_array().unwrap().len(), 4, "the other group's preset is left out");

    // Bad parameters.
    for (query, msg) in
        [("?group=no-such-group", "Unknown user group"), ("?scaling_group=nowhere", "Unknown scaling group")]
    {
        let bad = check(addr, query).await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        let body = bad.json();
        assert_eq!(body["type"], "https://api.backend.ai/probs/invalid-api-params");
        assert!(body["title"].is_string());
        assert_eq!(body["msg"], msg);
    }

    // A session of 1 CPU and 256 MiB starts.
    let created = common::request(addr, Some(common::USER), "POST", "/session", Some(&session_body("rsrc-1"))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["status"], "RUNNING", "{}", created.body);
    let after = check(addr, "").await.json();
    assert_eq!(after["keypair_using"]["cpu"], "1");
    assert_eq!(after["keypair_using"]["mem"], "268435456");
    assert_eq!(after["keypair_remaining"]["cpu"], "Infinity");
    assert_eq!(after["scaling_groups"]["default"]["using"]["cpu"], "1");
    assert_eq!(after["scaling_groups"]["default"]["using"]["mem"], "268435456");
    assert_eq!(dec(&after["scaling_groups"]["default"]["remaining"]["cpu"]), free.get("cpu") - Decimal::ONE);
    assert_eq!(
        dec(&after["scaling_groups"]["default"]["remaining"]["mem"]),
        free.get("mem") - Decimal::from(268_435_456u64)
    );
    assert_eq!(dec(&after["scaling_group_remaining"]["cpu"]), free.get("cpu") - Decimal::ONE);
    // The admin's view of its own keypair is unaffected.
    let admin = common::request(addr, Some(common::ADMIN), "POST", "/resource/check-presets", None).await.json();
    assert_eq!(admin["keypair_using"]["cpu"], "0");
    assert_eq!(admin["scaling_groups"]["default"]["using"]["cpu"], "0");

    // A LIMITED policy of 2 CPUs and 2 GiB: 1 CPU left, unlisted slots 0.
    let policy = repo::get_keypair_resource_policy(&db, "default").await.unwrap().unwrap();
    let mut policy: keypair_resource_policy::ActiveModel = policy.into();
    policy.total_resource_slots =
        Set(JsonOf(serde_json::from_value(json!({"cpu": "2", "mem": "2147483648"})).unwrap()));
    policy.default_for_unspecified = Set(Wire(DefaultForUnspecified::Limited));
    policy.update(&db).await.unwrap();
    let limited = check(addr, "").await.json();
    assert_eq!(limited["keypair_limits"]["cpu"], "2");
    assert_eq!(limited["keypair_limits"]["mem"], "2147483648");
    assert_eq!(limited["keypair_remaining"]["cpu"], "1");
    assert_eq!(limited["keypair_remaining"]["mem"], "1879048192");
    for (slot, value) in limited["keypair_limits"].as_object().unwrap() {
        if slot != "cpu" && slot != "mem" {
            assert_eq!(value, "0", "{slot} is limited to 0");
        }
    }
    // The groups' remaining slots are capped by the keypair's.
    assert_eq!(limited["scaling_groups"]["default"]["remaining"]["cpu"], "1");
    assert_eq!(limited["scaling_group_remaining"]["mem"], "1879048192");
    assert_eq!(preset(&limited, "01-small")["allocatable"], true);
    assert_eq!(preset(&limited, "02-medium")["allocatable"], false, "2 CPUs > the 1 left to the keypair");
    assert_eq!(preset(&limited, "03-large")["allocatable"], false);

    // Only the superadmin may recount; the recount agrees with the scheduler's bookkeeping.
    let refused = common::request(addr, Some(common::USER), "POST", "/resource/recalculate-usage", None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let occupied_before = repo::list_agents(&db, None, None).await.unwrap()[0].occupied_slots.0.clone();
    let recount = common::request(addr, Some(common::ADMIN), "POST", "/resource/recalculate-usage", None).await;
    assert_eq!(recount.status, 200, "{}", recount.body);
    assert_eq!(recount.json(), json!({}));
    let occupied_after = repo::list_agents(&db, None, None).await.unwrap()[0].occupied_slots.0.clone();
    assert_eq!(occupied_after, occupied_before);
    assert_eq!(occupied_after.get("cpu"), Decimal::ONE);

    let gone = common::request(addr, Some(common::USER), "DELETE", "/session/rsrc-1?forced=true", None).await;
    assert!(gone.status == 200 || gone.status == 204, "{}", gone.body);
    running.shutdown().await;
}

/// The read-only routes of `admin resource query-slots / vfolder-types / docker-registries`
/// and the CLI's announcement check.
#[tokio::test]
async fn cluster_settings_and_the_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;

    let slots = common::request(addr, Some(common::USER), "GET", "/config/resource-slots", None).await;
    assert_eq!(slots.status, 200, "{}", slots.body);
    let slots = slots.json();
    assert_eq!((&slots["cpu"], &slots["mem"]), (&json!("count"), &json!("bytes")), "{slots}");
    assert!(slots.as_object().unwrap().values().all(Value::is_string), "every unit is a string: {slots}");

    let types = common::request(addr, Some(common::USER), "GET", "/config/vfolder-types", None).await;
    assert_eq!(types.json(), json!(["user", "group"]));
    let registries = common::request(addr, Some(common::USER), "GET", "/config/docker-registries", None).await;
    assert_eq!(registries.status, 200, "{}", registries.body);
    assert!(registries.json().is_object(), "{}", registries.body);
    let unsigned = common::request(addr, None, "GET", "/config/resource-slots", None).await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.body);

    let none = common::request(addr, Some(common::USER), "GET", "/manager/announcement", None).await;
    assert_eq!(none.json(), json!({"enabled": false, "message": ""}));
    m.shared.put(bai_manager::api::config::ANNOUNCEMENT_KEY, "Maintenance at **09:00 UTC**.").await.unwrap();
    let some = common::request(addr, Some(common::USER), "GET", "/manager/announcement", None).await;
    assert_eq!(some.json(), json!({"enabled": true, "message": "Maintenance at **09:00 UTC**."}));
    m.shutdown().await;
}
