//! `keypairs`: API credentials. Requests are signed with the secret key and name the access
//! key; each keypair has a resource policy and belongs to one user.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};

/// The rate limit (requests per 15 minutes) a keypair gets when none is given, as in the
/// original's example fixtures.
pub const DEFAULT_RATE_LIMIT: i32 = 30_000;

/// A row of `keypairs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "keypairs")]
pub struct Model {
    /// The public half (primary key), `AKIA` + 16 upper-case letters and digits.
    #[sea_orm(primary_key, auto_increment = false)]
    pub access_key: String,
    /// The secret half, 40 characters.
    pub secret_key: String,
    /// The owner's e-mail address (the original names it `user_id`).
    pub user_id: String,
    /// The owner's id (`users.uuid`).
    pub user: Uuid,
    /// Whether requests signed with it are accepted.
    pub is_active: bool,
    /// Whether it acts as an administrator.
    pub is_admin: bool,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub modified_at: DateTimeUtc,
    /// When it last signed a request.
    pub last_used: Option<DateTimeUtc>,
    /// Requests allowed per 15 minutes.
    pub rate_limit: i32,
    /// How many queries were executed with it.
    pub num_queries: i64,
    /// The keypair resource policy (`keypair_resource_policies.name`).
    pub resource_policy: String,
    /// The public SSH key installed into sessions.
    pub ssh_public_key: Option<String>,
    /// The private SSH key handed to the user.
    pub ssh_private_key: Option<String>,
}

/// Relations of `keypairs`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::User",
        to = "super::user::Column::Uuid",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.is_active, || true);
        or_set(&mut self.is_admin, || false);
        or_set(&mut self.created_at, || now);
        or_set(&mut self.modified_at, || now);
        or_set(&mut self.rate_limit, || DEFAULT_RATE_LIMIT);
        or_set(&mut self.num_queries, || 0);
        or_set(&mut self.resource_policy, || "default".to_string());
    }
}
