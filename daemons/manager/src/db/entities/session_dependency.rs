//! `session_dependencies`: a session waits until each session it depends on has
//! TERMINATED with `success` (the scheduler's `dependencies` predicate).

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::FillDefaults;

/// A row of `session_dependencies`: `session_id` waits for `depends_on`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "session_dependencies")]
pub struct Model {
    /// The waiting session (`sessions.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: Uuid,
    /// The session it waits for (`sessions.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub depends_on: Uuid,
}

/// Relations of `session_dependencies` (none is navigated from here).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, _now: DateTimeUtc) {}
}
