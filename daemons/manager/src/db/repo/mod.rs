//! Repository functions: what the rest of the manager calls to read and write the database.
//!
//! Every function takes `db: &impl ConnectionTrait`, so it runs on the pool or inside a
//! caller's transaction alike; the few that write several rows atomically also need
//! [`TransactionTrait`](sea_orm::TransactionTrait) (a transaction then nests as a savepoint).
//! `get_*` functions answer `Ok(None)` for a missing row; functions that change a row answer
//! [`DbError::NotFound`] instead.

use std::fmt::Display;

use chrono::Utc;
use sea_orm::{ActiveModelBehavior, ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel};

use super::entities::FillDefaults;
use super::{DbError, Result};

mod admin;
mod agents;
pub mod bulk;
mod fixture;
mod images;
mod keypairs;
mod org;
mod org_admin;
mod policies;
mod scaling_groups;
mod session_lookup;
mod sessions;
mod vfolders;

pub use admin::*;
pub use agents::*;
pub use fixture::*;
pub use images::*;
pub use keypairs::*;
pub use org::*;
pub use org_admin::*;
pub use policies::*;
pub use scaling_groups::*;
pub use session_lookup::*;
pub use sessions::*;
pub use vfolders::*;

/// A column's value for messages: the value when set, `(unset)` otherwise.
pub(crate) fn shown<T: Display + Into<sea_orm::Value>>(value: &sea_orm::ActiveValue<T>) -> String {
    match value {
        sea_orm::ActiveValue::Set(v) | sea_orm::ActiveValue::Unchanged(v) => v.to_string(),
        sea_orm::ActiveValue::NotSet => "(unset)".to_string(),
    }
}

/// Fills the defaults of a new row and inserts it; a duplicate key is
/// [`DbError::Conflict`] naming `what`.
pub(crate) async fn insert_new<A, C>(
    db: &C,
    mut row: A,
    what: impl Display,
) -> Result<<A::Entity as EntityTrait>::Model>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + ActiveModelBehavior + FillDefaults + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    row.fill_defaults(Utc::now());
    row.insert(db).await.map_err(|e| DbError::from_write(e, what))
}
