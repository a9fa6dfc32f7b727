//! The organisation: domains, groups (projects) and scaling groups — the roots `domain`,
//! `domains`, `group`, `groups`, `groups_by_name`, `scaling_group` and `scaling_groups`, and
//! the types `Domain`, `Group` and `ScalingGroup`.
//!
//! Visibility: `domains`, `scaling_group` and `scaling_groups` are for superadmins; `domain`
//! answers the caller's own domain to anyone (another one only to a superadmin); the group
//! roots default to the caller's domain, where a domain admin sees every group and a user
//! only the groups they belong to. Slot fields are JSONStrings, never null.

use async_graphql::{Context, Object, Result};

use super::scalars::{DateTime, JsonString, Uuid};
use super::{db_error, forbidden, require_superadmin, GqlContext};
use crate::api::auth::{AuthContext, Role};
use crate::db::entities::{domain, group, scaling_group};
use crate::db::repo;

/// A domain.
#[derive(Debug, Clone)]
pub struct Domain(pub(crate) domain::Model);

#[Object(name = "Domain", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl Domain {
    /// The name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Free text.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Whether the domain may be used.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// When it was last changed.
    async fn modified_at(&self) -> DateTime {
        DateTime(self.0.modified_at)
    }
    /// The domain's resource limit.
    async fn total_resource_slots(&self) -> JsonString {
        JsonString::serialize(&self.0.total_resource_slots.0)
    }
    /// Storage hosts and the permissions on each.
    async fn allowed_vfolder_hosts(&self) -> JsonString {
        JsonString::of(&self.0.allowed_vfolder_hosts)
    }
    /// Registries the domain may pull from.
    async fn allowed_docker_registries(&self) -> &[String] {
        &self.0.allowed_docker_registries.0
    }
    /// An identifier in an external system.
    async fn integration_id(&self) -> Option<&str> {
        self.0.integration_id.as_deref()
    }
}

/// A group (project).
#[derive(Debug, Clone)]
pub struct Group(pub(crate) group::Model);

#[Object(name = "Group", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl Group {
    /// The id.
    async fn id(&self) -> Uuid {
        Uuid(self.0.id)
    }
    /// The name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Free text.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Whether the group may be used.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// When it was last changed.
    async fn modified_at(&self) -> DateTime {
        DateTime(self.0.modified_at)
    }
    /// The domain.
    async fn domain_name(&self) -> &str {
        &self.0.domain_name
    }
    /// The group's resource limit.
    async fn total_resource_slots(&self) -> JsonString {
        JsonString::serialize(&self.0.total_resource_slots.0)
    }
    /// Storage hosts and the permissions on each.
    async fn allowed_vfolder_hosts(&self) -> JsonString {
        JsonString::of(&self.0.allowed_vfolder_hosts)
    }
    /// An identifier in an external system.
    async fn integration_id(&self) -> Option<&str> {
        self.0.integration_id.as_deref()
    }
    /// The project resource policy.
    async fn resource_policy(&self) -> &str {
        &self.0.resource_policy
    }
    /// `GENERAL` or `MODEL_STORE`.
    #[graphql(name = "type")]
    async fn group_type(&self) -> String {
        self.0.r#type.0.as_str().to_ascii_uppercase().replace('-', "_")
    }
}

/// A scaling group.
#[derive(Debug, Clone)]
pub struct ScalingGroup(pub(crate) scaling_group::Model);

#[Object(name = "ScalingGroup", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl ScalingGroup {
    /// The name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// This manager's samples of the group's ALIVE agents over the last hour, oldest first
    /// (bai): `[{"at", "alive_agents", "capacity": {slot: n}, "used": {slot: n}}]`.
    async fn utilisation_history(&self, ctx: &Context<'_>) -> Result<JsonString> {
        let gql = ctx.data::<GqlContext>()?;
        let samples = gql.manager.as_ref().map(|m| m.utilisation().history(&self.0.name)).unwrap_or_default();
        Ok(JsonString(serde_json::to_string(&samples)?))
    }
    /// Free text.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Whether sessions may be scheduled into it.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// Whether every user of an associated domain or group may see it.
    async fn is_public(&self) -> bool {
        self.0.is_public
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// The app proxy's address.
    async fn wsproxy_addr(&self) -> Option<&str> {
        self.0.wsproxy_addr.as_deref()
    }
    /// The app proxy's API token.
    async fn wsproxy_api_token(&self) -> Option<&str> {
        self.0.wsproxy_api_token.as_deref()
    }
    /// How agents join (`static`).
    async fn driver(&self) -> &str {
        &self.0.driver
    }
    /// Driver options.
    async fn driver_opts(&self) -> JsonString {
        JsonString::of(&self.0.driver_opts)
    }
    /// The queue policy: `fifo`, `lifo` or `drf`.
    async fn scheduler(&self) -> &str {
        &self.0.scheduler
    }
    /// Scheduler options.
    async fn scheduler_opts(&self) -> JsonString {
        JsonString::of(&self.0.scheduler_opts)
    }
    /// Whether kernels use the host's network.
    async fn use_host_network(&self) -> bool {
        self.0.use_host_network
    }
}

/// The domain a group query runs in: the named one (another than the caller's only for a
/// superadmin), else the caller's.
fn group_domain(auth: &AuthContext, domain_name: Option<String>) -> Result<String> {
    let own = &auth.credential.domain_name;
    match domain_name {
        Some(d) if &d != own && auth.role() != Role::Superadmin => {
            Err(forbidden("only a superadmin may query the groups of another domain"))
        }
        Some(d) => Ok(d),
        None => Ok(own.clone()),
    }
}

/// Only the groups a regular user belongs to.
fn member_filter(auth: &AuthContext) -> Option<uuid::Uuid> {
    (auth.role() == Role::User).then_some(auth.credential.user_id)
}

/// The organisation roots.
#[derive(Debug, Default)]
pub struct OrgQuery;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl OrgQuery {
    /// A domain: the caller's without `name`; another only for a superadmin.
    async fn domain(&self, ctx: &Context<'_>, name: Option<String>) -> Result<Option<Domain>> {
        let gql = ctx.data::<GqlContext>()?;
        let own = &gql.auth.credential.domain_name;
        let name = name.unwrap_or_else(|| own.clone());
        if &name != own && gql.auth.role() != Role::Superadmin {
            return Err(forbidden("only a superadmin may query another domain"));
        }
        Ok(repo::get_domain(gql.db.as_ref(), &name).await.map_err(db_error)?.map(Domain))
    }

    /// Every domain, by name; only active (or inactive) ones with `is_active` (superadmin).
    async fn domains(&self, ctx: &Context<'_>, is_active: Option<bool>) -> Result<Vec<Domain>> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        Ok(repo::find_domains(gql.db.as_ref(), is_active).await.map_err(db_error)?.into_iter().map(Domain).collect())
    }

    /// The group with this id, or null when the caller may not see it (a domain admin sees the
    /// groups of their domain, a user the groups they belong to).
    async fn group(&self, ctx: &Context<'_>, id: Uuid, domain_name: Option<String>) -> Result<Option<Group>> {
        let gql = ctx.data::<GqlContext>()?;
        let auth = &gql.auth;
        let db = gql.db.as_ref();
        let Some(row) = repo::get_group(db, id.0).await.map_err(db_error)? else { return Ok(None) };
        let domain = match auth.role() {
            Role::Superadmin => domain_name,
            _ => Some(group_domain(auth, domain_name)?),
        };
        if domain.is_some_and(|d| d != row.domain_name) {
            return Ok(None);
        }
        if let Some(member) = member_filter(auth) {
            if !repo::is_group_member(db, member, row.id).await.map_err(db_error)? {
                return Ok(None);
            }
        }
        Ok(Some(Group(row)))
    }

    /// The groups of `domain_name` (the caller's when null), by name; a user sees only the
    /// groups they belong to.
    async fn groups(
        &self,
        ctx: &Context<'_>,
        domain_name: Option<String>,
        is_active: Option<bool>,
    ) -> Result<Vec<Group>> {
        let gql = ctx.data::<GqlContext>()?;
        let domain = group_domain(&gql.auth, domain_name)?;
        let rows = repo::find_groups(gql.db.as_ref(), Some(&domain), None, is_active, member_filter(&gql.auth))
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(Group).collect())
    }

    /// The groups named `name` in `domain_name` (the caller's when null), as `groups` sees
    /// them.
    async fn groups_by_name(&self, ctx: &Context<'_>, name: String, domain_name: Option<String>) -> Result<Vec<Group>> {
        let gql = ctx.data::<GqlContext>()?;
        let domain = group_domain(&gql.auth, domain_name)?;
        let rows = repo::find_groups(gql.db.as_ref(), Some(&domain), Some(&name), None, member_filter(&gql.auth))
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(Group).collect())
    }

    /// The scaling group with this name, or null (superadmin).
    async fn scaling_group(&self, ctx: &Context<'_>, name: Option<String>) -> Result<Option<ScalingGroup>> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let Some(name) = name else { return Ok(None) };
        Ok(repo::get_scaling_group(gql.db.as_ref(), &name).await.map_err(db_error)?.map(ScalingGroup))
    }

    /// The scaling groups, by name: only `name` when given, only active (or inactive) ones
    /// with `is_active` (superadmin).
    async fn scaling_groups(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        is_active: Option<bool>,
    ) -> Result<Vec<ScalingGroup>> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let rows = repo::list_scaling_groups(gql.db.as_ref(), is_active).await.map_err(db_error)?;
        Ok(rows.into_iter().filter(|sg| name.as_ref().is_none_or(|n| *n == sg.name)).map(ScalingGroup).collect())
    }
}
