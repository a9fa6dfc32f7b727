//! Administration through GraphQL (agents, keypairs, users, domains, projects, images,
//! scaling groups, resource policies) and the resource presets.
//!
//! The queries select the fields the official CLI selects, so they work against any manager
//! speaking that protocol. Most need an admin or superadmin keypair; a regular user's call
//! fails with [`Error::GraphQl`].

use std::collections::BTreeMap;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::{Body, Client};
use crate::error::{invalid, protocol, Error, Result};
use crate::session::Page;

type Slots = BTreeMap<String, Value>;

/// An agent (a node running kernels).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Agent {
    /// The agent id.
    pub id: String,
    /// `ALIVE`, `LOST`, `TERMINATED`, …
    pub status: String,
    /// The CPU architecture.
    #[serde(default)]
    pub architecture: Option<String>,
    /// Its scaling group.
    #[serde(default)]
    pub scaling_group: Option<String>,
    /// Its region.
    #[serde(default)]
    pub region: Option<String>,
    /// When it first registered.
    #[serde(default)]
    pub first_contact: Option<String>,
    /// CPU use in percent.
    #[serde(default)]
    pub cpu_cur_pct: Option<f64>,
    /// Memory in use, bytes.
    #[serde(default)]
    pub mem_cur_bytes: Option<f64>,
    /// Its capacity.
    #[serde(default, deserialize_with = "crate::json_string::object")]
    pub available_slots: Slots,
    /// What its kernels occupy.
    #[serde(default, deserialize_with = "crate::json_string::object")]
    pub occupied_slots: Slots,
}

/// A keypair.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KeyPair {
    /// The owner's email.
    pub user_id: String,
    /// The access key.
    pub access_key: String,
    /// Whether it may be used.
    #[serde(default)]
    pub is_active: bool,
    /// Whether it has admin rights.
    #[serde(default)]
    pub is_admin: bool,
    /// Its resource policy.
    #[serde(default)]
    pub resource_policy: Option<String>,
    /// Requests allowed per 15 minutes.
    #[serde(default)]
    pub rate_limit: Option<i64>,
    /// Sessions it has running.
    #[serde(default)]
    pub concurrency_used: Option<i64>,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it was last used.
    #[serde(default)]
    pub last_used: Option<String>,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct User {
    /// The user id.
    pub uuid: String,
    /// The email (the login name).
    pub email: String,
    /// The user name.
    #[serde(default)]
    pub username: Option<String>,
    /// `superadmin`, `admin`, `user` or `monitor`.
    #[serde(default)]
    pub role: Option<String>,
    /// The full name.
    #[serde(default)]
    pub full_name: Option<String>,
    /// `active`, `inactive`, `deleted`, …
    #[serde(default)]
    pub status: Option<String>,
    /// The domain.
    #[serde(default)]
    pub domain_name: Option<String>,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The main keypair's access key.
    #[serde(default)]
    pub main_access_key: Option<String>,
}

/// A domain.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Domain {
    /// The name.
    pub name: String,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether it is active.
    #[serde(default)]
    pub is_active: bool,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Its resource limit.
    #[serde(default, deserialize_with = "crate::json_string::object")]
    pub total_resource_slots: Slots,
}

/// A project (group).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Group {
    /// The project id.
    pub id: String,
    /// The name.
    pub name: String,
    /// Whether it is active.
    #[serde(default)]
    pub is_active: bool,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
    /// An external id.
    #[serde(default)]
    pub integration_id: Option<String>,
}

/// A kernel image.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Image {
    /// The name, e.g. `python`.
    pub name: String,
    /// The registry.
    #[serde(default)]
    pub registry: Option<String>,
    /// The architecture.
    #[serde(default)]
    pub architecture: Option<String>,
    /// The tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// The content digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Its size in bytes.
    #[serde(default)]
    pub size_bytes: Option<f64>,
    /// Its aliases.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A scaling group (a set of agents with one scheduler).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ScalingGroup {
    /// The name.
    pub name: String,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether it is active.
    #[serde(default)]
    pub is_active: bool,
    /// Whether every project may use it.
    #[serde(default)]
    pub is_public: bool,
    /// The agent driver.
    #[serde(default)]
    pub driver: Option<String>,
    /// The scheduler: `fifo`, `lifo`, `drf`, …
    #[serde(default)]
    pub scheduler: Option<String>,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// A keypair resource policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ResourcePolicy {
    /// The name.
    pub name: String,
    /// The slot limit of a keypair.
    #[serde(default, deserialize_with = "crate::json_string::object")]
    pub total_resource_slots: Slots,
    /// Sessions at a time.
    #[serde(default)]
    pub max_concurrent_sessions: Option<i64>,
    /// Kernels per session.
    #[serde(default)]
    pub max_containers_per_session: Option<i64>,
    /// Idle sessions are ended after this many seconds (0: never).
    #[serde(default)]
    pub idle_timeout: Option<i64>,
    /// Folders a keypair may own.
    #[serde(default)]
    pub max_vfolder_count: Option<i64>,
}

/// A resource preset.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Preset {
    /// The name.
    pub name: String,
    /// The slots it requests.
    #[serde(default)]
    pub resource_slots: Slots,
    /// Shared memory, when set.
    #[serde(default)]
    pub shared_memory: Option<Value>,
    /// Whether it fits what is left (only from [`Client::check_presets`]).
    #[serde(default)]
    pub allocatable: Option<bool>,
}

/// What is left for the requester, from [`Client::check_presets`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PresetCheck {
    /// The keypair's limits.
    #[serde(default)]
    pub keypair_limits: Slots,
    /// What the keypair uses.
    #[serde(default)]
    pub keypair_using: Slots,
    /// What the keypair may still use.
    #[serde(default)]
    pub keypair_remaining: Slots,
    /// What the scaling group has left.
    #[serde(default)]
    pub scaling_group_remaining: Slots,
    /// The presets, each with `allocatable`.
    #[serde(default)]
    pub presets: Vec<Preset>,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The email (the login name).
    pub email: String,
    /// The password.
    pub password: String,
    /// The domain.
    pub domain: String,
    /// `user` (default), `admin`, `superadmin` or `monitor`.
    pub role: String,
    /// The user name (the email's local part when empty).
    pub username: String,
    /// The full name.
    pub full_name: String,
}

impl NewUser {
    /// A regular user of the `default` domain.
    pub fn new(email: impl Into<String>, password: impl Into<String>) -> Self {
        let email = email.into();
        let username = email.split('@').next().unwrap_or_default().to_string();
        Self {
            email,
            password: password.into(),
            domain: "default".into(),
            role: "user".into(),
            username,
            full_name: String::new(),
        }
    }
}

const AGENT_FIELDS: &str =
    "id status architecture scaling_group region first_contact cpu_cur_pct mem_cur_bytes available_slots occupied_slots";
const KEYPAIR_FIELDS: &str =
    "user_id access_key is_active is_admin created_at last_used resource_policy rate_limit concurrency_used";
const USER_FIELDS: &str = "uuid username role email full_name status created_at domain_name main_access_key";

impl Client {
    async fn gql_field<T: DeserializeOwned>(&self, root: &str, query: &str, variables: Value) -> Result<T> {
        let mut data = self.graphql(query, variables).await?;
        serde_json::from_value(data[root].take()).map_err(|e| protocol(root, e))
    }

    /// Runs a mutation whose result is `{ok, msg, …}` and returns the result object.
    async fn mutate(&self, root: &str, query: &str, variables: Value) -> Result<Value> {
        let result: Value = self.gql_field(root, query, variables).await?;
        if result["ok"].as_bool() != Some(true) {
            let msg = result["msg"].as_str().unwrap_or("no reason given").to_string();
            return Err(Error::Rejected { operation: root.to_string(), msg });
        }
        Ok(result)
    }

    /// Agents, by status (`ALIVE` when `None`) and scaling group (superadmin).
    pub async fn list_agents(
        &self,
        status: Option<&str>,
        scaling_group: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<Agent>> {
        check_limit(limit)?;
        let query = format!(
            "query($limit:Int!, $offset:Int!, $status: String, $scaling_group: String) {{\n  agent_list(limit:$limit, \
             offset:$offset, status:$status, scaling_group:$scaling_group) {{\n    items {{ {AGENT_FIELDS} }}\n    \
             total_count\n  }}\n}}"
        );
        let vars = json!({"limit": limit, "offset": offset, "status": status.unwrap_or("ALIVE"), "scaling_group": scaling_group});
        self.gql_field("agent_list", &query, vars).await
    }

    /// The requester's own keypair.
    pub async fn own_keypair(&self) -> Result<KeyPair> {
        let query = format!("query {{\n  keypair {{ {KEYPAIR_FIELDS} }}\n}}");
        self.gql_field("keypair", &query, json!({})).await
    }

    /// Keypairs, optionally of one user (by email) or by state (admins).
    pub async fn list_keypairs(
        &self,
        email: Option<&str>,
        is_active: Option<bool>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<KeyPair>> {
        check_limit(limit)?;
        let query = format!(
            "query($limit:Int!, $offset:Int!, $email: String, $is_active: Boolean) {{\n  keypair_list(limit:$limit, \
             offset:$offset, email:$email, is_active:$is_active) {{\n    items {{ {KEYPAIR_FIELDS} }}\n    total_count\n  }}\n}}"
        );
        self.gql_field(
            "keypair_list",
            &query,
            json!({"limit": limit, "offset": offset, "email": email, "is_active": is_active}),
        )
        .await
    }

    /// Creates a keypair for a user (by email) and returns `(access key, secret key)`.
    pub async fn create_keypair(
        &self,
        email: &str,
        resource_policy: &str,
        is_admin: bool,
        rate_limit: u32,
    ) -> Result<(String, String)> {
        let query = "mutation($user_id: String!, $input: KeyPairInput!) {\n  create_keypair(user_id: $user_id, props: \
                     $input) {\n    ok msg keypair { access_key secret_key }\n  }\n}";
        let vars = json!({"user_id": email, "input": {"is_active": true, "is_admin": is_admin,
                          "resource_policy": resource_policy, "rate_limit": rate_limit}});
        let result = self.mutate("create_keypair", query, vars).await?;
        let key = |k: &str| result["keypair"][k].as_str().map(str::to_string);
        key("access_key").zip(key("secret_key")).ok_or_else(|| protocol("create_keypair", "no keypair in the answer"))
    }

    /// Activates or deactivates a keypair.
    pub async fn set_keypair_active(&self, access_key: &str, active: bool) -> Result<()> {
        let query = "mutation($access_key: String!, $input: ModifyKeyPairInput!) {\n  modify_keypair(access_key: \
                     $access_key, props: $input) {\n    ok msg\n  }\n}";
        let vars = json!({"access_key": access_key, "input": {"is_active": active, "is_admin": null,
                          "resource_policy": null, "rate_limit": null}});
        self.mutate("modify_keypair", query, vars).await.map(drop)
    }

    /// Deletes a keypair.
    pub async fn delete_keypair(&self, access_key: &str) -> Result<()> {
        let query = "mutation($access_key: String!) {\n  delete_keypair(access_key: $access_key) {\n    ok msg\n  }\n}";
        self.mutate("delete_keypair", query, json!({"access_key": access_key})).await.map(drop)
    }

    /// Users, optionally by status (admins).
    pub async fn list_users(&self, status: Option<&str>, limit: u32, offset: u32) -> Result<Page<User>> {
        check_limit(limit)?;
        let query = format!(
            "query($limit:Int!, $offset:Int!, $status: String) {{\n  user_list(limit:$limit, offset:$offset, \
             status:$status) {{\n    items {{ {USER_FIELDS} }}\n    total_count\n  }}\n}}"
        );
        self.gql_field("user_list", &query, json!({"limit": limit, "offset": offset, "status": status})).await
    }

    /// Creates a user (and its main keypair) and returns it.
    pub async fn create_user(&self, user: &NewUser) -> Result<User> {
        if user.password.is_empty() {
            return Err(invalid("password", "is empty"));
        }
        let query = format!(
            "mutation($email: String!, $input: UserInput!) {{\n  create_user(email: $email, props: $input) {{\n    ok \
             msg user {{ {USER_FIELDS} }}\n  }}\n}}"
        );
        let vars = json!({"email": user.email, "input": {
            "password": user.password, "role": user.role, "status": "active", "need_password_change": false,
            "description": "", "domain_name": user.domain, "username": user.username, "full_name": user.full_name,
        }});
        let mut result = self.mutate("create_user", &query, vars).await?;
        serde_json::from_value(result["user"].take()).map_err(|e| protocol("create_user", e))
    }

    /// Domains (superadmin).
    pub async fn list_domains(&self) -> Result<Vec<Domain>> {
        let query = "query {\n  domains { name description is_active created_at total_resource_slots }\n}";
        self.gql_field("domains", query, json!({})).await
    }

    /// Creates a domain.
    pub async fn create_domain(&self, name: &str, description: &str) -> Result<()> {
        let query = "mutation($name: String!, $input: DomainInput!) {\n  create_domain(name: $name, props: $input) \
                     {\n    ok msg domain { name }\n  }\n}";
        let vars = json!({"name": name, "input": {"description": description, "is_active": true, "total_resource_slots": "{}"}});
        self.mutate("create_domain", query, vars).await.map(drop)
    }

    /// Projects of a domain (the requester's when `None`).
    pub async fn list_groups(&self, domain: Option<&str>) -> Result<Vec<Group>> {
        let query =
            "query($domain_name: String) {\n  groups(domain_name: $domain_name) { id name is_active created_at \
                     integration_id }\n}";
        self.gql_field("groups", query, json!({"domain_name": domain})).await
    }

    /// Creates a project in a domain and returns its id.
    pub async fn create_group(&self, domain: &str, name: &str, description: &str) -> Result<String> {
        let query =
            "mutation($name: String!, $input: GroupInput!) {\n  create_group(name: $name, props: $input) {\n    \
                     ok msg group { id domain_name name }\n  }\n}";
        let vars = json!({"name": name, "input": {"description": description, "is_active": true, "domain_name": domain,
                          "total_resource_slots": "{}", "allowed_vfolder_hosts": "{}", "integration_id": null}});
        let result = self.mutate("create_group", query, vars).await?;
        result["group"]["id"].as_str().map(str::to_string).ok_or_else(|| protocol("create_group", "no group id"))
    }

    /// Images the manager knows.
    pub async fn list_images(&self) -> Result<Vec<Image>> {
        let query = "query($is_operation: Boolean) {\n  images(is_operation: $is_operation) { name registry \
                     architecture tag digest size_bytes aliases }\n}";
        self.gql_field("images", query, json!({"is_operation": false})).await
    }

    /// Asks the manager to scan the agents' images (and its configured registries) again
    /// (superadmin) and returns its report. The manager runs the scan as a background task;
    /// this follows the task's events (`/events/background-task`) to its end, and a failed
    /// or cancelled scan is [`Error::Rejected`] with the task's message.
    pub async fn rescan_images(&self) -> Result<String> {
        let query = "mutation($registry: String) {\n  rescan_images(registry: $registry) {\n    ok msg task_id\n  }\n}";
        let result = self.mutate("rescan_images", query, json!({"registry": null})).await?;
        let msg = result["msg"].as_str().unwrap_or_default().to_string();
        match result["task_id"].as_str() {
            Some(task_id) => self.follow_background_task("rescan_images", task_id).await,
            None => Ok(msg),
        }
    }

    /// Waits for background task `task_id` to end: its final message when it is done, else
    /// [`Error::Rejected`] for `operation`.
    pub async fn follow_background_task(&self, operation: &str, task_id: &str) -> Result<String> {
        use futures::StreamExt;
        let query = [("taskId", task_id.to_string())];
        let response = self.send(Method::GET, "/events/background-task", &query, Body::Empty).await?;
        let mut events = crate::events::EventStream::from_response(response);
        while let Some(event) = events.next().await {
            let event = event?;
            let message = event.data["message"].as_str().unwrap_or_default().to_string();
            match event.name.as_str() {
                "bgtask_done" => return Ok(message),
                "bgtask_failed" | "bgtask_cancelled" => {
                    return Err(Error::Rejected { operation: operation.to_string(), msg: message })
                }
                _ => {}
            }
        }
        Err(protocol(operation, format!("the events of background task {task_id} ended without its outcome")))
    }

    /// Scaling groups (superadmin).
    pub async fn list_scaling_groups(&self) -> Result<Vec<ScalingGroup>> {
        let query = "query($is_active: Boolean) {\n  scaling_groups(is_active: $is_active) { name description \
                     is_active is_public created_at driver scheduler }\n}";
        self.gql_field("scaling_groups", query, json!({"is_active": null})).await
    }

    /// Keypair resource policies (superadmin).
    pub async fn list_resource_policies(&self) -> Result<Vec<ResourcePolicy>> {
        let query = "query {\n  keypair_resource_policies { name total_resource_slots max_concurrent_sessions \
                     max_containers_per_session idle_timeout max_vfolder_count }\n}";
        self.gql_field("keypair_resource_policies", query, json!({})).await
    }

    /// The resource presets.
    pub async fn list_presets(&self) -> Result<Vec<Preset>> {
        let mut body: Value = self.send_json(Method::GET, "/resource/presets", &[], Body::Empty).await?;
        serde_json::from_value(body["presets"].take()).map_err(|e| protocol("/resource/presets", e))
    }

    /// What the requester may still allocate, and which presets fit.
    pub async fn check_presets(&self, scaling_group: Option<&str>) -> Result<PresetCheck> {
        let body = match scaling_group {
            Some(sg) => Body::Json(json!({ "scaling_group": sg, "group": self.config().group })),
            None => Body::Json(json!({ "group": self.config().group })),
        };
        self.send_json(Method::POST, "/resource/check-presets", &[], body).await
    }
}

pub(crate) fn check_limit(limit: u32) -> Result<()> {
    if (1..=100).contains(&limit) {
        Ok(())
    } else {
        Err(invalid("limit", format!("{limit} is not within 1..=100")))
    }
}
