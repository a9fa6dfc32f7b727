//! The GraphQL administration surface against an all-in-one manager: every admin root with
//! the exact query text the official CLI sends (spec §7.3–7.5), answered with keys in
//! selection order; regular users refused with a GraphQL error (HTTP 200); each mutation's
//! happy path and a bad input that answers `ok: false` and stores nothing; and a deactivated,
//! deleted or soft-deleted user's keypair failing to authenticate at once (401). The
//! mutations and lists also run through the executor on SQLite and PostgreSQL.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bai_manager::api::{ApiVersion, AuthContext, Credential, Role};
use bai_manager::db::entities::{image, user};
use bai_manager::db::repo;
use bai_manager::db::types::{UserStatus, Wire};
use common::backends::{on_postgres, on_sqlite};
use sea_orm::{DatabaseConnection, EntityTrait, Set};
use serde_json::{json, Value};

const GROUP: &str = "2de2b969-1d04-48a6-af16-0bc8adb3c831";
const SUPERADMIN_UUID: &str = "f38dea23-50fa-42a0-b5ae-338f5f4693f4";
const USER_UUID: &str = "dfa9da54-4b28-432f-be29-c0d680c7a412";

/// The paginated-list query the client builds (§7.3), exactly.
fn list_query(root: &str, decls: &[(&str, &str)], fields: &str) -> String {
    let decl = decls.iter().map(|(k, t)| format!("${k}: {t}")).collect::<Vec<_>>().join(", ");
    let args = decls.iter().map(|(k, _)| format!("{k}:${k}")).collect::<Vec<_>>().join(", ");
    format!(
        "query($limit:Int!, $offset:Int!, {decl}) {{\n  {root}(\n      limit:$limit, offset:$offset, {args}) {{\n    \
         items {{ {fields} }}\n    total_count\n  }}\n}}"
    )
}

const AGENT_LIST_FIELDS: &str = "id status architecture scaling_group region first_contact cpu_cur_pct \
                                 mem_cur_bytes available_slots occupied_slots";
fn agent_list_query() -> String {
    list_query(
        "agent_list",
        &[("status", "String"), ("scaling_group", "String"), ("filter", "String"), ("order", "String")],
        AGENT_LIST_FIELDS,
    )
}
const AGENT_INFO_FIELDS: &str = "id status region architecture first_contact cpu_cur_pct available_slots \
                                 occupied_slots hardware_metadata live_stat local_config";
fn agent_info_query() -> String {
    format!("query($agent_id: String!) {{\n    agent(agent_id: $agent_id) {{{AGENT_INFO_FIELDS}}}\n}}\n")
}

const KEYPAIR_LIST_FIELDS: &str = "user_id projects user_info { full_name } access_key secret_key is_active \
                                   is_admin created_at last_used resource_policy rate_limit concurrency_used";
fn keypair_list_query() -> String {
    list_query(
        "keypair_list",
        &[
            ("is_active", "Boolean"),
            ("domain_name", "String"),
            ("filter", "String"),
            ("order", "String"),
            ("email", "String"),
        ],
        KEYPAIR_LIST_FIELDS,
    )
}

const USER_FIELDS: &str = "uuid username role email full_name need_password_change status status_info created_at \
                           domain_name groups { id name } allowed_client_ip sudo_session_enabled main_access_key";
fn user_list_query() -> String {
    list_query(
        "user_list",
        &[("status", "String"), ("group_id", "UUID"), ("filter", "String"), ("order", "String")],
        USER_FIELDS,
    )
}
fn user_me_query() -> String {
    format!("query {{\n    user {{{USER_FIELDS}}}\n}}\n")
}
fn user_by_email_query() -> String {
    format!("query($email: String) {{\n    user(email: $email) {{{USER_FIELDS}}}\n}}\n")
}

const IMAGE_FIELDS: &str = "name registry architecture tag digest size_bytes aliases";
fn images_query() -> String {
    format!("query($is_operation: Boolean) {{  images(is_operation: $is_operation) {{    {IMAGE_FIELDS}  }}}}")
}

const SG_LIST_FIELDS: &str =
    "name description is_active is_public created_at driver scheduler use_host_network wsproxy_addr wsproxy_api_token";
fn scaling_groups_query() -> String {
    format!("query($is_active: Boolean) {{\n    scaling_groups(is_active: $is_active) {{\n        {SG_LIST_FIELDS}\n    }}\n}}\n")
}
const SG_INFO_FIELDS: &str = "name description is_active is_public created_at driver driver_opts scheduler \
                              scheduler_opts use_host_network wsproxy_addr wsproxy_api_token";
fn scaling_group_query() -> String {
    format!("query($name: String) {{\n    scaling_group(name: $name) {{{SG_INFO_FIELDS}}}\n}}\n")
}

const POLICY_FIELDS: &str = "name created_at total_resource_slots max_concurrent_sessions max_vfolder_count \
                             max_vfolder_size idle_timeout max_containers_per_session allowed_vfolder_hosts";
fn policies_query() -> String {
    format!("query {{  keypair_resource_policies {{    {POLICY_FIELDS}  }}}}")
}
fn policy_query() -> String {
    format!("query($name: String) {{  keypair_resource_policy(name: $name) {{    {POLICY_FIELDS}  }}}}")
}

const DOMAIN_FIELDS: &str = "name description is_active created_at total_resource_slots allowed_vfolder_hosts \
                             allowed_docker_registries integration_id";
fn domains_query() -> String {
    format!("query {{\n    domains {{{DOMAIN_FIELDS}}}\n}}\n")
}
fn domain_query() -> String {
    format!("query($name: String) {{\n    domain(name: $name) {{{DOMAIN_FIELDS}}}\n}}\n")
}

const GROUP_LIST_FIELDS: &str = "id name is_active created_at integration_id";
fn groups_query() -> String {
    format!("query($domain_name: String) {{\n    groups(domain_name: $domain_name) {{{GROUP_LIST_FIELDS}}}\n}}\n")
}
const GROUP_INFO_FIELDS: &str = "id name description is_active created_at domain_name total_resource_slots \
                                 allowed_vfolder_hosts integration_id";
fn groups_by_name_query() -> String {
    format!(
        "query($name: String!, $domain_name: String) {{\n    groups_by_name(name: $name, domain_name: $domain_name) \
         {{{GROUP_INFO_FIELDS}}}\n}}\n"
    )
}
fn group_query() -> String {
    format!("query($gid: UUID!) {{\n    group(id: $gid) {{{GROUP_INFO_FIELDS}}}\n}}\n")
}

const CREATE_KEYPAIR: &str = "mutation($user_id: String!, $input: KeyPairInput!) {  create_keypair(user_id: $user_id, \
                              props: $input) {    ok msg keypair { access_key secret_key }  }}";
const MODIFY_KEYPAIR: &str = "mutation($access_key: String!, $input: ModifyKeyPairInput!) {  \
                              modify_keypair(access_key: $access_key, props: $input) {    ok msg  }}";
const DELETE_KEYPAIR: &str =
    "mutation($access_key: String!) {  delete_keypair(access_key: $access_key) {    ok msg  }}";
const CREATE_USER: &str = "mutation($email: String!, $input: UserInput!) {\n    create_user(email: $email, props: \
                           $input) {\n        ok msg user {domain_name email username uuid}\n    }\n}\n";
const MODIFY_USER: &str = "mutation($email: String!, $input: ModifyUserInput!) {\n    modify_user(email: $email, \
                           props: $input) {\n        ok msg\n    }\n}\n";
const DELETE_USER: &str = "mutation($email: String!) {\n    delete_user(email: $email) {\n        ok msg\n    }\n}\n";
const CREATE_GROUP: &str = "mutation($name: String!, $input: GroupInput!) {\n    create_group(name: $name, props: \
                            $input) {\n        ok msg group {id domain_name name}\n    }\n}\n";
const MODIFY_GROUP: &str = "mutation($gid: UUID!, $input: ModifyGroupInput!) {\n    modify_group(gid: $gid, props: \
                            $input) {\n        ok msg\n    }\n}\n";
const CREATE_DOMAIN: &str = "mutation($name: String!, $input: DomainInput!) {\n    create_domain(name: $name, props: \
                             $input) {\n        ok msg domain {name}\n    }\n}\n";
const CREATE_SCALING_GROUP: &str = "mutation($name: String!, $input: CreateScalingGroupInput!) {\n    \
                                    create_scaling_group(name: $name, props: $input) {\n        ok msg scaling_group \
                                    {name}\n    }\n}\n";
const ASSOCIATE_DOMAIN: &str = "mutation($scaling_group: String!, $domain: String!) {\n    \
                                associate_scaling_group_with_domain(\n            scaling_group: $scaling_group, \
                                domain: $domain) {\n        ok msg\n    }\n}\n";
const CREATE_POLICY: &str = "mutation($name: String!, $input: CreateKeyPairResourcePolicyInput!) {  \
                             create_keypair_resource_policy(name: $name, props: $input) {    ok msg resource_policy \
                             { name }  }}";

fn page_vars(extra: Value) -> Value {
    let mut vars = json!({"filter": null, "order": null, "limit": 20, "offset": 0});
    for (k, v) in extra.as_object().unwrap() {
        vars[k] = v.clone();
    }
    vars
}

/// The top-level names of a selection (`a b { c } d` → `a b d`).
fn top_level(selection: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    for token in selection.replace('{', " { ").replace('}', " } ").split_whitespace() {
        match token {
            "{" => depth += 1,
            "}" => depth -= 1,
            name if depth == 0 => out.push(name.to_string()),
            _ => {}
        }
    }
    out
}

/// Asserts that every object of `value` (an object or a list of them) has exactly the keys of
/// `selection`, in its order.
fn assert_selection_order(value: &Value, selection: &str) {
    let want = top_level(selection);
    let objects: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    assert!(!objects.is_empty(), "nothing to check in {value}");
    for object in objects {
        let keys: Vec<String> =
            object.as_object().unwrap_or_else(|| panic!("not an object: {object}")).keys().cloned().collect();
        assert_eq!(keys, want, "{object}");
    }
}

async fn gql(addr: SocketAddr, key: (&str, &str), query: &str, variables: Value) -> Value {
    let reply =
        common::request(addr, Some(key), "POST", "/admin/gql", Some(&json!({"query": query, "variables": variables})))
            .await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    reply.json()
}

/// Asserts a successful answer and returns `data[root]`.
fn data(reply: &Value, root: &str) -> Value {
    assert!(reply.get("errors").is_none(), "{root}: {reply}");
    reply["data"][root].clone()
}

/// Asserts that `root` failed with "Forbidden operation." and answered null.
fn assert_forbidden(reply: &Value, root: &str) {
    assert_eq!(reply["data"][root], Value::Null, "{reply}");
    let message = reply["errors"][0]["message"].as_str().unwrap_or_else(|| panic!("no error in {reply}"));
    assert!(message.starts_with("Forbidden operation."), "{root}: {message}");
    assert_eq!(reply["errors"][0]["path"], json!([root]), "{reply}");
}

fn json_of(value: &Value) -> Value {
    serde_json::from_str(value.as_str().unwrap_or_else(|| panic!("not a JSONString: {value}"))).unwrap()
}

async fn insert_images(db: &DatabaseConnection) {
    for (name, path, registry, labels) in [
        ("cr.backend.ai/stable/python:3.11", "stable/python", "cr.backend.ai", json!({})),
        (
            "cr.backend.ai/ops/tool:1.0",
            "ops/tool",
            "cr.backend.ai",
            json!({"ai.backend.features": "operation uid-match"}),
        ),
        ("private.example/secret/img:1", "secret/img", "private.example", json!({})),
    ] {
        let row = image::ActiveModel {
            name: Set(name.into()),
            image: Set(path.into()),
            tag: Set(name.rsplit(':').next().map(str::to_string)),
            registry: Set(registry.into()),
            architecture: Set("x86_64".into()),
            config_digest: Set(format!("sha256:{}", "ab".repeat(32))),
            size_bytes: Set(123_456_789),
            labels: Set(labels),
            ..Default::default()
        };
        let created = repo::create_image(db, row).await.expect("image");
        if path == "stable/python" {
            repo::create_image_alias(db, "python", created.id).await.expect("alias");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_queries_answer_what_the_cli_sends() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();
    insert_images(&db).await;
    let agent_id = repo::list_agents(&db, None, None).await.unwrap()[0].id.clone();

    // admin agent list / info.
    let reply =
        gql(addr, common::ADMIN, &agent_list_query(), page_vars(json!({"status": "ALIVE", "scaling_group": null})))
            .await;
    let list = data(&reply, "agent_list");
    assert_eq!(list["total_count"], 1, "{reply}");
    let item = &list["items"][0];
    assert_selection_order(&list["items"], AGENT_LIST_FIELDS);
    assert_eq!(item["id"], agent_id.as_str());
    assert_eq!(item["status"], "ALIVE");
    assert_eq!(item["scaling_group"], "default");
    assert!(item["cpu_cur_pct"].is_number() && item["mem_cur_bytes"].is_number(), "{item}");
    assert!(json_of(&item["available_slots"])["cpu"].is_string(), "{item}");
    assert!(json_of(&item["occupied_slots"]).is_object(), "{item}");
    for (vars, total) in [
        (json!({"status": "LOST", "scaling_group": null}), 0),
        (json!({"status": null, "scaling_group": "default"}), 1),
        (json!({"status": "ALIVE", "scaling_group": "nowhere"}), 0),
        (
            json!({"status": "ALIVE", "scaling_group": null, "filter": format!("schedulable == true & id ilike {:?}", agent_id.to_uppercase())}),
            1,
        ),
        (json!({"status": "ALIVE", "scaling_group": null, "filter": "schedulable is false"}), 0),
    ] {
        let reply = gql(addr, common::ADMIN, &agent_list_query(), page_vars(vars.clone())).await;
        assert_eq!(data(&reply, "agent_list")["total_count"], total, "{vars}: {reply}");
    }
    let reply = gql(addr, common::ADMIN, &agent_info_query(), json!({"agent_id": agent_id})).await;
    let info = data(&reply, "agent");
    assert_selection_order(&info, AGENT_INFO_FIELDS);
    assert_eq!(info["live_stat"], Value::Null);
    assert!(json_of(&info["hardware_metadata"]).is_object());
    assert_eq!(json_of(&info["local_config"])["agent"]["id"], agent_id.as_str());
    let reply = gql(addr, common::ADMIN, &agent_info_query(), json!({"agent_id": "i-nowhere"})).await;
    assert_eq!(data(&reply, "agent"), Value::Null);

    // admin keypair list (-u), keypair info.
    let reply = gql(
        addr,
        common::ADMIN,
        &keypair_list_query(),
        page_vars(json!({"is_active": null, "domain_name": null, "email": "user@lablup.com"})),
    )
    .await;
    let list = data(&reply, "keypair_list");
    assert_eq!(list["total_count"], 1);
    assert_selection_order(&list["items"], KEYPAIR_LIST_FIELDS);
    let item = &list["items"][0];
    assert_eq!(item["user_id"], "user@lablup.com");
    assert_eq!(item["projects"], json!(["default"]));
    assert_eq!(item["user_info"], json!({"full_name": "User Lablup"}));
    assert_eq!(item["access_key"], common::USER.0);
    assert_eq!(item["concurrency_used"], 0);
    let reply = gql(
        addr,
        common::ADMIN,
        &keypair_list_query(),
        page_vars(json!({"is_active": true, "domain_name": null, "email": null})),
    )
    .await;
    assert_eq!(data(&reply, "keypair_list")["total_count"], 2);
    let mut vars = page_vars(json!({"is_active": null, "domain_name": null, "email": null}));
    vars["filter"] = json!("is_admin == true & full_name ilike \"admin%\"");
    vars["order"] = json!("-access_key");
    let reply = gql(addr, common::ADMIN, &keypair_list_query(), vars).await;
    let list = data(&reply, "keypair_list");
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["items"][0]["access_key"], common::ADMIN.0);

    // admin user list / info.
    let reply =
        gql(addr, common::ADMIN, &user_list_query(), page_vars(json!({"status": null, "group_id": null}))).await;
    let list = data(&reply, "user_list");
    assert_eq!(list["total_count"], 2);
    assert_selection_order(&list["items"], USER_FIELDS);
    let reply = gql(
        addr,
        common::ADMIN,
        &user_list_query(),
        page_vars(json!({"status": "active", "group_id": GROUP, "filter": "role == \"user\""})),
    )
    .await;
    let list = data(&reply, "user_list");
    assert_eq!(list["total_count"], 1);
    let item = &list["items"][0];
    assert_eq!(item["uuid"], USER_UUID);
    assert_eq!(item["role"], "user");
    assert_eq!(item["status"], "active");
    assert_eq!(item["groups"], json!([{"id": GROUP, "name": "default"}]));
    assert_eq!(item["main_access_key"], common::USER.0);
    let reply = gql(addr, common::USER, &user_me_query(), json!({})).await;
    let me = data(&reply, "user");
    assert_selection_order(&me, USER_FIELDS);
    assert_eq!(me["email"], "user@lablup.com");
    let reply = gql(addr, common::ADMIN, &user_by_email_query(), json!({"email": "user@lablup.com"})).await;
    assert_eq!(data(&reply, "user")["uuid"], USER_UUID);
    let reply = gql(addr, common::ADMIN, &user_by_email_query(), json!({"email": "nobody@lablup.com"})).await;
    assert_eq!(data(&reply, "user"), Value::Null);

    // admin image list (--operation): numeric sizes, aliases; a user sees only the
    // registries their domain allows.
    let reply = gql(addr, common::ADMIN, &images_query(), json!({"is_operation": false})).await;
    let images = data(&reply, "images");
    assert_selection_order(&images, IMAGE_FIELDS);
    // (the agent's own `host` image is scanned in the background; leave it out)
    let inserted = |images: &Value| images.as_array().unwrap().iter().filter(|i| i["name"] != "host").count();
    assert_eq!(inserted(&images), 3);
    let python = images.as_array().unwrap().iter().find(|i| i["name"] == "stable/python").unwrap();
    assert_eq!(python["size_bytes"], 123_456_789);
    assert_eq!(python["aliases"], json!(["python"]));
    assert_eq!(python["tag"], "3.11");
    let reply = gql(addr, common::ADMIN, &images_query(), json!({"is_operation": true})).await;
    assert_eq!(
        data(&reply, "images").as_array().unwrap().iter().map(|i| i["name"].clone()).collect::<Vec<_>>(),
        [json!("ops/tool")]
    );
    let reply = gql(addr, common::USER, &images_query(), json!({"is_operation": false})).await;
    assert_eq!(inserted(&data(&reply, "images")), 2, "{reply}");

    // admin scaling-group list / info.
    let reply = gql(addr, common::ADMIN, &scaling_groups_query(), json!({"is_active": null})).await;
    let groups = data(&reply, "scaling_groups");
    assert_selection_order(&groups, SG_LIST_FIELDS);
    assert_eq!(groups[0]["name"], "default");
    assert_eq!(groups[0]["wsproxy_addr"], Value::Null);
    let reply = gql(addr, common::ADMIN, &scaling_group_query(), json!({"name": "default"})).await;
    let sg = data(&reply, "scaling_group");
    assert_selection_order(&sg, SG_INFO_FIELDS);
    assert_eq!(sg["scheduler_opts"], "{}");

    // admin keypair-resource-policy list / info.
    let reply = gql(addr, common::ADMIN, &policies_query(), json!(null)).await;
    let policies = data(&reply, "keypair_resource_policies");
    assert_selection_order(&policies, POLICY_FIELDS);
    assert_eq!(policies[0]["name"], "default");
    assert_eq!(policies[0]["max_vfolder_size"], 0);
    assert_eq!(policies[0]["idle_timeout"], 3600);
    assert_eq!(policies[0]["total_resource_slots"], "{}");
    assert!(json_of(&policies[0]["allowed_vfolder_hosts"])["local:volume1"].is_array());
    let reply = gql(addr, common::USER, &policy_query(), json!({"name": "default"})).await;
    assert_selection_order(&data(&reply, "keypair_resource_policy"), POLICY_FIELDS);

    // admin domain list / info.
    let reply = gql(addr, common::ADMIN, &domains_query(), json!(null)).await;
    let domains = data(&reply, "domains");
    assert_selection_order(&domains, DOMAIN_FIELDS);
    assert_eq!(domains[0]["allowed_docker_registries"], json!(["cr.backend.ai", "index.docker.io"]));
    let reply = gql(addr, common::USER, &domain_query(), json!({"name": "default"})).await;
    assert_selection_order(&data(&reply, "domain"), DOMAIN_FIELDS);

    // admin group list / info (by name and by id).
    let reply = gql(addr, common::ADMIN, &groups_query(), json!({"domain_name": null})).await;
    let groups = data(&reply, "groups");
    assert_selection_order(&groups, GROUP_LIST_FIELDS);
    assert_eq!(groups[0]["id"], GROUP);
    let reply = gql(addr, common::USER, &groups_by_name_query(), json!({"name": "default", "domain_name": null})).await;
    let found = data(&reply, "groups_by_name");
    assert_selection_order(&found, GROUP_INFO_FIELDS);
    assert_eq!(found[0]["total_resource_slots"], "{}");
    let reply = gql(addr, common::USER, &group_query(), json!({"gid": GROUP})).await;
    assert_eq!(data(&reply, "group")["name"], "default");

    // resource_presets.
    let reply =
        gql(addr, common::USER, "query { resource_presets { name resource_slots shared_memory } }", json!({})).await;
    let presets = data(&reply, "resource_presets");
    assert_selection_order(&presets, "name resource_slots shared_memory");
    assert_eq!(presets[0]["name"], "01-small");

    // A regular user: GraphQL errors (HTTP 200), never data.
    for (query, vars, root) in [
        (agent_list_query(), page_vars(json!({"status": "ALIVE", "scaling_group": null})), "agent_list"),
        (agent_info_query(), json!({"agent_id": agent_id}), "agent"),
        (
            keypair_list_query(),
            page_vars(json!({"is_active": null, "domain_name": null, "email": null})),
            "keypair_list",
        ),
        (user_list_query(), page_vars(json!({"status": null, "group_id": null})), "user_list"),
        (user_by_email_query(), json!({"email": "admin@lablup.com"}), "user"),
        (scaling_groups_query(), json!({"is_active": null}), "scaling_groups"),
        (scaling_group_query(), json!({"name": "default"}), "scaling_group"),
        (policies_query(), json!(null), "keypair_resource_policies"),
        (domains_query(), json!(null), "domains"),
    ] {
        let reply = gql(addr, common::USER, &query, vars).await;
        assert_forbidden(&reply, root);
    }
    running.shutdown().await;
}

/// `ok`, `msg` of a mutation's answer.
fn result(reply: &Value, root: &str) -> (bool, String, Value) {
    let r = data(reply, root);
    (r["ok"].as_bool().unwrap_or_else(|| panic!("no ok in {reply}")), r["msg"].as_str().unwrap().to_string(), r)
}

async fn whoami(addr: SocketAddr, key: (&str, &str)) -> u16 {
    let body = json!({"query": "query { keypair { access_key } }", "variables": {}});
    common::request(addr, Some(key), "POST", "/admin/gql", Some(&body)).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_change_state_and_credentials_follow() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    let db = running.manager.db().clone();

    // admin user add: the user and its main keypair (admin flag from the role).
    let input = json!({"password": "s3cret!", "role": "admin", "status": "active", "need_password_change": false,
        "description": "", "domain_name": "default", "totp_activated": false, "sudo_session_enabled": false,
        "username": "", "full_name": "", "allowed_client_ip": null});
    let reply = gql(addr, common::ADMIN, CREATE_USER, json!({"email": "new@lablup.com", "input": input})).await;
    let (ok, msg, r) = result(&reply, "create_user");
    assert!(ok, "{msg}");
    assert_eq!(msg, "success");
    assert_selection_order(&r, "ok msg user");
    assert_selection_order(&r["user"], "domain_name email username uuid");
    assert_eq!(r["user"]["username"], "new@lablup.com");
    let created = repo::find_user_by_email(&db, "new@lablup.com").await.unwrap().unwrap();
    assert!(repo::verify_password(created.password.as_deref().unwrap(), "s3cret!"));
    let keypairs = repo::list_keypairs(&db, Some(created.uuid)).await.unwrap();
    assert_eq!(keypairs.len(), 1);
    assert!(keypairs[0].is_admin);
    assert_eq!(created.main_access_key.as_deref(), Some(keypairs[0].access_key.as_str()));
    let new_key = (keypairs[0].access_key.clone(), keypairs[0].secret_key.clone());
    let new_key = (new_key.0.as_str(), new_key.1.as_str());
    assert_eq!(whoami(addr, new_key).await, 200);
    // Bad input: a duplicate e-mail, an unknown domain, a bad role — nothing stored.
    for (email, domain, role, needle) in [
        ("new@lablup.com", "default", "user", "already exists"),
        ("other@lablup.com", "nowhere", "user", "domain_name"),
        ("other@lablup.com", "default", "emperor", "user role"),
    ] {
        let mut input = input.clone();
        input["domain_name"] = json!(domain);
        input["role"] = json!(role);
        let reply = gql(addr, common::ADMIN, CREATE_USER, json!({"email": email, "input": input})).await;
        let (ok, msg, r) = result(&reply, "create_user");
        assert!(!ok && msg.contains(needle), "{email}: {msg}");
        assert_eq!(r["user"], Value::Null);
    }
    assert!(repo::find_user_by_email(&db, "other@lablup.com").await.unwrap().is_none());
    assert_eq!(user::Entity::find().all(&db).await.unwrap().len(), 3);
    // A regular user may not create users.
    let reply = gql(addr, common::USER, CREATE_USER, json!({"email": "x@lablup.com", "input": input})).await;
    assert_forbidden(&reply, "create_user");

    // admin keypair add / update / deactivate / activate / delete.
    let kp_input = json!({"is_active": true, "is_admin": false, "resource_policy": "default", "rate_limit": 5000});
    let reply =
        gql(addr, common::ADMIN, CREATE_KEYPAIR, json!({"user_id": "user@lablup.com", "input": kp_input})).await;
    let (ok, msg, r) = result(&reply, "create_keypair");
    assert!(ok, "{msg}");
    assert_selection_order(&r["keypair"], "access_key secret_key");
    let second = (
        r["keypair"]["access_key"].as_str().unwrap().to_string(),
        r["keypair"]["secret_key"].as_str().unwrap().to_string(),
    );
    let second_key = (second.0.as_str(), second.1.as_str());
    assert_eq!(repo::get_keypair(&db, &second.0).await.unwrap().unwrap().rate_limit, 5000);
    assert_eq!(whoami(addr, second_key).await, 200);
    for (user_id, input, needle) in [
        ("nobody@lablup.com", kp_input.clone(), "nobody@lablup.com"),
        (
            "user@lablup.com",
            json!({"is_active": true, "is_admin": false, "resource_policy": "gold", "rate_limit": 5000}),
            "resource_policy",
        ),
    ] {
        let reply = gql(addr, common::ADMIN, CREATE_KEYPAIR, json!({"user_id": user_id, "input": input})).await;
        let (ok, msg, r) = result(&reply, "create_keypair");
        assert!(!ok && msg.contains(needle), "{msg}");
        assert_eq!(r["keypair"], Value::Null);
    }
    assert_eq!(repo::list_keypairs(&db, Some(USER_UUID.parse().unwrap())).await.unwrap().len(), 2);
    let reply = gql(addr, common::USER, CREATE_KEYPAIR, json!({"user_id": "user@lablup.com", "input": kp_input})).await;
    assert_forbidden(&reply, "create_keypair");

    // update (the CLI's quirk sends is_admin true), then a bad policy changes nothing.
    let reply =
        gql(addr, common::ADMIN, MODIFY_KEYPAIR, json!({"access_key": second.0, "input": {"rate_limit": 777}})).await;
    assert!(result(&reply, "modify_keypair").0, "{reply}");
    assert_eq!(repo::get_keypair(&db, &second.0).await.unwrap().unwrap().rate_limit, 777);
    let reply = gql(
        addr,
        common::ADMIN,
        MODIFY_KEYPAIR,
        json!({"access_key": second.0, "input": {"resource_policy": "gold", "rate_limit": 1}}),
    )
    .await;
    let (ok, msg, _) = result(&reply, "modify_keypair");
    assert!(!ok && msg.contains("resource_policy"), "{msg}");
    assert_eq!(repo::get_keypair(&db, &second.0).await.unwrap().unwrap().rate_limit, 777);
    let reply =
        gql(addr, common::USER, MODIFY_KEYPAIR, json!({"access_key": second.0, "input": {"is_active": false}})).await;
    assert_forbidden(&reply, "modify_keypair");

    // deactivate: the keypair stops authenticating at once (its credential was cached by the
    // request above); activate: it works again.
    let off = json!({"is_active": false, "is_admin": null, "resource_policy": null, "rate_limit": null});
    let reply = gql(addr, common::ADMIN, MODIFY_KEYPAIR, json!({"access_key": second.0, "input": off})).await;
    assert_eq!(result(&reply, "modify_keypair"), (true, "success".into(), json!({"ok": true, "msg": "success"})));
    assert_eq!(whoami(addr, second_key).await, 401);
    let mut on = off.clone();
    on["is_active"] = json!(true);
    let reply = gql(addr, common::ADMIN, MODIFY_KEYPAIR, json!({"access_key": second.0, "input": on})).await;
    assert!(result(&reply, "modify_keypair").0);
    assert_eq!(whoami(addr, second_key).await, 200);

    // delete: a main access key is refused; the second keypair goes and stops working.
    let reply = gql(addr, common::ADMIN, DELETE_KEYPAIR, json!({"access_key": common::USER.0})).await;
    let (ok, msg, _) = result(&reply, "delete_keypair");
    assert!(!ok && msg.contains("main access key"), "{msg}");
    assert_eq!(whoami(addr, common::USER).await, 200);
    let reply = gql(addr, common::ADMIN, DELETE_KEYPAIR, json!({"access_key": second.0})).await;
    assert!(result(&reply, "delete_keypair").0, "{reply}");
    assert!(repo::get_keypair(&db, &second.0).await.unwrap().is_none());
    assert_eq!(whoami(addr, second_key).await, 401);
    let reply = gql(addr, common::ADMIN, DELETE_KEYPAIR, json!({"access_key": second.0})).await;
    assert!(!result(&reply, "delete_keypair").0);

    // admin user update: a field, then a bad status (nothing changes); a user may not.
    let reply =
        gql(addr, common::ADMIN, MODIFY_USER, json!({"email": "new@lablup.com", "input": {"full_name": "Renamed"}}))
            .await;
    assert!(result(&reply, "modify_user").0, "{reply}");
    assert_eq!(
        repo::find_user_by_email(&db, "new@lablup.com").await.unwrap().unwrap().full_name.as_deref(),
        Some("Renamed")
    );
    let reply = gql(
        addr,
        common::ADMIN,
        MODIFY_USER,
        json!({"email": "new@lablup.com", "input": {"full_name": "X", "status": "sleeping"}}),
    )
    .await;
    let (ok, msg, _) = result(&reply, "modify_user");
    assert!(!ok && msg.contains("status"), "{msg}");
    assert_eq!(
        repo::find_user_by_email(&db, "new@lablup.com").await.unwrap().unwrap().full_name.as_deref(),
        Some("Renamed")
    );
    let reply =
        gql(addr, common::USER, MODIFY_USER, json!({"email": "user@lablup.com", "input": {"role": "superadmin"}}))
            .await;
    assert_forbidden(&reply, "modify_user");

    // admin group add / add-users / remove-users / update.
    let group_input = json!({"description": "", "is_active": true, "domain_name": "default",
        "total_resource_slots": null, "allowed_vfolder_hosts": null, "integration_id": null});
    let reply = gql(addr, common::ADMIN, CREATE_GROUP, json!({"name": "team", "input": group_input})).await;
    let (ok, msg, r) = result(&reply, "create_group");
    assert!(ok, "{msg}");
    assert_selection_order(&r["group"], "id domain_name name");
    let team = r["group"]["id"].as_str().unwrap().to_string();
    for (name, domain, needle) in
        [("team", "default", "already exists"), ("x", "nowhere", "domain_name"), ("bad name", "default", "name")]
    {
        let mut input = group_input.clone();
        input["domain_name"] = json!(domain);
        let reply = gql(addr, common::ADMIN, CREATE_GROUP, json!({"name": name, "input": input})).await;
        let (ok, msg, _) = result(&reply, "create_group");
        assert!(!ok && msg.contains(needle), "{name}: {msg}");
    }
    assert_eq!(repo::list_groups(&db, None).await.unwrap().len(), 2);
    let reply = gql(addr, common::USER, CREATE_GROUP, json!({"name": "mine", "input": group_input})).await;
    assert_forbidden(&reply, "create_group");
    let add =
        json!({"gid": team, "input": {"user_update_mode": "add", "user_uuids": [USER_UUID, created.uuid.to_string()]}});
    let reply = gql(addr, common::ADMIN, MODIFY_GROUP, add).await;
    assert!(result(&reply, "modify_group").0, "{reply}");
    let team_id = team.parse().unwrap();
    assert!(repo::is_group_member(&db, USER_UUID.parse().unwrap(), team_id).await.unwrap());
    let bad = json!({"gid": team, "input": {"user_update_mode": "remove", "user_uuids": [USER_UUID, uuid::Uuid::new_v4().to_string()]}});
    let reply = gql(addr, common::ADMIN, MODIFY_GROUP, bad).await;
    let (ok, msg, _) = result(&reply, "modify_group");
    assert!(!ok && msg.contains("user_uuids"), "{msg}");
    assert!(repo::is_group_member(&db, USER_UUID.parse().unwrap(), team_id).await.unwrap(), "nothing changed");
    let remove = json!({"gid": team, "input": {"user_update_mode": "remove", "user_uuids": [USER_UUID]}});
    let reply = gql(addr, common::ADMIN, MODIFY_GROUP, remove).await;
    assert!(result(&reply, "modify_group").0, "{reply}");
    assert!(!repo::is_group_member(&db, USER_UUID.parse().unwrap(), team_id).await.unwrap());
    assert!(repo::is_group_member(&db, created.uuid, team_id).await.unwrap());
    let reply = gql(addr, common::ADMIN, MODIFY_GROUP, json!({"gid": team, "input": {"description": "d"}})).await;
    assert!(result(&reply, "modify_group").0, "{reply}");
    assert_eq!(repo::get_group(&db, team_id).await.unwrap().unwrap().description.as_deref(), Some("d"));

    // admin domain add, scaling-group add, associate, keypair-resource-policy add.
    let reply = gql(
        addr,
        common::ADMIN,
        CREATE_DOMAIN,
        json!({"name": "d2", "input": {"description": "", "is_active": true, "total_resource_slots": "{}"}}),
    )
    .await;
    let (ok, msg, r) = result(&reply, "create_domain");
    assert!(ok, "{msg}");
    assert_eq!(r["domain"], json!({"name": "d2"}));
    let reply = gql(
        addr,
        common::ADMIN,
        CREATE_DOMAIN,
        json!({"name": "d3", "input": {"total_resource_slots": "{\"cpu\": \"lots\"}"}}),
    )
    .await;
    let (ok, msg, _) = result(&reply, "create_domain");
    assert!(!ok && msg.contains("total_resource_slots"), "{msg}");
    assert!(repo::get_domain(&db, "d3").await.unwrap().is_none());
    let reply = gql(addr, common::USER, CREATE_DOMAIN, json!({"name": "d4", "input": {}})).await;
    assert_forbidden(&reply, "create_domain");

    let sg_input = json!({"description": "", "is_active": true, "is_public": true, "driver": "static",
        "scheduler": "fifo", "use_host_network": false, "wsproxy_addr": null, "wsproxy_api_token": null,
        "driver_opts": "{}", "scheduler_opts": "{}"});
    let reply = gql(addr, common::ADMIN, CREATE_SCALING_GROUP, json!({"name": "sg2", "input": sg_input})).await;
    let (ok, msg, r) = result(&reply, "create_scaling_group");
    assert!(ok, "{msg}");
    assert_eq!(r["scaling_group"], json!({"name": "sg2"}));
    let mut bad = sg_input.clone();
    bad["scheduler"] = json!("random");
    let reply = gql(addr, common::ADMIN, CREATE_SCALING_GROUP, json!({"name": "sg3", "input": bad})).await;
    let (ok, msg, _) = result(&reply, "create_scaling_group");
    assert!(!ok && msg.contains("scheduler"), "{msg}");
    assert!(repo::get_scaling_group(&db, "sg3").await.unwrap().is_none());

    let reply = gql(addr, common::ADMIN, ASSOCIATE_DOMAIN, json!({"scaling_group": "sg2", "domain": "d2"})).await;
    assert!(result(&reply, "associate_scaling_group_with_domain").0, "{reply}");
    for (sg, domain) in [("sg2", "d2"), ("sg2", "nowhere"), ("nowhere", "d2")] {
        let reply = gql(addr, common::ADMIN, ASSOCIATE_DOMAIN, json!({"scaling_group": sg, "domain": domain})).await;
        assert!(!result(&reply, "associate_scaling_group_with_domain").0, "{sg} {domain}: {reply}");
    }
    let reply = gql(addr, common::USER, ASSOCIATE_DOMAIN, json!({"scaling_group": "sg2", "domain": "default"})).await;
    assert_forbidden(&reply, "associate_scaling_group_with_domain");

    let policy_input = json!({"default_for_unspecified": "UNLIMITED", "total_resource_slots": "{\"cpu\": \"4\", \"mem\": \"8g\"}",
        "max_session_lifetime": 0, "max_concurrent_sessions": 3, "max_concurrent_sftp_sessions": 30,
        "max_containers_per_session": 1, "idle_timeout": 1800, "allowed_vfolder_hosts": "{}"});
    let reply = gql(addr, common::ADMIN, CREATE_POLICY, json!({"name": "gold", "input": policy_input})).await;
    let (ok, msg, r) = result(&reply, "create_keypair_resource_policy");
    assert!(ok, "{msg}");
    assert_eq!(r["resource_policy"], json!({"name": "gold"}));
    let gold = repo::get_keypair_resource_policy(&db, "gold").await.unwrap().unwrap();
    assert_eq!(gold.total_resource_slots.0.get("mem"), (8u64 << 30).into());
    let mut bad = policy_input.clone();
    bad["default_for_unspecified"] = json!("SOMETIMES");
    let reply = gql(addr, common::ADMIN, CREATE_POLICY, json!({"name": "silver", "input": bad})).await;
    let (ok, msg, _) = result(&reply, "create_keypair_resource_policy");
    assert!(!ok && msg.contains("default_for_unspecified"), "{msg}");
    assert!(repo::get_keypair_resource_policy(&db, "silver").await.unwrap().is_none());
    let reply = gql(addr, common::USER, CREATE_POLICY, json!({"name": "mine", "input": policy_input})).await;
    assert_forbidden(&reply, "create_keypair_resource_policy");

    // admin user delete: soft (status deleted), its keypairs deactivated and refused at once.
    assert_eq!(whoami(addr, new_key).await, 200);
    let reply = gql(addr, common::ADMIN, DELETE_USER, json!({"email": "new@lablup.com"})).await;
    assert!(result(&reply, "delete_user").0, "{reply}");
    let gone = repo::find_user_by_email(&db, "new@lablup.com").await.unwrap().unwrap();
    assert_eq!(gone.status, Wire(UserStatus::Deleted));
    assert!(repo::list_keypairs(&db, Some(gone.uuid)).await.unwrap().iter().all(|k| !k.is_active));
    assert_eq!(whoami(addr, new_key).await, 401);
    let reply = gql(addr, common::ADMIN, DELETE_USER, json!({"email": "nobody@lablup.com"})).await;
    assert!(!result(&reply, "delete_user").0);
    let reply = gql(addr, common::USER, DELETE_USER, json!({"email": "admin@lablup.com"})).await;
    assert_forbidden(&reply, "delete_user");
    running.shutdown().await;
}

/// The mutations and lists through the executor, on SQLite and PostgreSQL.
async fn admin_surface_on_every_backend(db: DatabaseConnection) {
    let fixture: Value = serde_json::from_str(common::FIXTURE).unwrap();
    repo::populate_fixture(&db, &fixture).await.expect("fixture");
    let root = {
        let mut credential = Credential::new(common::ADMIN.0, common::ADMIN.1, Role::Superadmin);
        credential.user_id = SUPERADMIN_UUID.parse().unwrap();
        credential.email = "admin@lablup.com".into();
        AuthContext { credential, api_version: ApiVersion::LATEST }
    };
    let db = Arc::new(db);
    let run = |query: &str, vars: Value| {
        let (db, root, query) = (db.clone(), root.clone(), query.to_string());
        async move {
            let response = bai_manager::api::gql::execute(db, root, query, vars, None).await;
            serde_json::to_value(&response).unwrap()
        }
    };
    let input = json!({"password": "pw", "role": "user", "status": "active", "need_password_change": false,
        "description": "", "domain_name": "default", "totp_activated": false, "sudo_session_enabled": false,
        "username": "u2", "full_name": "Second User", "group_ids": [GROUP]});
    let reply = run(CREATE_USER, json!({"email": "u2@lablup.com", "input": input})).await;
    assert!(result(&reply, "create_user").0, "{reply}");
    let reply = run(CREATE_USER, json!({"email": "u2@lablup.com", "input": input})).await;
    assert!(!result(&reply, "create_user").0, "{reply}");
    let reply = run(
        CREATE_KEYPAIR,
        json!({"user_id": "u2@lablup.com", "input": {"resource_policy": "default", "rate_limit": 10}}),
    )
    .await;
    let (ok, _, r) = result(&reply, "create_keypair");
    assert!(ok, "{reply}");
    let second = r["keypair"]["access_key"].as_str().unwrap().to_string();
    let reply = run(MODIFY_KEYPAIR, json!({"access_key": second, "input": {"is_active": false}})).await;
    assert!(result(&reply, "modify_keypair").0, "{reply}");

    // Lists with filters over booleans, related columns and enums.
    let vars = |extra: Value| page_vars(extra);
    for (filter, want) in [
        (r#"is_active == false"#, 1),
        (r#"is_active is true & full_name ilike "%second%""#, 1),
        (r#"email == "u2@lablup.com""#, 2),
        (r#"rate_limit < 100 | is_admin == true"#, 2),
    ] {
        let mut v = vars(json!({"is_active": null, "domain_name": null, "email": null}));
        v["filter"] = json!(filter);
        let reply = run(&keypair_list_query(), v).await;
        assert_eq!(data(&reply, "keypair_list")["total_count"], want, "{filter}: {reply}");
    }
    let mut v = vars(json!({"is_active": null, "domain_name": "default", "email": null}));
    v["order"] = json!("user_id,-created_at");
    v["limit"] = json!(1);
    v["offset"] = json!(3);
    let reply = run(&keypair_list_query(), v).await;
    let list = data(&reply, "keypair_list");
    assert_eq!(list["total_count"], 4);
    assert_eq!(list["items"][0]["user_id"], "user@lablup.com");
    for (filter, want) in [
        (r#"role == "USER" & status == "active""#, 2),
        (r#"need_password_change == false & username in ["u2", "admin"]"#, 2),
        (r#"email ilike "U2@%""#, 1),
    ] {
        let mut v = vars(json!({"status": null, "group_id": GROUP}));
        v["filter"] = json!(filter);
        let reply = run(&user_list_query(), v).await;
        assert_eq!(data(&reply, "user_list")["total_count"], want, "{filter}: {reply}");
    }
    let mut v = vars(json!({"status": null, "group_id": null}));
    v["filter"] = json!("is_active >= true");
    let reply = run(&user_list_query(), v).await;
    assert!(reply["errors"][0]["message"].as_str().unwrap().contains("Unknown/unsupported field"), "{reply}");
    let mut v = vars(json!({"status": null, "group_id": null}));
    v["filter"] = json!("totp_activated > false");
    let reply = run(&user_list_query(), v).await;
    assert!(reply["errors"][0]["message"].as_str().unwrap().contains("does not apply"), "{reply}");

    let team = {
        let reply = run(
            CREATE_GROUP,
            json!({"name": "team", "input": {"domain_name": "default", "total_resource_slots": "{\"cpu\": 8}"}}),
        )
        .await;
        let (ok, _, r) = result(&reply, "create_group");
        assert!(ok, "{reply}");
        r["group"]["id"].as_str().unwrap().to_string()
    };
    let u2 = repo::find_user_by_email(db.as_ref(), "u2@lablup.com").await.unwrap().unwrap();
    let reply = run(
        MODIFY_GROUP,
        json!({"gid": team, "input": {"user_update_mode": "add", "user_uuids": [u2.uuid.to_string()]}}),
    )
    .await;
    assert!(result(&reply, "modify_group").0, "{reply}");
    let reply = run(&user_by_email_query(), json!({"email": "u2@lablup.com"})).await;
    let names: Vec<Value> =
        data(&reply, "user")["groups"].as_array().unwrap().iter().map(|g| g["name"].clone()).collect();
    assert_eq!(names, [json!("default"), json!("team")]);
    let reply = run(&groups_by_name_query(), json!({"name": "team", "domain_name": null})).await;
    assert_eq!(json_of(&data(&reply, "groups_by_name")[0]["total_resource_slots"]), json!({"cpu": "8"}));

    let reply = run(DELETE_USER, json!({"email": "u2@lablup.com"})).await;
    assert!(result(&reply, "delete_user").0, "{reply}");
    let reply = run(&user_list_query(), vars(json!({"status": "deleted", "group_id": null}))).await;
    assert_eq!(data(&reply, "user_list")["total_count"], 1, "{reply}");
    let reply =
        run(&keypair_list_query(), vars(json!({"is_active": true, "domain_name": null, "email": "u2@lablup.com"})))
            .await;
    assert_eq!(data(&reply, "keypair_list")["total_count"], 0, "{reply}");

    let reply = run(CREATE_POLICY, json!({"name": "gold", "input": {"default_for_unspecified": "LIMITED",
        "max_concurrent_sessions": 1, "max_containers_per_session": 2, "idle_timeout": 60, "max_vfolder_size": 1073741824}})).await;
    assert!(result(&reply, "create_keypair_resource_policy").0, "{reply}");
    let reply = run(&policy_query(), json!({"name": "gold"})).await;
    let gold = data(&reply, "keypair_resource_policy");
    assert_eq!(gold["max_vfolder_size"], 1_073_741_824_i64);
    assert_eq!(gold["max_containers_per_session"], 2);
    let reply =
        run(CREATE_DOMAIN, json!({"name": "d2", "input": {"allowed_docker_registries": ["cr.backend.ai"]}})).await;
    assert!(result(&reply, "create_domain").0, "{reply}");
    let reply = run(CREATE_SCALING_GROUP, json!({"name": "sg2", "input": {"driver": "static", "scheduler": "drf", "scheduler_opts": "{\"pending_timeout\": 30}"}})).await;
    assert!(result(&reply, "create_scaling_group").0, "{reply}");
    let reply = run(ASSOCIATE_DOMAIN, json!({"scaling_group": "sg2", "domain": "d2"})).await;
    assert!(result(&reply, "associate_scaling_group_with_domain").0, "{reply}");
    let reply = run(&domains_query(), json!({})).await;
    assert_eq!(data(&reply, "domains").as_array().unwrap().len(), 2);
    let reply = run(&scaling_group_query(), json!({"name": "sg2"})).await;
    assert_eq!(json_of(&data(&reply, "scaling_group")["scheduler_opts"]), json!({"pending_timeout": 30}));
}

common::backends::db_test!(admin_surface_on_every_backend);

/// The agents' images reach the image list by themselves (a scan on the agent's first
/// heartbeat), and `rescan_images` scans again on request, in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_come_from_the_agents() {
    let dir = tempfile::tempdir().unwrap();
    let aio = common::all_in_one(dir.path()).await;
    let addr = aio.api_addr;
    let query = "query($is_operation: Boolean) {\n  images(is_operation: $is_operation) { name registry architecture tag digest size_bytes aliases }\n}";
    let mut images = Value::Null;
    for _ in 0..50 {
        images = data(&gql(addr, common::ADMIN, query, json!({"is_operation": false})).await, "images");
        if images.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let host =
        images.as_array().and_then(|a| a.iter().find(|i| i["name"] == "host" && i["registry"] == "docker.io")).cloned();
    let host = host.unwrap_or_else(|| panic!("the process backend's `host` image is listed: {images}"));
    assert_eq!(host["architecture"], std::env::consts::ARCH);
    assert!(host["size_bytes"].is_number(), "{host}");

    let rescan = "mutation($registry: String) {\n  rescan_images(registry: $registry) {\n    ok msg task_id\n  }\n}";
    let started = data(&gql(addr, common::ADMIN, rescan, json!({"registry": null})).await, "rescan_images");
    assert_eq!(started["ok"], true, "{started}");
    // The scan runs in the background; its stream ends with the outcome.
    let path = format!("/events/background-task?taskId={}", started["task_id"].as_str().unwrap());
    let stream = common::request(addr, Some(common::ADMIN), "GET", &path, None).await;
    let done = stream.body.split("event: bgtask_done\n").nth(1).unwrap_or_else(|| panic!("{}", stream.body));
    let done: Value = serde_json::from_str(done.lines().next().unwrap().trim_start_matches("data:").trim()).unwrap();
    assert_eq!(done["message"], "scanned 1 image tag(s) on 1 agent(s): 0 added, 0 updated");
    assert!(stream.body.trim_end().ends_with("event: server_close\ndata: {}"), "{}", stream.body);
    let refused = data(&gql(addr, common::ADMIN, rescan, json!({"registry": "cr.example.com"})).await, "rescan_images");
    assert_eq!(refused["ok"], false);
    assert!(refused["msg"].as_str().unwrap().starts_with("registry:"), "{refused}");
    assert_forbidden(&gql(addr, common::USER, rescan, json!({})).await, "rescan_images");
    aio.shutdown().await;
}
