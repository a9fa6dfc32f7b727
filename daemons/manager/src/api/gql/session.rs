//! Compute sessions: the roots `compute_session(id)` and `compute_session_list(…)`, and the
//! types `ComputeSession`, `ComputeContainer` and `ComputeSessionList` with the fields of the
//! original's schema (spec §7.4, §7.5).
//!
//! Values follow the original: `type`, `status` and `result` are upper-case enum names,
//! `image` is the first image of the session, `occupying_slots` (and the legacy
//! `occupied_slots`) is the sum of the containers' occupied slots as a JSONString (never
//! null), `containers` and `dependencies` are lists (never null), `status_data` and the
//! statistics are JSONStrings of objects or null.
//!
//! Visibility is the original's `scoped_query` with the access key as the user key: a user
//! sees only the sessions of their own access key (naming another is an error), a domain
//! admin the sessions of their domain, a superadmin every session; `compute_session` answers
//! null for a session the caller may not see.

use std::collections::{HashMap, HashSet};

use async_graphql::{Context, Error, Object, Result, ID};
use bai_core::{ClusterMode, SessionStatus, SessionType};
use sea_orm::sea_query::{Expr, Func, Order, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::filter::{self, column, FieldSpec, Kind, Target};
use super::scalars::{BigInt, DateTime, JsonString, Uuid};
use super::{db_error, scoped, GqlContext, UserKey};
use crate::db::entities::{group, kernel, session, session_dependency, user};
use crate::db::types::{SessionResult, Wire};

/// The statuses a client may name, as the original lists them.
const STATUS_NAMES: &str = "PENDING, SCHEDULED, PULLING, PREPARING, RUNNING, RESTARTING, RUNNING_DEGRADED, \
                            TERMINATING, TERMINATED, ERROR, CANCELLED";

/// Parses the comma-joined `status` argument. `PREPARING` also selects bai's intermediate
/// `PREPARED` and `CREATING` (the original 23.09 has neither: its sessions go from PREPARING
/// to RUNNING), so that `ps` and `ps --running` keep showing sessions being created.
pub fn parse_statuses(text: &str) -> std::result::Result<Vec<SessionStatus>, String> {
    let mut statuses = Vec::new();
    for part in text.split(',') {
        let name = part.trim();
        let status: SessionStatus = name.parse().map_err(|_| {
            format!("invalid session status {name:?} in status: expected a comma-separated list of {STATUS_NAMES}")
        })?;
        let implied: &[SessionStatus] = match status {
            SessionStatus::Preparing => &[SessionStatus::Preparing, SessionStatus::Prepared, SessionStatus::Creating],
            _ => &[],
        };
        for s in std::iter::once(&status).chain(implied) {
            if !statuses.contains(s) {
                statuses.push(*s);
            }
        }
    }
    Ok(statuses)
}

fn wire_of<T: std::str::FromStr + std::fmt::Display>(text: &str) -> std::result::Result<String, String>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>().map(|v| v.to_string()).map_err(|e| e.to_string())
}

/// The fields `compute_session_list` can filter and order by (the original's
/// `_queryfilter_fieldspec` and `_queryorder_colmap`).
pub fn session_fields() -> Vec<FieldSpec> {
    use session::Column as C;
    let col = |c: C| Target::Column(column(session::Entity, c));
    let spec = |name, kind, target| FieldSpec { name, kind, target };
    let array = |c: C| Target::JsonArray(column(session::Entity, c));
    let related = |outer: C, table, key, value| Target::Related {
        outer: column(session::Entity, outer),
        table,
        key,
        column: value,
    };
    vec![
        spec("id", Kind::Uuid, col(C::Id)),
        spec("type", Kind::Enum(wire_of::<SessionType>), col(C::SessionType)),
        spec("name", Kind::Text, col(C::Name)),
        spec("image", Kind::Text, array(C::Images)),
        spec("agent_ids", Kind::Text, array(C::AgentIds)),
        spec("agent_id", Kind::Text, array(C::AgentIds)),
        spec("agents", Kind::Text, array(C::AgentIds)),
        spec("domain_name", Kind::Text, col(C::DomainName)),
        spec("group_name", Kind::Text, related(C::GroupId, "groups", "id", "name")),
        spec("user_email", Kind::Text, related(C::UserUuid, "users", "uuid", "email")),
        spec("full_name", Kind::Text, related(C::UserUuid, "users", "uuid", "full_name")),
        spec("access_key", Kind::Text, col(C::AccessKey)),
        spec("scaling_group", Kind::Text, col(C::ScalingGroupName)),
        spec("cluster_mode", Kind::Enum(wire_of::<ClusterMode>), col(C::ClusterMode)),
        spec("cluster_size", Kind::Int, col(C::ClusterSize)),
        spec("status", Kind::Enum(wire_of::<SessionStatus>), col(C::Status)),
        spec("status_info", Kind::Text, col(C::StatusInfo)),
        spec("result", Kind::Enum(wire_of::<SessionResult>), col(C::Result)),
        spec("created_at", Kind::Time, col(C::CreatedAt)),
        spec("terminated_at", Kind::Time, col(C::TerminatedAt)),
        spec("starts_at", Kind::Time, col(C::StartsAt)),
        spec("scheduled_at", Kind::TimeText, Target::JsonKey("status_history", "SCHEDULED")),
        spec("startup_command", Kind::Text, col(C::StartupCommand)),
    ]
}

/// A session with what its fields need: its kernels (main first), its group's name and its
/// owner's e-mail address and full name.
#[derive(Debug, Clone)]
pub struct ComputeSession {
    row: session::Model,
    kernels: Vec<kernel::Model>,
    group_name: Option<String>,
    user_email: Option<String>,
    full_name: Option<String>,
}

/// Loads what [`ComputeSession`] needs for these rows, with one query per related table.
pub async fn load_sessions(
    db: &DatabaseConnection,
    rows: Vec<session::Model>,
) -> std::result::Result<Vec<ComputeSession>, sea_orm::DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<uuid::Uuid> = rows.iter().map(|s| s.id).collect();
    let mut kernels: HashMap<uuid::Uuid, Vec<kernel::Model>> = HashMap::new();
    for chunk in ids.chunks(500) {
        for k in kernel::Entity::find()
            .filter(kernel::Column::SessionId.is_in(chunk.iter().copied()))
            .order_by_asc(kernel::Column::ClusterRole)
            .order_by_asc(kernel::Column::ClusterIdx)
            .all(db)
            .await?
        {
            kernels.entry(k.session_id).or_default().push(k);
        }
    }
    let group_ids: HashSet<uuid::Uuid> = rows.iter().map(|s| s.group_id).collect();
    let groups: HashMap<uuid::Uuid, String> = group::Entity::find()
        .filter(group::Column::Id.is_in(group_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|g| (g.id, g.name))
        .collect();
    let user_ids: HashSet<uuid::Uuid> = rows.iter().map(|s| s.user_uuid).collect();
    let users: HashMap<uuid::Uuid, user::Model> = user::Entity::find()
        .filter(user::Column::Uuid.is_in(user_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.uuid, u))
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut ks = kernels.remove(&row.id).unwrap_or_default();
            ks.sort_by_key(|k| k.cluster_role != "main");
            let owner = users.get(&row.user_uuid);
            ComputeSession {
                group_name: groups.get(&row.group_id).cloned(),
                user_email: owner.map(|u| u.email.clone()),
                full_name: owner.and_then(|u| u.full_name.clone()),
                kernels: ks,
                row,
            }
        })
        .collect())
}

impl ComputeSession {
    fn main_kernel(&self) -> Option<&kernel::Model> {
        self.kernels.iter().find(|k| k.cluster_role == "main").or(self.kernels.first())
    }

    fn occupying(&self) -> JsonString {
        let total: bai_core::ResourceSlot = self.kernels.iter().map(|k| &k.occupied_slots.0).sum();
        JsonString::serialize(&total)
    }

    fn mount_names(&self) -> Vec<String> {
        let Some(serde_json::Value::Array(mounts)) = &self.row.vfolder_mounts else { return Vec::new() };
        mounts
            .iter()
            .filter_map(|m| match m {
                serde_json::Value::String(name) => Some(name.clone()),
                serde_json::Value::Object(o) => o.get("name").and_then(|n| n.as_str()).map(str::to_string),
                _ => None,
            })
            .collect()
    }
}

/// The upper-case name the original prints for an enum value (`interactive` → `INTERACTIVE`).
fn enum_name(wire: impl std::fmt::Display) -> String {
    wire.to_string().to_ascii_uppercase().replace('-', "_")
}

fn scheduled_at(history: &serde_json::Value) -> Option<DateTime> {
    history.get("SCHEDULED").and_then(|v| v.as_str()).and_then(|s| super::scalars::parse_datetime(s).ok()).map(DateTime)
}

#[Object(name = "ComputeSession", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl ComputeSession {
    /// The session id.
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    /// The session id (as `id`).
    async fn session_id(&self) -> Uuid {
        Uuid(self.row.id)
    }

    /// The main kernel's id.
    async fn main_kernel_id(&self) -> Option<Uuid> {
        self.main_kernel().map(|k| Uuid(k.id))
    }

    /// The user-defined tag.
    async fn tag(&self) -> Option<&str> {
        self.row.tag.as_deref()
    }

    /// The session name.
    async fn name(&self) -> &str {
        &self.row.name
    }

    /// `INTERACTIVE`, `BATCH`, `INFERENCE` or `SYSTEM`.
    #[graphql(name = "type")]
    async fn session_type(&self) -> String {
        enum_name(self.row.session_type)
    }

    /// The main kernel's role: `COMPUTE`, `INFERENCE` or `SYSTEM`.
    async fn main_kernel_role(&self) -> &'static str {
        match self.row.session_type.0 {
            SessionType::Inference => "INFERENCE",
            SessionType::System => "SYSTEM",
            _ => "COMPUTE",
        }
    }

    /// The image of the main container.
    async fn image(&self) -> String {
        self.row.images.0.first().cloned().unwrap_or_default()
    }

    /// The main container's image architecture.
    async fn architecture(&self) -> Option<&str> {
        self.main_kernel().map(|k| k.architecture.as_str())
    }

    /// The main container's image registry.
    async fn registry(&self) -> Option<&str> {
        self.main_kernel().and_then(|k| k.registry.as_deref())
    }

    /// Not implemented by the original either: always null.
    async fn cluster_template(&self) -> Option<String> {
        None
    }

    /// `single-node` or `multi-node`.
    async fn cluster_mode(&self) -> String {
        self.row.cluster_mode.to_string()
    }

    /// The number of containers.
    async fn cluster_size(&self) -> i32 {
        self.row.cluster_size
    }

    /// The owner's domain.
    async fn domain_name(&self) -> &str {
        &self.row.domain_name
    }

    /// The owner group's (project's) name.
    async fn group_name(&self) -> Option<&str> {
        self.group_name.as_deref()
    }

    /// The owner group's (project's) id.
    async fn group_id(&self) -> Uuid {
        Uuid(self.row.group_id)
    }

    /// The owner's e-mail address.
    async fn user_email(&self) -> Option<&str> {
        self.user_email.as_deref()
    }

    /// The owner's full name.
    async fn full_name(&self) -> Option<&str> {
        self.full_name.as_deref()
    }

    /// The owner's id.
    async fn user_id(&self) -> Uuid {
        Uuid(self.row.user_uuid)
    }

    /// The owner's access key.
    async fn access_key(&self) -> Option<&str> {
        self.row.access_key.as_deref()
    }

    /// Not implemented by the original either: always null.
    async fn created_user_email(&self) -> Option<String> {
        None
    }

    /// Not implemented by the original either: always null.
    async fn created_user_id(&self) -> Option<Uuid> {
        None
    }

    /// `PENDING`, `SCHEDULED`, …, `RUNNING`, …, `TERMINATED`, `ERROR`, `CANCELLED`.
    async fn status(&self) -> String {
        self.row.status.to_string()
    }

    /// When the status last changed.
    async fn status_changed(&self) -> Option<DateTime> {
        self.row.status_changed.map(DateTime)
    }

    /// Why the status was set.
    async fn status_info(&self) -> Option<&str> {
        self.row.status_info.as_deref()
    }

    /// Details of the last status change (an object), or null.
    async fn status_data(&self) -> Option<JsonString> {
        JsonString::of_object(self.row.status_data.as_ref())
    }

    /// When each status was entered.
    async fn status_history(&self) -> JsonString {
        JsonString::of(&self.row.status_history)
    }

    /// When the session was enqueued.
    async fn created_at(&self) -> DateTime {
        DateTime(self.row.created_at)
    }

    /// When the session ended.
    async fn terminated_at(&self) -> Option<DateTime> {
        self.row.terminated_at.map(DateTime)
    }

    /// When a batch session may start.
    async fn starts_at(&self) -> Option<DateTime> {
        self.row.starts_at.map(DateTime)
    }

    /// When the session was scheduled.
    async fn scheduled_at(&self) -> Option<DateTime> {
        scheduled_at(&self.row.status_history)
    }

    /// The command a batch session runs.
    async fn startup_command(&self) -> Option<&str> {
        self.row.startup_command.as_deref()
    }

    /// `UNDEFINED`, `SUCCESS` or `FAILURE`.
    async fn result(&self) -> String {
        enum_name(self.row.result)
    }

    /// One abuse report per container (none are kept: nulls).
    async fn abusing_reports(&self) -> Vec<Option<JsonString>> {
        vec![None; self.kernels.len()]
    }

    /// The idle checkers' report: per checker `{remaining, remaining_time_type, extra}` (see
    /// [`crate::idle::report`]); an empty object for a session that is not RUNNING.
    async fn idle_checks(&self, ctx: &Context<'_>) -> Result<JsonString> {
        let gql = ctx.data::<GqlContext>()?;
        let Some(manager) = &gql.manager else { return Ok(JsonString("{}".into())) };
        let report = crate::idle::report(manager, &self.row).await.map_err(db_error)?;
        Ok(JsonString::of(&report))
    }

    /// The agents the containers run on.
    async fn agent_ids(&self) -> Option<Vec<String>> {
        self.row.agent_ids.as_ref().map(|ids| ids.0.clone())
    }

    /// The agents the containers run on (legacy name of `agent_ids`).
    async fn agents(&self) -> Option<Vec<String>> {
        self.row.agent_ids.as_ref().map(|ids| ids.0.clone())
    }

    /// Each container's resource options, by cluster host name.
    async fn resource_opts(&self) -> JsonString {
        let map: serde_json::Map<String, serde_json::Value> =
            self.kernels.iter().map(|k| (k.cluster_hostname.clone(), k.resource_opts.clone())).collect();
        JsonString::of(&serde_json::Value::Object(map))
    }

    /// The scaling group the session runs in.
    async fn scaling_group(&self) -> Option<&str> {
        self.row.scaling_group_name.as_deref()
    }

    /// The main container's service ports.
    async fn service_ports(&self) -> Option<JsonString> {
        JsonString::of_opt(self.main_kernel().and_then(|k| k.service_ports.as_ref()))
    }

    /// The names of the mounted virtual folders.
    async fn mounts(&self) -> Vec<String> {
        self.mount_names()
    }

    /// The mounted virtual folders.
    async fn vfolder_mounts(&self) -> Vec<String> {
        self.mount_names()
    }

    /// What the containers occupy (the sum of their `occupied_slots`).
    async fn occupying_slots(&self) -> JsonString {
        self.occupying()
    }

    /// What the containers occupy (legacy name of `occupying_slots`).
    async fn occupied_slots(&self) -> JsonString {
        self.occupying()
    }

    /// How many queries were executed.
    async fn num_queries(&self) -> BigInt {
        BigInt(self.row.num_queries)
    }

    /// The containers (kernels), the main one first.
    async fn containers(&self) -> Vec<ComputeContainer> {
        self.kernels.iter().cloned().map(ComputeContainer).collect()
    }

    /// The sessions this one waits for.
    async fn dependencies(&self, ctx: &Context<'_>) -> Result<Vec<ComputeSession>> {
        let gql = ctx.data::<GqlContext>()?;
        let ids: Vec<uuid::Uuid> = session_dependency::Entity::find()
            .filter(session_dependency::Column::SessionId.eq(self.row.id))
            .all(gql.db.as_ref())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|d| d.depends_on)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = session::Entity::find()
            .filter(session::Column::Id.is_in(ids))
            .order_by_asc(session::Column::CreatedAt)
            .all(gql.db.as_ref())
            .await
            .map_err(db_error)?;
        load_sessions(&gql.db, rows).await.map_err(db_error)
    }

    /// Inference metrics (none are collected: null).
    async fn inference_metrics(&self) -> Option<JsonString> {
        None
    }
}

/// A container (kernel) of a session.
#[derive(Debug, Clone)]
pub struct ComputeContainer(kernel::Model);

#[Object(name = "ComputeContainer", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl ComputeContainer {
    /// The kernel id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The index within the role (legacy name of `cluster_idx`).
    async fn idx(&self) -> i32 {
        self.0.cluster_idx
    }

    /// The role (legacy name of `cluster_role`).
    async fn role(&self) -> &str {
        &self.0.cluster_role
    }

    /// The host name (legacy name of `cluster_hostname`).
    async fn hostname(&self) -> &str {
        &self.0.cluster_hostname
    }

    /// The index within the role, from 1.
    async fn cluster_idx(&self) -> i32 {
        self.0.cluster_idx
    }

    /// The index within the session, from 0.
    async fn local_rank(&self) -> i32 {
        self.0.local_rank
    }

    /// `main` or `sub`.
    async fn cluster_role(&self) -> &str {
        &self.0.cluster_role
    }

    /// The host name inside the cluster network, e.g. `main1`.
    async fn cluster_hostname(&self) -> &str {
        &self.0.cluster_hostname
    }

    /// The owning session's id.
    async fn session_id(&self) -> Uuid {
        Uuid(self.0.session_id)
    }

    /// The image reference.
    async fn image(&self) -> Option<&str> {
        self.0.image.as_deref()
    }

    /// The image's architecture.
    async fn architecture(&self) -> &str {
        &self.0.architecture
    }

    /// The image's registry.
    async fn registry(&self) -> Option<&str> {
        self.0.registry.as_deref()
    }

    /// The kernel status (`PENDING`, …, `RUNNING`, …, `TERMINATED`).
    async fn status(&self) -> String {
        self.0.status.to_string()
    }

    /// When the status last changed.
    async fn status_changed(&self) -> Option<DateTime> {
        self.0.status_changed.map(DateTime)
    }

    /// Why the status was set.
    async fn status_info(&self) -> Option<&str> {
        self.0.status_info.as_deref()
    }

    /// Details of the last status change (an object), or null.
    async fn status_data(&self) -> Option<JsonString> {
        JsonString::of_object(self.0.status_data.as_ref())
    }

    /// When the kernel was enqueued.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }

    /// When the kernel ended.
    async fn terminated_at(&self) -> Option<DateTime> {
        self.0.terminated_at.map(DateTime)
    }

    /// When a batch kernel may start.
    async fn starts_at(&self) -> Option<DateTime> {
        self.0.starts_at.map(DateTime)
    }

    /// When the kernel was scheduled.
    async fn scheduled_at(&self) -> Option<DateTime> {
        scheduled_at(&self.0.status_history)
    }

    /// The abuse report (none are kept: null).
    async fn abusing_report(&self) -> Option<JsonString> {
        None
    }

    /// The agent the kernel runs on.
    async fn agent(&self) -> Option<&str> {
        self.0.agent.as_deref()
    }

    /// The agent's RPC address.
    async fn agent_addr(&self) -> Option<&str> {
        self.0.agent_addr.as_deref()
    }

    /// The container's id on the agent.
    async fn container_id(&self) -> Option<&str> {
        self.0.container_id.as_deref()
    }

    /// Options such as `shmem`.
    async fn resource_opts(&self) -> JsonString {
        JsonString::of(&self.0.resource_opts)
    }

    /// What the kernel occupies.
    async fn occupied_slots(&self) -> JsonString {
        JsonString::serialize(&self.0.occupied_slots.0)
    }

    /// The latest statistics (an object), or null.
    async fn live_stat(&self) -> Option<JsonString> {
        JsonString::of_object(self.0.last_stat.as_ref())
    }

    /// The latest statistics (same as `live_stat`, as in the original).
    async fn last_stat(&self) -> Option<JsonString> {
        JsonString::of_object(self.0.last_stat.as_ref())
    }

    /// The ports the user asked to open.
    async fn preopen_ports(&self) -> Option<Vec<i32>> {
        let ports = self.0.preopen_ports.as_ref()?.as_array()?;
        Some(ports.iter().filter_map(|p| p.as_i64().and_then(|p| i32::try_from(p).ok())).collect())
    }
}

/// A page of sessions and the exact number of sessions that match.
#[derive(Debug)]
pub struct ComputeSessionList {
    items: Vec<ComputeSession>,
    total_count: i32,
}

#[Object(name = "ComputeSessionList", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl ComputeSessionList {
    /// The page.
    async fn items(&self) -> &[ComputeSession] {
        &self.items
    }

    /// How many sessions match in all (not only on this page).
    async fn total_count(&self) -> i32 {
        self.total_count
    }
}

/// The session roots.
#[derive(Debug, Default)]
pub struct SessionQuery;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl SessionQuery {
    /// The session with this id, or null when there is none the caller may see.
    async fn compute_session(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<ComputeSession>> {
        let gql = ctx.data::<GqlContext>()?;
        let scope = scoped(&gql.auth, None, None, UserKey::AccessKey, false)?;
        let mut condition = Condition::all().add(session::Column::Id.eq(id.0));
        if let Some(domain) = scope.domain_name {
            condition = condition.add(session::Column::DomainName.eq(domain));
        }
        if let Some(access_key) = scope.user {
            condition = condition.add(session::Column::AccessKey.eq(access_key));
        }
        let Some(row) = session::Entity::find().filter(condition).one(gql.db.as_ref()).await.map_err(db_error)? else {
            return Ok(None);
        };
        Ok(load_sessions(&gql.db, vec![row]).await.map_err(db_error)?.pop())
    }

    /// A page of sessions: `limit` rows from `offset`, newest activity first unless `order`
    /// says otherwise, with the exact `total_count`.
    #[allow(clippy::too_many_arguments)]
    async fn compute_session_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        group_id: Option<String>,
        access_key: Option<String>,
        status: Option<String>,
    ) -> Result<Option<ComputeSessionList>> {
        let gql = ctx.data::<GqlContext>()?;
        if limit < 0 {
            return Err(Error::new(format!("limit must be 0 or more, got {limit}")));
        }
        if offset < 0 {
            return Err(Error::new(format!("offset must be 0 or more, got {offset}")));
        }
        let scope = scoped(&gql.auth, domain_name, access_key, UserKey::AccessKey, false)?;
        let db = gql.db.as_ref();
        let backend = db.get_database_backend();
        let specs = session_fields();
        let mut condition = Condition::all();
        if let Some(domain) = scope.domain_name {
            condition = condition.add(session::Column::DomainName.eq(domain));
        }
        if let Some(access_key) = scope.user {
            condition = condition.add(session::Column::AccessKey.eq(access_key));
        }
        if let Some(group_id) = group_id {
            let id = uuid::Uuid::parse_str(group_id.trim())
                .map_err(|_| Error::new(format!("group_id: {group_id:?} is not a UUID")))?;
            condition = condition.add(session::Column::GroupId.eq(id));
        }
        if let Some(status) = status {
            let statuses = parse_statuses(&status).map_err(Error::new)?;
            condition = condition.add(session::Column::Status.is_in(statuses.into_iter().map(Wire)));
        }
        if let Some(filter) = filter {
            let parsed = filter::parse_filter(&filter).map_err(Error::new)?;
            condition = condition.add(filter::to_condition(&parsed, &specs, backend).map_err(Error::new)?);
        }
        let mut ordering: Vec<(SimpleExpr, Order)> = Vec::new();
        if let Some(order) = order {
            for key in filter::parse_order(&order).map_err(Error::new)? {
                let expr = filter::order_expr(&key, &specs, backend).map_err(Error::new)?;
                ordering.push((expr, if key.descending { Order::Desc } else { Order::Asc }));
            }
        }
        if ordering.is_empty() {
            // The original's default: latest activity first (greatest of creation and
            // termination; a session ends after it starts, so COALESCE gives the same).
            let latest = Func::coalesce([
                Expr::col((session::Entity, session::Column::TerminatedAt)).into(),
                Expr::col((session::Entity, session::Column::CreatedAt)).into(),
            ]);
            ordering.push((latest.into(), Order::Desc));
        }
        let total = session::Entity::find().filter(condition.clone()).count(db).await.map_err(db_error)?;
        let mut query = session::Entity::find().filter(condition);
        for (expr, direction) in ordering {
            query = query.order_by(expr, direction);
        }
        let rows = query
            .order_by_desc(session::Column::Id)
            .limit(limit as u64)
            .offset(offset as u64)
            .all(db)
            .await
            .map_err(db_error)?;
        let items = load_sessions(&gql.db, rows).await.map_err(db_error)?;
        Ok(Some(ComputeSessionList { items, total_count: i32::try_from(total).unwrap_or(i32::MAX) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_and_preparing_implies_bai_intermediates() {
        assert_eq!(parse_statuses("RUNNING").unwrap(), vec![SessionStatus::Running]);
        assert_eq!(
            parse_statuses("PREPARING,RUNNING,RUNNING_DEGRADED").unwrap(),
            vec![
                SessionStatus::Preparing,
                SessionStatus::Prepared,
                SessionStatus::Creating,
                SessionStatus::Running,
                SessionStatus::RunningDegraded
            ]
        );
        let err = parse_statuses("RUNNING,BOGUS").unwrap_err();
        assert!(err.contains("\"BOGUS\""), "{err}");
        assert!(parse_statuses("").is_err());
    }

    #[test]
    fn enum_names_are_upper_case() {
        assert_eq!(enum_name(Wire(SessionType::Interactive)), "INTERACTIVE");
        assert_eq!(enum_name(Wire(SessionResult::Undefined)), "UNDEFINED");
    }
}
