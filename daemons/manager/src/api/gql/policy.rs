//! Keypair resource policies and resource presets: the roots `keypair_resource_policy`,
//! `keypair_resource_policies` (superadmin) and `resource_presets`, and the types
//! `KeyPairResourcePolicy` and `ResourcePreset`.
//!
//! `keypair_resource_policy` without a name answers the policy of the caller's keypair; a
//! regular user may name only that one. `total_resource_slots` and `allowed_vfolder_hosts`
//! are JSONStrings, never null; `max_vfolder_size` and `idle_timeout` are numbers.

use async_graphql::{Context, Object, Result};

use super::scalars::{BigInt, DateTime, JsonString};
use super::{db_error, forbidden, require_superadmin, GqlContext};
use crate::api::auth::Role;
use crate::db::entities::{keypair_resource_policy, resource_preset};
use crate::db::repo;

/// A keypair resource policy.
#[derive(Debug, Clone)]
pub struct KeyPairResourcePolicy(pub(crate) keypair_resource_policy::Model);

#[Object(name = "KeyPairResourcePolicy", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl KeyPairResourcePolicy {
    /// The name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// `LIMITED` or `UNLIMITED`: what unlisted slots mean.
    async fn default_for_unspecified(&self) -> &'static str {
        self.0.default_for_unspecified.0.as_str()
    }
    /// The most a keypair may occupy at once.
    async fn total_resource_slots(&self) -> JsonString {
        JsonString::serialize(&self.0.total_resource_slots.0)
    }
    /// Seconds a session may live (0: forever).
    async fn max_session_lifetime(&self) -> i32 {
        self.0.max_session_lifetime
    }
    /// Sessions a keypair may run at once.
    async fn max_concurrent_sessions(&self) -> i32 {
        self.0.max_concurrent_sessions
    }
    /// SFTP sessions a keypair may run at once.
    async fn max_concurrent_sftp_sessions(&self) -> i32 {
        self.0.max_concurrent_sftp_sessions
    }
    /// PENDING sessions a keypair may have (null: unlimited).
    async fn max_pending_session_count(&self) -> Option<i32> {
        self.0.max_pending_session_count
    }
    /// Kernels one session may have.
    async fn max_containers_per_session(&self) -> i32 {
        self.0.max_containers_per_session
    }
    /// Seconds of idleness before a session is terminated (0: never).
    async fn idle_timeout(&self) -> BigInt {
        BigInt(self.0.idle_timeout)
    }
    /// Storage hosts and the permissions on each.
    async fn allowed_vfolder_hosts(&self) -> JsonString {
        JsonString::of(&self.0.allowed_vfolder_hosts)
    }
    /// Folders a keypair may create (0: unlimited).
    async fn max_vfolder_count(&self) -> i32 {
        self.0.max_vfolder_count
    }
    /// Bytes per folder (0: unlimited).
    async fn max_vfolder_size(&self) -> BigInt {
        BigInt(self.0.max_vfolder_size)
    }
    /// Bytes per quota scope (-1: unlimited).
    async fn max_quota_scope_size(&self) -> BigInt {
        BigInt(self.0.max_quota_scope_size)
    }
}

/// A resource preset.
#[derive(Debug, Clone)]
pub struct ResourcePreset(resource_preset::Model);

#[Object(name = "ResourcePreset", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl ResourcePreset {
    /// The name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The slots it requests.
    async fn resource_slots(&self) -> JsonString {
        JsonString::serialize(&self.0.resource_slots.0)
    }
    /// Shared memory in bytes (null: the default).
    async fn shared_memory(&self) -> Option<BigInt> {
        self.0.shared_memory.map(BigInt)
    }
    /// The only scaling group it applies to (null: every group).
    async fn scaling_group_name(&self) -> Option<&str> {
        self.0.scaling_group_name.as_deref()
    }
}

/// The policy and preset roots.
#[derive(Debug, Default)]
pub struct PolicyQuery;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl PolicyQuery {
    /// A keypair resource policy: the caller's keypair's without `name`. A regular user may
    /// name only that one.
    async fn keypair_resource_policy(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
    ) -> Result<Option<KeyPairResourcePolicy>> {
        let gql = ctx.data::<GqlContext>()?;
        let own = &gql.auth.credential.resource_policy;
        let name = name.unwrap_or_else(|| own.clone());
        if gql.auth.role() == Role::User && &name != own {
            return Err(forbidden("a user may only query their own keypair's resource policy"));
        }
        Ok(repo::get_keypair_resource_policy(gql.db.as_ref(), &name)
            .await
            .map_err(db_error)?
            .map(KeyPairResourcePolicy))
    }

    /// Every keypair resource policy, by name (superadmin).
    async fn keypair_resource_policies(&self, ctx: &Context<'_>) -> Result<Vec<KeyPairResourcePolicy>> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let rows = repo::list_keypair_resource_policies(gql.db.as_ref()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(KeyPairResourcePolicy).collect())
    }

    /// Every resource preset, by name.
    async fn resource_presets(&self, ctx: &Context<'_>) -> Result<Vec<ResourcePreset>> {
        let gql = ctx.data::<GqlContext>()?;
        let rows = repo::list_resource_presets(gql.db.as_ref(), None).await.map_err(db_error)?;
        Ok(rows.into_iter().map(ResourcePreset).collect())
    }
}
