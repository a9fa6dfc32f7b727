//! `keypair_resource_policies`: per-keypair limits (slots, concurrency, lifetime, idle
//! timeout, pending sessions, vfolders).

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{empty_object, or_set, FillDefaults};
use crate::db::types::{DefaultForUnspecified, Slots, Wire};

/// A row of `keypair_resource_policies`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "keypair_resource_policies")]
pub struct Model {
    /// The policy's name (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// `LIMITED` (unlisted slots are 0) or `UNLIMITED`.
    pub default_for_unspecified: Wire<DefaultForUnspecified>,
    /// The most a keypair may occupy at once.
    pub total_resource_slots: Slots,
    /// Seconds a session may live (0: forever).
    pub max_session_lifetime: i32,
    /// Sessions a keypair may run at once (0: unlimited).
    pub max_concurrent_sessions: i32,
    /// System (SFTP) sessions a keypair may run at once.
    pub max_concurrent_sftp_sessions: i32,
    /// PENDING sessions a keypair may have (none: unlimited).
    pub max_pending_session_count: Option<i32>,
    /// Slots a keypair's PENDING sessions may request in total (none: unlimited).
    pub max_pending_session_resource_slots: Option<Slots>,
    /// Kernels one session may have.
    pub max_containers_per_session: i32,
    /// Seconds of idleness before a session is terminated (0: never).
    pub idle_timeout: i64,
    /// Storage hosts the keypair may use, with the permissions on each.
    pub allowed_vfolder_hosts: Json,
    /// Vfolders a keypair may create (0: unlimited).
    pub max_vfolder_count: i32,
    /// Bytes per vfolder (0: unlimited).
    pub max_vfolder_size: i64,
    /// Bytes per quota scope (-1: unlimited).
    pub max_quota_scope_size: i64,
}

/// Relations of `keypair_resource_policies` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.created_at, || now);
        or_set(&mut self.default_for_unspecified, Default::default);
        or_set(&mut self.total_resource_slots, Default::default);
        or_set(&mut self.max_session_lifetime, || 0);
        or_set(&mut self.max_concurrent_sessions, || 0);
        or_set(&mut self.max_concurrent_sftp_sessions, || 1);
        or_set(&mut self.max_pending_session_count, || None);
        or_set(&mut self.max_pending_session_resource_slots, || None);
        or_set(&mut self.max_containers_per_session, || 1);
        or_set(&mut self.idle_timeout, || 0);
        or_set(&mut self.allowed_vfolder_hosts, empty_object);
        or_set(&mut self.max_vfolder_count, || 0);
        or_set(&mut self.max_vfolder_size, || 0);
        or_set(&mut self.max_quota_scope_size, || -1);
    }
}
