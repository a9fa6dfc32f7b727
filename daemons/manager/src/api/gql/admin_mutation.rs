//! The rest of the administration mutations the official CLI sends: `admin domain update /
//! delete / purge`, `admin group delete / purge`, `admin user purge`, `admin scaling-group
//! update / delete / disassociate-scaling-group / associate-user-group /
//! disassociate-user-group` (and their `*_all_*` forms), keypair associations, and `admin
//! keypair-resource-policy update / delete`, with the original's input type names
//! (`ModifyDomainInput`, `PurgeUserInput`, `ModifyScalingGroupInput`,
//! `ModifyKeyPairResourcePolicyInput`).
//!
//! The conventions are those of [`super::mutation`]: `{ok, msg}` results, bad input and
//! unknown names answer `ok: false` with a `msg` naming the argument (`invalid name: there is
//! no domain "x"`) and change nothing; a caller without the role gets a "Forbidden
//! operation." GraphQL error. Domains, scaling groups, associations and keypair resource
//! policies are for superadmins; groups and users for admins (a domain admin in their
//! domain, never of a superadmin).
//!
//! Deletes are soft (`is_active` false), purges hard and refused while the object is in use
//! (see [`crate::db::repo::purge_domain`] and its neighbours for what counts and what goes
//! with it). A purge deletes folders' rows in its transaction, then their directories on the
//! storage host when this endpoint has it ([`GqlContext::storage`]). Purging a user or
//! renaming a domain drops the affected keypairs from the API's credential cache.
//!
//! `disassociate_scaling_group_with_user_group` takes `user_group: String!` (the client
//! declares its variable so; a `UUID!` argument would fail validation) and parses it here.

use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result};

use super::mutation::{
    check_name, invalidate, json_object, outcome, policies_changed, require_domain, result_type, slots, try_outcome,
    Outcome,
};
use super::org::{Domain, Group};
use super::policy::KeyPairResourcePolicy;
use super::scalars::{BigInt, JsonString, Uuid};
use super::{db_error, forbidden, require_admin, require_superadmin, GqlContext};
use crate::api::auth::Role;
use crate::db::entities::vfolder;
use crate::db::repo;
use crate::db::types::{DefaultForUnspecified, UserRole};
use crate::db::DbError;

result_type!(
    /// The result of `modify_domain`.
    ModifyDomain, "ModifyDomain", domain: Domain
);
result_type!(
    /// The result of `delete_domain`.
    DeleteDomain, "DeleteDomain"
);
result_type!(
    /// The result of `purge_domain`.
    PurgeDomain, "PurgeDomain"
);
result_type!(
    /// The result of `delete_group`.
    DeleteGroup, "DeleteGroup", group: Group
);
result_type!(
    /// The result of `purge_group`.
    PurgeGroup, "PurgeGroup"
);
result_type!(
    /// The result of `purge_user`.
    PurgeUser, "PurgeUser"
);
result_type!(
    /// The result of `modify_scaling_group`.
    ModifyScalingGroup, "ModifyScalingGroup"
);
result_type!(
    /// The result of `delete_scaling_group`.
    DeleteScalingGroup, "DeleteScalingGroup"
);
result_type!(
    /// The result of `disassociate_scaling_group_with_domain`.
    DisassociateScalingGroupWithDomain, "DisassociateScalingGroupWithDomain"
);
result_type!(
    /// The result of `disassociate_all_scaling_groups_with_domain`.
    DisassociateAllScalingGroupsWithDomain, "DisassociateAllScalingGroupsWithDomain"
);
result_type!(
    /// The result of `associate_scaling_group_with_user_group`.
    AssociateScalingGroupWithUserGroup, "AssociateScalingGroupWithUserGroup"
);
result_type!(
    /// The result of `disassociate_scaling_group_with_user_group`.
    DisassociateScalingGroupWithUserGroup, "DisassociateScalingGroupWithUserGroup"
);
result_type!(
    /// The result of `disassociate_all_scaling_groups_with_group`.
    DisassociateAllScalingGroupsWithGroup, "DisassociateAllScalingGroupsWithGroup"
);
result_type!(
    /// The result of `associate_scaling_group_with_keypair`.
    AssociateScalingGroupWithKeyPair, "AssociateScalingGroupWithKeyPair"
);
result_type!(
    /// The result of `disassociate_scaling_group_with_keypair`.
    DisassociateScalingGroupWithKeyPair, "DisassociateScalingGroupWithKeyPair"
);
result_type!(
    /// The result of `modify_keypair_resource_policy`.
    ModifyKeyPairResourcePolicy, "ModifyKeyPairResourcePolicy"
);
result_type!(
    /// The result of `delete_keypair_resource_policy`.
    DeleteKeyPairResourcePolicy, "DeleteKeyPairResourcePolicy"
);

/// Changes to a domain (`admin domain update`); an absent field is left as it is, and `null`
/// clears `description` and `integration_id`.
#[derive(Debug, InputObject)]
#[graphql(name = "ModifyDomainInput", rename_fields = "snake_case")]
pub struct ModifyDomainInput {
    /// A new name (groups, users, sessions and associations follow it).
    pub name: Option<String>,
    /// Free text.
    pub description: MaybeUndefined<String>,
    /// Whether the domain may be used.
    pub is_active: Option<bool>,
    /// The domain's resource limit.
    pub total_resource_slots: Option<JsonString>,
    /// Storage hosts and permissions.
    pub allowed_vfolder_hosts: Option<JsonString>,
    /// Registries the domain may pull from.
    pub allowed_docker_registries: Option<Vec<String>>,
    /// An identifier in an external system.
    pub integration_id: MaybeUndefined<String>,
}

/// How to purge a user (`admin user purge`).
#[derive(Debug, InputObject)]
#[graphql(name = "PurgeUserInput", rename_fields = "snake_case")]
pub struct PurgeUserInput {
    /// Delete the user's folders shared with others too, instead of giving them to the
    /// requesting administrator (default false).
    pub purge_shared_vfolders: Option<bool>,
}

/// Changes to a scaling group (`admin scaling-group update`); an absent field is left as it
/// is, and `null` clears `description`, `wsproxy_addr` and `wsproxy_api_token`.
#[derive(Debug, InputObject)]
#[graphql(name = "ModifyScalingGroupInput", rename_fields = "snake_case")]
pub struct ModifyScalingGroupInput {
    /// Free text.
    pub description: MaybeUndefined<String>,
    /// Whether sessions may be scheduled into it.
    pub is_active: Option<bool>,
    /// Whether every user of an associated domain or group may see it.
    pub is_public: Option<bool>,
    /// How agents join: `static`.
    pub driver: Option<String>,
    /// Driver options (an object).
    pub driver_opts: Option<JsonString>,
    /// The queue policy: `fifo`, `lifo` or `drf`.
    pub scheduler: Option<String>,
    /// Scheduler options (an object).
    pub scheduler_opts: Option<JsonString>,
    /// Whether kernels use the host's network.
    pub use_host_network: Option<bool>,
    /// The app proxy's address.
    pub wsproxy_addr: MaybeUndefined<String>,
    /// The app proxy's API token.
    pub wsproxy_api_token: MaybeUndefined<String>,
}

/// Changes to a keypair resource policy (`admin keypair-resource-policy update`); null
/// leaves a field as it is.
#[derive(Debug, InputObject)]
#[graphql(name = "ModifyKeyPairResourcePolicyInput", rename_fields = "snake_case")]
pub struct ModifyKeyPairResourcePolicyInput {
    /// `LIMITED` or `UNLIMITED`: what unlisted slots mean.
    pub default_for_unspecified: Option<String>,
    /// The most a keypair may occupy at once.
    pub total_resource_slots: Option<JsonString>,
    /// Seconds a session may live (0: forever).
    pub max_session_lifetime: Option<i32>,
    /// Sessions a keypair may run at once (0: unlimited).
    pub max_concurrent_sessions: Option<i32>,
    /// SFTP sessions a keypair may run at once.
    pub max_concurrent_sftp_sessions: Option<i32>,
    /// Kernels one session may have (1 or more).
    pub max_containers_per_session: Option<i32>,
    /// Seconds of idleness before a session is terminated (0: never).
    pub idle_timeout: Option<BigInt>,
    /// Storage hosts and permissions.
    pub allowed_vfolder_hosts: Option<JsonString>,
    /// Folders a keypair may create (0: unlimited).
    pub max_vfolder_count: Option<i32>,
    /// Bytes per folder (0: unlimited).
    pub max_vfolder_size: Option<BigInt>,
    /// Bytes per quota scope (-1: unlimited).
    pub max_quota_scope_size: Option<BigInt>,
}

/// `MaybeUndefined` as a change: absent → leave, null → clear, a value → set.
fn change<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

/// A scaling group's driver: only `static` is supported.
fn check_driver(driver: &str) -> Outcome<()> {
    if driver == "static" {
        Ok(())
    } else {
        Err(format!("invalid driver: {driver:?} is not supported (expected \"static\")"))
    }
}

/// A scaling group's scheduler, normalised: `fifo`, `lifo` or `drf`.
fn check_scheduler(scheduler: &str) -> Outcome<String> {
    let normal = scheduler.trim().to_ascii_lowercase();
    if matches!(normal.as_str(), "fifo" | "lifo" | "drf") {
        Ok(normal)
    } else {
        Err(format!("invalid scheduler: {scheduler:?} is not one of fifo, lifo, drf"))
    }
}

/// A group id given as a string (the client's `user_group: String!`).
fn parse_group_id(field: &str, text: &str) -> Outcome<uuid::Uuid> {
    uuid::Uuid::parse_str(text.trim()).map_err(|_| format!("invalid {field}: {text:?} is not a UUID"))
}

/// The keypair resource policy changes of `props`, checked as `create_keypair_resource_policy`
/// checks them.
fn policy_changes(props: ModifyKeyPairResourcePolicyInput) -> Outcome<repo::KeypairPolicyChanges> {
    let default_for_unspecified = match props.default_for_unspecified.as_deref() {
        Some(text) => Some(text.parse::<DefaultForUnspecified>().map_err(|e: DbError| e.to_string())?),
        None => None,
    };
    let counts = [
        ("max_session_lifetime", props.max_session_lifetime.map(i64::from)),
        ("max_concurrent_sessions", props.max_concurrent_sessions.map(i64::from)),
        ("max_concurrent_sftp_sessions", props.max_concurrent_sftp_sessions.map(i64::from)),
        ("max_containers_per_session", props.max_containers_per_session.map(i64::from)),
        ("idle_timeout", props.idle_timeout.as_ref().map(|b| b.0)),
        ("max_vfolder_count", props.max_vfolder_count.map(i64::from)),
        ("max_vfolder_size", props.max_vfolder_size.as_ref().map(|b| b.0)),
    ];
    if let Some((field, Some(value))) = counts.iter().find(|(_, v)| v.is_some_and(|v| v < 0)) {
        return Err(format!("invalid {field}: must be 0 or more, got {value}"));
    }
    if let Some(n) = props.max_containers_per_session.filter(|n| *n < 1) {
        return Err(format!("invalid max_containers_per_session: must be 1 or more, got {n}"));
    }
    if let Some(n) = props.max_quota_scope_size.as_ref().map(|b| b.0).filter(|n| *n < -1) {
        return Err(format!("invalid max_quota_scope_size: must be -1 (unlimited) or more, got {n}"));
    }
    Ok(repo::KeypairPolicyChanges {
        default_for_unspecified,
        total_resource_slots: slots("total_resource_slots", props.total_resource_slots.as_ref())?,
        max_session_lifetime: props.max_session_lifetime,
        max_concurrent_sessions: props.max_concurrent_sessions,
        max_concurrent_sftp_sessions: props.max_concurrent_sftp_sessions,
        max_containers_per_session: props.max_containers_per_session,
        idle_timeout: props.idle_timeout.map(|b| b.0),
        allowed_vfolder_hosts: json_object("allowed_vfolder_hosts", props.allowed_vfolder_hosts.as_ref())?
            .map(serde_json::Value::Object),
        max_vfolder_count: props.max_vfolder_count,
        max_vfolder_size: props.max_vfolder_size.map(|b| b.0),
        max_quota_scope_size: props.max_quota_scope_size.map(|b| b.0),
    })
}

/// Removes the directories of deleted folders from their storage hosts, when this endpoint
/// has them. The rows are gone already, so a failure (or a host no longer defined) is
/// logged, not answered.
async fn remove_directories(gql: &GqlContext, folders: &[vfolder::Model]) {
    let Some(volumes) = &gql.storage else {
        if !folders.is_empty() {
            tracing::warn!(
                count = folders.len(),
                "graphql: no storage host here; deleted folders keep their directories"
            );
        }
        return;
    };
    for folder in folders {
        let storage = match volumes.storage_of(&folder.host) {
            Ok(storage) => storage,
            Err(e) => {
                tracing::warn!(folder = %folder.id, host = %folder.host, error = %e, "graphql: deleted folder keeps its directory");
                continue;
            }
        };
        let id = folder.id;
        if let Err(e) = crate::storage::blocking(move || storage.delete_folder(id)).await {
            tracing::warn!(folder = %id, error = %e, "graphql: removing a deleted folder's directory failed");
        }
    }
}

/// Unwraps an outcome or returns the `{ok: false}` of a result type without an object.
macro_rules! try_plain {
    ($result:ty, $value:expr) => {
        match $value {
            Ok(v) => v,
            Err(msg) => return Ok(<$result>::from_outcome::<()>(Err(msg))),
        }
    };
}

/// The administration mutations beyond [`super::mutation::Mutation`].
#[derive(Debug, Default)]
pub struct AdminMutation;

#[Object(name = "AdminMutation", rename_fields = "snake_case", rename_args = "snake_case")]
impl AdminMutation {
    /// Changes a domain, or renames it with `props.name` (superadmin).
    async fn modify_domain(&self, ctx: &Context<'_>, name: String, props: ModifyDomainInput) -> Result<ModifyDomain> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        if let Some(new_name) = &props.name {
            try_outcome!(ModifyDomain, check_name("name", new_name));
        }
        let changes = repo::DomainChanges {
            name: props.name,
            description: change(props.description),
            is_active: props.is_active,
            total_resource_slots: try_outcome!(
                ModifyDomain,
                slots("total_resource_slots", props.total_resource_slots.as_ref())
            ),
            allowed_vfolder_hosts: try_outcome!(
                ModifyDomain,
                json_object("allowed_vfolder_hosts", props.allowed_vfolder_hosts.as_ref())
            )
            .map(serde_json::Value::Object),
            allowed_docker_registries: props.allowed_docker_registries,
            integration_id: change(props.integration_id),
        };
        let result = outcome(repo::modify_domain(gql.db.as_ref(), &name, &changes).await)?;
        let result = result.map(|(row, stale)| {
            invalidate(gql, stale.iter().map(String::as_str));
            Domain(row)
        });
        Ok(ModifyDomain::from_outcome(result))
    }

    /// Deactivates a domain (superadmin); its rows stay.
    async fn delete_domain(&self, ctx: &Context<'_>, name: String) -> Result<DeleteDomain> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        Ok(DeleteDomain::from_outcome(outcome(repo::soft_delete_domain(gql.db.as_ref(), &name).await)?))
    }

    /// Deletes a domain for good (superadmin); refused while it has users, groups or live
    /// sessions.
    async fn purge_domain(&self, ctx: &Context<'_>, name: String) -> Result<PurgeDomain> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        Ok(PurgeDomain::from_outcome(outcome(repo::purge_domain(gql.db.as_ref(), &name).await)?))
    }

    /// Deactivates a group (admins; a domain admin in their domain).
    async fn delete_group(&self, ctx: &Context<'_>, gid: Uuid) -> Result<DeleteGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        if let Some(current) = repo::get_group(db, gid.0).await.map_err(db_error)? {
            require_domain(&gql.auth, &current.domain_name)?;
        }
        let result = outcome(repo::soft_delete_group(db, gid.0).await)?;
        Ok(DeleteGroup::from_outcome(result.map(Group)))
    }

    /// Deletes a group for good with its folders (admins; a domain admin in their domain);
    /// refused while it has live sessions or a live session mounts one of its folders.
    async fn purge_group(&self, ctx: &Context<'_>, gid: Uuid) -> Result<PurgeGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        if let Some(current) = repo::get_group(db, gid.0).await.map_err(db_error)? {
            require_domain(&gql.auth, &current.domain_name)?;
        }
        let result = outcome(repo::purge_group(db, gid.0).await)?;
        if let Ok(folders) = &result {
            remove_directories(gql, folders).await;
        }
        Ok(PurgeGroup::from_outcome(result))
    }

    /// Deletes a user for good with its keypairs, memberships and folders (admins; a domain
    /// admin in their domain, never of a superadmin). Folders shared with others go to the
    /// caller unless `props.purge_shared_vfolders`. Refused while the user has live sessions.
    async fn purge_user(&self, ctx: &Context<'_>, email: String, props: PurgeUserInput) -> Result<PurgeUser> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        if let Some(current) = repo::find_user_by_email(db, &email).await.map_err(db_error)? {
            require_domain(&gql.auth, &current.domain_name)?;
            if gql.auth.role() != Role::Superadmin && current.role.0 == UserRole::Superadmin {
                return Err(forbidden("only a superadmin may purge a superadmin"));
            }
        }
        let heir = (gql.auth.credential.user_id, gql.auth.credential.email.as_str());
        let purge_shared = props.purge_shared_vfolders.unwrap_or(false);
        let result = outcome(repo::purge_user(db, &email, heir, purge_shared).await)?;
        if let Ok(purged) = &result {
            invalidate(gql, purged.access_keys.iter().map(String::as_str));
            remove_directories(gql, &purged.deleted_folders).await;
        }
        Ok(PurgeUser::from_outcome(result))
    }

    /// Changes a scaling group (superadmin), checked as `create_scaling_group` checks.
    async fn modify_scaling_group(
        &self,
        ctx: &Context<'_>,
        name: String,
        props: ModifyScalingGroupInput,
    ) -> Result<ModifyScalingGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        if let Some(driver) = &props.driver {
            try_plain!(ModifyScalingGroup, check_driver(driver));
        }
        let scheduler = match props.scheduler.as_deref() {
            Some(text) => Some(try_plain!(ModifyScalingGroup, check_scheduler(text))),
            None => None,
        };
        let driver_opts = try_plain!(ModifyScalingGroup, json_object("driver_opts", props.driver_opts.as_ref()));
        let scheduler_opts =
            try_plain!(ModifyScalingGroup, json_object("scheduler_opts", props.scheduler_opts.as_ref()));
        let changes = repo::ScalingGroupChanges {
            description: change(props.description),
            is_active: props.is_active,
            is_public: props.is_public,
            driver: props.driver,
            driver_opts: driver_opts.map(serde_json::Value::Object),
            scheduler,
            scheduler_opts: scheduler_opts.map(serde_json::Value::Object),
            use_host_network: props.use_host_network,
            wsproxy_addr: change(props.wsproxy_addr),
            wsproxy_api_token: change(props.wsproxy_api_token),
        };
        let result = outcome(repo::modify_scaling_group(gql.db.as_ref(), &name, &changes).await)?;
        Ok(ModifyScalingGroup::from_outcome(result))
    }

    /// Deletes a scaling group (superadmin); refused while agents belong to it or live
    /// sessions run in it.
    async fn delete_scaling_group(&self, ctx: &Context<'_>, name: String) -> Result<DeleteScalingGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        Ok(DeleteScalingGroup::from_outcome(outcome(repo::delete_scaling_group(gql.db.as_ref(), &name).await)?))
    }

    /// Takes a scaling group away from a domain (superadmin).
    async fn disassociate_scaling_group_with_domain(
        &self,
        ctx: &Context<'_>,
        scaling_group: String,
        domain: String,
    ) -> Result<DisassociateScalingGroupWithDomain> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let result =
            outcome(repo::disassociate_scaling_group_with_domain(gql.db.as_ref(), &scaling_group, &domain).await)?;
        Ok(DisassociateScalingGroupWithDomain::from_outcome(result))
    }

    /// Takes every scaling group away from a domain (superadmin); none to take is a success.
    async fn disassociate_all_scaling_groups_with_domain(
        &self,
        ctx: &Context<'_>,
        domain: String,
    ) -> Result<DisassociateAllScalingGroupsWithDomain> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let result = outcome(repo::disassociate_all_scaling_groups_with_domain(gql.db.as_ref(), &domain).await)?;
        Ok(DisassociateAllScalingGroupsWithDomain::from_outcome(result))
    }

    /// Lets a group (project) use a scaling group (superadmin).
    async fn associate_scaling_group_with_user_group(
        &self,
        ctx: &Context<'_>,
        scaling_group: String,
        user_group: Uuid,
    ) -> Result<AssociateScalingGroupWithUserGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let result = outcome(
            repo::associate_scaling_group_with_user_group(gql.db.as_ref(), &scaling_group, user_group.0).await,
        )?;
        Ok(AssociateScalingGroupWithUserGroup::from_outcome(result))
    }

    /// Takes a scaling group away from a group (superadmin). `user_group` is the group's id
    /// as a string, as the client sends it.
    async fn disassociate_scaling_group_with_user_group(
        &self,
        ctx: &Context<'_>,
        scaling_group: String,
        user_group: String,
    ) -> Result<DisassociateScalingGroupWithUserGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let group = try_plain!(DisassociateScalingGroupWithUserGroup, parse_group_id("user_group", &user_group));
        let result =
            outcome(repo::disassociate_scaling_group_with_user_group(gql.db.as_ref(), &scaling_group, group).await)?;
        Ok(DisassociateScalingGroupWithUserGroup::from_outcome(result))
    }

    /// Takes every scaling group away from a group (superadmin); none to take is a success.
    async fn disassociate_all_scaling_groups_with_group(
        &self,
        ctx: &Context<'_>,
        user_group: Uuid,
    ) -> Result<DisassociateAllScalingGroupsWithGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let result = outcome(repo::disassociate_all_scaling_groups_with_group(gql.db.as_ref(), user_group.0).await)?;
        Ok(DisassociateAllScalingGroupsWithGroup::from_outcome(result))
    }

    /// Lets a keypair use a scaling group (superadmin).
    async fn associate_scaling_group_with_keypair(
        &self,
        ctx: &Context<'_>,
        scaling_group: String,
        access_key: String,
    ) -> Result<AssociateScalingGroupWithKeyPair> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let result = outcome(
            repo::associate_scaling_group_with_keypair_checked(gql.db.as_ref(), &scaling_group, &access_key).await,
        )?;
        Ok(AssociateScalingGroupWithKeyPair::from_outcome(result))
    }

    /// Takes a scaling group away from a keypair (superadmin).
    async fn disassociate_scaling_group_with_keypair(
        &self,
        ctx: &Context<'_>,
        scaling_group: String,
        access_key: String,
    ) -> Result<DisassociateScalingGroupWithKeyPair> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let result =
            outcome(repo::disassociate_scaling_group_with_keypair(gql.db.as_ref(), &scaling_group, &access_key).await)?;
        Ok(DisassociateScalingGroupWithKeyPair::from_outcome(result))
    }

    /// Changes a keypair resource policy (superadmin), checked as
    /// `create_keypair_resource_policy` checks.
    async fn modify_keypair_resource_policy(
        &self,
        ctx: &Context<'_>,
        name: String,
        props: ModifyKeyPairResourcePolicyInput,
    ) -> Result<ModifyKeyPairResourcePolicy> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let changes = try_plain!(ModifyKeyPairResourcePolicy, policy_changes(props));
        let result = outcome(repo::modify_keypair_resource_policy(gql.db.as_ref(), &name, &changes).await)?;
        policies_changed(gql);
        Ok(ModifyKeyPairResourcePolicy::from_outcome(result.map(KeyPairResourcePolicy)))
    }

    /// Deletes a keypair resource policy (superadmin); refused while keypairs use it, and for
    /// `default`.
    async fn delete_keypair_resource_policy(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<DeleteKeyPairResourcePolicy> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let result = outcome(repo::delete_keypair_resource_policy(gql.db.as_ref(), &name).await)?;
        policies_changed(gql);
        Ok(DeleteKeyPairResourcePolicy::from_outcome(result))
    }
}

#[cfg(test)]
mod tests {
    use bai_core::ResourceSlot;

    use super::*;

    fn empty_policy() -> ModifyKeyPairResourcePolicyInput {
        ModifyKeyPairResourcePolicyInput {
            default_for_unspecified: None,
            total_resource_slots: None,
            max_session_lifetime: None,
            max_concurrent_sessions: None,
            max_concurrent_sftp_sessions: None,
            max_containers_per_session: None,
            idle_timeout: None,
            allowed_vfolder_hosts: None,
            max_vfolder_count: None,
            max_vfolder_size: None,
            max_quota_scope_size: None,
        }
    }

    #[test]
    fn policy_changes_are_checked_like_creation() {
        let changes = policy_changes(empty_policy()).unwrap();
        assert!(changes.max_concurrent_sessions.is_none() && changes.total_resource_slots.is_none());
        let mut props = empty_policy();
        props.idle_timeout = Some(BigInt(-5));
        assert_eq!(policy_changes(props).unwrap_err(), "invalid idle_timeout: must be 0 or more, got -5");
        let mut props = empty_policy();
        props.max_containers_per_session = Some(0);
        assert!(policy_changes(props).unwrap_err().contains("max_containers_per_session"));
        let mut props = empty_policy();
        props.default_for_unspecified = Some("SOMETIMES".into());
        assert!(policy_changes(props).unwrap_err().contains("default_for_unspecified"));
        let mut props = empty_policy();
        props.total_resource_slots = Some(JsonString(r#"{"mem": "1g"}"#.into()));
        let slots: ResourceSlot = policy_changes(props).unwrap().total_resource_slots.unwrap();
        assert_eq!(slots.get("mem"), (1u64 << 30).into());
    }

    #[test]
    fn schema_has_the_original_names() {
        let sdl = super::super::schema().sdl();
        for needle in [
            "type Mutation {",
            "input ModifyDomainInput",
            "input PurgeUserInput",
            "input ModifyScalingGroupInput",
            "input ModifyKeyPairResourcePolicyInput",
            "modify_domain(name: String!, props: ModifyDomainInput!): ModifyDomain!",
            "purge_user(email: String!, props: PurgeUserInput!): PurgeUser!",
            "purge_group(gid: UUID!): PurgeGroup!",
            "associate_scaling_group_with_user_group(scaling_group: String!, user_group: UUID!)",
            "disassociate_scaling_group_with_user_group(scaling_group: String!, user_group: String!)",
            "disassociate_all_scaling_groups_with_group(user_group: UUID!)",
            "associate_scaling_group_with_keypair(scaling_group: String!, access_key: String!)",
            "delete_keypair_resource_policy(name: String!): DeleteKeyPairResourcePolicy!",
            "create_keypair(user_id: String!, props: KeyPairInput!): CreateKeyPair!",
        ] {
            assert!(sdl.contains(needle), "{needle} not in:\n{sdl}");
        }
    }

    #[test]
    fn scaling_group_fields_and_group_ids_are_checked() {
        assert!(check_driver("static").is_ok());
        assert!(check_driver("aws").unwrap_err().starts_with("invalid driver"));
        assert_eq!(check_scheduler(" DRF ").unwrap(), "drf");
        assert!(check_scheduler("random").unwrap_err().starts_with("invalid scheduler"));
        assert!(parse_group_id("user_group", "nope").unwrap_err().starts_with("invalid user_group"));
        assert!(change(MaybeUndefined::<String>::Undefined).is_none());
        assert_eq!(change(MaybeUndefined::<String>::Null), Some(None));
    }
}
