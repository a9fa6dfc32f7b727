//! The GraphQL endpoint against an all-in-one manager: the exact queries the official CLI
//! sends for `ps`/`session list` and `session info` (spec §7.3–7.4), answered with keys in
//! selection order and exact `total_count`s; who sees which sessions; filters and orderings;
//! and the error envelope.
//!
//! Sessions are inserted straight into the database, asking for far more CPU than the
//! embedded agent has, so they stay PENDING while the tests read them.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bai_core::{KernelStatus, SessionStatus};
use bai_manager::api::{ApiVersion, AuthContext, Credential, Role};
use bai_manager::db::entities::{domain, group, kernel, session, session_dependency, user};
use bai_manager::db::repo;
use bai_manager::db::types::{JsonOf, UserRole, Wire};
use chrono::{Duration, Utc};
use common::backends::{on_postgres, on_sqlite};
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set};
use serde_json::{json, Value};
use uuid::Uuid;

const GROUP: &str = "2de2b969-1d04-48a6-af16-0bc8adb3c831";
const SUPERADMIN_UUID: &str = "f38dea23-50fa-42a0-b5ae-338f5f4693f4";
const USER_UUID: &str = "dfa9da54-4b28-432f-be29-c0d680c7a412";

/// The statuses `ps` asks for by default (spec §9).
const ACTIVE: &str = "PENDING,SCHEDULED,PULLING,PREPARING,RUNNING,RUNNING_DEGRADED,TERMINATING,ERROR";
/// `ps --all`.
const ALL: &str =
    "PENDING,SCHEDULED,PULLING,PREPARING,RUNNING,RESTARTING,RUNNING_DEGRADED,TERMINATING,TERMINATED,ERROR,CANCELLED";

/// `ps` step 1, exactly as the client sends it.
const KEYPAIR_QUERY: &str = "query {  keypair {    user_id access_key secret_key is_active is_admin  }}";

/// The paginated-list query of `ps` as the client builds it (§7.3), with these fields.
fn list_query(fields: &str) -> String {
    format!(
        "query($limit:Int!, $offset:Int!, $status: String, $access_key: String, $filter: String, $order: String) {{\n  \
         compute_session_list(\n      limit:$limit, offset:$offset, status:$status, access_key:$access_key, filter:$filter, order:$order) {{\n    \
         items {{ {fields} }}\n    total_count\n  }}\n}}"
    )
}

/// The fields of `ps` for a regular user.
const PS_FIELDS: &str = "name id group_name main_kernel_id image type status status_info status_changed result";

/// `session info`, exactly as the client sends it (the trailing `id` inside `containers` is
/// part of the capture).
const INFO_QUERY: &str =
    "query($id: UUID!) {  compute_session(id: $id) {    name id main_kernel_id image tag created_at \
     terminated_at status status_info status_data occupying_slots idle_checks containers { id cluster_role cluster_idx \
     cluster_hostname session_id image registry status status_info status_data status_changed agent container_id \
     resource_opts occupied_slots preopen_ports live_stat last_stat id } dependencies { name id }  }}";

fn list_vars(limit: i64, offset: i64, status: Option<&str>) -> Value {
    json!({"status": status, "access_key": null, "filter": null, "order": null, "limit": limit, "offset": offset})
}

async fn gql(addr: SocketAddr, key: (&str, &str), query: &str, variables: Value) -> common::Reply {
    common::request(addr, Some(key), "POST", "/admin/gql", Some(&json!({"query": query, "variables": variables}))).await
}

/// Asserts that the raw text names `keys` (as `"key":`) in this order from `from` on, and
/// answers where the last one is.
fn assert_keys_in_order(raw: &str, from: usize, keys: &[&str]) -> usize {
    let mut at = from;
    for key in keys {
        let needle = format!("\"{key}\":");
        match raw[at..].find(&needle) {
            Some(i) => at += i + needle.len(),
            None => panic!("{needle} does not follow position {at} in {raw}"),
        }
    }
    at
}

/// The owner of inserted sessions.
#[derive(Clone)]
struct Owner {
    user: Uuid,
    access_key: String,
    domain: String,
    group: Uuid,
}

fn regular_user() -> Owner {
    Owner {
        user: USER_UUID.parse().unwrap(),
        access_key: common::USER.0.into(),
        domain: "default".into(),
        group: GROUP.parse().unwrap(),
    }
}

fn superadmin() -> Owner {
    Owner {
        user: SUPERADMIN_UUID.parse().unwrap(),
        access_key: common::ADMIN.0.into(),
        domain: "default".into(),
        group: GROUP.parse().unwrap(),
    }
}

/// Inserts a session of `kernels` kernels (1000 CPUs each: it never fits, so it stays as it is)
/// created `age` seconds ago, in `status`.
async fn insert(
    db: &DatabaseConnection,
    owner: &Owner,
    name: &str,
    age: i64,
    kernels: usize,
    status: SessionStatus,
) -> (session::Model, Vec<kernel::Model>) {
    let created = Utc::now() - Duration::seconds(age);
    let slots: bai_core::ResourceSlot = serde_json::from_value(json!({"cpu": "1000", "mem": "134217728"})).unwrap();
    let terminal = matches!(status, SessionStatus::Terminated | SessionStatus::Cancelled);
    let s = session::ActiveModel {
        name: Set(name.into()),
        domain_name: Set(owner.domain.clone()),
        group_id: Set(owner.group),
        user_uuid: Set(owner.user),
        access_key: Set(Some(owner.access_key.clone())),
        scaling_group_name: Set(Some("default".into())),
        images: Set(JsonOf(vec!["host".into()])),
        tag: Set(Some(format!("tag-{name}"))),
        created_at: Set(created),
        status: Set(Wire(status)),
        terminated_at: Set(terminal.then(|| created + Duration::seconds(1))),
        ..Default::default()
    };
    let kernel_status: KernelStatus = status.as_str().parse().unwrap();
    let ks = (0..kernels)
        .map(|i| kernel::ActiveModel {
            cluster_role: Set(if i == 0 { "main" } else { "sub" }.into()),
            cluster_idx: Set(if i == 0 { 1 } else { i as i32 }),
            local_rank: Set(i as i32),
            image: Set(Some("host".into())),
            architecture: Set(std::env::consts::ARCH.into()),
            requested_slots: Set(JsonOf(slots.clone())),
            internal_data: Set(Some(json!({"cmd": ["sleep", "600"]}))),
            status: Set(Wire(kernel_status)),
            ..Default::default()
        })
        .collect();
    repo::insert_session_with_kernels(db, s, ks).await.expect("insert session")
}

/// A user with a keypair: (owner, (access key, secret key)).
async fn new_user(
    db: &DatabaseConnection,
    email: &str,
    role: UserRole,
    domain: &str,
    group: Uuid,
) -> (Owner, (String, String)) {
    let row = user::ActiveModel {
        email: Set(email.into()),
        username: Set(Some(email.split('@').next().unwrap().into())),
        full_name: Set(Some(format!("Full {email}"))),
        domain_name: Set(domain.into()),
        role: Set(Wire(role)),
        ..Default::default()
    };
    let created = repo::create_user(db, row).await.expect("create user");
    repo::add_user_to_group(db, created.uuid, group).await.expect("join group");
    let keys = repo::create_keypair(db, created.uuid, role.is_admin(), "default").await.expect("keypair");
    (Owner { user: created.uuid, access_key: keys.0.clone(), domain: domain.into(), group }, keys)
}

/// A second domain with one group.
async fn other_domain(db: &DatabaseConnection) -> Uuid {
    repo::create_domain(db, domain::ActiveModel { name: Set("other".into()), ..Default::default() })
        .await
        .expect("domain");
    let g = repo::create_group(
        db,
        group::ActiveModel { name: Set("other-group".into()), domain_name: Set("other".into()), ..Default::default() },
    )
    .await
    .expect("group");
    g.id
}

fn names(reply: &Value) -> Vec<String> {
    reply["data"]["compute_session_list"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {reply}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

fn total(reply: &Value) -> i64 {
    reply["data"]["compute_session_list"]["total_count"].as_i64().unwrap_or_else(|| panic!("no total_count in {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_queries_answer_in_selection_order_with_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    let me = regular_user();
    let (s1, k1) = insert(&db, &me, "sess-1", 30, 1, SessionStatus::Pending).await;
    insert(&db, &me, "sess-2", 20, 1, SessionStatus::Pending).await;
    insert(&db, &me, "sess-3", 10, 1, SessionStatus::Pending).await;
    insert(&db, &me, "sess-dead", 40, 1, SessionStatus::Terminated).await;

    // Step 1: the requester's own keypair, keys in selection order.
    let reply = gql(addr, common::USER, KEYPAIR_QUERY, json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(
        reply.body,
        format!(
            r#"{{"data":{{"keypair":{{"user_id":"user@lablup.com","access_key":"{}","secret_key":"{}","is_active":true,"is_admin":false}}}}}}"#,
            common::USER.0,
            common::USER.1
        )
    );

    // Step 2: pages of two.
    let query = list_query(PS_FIELDS);
    let page1 = gql(addr, common::USER, &query, list_vars(2, 0, Some(ACTIVE))).await;
    assert_eq!(page1.status, 200, "{}", page1.body);
    assert!(page1.body.starts_with(r#"{"data":{"compute_session_list":{"items":[{"name":"#), "{}", page1.body);
    let end = assert_keys_in_order(
        &page1.body,
        0,
        &[
            "name",
            "id",
            "group_name",
            "main_kernel_id",
            "image",
            "type",
            "status",
            "status_info",
            "status_changed",
            "result",
        ],
    );
    assert_keys_in_order(&page1.body, end, &["name", "id", "group_name", "main_kernel_id"]);
    assert!(page1.body.ends_with(r#"],"total_count":3}}}"#), "{}", page1.body);
    let page1 = page1.json();
    assert_eq!(total(&page1), 3);
    // Newest activity first.
    assert_eq!(names(&page1), ["sess-3", "sess-2"]);
    let item = &page1["data"]["compute_session_list"]["items"][0];
    assert_eq!(item["group_name"], "default");
    assert_eq!(item["image"], "host");
    assert_eq!(item["type"], "INTERACTIVE");
    assert_eq!(item["status"], "PENDING");
    assert_eq!(item["result"], "UNDEFINED");
    let changed = item["status_changed"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(changed).is_ok() && changed.ends_with("+00:00"), "{changed}");

    let page2 = gql(addr, common::USER, &query, list_vars(2, 2, Some(ACTIVE))).await.json();
    assert_eq!(total(&page2), 3);
    assert_eq!(names(&page2), ["sess-1"]);
    let last = &page2["data"]["compute_session_list"]["items"][0];
    assert_eq!(last["id"], s1.id.to_string());
    assert_eq!(last["main_kernel_id"], k1[0].id.to_string());
    let past_end = gql(addr, common::USER, &query, list_vars(2, 4, Some(ACTIVE))).await.json();
    assert_eq!(total(&past_end), 3);
    assert_eq!(names(&past_end), Vec::<String>::new());

    // --all, --dead, --running, no status at all.
    let all = gql(addr, common::USER, &query, list_vars(20, 0, Some(ALL))).await.json();
    assert_eq!(total(&all), 4);
    let dead = gql(addr, common::USER, &query, list_vars(20, 0, Some("CANCELLED,TERMINATED"))).await.json();
    assert_eq!(names(&dead), ["sess-dead"]);
    let running_only =
        gql(addr, common::USER, &query, list_vars(20, 0, Some("PREPARING,RUNNING,RUNNING_DEGRADED"))).await.json();
    assert_eq!(total(&running_only), 0);
    let unfiltered = gql(addr, common::USER, &query, list_vars(20, 0, None)).await.json();
    assert_eq!(total(&unfiltered), 4);

    // --detail adds tag, created_at and occupying_slots (a JSONString of the slots).
    let detail = list_query(&format!("{PS_FIELDS} tag created_at occupying_slots"));
    let reply = gql(addr, common::USER, &detail, list_vars(1, 0, Some(ACTIVE))).await;
    assert_keys_in_order(&reply.body, 0, &["result", "tag", "created_at", "occupying_slots"]);
    let item = reply.json()["data"]["compute_session_list"]["items"][0].clone();
    assert_eq!(item["tag"], "tag-sess-3");
    let slots: Value = serde_json::from_str(item["occupying_slots"].as_str().unwrap()).unwrap();
    assert_eq!(slots, json!({"cpu": "1000", "mem": "134217728"}));

    // An admin's `ps` adds the owner column after the name; -f replaces the list.
    let admin_fields =
        list_query("name access_key id group_name main_kernel_id image type status status_info status_changed result");
    let reply = gql(addr, common::ADMIN, &admin_fields, list_vars(20, 0, Some(ACTIVE))).await;
    assert_keys_in_order(&reply.body, 0, &["name", "access_key", "id"]);
    assert_eq!(total(&reply.json()), 3);
    let custom = list_query("status name user_email cluster_size");
    let reply = gql(addr, common::USER, &custom, list_vars(1, 0, Some(ACTIVE))).await;
    assert!(
        reply.body.starts_with(r#"{"data":{"compute_session_list":{"items":[{"status":"PENDING","name":"sess-3","user_email":"user@lablup.com","cluster_size":1}],"total_count":3}}}"#),
        "{}",
        reply.body
    );

    // Aliases and a second root keep the query's order too.
    let reply = gql(
        addr,
        common::USER,
        "query { b: compute_session_list(limit: 1, offset: 0) { total_count } a: keypair { is_admin access_key } }",
        json!({}),
    )
    .await;
    assert_eq!(
        reply.body,
        format!(r#"{{"data":{{"b":{{"total_count":4}},"a":{{"is_admin":false,"access_key":"{}"}}}}}}"#, common::USER.0)
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_their_own_sessions_admins_their_domain() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    let other_group = other_domain(&db).await;
    let (stranger, _) = new_user(&db, "stranger@other.org", UserRole::User, "other", other_group).await;
    let (_, domain_admin) =
        new_user(&db, "dadmin@lablup.com", UserRole::Admin, "default", GROUP.parse().unwrap()).await;
    let domain_admin = (domain_admin.0.as_str(), domain_admin.1.as_str());
    let (mine, _) = insert(&db, &regular_user(), "mine", 30, 1, SessionStatus::Pending).await;
    let (theirs, _) = insert(&db, &superadmin(), "theirs", 20, 1, SessionStatus::Pending).await;
    let (foreign, _) = insert(&db, &stranger, "foreign", 10, 1, SessionStatus::Pending).await;
    let query = list_query("name access_key");

    // A user sees their own session only, and may not name another access key.
    let reply = gql(addr, common::USER, &query, list_vars(20, 0, Some(ACTIVE))).await.json();
    assert_eq!(names(&reply), ["mine"]);
    assert_eq!(total(&reply), 1);
    let mut vars = list_vars(20, 0, Some(ACTIVE));
    vars["access_key"] = json!(common::ADMIN.0);
    let reply = gql(addr, common::USER, &query, vars.clone()).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["data"], json!({"compute_session_list": null}));
    assert!(body["errors"][0]["message"].as_str().unwrap().starts_with("Forbidden operation."), "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["compute_session_list"]));
    let info = |id: Uuid| json!({"id": id.to_string()});
    let reply = gql(addr, common::USER, INFO_QUERY, info(theirs.id)).await.json();
    assert_eq!(reply, json!({"data": {"compute_session": null}}));
    let reply = gql(addr, common::USER, INFO_QUERY, info(mine.id)).await.json();
    assert_eq!(reply["data"]["compute_session"]["name"], "mine");

    // A domain admin sees every session of their domain, none of another.
    let reply = gql(addr, domain_admin, &query, list_vars(20, 0, Some(ACTIVE))).await.json();
    assert_eq!(names(&reply), ["theirs", "mine"]);
    assert_eq!(total(&reply), 2);
    let reply = gql(addr, domain_admin, &query, vars.clone()).await.json();
    assert_eq!(names(&reply), ["theirs"]);
    let reply = gql(addr, domain_admin, INFO_QUERY, info(foreign.id)).await.json();
    assert_eq!(reply["data"]["compute_session"], Value::Null);
    let reply = gql(addr, domain_admin, KEYPAIR_QUERY, json!({})).await.json();
    assert_eq!(reply["data"]["keypair"]["is_admin"], true);
    assert_eq!(reply["data"]["keypair"]["user_id"], "dadmin@lablup.com");

    // A superadmin sees everything, or one access key's sessions when named.
    let reply = gql(addr, common::ADMIN, &query, list_vars(20, 0, Some(ACTIVE))).await.json();
    assert_eq!(names(&reply), ["foreign", "theirs", "mine"]);
    assert_eq!(total(&reply), 3);
    let mut vars = list_vars(20, 0, Some(ACTIVE));
    vars["access_key"] = json!(common::USER.0);
    let reply = gql(addr, common::ADMIN, &query, vars).await.json();
    assert_eq!(names(&reply), ["mine"]);
    let reply = gql(addr, common::ADMIN, INFO_QUERY, info(foreign.id)).await.json();
    assert_eq!(reply["data"]["compute_session"]["name"], "foreign");
    let reply = gql(
        addr,
        common::ADMIN,
        "query($ak: String) { keypair(access_key: $ak) { access_key user_info { email full_name } projects } }",
        json!({"ak": common::USER.0}),
    )
    .await;
    assert_eq!(
        reply.body,
        format!(
            r#"{{"data":{{"keypair":{{"access_key":"{}","user_info":{{"email":"user@lablup.com","full_name":"User Lablup"}},"projects":["default"]}}}}}}"#,
            common::USER.0
        )
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_info_lists_containers_and_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    let me = regular_user();
    let (before, _) = insert(&db, &me, "first", 60, 1, SessionStatus::Terminated).await;
    let (sess, kernels) = insert(&db, &me, "pair", 30, 2, SessionStatus::Pending).await;
    session_dependency::ActiveModel { session_id: Set(sess.id), depends_on: Set(before.id) }
        .insert(&db)
        .await
        .expect("dependency");

    let reply = gql(addr, common::USER, INFO_QUERY, json!({"id": sess.id.to_string()})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let raw = &reply.body;
    let mut at = assert_keys_in_order(
        raw,
        0,
        &[
            "compute_session",
            "name",
            "id",
            "main_kernel_id",
            "image",
            "tag",
            "created_at",
            "terminated_at",
            "status",
            "status_info",
            "status_data",
            "occupying_slots",
            "idle_checks",
            "containers",
        ],
    );
    let container_keys = [
        "id",
        "cluster_role",
        "cluster_idx",
        "cluster_hostname",
        "session_id",
        "image",
        "registry",
        "status",
        "status_info",
        "status_data",
        "status_changed",
        "agent",
        "container_id",
        "resource_opts",
        "occupied_slots",
        "preopen_ports",
        "live_stat",
        "last_stat",
    ];
    for _ in 0..2 {
        at = assert_keys_in_order(raw, at, &container_keys);
    }
    assert_keys_in_order(raw, at, &["dependencies", "name", "id"]);

    let body = reply.json();
    let info = &body["data"]["compute_session"];
    assert_eq!(info["name"], "pair");
    assert_eq!(info["id"], sess.id.to_string());
    assert_eq!(info["main_kernel_id"], kernels[0].id.to_string());
    assert_eq!(info["terminated_at"], Value::Null);
    assert_eq!(info["idle_checks"], "{}");
    let slots: Value = serde_json::from_str(info["occupying_slots"].as_str().unwrap()).unwrap();
    assert_eq!(slots, json!({"cpu": "2000", "mem": "268435456"}));
    let containers = info["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    // The repeated `id` is answered once, in its first position.
    assert_eq!(containers[0].as_object().unwrap().len(), container_keys.len());
    assert_eq!(containers[0]["id"], kernels[0].id.to_string());
    assert_eq!(containers[0]["cluster_role"], "main");
    assert_eq!(containers[0]["cluster_hostname"], "main1");
    assert_eq!(containers[1]["cluster_role"], "sub");
    assert_eq!(containers[0]["session_id"], sess.id.to_string());
    assert_eq!(containers[0]["status"], "PENDING");
    assert_eq!(containers[0]["resource_opts"], "{}");
    assert_eq!(containers[0]["live_stat"], Value::Null);
    let slots: Value = serde_json::from_str(containers[1]["occupied_slots"].as_str().unwrap()).unwrap();
    assert_eq!(slots, json!({"cpu": "1000", "mem": "134217728"}));
    assert_eq!(info["dependencies"], json!([{"name": "first", "id": before.id.to_string()}]));

    // A dead session is still found by id; an unknown id is null.
    let reply = gql(addr, common::USER, INFO_QUERY, json!({"id": before.id.to_string()})).await.json();
    assert_eq!(reply["data"]["compute_session"]["status"], "TERMINATED");
    assert!(reply["data"]["compute_session"]["terminated_at"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(reply["data"]["compute_session"]["containers"][0]["status"], "TERMINATED");
    let reply = gql(addr, common::USER, INFO_QUERY, json!({"id": Uuid::new_v4().to_string()})).await.json();
    assert_eq!(reply, json!({"data": {"compute_session": null}}));
    running.shutdown().await;
}

/// Filters over the sessions of [`filter_fixture`] and the names they select, newest first.
const FILTER_CASES: &[(&str, &[&str])] = &[
    (r#"name ilike "%TRAIN%""#, &["admin-train", "train-b", "train-a"]),
    (r#"name like "train-%""#, &["train-b", "train-a"]),
    (r#"name contains "eval" | cluster_size >= 2"#, &["eval-c", "train-b"]),
    (r#"!name contains "train""#, &["eval-c"]),
    (r#"(name == "train-a" | name == "eval-c") & status == "pending""#, &["eval-c", "train-a"]),
    (r#"name in ["train-a", "nope"]"#, &["train-a"]),
    (r#"image == "host" & user_email == "user@lablup.com""#, &["eval-c", "train-b", "train-a"]),
    (r#"group_name == "default" & full_name ilike "admin%""#, &["admin-train"]),
    (
        r#"type == "INTERACTIVE" & result == "UNDEFINED" & terminated_at is null"#,
        &["admin-train", "eval-c", "train-b", "train-a"],
    ),
    (r#"created_at < "2000-01-01T00:00:00Z" | scheduled_at isnot null"#, &[]),
    (r#"access_key == "AKIAIOSFODNN7EXAMPLE""#, &["admin-train"]),
    (r#"agent_ids == "nowhere""#, &[]),
];

/// Four sessions for the filter cases: three of the user, one of the superadmin.
async fn filter_fixture(db: &DatabaseConnection) {
    let me = regular_user();
    insert(db, &me, "train-a", 30, 1, SessionStatus::Pending).await;
    insert(db, &me, "train-b", 20, 2, SessionStatus::Pending).await;
    insert(db, &me, "eval-c", 10, 1, SessionStatus::Pending).await;
    insert(db, &superadmin(), "admin-train", 5, 1, SessionStatus::Pending).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_orderings_use_the_original_mini_languages() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    filter_fixture(&db).await;
    let query = list_query("name");
    let run = |filter: Option<&str>, order: Option<&str>| {
        let mut vars = list_vars(20, 0, Some(ACTIVE));
        vars["filter"] = json!(filter);
        vars["order"] = json!(order);
        let query = query.clone();
        async move { gql(addr, common::ADMIN, &query, vars).await.json() }
    };

    for (filter, want) in FILTER_CASES {
        let reply = run(Some(filter), None).await;
        assert_eq!(names(&reply), *want, "{filter}: {reply}");
        assert_eq!(total(&reply), want.len() as i64, "{filter}");
    }

    let reply = run(None, Some("name")).await;
    assert_eq!(names(&reply), ["admin-train", "eval-c", "train-a", "train-b"]);
    let reply = run(Some(r#"name ilike "train%""#), Some("-name")).await;
    assert_eq!(names(&reply), ["train-b", "train-a"]);
    let reply = run(None, Some("user_email, -created_at")).await;
    assert_eq!(names(&reply), ["admin-train", "eval-c", "train-b", "train-a"]);
    let reply = run(None, Some("+created_at")).await;
    assert_eq!(names(&reply), ["train-a", "train-b", "eval-c", "admin-train"]);

    // What the original refuses is a GraphQL error naming the problem, with HTTP 200.
    for (filter, order, needle) in [
        (Some("name ~ 1"), None, "Query filter parsing error"),
        (Some(r#"bogus == "x""#), None, "Unknown/unsupported field name"),
        (Some(r#"name == 1"#), None, "expected a string"),
        (Some(r#"cluster_size like "1""#), None, "text fields only"),
        (Some(r#"status == "SLEEPING""#), None, "status"),
        (None, Some("name desc"), "Query ordering parsing error"),
        (None, Some("-bogus"), "Unknown/unsupported field name"),
    ] {
        let mut vars = list_vars(20, 0, Some(ACTIVE));
        vars["filter"] = json!(filter);
        vars["order"] = json!(order);
        let reply = gql(addr, common::ADMIN, &query, vars).await;
        assert_eq!(reply.status, 200);
        let body = reply.json();
        assert_eq!(body["data"], json!({"compute_session_list": null}), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{filter:?} {order:?}: {message}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_in_the_graphql_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    insert(&db, &regular_user(), "only", 10, 1, SessionStatus::Pending).await;

    // A syntax error: 200, data null, a message and where it is.
    let reply =
        gql(addr, common::USER, "query { compute_session_list(limit: 1, offset: 0 { total_count }", json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    assert!(reply.body.starts_with(r#"{"data":null,"errors":[{"message":"#), "{}", reply.body);
    let body = reply.json();
    assert!(body["errors"][0]["locations"][0]["line"].is_number(), "{body}");

    // Unknown fields, unknown arguments, wrong variable types: validation errors.
    for (query, vars, needle) in [
        ("query { keypair { user_id bogus_field } }", json!({}), "bogus_field"),
        ("query { compute_session_list(limit: 1, offset: 0, bogus: 1) { total_count } }", json!({}), "bogus"),
        (INFO_QUERY, json!({"id": "not-a-uuid"}), "id"),
        (INFO_QUERY, json!({}), "id"),
        ("query { compute_session_list(offset: 0) { total_count } }", json!({}), "limit"),
        ("mutation { nothing }", json!({}), "utation"),
    ] {
        let reply = gql(addr, common::USER, query, vars).await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        let body = reply.json();
        // Request-level errors leave no data; a variable the engine checks while executing
        // the field nulls that field.
        assert!(body["data"].is_null() || body["data"] == json!({"compute_session": null}), "{query}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }

    // A resolver error leaves the rest of the answer in place.
    let reply = gql(
        addr,
        common::USER,
        "query($s: String) { keypair { access_key } compute_session_list(limit: 5, offset: 0, status: $s) { total_count } }",
        json!({"s": "RUNNING,BOGUS"}),
    )
    .await;
    assert!(
        reply.body.starts_with(&format!(
            r#"{{"data":{{"keypair":{{"access_key":"{}"}},"compute_session_list":null}},"errors":[{{"message":"#,
            common::USER.0
        )),
        "{}",
        reply.body
    );
    let body = reply.json();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("\"BOGUS\""), "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["compute_session_list"]));

    // Undeclared variables are ignored; `variables` may be missing or null.
    let reply = gql(addr, common::USER, "query { keypair { is_admin } }", json!({"architecture": "x86_64"})).await;
    assert_eq!(reply.body, r#"{"data":{"keypair":{"is_admin":false}}}"#);
    for body in
        [json!({"query": "{ keypair { is_admin } }"}), json!({"query": "{ keypair { is_admin } }", "variables": null})]
    {
        let reply = common::request(addr, Some(common::USER), "POST", "/admin/gql", Some(&body)).await;
        assert_eq!(reply.body, r#"{"data":{"keypair":{"is_admin":false}}}"#);
    }

    // A body that is not a GraphQL request is a problem document; so is an unsigned call.
    for body in
        [json!("query"), json!({"variables": {}}), json!({"query": "{ keypair { is_admin } }", "variables": [1]})]
    {
        let reply = common::request(addr, Some(common::USER), "POST", "/admin/gql", Some(&body)).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.json()["type"], "https://api.backend.ai/probs/invalid-api-params");
    }
    let reply =
        common::request(addr, None, "POST", "/admin/gql", Some(&json!({"query": "{ keypair { is_admin } }"}))).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["type"], "https://api.backend.ai/probs/auth-failed");

    // The legacy route: bare data, or 400 graphql-error with the errors as data.
    let legacy = |query: &str| json!({"query": query, "variables": {}});
    let reply = common::request(
        addr,
        Some(common::USER),
        "POST",
        "/admin/graphql",
        Some(&legacy("{ keypair { is_admin user_id } }")),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"keypair":{"is_admin":false,"user_id":"user@lablup.com"}}"#);
    let reply =
        common::request(addr, Some(common::USER), "POST", "/admin/graphql", Some(&legacy("{ keypair { nope } }")))
            .await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["type"], "https://api.backend.ai/probs/graphql-error");
    assert!(body["title"].is_string());
    assert!(body["data"][0]["message"].as_str().unwrap().contains("nope"), "{body}");
    running.shutdown().await;
}

/// The filter and order translations on SQLite and on PostgreSQL (JSON arrays and keys,
/// sub-queries, case-insensitive patterns), through the executor without HTTP.
async fn filters_on_every_backend(db: DatabaseConnection) {
    let fixture: Value = serde_json::from_str(common::FIXTURE).unwrap();
    repo::populate_fixture(&db, &fixture).await.expect("fixture");
    filter_fixture(&db).await;
    let root = {
        let credential = Credential::new(common::ADMIN.0, common::ADMIN.1, Role::Superadmin);
        AuthContext { credential, api_version: ApiVersion::LATEST }
    };
    let db = Arc::new(db);
    let run = |filter: Option<&str>, order: Option<&str>| {
        let mut vars = list_vars(20, 0, Some(ACTIVE));
        vars["filter"] = json!(filter);
        vars["order"] = json!(order);
        let (db, root) = (db.clone(), root.clone());
        async move {
            let response = bai_manager::api::gql::execute(db, root, list_query("name"), vars, None).await;
            serde_json::to_value(&response).unwrap()
        }
    };
    for (filter, want) in FILTER_CASES {
        let reply = run(Some(filter), None).await;
        assert_eq!(names(&reply), *want, "{filter}: {reply}");
        assert_eq!(total(&reply), want.len() as i64, "{filter}");
    }
    // Non-empty JSON arrays and a status-history key.
    let (row, _) = insert(&db, &regular_user(), "placed", 1, 1, SessionStatus::Pending).await;
    let mut history = row.status_history.clone();
    history["SCHEDULED"] = json!("2024-05-01T12:00:00.000000+00:00");
    session::ActiveModel {
        id: Set(row.id),
        agent_ids: Set(Some(JsonOf(vec!["i-alpha".into(), "i-beta".into()]))),
        status_history: Set(history),
        ..Default::default()
    }
    .update(db.as_ref())
    .await
    .expect("update");
    for (filter, want) in [
        (r#"agent_ids == "i-beta""#, &["placed"][..]),
        (r#"agents ilike "I-AL%""#, &["placed"]),
        (r#"agent_id in ["i-gamma", "i-alpha"]"#, &["placed"]),
        (r#"scheduled_at >= "2024-05-01T00:00:00+00:00" & scheduled_at < "2024-05-02""#, &["placed"]),
        (r#"scheduled_at isnot null"#, &["placed"]),
        (
            r#"!agent_ids == "i-beta" & name ilike "%train%""#,
            &["placed", "admin-train", "eval-c", "train-b", "train-a"],
        ),
        (r#"(!agent_ids == "i-beta") & name ilike "%TRAIN%""#, &["admin-train", "train-b", "train-a"]),
    ] {
        let reply = run(Some(filter), None).await;
        assert_eq!(names(&reply), want, "{filter}: {reply}");
    }
    let by_id = format!(r#"id == "{}" | id in ["{}"]"#, row.id, Uuid::new_v4());
    assert_eq!(names(&run(Some(&by_id), None).await), ["placed"]);
    let reply = run(None, Some("user_email,-scheduled_at,group_name,-image,agent_ids,name")).await;
    assert_eq!(names(&reply).len(), 5, "{reply}");
    assert_eq!(names(&reply)[0], "admin-train", "{reply}");
    let reply = run(None, Some("-name")).await;
    assert_eq!(names(&reply), ["train-b", "train-a", "placed", "eval-c", "admin-train"]);
}

common::backends::db_test!(filters_on_every_backend);
