//! Virtual folders: the root `vfolder_list` (what `backend.ai vfolder list` reads) and the
//! types `VirtualFolder` and `VirtualFolderList`. Every caller, whatever their role, lists the
//! folders they may use — their own, those shared with them and their projects' folders
//! ([`repo::accessible_vfolders`]) — with `permission` being the caller's effective
//! permission; `group_id` narrows the list to one project's folders. `filter` and `order` are
//! refused with an error until they are supported here.

use async_graphql::{Context, Error, Object, Result, ID};

use super::scalars::{BigInt, DateTime, Uuid};
use super::{db_error, GqlContext};
use crate::db::repo::{self, VFolderAccess};

/// A virtual folder, as the caller sees it.
#[derive(Debug, Clone)]
pub struct VirtualFolder(VFolderAccess);

impl std::ops::Deref for VirtualFolder {
    type Target = crate::db::entities::vfolder::Model;
    fn deref(&self) -> &Self::Target {
        &self.0.folder
    }
}

#[Object(name = "VirtualFolder", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl VirtualFolder {
    /// The folder's id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// The storage host, e.g. `local:volume1`.
    async fn host(&self) -> &str {
        &self.host
    }
    /// The quota scope.
    async fn quota_scope_id(&self) -> Option<&str> {
        self.quota_scope_id.as_deref()
    }
    /// The name.
    async fn name(&self) -> &str {
        &self.name
    }
    /// The owning user (user folders).
    async fn user(&self) -> Option<Uuid> {
        self.user.map(Uuid)
    }
    /// The owning group (project folders).
    async fn group(&self) -> Option<Uuid> {
        self.group.map(Uuid)
    }
    /// Who created it (an e-mail address).
    async fn creator(&self) -> Option<&str> {
        self.creator.as_deref()
    }
    /// `general`, `model` or `data`.
    async fn usage_mode(&self) -> &'static str {
        self.usage_mode.0.as_str()
    }
    /// The caller's permission: `ro`, `rw` or `wd`.
    async fn permission(&self) -> &'static str {
        self.0.permission.as_str()
    }
    /// `user` or `group`.
    async fn ownership_type(&self) -> &'static str {
        self.ownership_type.0.as_str()
    }
    /// The folder's status, e.g. `ready`.
    async fn status(&self) -> &'static str {
        self.status.0.as_str()
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.created_at)
    }
    /// When it was last used.
    async fn last_used(&self) -> Option<DateTime> {
        self.last_used.map(DateTime)
    }
    /// The most files it may hold (0: unlimited).
    async fn max_files(&self) -> i32 {
        self.max_files
    }
    /// Its quota in bytes (null or 0: unlimited).
    async fn max_size(&self) -> Option<BigInt> {
        self.max_size.map(BigInt)
    }
    /// Files in it (as of the last look).
    async fn num_files(&self) -> i32 {
        self.num_files
    }
    /// Bytes in it (as of the last look).
    async fn cur_size(&self) -> BigInt {
        BigInt(self.cur_size)
    }
    /// Whether it may be cloned.
    async fn cloneable(&self) -> bool {
        self.cloneable
    }
}

/// A page of folders.
#[derive(Debug, Clone)]
pub struct VirtualFolderList {
    items: Vec<VirtualFolder>,
    total_count: i32,
}

#[Object(name = "VirtualFolderList", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl VirtualFolderList {
    /// The folders of this page.
    async fn items(&self) -> &[VirtualFolder] {
        &self.items
    }
    /// How many folders there are in all.
    async fn total_count(&self) -> i32 {
        self.total_count
    }
}

/// The folder roots.
#[derive(Debug, Default)]
pub struct VFolderQuery;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl VFolderQuery {
    /// The folders the caller may use (own, shared with them, their projects'), oldest first,
    /// `limit` (1–100) from `offset`; only project `group_id`'s folders when given.
    #[allow(clippy::too_many_arguments)]
    async fn vfolder_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        group_id: Option<Uuid>,
        access_key: Option<String>,
    ) -> Result<VirtualFolderList> {
        let gql = ctx.data::<GqlContext>()?;
        if !(1..=100).contains(&limit) || offset < 0 {
            return Err(Error::new("limit must be 1..=100 and offset >= 0"));
        }
        if filter.as_deref().is_some_and(|f| !f.trim().is_empty())
            || order.as_deref().is_some_and(|o| !o.trim().is_empty())
        {
            return Err(Error::new("filter and order are not supported on vfolder_list yet"));
        }
        let own = gql.auth.credential.access_key.as_str();
        if access_key.as_deref().is_some_and(|k| k != own)
            || domain_name.as_deref().is_some_and(|d| d != gql.auth.credential.domain_name)
        {
            return Err(Error::new("only the caller's own folders can be listed yet"));
        }
        let viewer = crate::api::vfolder::viewer(&gql.auth);
        let mut rows = repo::accessible_vfolders(gql.db.as_ref(), &viewer, false).await.map_err(db_error)?;
        if let Some(group) = group_id {
            rows.retain(|a| a.folder.group == Some(group.0));
        }
        let total_count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        let items = rows.into_iter().skip(offset as usize).take(limit as usize).map(VirtualFolder).collect();
        Ok(VirtualFolderList { items, total_count })
    }
}
