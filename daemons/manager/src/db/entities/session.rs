//! `sessions`: compute sessions. A session owns one or more kernels (`kernels.session_id`);
//! its status follows the original's transition map (see [`crate::db::repo::set_session_status`]).

use bai_core::{ClusterMode, SessionStatus, SessionType};
use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{empty_object, or_set, FillDefaults};
use crate::db::types::{JsonOf, SessionResult, Slots, StringList, Wire};

/// The priority a session gets when none is given (range 0–100, higher first).
pub const DEFAULT_PRIORITY: i32 = 10;

/// A row of `sessions`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    /// The session's id (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The id of the creation request, echoed in events.
    pub creation_id: Option<String>,
    /// The name, unique among the owner's live sessions.
    pub name: String,
    /// `interactive`, `batch`, `inference` or `system`.
    pub session_type: Wire<SessionType>,
    /// Scheduling priority (0–100, higher first; default 10).
    pub priority: i32,
    /// `single-node` or `multi-node`.
    pub cluster_mode: Wire<ClusterMode>,
    /// The number of kernels.
    pub cluster_size: i32,
    /// The agents the kernels were placed on.
    pub agent_ids: Option<StringList>,
    /// The scaling group the session runs in.
    pub scaling_group_name: Option<String>,
    /// The scaling groups the session may be scheduled into.
    pub target_sgroup_names: StringList,
    /// The owner's domain.
    pub domain_name: String,
    /// The owner's group (project).
    pub group_id: Uuid,
    /// The owner.
    pub user_uuid: Uuid,
    /// The owner's keypair.
    pub access_key: Option<String>,
    /// The canonical image references of the kernels.
    pub images: StringList,
    /// A user-defined tag.
    pub tag: Option<String>,
    /// What the kernels hold once created (Σ kernel `occupied_slots`; empty before CREATING).
    pub occupying_slots: Slots,
    /// What the kernels asked for (Σ kernel `requested_slots`).
    pub requested_slots: Slots,
    /// The mounted virtual folders.
    pub vfolder_mounts: Option<Json>,
    /// Environment variables for every kernel.
    pub environ: Json,
    /// A script run in each kernel before the service starts.
    pub bootstrap_script: Option<String>,
    /// Whether the kernels use the host's network.
    pub use_host_network: bool,
    /// Seconds the session may live.
    pub timeout: Option<i64>,
    /// Seconds a batch session's command may run.
    pub batch_timeout: Option<i64>,
    /// When the session was enqueued.
    pub created_at: DateTimeUtc,
    /// When it became TERMINATED or CANCELLED.
    pub terminated_at: Option<DateTimeUtc>,
    /// When a batch session may start.
    pub starts_at: Option<DateTimeUtc>,
    /// The status (`PENDING`, `RUNNING`, …).
    pub status: Wire<SessionStatus>,
    /// When the status last changed (also the last entry of `status_history`).
    pub status_changed: Option<DateTimeUtc>,
    /// Why the status was set (`scheduled`, `no-available-instances`, `user-requested`, …).
    pub status_info: Option<String>,
    /// Details of the last status change (`{"scheduler": {…}}`, `{"error": {…}}`, …).
    pub status_data: Option<Json>,
    /// When each status was entered: `{"PENDING": "<iso>", "SCHEDULED": "<iso>", …}`.
    pub status_history: Json,
    /// Called on status changes.
    pub callback_url: Option<String>,
    /// The command a batch session runs.
    pub startup_command: Option<String>,
    /// `undefined`, `success` or `failure`.
    pub result: Wire<SessionResult>,
    /// How many queries were executed.
    pub num_queries: i64,
    /// The last statistics, kept after termination.
    pub last_stat: Option<Json>,
}

/// Relations of `sessions`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The session's kernels.
    #[sea_orm(has_many = "super::kernel::Entity")]
    Kernel,
}

impl Related<super::kernel::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Kernel.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.id, Uuid::new_v4);
        or_set(&mut self.session_type, Default::default);
        or_set(&mut self.priority, || DEFAULT_PRIORITY);
        or_set(&mut self.cluster_mode, Default::default);
        or_set(&mut self.cluster_size, || 1);
        or_set(&mut self.target_sgroup_names, || JsonOf(Vec::new()));
        or_set(&mut self.images, || JsonOf(Vec::new()));
        or_set(&mut self.occupying_slots, Default::default);
        or_set(&mut self.requested_slots, Default::default);
        or_set(&mut self.environ, empty_object);
        or_set(&mut self.use_host_network, || false);
        or_set(&mut self.created_at, || now);
        or_set(&mut self.status, || Wire(SessionStatus::Pending));
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
