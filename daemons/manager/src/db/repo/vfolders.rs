//! Virtual folders: rows of `vfolders` owned by users or groups (projects), who may use them
//! (`vfolder_permissions`) and the invitations to share them (`vfolder_invitations`).
//!
//! # Who sees a folder
//!
//! [`resolve_vfolder`] answers "the folder named X as seen by user U" and [`accessible_vfolders`]
//! lists them all. U sees, each as a [`VFolderAccess`] with U's effective permission:
//!
//! 1. the folders U owns, with the folder's own permission;
//! 2. folders shared with U (a `vfolder_permissions` row: `share`, or an accepted invitation),
//!    with the permission of that row;
//! 3. the project folders of every project U belongs to (`association_groups_users`), with
//!    U's `vfolder_permissions` row when there is one (a per-user override), else the
//!    folder's own permission;
//! 4. for a superadmin, every other folder, with the folder's own permission.
//!
//! Names are unique among a user's own folders and among a project's folders, but a shared or
//! project folder may have the name of one of U's own folders, or of another shared or project
//! folder. A name then resolves in the order above — U's own folder wins, then folders shared
//! with U, then project folders, then (superadmins) anyone's — and within one kind the oldest
//! folder wins. The others stay listed and keep their names.
//!
//! The owner of a user folder manages it (rename, delete, share, invite). A project folder is
//! managed by the admins of the project's domain and by superadmins (there is no per-project
//! admin role in the schema); for them `is_owner` is true, as in the original. A superadmin
//! manages every folder.

use std::collections::{HashMap, HashSet};

use bai_core::MountPermission;
use chrono::Utc;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use uuid::Uuid;

use super::insert_new;
use crate::db::entities::{
    association_groups_users as membership, group, user, vfolder, vfolder_invitation, vfolder_permission,
};
use crate::db::types::{UserRole, UserStatus, VFolderInvitationState, Wire};
use crate::db::{DbError, Result};

/// Inserts a folder (defaults filled in); a duplicate id is [`DbError::Conflict`].
pub async fn create_vfolder(db: &impl ConnectionTrait, row: vfolder::ActiveModel) -> Result<vfolder::Model> {
    let what = format!("vfolder {}", super::shown(&row.name));
    insert_new(db, row, what).await
}

/// A folder by id.
pub async fn get_vfolder(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<vfolder::Model>> {
    Ok(vfolder::Entity::find_by_id(id).one(db).await?)
}

/// The folders a user owns, oldest first.
pub async fn list_user_vfolders(db: &impl ConnectionTrait, user: Uuid) -> Result<Vec<vfolder::Model>> {
    Ok(vfolder::Entity::find()
        .filter(vfolder::Column::User.eq(user))
        .order_by_asc(vfolder::Column::CreatedAt)
        .order_by_asc(vfolder::Column::Name)
        .all(db)
        .await?)
}

/// The folder named `name` among those `user` owns.
pub async fn find_user_vfolder(db: &impl ConnectionTrait, user: Uuid, name: &str) -> Result<Option<vfolder::Model>> {
    Ok(vfolder::Entity::find()
        .filter(vfolder::Column::User.eq(user))
        .filter(vfolder::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// Renames a folder.
pub async fn rename_vfolder(db: &impl ConnectionTrait, id: Uuid, new_name: &str) -> Result<vfolder::Model> {
    let row = get_vfolder(db, id).await?.ok_or_else(|| DbError::not_found("vfolder", id))?;
    let mut active: vfolder::ActiveModel = row.into();
    active.name = Set(new_name.to_string());
    active.update(db).await.map_err(|e| DbError::from_write(e, format!("vfolder {new_name}")))
}

/// Records how many files and bytes a folder holds.
pub async fn set_vfolder_usage(db: &impl ConnectionTrait, id: Uuid, num_files: i32, cur_size: i64) -> Result<()> {
    let row = get_vfolder(db, id).await?.ok_or_else(|| DbError::not_found("vfolder", id))?;
    let mut active: vfolder::ActiveModel = row.into();
    active.num_files = Set(num_files);
    active.cur_size = Set(cur_size);
    active.update(db).await?;
    Ok(())
}

/// Deletes a folder's row.
pub async fn delete_vfolder(db: &impl ConnectionTrait, id: Uuid) -> Result<()> {
    let result = vfolder::Entity::delete_by_id(id).exec(db).await?;
    if result.rows_affected == 0 {
        return Err(DbError::not_found("vfolder", id));
    }
    Ok(())
}

/// Who is looking at folders: a user with their role and domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The user's id.
    pub user: Uuid,
    /// The user's role.
    pub role: UserRole,
    /// The user's domain.
    pub domain: String,
}

/// How a [`Viewer`] reaches a folder, in the order names resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessVia {
    /// The viewer owns it (a user folder).
    Owner,
    /// It is shared with the viewer (a `vfolder_permissions` row).
    Shared,
    /// It belongs to a project the viewer is a member of.
    Project,
    /// The viewer is a superadmin and sees it for that reason alone.
    Superadmin,
}

/// A folder as one [`Viewer`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VFolderAccess {
    /// The folder's row.
    pub folder: vfolder::Model,
    /// What the viewer may do with its contents: `ro`, `rw` or `wd`.
    pub permission: MountPermission,
    /// Whether the viewer owns it: their own folder, or a project folder they administer.
    pub is_owner: bool,
    /// Whether the viewer may rename, delete and share it (owners and superadmins).
    pub can_manage: bool,
    /// How the viewer reaches it.
    pub via: AccessVia,
}

impl VFolderAccess {
    /// Whether the viewer may change the folder's contents (`rw` or `wd`).
    pub fn can_write(&self) -> bool {
        self.permission != MountPermission::ReadOnly
    }
}

/// What a viewer's access is built from.
struct AccessFacts {
    shares: HashMap<Uuid, MountPermission>,
    groups: HashSet<Uuid>,
    group_domains: HashMap<Uuid, String>,
}

impl AccessFacts {
    async fn load(db: &impl ConnectionTrait, viewer: &Viewer, folders: &[vfolder::Model]) -> Result<Self> {
        let ids: Vec<Uuid> = folders.iter().map(|f| f.id).collect();
        let mut shares = HashMap::new();
        for chunk in ids.chunks(500) {
            let rows = vfolder_permission::Entity::find()
                .filter(vfolder_permission::Column::User.eq(viewer.user))
                .filter(vfolder_permission::Column::Vfolder.is_in(chunk.iter().copied()))
                .all(db)
                .await?;
            shares.extend(rows.into_iter().map(|r| (r.vfolder, r.permission.0)));
        }
        let groups = membership::Entity::find()
            .filter(membership::Column::UserId.eq(viewer.user))
            .all(db)
            .await?
            .into_iter()
            .map(|m| m.group_id)
            .collect();
        let mut group_domains = HashMap::new();
        if viewer.role == UserRole::Admin {
            let wanted: HashSet<Uuid> = folders.iter().filter_map(|f| f.group).collect();
            if !wanted.is_empty() {
                let rows = group::Entity::find().filter(group::Column::Id.is_in(wanted)).all(db).await?;
                group_domains.extend(rows.into_iter().map(|g| (g.id, g.domain_name)));
            }
        }
        Ok(Self { shares, groups, group_domains })
    }

    /// `folder` as `viewer` sees it, or `None` when they may not see it.
    fn access(&self, viewer: &Viewer, folder: vfolder::Model) -> Option<VFolderAccess> {
        let superadmin = viewer.role == UserRole::Superadmin;
        let own = folder.permission.0;
        let share = self.shares.get(&folder.id).copied();
        let (via, permission, is_owner, can_manage) = if folder.user == Some(viewer.user) {
            (AccessVia::Owner, own, true, true)
        } else if let Some(g) = folder.group {
            let admin = superadmin
                || (viewer.role == UserRole::Admin && self.group_domains.get(&g).is_some_and(|d| *d == viewer.domain));
            let permission = if admin { own } else { share.unwrap_or(own) };
            if self.groups.contains(&g) {
                (AccessVia::Project, permission, admin, admin)
            } else if share.is_some() {
                (AccessVia::Shared, permission, admin, admin)
            } else if superadmin {
                (AccessVia::Superadmin, own, true, true)
            } else {
                return None;
            }
        } else if let Some(p) = share {
            (AccessVia::Shared, p, false, superadmin)
        } else if superadmin {
            (AccessVia::Superadmin, own, false, true)
        } else {
            return None;
        };
        Some(VFolderAccess { folder, permission, is_owner, can_manage, via })
    }
}

/// The folders `viewer` owns, is shared or reaches through a project (not the superadmin's
/// extra view).
fn reachable(viewer: &Viewer) -> Condition {
    Condition::any()
        .add(vfolder::Column::User.eq(viewer.user))
        .add(
            vfolder::Column::Id.in_subquery(
                Query::select()
                    .column(vfolder_permission::Column::Vfolder)
                    .from(vfolder_permission::Entity)
                    .and_where(vfolder_permission::Column::User.eq(viewer.user))
                    .to_owned(),
            ),
        )
        .add(
            vfolder::Column::Group.in_subquery(
                Query::select()
                    .column(membership::Column::GroupId)
                    .from(membership::Entity)
                    .and_where(membership::Column::UserId.eq(viewer.user))
                    .to_owned(),
            ),
        )
}

async fn accesses(db: &impl ConnectionTrait, viewer: &Viewer, condition: Condition) -> Result<Vec<VFolderAccess>> {
    let rows = vfolder::Entity::find()
        .filter(condition)
        .order_by_asc(vfolder::Column::CreatedAt)
        .order_by_asc(vfolder::Column::Name)
        .order_by_asc(vfolder::Column::Id)
        .all(db)
        .await?;
    let facts = AccessFacts::load(db, viewer, &rows).await?;
    Ok(rows.into_iter().filter_map(|row| facts.access(viewer, row)).collect())
}

/// Every folder `viewer` may use — their own, those shared with them and their projects'
/// folders, oldest first; with `everything`, a superadmin gets every folder instead.
pub async fn accessible_vfolders(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    everything: bool,
) -> Result<Vec<VFolderAccess>> {
    let condition =
        if everything && viewer.role == UserRole::Superadmin { Condition::all() } else { reachable(viewer) };
    accesses(db, viewer, condition).await
}

/// The folder named `name` as `viewer` sees it (see the module docs for the order in which a
/// name resolves), or `None` when they can see no folder of that name.
pub async fn resolve_vfolder(db: &impl ConnectionTrait, viewer: &Viewer, name: &str) -> Result<Option<VFolderAccess>> {
    let mut condition = Condition::all().add(vfolder::Column::Name.eq(name));
    if viewer.role != UserRole::Superadmin {
        condition = condition.add(reachable(viewer));
    }
    let found = accesses(db, viewer, condition).await?;
    // `accesses` answers oldest first and `min_by_key` keeps the first of equals.
    Ok(found.into_iter().min_by_key(|a| a.via))
}

/// The user folder named `name` that is shared with `user` (not one they own, nor a project
/// folder), oldest first; what `leave` acts on.
pub async fn find_shared_vfolder(db: &impl ConnectionTrait, user: Uuid, name: &str) -> Result<Option<vfolder::Model>> {
    Ok(vfolder::Entity::find()
        .filter(vfolder::Column::Name.eq(name))
        .filter(
            vfolder::Column::Id.in_subquery(
                Query::select()
                    .column(vfolder_permission::Column::Vfolder)
                    .from(vfolder_permission::Entity)
                    .and_where(vfolder_permission::Column::User.eq(user))
                    .to_owned(),
            ),
        )
        .filter(vfolder::Column::Group.is_null())
        .order_by_asc(vfolder::Column::CreatedAt)
        .order_by_asc(vfolder::Column::Id)
        .one(db)
        .await?)
}

/// The folder named `name` among the project `group`'s folders.
pub async fn find_group_vfolder(db: &impl ConnectionTrait, group: Uuid, name: &str) -> Result<Option<vfolder::Model>> {
    Ok(vfolder::Entity::find()
        .filter(vfolder::Column::Group.eq(group))
        .filter(vfolder::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// The active (not deleted) users with these e-mail addresses, by address; addresses of no
/// such user are missing from the answer.
pub async fn active_users_by_email(
    db: &impl ConnectionTrait,
    emails: &[String],
) -> Result<HashMap<String, user::Model>> {
    let mut out = HashMap::new();
    for chunk in emails.chunks(500) {
        let rows = user::Entity::find()
            .filter(user::Column::Email.is_in(chunk.iter().cloned()))
            .filter(user::Column::Status.ne(Wire(UserStatus::Deleted)))
            .all(db)
            .await?;
        out.extend(rows.into_iter().map(|u| (u.email.clone(), u)));
    }
    Ok(out)
}

/// Who a folder is shared with (its `vfolder_permissions` rows), by user id.
pub async fn vfolder_shares(db: &impl ConnectionTrait, folder: Uuid) -> Result<Vec<vfolder_permission::Model>> {
    Ok(vfolder_permission::Entity::find()
        .filter(vfolder_permission::Column::Vfolder.eq(folder))
        .order_by_asc(vfolder_permission::Column::User)
        .all(db)
        .await?)
}

/// Gives each user in `grants` their permission on `folder`, replacing an earlier one, in one
/// transaction.
pub async fn share_vfolder<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    folder: Uuid,
    grants: &[(Uuid, MountPermission)],
) -> Result<()> {
    let txn = db.begin().await?;
    for (user, permission) in grants {
        upsert_share(&txn, folder, *user, *permission).await?;
    }
    txn.commit().await?;
    Ok(())
}

async fn upsert_share(db: &impl ConnectionTrait, folder: Uuid, user: Uuid, permission: MountPermission) -> Result<()> {
    let row =
        vfolder_permission::ActiveModel { vfolder: Set(folder), user: Set(user), permission: Set(Wire(permission)) };
    vfolder_permission::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([vfolder_permission::Column::Vfolder, vfolder_permission::Column::User])
                .update_column(vfolder_permission::Column::Permission)
                .to_owned(),
        )
        .exec(db)
        .await
        .map_err(|e| DbError::from_write(e, format!("the share of vfolder {folder} with user {user}")))?;
    Ok(())
}

/// Takes `folder` away from `users`; answers those who had it.
pub async fn unshare_vfolder<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    folder: Uuid,
    users: &[Uuid],
) -> Result<Vec<Uuid>> {
    let txn = db.begin().await?;
    let mut removed = Vec::new();
    for user in users {
        let result = vfolder_permission::Entity::delete_by_id((folder, *user)).exec(&txn).await?;
        if result.rows_affected > 0 {
            removed.push(*user);
        }
    }
    txn.commit().await?;
    Ok(removed)
}

/// The invitation with this id.
pub async fn get_vfolder_invitation(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<vfolder_invitation::Model>> {
    Ok(vfolder_invitation::Entity::find_by_id(id).one(db).await?)
}

/// The pending invitations to `folder`, oldest first.
pub async fn pending_invitations_to(db: &impl ConnectionTrait, folder: Uuid) -> Result<Vec<vfolder_invitation::Model>> {
    Ok(vfolder_invitation::Entity::find()
        .filter(vfolder_invitation::Column::Vfolder.eq(folder))
        .filter(vfolder_invitation::Column::State.eq(Wire(VFolderInvitationState::Pending)))
        .order_by_asc(vfolder_invitation::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Sends one pending invitation to `folder` per invitee, in one transaction; answers them in
/// the order given.
pub async fn create_vfolder_invitations<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    folder: Uuid,
    inviter: &str,
    invitees: &[String],
    permission: MountPermission,
) -> Result<Vec<vfolder_invitation::Model>> {
    let txn = db.begin().await?;
    let mut out = Vec::new();
    for invitee in invitees {
        let row = vfolder_invitation::ActiveModel {
            vfolder: Set(folder),
            inviter: Set(inviter.to_string()),
            invitee: Set(invitee.clone()),
            permission: Set(Wire(permission)),
            state: Set(Wire(VFolderInvitationState::Pending)),
            ..Default::default()
        };
        out.push(insert_new(&txn, row, format!("the invitation of {invitee} to vfolder {folder}")).await?);
    }
    txn.commit().await?;
    Ok(out)
}

/// The pending invitations sent to `invitee` (an e-mail address) with their folders, oldest
/// first.
pub async fn pending_invitations_for(
    db: &impl ConnectionTrait,
    invitee: &str,
) -> Result<Vec<(vfolder_invitation::Model, vfolder::Model)>> {
    let invitations = vfolder_invitation::Entity::find()
        .filter(vfolder_invitation::Column::Invitee.eq(invitee))
        .filter(vfolder_invitation::Column::State.eq(Wire(VFolderInvitationState::Pending)))
        .order_by_asc(vfolder_invitation::Column::CreatedAt)
        .order_by_asc(vfolder_invitation::Column::Id)
        .all(db)
        .await?;
    let ids: HashSet<Uuid> = invitations.iter().map(|i| i.vfolder).collect();
    let folders: HashMap<Uuid, vfolder::Model> = if ids.is_empty() {
        HashMap::new()
    } else {
        vfolder::Entity::find()
            .filter(vfolder::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|f| (f.id, f))
            .collect()
    };
    Ok(invitations.into_iter().filter_map(|i| folders.get(&i.vfolder).cloned().map(|f| (i, f))).collect())
}

/// Moves a pending invitation to `state` (`accepted`, `rejected` or `canceled`); accepting
/// also gives `invitee` the invitation's permission on the folder. One transaction; an
/// invitation that is no longer pending is [`DbError::Conflict`].
pub async fn close_vfolder_invitation<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: Uuid,
    state: VFolderInvitationState,
    invitee: Option<Uuid>,
) -> Result<vfolder_invitation::Model> {
    let txn = db.begin().await?;
    let row = get_vfolder_invitation(&txn, id).await?.ok_or_else(|| DbError::not_found("invitation", id))?;
    if row.state.0 != VFolderInvitationState::Pending {
        return Err(DbError::conflict(format!("the invitation {id} is already {}", row.state.0)));
    }
    let (folder, permission) = (row.vfolder, row.permission.0);
    let mut active: vfolder_invitation::ActiveModel = row.into();
    active.state = Set(Wire(state));
    active.modified_at = Set(Some(Utc::now()));
    let row = active.update(&txn).await?;
    if state == VFolderInvitationState::Accepted {
        let user = invitee.ok_or_else(|| DbError::invalid("invitee", "accepting needs the invitee's user id"))?;
        upsert_share(&txn, folder, user, permission).await?;
    }
    txn.commit().await?;
    Ok(row)
}
