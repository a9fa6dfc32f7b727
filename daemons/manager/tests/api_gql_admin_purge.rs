//! The rest of the administration mutations (`admin domain update / delete / purge`, `admin
//! group delete / purge`, `admin user purge`, `admin scaling-group update / delete` and the
//! association commands, `admin keypair-resource-policy update / delete`) with the exact
//! query text the official CLI sends: each one's effect, its refusals (unknown names answer
//! `ok: false` naming the argument, purges refused while in use, bad input) leaving
//! everything as it was, and the roles ("Forbidden operation." for a user and for an admin of
//! another domain). Through the executor on SQLite and PostgreSQL, and through an all-in-one
//! manager for what only the API does: a purged user's keypair refused at once (401) and its
//! folders' directories removed from the storage host.

mod common;

use std::sync::Arc;

use bai_core::{AgentId, MountPermission, ResourceSlot, SessionStatus};
use bai_manager::api::{ApiVersion, AuthContext, Credential, Role};
use bai_manager::db::entities::{
    association_groups_users as membership, domain, group, kernel, keypair, resource_preset, session,
    sgroups_for_domains, sgroups_for_groups, sgroups_for_keypairs, user, vfolder, vfolder_permission,
};
use bai_manager::db::repo::{self, AgentHeartbeatRow};
use bai_manager::db::types::{JsonOf, VFolderOwnershipType, Wire};
use common::backends::{on_postgres, on_sqlite};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::{json, Value};
use uuid::Uuid;

const GROUP: &str = "2de2b969-1d04-48a6-af16-0bc8adb3c831";
const SUPERADMIN_UUID: &str = "f38dea23-50fa-42a0-b5ae-338f5f4693f4";
const USER_UUID: &str = "dfa9da54-4b28-432f-be29-c0d680c7a412";

// The client's texts (textwrap.dedent of its triple-quoted strings), exactly.
const MODIFY_DOMAIN: &str = "mutation($name: String!, $input: ModifyDomainInput!) {\n    modify_domain(name: $name, \
                             props: $input) {\n        ok msg\n    }\n}\n";
const DELETE_DOMAIN: &str = "mutation($name: String!) {\n    delete_domain(name: $name) {\n        ok msg\n    }\n}\n";
const PURGE_DOMAIN: &str = "mutation($name: String!) {\n    purge_domain(name: $name) {\n        ok msg\n    }\n}\n";
const DELETE_GROUP: &str = "mutation($gid: UUID!) {\n    delete_group(gid: $gid) {\n        ok msg\n    }\n}\n";
const PURGE_GROUP: &str = "mutation($gid: UUID!) {\n    purge_group(gid: $gid) {\n        ok msg\n    }\n}\n";
const PURGE_USER: &str = "mutation($email: String!, $input: PurgeUserInput!) {\n    purge_user(email: $email, \
                          props: $input) {\n        ok msg\n    }\n}\n";
const MODIFY_SG: &str = "mutation($name: String!, $input: ModifyScalingGroupInput!) {\n    \
                         modify_scaling_group(name: $name, props: $input) {\n        ok msg\n    }\n}\n";
const DELETE_SG: &str =
    "mutation($name: String!) {\n    delete_scaling_group(name: $name) {\n        ok msg\n    }\n}\n";
const ASSOCIATE_DOMAIN: &str = "mutation($scaling_group: String!, $domain: String!) {\n    \
                                associate_scaling_group_with_domain(\n            scaling_group: $scaling_group, \
                                domain: $domain) {\n        ok msg\n    }\n}\n";
const DISASSOCIATE_DOMAIN: &str = "mutation($scaling_group: String!, $domain: String!) {\n    \
                                   disassociate_scaling_group_with_domain(\n            scaling_group: \
                                   $scaling_group, domain: $domain) {\n        ok msg\n    }\n}\n";
const DISASSOCIATE_ALL_DOMAIN: &str = "mutation($domain: String!) {\n    \
                                       disassociate_all_scaling_groups_with_domain(domain: $domain) {\n        ok \
                                       msg\n    }\n}\n";
const ASSOCIATE_GROUP: &str = "mutation($scaling_group: String!, $user_group: UUID!) {\n    \
                               associate_scaling_group_with_user_group(\n            scaling_group: $scaling_group, \
                               user_group: $user_group) {\n        ok msg\n    }\n}\n";
const DISASSOCIATE_GROUP: &str = "mutation($scaling_group: String!, $user_group: String!) {\n    \
                                  disassociate_scaling_group_with_user_group(\n            scaling_group: \
                                  $scaling_group, user_group: $user_group) {\n        ok msg\n    }\n}\n";
const DISASSOCIATE_ALL_GROUP: &str = "mutation($group_id: UUID!) {\n    \
                                      disassociate_all_scaling_groups_with_group(user_group: $group_id) {\n        \
                                      ok msg\n    }\n}\n";
const ASSOCIATE_KEYPAIR: &str = "mutation($scaling_group: String!, $access_key: String!) {\n    \
                                 associate_scaling_group_with_keypair(scaling_group: $scaling_group, access_key: \
                                 $access_key) {\n        ok msg\n    }\n}\n";
const DISASSOCIATE_KEYPAIR: &str = "mutation($scaling_group: String!, $access_key: String!) {\n    \
                                    disassociate_scaling_group_with_keypair(scaling_group: $scaling_group, \
                                    access_key: $access_key) {\n        ok msg\n    }\n}\n";
const MODIFY_POLICY: &str = "mutation($name: String!, $input: ModifyKeyPairResourcePolicyInput!) {  \
                             modify_keypair_resource_policy(name: $name, props: $input) {    ok msg  }}";
const DELETE_POLICY: &str = "mutation($name: String!) {  delete_keypair_resource_policy(name: $name) {    ok msg  }}";
const CREATE_USER: &str = "mutation($email: String!, $input: UserInput!) {\n    create_user(email: $email, props: \
                           $input) {\n        ok msg user {domain_name email username uuid}\n    }\n}\n";

fn auth(role: Role, user: &str, email: &str, domain: &str) -> AuthContext {
    let mut credential = Credential::new(common::ADMIN.0, common::ADMIN.1, role);
    credential.user_id = user.parse().unwrap();
    credential.email = email.into();
    credential.domain_name = domain.into();
    AuthContext { credential, api_version: ApiVersion::LATEST }
}

/// `(ok, msg)` of a mutation's answer, which must have no errors.
fn result(reply: &Value, root: &str) -> (bool, String) {
    assert!(reply.get("errors").is_none(), "{root}: {reply}");
    let r = &reply["data"][root];
    (r["ok"].as_bool().unwrap_or_else(|| panic!("no ok in {reply}")), r["msg"].as_str().unwrap().to_string())
}

/// Asserts `ok: true, msg: "success"`.
fn assert_ok(reply: &Value, root: &str) {
    assert_eq!(result(reply, root), (true, "success".to_string()), "{reply}");
}

/// Asserts `ok: false` with a `msg` containing every one of `needles`.
fn assert_refused(reply: &Value, root: &str, needles: &[&str]) {
    let (ok, msg) = result(reply, root);
    assert!(!ok, "{root} should have been refused: {reply}");
    for needle in needles {
        assert!(msg.contains(needle), "{root}: {msg:?} lacks {needle:?}");
    }
}

/// Asserts the field failed with "Forbidden operation." and answered null.
fn assert_forbidden(reply: &Value, root: &str) {
    assert_eq!(reply["data"][root], Value::Null, "{reply}");
    let message = reply["errors"][0]["message"].as_str().unwrap_or_else(|| panic!("no error in {reply}"));
    assert!(message.starts_with("Forbidden operation."), "{root}: {message}");
}

/// Inserts a session of one kernel for `user` in `domain` / `group`, in `status`, mounting
/// `mounts` (folder ids), in scaling group `sgroup`.
async fn insert_session(
    db: &DatabaseConnection,
    (domain, group, user): (&str, Uuid, Uuid),
    sgroup: &str,
    status: SessionStatus,
    mounts: &[Uuid],
) -> session::Model {
    let mounts: Vec<Value> = mounts
        .iter()
        .map(|id| json!({"id": id, "name": "f", "folder": id.simple().to_string(), "target": "f", "permission": "rw"}))
        .collect();
    let s = session::ActiveModel {
        name: Set(format!("s-{}", Uuid::new_v4().simple())),
        domain_name: Set(domain.into()),
        group_id: Set(group),
        user_uuid: Set(user),
        scaling_group_name: Set(Some(sgroup.into())),
        images: Set(JsonOf(vec!["host".into()])),
        status: Set(Wire(status)),
        vfolder_mounts: Set((!mounts.is_empty()).then(|| json!(mounts))),
        ..Default::default()
    };
    let k = kernel::ActiveModel {
        cluster_role: Set("main".into()),
        cluster_idx: Set(1),
        scaling_group: Set(Some(sgroup.into())),
        image: Set(Some("host".into())),
        architecture: Set(std::env::consts::ARCH.into()),
        status: Set(Wire(status.as_str().parse().unwrap())),
        ..Default::default()
    };
    repo::insert_session_with_kernels(db, s, vec![k]).await.expect("insert session").0
}

/// Ends a session.
async fn terminate(db: &DatabaseConnection, id: Uuid) {
    repo::force_session_status(db, id.into(), SessionStatus::Terminated, Some("test"), None).await.unwrap();
}

/// Inserts a folder owned by `user` (or by `group` when given).
async fn insert_folder(db: &DatabaseConnection, name: &str, user: Option<Uuid>, group: Option<Uuid>) -> Uuid {
    let row = vfolder::ActiveModel {
        host: Set("local:volume1".into()),
        name: Set(name.into()),
        user: Set(user),
        group: Set(group),
        ownership_type: Set(Wire(if group.is_some() {
            VFolderOwnershipType::Group
        } else {
            VFolderOwnershipType::User
        })),
        ..Default::default()
    };
    repo::create_vfolder(db, row).await.expect("folder").id
}

async fn count_sessions(db: &DatabaseConnection, condition: sea_orm::Condition) -> u64 {
    session::Entity::find().filter(condition).count(db).await.unwrap()
}

/// Every new mutation through the executor, on SQLite and PostgreSQL.
async fn admin_lifecycle_on_every_backend(db: DatabaseConnection) {
    let fixture: Value = serde_json::from_str(common::FIXTURE).unwrap();
    repo::populate_fixture(&db, &fixture).await.expect("fixture");
    let root = auth(Role::Superadmin, SUPERADMIN_UUID, "admin@lablup.com", "default");
    let plain = auth(Role::User, USER_UUID, "user@lablup.com", "default");
    let foreign_admin = auth(Role::Admin, &Uuid::new_v4().to_string(), "other@lablup.com", "elsewhere");
    let db = Arc::new(db);
    let run = |who: &AuthContext, query: &str, vars: Value| {
        let (db, who, query) = (db.clone(), who.clone(), query.to_string());
        // Boxed: the body awaits many of these, and SQLite's driver needs the test thread's
        // stack.
        Box::pin(async move {
            let response = bai_manager::api::gql::execute(db, who, query, vars, None).await;
            serde_json::to_value(&response).unwrap()
        })
    };
    let dbc = db.as_ref();
    let default_group: Uuid = GROUP.parse().unwrap();
    let superadmin: Uuid = SUPERADMIN_UUID.parse().unwrap();
    let plain_user: Uuid = USER_UUID.parse().unwrap();

    // ---- admin keypair-resource-policy update / delete.
    let gold = keypair_resource_policy_row("gold");
    repo::create_keypair_resource_policy(dbc, gold).await.unwrap();
    let input = json!({"default_for_unspecified": "LIMITED", "total_resource_slots": "{\"cpu\": \"4\", \"mem\": \"2g\"}",
        "max_concurrent_sessions": 5, "idle_timeout": 60, "allowed_vfolder_hosts": "{\"local:volume1\": [\"mount-in-session\"]}"});
    assert_ok(
        &run(&root, MODIFY_POLICY, json!({"name": "gold", "input": input})).await,
        "modify_keypair_resource_policy",
    );
    let row = repo::get_keypair_resource_policy(dbc, "gold").await.unwrap().unwrap();
    assert_eq!((row.max_concurrent_sessions, row.idle_timeout), (5, 60));
    assert_eq!(row.total_resource_slots.0.get("mem"), (2u64 << 30).into());
    assert_eq!(row.allowed_vfolder_hosts, json!({"local:volume1": ["mount-in-session"]}));
    assert_eq!(row.max_containers_per_session, 1, "untouched");
    for (input, needle) in [
        (json!({"max_containers_per_session": 0, "max_concurrent_sessions": 9}), "invalid max_containers_per_session"),
        (json!({"max_concurrent_sessions": 9, "default_for_unspecified": "SOMETIMES"}), "default_for_unspecified"),
        (json!({"max_concurrent_sessions": 9, "total_resource_slots": "[1]"}), "invalid total_resource_slots"),
        (json!({"max_concurrent_sessions": -9}), "invalid max_concurrent_sessions"),
    ] {
        let reply = run(&root, MODIFY_POLICY, json!({"name": "gold", "input": input})).await;
        assert_refused(&reply, "modify_keypair_resource_policy", &[needle]);
    }
    let reply = run(&root, MODIFY_POLICY, json!({"name": "tin", "input": {"max_concurrent_sessions": 1}})).await;
    assert_refused(&reply, "modify_keypair_resource_policy", &["invalid name", "tin"]);
    assert_eq!(repo::get_keypair_resource_policy(dbc, "gold").await.unwrap().unwrap(), row, "nothing changed");
    let reply = run(&plain, MODIFY_POLICY, json!({"name": "gold", "input": {"max_concurrent_sessions": 1}})).await;
    assert_forbidden(&reply, "modify_keypair_resource_policy");
    // delete: refused while a keypair uses it, and for `default`; then gone.
    let changes = repo::KeypairChanges { resource_policy: Some("gold".into()), ..Default::default() };
    repo::modify_keypair(dbc, common::USER.0, &changes).await.unwrap();
    let reply = run(&root, DELETE_POLICY, json!({"name": "gold"})).await;
    assert_refused(&reply, "delete_keypair_resource_policy", &["used by 1 keypair"]);
    assert_refused(
        &run(&root, DELETE_POLICY, json!({"name": "default"})).await,
        "delete_keypair_resource_policy",
        &["default"],
    );
    assert_refused(
        &run(&root, DELETE_POLICY, json!({"name": "tin"})).await,
        "delete_keypair_resource_policy",
        &["invalid name"],
    );
    assert_forbidden(&run(&plain, DELETE_POLICY, json!({"name": "gold"})).await, "delete_keypair_resource_policy");
    assert!(repo::get_keypair_resource_policy(dbc, "gold").await.unwrap().is_some());
    let changes = repo::KeypairChanges { resource_policy: Some("default".into()), ..Default::default() };
    repo::modify_keypair(dbc, common::USER.0, &changes).await.unwrap();
    assert_ok(&run(&root, DELETE_POLICY, json!({"name": "gold"})).await, "delete_keypair_resource_policy");
    assert!(repo::get_keypair_resource_policy(dbc, "gold").await.unwrap().is_none());

    // ---- admin scaling-group update.
    repo::create_scaling_group(dbc, scaling_group_row("sg2")).await.unwrap();
    let input = json!({"description": "second", "is_public": false, "scheduler": "LIFO",
        "scheduler_opts": "{\"pending_timeout\": 10}", "wsproxy_addr": "http://proxy:5050", "wsproxy_api_token": "t"});
    assert_ok(&run(&root, MODIFY_SG, json!({"name": "sg2", "input": input})).await, "modify_scaling_group");
    let sg = repo::get_scaling_group(dbc, "sg2").await.unwrap().unwrap();
    assert_eq!(
        (sg.description.as_deref(), sg.is_public, sg.scheduler.as_str(), sg.wsproxy_addr.as_deref()),
        (Some("second"), false, "lifo", Some("http://proxy:5050"))
    );
    assert_eq!(sg.scheduler_opts, json!({"pending_timeout": 10}));
    assert!(sg.is_active, "untouched");
    // null clears a nullable field; an absent one stays.
    assert_ok(
        &run(&root, MODIFY_SG, json!({"name": "sg2", "input": {"wsproxy_addr": null}})).await,
        "modify_scaling_group",
    );
    let sg = repo::get_scaling_group(dbc, "sg2").await.unwrap().unwrap();
    assert_eq!((sg.wsproxy_addr, sg.wsproxy_api_token.as_deref()), (None, Some("t")));
    for (input, needle) in [
        (json!({"description": "x", "scheduler": "random"}), "invalid scheduler"),
        (json!({"description": "x", "driver": "aws"}), "invalid driver"),
        (json!({"description": "x", "driver_opts": "[]"}), "invalid driver_opts"),
        (json!({"description": "x", "scheduler_opts": "1"}), "invalid scheduler_opts"),
    ] {
        assert_refused(
            &run(&root, MODIFY_SG, json!({"name": "sg2", "input": input})).await,
            "modify_scaling_group",
            &[needle],
        );
    }
    let reply = run(&root, MODIFY_SG, json!({"name": "nowhere", "input": {"description": "x"}})).await;
    assert_refused(&reply, "modify_scaling_group", &["invalid name", "nowhere"]);
    assert_eq!(repo::get_scaling_group(dbc, "sg2").await.unwrap().unwrap().description.as_deref(), Some("second"));
    assert_forbidden(
        &run(&plain, MODIFY_SG, json!({"name": "sg2", "input": {"is_active": false}})).await,
        "modify_scaling_group",
    );

    // ---- associations with domains, groups and keypairs.
    let assoc = |sg: &str, domain: &str| json!({"scaling_group": sg, "domain": domain});
    assert_ok(&run(&root, ASSOCIATE_DOMAIN, assoc("sg2", "default")).await, "associate_scaling_group_with_domain");
    assert_ok(
        &run(&root, DISASSOCIATE_DOMAIN, assoc("sg2", "default")).await,
        "disassociate_scaling_group_with_domain",
    );
    assert!(sgroups_for_domains::Entity::find_by_id(("sg2".to_string(), "default".to_string()))
        .one(dbc)
        .await
        .unwrap()
        .is_none());
    for (vars, needle) in [
        (assoc("sg2", "default"), "not associated"),
        (assoc("nowhere", "default"), "invalid scaling_group"),
        (assoc("sg2", "nowhere"), "invalid domain"),
    ] {
        assert_refused(
            &run(&root, DISASSOCIATE_DOMAIN, vars).await,
            "disassociate_scaling_group_with_domain",
            &[needle],
        );
    }
    assert_forbidden(
        &run(&plain, DISASSOCIATE_DOMAIN, assoc("default", "default")).await,
        "disassociate_scaling_group_with_domain",
    );
    assert_ok(&run(&root, ASSOCIATE_DOMAIN, assoc("sg2", "default")).await, "associate_scaling_group_with_domain");
    assert_forbidden(
        &run(&plain, DISASSOCIATE_ALL_DOMAIN, json!({"domain": "default"})).await,
        "disassociate_all_scaling_groups_with_domain",
    );
    assert_refused(
        &run(&root, DISASSOCIATE_ALL_DOMAIN, json!({"domain": "nowhere"})).await,
        "disassociate_all_scaling_groups_with_domain",
        &["invalid domain"],
    );
    assert_ok(
        &run(&root, DISASSOCIATE_ALL_DOMAIN, json!({"domain": "default"})).await,
        "disassociate_all_scaling_groups_with_domain",
    );
    let left = sgroups_for_domains::Entity::find()
        .filter(sgroups_for_domains::Column::Domain.eq("default"))
        .count(dbc)
        .await
        .unwrap();
    assert_eq!(left, 0, "both associations of the domain are gone");
    repo::associate_scaling_group_with_domain(dbc, "default", "default").await.unwrap();

    let gvars = |sg: &str, g: &str| json!({"scaling_group": sg, "user_group": g});
    assert_ok(&run(&root, ASSOCIATE_GROUP, gvars("sg2", GROUP)).await, "associate_scaling_group_with_user_group");
    assert_refused(
        &run(&root, ASSOCIATE_GROUP, gvars("sg2", GROUP)).await,
        "associate_scaling_group_with_user_group",
        &["already exists"],
    );
    let stranger = Uuid::new_v4().to_string();
    assert_refused(
        &run(&root, ASSOCIATE_GROUP, gvars("sg2", &stranger)).await,
        "associate_scaling_group_with_user_group",
        &["invalid user_group"],
    );
    assert_refused(
        &run(&root, ASSOCIATE_GROUP, gvars("nowhere", GROUP)).await,
        "associate_scaling_group_with_user_group",
        &["invalid scaling_group"],
    );
    assert_forbidden(
        &run(&plain, ASSOCIATE_GROUP, gvars("sg2", GROUP)).await,
        "associate_scaling_group_with_user_group",
    );
    let allowed = |access_key: &'static str| {
        let db = db.clone();
        async move {
            let rows =
                repo::allowed_scaling_groups(db.as_ref(), "default", GROUP.parse().unwrap(), access_key).await.unwrap();
            rows.into_iter().map(|r| r.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(allowed(common::USER.0).await, ["default", "sg2"]);
    assert_refused(
        &run(&root, DISASSOCIATE_GROUP, gvars("sg2", "not-a-uuid")).await,
        "disassociate_scaling_group_with_user_group",
        &["invalid user_group", "not a UUID"],
    );
    assert_ok(&run(&root, DISASSOCIATE_GROUP, gvars("sg2", GROUP)).await, "disassociate_scaling_group_with_user_group");
    assert_refused(
        &run(&root, DISASSOCIATE_GROUP, gvars("sg2", GROUP)).await,
        "disassociate_scaling_group_with_user_group",
        &["not associated"],
    );
    assert_forbidden(
        &run(&plain, DISASSOCIATE_GROUP, gvars("sg2", GROUP)).await,
        "disassociate_scaling_group_with_user_group",
    );
    assert_eq!(allowed(common::USER.0).await, ["default"]);
    assert_ok(&run(&root, ASSOCIATE_GROUP, gvars("sg2", GROUP)).await, "associate_scaling_group_with_user_group");
    assert_forbidden(
        &run(&plain, DISASSOCIATE_ALL_GROUP, json!({"group_id": GROUP})).await,
        "disassociate_all_scaling_groups_with_group",
    );
    assert_ok(
        &run(&root, DISASSOCIATE_ALL_GROUP, json!({"group_id": GROUP})).await,
        "disassociate_all_scaling_groups_with_group",
    );
    assert_refused(
        &run(&root, DISASSOCIATE_ALL_GROUP, json!({"group_id": stranger})).await,
        "disassociate_all_scaling_groups_with_group",
        &["invalid user_group"],
    );
    assert_eq!(sgroups_for_groups::Entity::find().count(dbc).await.unwrap(), 0);

    // A keypair association counts when sessions pick a scaling group.
    let kvars = |sg: &str, ak: &str| json!({"scaling_group": sg, "access_key": ak});
    assert_ok(
        &run(&root, ASSOCIATE_KEYPAIR, kvars("sg2", common::USER.0)).await,
        "associate_scaling_group_with_keypair",
    );
    assert_eq!(allowed(common::USER.0).await, ["default", "sg2"]);
    assert_eq!(allowed(common::ADMIN.0).await, ["default"]);
    assert_refused(
        &run(&root, ASSOCIATE_KEYPAIR, kvars("sg2", "AKNOBODY")).await,
        "associate_scaling_group_with_keypair",
        &["invalid access_key"],
    );
    assert_forbidden(
        &run(&plain, ASSOCIATE_KEYPAIR, kvars("sg2", common::USER.0)).await,
        "associate_scaling_group_with_keypair",
    );
    assert_forbidden(
        &run(&plain, DISASSOCIATE_KEYPAIR, kvars("sg2", common::USER.0)).await,
        "disassociate_scaling_group_with_keypair",
    );
    assert_ok(
        &run(&root, DISASSOCIATE_KEYPAIR, kvars("sg2", common::USER.0)).await,
        "disassociate_scaling_group_with_keypair",
    );
    assert_refused(
        &run(&root, DISASSOCIATE_KEYPAIR, kvars("sg2", common::USER.0)).await,
        "disassociate_scaling_group_with_keypair",
        &["not associated"],
    );
    assert_eq!(allowed(common::USER.0).await, ["default"]);

    // ---- admin scaling-group delete: refused while agents or live sessions are in it.
    repo::create_scaling_group(dbc, scaling_group_row("sg3")).await.unwrap();
    let agent = AgentHeartbeatRow::new(AgentId::new("i-sg3").unwrap(), "sg3", ResourceSlot::new(), "tcp://127.0.0.1:1");
    repo::upsert_agent_from_heartbeat(dbc, agent).await.unwrap();
    assert_refused(&run(&root, DELETE_SG, json!({"name": "sg3"})).await, "delete_scaling_group", &["1 agent", "i-sg3"]);
    assert!(repo::get_scaling_group(dbc, "sg3").await.unwrap().is_some());
    let owner = ("default", default_group, plain_user);
    let live = insert_session(dbc, owner, "sg2", SessionStatus::Running, &[]).await;
    let ended = insert_session(dbc, owner, "sg2", SessionStatus::Terminated, &[]).await;
    repo::associate_scaling_group_with_domain(dbc, "sg2", "default").await.unwrap();
    repo::associate_scaling_group_with_group(dbc, "sg2", default_group).await.unwrap();
    repo::associate_scaling_group_with_keypair(dbc, "sg2", common::USER.0).await.unwrap();
    let preset = resource_preset::ActiveModel {
        name: Set("sg2-only".into()),
        resource_slots: Set(JsonOf(ResourceSlot::new())),
        scaling_group_name: Set(Some("sg2".into())),
        ..Default::default()
    };
    repo::create_resource_preset(dbc, preset).await.unwrap();
    assert_refused(&run(&root, DELETE_SG, json!({"name": "sg2"})).await, "delete_scaling_group", &["1 live session"]);
    assert_refused(&run(&root, DELETE_SG, json!({"name": "nowhere"})).await, "delete_scaling_group", &["invalid name"]);
    assert_forbidden(&run(&plain, DELETE_SG, json!({"name": "sg2"})).await, "delete_scaling_group");
    assert_eq!(allowed(common::USER.0).await, ["default", "sg2"], "nothing changed");
    terminate(dbc, live.id).await;
    assert_ok(&run(&root, DELETE_SG, json!({"name": "sg2"})).await, "delete_scaling_group");
    assert!(repo::get_scaling_group(dbc, "sg2").await.unwrap().is_none());
    assert!(repo::get_resource_preset(dbc, "sg2-only").await.unwrap().is_none());
    assert_eq!(allowed(common::USER.0).await, ["default"]);
    for id in [live.id, ended.id] {
        let row = session::Entity::find_by_id(id).one(dbc).await.unwrap().expect("ended sessions keep their rows");
        assert_eq!(row.scaling_group_name, None);
    }
    let kernels = kernel::Entity::find().filter(kernel::Column::SessionId.eq(ended.id)).all(dbc).await.unwrap();
    assert_eq!(kernels[0].scaling_group, None);

    // ---- admin user purge.
    let new_user = |email: &str, domain: &str| {
        json!({"email": email, "input": {"password": "pw", "role": "user", "status": "active", "domain_name": domain,
            "group_ids": if domain == "default" { json!([GROUP]) } else { json!([]) }}})
    };
    assert_ok(&run(&root, CREATE_USER, new_user("u3@lablup.com", "default")).await, "create_user");
    let u3 = repo::find_user_by_email(dbc, "u3@lablup.com").await.unwrap().unwrap();
    let u3_keys: Vec<String> =
        repo::list_keypairs(dbc, Some(u3.uuid)).await.unwrap().into_iter().map(|k| k.access_key).collect();
    repo::associate_scaling_group_with_keypair(dbc, "default", &u3_keys[0]).await.unwrap();
    let private = insert_folder(dbc, "private", Some(u3.uuid), None).await;
    let shared = insert_folder(dbc, "shared", Some(u3.uuid), None).await;
    let also_shared = insert_folder(dbc, "also-shared", Some(u3.uuid), None).await;
    repo::share_vfolder(dbc, shared, &[(plain_user, MountPermission::ReadOnly)]).await.unwrap();
    // Shared with the heir only: nobody else uses it, so it goes with the user.
    repo::share_vfolder(dbc, also_shared, &[(superadmin, MountPermission::ReadOnly)]).await.unwrap();
    insert_folder(dbc, "shared", Some(superadmin), None).await;
    let others = insert_folder(dbc, "others", Some(plain_user), None).await;
    repo::share_vfolder(dbc, others, &[(u3.uuid, MountPermission::ReadWrite)]).await.unwrap();
    let u3_owner = ("default", default_group, u3.uuid);
    let live = insert_session(dbc, u3_owner, "default", SessionStatus::Running, &[]).await;
    insert_session(dbc, u3_owner, "default", SessionStatus::Cancelled, &[]).await;
    let purge = |email: &str, all: bool| json!({"email": email, "input": {"purge_shared_vfolders": all}});
    assert_refused(&run(&root, PURGE_USER, purge("u3@lablup.com", false)).await, "purge_user", &["1 live session"]);
    terminate(dbc, live.id).await;
    // The user's private folder mounted by someone else's live session also refuses.
    let mounting = insert_session(dbc, owner, "default", SessionStatus::Running, &[private]).await;
    assert_refused(
        &run(&root, PURGE_USER, purge("u3@lablup.com", false)).await,
        "purge_user",
        &["mounted", mounting.name.as_str()],
    );
    assert!(repo::find_user_by_email(dbc, "u3@lablup.com").await.unwrap().is_some(), "nothing changed");
    assert_eq!(repo::list_user_vfolders(dbc, u3.uuid).await.unwrap().len(), 3);
    terminate(dbc, mounting.id).await;
    assert_refused(
        &run(&root, PURGE_USER, purge("nobody@lablup.com", false)).await,
        "purge_user",
        &["invalid email", "nobody@lablup.com"],
    );
    assert_refused(&run(&root, PURGE_USER, purge("admin@lablup.com", false)).await, "purge_user", &["themselves"]);
    assert_forbidden(&run(&plain, PURGE_USER, purge("u3@lablup.com", false)).await, "purge_user");
    assert_forbidden(&run(&foreign_admin, PURGE_USER, purge("u3@lablup.com", false)).await, "purge_user");
    let domain_admin = auth(Role::Admin, USER_UUID, "user@lablup.com", "default");
    assert_forbidden(&run(&domain_admin, PURGE_USER, purge("admin@lablup.com", false)).await, "purge_user");
    assert_ok(&run(&root, PURGE_USER, purge("u3@lablup.com", false)).await, "purge_user");
    assert!(repo::find_user_by_email(dbc, "u3@lablup.com").await.unwrap().is_none());
    assert!(keypair::Entity::find().filter(keypair::Column::User.eq(u3.uuid)).one(dbc).await.unwrap().is_none());
    assert_eq!(membership::Entity::find().filter(membership::Column::UserId.eq(u3.uuid)).count(dbc).await.unwrap(), 0);
    assert_eq!(sgroups_for_keypairs::Entity::find().count(dbc).await.unwrap(), 0);
    assert_eq!(count_sessions(dbc, sea_orm::Condition::all().add(session::Column::UserUuid.eq(u3.uuid))).await, 0);
    assert!(repo::get_vfolder(dbc, private).await.unwrap().is_none());
    assert!(repo::get_vfolder(dbc, also_shared).await.unwrap().is_none());
    let moved = repo::get_vfolder(dbc, shared).await.unwrap().expect("the shared folder stays");
    assert_eq!(moved.user, Some(superadmin));
    assert!(moved.name.starts_with("shared-") && moved.name.len() == "shared-".len() + 10, "{}", moved.name);
    assert_eq!(
        repo::vfolder_shares(dbc, shared).await.unwrap().iter().map(|p| p.user).collect::<Vec<_>>(),
        [plain_user]
    );
    let theirs = vfolder_permission::Entity::find()
        .filter(vfolder_permission::Column::User.eq(u3.uuid))
        .count(dbc)
        .await
        .unwrap();
    assert_eq!(theirs, 0, "shares with the purged user are gone");
    // purge_shared_vfolders: the shared folder goes too.
    assert_ok(&run(&root, CREATE_USER, new_user("u4@lablup.com", "default")).await, "create_user");
    let u4 = repo::find_user_by_email(dbc, "u4@lablup.com").await.unwrap().unwrap();
    let u4_shared = insert_folder(dbc, "shared", Some(u4.uuid), None).await;
    repo::share_vfolder(dbc, u4_shared, &[(plain_user, MountPermission::ReadOnly)]).await.unwrap();
    assert_ok(&run(&root, PURGE_USER, purge("u4@lablup.com", true)).await, "purge_user");
    assert!(repo::get_vfolder(dbc, u4_shared).await.unwrap().is_none());
    assert_eq!(
        vfolder_permission::Entity::find()
            .filter(vfolder_permission::Column::Vfolder.eq(u4_shared))
            .count(dbc)
            .await
            .unwrap(),
        0
    );

    // ---- admin group delete / purge.
    let team = {
        let row = group::ActiveModel {
            name: Set("team".into()),
            domain_name: Set("default".into()),
            integration_id: Set(Some("ext".into())),
            ..Default::default()
        };
        repo::create_group(dbc, row).await.unwrap().id
    };
    repo::add_user_to_group(dbc, plain_user, team).await.unwrap();
    repo::associate_scaling_group_with_group(dbc, "default", team).await.unwrap();
    let team_folder = insert_folder(dbc, "team-data", None, Some(team)).await;
    repo::share_vfolder(dbc, team_folder, &[(plain_user, MountPermission::ReadOnly)]).await.unwrap();
    let gid = json!({"gid": team});
    assert_forbidden(&run(&plain, DELETE_GROUP, gid.clone()).await, "delete_group");
    assert_forbidden(&run(&foreign_admin, DELETE_GROUP, gid.clone()).await, "delete_group");
    assert_ok(&run(&domain_admin, DELETE_GROUP, gid.clone()).await, "delete_group");
    let row = repo::get_group(dbc, team).await.unwrap().unwrap();
    assert_eq!((row.is_active, row.integration_id), (false, None));
    assert_refused(&run(&root, DELETE_GROUP, json!({"gid": stranger})).await, "delete_group", &["invalid gid"]);
    let team_owner = ("default", team, plain_user);
    let live = insert_session(dbc, team_owner, "default", SessionStatus::Pending, &[]).await;
    let ended = insert_session(dbc, team_owner, "default", SessionStatus::Terminated, &[]).await;
    assert_refused(&run(&root, PURGE_GROUP, gid.clone()).await, "purge_group", &["1 live session"]);
    terminate(dbc, live.id).await;
    let mounting = insert_session(dbc, owner, "default", SessionStatus::Running, &[team_folder]).await;
    assert_refused(&run(&root, PURGE_GROUP, gid.clone()).await, "purge_group", &["mounted", mounting.name.as_str()]);
    assert!(
        repo::get_group(dbc, team).await.unwrap().is_some()
            && repo::get_vfolder(dbc, team_folder).await.unwrap().is_some()
    );
    terminate(dbc, mounting.id).await;
    assert_forbidden(&run(&plain, PURGE_GROUP, gid.clone()).await, "purge_group");
    assert_forbidden(&run(&foreign_admin, PURGE_GROUP, gid.clone()).await, "purge_group");
    assert_refused(&run(&root, PURGE_GROUP, json!({"gid": stranger})).await, "purge_group", &["invalid gid"]);
    assert_ok(&run(&domain_admin, PURGE_GROUP, gid.clone()).await, "purge_group");
    assert!(repo::get_group(dbc, team).await.unwrap().is_none());
    assert!(repo::get_vfolder(dbc, team_folder).await.unwrap().is_none());
    assert_eq!(membership::Entity::find().filter(membership::Column::GroupId.eq(team)).count(dbc).await.unwrap(), 0);
    assert_eq!(sgroups_for_groups::Entity::find().count(dbc).await.unwrap(), 0);
    assert!(session::Entity::find_by_id(ended.id).one(dbc).await.unwrap().is_none());
    assert!(
        session::Entity::find_by_id(mounting.id).one(dbc).await.unwrap().is_some(),
        "another group's session stays"
    );

    // ---- admin domain update / delete / purge.
    repo::create_domain(dbc, domain::ActiveModel { name: Set("d2".into()), ..Default::default() }).await.unwrap();
    let input = json!({"description": "second", "total_resource_slots": "{\"cpu\": \"8\"}",
        "allowed_docker_registries": ["cr.backend.ai"], "integration_id": "ext-1", "allowed_vfolder_hosts": "{\"local:volume1\": []}"});
    assert_ok(&run(&root, MODIFY_DOMAIN, json!({"name": "d2", "input": input})).await, "modify_domain");
    let d2 = repo::get_domain(dbc, "d2").await.unwrap().unwrap();
    assert_eq!((d2.description.as_deref(), d2.integration_id.as_deref()), (Some("second"), Some("ext-1")));
    assert_eq!(d2.allowed_docker_registries.0, ["cr.backend.ai"]);
    assert_eq!(d2.allowed_vfolder_hosts, json!({"local:volume1": []}));
    assert_ne!(d2.total_resource_slots.0, ResourceSlot::new());
    for (vars, needle) in [
        (
            json!({"name": "d2", "input": {"description": "x", "total_resource_slots": "[1]"}}),
            "invalid total_resource_slots",
        ),
        (json!({"name": "d2", "input": {"description": "x", "name": "bad name"}}), "invalid name"),
        (json!({"name": "d2", "input": {"description": "x", "name": "default"}}), "already exists"),
        (json!({"name": "nowhere", "input": {"description": "x"}}), "invalid name"),
    ] {
        assert_refused(&run(&root, MODIFY_DOMAIN, vars).await, "modify_domain", &[needle]);
    }
    assert_eq!(repo::get_domain(dbc, "d2").await.unwrap().unwrap(), d2, "nothing changed");
    assert_forbidden(
        &run(&plain, MODIFY_DOMAIN, json!({"name": "d2", "input": {"is_active": false}})).await,
        "modify_domain",
    );
    assert_forbidden(
        &run(&domain_admin, MODIFY_DOMAIN, json!({"name": "default", "input": {"is_active": false}})).await,
        "modify_domain",
    );
    // A renamed domain takes its users, groups, sessions and associations along.
    assert_ok(&run(&root, CREATE_USER, new_user("u5@lablup.com", "d2")).await, "create_user");
    let u5 = repo::find_user_by_email(dbc, "u5@lablup.com").await.unwrap().unwrap();
    let d2_group = {
        let row = group::ActiveModel { name: Set("g2".into()), domain_name: Set("d2".into()), ..Default::default() };
        repo::create_group(dbc, row).await.unwrap().id
    };
    repo::associate_scaling_group_with_domain(dbc, "default", "d2").await.unwrap();
    let u5_live = insert_session(dbc, ("d2", d2_group, u5.uuid), "default", SessionStatus::Running, &[]).await;
    let reply = run(&root, MODIFY_DOMAIN, json!({"name": "d2", "input": {"name": "d3", "integration_id": null}})).await;
    assert_ok(&reply, "modify_domain");
    assert!(repo::get_domain(dbc, "d2").await.unwrap().is_none());
    let d3 = repo::get_domain(dbc, "d3").await.unwrap().unwrap();
    assert_eq!((d3.description.as_deref(), d3.integration_id), (Some("second"), None));
    assert_eq!(repo::get_user(dbc, u5.uuid).await.unwrap().unwrap().domain_name, "d3");
    assert_eq!(repo::get_group(dbc, d2_group).await.unwrap().unwrap().domain_name, "d3");
    assert_eq!(session::Entity::find_by_id(u5_live.id).one(dbc).await.unwrap().unwrap().domain_name, "d3");
    assert!(sgroups_for_domains::Entity::find_by_id(("default".to_string(), "d3".to_string()))
        .one(dbc)
        .await
        .unwrap()
        .is_some());
    // delete: soft.
    assert_ok(&run(&root, DELETE_DOMAIN, json!({"name": "d3"})).await, "delete_domain");
    assert!(!repo::get_domain(dbc, "d3").await.unwrap().unwrap().is_active);
    assert_refused(&run(&root, DELETE_DOMAIN, json!({"name": "nowhere"})).await, "delete_domain", &["invalid name"]);
    assert_forbidden(&run(&plain, DELETE_DOMAIN, json!({"name": "d3"})).await, "delete_domain");
    assert_forbidden(&run(&domain_admin, DELETE_DOMAIN, json!({"name": "default"})).await, "delete_domain");
    // purge: refused while live sessions, users or groups remain.
    assert_refused(&run(&root, PURGE_DOMAIN, json!({"name": "d3"})).await, "purge_domain", &["1 live session"]);
    terminate(dbc, u5_live.id).await;
    assert_refused(&run(&root, PURGE_DOMAIN, json!({"name": "d3"})).await, "purge_domain", &["1 user"]);
    assert_ok(&run(&root, PURGE_USER, purge("u5@lablup.com", false)).await, "purge_user");
    assert_refused(&run(&root, PURGE_DOMAIN, json!({"name": "d3"})).await, "purge_domain", &["1 group"]);
    assert_forbidden(&run(&plain, PURGE_DOMAIN, json!({"name": "d3"})).await, "purge_domain");
    assert_forbidden(&run(&domain_admin, PURGE_DOMAIN, json!({"name": "d3"})).await, "purge_domain");
    assert!(repo::get_domain(dbc, "d3").await.unwrap().is_some());
    assert_ok(&run(&root, PURGE_GROUP, json!({"gid": d2_group})).await, "purge_group");
    assert_ok(&run(&root, PURGE_DOMAIN, json!({"name": "d3"})).await, "purge_domain");
    assert!(repo::get_domain(dbc, "d3").await.unwrap().is_none());
    assert_eq!(
        sgroups_for_domains::Entity::find()
            .filter(sgroups_for_domains::Column::Domain.eq("d3"))
            .count(dbc)
            .await
            .unwrap(),
        0
    );
    assert_refused(&run(&root, PURGE_DOMAIN, json!({"name": "d3"})).await, "purge_domain", &["invalid name"]);
    // The fixture's own rows are untouched.
    assert_eq!(user::Entity::find().count(dbc).await.unwrap(), 2);
    assert!(repo::get_domain(dbc, "default").await.unwrap().unwrap().is_active);
}

fn keypair_resource_policy_row(name: &str) -> bai_manager::db::entities::keypair_resource_policy::ActiveModel {
    bai_manager::db::entities::keypair_resource_policy::ActiveModel {
        name: Set(name.into()),
        max_containers_per_session: Set(1),
        ..Default::default()
    }
}

fn scaling_group_row(name: &str) -> bai_manager::db::entities::scaling_group::ActiveModel {
    bai_manager::db::entities::scaling_group::ActiveModel {
        name: Set(name.into()),
        driver: Set("static".into()),
        scheduler: Set("fifo".into()),
        ..Default::default()
    }
}

common::backends::db_test!(admin_lifecycle_on_every_backend);

async fn gql(addr: std::net::SocketAddr, key: (&str, &str), query: &str, vars: Value) -> Value {
    let body = json!({"query": query, "variables": vars});
    let reply = common::request(addr, Some(key), "POST", "/admin/gql", Some(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// Through the API: a purged user's keypair stops authenticating at once and its folders'
/// directories leave the storage host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_users_lose_keys_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    let input =
        json!({"password": "pw", "role": "user", "status": "active", "domain_name": "default", "group_ids": [GROUP]});
    assert_ok(
        &gql(addr, common::ADMIN, CREATE_USER, json!({"email": "gone@lablup.com", "input": input})).await,
        "create_user",
    );
    let gone = repo::find_user_by_email(&db, "gone@lablup.com").await.unwrap().unwrap();
    let kp = repo::list_keypairs(&db, Some(gone.uuid)).await.unwrap().remove(0);
    let key = (kp.access_key.as_str(), kp.secret_key.as_str());
    let body = json!({"name": "mine", "host": "local:volume1", "usage_mode": "general", "permission": "rw"});
    let created = common::request(addr, Some(key), "POST", "/folders", Some(&body)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let folder: Uuid = created.json()["id"].as_str().unwrap().parse().unwrap();
    let folder_dir = dir.path().join("vfolders").join(folder.simple().to_string());
    assert!(folder_dir.is_dir(), "{}", folder_dir.display());
    let whoami = json!({"query": "query { keypair { access_key } }", "variables": {}});
    assert_eq!(common::request(addr, Some(key), "POST", "/admin/gql", Some(&whoami)).await.status, 200);

    let vars = json!({"email": "gone@lablup.com", "input": {"purge_shared_vfolders": false}});
    assert_forbidden(&gql(addr, common::USER, PURGE_USER, vars.clone()).await, "purge_user");
    assert_ok(&gql(addr, common::ADMIN, PURGE_USER, vars).await, "purge_user");
    assert!(repo::find_user_by_email(&db, "gone@lablup.com").await.unwrap().is_none());
    assert!(repo::get_vfolder(&db, folder).await.unwrap().is_none());
    assert!(!folder_dir.exists(), "the directory is removed");
    assert_eq!(common::request(addr, Some(key), "POST", "/admin/gql", Some(&whoami)).await.status, 401);
    running.shutdown().await;
}
