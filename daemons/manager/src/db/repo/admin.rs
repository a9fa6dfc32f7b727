//! Administration: pages of agents, keypairs and users with exact totals, and the changes an
//! administrator makes to keypairs, users and groups (each all or nothing).
//!
//! Validation failures are [`DbError::Invalid`], [`DbError::NotFound`] or
//! [`DbError::Conflict`] naming the field or object, and change nothing.

use chrono::Utc;
use sea_orm::sea_query::{Order, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::{create_keypair, create_user, hash_password};
use crate::db::entities::{
    association_groups_users as membership, domain, group, keypair, keypair_resource_policy, user, user_resource_policy,
};
use crate::db::types::{StringList, UserRole, UserStatus, Wire};
use crate::db::{DbError, Result};

/// Which rows of a listing, in which order: `limit` rows from `offset`, sorted by `order`
/// (then by the primary key, so pages never overlap).
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Rows per page.
    pub limit: u64,
    /// Rows to skip.
    pub offset: u64,
    /// Sort keys, first first.
    pub order: Vec<(SimpleExpr, Order)>,
}

/// One page of `E`'s rows matching `condition`, and how many rows match in all.
async fn fetch_page<E: EntityTrait>(
    db: &impl ConnectionTrait,
    condition: Condition,
    page: &Page,
    default_order: &[(E::Column, Order)],
    tie_break: E::Column,
) -> Result<(Vec<E::Model>, u64)>
where
    E::Model: Sync,
{
    let total = E::find().filter(condition.clone()).count(db).await?;
    let mut query = E::find().filter(condition);
    if page.order.is_empty() {
        for (column, direction) in default_order {
            query = query.order_by(*column, direction.clone());
        }
    }
    for (expr, direction) in &page.order {
        query = query.order_by(expr.clone(), direction.clone());
    }
    let rows = query.order_by_asc(tie_break).limit(page.limit).offset(page.offset).all(db).await?;
    Ok((rows, total))
}

/// A page of agents matching `condition` (by id unless `page` orders otherwise).
pub async fn agent_page(
    db: &impl ConnectionTrait,
    condition: Condition,
    page: &Page,
) -> Result<(Vec<crate::db::entities::agent::Model>, u64)> {
    use crate::db::entities::agent;
    fetch_page::<agent::Entity>(db, condition, page, &[], agent::Column::Id).await
}

/// The condition "the keypair's owner is in this domain".
pub fn keypair_in_domain(domain_name: &str) -> SimpleExpr {
    keypair::Column::User.in_subquery(
        Query::select()
            .column(user::Column::Uuid)
            .from(user::Entity)
            .and_where(user::Column::DomainName.eq(domain_name))
            .to_owned(),
    )
}

/// A page of keypairs matching `condition` with their owners (newest first unless `page`
/// orders otherwise).
pub async fn keypair_page(
    db: &impl ConnectionTrait,
    condition: Condition,
    page: &Page,
) -> Result<(Vec<(keypair::Model, Option<user::Model>)>, u64)> {
    let (rows, total) = fetch_page::<keypair::Entity>(
        db,
        condition,
        page,
        &[(keypair::Column::CreatedAt, Order::Desc)],
        keypair::Column::AccessKey,
    )
    .await?;
    let owners = users_by_id(db, rows.iter().map(|k| k.user)).await?;
    Ok((rows.into_iter().map(|k| (k.clone(), owners.get(&k.user).cloned())).collect(), total))
}

/// The condition "the user is a member of this group".
pub fn user_in_group(group_id: Uuid) -> SimpleExpr {
    user::Column::Uuid.in_subquery(
        Query::select()
            .column(membership::Column::UserId)
            .from(membership::Entity)
            .and_where(membership::Column::GroupId.eq(group_id))
            .to_owned(),
    )
}

/// A page of users matching `condition` (newest first unless `page` orders otherwise).
pub async fn user_page(
    db: &impl ConnectionTrait,
    condition: Condition,
    page: &Page,
) -> Result<(Vec<user::Model>, u64)> {
    fetch_page::<user::Entity>(db, condition, page, &[(user::Column::CreatedAt, Order::Desc)], user::Column::Uuid).await
}

/// The users with these ids, by id.
pub async fn users_by_id(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<std::collections::HashMap<Uuid, user::Model>> {
    let ids: std::collections::BTreeSet<Uuid> = ids.into_iter().collect();
    let mut out = std::collections::HashMap::new();
    let ids: Vec<Uuid> = ids.into_iter().collect();
    for chunk in ids.chunks(500) {
        for row in user::Entity::find().filter(user::Column::Uuid.is_in(chunk.iter().copied())).all(db).await? {
            out.insert(row.uuid, row);
        }
    }
    Ok(out)
}

/// The names of the groups of each of these users, by user id (each list by name).
pub async fn group_names_of_users(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<std::collections::HashMap<Uuid, Vec<group::Model>>> {
    let ids: Vec<Uuid> = ids.into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut out: std::collections::HashMap<Uuid, Vec<group::Model>> = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let links =
            membership::Entity::find().filter(membership::Column::UserId.is_in(chunk.iter().copied())).all(db).await?;
        if links.is_empty() {
            continue;
        }
        let groups: std::collections::HashMap<Uuid, group::Model> = group::Entity::find()
            .filter(group::Column::Id.is_in(links.iter().map(|l| l.group_id)))
            .all(db)
            .await?
            .into_iter()
            .map(|g| (g.id, g))
            .collect();
        for link in links {
            if let Some(g) = groups.get(&link.group_id) {
                out.entry(link.user_id).or_default().push(g.clone());
            }
        }
    }
    for groups in out.values_mut() {
        groups.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(out)
}

/// The groups matching these criteria, by domain and name: of `domain_name` (any when
/// `None`), active or not when `is_active` is given, named `name` when given, and only those
/// `member` belongs to when given.
pub async fn find_groups(
    db: &impl ConnectionTrait,
    domain_name: Option<&str>,
    name: Option<&str>,
    is_active: Option<bool>,
    member: Option<Uuid>,
) -> Result<Vec<group::Model>> {
    let mut query = group::Entity::find().order_by_asc(group::Column::DomainName).order_by_asc(group::Column::Name);
    if let Some(domain_name) = domain_name {
        query = query.filter(group::Column::DomainName.eq(domain_name));
    }
    if let Some(name) = name {
        query = query.filter(group::Column::Name.eq(name));
    }
    if let Some(is_active) = is_active {
        query = query.filter(group::Column::IsActive.eq(is_active));
    }
    if let Some(member) = member {
        query = query.filter(
            group::Column::Id.in_subquery(
                Query::select()
                    .column(membership::Column::GroupId)
                    .from(membership::Entity)
                    .and_where(membership::Column::UserId.eq(member))
                    .to_owned(),
            ),
        );
    }
    Ok(query.all(db).await?)
}

/// The domains, by name; only active (or inactive) ones when `is_active` is given.
pub async fn find_domains(db: &impl ConnectionTrait, is_active: Option<bool>) -> Result<Vec<domain::Model>> {
    let mut query = domain::Entity::find().order_by_asc(domain::Column::Name);
    if let Some(is_active) = is_active {
        query = query.filter(domain::Column::IsActive.eq(is_active));
    }
    Ok(query.all(db).await?)
}

async fn require_keypair_policy(db: &impl ConnectionTrait, name: &str) -> Result<()> {
    if keypair_resource_policy::Entity::find_by_id(name).one(db).await?.is_none() {
        return Err(DbError::invalid("resource_policy", format!("there is no keypair resource policy {name:?}")));
    }
    Ok(())
}

/// What a keypair is created with (the keys themselves are generated).
#[derive(Debug, Clone)]
pub struct NewKeypair {
    /// Whether it may sign requests.
    pub is_active: bool,
    /// Whether it acts as an administrator.
    pub is_admin: bool,
    /// The keypair resource policy.
    pub resource_policy: String,
    /// Requests per rate-limit window.
    pub rate_limit: i32,
}

/// Creates a keypair for the user with this e-mail address and answers it. An unknown user
/// or policy, or a negative rate limit, is [`DbError::Invalid`].
pub async fn create_keypair_for_email<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    email: &str,
    new: &NewKeypair,
) -> Result<keypair::Model> {
    if new.rate_limit < 0 {
        return Err(DbError::invalid("rate_limit", format!("must be 0 or more, got {}", new.rate_limit)));
    }
    let txn = db.begin().await?;
    let Some(owner) = super::find_user_by_email(&txn, email).await? else {
        return Err(DbError::invalid("user_id", format!("there is no user with the e-mail address {email:?}")));
    };
    require_keypair_policy(&txn, &new.resource_policy).await?;
    let (access_key, _) = create_keypair(&txn, owner.uuid, new.is_admin, &new.resource_policy).await?;
    let row = keypair::ActiveModel {
        access_key: Set(access_key.clone()),
        is_active: Set(new.is_active),
        rate_limit: Set(new.rate_limit),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    txn.commit().await?;
    Ok(row)
}

/// Changes to a keypair: `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct KeypairChanges {
    /// Whether it may sign requests.
    pub is_active: Option<bool>,
    /// Whether it acts as an administrator.
    pub is_admin: Option<bool>,
    /// The keypair resource policy.
    pub resource_policy: Option<String>,
    /// Requests per rate-limit window.
    pub rate_limit: Option<i32>,
}

/// Applies `changes` to a keypair and answers the new row.
pub async fn modify_keypair(
    db: &impl ConnectionTrait,
    access_key: &str,
    changes: &KeypairChanges,
) -> Result<keypair::Model> {
    let row = keypair::Entity::find_by_id(access_key)
        .one(db)
        .await?
        .ok_or_else(|| DbError::not_found("keypair", access_key))?;
    if let Some(policy) = &changes.resource_policy {
        require_keypair_policy(db, policy).await?;
    }
    if let Some(rate_limit) = changes.rate_limit.filter(|r| *r < 0) {
        return Err(DbError::invalid("rate_limit", format!("must be 0 or more, got {rate_limit}")));
    }
    let mut update: keypair::ActiveModel = row.into();
    if let Some(v) = changes.is_active {
        update.is_active = Set(v);
    }
    if let Some(v) = changes.is_admin {
        update.is_admin = Set(v);
    }
    if let Some(v) = &changes.resource_policy {
        update.resource_policy = Set(v.clone());
    }
    if let Some(v) = changes.rate_limit {
        update.rate_limit = Set(v);
    }
    update.modified_at = Set(Utc::now());
    Ok(update.update(db).await?)
}

/// Deletes a keypair (its sessions keep their rows, without the access key). A user's main
/// access key is refused with [`DbError::Conflict`]: make another keypair the main one first.
pub async fn delete_keypair(db: &impl ConnectionTrait, access_key: &str) -> Result<keypair::Model> {
    let row = keypair::Entity::find_by_id(access_key)
        .one(db)
        .await?
        .ok_or_else(|| DbError::not_found("keypair", access_key))?;
    let is_main = user::Entity::find().filter(user::Column::MainAccessKey.eq(access_key)).one(db).await?.is_some();
    if is_main {
        return Err(DbError::conflict(format!(
            "keypair {access_key} is its user's main access key; give the user another main access key first"
        )));
    }
    keypair::Entity::delete_by_id(access_key)
        .exec(db)
        .await
        .map_err(|e| DbError::from_write(e, format!("keypair {access_key}")))?;
    Ok(row)
}

/// A new user as an administrator describes it; the password is plain text (stored hashed).
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The e-mail address (unique).
    pub email: String,
    /// The login name (the e-mail address when empty).
    pub username: String,
    /// The password, in plain text.
    pub password: String,
    /// Whether the password must be changed at the next login.
    pub need_password_change: bool,
    /// The display name.
    pub full_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// The account status.
    pub status: UserStatus,
    /// The domain.
    pub domain_name: String,
    /// The role.
    pub role: UserRole,
    /// Groups (of the user's domain) to join, by id.
    pub group_ids: Vec<Uuid>,
    /// Addresses the user may log in from.
    pub allowed_client_ip: Option<Vec<String>>,
    /// Whether two-factor login is on.
    pub totp_activated: bool,
    /// The user resource policy.
    pub resource_policy: String,
    /// Whether the user may use sudo inside sessions.
    pub sudo_session_enabled: bool,
}

async fn require_groups_in_domain(db: &impl ConnectionTrait, ids: &[Uuid], domain_name: &str) -> Result<()> {
    for id in ids {
        match group::Entity::find_by_id(*id).one(db).await? {
            Some(g) if g.domain_name == domain_name => {}
            Some(_) => {
                return Err(DbError::invalid("group_ids", format!("group {id} is not in domain {domain_name:?}")))
            }
            None => return Err(DbError::invalid("group_ids", format!("there is no group {id}"))),
        }
    }
    Ok(())
}

/// Creates a user with its main keypair (policy `default`, admin when the role is admin or
/// superadmin) and its group memberships, in one transaction. Answers the user (with its main
/// access key) and the keypair.
pub async fn create_user_with_keypair<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    new: &NewUser,
) -> Result<(user::Model, keypair::Model)> {
    if new.email.trim().is_empty() || !new.email.contains('@') {
        return Err(DbError::invalid("email", format!("{:?} is not an e-mail address", new.email)));
    }
    if new.password.is_empty() {
        return Err(DbError::invalid("password", "must not be empty"));
    }
    let txn = db.begin().await?;
    if super::get_domain(&txn, &new.domain_name).await?.is_none() {
        return Err(DbError::invalid("domain_name", format!("there is no domain {:?}", new.domain_name)));
    }
    if user_resource_policy::Entity::find_by_id(new.resource_policy.as_str()).one(&txn).await?.is_none() {
        return Err(DbError::invalid(
            "resource_policy",
            format!("there is no user resource policy {:?}", new.resource_policy),
        ));
    }
    require_groups_in_domain(&txn, &new.group_ids, &new.domain_name).await?;
    require_keypair_policy(&txn, "default").await?;
    let username = if new.username.trim().is_empty() { new.email.clone() } else { new.username.clone() };
    let created = create_user(
        &txn,
        user::ActiveModel {
            email: Set(new.email.clone()),
            username: Set(Some(username)),
            password: Set(Some(hash_password(&new.password))),
            need_password_change: Set(new.need_password_change),
            password_changed_at: Set(Some(Utc::now())),
            full_name: Set(new.full_name.clone()),
            description: Set(new.description.clone()),
            status: Set(Wire(new.status)),
            status_info: Set(Some("admin-requested".into())),
            domain_name: Set(new.domain_name.clone()),
            role: Set(Wire(new.role)),
            resource_policy: Set(new.resource_policy.clone()),
            allowed_client_ip: Set(new.allowed_client_ip.clone().map(StringList::from)),
            totp_activated: Set(new.totp_activated),
            sudo_session_enabled: Set(new.sudo_session_enabled),
            ..Default::default()
        },
    )
    .await?;
    for id in &new.group_ids {
        super::add_user_to_group(&txn, created.uuid, *id).await?;
    }
    let (access_key, _) = create_keypair(&txn, created.uuid, new.role.is_admin(), "default").await?;
    let keypair = keypair::Entity::find_by_id(access_key.as_str())
        .one(&txn)
        .await?
        .ok_or_else(|| DbError::not_found("keypair", &access_key))?;
    let created = user::Entity::find_by_id(created.uuid)
        .one(&txn)
        .await?
        .ok_or_else(|| DbError::not_found("user", created.uuid))?;
    txn.commit().await?;
    Ok((created, keypair))
}

/// Changes to a user: `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    /// The login name.
    pub username: Option<String>,
    /// A new password, in plain text.
    pub password: Option<String>,
    /// Whether the password must be changed at the next login.
    pub need_password_change: Option<bool>,
    /// The display name.
    pub full_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// The account status.
    pub status: Option<UserStatus>,
    /// The domain.
    pub domain_name: Option<String>,
    /// The role.
    pub role: Option<UserRole>,
    /// Replaces the user's groups (of its domain).
    pub group_ids: Option<Vec<Uuid>>,
    /// Addresses the user may log in from.
    pub allowed_client_ip: Option<Vec<String>>,
    /// Whether two-factor login is on.
    pub totp_activated: Option<bool>,
    /// The user resource policy.
    pub resource_policy: Option<String>,
    /// Whether the user may use sudo inside sessions.
    pub sudo_session_enabled: Option<bool>,
    /// The main access key (one of the user's keypairs).
    pub main_access_key: Option<String>,
}

/// Applies `changes` to the user with this e-mail address, in one transaction. A new role
/// sets the admin flag of the user's keypairs; a status other than `active` deactivates them.
/// Answers the new row and the access keys of the user's keypairs (whose cached credentials
/// are now stale).
pub async fn modify_user<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    email: &str,
    changes: &UserChanges,
) -> Result<(user::Model, Vec<String>)> {
    let txn = db.begin().await?;
    let row = super::find_user_by_email(&txn, email).await?.ok_or_else(|| DbError::not_found("user", email))?;
    let keypairs = super::list_keypairs(&txn, Some(row.uuid)).await?;
    let domain_name = changes.domain_name.clone().unwrap_or_else(|| row.domain_name.clone());
    if changes.domain_name.is_some() && super::get_domain(&txn, &domain_name).await?.is_none() {
        return Err(DbError::invalid("domain_name", format!("there is no domain {domain_name:?}")));
    }
    if let Some(policy) = &changes.resource_policy {
        if user_resource_policy::Entity::find_by_id(policy.as_str()).one(&txn).await?.is_none() {
            return Err(DbError::invalid("resource_policy", format!("there is no user resource policy {policy:?}")));
        }
    }
    if let Some(ak) = &changes.main_access_key {
        if !keypairs.iter().any(|k| &k.access_key == ak) {
            return Err(DbError::invalid("main_access_key", format!("{ak} is not a keypair of {email}")));
        }
    }
    if let Some(password) = &changes.password {
        if password.is_empty() {
            return Err(DbError::invalid("password", "must not be empty"));
        }
    }
    if let Some(ids) = &changes.group_ids {
        require_groups_in_domain(&txn, ids, &domain_name).await?;
    }
    let now = Utc::now();
    let mut update: user::ActiveModel = row.clone().into();
    if let Some(v) = &changes.username {
        update.username = Set(Some(v.clone()));
    }
    if let Some(v) = &changes.password {
        update.password = Set(Some(hash_password(v)));
        update.password_changed_at = Set(Some(now));
    }
    if let Some(v) = changes.need_password_change {
        update.need_password_change = Set(v);
    }
    if let Some(v) = &changes.full_name {
        update.full_name = Set(Some(v.clone()));
    }
    if let Some(v) = &changes.description {
        update.description = Set(Some(v.clone()));
    }
    if let Some(v) = changes.status {
        update.status = Set(Wire(v));
        update.status_info = Set(Some("admin-requested".into()));
    }
    if changes.domain_name.is_some() {
        update.domain_name = Set(domain_name.clone());
    }
    if let Some(v) = changes.role {
        update.role = Set(Wire(v));
    }
    if let Some(v) = &changes.allowed_client_ip {
        update.allowed_client_ip = Set(Some(StringList::from(v.clone())));
    }
    if let Some(v) = changes.totp_activated {
        update.totp_activated = Set(v);
    }
    if let Some(v) = &changes.resource_policy {
        update.resource_policy = Set(v.clone());
    }
    if let Some(v) = changes.sudo_session_enabled {
        update.sudo_session_enabled = Set(v);
    }
    if let Some(v) = &changes.main_access_key {
        update.main_access_key = Set(Some(v.clone()));
    }
    update.modified_at = Set(now);
    let updated = update.update(&txn).await.map_err(|e| DbError::from_write(e, format!("user {email}")))?;
    if let Some(role) = changes.role.filter(|r| *r != row.role.0) {
        keypair::Entity::update_many()
            .set(keypair::ActiveModel { is_admin: Set(role.is_admin()), modified_at: Set(now), ..Default::default() })
            .filter(keypair::Column::User.eq(row.uuid))
            .exec(&txn)
            .await?;
    }
    if changes.status.is_some_and(|s| s != UserStatus::Active) {
        deactivate_keypairs_of(&txn, row.uuid).await?;
    }
    if let Some(ids) = &changes.group_ids {
        membership::Entity::delete_many().filter(membership::Column::UserId.eq(row.uuid)).exec(&txn).await?;
        for id in ids {
            super::add_user_to_group(&txn, row.uuid, *id).await?;
        }
    }
    txn.commit().await?;
    Ok((updated, keypairs.into_iter().map(|k| k.access_key).collect()))
}

async fn deactivate_keypairs_of(db: &impl ConnectionTrait, user_id: Uuid) -> Result<()> {
    keypair::Entity::update_many()
        .set(keypair::ActiveModel { is_active: Set(false), modified_at: Set(Utc::now()), ..Default::default() })
        .filter(keypair::Column::User.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes a user softly, as the original does: the row stays with status `deleted` and every
/// keypair of the user is deactivated. Answers the access keys of those keypairs.
pub async fn soft_delete_user<C: ConnectionTrait + TransactionTrait>(db: &C, email: &str) -> Result<Vec<String>> {
    let txn = db.begin().await?;
    let row = super::find_user_by_email(&txn, email).await?.ok_or_else(|| DbError::not_found("user", email))?;
    let keypairs = super::list_keypairs(&txn, Some(row.uuid)).await?;
    let uuid = row.uuid;
    let mut update: user::ActiveModel = row.into();
    update.status = Set(Wire(UserStatus::Deleted));
    update.status_info = Set(Some("admin-requested".into()));
    update.modified_at = Set(Utc::now());
    update.update(&txn).await?;
    deactivate_keypairs_of(&txn, uuid).await?;
    txn.commit().await?;
    Ok(keypairs.into_iter().map(|k| k.access_key).collect())
}

/// Changes to a group: `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupChanges {
    /// The name (unique within the domain).
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Whether the group may be used.
    pub is_active: Option<bool>,
    /// The group's resource limit.
    pub total_resource_slots: Option<bai_core::ResourceSlot>,
    /// Storage hosts and permissions.
    pub allowed_vfolder_hosts: Option<serde_json::Value>,
    /// An identifier in an external system.
    pub integration_id: Option<String>,
    /// The project resource policy.
    pub resource_policy: Option<String>,
}

/// Whether [`modify_group`] adds or removes members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberUpdate {
    /// Adds the users (members already in are left alone).
    Add,
    /// Removes the users (non-members are ignored).
    Remove,
}

/// Applies `changes` to a group and adds or removes `members` (users of the group's domain),
/// in one transaction; answers the new row.
pub async fn modify_group<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: Uuid,
    changes: &GroupChanges,
    members: Option<(MemberUpdate, &[Uuid])>,
) -> Result<group::Model> {
    let txn = db.begin().await?;
    let row = group::Entity::find_by_id(id).one(&txn).await?.ok_or_else(|| DbError::not_found("group", id))?;
    if let Some((mode, users)) = members {
        let found = users_by_id(&txn, users.iter().copied()).await?;
        for user_id in users {
            match found.get(user_id) {
                None => return Err(DbError::invalid("user_uuids", format!("there is no user {user_id}"))),
                Some(u) if u.domain_name != row.domain_name && mode == MemberUpdate::Add => {
                    return Err(DbError::invalid(
                        "user_uuids",
                        format!("user {user_id} is not in the group's domain {:?}", row.domain_name),
                    ))
                }
                Some(_) => {}
            }
        }
        for user_id in users {
            let member = super::is_group_member(&txn, *user_id, id).await?;
            match mode {
                MemberUpdate::Add if !member => super::add_user_to_group(&txn, *user_id, id).await?,
                MemberUpdate::Remove if member => {
                    super::remove_user_from_group(&txn, *user_id, id).await?;
                }
                _ => {}
            }
        }
    }
    let mut update: group::ActiveModel = row.into();
    if let Some(v) = &changes.name {
        if v.trim().is_empty() {
            return Err(DbError::invalid("name", "must not be empty"));
        }
        update.name = Set(v.clone());
    }
    if let Some(v) = &changes.description {
        update.description = Set(Some(v.clone()));
    }
    if let Some(v) = changes.is_active {
        update.is_active = Set(v);
    }
    if let Some(v) = &changes.total_resource_slots {
        update.total_resource_slots = Set(v.clone().into());
    }
    if let Some(v) = &changes.allowed_vfolder_hosts {
        update.allowed_vfolder_hosts = Set(v.clone());
    }
    if let Some(v) = &changes.integration_id {
        update.integration_id = Set(Some(v.clone()));
    }
    if let Some(v) = &changes.resource_policy {
        update.resource_policy = Set(v.clone());
    }
    update.modified_at = Set(Utc::now());
    let updated = update.update(&txn).await.map_err(|e| DbError::from_write(e, format!("group {id}")))?;
    txn.commit().await?;
    Ok(updated)
}

/// Every image alias, by the id of the image it names (each list sorted).
pub async fn image_aliases(db: &impl ConnectionTrait) -> Result<std::collections::HashMap<Uuid, Vec<String>>> {
    use crate::db::entities::image_alias;
    let mut out: std::collections::HashMap<Uuid, Vec<String>> = std::collections::HashMap::new();
    for row in image_alias::Entity::find().order_by_asc(image_alias::Column::Alias).all(db).await? {
        out.entry(row.image).or_default().push(row.alias);
    }
    Ok(out)
}
