//! `users`: accounts. A user belongs to one domain, to any number of groups
//! (`association_groups_users`) and owns keypairs.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use super::{or_set, FillDefaults};
use crate::db::types::{StringList, UserRole, UserStatus, Wire};

/// A row of `users`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// The user's id (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub uuid: Uuid,
    /// The login name (unique when set).
    pub username: Option<String>,
    /// The e-mail address (unique); keypairs name their user by it.
    pub email: String,
    /// The password hash (see [`crate::db::repo::hash_password`]); never serialised.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Whether the user must change the password at the next login.
    pub need_password_change: bool,
    /// When the password was last changed.
    pub password_changed_at: Option<DateTimeUtc>,
    /// The display name.
    pub full_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// `active`, `inactive`, `deleted` or `before-verification`.
    pub status: Wire<UserStatus>,
    /// Why the status was set (`admin-requested`, …).
    pub status_info: Option<String>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub modified_at: DateTimeUtc,
    /// The domain the user belongs to.
    pub domain_name: String,
    /// `superadmin`, `admin`, `user` or `monitor`.
    pub role: Wire<UserRole>,
    /// The user resource policy (`user_resource_policies.name`).
    pub resource_policy: String,
    /// Addresses the user may log in from (none: anywhere).
    pub allowed_client_ip: Option<StringList>,
    /// Whether two-factor login is on.
    pub totp_activated: bool,
    /// Whether the user may use sudo inside sessions.
    pub sudo_session_enabled: bool,
    /// The keypair whose policy limits the user's total usage.
    pub main_access_key: Option<String>,
}

/// Relations of `users`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The user's keypairs.
    #[sea_orm(has_many = "super::keypair::Entity")]
    Keypair,
}

impl Related<super::keypair::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Keypair.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl FillDefaults for ActiveModel {
    fn fill_defaults(&mut self, now: DateTimeUtc) {
        or_set(&mut self.uuid, Uuid::new_v4);
        or_set(&mut self.need_password_change, || false);
        or_set(&mut self.status, Default::default);
        or_set(&mut self.created_at, || now);
        or_set(&mut self.modified_at, || now);
        or_set(&mut self.role, Default::default);
        or_set(&mut self.resource_policy, || "default".to_string());
        or_set(&mut self.totp_activated, || false);
        or_set(&mut self.sudo_session_enabled, || false);
    }
}
