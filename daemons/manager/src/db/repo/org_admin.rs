//! The administrator's changes to domains, groups, users, scaling groups and keypair resource
//! policies beyond creating them: modify, soft delete (deactivate), purge (hard delete), and
//! taking scaling-group associations away. Each function is one transaction, all or nothing.
//!
//! A purge refuses ([`DbError::Conflict`]) while the object is in use: a domain with users,
//! groups or live sessions; a group or user with live sessions, or whose folders a live
//! session mounts; a scaling group with agents or live sessions; a keypair resource policy
//! with keypairs. A "live" session is any not TERMINATED or CANCELLED. What a purge removes
//! goes with it: the ended sessions and kernels that refer to it, its association rows
//! (`sgroups_for_*`, `association_groups_users`), its folders and their shares and
//! invitations. Folder directories are not touched here: the purges answer the folders they
//! deleted, for the caller to remove from the storage host.

use std::collections::HashSet;

use bai_core::SessionStatus;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use crate::db::entities::{
    agent, association_groups_users as membership, domain, group, kernel, keypair, keypair_resource_policy,
    resource_preset, scaling_group, session, sgroups_for_domains, sgroups_for_groups, sgroups_for_keypairs, user,
    vfolder, vfolder_invitation, vfolder_permission,
};
use crate::db::types::{DefaultForUnspecified, JsonOf, Wire};
use crate::db::{DbError, Result};

/// The condition "the session is live" (not TERMINATED or CANCELLED).
fn session_is_live() -> Condition {
    Condition::all()
        .add(session::Column::Status.is_not_in([Wire(SessionStatus::Terminated), Wire(SessionStatus::Cancelled)]))
}

/// How many live sessions match `condition`.
async fn live_sessions(db: &impl ConnectionTrait, condition: Condition) -> Result<u64> {
    Ok(session::Entity::find().filter(session_is_live()).filter(condition).count(db).await?)
}

/// The live sessions that mount any of `folders` (by their `vfolder_mounts`), by name.
async fn sessions_mounting(db: &impl ConnectionTrait, folders: &HashSet<Uuid>) -> Result<Vec<String>> {
    if folders.is_empty() {
        return Ok(Vec::new());
    }
    let live = session::Entity::find()
        .filter(session_is_live())
        .filter(session::Column::VfolderMounts.is_not_null())
        .all(db)
        .await?;
    let mut names: Vec<String> = live
        .into_iter()
        .filter(|s| {
            let Some(serde_json::Value::Array(mounts)) = &s.vfolder_mounts else { return false };
            mounts.iter().any(|m| {
                m.get("id")
                    .and_then(|id| id.as_str())
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .is_some_and(|id| folders.contains(&id))
            })
        })
        .map(|s| s.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Deletes the ended sessions and kernels matching these column conditions (live ones must
/// have been refused before).
async fn delete_ended_sessions(db: &impl ConnectionTrait, sessions: Condition, kernels: Condition) -> Result<()> {
    kernel::Entity::delete_many().filter(kernels).exec(db).await?;
    session::Entity::delete_many().filter(sessions).exec(db).await?;
    Ok(())
}

/// Deletes folders and their shares and invitations; answers the deleted rows.
async fn delete_folders(db: &impl ConnectionTrait, folders: Vec<vfolder::Model>) -> Result<Vec<vfolder::Model>> {
    let ids: Vec<Uuid> = folders.iter().map(|f| f.id).collect();
    for chunk in ids.chunks(500) {
        vfolder_invitation::Entity::delete_many()
            .filter(vfolder_invitation::Column::Vfolder.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
        vfolder_permission::Entity::delete_many()
            .filter(vfolder_permission::Column::Vfolder.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
        vfolder::Entity::delete_many().filter(vfolder::Column::Id.is_in(chunk.iter().copied())).exec(db).await?;
    }
    Ok(folders)
}

/// "1 user" / "2 users".
fn count_of(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

// ---------------------------------------------------------------------------------------------
// Domains

/// Changes to a domain: `None` leaves a column as it is; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct DomainChanges {
    /// A new name (the primary key; groups, users, sessions and associations follow it).
    pub name: Option<String>,
    /// Free text.
    pub description: Option<Option<String>>,
    /// Whether the domain may be used.
    pub is_active: Option<bool>,
    /// The domain's resource limit.
    pub total_resource_slots: Option<bai_core::ResourceSlot>,
    /// Storage hosts and permissions.
    pub allowed_vfolder_hosts: Option<serde_json::Value>,
    /// Registries the domain may pull from.
    pub allowed_docker_registries: Option<Vec<String>>,
    /// An identifier in an external system.
    pub integration_id: Option<Option<String>>,
}

/// Applies `changes` to the domain `name`, in one transaction. Answers the new row and, when
/// the domain was renamed, the access keys of its users' keypairs (their cached credentials
/// name the old domain). An unknown domain is [`DbError::Invalid`] on `name`; a new name
/// already taken is [`DbError::Conflict`].
pub async fn modify_domain<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    name: &str,
    changes: &DomainChanges,
) -> Result<(domain::Model, Vec<String>)> {
    let txn = db.begin().await?;
    if domain::Entity::find_by_id(name).one(&txn).await?.is_none() {
        return Err(DbError::invalid("name", format!("there is no domain {name:?}")));
    }
    let mut stale = Vec::new();
    let mut current = name.to_string();
    if let Some(new_name) = changes.name.as_deref().filter(|n| *n != name) {
        if domain::Entity::find_by_id(new_name).one(&txn).await?.is_some() {
            return Err(DbError::conflict(format!("domain {new_name} already exists")));
        }
        stale = keypair::Entity::find()
            .filter(super::keypair_in_domain(name))
            .all(&txn)
            .await?
            .into_iter()
            .map(|k| k.access_key)
            .collect();
        // The key changes: every reference follows through ON UPDATE CASCADE.
        domain::Entity::update_many()
            .col_expr(domain::Column::Name, Expr::value(new_name))
            .filter(domain::Column::Name.eq(name))
            .exec(&txn)
            .await
            .map_err(|e| DbError::from_write(e, format!("domain {new_name}")))?;
        current = new_name.to_string();
    }
    let row = domain::Entity::find_by_id(current.as_str())
        .one(&txn)
        .await?
        .ok_or_else(|| DbError::not_found("domain", &current))?;
    let mut update: domain::ActiveModel = row.into();
    if let Some(v) = &changes.description {
        update.description = Set(v.clone());
    }
    if let Some(v) = changes.is_active {
        update.is_active = Set(v);
    }
    if let Some(v) = &changes.total_resource_slots {
        update.total_resource_slots = Set(JsonOf(v.clone()));
    }
    if let Some(v) = &changes.allowed_vfolder_hosts {
        update.allowed_vfolder_hosts = Set(v.clone());
    }
    if let Some(v) = &changes.allowed_docker_registries {
        update.allowed_docker_registries = Set(JsonOf(v.clone()));
    }
    if let Some(v) = &changes.integration_id {
        update.integration_id = Set(v.clone());
    }
    update.modified_at = Set(Utc::now());
    let updated = update.update(&txn).await?;
    txn.commit().await?;
    Ok((updated, stale))
}

/// Deactivates the domain `name` (the original's soft delete); an unknown domain is
/// [`DbError::Invalid`] on `name`.
pub async fn soft_delete_domain(db: &impl ConnectionTrait, name: &str) -> Result<domain::Model> {
    let row = domain::Entity::find_by_id(name)
        .one(db)
        .await?
        .ok_or_else(|| DbError::invalid("name", format!("there is no domain {name:?}")))?;
    let mut update: domain::ActiveModel = row.into();
    update.is_active = Set(false);
    update.modified_at = Set(Utc::now());
    Ok(update.update(db).await?)
}

/// Deletes the domain `name` with its ended sessions and its scaling-group associations.
/// Refused with [`DbError::Conflict`] while it has users (any status), groups or live
/// sessions; an unknown domain is [`DbError::Invalid`] on `name`.
pub async fn purge_domain<C: ConnectionTrait + TransactionTrait>(db: &C, name: &str) -> Result<()> {
    let txn = db.begin().await?;
    if domain::Entity::find_by_id(name).one(&txn).await?.is_none() {
        return Err(DbError::invalid("name", format!("there is no domain {name:?}")));
    }
    let live = live_sessions(&txn, Condition::all().add(session::Column::DomainName.eq(name))).await?;
    if live > 0 {
        return Err(DbError::conflict(format!(
            "domain {name} has {}; terminate them first",
            count_of(live, "live session")
        )));
    }
    let users = user::Entity::find().filter(user::Column::DomainName.eq(name)).count(&txn).await?;
    if users > 0 {
        return Err(DbError::conflict(format!(
            "domain {name} still has {}; purge them first",
            count_of(users, "user")
        )));
    }
    let groups = group::Entity::find().filter(group::Column::DomainName.eq(name)).count(&txn).await?;
    if groups > 0 {
        return Err(DbError::conflict(format!(
            "domain {name} still has {}; purge them first",
            count_of(groups, "group")
        )));
    }
    delete_ended_sessions(
        &txn,
        Condition::all().add(session::Column::DomainName.eq(name)),
        Condition::all().add(kernel::Column::DomainName.eq(name)),
    )
    .await?;
    sgroups_for_domains::Entity::delete_many().filter(sgroups_for_domains::Column::Domain.eq(name)).exec(&txn).await?;
    domain::Entity::delete_by_id(name).exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Groups

/// Deactivates a group (the original's soft delete: `is_active` false, `integration_id`
/// cleared); an unknown group is [`DbError::Invalid`] on `gid`.
pub async fn soft_delete_group(db: &impl ConnectionTrait, id: Uuid) -> Result<group::Model> {
    let row = group::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| DbError::invalid("gid", format!("there is no group {id}")))?;
    let mut update: group::ActiveModel = row.into();
    update.is_active = Set(false);
    update.integration_id = Set(None);
    update.modified_at = Set(Utc::now());
    Ok(update.update(db).await?)
}

/// Deletes a group with its folders (and their shares and invitations), its ended sessions,
/// its memberships and its scaling-group associations; answers the deleted folders (their
/// directories are the caller's to remove). Refused with [`DbError::Conflict`] while the
/// group has live sessions or a live session mounts one of its folders; an unknown group is
/// [`DbError::Invalid`] on `gid`.
pub async fn purge_group<C: ConnectionTrait + TransactionTrait>(db: &C, id: Uuid) -> Result<Vec<vfolder::Model>> {
    let txn = db.begin().await?;
    let row = group::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| DbError::invalid("gid", format!("there is no group {id}")))?;
    let live = live_sessions(&txn, Condition::all().add(session::Column::GroupId.eq(id))).await?;
    if live > 0 {
        return Err(DbError::conflict(format!(
            "group {} has {}; terminate them first",
            row.name,
            count_of(live, "live session")
        )));
    }
    let folders = vfolder::Entity::find().filter(vfolder::Column::Group.eq(id)).all(&txn).await?;
    let mounting = sessions_mounting(&txn, &folders.iter().map(|f| f.id).collect()).await?;
    if !mounting.is_empty() {
        return Err(DbError::conflict(format!(
            "folders of group {} are mounted by live sessions ({}); terminate them first",
            row.name,
            mounting.join(", ")
        )));
    }
    let deleted = delete_folders(&txn, folders).await?;
    delete_ended_sessions(
        &txn,
        Condition::all().add(session::Column::GroupId.eq(id)),
        Condition::all().add(kernel::Column::GroupId.eq(id)),
    )
    .await?;
    membership::Entity::delete_many().filter(membership::Column::GroupId.eq(id)).exec(&txn).await?;
    sgroups_for_groups::Entity::delete_many().filter(sgroups_for_groups::Column::Group.eq(id)).exec(&txn).await?;
    group::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    Ok(deleted)
}

// ---------------------------------------------------------------------------------------------
// Users

/// What [`purge_user`] removed.
#[derive(Debug, Clone, Default)]
pub struct PurgedUser {
    /// The access keys of the user's keypairs (their cached credentials are now stale).
    pub access_keys: Vec<String>,
    /// The user's folders that were deleted (their directories are the caller's to remove).
    pub deleted_folders: Vec<vfolder::Model>,
    /// The shared folders given to the heir, with their names there.
    pub transferred_folders: Vec<(Uuid, String)>,
}

/// Deletes the user with this e-mail address, its keypairs, memberships, ended sessions and
/// folders, in one transaction. Folders shared with others go to `heir` (the requesting
/// administrator: `(id, email)`) unless `purge_shared` — renamed with a suffix when the heir
/// already has a folder of that name — and the heir's own share of or invitation to them is
/// dropped. Refused with [`DbError::Conflict`] while the user has live sessions or a live
/// session mounts a folder that would be deleted; an unknown user is [`DbError::Invalid`] on
/// `email`.
pub async fn purge_user<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    email: &str,
    heir: (Uuid, &str),
    purge_shared: bool,
) -> Result<PurgedUser> {
    let txn = db.begin().await?;
    let row = super::find_user_by_email(&txn, email)
        .await?
        .ok_or_else(|| DbError::invalid("email", format!("there is no user {email:?}")))?;
    if row.uuid == heir.0 {
        return Err(DbError::invalid("email", "a user cannot purge themselves"));
    }
    let live = live_sessions(&txn, Condition::all().add(session::Column::UserUuid.eq(row.uuid))).await?;
    if live > 0 {
        return Err(DbError::conflict(format!(
            "user {email} has {}; terminate them first",
            count_of(live, "live session")
        )));
    }
    let owned = super::list_user_vfolders(&txn, row.uuid).await?;
    let shared: HashSet<Uuid> = if purge_shared || owned.is_empty() {
        HashSet::new()
    } else {
        vfolder_permission::Entity::find()
            .filter(vfolder_permission::Column::Vfolder.is_in(owned.iter().map(|f| f.id)))
            .filter(vfolder_permission::Column::User.ne(heir.0))
            .all(&txn)
            .await?
            .into_iter()
            .map(|p| p.vfolder)
            .collect()
    };
    let (transfer, delete): (Vec<_>, Vec<_>) = owned.into_iter().partition(|f| shared.contains(&f.id));
    let mounting = sessions_mounting(&txn, &delete.iter().map(|f| f.id).collect()).await?;
    if !mounting.is_empty() {
        return Err(DbError::conflict(format!(
            "folders of {email} are mounted by live sessions ({}); terminate them first",
            mounting.join(", ")
        )));
    }
    let mut purged = PurgedUser::default();
    if !transfer.is_empty() {
        let taken: HashSet<String> =
            super::list_user_vfolders(&txn, heir.0).await?.into_iter().map(|f| f.name).collect();
        let ids: Vec<Uuid> = transfer.iter().map(|f| f.id).collect();
        vfolder_permission::Entity::delete_many()
            .filter(vfolder_permission::Column::Vfolder.is_in(ids.iter().copied()))
            .filter(vfolder_permission::Column::User.eq(heir.0))
            .exec(&txn)
            .await?;
        vfolder_invitation::Entity::delete_many()
            .filter(vfolder_invitation::Column::Vfolder.is_in(ids.iter().copied()))
            .filter(vfolder_invitation::Column::Invitee.eq(heir.1))
            .exec(&txn)
            .await?;
        for folder in transfer {
            let mut name = folder.name.clone();
            if taken.contains(&name) {
                name = format!("{name}-{}", &Uuid::new_v4().simple().to_string()[..10]);
            }
            let mut update: vfolder::ActiveModel = folder.into();
            update.user = Set(Some(heir.0));
            update.name = Set(name.clone());
            let moved = update.update(&txn).await.map_err(|e| DbError::from_write(e, format!("vfolder {name}")))?;
            purged.transferred_folders.push((moved.id, moved.name));
        }
    }
    purged.deleted_folders = delete_folders(&txn, delete).await?;
    // Shares with the user and invitations from or to the user, of folders that stay.
    vfolder_permission::Entity::delete_many().filter(vfolder_permission::Column::User.eq(row.uuid)).exec(&txn).await?;
    vfolder_invitation::Entity::delete_many()
        .filter(
            Condition::any()
                .add(vfolder_invitation::Column::Invitee.eq(email))
                .add(vfolder_invitation::Column::Inviter.eq(email)),
        )
        .exec(&txn)
        .await?;
    delete_ended_sessions(
        &txn,
        Condition::all().add(session::Column::UserUuid.eq(row.uuid)),
        Condition::all().add(kernel::Column::UserUuid.eq(row.uuid)),
    )
    .await?;
    let keypairs = super::list_keypairs(&txn, Some(row.uuid)).await?;
    purged.access_keys = keypairs.into_iter().map(|k| k.access_key).collect();
    for chunk in purged.access_keys.chunks(500) {
        sgroups_for_keypairs::Entity::delete_many()
            .filter(sgroups_for_keypairs::Column::AccessKey.is_in(chunk.iter().cloned()))
            .exec(&txn)
            .await?;
    }
    user::Entity::update_many()
        .col_expr(user::Column::MainAccessKey, Expr::value(Option::<String>::None))
        .filter(user::Column::Uuid.eq(row.uuid))
        .exec(&txn)
        .await?;
    keypair::Entity::delete_many().filter(keypair::Column::User.eq(row.uuid)).exec(&txn).await?;
    membership::Entity::delete_many().filter(membership::Column::UserId.eq(row.uuid)).exec(&txn).await?;
    user::Entity::delete_by_id(row.uuid).exec(&txn).await?;
    txn.commit().await?;
    Ok(purged)
}

// ---------------------------------------------------------------------------------------------
// Scaling groups

/// Changes to a scaling group: `None` leaves a column as it is; `Some(None)` clears a
/// nullable one. Values must already be valid (the GraphQL layer checks them).
#[derive(Debug, Clone, Default)]
pub struct ScalingGroupChanges {
    /// Free text.
    pub description: Option<Option<String>>,
    /// Whether sessions may be scheduled into it.
    pub is_active: Option<bool>,
    /// Whether every user of an associated domain or group may see it.
    pub is_public: Option<bool>,
    /// How agents join.
    pub driver: Option<String>,
    /// Driver options (an object).
    pub driver_opts: Option<serde_json::Value>,
    /// The queue policy.
    pub scheduler: Option<String>,
    /// Scheduler options (an object).
    pub scheduler_opts: Option<serde_json::Value>,
    /// Whether kernels use the host's network.
    pub use_host_network: Option<bool>,
    /// The app proxy's address.
    pub wsproxy_addr: Option<Option<String>>,
    /// The app proxy's API token.
    pub wsproxy_api_token: Option<Option<String>>,
}

fn no_scaling_group(field: &str, name: &str) -> DbError {
    DbError::invalid(field, format!("there is no scaling group {name:?}"))
}

/// Applies `changes` to the scaling group `name`; an unknown one is [`DbError::Invalid`] on
/// `name`.
pub async fn modify_scaling_group(
    db: &impl ConnectionTrait,
    name: &str,
    changes: &ScalingGroupChanges,
) -> Result<scaling_group::Model> {
    let row = scaling_group::Entity::find_by_id(name).one(db).await?.ok_or_else(|| no_scaling_group("name", name))?;
    let mut update: scaling_group::ActiveModel = row.into();
    if let Some(v) = &changes.description {
        update.description = Set(v.clone());
    }
    if let Some(v) = changes.is_active {
        update.is_active = Set(v);
    }
    if let Some(v) = changes.is_public {
        update.is_public = Set(v);
    }
    if let Some(v) = &changes.driver {
        update.driver = Set(v.clone());
    }
    if let Some(v) = &changes.driver_opts {
        update.driver_opts = Set(v.clone());
    }
    if let Some(v) = &changes.scheduler {
        update.scheduler = Set(v.clone());
    }
    if let Some(v) = &changes.scheduler_opts {
        update.scheduler_opts = Set(v.clone());
    }
    if let Some(v) = changes.use_host_network {
        update.use_host_network = Set(v);
    }
    if let Some(v) = &changes.wsproxy_addr {
        update.wsproxy_addr = Set(v.clone());
    }
    if let Some(v) = &changes.wsproxy_api_token {
        update.wsproxy_api_token = Set(v.clone());
    }
    Ok(update.update(db).await?)
}

/// Deletes the scaling group `name` with its associations and resource presets; ended
/// sessions that ran in it keep their rows without it. Refused with [`DbError::Conflict`]
/// while agents (of any status) belong to it or live sessions run in it; an unknown one is
/// [`DbError::Invalid`] on `name`.
pub async fn delete_scaling_group<C: ConnectionTrait + TransactionTrait>(db: &C, name: &str) -> Result<()> {
    let txn = db.begin().await?;
    if scaling_group::Entity::find_by_id(name).one(&txn).await?.is_none() {
        return Err(no_scaling_group("name", name));
    }
    let agents: Vec<String> = agent::Entity::find()
        .select_only()
        .column(agent::Column::Id)
        .filter(agent::Column::ScalingGroup.eq(name))
        .into_tuple()
        .all(&txn)
        .await?;
    if !agents.is_empty() {
        return Err(DbError::conflict(format!(
            "scaling group {name} still has {} ({}); move them to another scaling group first",
            count_of(agents.len() as u64, "agent"),
            agents.join(", ")
        )));
    }
    let live = live_sessions(&txn, Condition::all().add(session::Column::ScalingGroupName.eq(name))).await?;
    if live > 0 {
        return Err(DbError::conflict(format!(
            "scaling group {name} has {}; terminate them first",
            count_of(live, "live session")
        )));
    }
    session::Entity::update_many()
        .col_expr(session::Column::ScalingGroupName, Expr::value(Option::<String>::None))
        .filter(session::Column::ScalingGroupName.eq(name))
        .exec(&txn)
        .await?;
    kernel::Entity::update_many()
        .col_expr(kernel::Column::ScalingGroup, Expr::value(Option::<String>::None))
        .filter(kernel::Column::ScalingGroup.eq(name))
        .exec(&txn)
        .await?;
    sgroups_for_domains::Entity::delete_many()
        .filter(sgroups_for_domains::Column::ScalingGroup.eq(name))
        .exec(&txn)
        .await?;
    sgroups_for_groups::Entity::delete_many()
        .filter(sgroups_for_groups::Column::ScalingGroup.eq(name))
        .exec(&txn)
        .await?;
    sgroups_for_keypairs::Entity::delete_many()
        .filter(sgroups_for_keypairs::Column::ScalingGroup.eq(name))
        .exec(&txn)
        .await?;
    resource_preset::Entity::delete_many()
        .filter(resource_preset::Column::ScalingGroupName.eq(name))
        .exec(&txn)
        .await?;
    scaling_group::Entity::delete_by_id(name).exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Takes the scaling group `scaling_group` away from the domain `domain`. An unknown scaling
/// group or domain is [`DbError::Invalid`] naming the argument; a pair not associated is
/// [`DbError::Conflict`].
pub async fn disassociate_scaling_group_with_domain(
    db: &impl ConnectionTrait,
    scaling_group: &str,
    domain: &str,
) -> Result<()> {
    if super::get_scaling_group(db, scaling_group).await?.is_none() {
        return Err(no_scaling_group("scaling_group", scaling_group));
    }
    if super::get_domain(db, domain).await?.is_none() {
        return Err(DbError::invalid("domain", format!("there is no domain {domain:?}")));
    }
    let result =
        sgroups_for_domains::Entity::delete_by_id((scaling_group.to_string(), domain.to_string())).exec(db).await?;
    if result.rows_affected == 0 {
        return Err(DbError::conflict(format!("scaling group {scaling_group} is not associated with domain {domain}")));
    }
    Ok(())
}

/// Takes every scaling group away from the domain `domain`; answers how many associations
/// there were. An unknown domain is [`DbError::Invalid`] on `domain`.
pub async fn disassociate_all_scaling_groups_with_domain(db: &impl ConnectionTrait, domain: &str) -> Result<u64> {
    if super::get_domain(db, domain).await?.is_none() {
        return Err(DbError::invalid("domain", format!("there is no domain {domain:?}")));
    }
    let result = sgroups_for_domains::Entity::delete_many()
        .filter(sgroups_for_domains::Column::Domain.eq(domain))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Checks that the scaling group and the group exist (errors name `user_group`).
async fn require_sgroup_and_group(db: &impl ConnectionTrait, scaling_group: &str, group: Uuid) -> Result<()> {
    if super::get_scaling_group(db, scaling_group).await?.is_none() {
        return Err(no_scaling_group("scaling_group", scaling_group));
    }
    if super::get_group(db, group).await?.is_none() {
        return Err(DbError::invalid("user_group", format!("there is no group {group}")));
    }
    Ok(())
}

/// Lets the group `group` use the scaling group `scaling_group`, after checking both exist
/// (errors name `scaling_group` and `user_group`); an existing association is
/// [`DbError::Conflict`].
pub async fn associate_scaling_group_with_user_group(
    db: &impl ConnectionTrait,
    scaling_group: &str,
    group: Uuid,
) -> Result<()> {
    require_sgroup_and_group(db, scaling_group, group).await?;
    super::associate_scaling_group_with_group(db, scaling_group, group).await
}

/// Takes the scaling group away from the group `group`; errors as
/// [`associate_scaling_group_with_user_group`], a pair not associated is
/// [`DbError::Conflict`].
pub async fn disassociate_scaling_group_with_user_group(
    db: &impl ConnectionTrait,
    scaling_group: &str,
    group: Uuid,
) -> Result<()> {
    require_sgroup_and_group(db, scaling_group, group).await?;
    let result = sgroups_for_groups::Entity::delete_by_id((scaling_group.to_string(), group)).exec(db).await?;
    if result.rows_affected == 0 {
        return Err(DbError::conflict(format!("scaling group {scaling_group} is not associated with group {group}")));
    }
    Ok(())
}

/// Takes every scaling group away from the group `group`; answers how many associations
/// there were. An unknown group is [`DbError::Invalid`] on `user_group`.
pub async fn disassociate_all_scaling_groups_with_group(db: &impl ConnectionTrait, group: Uuid) -> Result<u64> {
    if super::get_group(db, group).await?.is_none() {
        return Err(DbError::invalid("user_group", format!("there is no group {group}")));
    }
    let result =
        sgroups_for_groups::Entity::delete_many().filter(sgroups_for_groups::Column::Group.eq(group)).exec(db).await?;
    Ok(result.rows_affected)
}

async fn require_sgroup_and_keypair(db: &impl ConnectionTrait, scaling_group: &str, access_key: &str) -> Result<()> {
    if super::get_scaling_group(db, scaling_group).await?.is_none() {
        return Err(no_scaling_group("scaling_group", scaling_group));
    }
    if super::get_keypair(db, access_key).await?.is_none() {
        return Err(DbError::invalid("access_key", format!("there is no keypair {access_key:?}")));
    }
    Ok(())
}

/// Lets the keypair `access_key` use the scaling group, after checking both exist (errors
/// name `scaling_group` and `access_key`); an existing association is [`DbError::Conflict`].
pub async fn associate_scaling_group_with_keypair_checked(
    db: &impl ConnectionTrait,
    scaling_group: &str,
    access_key: &str,
) -> Result<()> {
    require_sgroup_and_keypair(db, scaling_group, access_key).await?;
    super::associate_scaling_group_with_keypair(db, scaling_group, access_key).await
}

/// Takes the scaling group away from the keypair; errors as
/// [`associate_scaling_group_with_keypair_checked`], a pair not associated is
/// [`DbError::Conflict`].
pub async fn disassociate_scaling_group_with_keypair(
    db: &impl ConnectionTrait,
    scaling_group: &str,
    access_key: &str,
) -> Result<()> {
    require_sgroup_and_keypair(db, scaling_group, access_key).await?;
    let result = sgroups_for_keypairs::Entity::delete_by_id((scaling_group.to_string(), access_key.to_string()))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(DbError::conflict(format!(
            "scaling group {scaling_group} is not associated with keypair {access_key}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Keypair resource policies

/// Changes to a keypair resource policy: `None` leaves a column as it is. Values must already
/// be valid (the GraphQL layer checks them).
#[derive(Debug, Clone, Default)]
pub struct KeypairPolicyChanges {
    /// What unlisted slots mean.
    pub default_for_unspecified: Option<DefaultForUnspecified>,
    /// The most a keypair may occupy at once.
    pub total_resource_slots: Option<bai_core::ResourceSlot>,
    /// Seconds a session may live.
    pub max_session_lifetime: Option<i32>,
    /// Sessions a keypair may run at once.
    pub max_concurrent_sessions: Option<i32>,
    /// SFTP sessions a keypair may run at once.
    pub max_concurrent_sftp_sessions: Option<i32>,
    /// Kernels one session may have.
    pub max_containers_per_session: Option<i32>,
    /// Seconds of idleness before a session is terminated.
    pub idle_timeout: Option<i64>,
    /// Storage hosts and permissions.
    pub allowed_vfolder_hosts: Option<serde_json::Value>,
    /// Folders a keypair may create.
    pub max_vfolder_count: Option<i32>,
    /// Bytes per folder.
    pub max_vfolder_size: Option<i64>,
    /// Bytes per quota scope.
    pub max_quota_scope_size: Option<i64>,
}

fn no_policy(name: &str) -> DbError {
    DbError::invalid("name", format!("there is no keypair resource policy {name:?}"))
}

/// Applies `changes` to the keypair resource policy `name`; an unknown one is
/// [`DbError::Invalid`] on `name`.
pub async fn modify_keypair_resource_policy(
    db: &impl ConnectionTrait,
    name: &str,
    changes: &KeypairPolicyChanges,
) -> Result<keypair_resource_policy::Model> {
    let row = keypair_resource_policy::Entity::find_by_id(name).one(db).await?.ok_or_else(|| no_policy(name))?;
    let mut update: keypair_resource_policy::ActiveModel = row.into();
    if let Some(v) = changes.default_for_unspecified {
        update.default_for_unspecified = Set(Wire(v));
    }
    if let Some(v) = &changes.total_resource_slots {
        update.total_resource_slots = Set(JsonOf(v.clone()));
    }
    if let Some(v) = changes.max_session_lifetime {
        update.max_session_lifetime = Set(v);
    }
    if let Some(v) = changes.max_concurrent_sessions {
        update.max_concurrent_sessions = Set(v);
    }
    if let Some(v) = changes.max_concurrent_sftp_sessions {
        update.max_concurrent_sftp_sessions = Set(v);
    }
    if let Some(v) = changes.max_containers_per_session {
        update.max_containers_per_session = Set(v);
    }
    if let Some(v) = changes.idle_timeout {
        update.idle_timeout = Set(v);
    }
    if let Some(v) = &changes.allowed_vfolder_hosts {
        update.allowed_vfolder_hosts = Set(v.clone());
    }
    if let Some(v) = changes.max_vfolder_count {
        update.max_vfolder_count = Set(v);
    }
    if let Some(v) = changes.max_vfolder_size {
        update.max_vfolder_size = Set(v);
    }
    if let Some(v) = changes.max_quota_scope_size {
        update.max_quota_scope_size = Set(v);
    }
    Ok(update.update(db).await?)
}

/// Deletes the keypair resource policy `name`. Refused with [`DbError::Conflict`] while
/// keypairs use it, and for `default` (new users' keypairs get it); an unknown one is
/// [`DbError::Invalid`] on `name`.
pub async fn delete_keypair_resource_policy<C: ConnectionTrait + TransactionTrait>(db: &C, name: &str) -> Result<()> {
    let txn = db.begin().await?;
    if keypair_resource_policy::Entity::find_by_id(name).one(&txn).await?.is_none() {
        return Err(no_policy(name));
    }
    if name == "default" {
        return Err(DbError::conflict("keypair resource policy default is given to every new user's keypair"));
    }
    let users = keypair::Entity::find().filter(keypair::Column::ResourcePolicy.eq(name)).count(&txn).await?;
    if users > 0 {
        return Err(DbError::conflict(format!(
            "keypair resource policy {name} is used by {}; give them another policy first",
            count_of(users, "keypair")
        )));
    }
    keypair_resource_policy::Entity::delete_by_id(name).exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}
