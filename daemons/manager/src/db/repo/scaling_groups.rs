//! Scaling groups and which domains, groups and keypairs may use them.

use std::collections::BTreeSet;

use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{insert_new, shown};
use crate::db::entities::{scaling_group, sgroups_for_domains, sgroups_for_groups, sgroups_for_keypairs};
use crate::db::Result;

/// Creates a scaling group; a duplicate name is
/// [`DbError::Conflict`](crate::db::DbError::Conflict).
pub async fn create_scaling_group(
    db: &impl ConnectionTrait,
    row: scaling_group::ActiveModel,
) -> Result<scaling_group::Model> {
    let what = format!("scaling group {}", shown(&row.name));
    insert_new(db, row, what).await
}

/// The scaling group with this name.
pub async fn get_scaling_group(db: &impl ConnectionTrait, name: &str) -> Result<Option<scaling_group::Model>> {
    Ok(scaling_group::Entity::find_by_id(name).one(db).await?)
}

/// The scaling groups, by name; only active (or inactive) ones when `is_active` is given.
pub async fn list_scaling_groups(
    db: &impl ConnectionTrait,
    is_active: Option<bool>,
) -> Result<Vec<scaling_group::Model>> {
    let mut query = scaling_group::Entity::find().order_by_asc(scaling_group::Column::Name);
    if let Some(is_active) = is_active {
        query = query.filter(scaling_group::Column::IsActive.eq(is_active));
    }
    Ok(query.all(db).await?)
}

/// Lets a domain use a scaling group.
pub async fn associate_scaling_group_with_domain(
    db: &impl ConnectionTrait,
    scaling_group: &str,
    domain: &str,
) -> Result<()> {
    let row = sgroups_for_domains::ActiveModel { scaling_group: Set(scaling_group.into()), domain: Set(domain.into()) };
    insert_new(db, row, format!("association of scaling group {scaling_group} with domain {domain}")).await?;
    Ok(())
}

/// Lets a group (project) use a scaling group.
pub async fn associate_scaling_group_with_group(
    db: &impl ConnectionTrait,
    scaling_group: &str,
    group: Uuid,
) -> Result<()> {
    let row = sgroups_for_groups::ActiveModel { scaling_group: Set(scaling_group.into()), group: Set(group) };
    insert_new(db, row, format!("association of scaling group {scaling_group} with group {group}")).await?;
    Ok(())
}

/// Lets a keypair use a scaling group.
pub async fn associate_scaling_group_with_keypair(
    db: &impl ConnectionTrait,
    scaling_group: &str,
    access_key: &str,
) -> Result<()> {
    let row = sgroups_for_keypairs::ActiveModel {
        scaling_group: Set(scaling_group.into()),
        access_key: Set(access_key.into()),
    };
    insert_new(db, row, format!("association of scaling group {scaling_group} with keypair {access_key}")).await?;
    Ok(())
}

/// The active scaling groups a request may use: those associated with its domain, its group
/// or its keypair (the union, as the original), by name.
pub async fn allowed_scaling_groups(
    db: &impl ConnectionTrait,
    domain: &str,
    group: Uuid,
    access_key: &str,
) -> Result<Vec<scaling_group::Model>> {
    let mut names = BTreeSet::new();
    for row in
        sgroups_for_domains::Entity::find().filter(sgroups_for_domains::Column::Domain.eq(domain)).all(db).await?
    {
        names.insert(row.scaling_group);
    }
    for row in sgroups_for_groups::Entity::find().filter(sgroups_for_groups::Column::Group.eq(group)).all(db).await? {
        names.insert(row.scaling_group);
    }
    for row in sgroups_for_keypairs::Entity::find()
        .filter(sgroups_for_keypairs::Column::AccessKey.eq(access_key))
        .all(db)
        .await?
    {
        names.insert(row.scaling_group);
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    Ok(scaling_group::Entity::find()
        .filter(scaling_group::Column::Name.is_in(names))
        .filter(scaling_group::Column::IsActive.eq(true))
        .order_by_asc(scaling_group::Column::Name)
        .all(db)
        .await?)
}
