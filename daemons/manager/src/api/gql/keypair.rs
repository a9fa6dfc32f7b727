//! Keypairs: the root `keypair(domain_name, access_key)` (no arguments: the caller's own
//! keypair, which `ps`/`session list` read first to know whether to show the owner column),
//! `keypair_list(…)` for administrators (`admin keypair list`: a domain admin lists the
//! keypairs of their domain, a superadmin any), and the types `KeyPair`, `KeyPairList` and
//! `UserInfo`.

use async_graphql::{Context, Object, Result, ID};
use bai_core::SessionStatus;
use sea_orm::{ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter};

use super::agent::{filter_and_order, page_bounds};
use super::filter::{column, FieldSpec, Kind, Target};
use super::scalars::{DateTime, Uuid};
use super::{db_error, require_admin, scoped, GqlContext, UserKey};
use crate::db::entities::{keypair, session, user};
use crate::db::repo;
use crate::db::types::Wire;

/// A keypair, with its owner.
#[derive(Debug, Clone)]
pub struct KeyPair {
    row: keypair::Model,
    owner: Option<user::Model>,
    projects: Vec<String>,
}

impl KeyPair {
    /// A keypair with its owner and the names of the owner's groups.
    pub(crate) fn new(row: keypair::Model, owner: Option<user::Model>, projects: Vec<String>) -> Self {
        KeyPair { row, owner, projects }
    }
}

#[Object(name = "KeyPair", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl KeyPair {
    /// The access key.
    async fn id(&self) -> ID {
        ID(self.row.access_key.clone())
    }

    /// The owner's e-mail address (not a UUID, as in the original).
    async fn user_id(&self) -> &str {
        &self.row.user_id
    }

    /// The owner's full name.
    async fn full_name(&self) -> Option<&str> {
        self.owner.as_ref().and_then(|u| u.full_name.as_deref())
    }

    /// The access key.
    async fn access_key(&self) -> &str {
        &self.row.access_key
    }

    /// The secret key.
    async fn secret_key(&self) -> &str {
        &self.row.secret_key
    }

    /// Whether the keypair may be used.
    async fn is_active(&self) -> bool {
        self.row.is_active
    }

    /// Whether the keypair has administrator rights.
    async fn is_admin(&self) -> bool {
        self.row.is_admin
    }

    /// The keypair resource policy's name.
    async fn resource_policy(&self) -> &str {
        &self.row.resource_policy
    }

    /// When the keypair was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.row.created_at)
    }

    /// When the keypair last signed a request.
    async fn last_used(&self) -> Option<DateTime> {
        self.row.last_used.map(DateTime)
    }

    /// Requests allowed per rate-limit window.
    async fn rate_limit(&self) -> i32 {
        self.row.rate_limit
    }

    /// How many queries were executed.
    async fn num_queries(&self) -> i32 {
        i32::try_from(self.row.num_queries).unwrap_or(i32::MAX)
    }

    /// The owner's id.
    async fn user(&self) -> Uuid {
        Uuid(self.row.user)
    }

    /// The names of the owner's groups (projects).
    async fn projects(&self) -> &[String] {
        &self.projects
    }

    /// The SSH public key.
    async fn ssh_public_key(&self) -> Option<&str> {
        self.row.ssh_public_key.as_deref()
    }

    /// How many of the keypair's sessions are not yet terminated or cancelled.
    async fn concurrency_used(&self, ctx: &Context<'_>) -> Result<i32> {
        let gql = ctx.data::<GqlContext>()?;
        let n = session::Entity::find()
            .filter(session::Column::AccessKey.eq(self.row.access_key.as_str()))
            .filter(
                session::Column::Status.is_not_in([Wire(SessionStatus::Terminated), Wire(SessionStatus::Cancelled)]),
            )
            .count(gql.db.as_ref())
            .await
            .map_err(db_error)?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }

    /// Deprecated in the original (moved to the resource policy): always 0.
    async fn concurrency_limit(&self) -> i32 {
        0
    }

    /// The owner's e-mail address and full name (never null).
    async fn user_info(&self) -> UserInfo {
        UserInfo {
            email: self.owner.as_ref().map(|u| u.email.clone()).or_else(|| Some(self.row.user_id.clone())),
            full_name: self.owner.as_ref().and_then(|u| u.full_name.clone()),
        }
    }
}

/// A user's e-mail address and full name.
#[derive(Debug, Clone)]
pub struct UserInfo {
    email: Option<String>,
    full_name: Option<String>,
}

#[Object(name = "UserInfo", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl UserInfo {
    /// The e-mail address.
    async fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The full name.
    async fn full_name(&self) -> Option<&str> {
        self.full_name.as_deref()
    }
}

/// A page of keypairs and how many match in all.
#[derive(Debug)]
pub struct KeyPairList {
    items: Vec<KeyPair>,
    total_count: i32,
}

#[Object(name = "KeyPairList", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl KeyPairList {
    /// The page.
    async fn items(&self) -> &[KeyPair] {
        &self.items
    }
    /// How many keypairs match in all.
    async fn total_count(&self) -> i32 {
        self.total_count
    }
}

/// The fields `keypair_list` can filter and order by (the original's).
pub fn keypair_fields() -> Vec<FieldSpec> {
    use keypair::Column as C;
    let col = |c: C| Target::Column(column(keypair::Entity, c));
    let spec = |name, kind, target| FieldSpec { name, kind, target };
    let owner =
        |value| Target::Related { outer: column(keypair::Entity, C::User), table: "users", key: "uuid", column: value };
    vec![
        spec("access_key", Kind::Text, col(C::AccessKey)),
        spec("user_id", Kind::Text, col(C::UserId)),
        spec("email", Kind::Text, col(C::UserId)),
        spec("full_name", Kind::Text, owner("full_name")),
        spec("domain_name", Kind::Text, owner("domain_name")),
        spec("is_active", Kind::Bool, col(C::IsActive)),
        spec("is_admin", Kind::Bool, col(C::IsAdmin)),
        spec("resource_policy", Kind::Text, col(C::ResourcePolicy)),
        spec("created_at", Kind::Time, col(C::CreatedAt)),
        spec("last_used", Kind::Time, col(C::LastUsed)),
        spec("rate_limit", Kind::Int, col(C::RateLimit)),
        spec("num_queries", Kind::Int, col(C::NumQueries)),
        spec("ssh_public_key", Kind::Text, col(C::SshPublicKey)),
    ]
}

/// The keypair roots.
#[derive(Debug, Default)]
pub struct KeyPairQuery;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl KeyPairQuery {
    /// A keypair: the caller's own without arguments. A user may name only their own; a
    /// domain admin any of their domain; a superadmin any. Null when there is no such
    /// keypair (in the caller's domain, for a domain admin).
    async fn keypair(
        &self,
        ctx: &Context<'_>,
        domain_name: Option<String>,
        access_key: Option<String>,
    ) -> Result<Option<KeyPair>> {
        let gql = ctx.data::<GqlContext>()?;
        let scope = scoped(&gql.auth, domain_name, access_key, UserKey::AccessKey, true)?;
        let db = gql.db.as_ref();
        let Some(access_key) = scope.user else { return Ok(None) };
        let Some((row, owner)) = repo::find_keypair_with_user(db, &access_key).await.map_err(db_error)? else {
            return Ok(None);
        };
        if let Some(domain) = &scope.domain_name {
            if &owner.domain_name != domain {
                return Ok(None);
            }
        }
        let projects =
            repo::groups_of_user(db, owner.uuid).await.map_err(db_error)?.into_iter().map(|g| g.name).collect();
        Ok(Some(KeyPair { row, owner: Some(owner), projects }))
    }

    /// A page of keypairs (admins): of `domain_name` (a domain admin: only their own), of the
    /// user `email`, active or not (`is_active`), newest first unless `order` says otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn keypair_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        email: Option<String>,
        is_active: Option<bool>,
    ) -> Result<KeyPairList> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let (limit, offset) = page_bounds(limit, offset)?;
        let scope = scoped(&gql.auth, domain_name, None, UserKey::AccessKey, false)?;
        let db = gql.db.as_ref();
        let (extra, order) = filter_and_order(db, &keypair_fields(), filter.as_deref(), order.as_deref())?;
        let mut condition = Condition::all();
        if let Some(domain) = &scope.domain_name {
            condition = condition.add(repo::keypair_in_domain(domain));
        }
        if let Some(email) = email {
            condition = condition.add(keypair::Column::UserId.eq(email));
        }
        if let Some(is_active) = is_active {
            condition = condition.add(keypair::Column::IsActive.eq(is_active));
        }
        if let Some(extra) = extra {
            condition = condition.add(extra);
        }
        let page = repo::Page { limit, offset, order };
        let (rows, total) = repo::keypair_page(db, condition, &page).await.map_err(db_error)?;
        let groups = repo::group_names_of_users(db, rows.iter().map(|(k, _)| k.user)).await.map_err(db_error)?;
        let items = rows
            .into_iter()
            .map(|(row, owner)| {
                let projects =
                    groups.get(&row.user).map(|gs| gs.iter().map(|g| g.name.clone()).collect()).unwrap_or_default();
                KeyPair { row, owner, projects }
            })
            .collect();
        Ok(KeyPairList { items, total_count: i32::try_from(total).unwrap_or(i32::MAX) })
    }
}
