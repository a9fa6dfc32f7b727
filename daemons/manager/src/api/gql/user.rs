//! Users: the roots `user(domain_name, email)` (no arguments: the caller) and
//! `user_list(…)` (admins), what `admin user info` and `admin user list` read, and the types
//! `User`, `UserGroup` and `UserList`.
//!
//! A user may read only their own account; a domain admin the users of their domain (another
//! domain's user is null); a superadmin anyone. `groups` is a list, never null; `role` and
//! `status` are the lower-case names (`superadmin`, `active`, …).

use async_graphql::{Context, Error, Object, Result, ID};
use sea_orm::{ColumnTrait, Condition};

use super::agent::{filter_and_order, page_bounds};
use super::filter::{column, FieldSpec, Kind, Target};
use super::scalars::{DateTime, Uuid};
use super::{db_error, forbidden, require_admin, scoped, GqlContext, UserKey};
use crate::api::auth::Role;
use crate::db::entities::{group, user};
use crate::db::repo;
use crate::db::types::{UserRole, UserStatus, Wire};

fn wire_of<T: std::str::FromStr + std::fmt::Display>(text: &str) -> std::result::Result<String, String>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>().map(|v| v.to_string()).map_err(|e| e.to_string())
}

/// The fields `user_list` can filter and order by (the original's).
pub fn user_fields() -> Vec<FieldSpec> {
    use user::Column as C;
    let col = |c: C| Target::Column(column(user::Entity, c));
    let spec = |name, kind, target| FieldSpec { name, kind, target };
    vec![
        spec("uuid", Kind::Uuid, col(C::Uuid)),
        spec("username", Kind::Text, col(C::Username)),
        spec("email", Kind::Text, col(C::Email)),
        spec("need_password_change", Kind::Bool, col(C::NeedPasswordChange)),
        spec("full_name", Kind::Text, col(C::FullName)),
        spec("description", Kind::Text, col(C::Description)),
        spec("status", Kind::Enum(wire_of::<UserStatus>), col(C::Status)),
        spec("status_info", Kind::Text, col(C::StatusInfo)),
        spec("created_at", Kind::Time, col(C::CreatedAt)),
        spec("modified_at", Kind::Time, col(C::ModifiedAt)),
        spec("domain_name", Kind::Text, col(C::DomainName)),
        spec("role", Kind::Enum(wire_of::<UserRole>), col(C::Role)),
        spec("resource_policy", Kind::Text, col(C::ResourcePolicy)),
        spec("totp_activated", Kind::Bool, col(C::TotpActivated)),
        spec("sudo_session_enabled", Kind::Bool, col(C::SudoSessionEnabled)),
        spec("main_access_key", Kind::Text, col(C::MainAccessKey)),
    ]
}

/// A group a user belongs to.
#[derive(Debug, Clone)]
pub struct UserGroup {
    id: uuid::Uuid,
    name: String,
}

#[Object(name = "UserGroup", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl UserGroup {
    /// The group's id.
    async fn id(&self) -> Uuid {
        Uuid(self.id)
    }
    /// The group's name.
    async fn name(&self) -> &str {
        &self.name
    }
}

/// A user account.
#[derive(Debug, Clone)]
pub struct User {
    row: user::Model,
    groups: Vec<UserGroup>,
}

impl User {
    /// A user and the groups it belongs to.
    pub fn new(row: user::Model, groups: Vec<group::Model>) -> Self {
        User { row, groups: groups.into_iter().map(|g| UserGroup { id: g.id, name: g.name }).collect() }
    }
}

#[Object(name = "User", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl User {
    /// The user's id.
    async fn id(&self) -> ID {
        ID(self.row.uuid.to_string())
    }
    /// The user's id.
    async fn uuid(&self) -> Uuid {
        Uuid(self.row.uuid)
    }
    /// The login name.
    async fn username(&self) -> Option<&str> {
        self.row.username.as_deref()
    }
    /// The e-mail address.
    async fn email(&self) -> &str {
        &self.row.email
    }
    /// Whether the password must be changed at the next login.
    async fn need_password_change(&self) -> bool {
        self.row.need_password_change
    }
    /// The display name.
    async fn full_name(&self) -> Option<&str> {
        self.row.full_name.as_deref()
    }
    /// Free text.
    async fn description(&self) -> Option<&str> {
        self.row.description.as_deref()
    }
    /// Whether the status is `active`.
    async fn is_active(&self) -> bool {
        self.row.status.0 == UserStatus::Active
    }
    /// `active`, `inactive`, `deleted` or `before-verification`.
    async fn status(&self) -> &'static str {
        self.row.status.0.as_str()
    }
    /// Why the status was set.
    async fn status_info(&self) -> Option<&str> {
        self.row.status_info.as_deref()
    }
    /// When the account was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.row.created_at)
    }
    /// When the account was last changed.
    async fn modified_at(&self) -> DateTime {
        DateTime(self.row.modified_at)
    }
    /// When the password was last changed.
    async fn password_changed_at(&self) -> Option<DateTime> {
        self.row.password_changed_at.map(DateTime)
    }
    /// The domain.
    async fn domain_name(&self) -> &str {
        &self.row.domain_name
    }
    /// `superadmin`, `admin`, `user` or `monitor`.
    async fn role(&self) -> &'static str {
        self.row.role.0.as_str()
    }
    /// The user resource policy.
    async fn resource_policy(&self) -> &str {
        &self.row.resource_policy
    }
    /// Addresses the user may log in from (null: anywhere).
    async fn allowed_client_ip(&self) -> Option<Vec<String>> {
        self.row.allowed_client_ip.as_ref().map(|l| l.0.clone())
    }
    /// Whether two-factor login is on.
    async fn totp_activated(&self) -> bool {
        self.row.totp_activated
    }
    /// Whether the user may use sudo inside sessions.
    async fn sudo_session_enabled(&self) -> bool {
        self.row.sudo_session_enabled
    }
    /// The main access key.
    async fn main_access_key(&self) -> Option<&str> {
        self.row.main_access_key.as_deref()
    }
    /// The groups (projects) the user belongs to, by name.
    async fn groups(&self) -> &[UserGroup] {
        &self.groups
    }
}

/// A page of users and how many match in all.
#[derive(Debug)]
pub struct UserList {
    items: Vec<User>,
    total_count: i32,
}

#[Object(name = "UserList", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl UserList {
    /// The page.
    async fn items(&self) -> &[User] {
        &self.items
    }
    /// How many users match in all.
    async fn total_count(&self) -> i32 {
        self.total_count
    }
}

/// Loads the groups of these users into [`User`]s.
pub(crate) async fn with_groups(db: &sea_orm::DatabaseConnection, rows: Vec<user::Model>) -> Result<Vec<User>> {
    let mut groups = repo::group_names_of_users(db, rows.iter().map(|u| u.uuid)).await.map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let gs = groups.remove(&row.uuid).unwrap_or_default();
            User::new(row, gs)
        })
        .collect())
}

/// The user roots.
#[derive(Debug, Default)]
pub struct UserQuery;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl UserQuery {
    /// A user: the caller without `email`. A user may name only themselves; a domain admin
    /// a user of their domain (null otherwise); a superadmin anyone.
    async fn user(
        &self,
        ctx: &Context<'_>,
        domain_name: Option<String>,
        email: Option<String>,
    ) -> Result<Option<User>> {
        let gql = ctx.data::<GqlContext>()?;
        let auth = &gql.auth;
        let db = gql.db.as_ref();
        let own_domain = &auth.credential.domain_name;
        if auth.role() != Role::Superadmin && domain_name.as_ref().is_some_and(|d| d != own_domain) {
            return Err(forbidden("only a superadmin may query another domain"));
        }
        let row = match &email {
            None => repo::get_user(db, auth.credential.user_id).await.map_err(db_error)?,
            Some(email) => {
                if auth.role() == Role::User && *email != auth.credential.email {
                    return Err(forbidden("a user may only query their own account"));
                }
                repo::find_user_by_email(db, email).await.map_err(db_error)?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let domain = if auth.role() == Role::Superadmin { domain_name } else { Some(own_domain.clone()) };
        if domain.is_some_and(|d| d != row.domain_name) {
            return Ok(None);
        }
        Ok(with_groups(db, vec![row]).await?.pop())
    }

    /// A page of users (admins): of `domain_name` (a domain admin: only their own), in
    /// `status` (or active/inactive with the legacy `is_active`), members of `group_id`,
    /// newest first unless `order` says otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn user_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        group_id: Option<Uuid>,
        is_active: Option<bool>,
        status: Option<String>,
    ) -> Result<UserList> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let (limit, offset) = page_bounds(limit, offset)?;
        let scope = scoped(&gql.auth, domain_name, None, UserKey::AccessKey, false)?;
        let db = gql.db.as_ref();
        let (extra, order) = filter_and_order(db, &user_fields(), filter.as_deref(), order.as_deref())?;
        let mut condition = Condition::all();
        if let Some(domain) = scope.domain_name {
            condition = condition.add(user::Column::DomainName.eq(domain));
        }
        if let Some(group_id) = group_id {
            condition = condition.add(repo::user_in_group(group_id.0));
        }
        if let Some(status) = status.filter(|s| !s.trim().is_empty()) {
            let status: UserStatus = status.parse().map_err(|e: crate::db::DbError| Error::new(e.to_string()))?;
            condition = condition.add(user::Column::Status.eq(Wire(status)));
        } else if let Some(is_active) = is_active {
            let status = if is_active { UserStatus::Active } else { UserStatus::Inactive };
            condition = condition.add(user::Column::Status.eq(Wire(status)));
        }
        if let Some(extra) = extra {
            condition = condition.add(extra);
        }
        let page = repo::Page { limit, offset, order };
        let (rows, total) = repo::user_page(db, condition, &page).await.map_err(db_error)?;
        let items = with_groups(db, rows).await?;
        Ok(UserList { items, total_count: i32::try_from(total).unwrap_or(i32::MAX) })
    }
}
