//! Virtual folders: rows of `vfolders` owned by users (group folders are not handled yet).

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::insert_new;
use crate::db::entities::vfolder;
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
