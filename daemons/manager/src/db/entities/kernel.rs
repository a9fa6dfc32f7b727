//! `kernels`: the containers of sessions. Each row belongs to one session
//! (`session_id`), is placed on one agent (`agent`) and has its own status.

use bai_core::{ClusterMode, KernelStatus, SessionType};
use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{empty_object, or_set, FillDefaults};
use crate::db::types::{SessionResult, Slots, Wire};

/// A row of `kernels`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "kernels")]
pub struct Model {
    /// The kernel's id (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The session it belongs to (`sessions.id`).
    pub session_id: Uuid,
    /// The session's creation id.
    pub session_creation_id: Option<String>,
    /// The session's name.
    pub session_name: Option<String>,
    /// The session's type.
    pub session_type: Wire<SessionType>,
    /// The session's cluster mode.
    pub cluster_mode: Wire<ClusterMode>,
    /// The session's number of kernels.
    pub cluster_size: i32,
    /// `main` or `sub`.
    pub cluster_role: String,
    /// The index within the role, from 1.
    pub cluster_idx: i32,
    /// The index within the session, from 0.
    pub local_rank: i32,
    /// The host name inside the cluster network, e.g. `main1`.
    pub cluster_hostname: String,
    /// The scaling group of its agent.
    pub scaling_group: Option<String>,
    /// The agent it is placed on (`agents.id`).
    pub agent: Option<String>,
    /// The agent's RPC address.
    pub agent_addr: Option<String>,
    /// The owner's domain.
    pub domain_name: String,
    /// The owner's group (project).
    pub group_id: Uuid,
    /// The owner.
    pub user_uuid: Uuid,
    /// The owner's keypair.
    pub access_key: Option<String>,
    /// The canonical image reference.
    pub image: Option<String>,
    /// The image's architecture.
    pub architecture: String,
    /// The image's registry.
    pub registry: Option<String>,
    /// The image's tag.
    pub tag: Option<String>,
    /// The container's id on the agent.
    pub container_id: Option<String>,
    /// What the kernel holds (the request until the agent reports the actual allocation).
    pub occupied_slots: Slots,
    /// What the kernel asked for.
    pub requested_slots: Slots,
    /// Fractional device shares.
    pub occupied_shares: Json,
    /// Environment variables (`["K=V", …]`).
    pub environ: Option<Json>,
    /// The devices attached to the container.
    pub attached_devices: Json,
    /// Options such as `shmem`.
    pub resource_opts: Json,
    /// The mounted virtual folders.
    pub vfolder_mounts: Option<Json>,
    /// The bootstrap script.
    pub bootstrap_script: Option<String>,
    /// The host its ports are reachable at.
    pub kernel_host: Option<String>,
    /// The REPL input port.
    pub repl_in_port: i32,
    /// The REPL output port.
    pub repl_out_port: i32,
    /// The stdin port.
    pub stdin_port: i32,
    /// The stdout port.
    pub stdout_port: i32,
    /// The service ports (`[{name, protocol, container_ports, host_ports}]`).
    pub service_ports: Option<Json>,
    /// Ports the user asked to open.
    pub preopen_ports: Option<Json>,
    /// Whether the container uses the host's network.
    pub use_host_network: bool,
    /// When the kernel was enqueued.
    pub created_at: DateTimeUtc,
    /// When it became TERMINATED or CANCELLED.
    pub terminated_at: Option<DateTimeUtc>,
    /// When a batch kernel may start.
    pub starts_at: Option<DateTimeUtc>,
    /// The status (`PENDING`, `RUNNING`, …).
    pub status: Wire<KernelStatus>,
    /// When the status last changed.
    pub status_changed: Option<DateTimeUtc>,
    /// Why the status was set.
    pub status_info: Option<String>,
    /// Details of the last status change.
    pub status_data: Option<Json>,
    /// When each status was entered: `{"PENDING": "<iso>", …}`.
    pub status_history: Json,
    /// The command a batch kernel runs.
    pub startup_command: Option<String>,
    /// `undefined`, `success` or `failure`.
    pub result: Wire<SessionResult>,
    /// Manager-internal data.
    pub internal_data: Option<Json>,
    /// How many queries were executed.
    pub num_queries: i64,
    /// The last statistics, kept after termination.
    pub last_stat: Option<Json>,
    /// The container's exit code, once it ended.
    pub exit_code: Option<i32>,
}

/// Relations of `kernels`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The session the kernel belongs to.
    #[sea_orm(
        belongs_to = "super::session::Entity",
        from = "Column::SessionId",
        to = "super::session::Column::Id",
        on_delete = "Cascade"
    )]
    Session,
}

impl Related<super::session::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Session.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.id, Uuid::new_v4);
        or_set(&mut self.session_type, Default::default);
        or_set(&mut self.cluster_mode, Default::default);
        or_set(&mut self.cluster_size, || 1);
        or_set(&mut self.cluster_role, || "main".to_string());
        or_set(&mut self.cluster_idx, || 1);
        or_set(&mut self.local_rank, || 0);
        if self.cluster_hostname.is_not_set() {
            let hostname = format!("{}{}", self.cluster_role.as_ref(), self.cluster_idx.as_ref());
            self.cluster_hostname = sea_orm::ActiveValue::Set(hostname);
        }
        or_set(&mut self.architecture, || "x86_64".to_string());
        or_set(&mut self.occupied_slots, || self.requested_slots.try_as_ref().cloned().unwrap_or_default());
        or_set(&mut self.requested_slots, Default::default);
        or_set(&mut self.occupied_shares, empty_object);
        or_set(&mut self.attached_devices, empty_object);
        or_set(&mut self.resource_opts, empty_object);
        or_set(&mut self.repl_in_port, || 0);
        or_set(&mut self.repl_out_port, || 0);
        or_set(&mut self.stdin_port, || 0);
        or_set(&mut self.stdout_port, || 0);
        or_set(&mut self.use_host_network, || false);
        or_set(&mut self.created_at, || now);
        or_set(&mut self.status, || Wire(KernelStatus::Pending));
        if self.status_history.is_not_set() {
            let status = self.status.as_ref().0;
            let at = self.created_at.as_ref();
            self.status_history = sea_orm::ActiveValue::Set(super::history_entry(status, *at));
            or_set(&mut self.status_changed, || Some(*at));
        }
        or_set(&mut self.result, Default::default);
        or_set(&mut self.num_queries, || 0);
    }
}
