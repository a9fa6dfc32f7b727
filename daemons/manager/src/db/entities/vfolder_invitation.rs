//! `vfolder_invitations`: an offer from a folder's owner to share it with another user, who
//! accepts (a `vfolder_permissions` row is created) or rejects it; the inviter may cancel it
//! while it is pending.

use bai_core::MountPermission;
use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};
use crate::db::types::{VFolderInvitationState, Wire};

/// A row of `vfolder_invitations`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "vfolder_invitations")]
pub struct Model {
    /// The invitation's id (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The folder (`vfolders.id`).
    pub vfolder: Uuid,
    /// The inviter's e-mail address.
    pub inviter: String,
    /// The invitee's e-mail address.
    pub invitee: String,
    /// The permission offered: `ro`, `rw` or `wd`.
    pub permission: Wire<MountPermission>,
    /// `pending`, `accepted`, `rejected` or `canceled`.
    pub state: Wire<VFolderInvitationState>,
    /// When it was sent.
    pub created_at: DateTimeUtc,
    /// When it was answered.
    pub modified_at: Option<DateTimeUtc>,
}

/// Relations of `vfolder_invitations` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.id, Uuid::new_v4);
        or_set(&mut self.permission, || Wire(MountPermission::ReadOnly));
        or_set(&mut self.state, Default::default);
        or_set(&mut self.created_at, || now);
    }
}
