//! The mutation root: the administration commands of the official CLI (`admin keypair add /
//! update / activate / deactivate / delete`, `admin user add / update / delete`, `admin group
//! add / update / add-users / remove-users`, `admin domain add`, `admin scaling-group add /
//! associate-scaling-group`, `admin keypair-resource-policy add`) with the original's input
//! type names (`KeyPairInput`, `ModifyKeyPairInput`, `UserInput`, `ModifyUserInput`,
//! `GroupInput`, `ModifyGroupInput`, `DomainInput`, `CreateScalingGroupInput`,
//! `CreateKeyPairResourcePolicyInput`), and the image commands (`admin image rescan`, `admin
//! image alias / dealias`): `rescan_images` starts a background task and answers its
//! `task_id`.
//!
//! Every result is `{ok, msg, <object>?}`. Bad input (an unknown user, domain or policy, a
//! duplicate name, a malformed slot document, …) answers `ok: false` with a `msg` naming the
//! field and changes nothing; a caller without the right role gets a "Forbidden operation."
//! GraphQL error. Superadmins may do everything; a domain admin manages the keypairs, users
//! and groups of their domain (and cannot grant the superadmin role); domains, scaling groups
//! and keypair resource policies are for superadmins. Changes to keypairs and users drop the
//! affected keypairs from the API's credential cache, so a deactivated or deleted keypair
//! stops authenticating at once.

use async_graphql::{Context, InputObject, Object, Result};
use bai_core::ResourceSlot;
use sea_orm::ActiveValue::Set;

use super::keypair::KeyPair;
use super::org::{Domain, Group, ScalingGroup};
use super::policy::KeyPairResourcePolicy;
use super::scalars::{BigInt, JsonString, Uuid};
use super::user::User;
use super::{db_error, forbidden, require_admin, require_superadmin, GqlContext};
use crate::api::auth::{AuthContext, Role};
use crate::db::entities::{domain, group, keypair, keypair_resource_policy, scaling_group};
use crate::db::repo;
use crate::db::types::{DefaultForUnspecified, JsonOf, UserRole, UserStatus, Wire};
use crate::db::DbError;

/// Declares a mutation result type `{ok, msg}` or `{ok, msg, <field>}`.
macro_rules! result_type {
    ($(#[$doc:meta])* $ty:ident, $name:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $ty {
            ok: bool,
            msg: String,
        }

        impl $ty {
            fn from_outcome<T>(outcome: Outcome<T>) -> Self {
                match outcome {
                    Ok(_) => Self { ok: true, msg: "success".into() },
                    Err(msg) => Self { ok: false, msg },
                }
            }
        }

        #[Object(name = $name, serial, rename_fields = "snake_case", rename_args = "snake_case")]
        impl $ty {
            /// Whether the change was made.
            async fn ok(&self) -> bool {
                self.ok
            }
            /// `success`, or why nothing was changed.
            async fn msg(&self) -> &str {
                &self.msg
            }
        }
    };
    ($(#[$doc:meta])* $ty:ident, $name:literal, $field:ident: $sub:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $ty {
            ok: bool,
            msg: String,
            $field: Option<$sub>,
        }

        impl $ty {
            fn from_outcome(outcome: Outcome<$sub>) -> Self {
                match outcome {
                    Ok(value) => Self { ok: true, msg: "success".into(), $field: Some(value) },
                    Err(msg) => Self { ok: false, msg, $field: None },
                }
            }
        }

        #[Object(name = $name, serial, rename_fields = "snake_case", rename_args = "snake_case")]
        impl $ty {
            /// Whether the change was made.
            async fn ok(&self) -> bool {
                self.ok
            }
            /// `success`, or why nothing was changed.
            async fn msg(&self) -> &str {
                &self.msg
            }
            /// The object as it is now (null when nothing was changed).
            async fn $field(&self) -> Option<&$sub> {
                self.$field.as_ref()
            }
        }
    };
}
pub(super) use result_type;

/// What a mutation did: its object, or why it refused (the `msg` of `ok: false`).
pub(super) type Outcome<T> = std::result::Result<T, String>;

/// A repository result as an outcome: validation failures become `ok: false` with their
/// message; database failures stay GraphQL errors.
pub(super) fn outcome<T>(result: std::result::Result<T, DbError>) -> Result<Outcome<T>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(DbError::Db(e)) => Err(db_error(e)),
        Err(e) => Ok(Err(e.to_string())),
    }
}

result_type!(
    /// The result of `create_keypair`.
    CreateKeyPair, "CreateKeyPair", keypair: KeyPair
);
result_type!(
    /// The result of `modify_keypair`.
    ModifyKeyPair, "ModifyKeyPair"
);
result_type!(
    /// The result of `delete_keypair`.
    DeleteKeyPair, "DeleteKeyPair"
);
result_type!(
    /// The result of `create_user`.
    CreateUser, "CreateUser", user: User
);
result_type!(
    /// The result of `modify_user`.
    ModifyUser, "ModifyUser", user: User
);
result_type!(
    /// The result of `delete_user`.
    DeleteUser, "DeleteUser"
);
result_type!(
    /// The result of `create_group`.
    CreateGroup, "CreateGroup", group: Group
);
result_type!(
    /// The result of `modify_group`.
    ModifyGroup, "ModifyGroup", group: Group
);
result_type!(
    /// The result of `create_domain`.
    CreateDomain, "CreateDomain", domain: Domain
);
result_type!(
    /// The result of `create_scaling_group`.
    CreateScalingGroup, "CreateScalingGroup", scaling_group: ScalingGroup
);
result_type!(
    /// The result of `associate_scaling_group_with_domain`.
    AssociateScalingGroupWithDomain, "AssociateScalingGroupWithDomain"
);
result_type!(
    /// The result of `create_keypair_resource_policy`.
    CreateKeyPairResourcePolicy, "CreateKeyPairResourcePolicy", resource_policy: KeyPairResourcePolicy
);

/// A new keypair (`admin keypair add`).
#[derive(Debug, InputObject)]
#[graphql(name = "KeyPairInput", rename_fields = "snake_case")]
pub struct KeyPairInput {
    /// Whether it may sign requests (default true).
    pub is_active: Option<bool>,
    /// Whether it acts as an administrator (default false).
    pub is_admin: Option<bool>,
    /// The keypair resource policy (default `default`).
    pub resource_policy: Option<String>,
    /// Deprecated (moved to the resource policy); ignored.
    pub concurrency_limit: Option<i32>,
    /// Requests per rate-limit window (default 30000).
    pub rate_limit: Option<i32>,
}

/// Changes to a keypair (`admin keypair update / activate / deactivate`); null leaves a
/// field as it is.
#[derive(Debug, InputObject)]
#[graphql(name = "ModifyKeyPairInput", rename_fields = "snake_case")]
pub struct ModifyKeyPairInput {
    /// Whether it may sign requests.
    pub is_active: Option<bool>,
    /// Whether it acts as an administrator.
    pub is_admin: Option<bool>,
    /// The keypair resource policy.
    pub resource_policy: Option<String>,
    /// Deprecated (moved to the resource policy); ignored.
    pub concurrency_limit: Option<i32>,
    /// Requests per rate-limit window.
    pub rate_limit: Option<i32>,
}

/// A new user (`admin user add`).
#[derive(Debug, InputObject)]
#[graphql(name = "UserInput", rename_fields = "snake_case")]
pub struct UserInput {
    /// The login name (the e-mail address when empty).
    pub username: Option<String>,
    /// The password.
    pub password: String,
    /// Whether the password must be changed at the next login (default false).
    pub need_password_change: Option<bool>,
    /// The display name.
    pub full_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Legacy: false means status `inactive`.
    pub is_active: Option<bool>,
    /// `active` (default), `inactive`, `deleted` or `before-verification`.
    pub status: Option<String>,
    /// The domain.
    pub domain_name: String,
    /// `user` (default), `admin`, `superadmin` or `monitor`.
    pub role: Option<String>,
    /// Groups of the domain to join, by id.
    pub group_ids: Option<Vec<String>>,
    /// Addresses the user may log in from.
    pub allowed_client_ip: Option<Vec<String>>,
    /// Whether two-factor login is on (default false).
    pub totp_activated: Option<bool>,
    /// The user resource policy (default `default`).
    pub resource_policy: Option<String>,
    /// Whether the user may use sudo inside sessions (default false).
    pub sudo_session_enabled: Option<bool>,
}

/// Changes to a user (`admin user update`); null leaves a field as it is.
#[derive(Debug, InputObject)]
#[graphql(name = "ModifyUserInput", rename_fields = "snake_case")]
pub struct ModifyUserInput {
    /// The login name.
    pub username: Option<String>,
    /// A new password.
    pub password: Option<String>,
    /// Whether the password must be changed at the next login.
    pub need_password_change: Option<bool>,
    /// The display name.
    pub full_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Legacy: true means status `active`, false `inactive`.
    pub is_active: Option<bool>,
    /// `active`, `inactive`, `deleted` or `before-verification`.
    pub status: Option<String>,
    /// The domain.
    pub domain_name: Option<String>,
    /// `user`, `admin`, `superadmin` or `monitor`.
    pub role: Option<String>,
    /// Replaces the user's groups, by id.
    pub group_ids: Option<Vec<String>>,
    /// Addresses the user may log in from.
    pub allowed_client_ip: Option<Vec<String>>,
    /// Whether two-factor login is on.
    pub totp_activated: Option<bool>,
    /// The user resource policy.
    pub resource_policy: Option<String>,
    /// Whether the user may use sudo inside sessions.
    pub sudo_session_enabled: Option<bool>,
    /// The main access key (one of the user's keypairs).
    pub main_access_key: Option<String>,
}

/// A new group (`admin group add`).
#[derive(Debug, InputObject)]
#[graphql(name = "GroupInput", rename_fields = "snake_case")]
pub struct GroupInput {
    /// Free text.
    pub description: Option<String>,
    /// Whether the group may be used (default true).
    pub is_active: Option<bool>,
    /// The domain.
    pub domain_name: String,
    /// The group's resource limit (default `{}`: unlimited).
    pub total_resource_slots: Option<JsonString>,
    /// Storage hosts and permissions (default `{}`).
    pub allowed_vfolder_hosts: Option<JsonString>,
    /// An identifier in an external system.
    pub integration_id: Option<String>,
    /// The project resource policy (default `default`).
    pub resource_policy: Option<String>,
}

/// Changes to a group and its members (`admin group update / add-users / remove-users`);
/// null leaves a field as it is.
#[derive(Debug, InputObject)]
#[graphql(name = "ModifyGroupInput", rename_fields = "snake_case")]
pub struct ModifyGroupInput {
    /// The name.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Whether the group may be used.
    pub is_active: Option<bool>,
    /// The domain (a group cannot move: it must be the group's own).
    pub domain_name: Option<String>,
    /// The group's resource limit.
    pub total_resource_slots: Option<JsonString>,
    /// `add` or `remove`: what to do with `user_uuids`.
    pub user_update_mode: Option<String>,
    /// The users to add or remove, by id.
    pub user_uuids: Option<Vec<String>>,
    /// Storage hosts and permissions.
    pub allowed_vfolder_hosts: Option<JsonString>,
    /// An identifier in an external system.
    pub integration_id: Option<String>,
    /// The project resource policy.
    pub resource_policy: Option<String>,
}

/// A new domain (`admin domain add`).
#[derive(Debug, InputObject)]
#[graphql(name = "DomainInput", rename_fields = "snake_case")]
pub struct DomainInput {
    /// Free text.
    pub description: Option<String>,
    /// Whether the domain may be used (default true).
    pub is_active: Option<bool>,
    /// The domain's resource limit (default `{}`: unlimited).
    pub total_resource_slots: Option<JsonString>,
    /// Storage hosts and permissions (default `{}`).
    pub allowed_vfolder_hosts: Option<JsonString>,
    /// Registries the domain may pull from (default none).
    pub allowed_docker_registries: Option<Vec<String>>,
    /// An identifier in an external system.
    pub integration_id: Option<String>,
}

/// A new scaling group (`admin scaling-group add`).
#[derive(Debug, InputObject)]
#[graphql(name = "CreateScalingGroupInput", rename_fields = "snake_case")]
pub struct CreateScalingGroupInput {
    /// Free text.
    pub description: Option<String>,
    /// Whether sessions may be scheduled into it (default true).
    pub is_active: Option<bool>,
    /// Whether every user of an associated domain or group may see it (default true).
    pub is_public: Option<bool>,
    /// The app proxy's address.
    pub wsproxy_addr: Option<String>,
    /// The app proxy's API token.
    pub wsproxy_api_token: Option<String>,
    /// How agents join: `static`.
    pub driver: String,
    /// Driver options (an object).
    pub driver_opts: Option<JsonString>,
    /// The queue policy: `fifo`, `lifo` or `drf`.
    pub scheduler: String,
    /// Scheduler options (an object).
    pub scheduler_opts: Option<JsonString>,
    /// Whether kernels use the host's network (default false).
    pub use_host_network: Option<bool>,
}

/// A new keypair resource policy (`admin keypair-resource-policy add`).
#[derive(Debug, InputObject)]
#[graphql(name = "CreateKeyPairResourcePolicyInput", rename_fields = "snake_case")]
pub struct CreateKeyPairResourcePolicyInput {
    /// `LIMITED` or `UNLIMITED`: what unlisted slots mean.
    pub default_for_unspecified: String,
    /// The most a keypair may occupy at once (default `{}`).
    pub total_resource_slots: Option<JsonString>,
    /// Seconds a session may live (default 0: forever).
    pub max_session_lifetime: Option<i32>,
    /// Sessions a keypair may run at once (0: unlimited).
    pub max_concurrent_sessions: i32,
    /// SFTP sessions a keypair may run at once (default 1).
    pub max_concurrent_sftp_sessions: Option<i32>,
    /// Kernels one session may have.
    pub max_containers_per_session: i32,
    /// Seconds of idleness before a session is terminated (0: never).
    pub idle_timeout: BigInt,
    /// Storage hosts and permissions (default `{}`).
    pub allowed_vfolder_hosts: Option<JsonString>,
    /// Folders a keypair may create (default 0: unlimited).
    pub max_vfolder_count: Option<i32>,
    /// Bytes per folder (default 0: unlimited).
    pub max_vfolder_size: Option<BigInt>,
    /// Bytes per quota scope (default -1: unlimited).
    pub max_quota_scope_size: Option<BigInt>,
}

/// A name for a domain, group, scaling group or policy: 1–64 letters, digits, `-`, `_`, `.`.
pub(super) fn check_name(field: &str, name: &str) -> Outcome<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {field}: {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"))
    }
}

/// A JSONString holding a JSON object (JSON `null` or an absent value: `None`).
pub(super) fn json_object(
    field: &str,
    value: Option<&JsonString>,
) -> Outcome<Option<serde_json::Map<String, serde_json::Value>>> {
    let Some(value) = value else { return Ok(None) };
    match serde_json::from_str::<serde_json::Value>(&value.0) {
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(format!("invalid {field}: expected a JSON object")),
        Err(e) => Err(format!("invalid {field}: {e}")),
    }
}

/// Resource slots from a JSONString object such as `{"cpu": "4", "mem": "8g"}`.
pub(super) fn slots(field: &str, value: Option<&JsonString>) -> Outcome<Option<ResourceSlot>> {
    match json_object(field, value)? {
        None => Ok(None),
        Some(map) => ResourceSlot::from_user_input(&map, None).map(Some).map_err(|e| format!("invalid {field}: {e}")),
    }
}

fn parse_role(text: &str) -> Outcome<UserRole> {
    text.parse().map_err(|e: DbError| e.to_string())
}

fn parse_status(text: &str) -> Outcome<UserStatus> {
    text.parse().map_err(|e: DbError| e.to_string())
}

fn parse_uuids(field: &str, ids: &[String]) -> Outcome<Vec<uuid::Uuid>> {
    ids.iter()
        .map(|id| uuid::Uuid::parse_str(id.trim()).map_err(|_| format!("invalid {field}: {id:?} is not a UUID")))
        .collect()
}

/// A domain admin may act only inside their own domain.
pub(super) fn require_domain(auth: &AuthContext, domain_name: &str) -> Result<()> {
    if auth.role() == Role::Admin && domain_name != auth.credential.domain_name {
        return Err(forbidden("a domain admin may only manage their own domain"));
    }
    Ok(())
}

/// Drops these keypairs from the API's credential cache and from the idle reports' policy
/// limits ([`crate::idle::PolicyLimits`]).
pub(super) fn invalidate<'a>(gql: &GqlContext, access_keys: impl IntoIterator<Item = &'a str>) {
    let limits = gql.manager.as_ref().map(|m| m.idle().policy_limits());
    for access_key in access_keys {
        if let Some(store) = &gql.keypairs {
            store.invalidate(access_key);
        }
        if let Some(limits) = limits {
            limits.invalidate(access_key);
        }
    }
}

/// Drops every access key's limits from the idle reports' cache, after a keypair resource
/// policy changed.
pub(super) fn policies_changed(gql: &GqlContext) {
    if let Some(manager) = &gql.manager {
        manager.idle().policy_limits().clear();
    }
}

/// Unwraps an outcome or returns the mutation's `ok: false` result.
macro_rules! try_outcome {
    ($result:ty, $value:expr) => {
        match $value {
            Ok(v) => v,
            Err(msg) => return Ok(<$result>::from_outcome(Err(msg))),
        }
    };
}
pub(super) use try_outcome;

/// The original mutations of the CLI's first admin commands (merged into [`super::Mutation`]).
#[derive(Debug, Default)]
pub struct Mutation;

#[Object(name = "BaseMutation", rename_fields = "snake_case", rename_args = "snake_case")]
impl Mutation {
    /// Creates a keypair for the user with the e-mail address `user_id` (admins).
    async fn create_keypair(&self, ctx: &Context<'_>, user_id: String, props: KeyPairInput) -> Result<CreateKeyPair> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        let owner = repo::find_user_by_email(db, &user_id).await.map_err(db_error)?;
        if let Some(owner) = &owner {
            require_domain(&gql.auth, &owner.domain_name)?;
        }
        let new = repo::NewKeypair {
            is_active: props.is_active.unwrap_or(true),
            is_admin: props.is_admin.unwrap_or(false),
            resource_policy: props.resource_policy.unwrap_or_else(|| "default".into()),
            rate_limit: props.rate_limit.unwrap_or(keypair::DEFAULT_RATE_LIMIT),
        };
        let created = outcome(repo::create_keypair_for_email(db, &user_id, &new).await)?;
        let created = match (created, owner) {
            (Ok(row), Some(owner)) => {
                let projects = repo::groups_of_user(db, owner.uuid).await.map_err(db_error)?;
                Ok(KeyPair::new(row, Some(owner), projects.into_iter().map(|g| g.name).collect()))
            }
            (Ok(row), None) => Ok(KeyPair::new(row, None, Vec::new())),
            (Err(msg), _) => Err(msg),
        };
        Ok(CreateKeyPair::from_outcome(created))
    }

    /// Changes a keypair (admins); a deactivated keypair stops authenticating at once.
    async fn modify_keypair(
        &self,
        ctx: &Context<'_>,
        access_key: String,
        props: ModifyKeyPairInput,
    ) -> Result<ModifyKeyPair> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        let found = repo::find_keypair_with_user(db, &access_key).await.map_err(db_error)?;
        let Some((_, owner)) = found else {
            return Ok(ModifyKeyPair::from_outcome::<()>(Err(format!("no such keypair: {access_key}"))));
        };
        require_domain(&gql.auth, &owner.domain_name)?;
        let changes = repo::KeypairChanges {
            is_active: props.is_active,
            is_admin: props.is_admin,
            resource_policy: props.resource_policy,
            rate_limit: props.rate_limit,
        };
        let result = outcome(repo::modify_keypair(db, &access_key, &changes).await)?;
        invalidate(gql, [access_key.as_str()]);
        Ok(ModifyKeyPair::from_outcome(result))
    }

    /// Deletes a keypair (admins); it stops authenticating at once. A user's main access key
    /// cannot be deleted.
    async fn delete_keypair(&self, ctx: &Context<'_>, access_key: String) -> Result<DeleteKeyPair> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        let found = repo::find_keypair_with_user(db, &access_key).await.map_err(db_error)?;
        let Some((_, owner)) = found else {
            return Ok(DeleteKeyPair::from_outcome::<()>(Err(format!("no such keypair: {access_key}"))));
        };
        require_domain(&gql.auth, &owner.domain_name)?;
        let result = outcome(repo::delete_keypair(db, &access_key).await)?;
        invalidate(gql, [access_key.as_str()]);
        Ok(DeleteKeyPair::from_outcome(result))
    }

    /// Creates a user with its main keypair (admins; a domain admin in their domain, never a
    /// superadmin).
    async fn create_user(&self, ctx: &Context<'_>, email: String, props: UserInput) -> Result<CreateUser> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        require_domain(&gql.auth, &props.domain_name)?;
        let role = try_outcome!(CreateUser, parse_role(props.role.as_deref().unwrap_or("user")));
        if role == UserRole::Superadmin && gql.auth.role() != Role::Superadmin {
            return Err(forbidden("only a superadmin may create a superadmin"));
        }
        let mut status = try_outcome!(CreateUser, parse_status(props.status.as_deref().unwrap_or("active")));
        if props.is_active == Some(false) && props.status.is_none() {
            status = UserStatus::Inactive;
        }
        let group_ids = try_outcome!(CreateUser, parse_uuids("group_ids", props.group_ids.as_deref().unwrap_or(&[])));
        let new = repo::NewUser {
            email: email.trim().to_string(),
            username: props.username.unwrap_or_default(),
            password: props.password,
            need_password_change: props.need_password_change.unwrap_or(false),
            full_name: props.full_name,
            description: props.description,
            status,
            domain_name: props.domain_name,
            role,
            group_ids,
            allowed_client_ip: props.allowed_client_ip,
            totp_activated: props.totp_activated.unwrap_or(false),
            resource_policy: props.resource_policy.unwrap_or_else(|| "default".into()),
            sudo_session_enabled: props.sudo_session_enabled.unwrap_or(false),
        };
        let db = gql.db.as_ref();
        let created = outcome(repo::create_user_with_keypair(db, &new).await)?;
        let created = match created {
            Ok((row, _)) => Ok(super::user::with_groups(db, vec![row]).await?.remove(0)),
            Err(msg) => Err(msg),
        };
        Ok(CreateUser::from_outcome(created))
    }

    /// Changes a user (admins; a domain admin in their domain, never to or of a superadmin).
    /// A status other than `active` deactivates the user's keypairs.
    async fn modify_user(&self, ctx: &Context<'_>, email: String, props: ModifyUserInput) -> Result<ModifyUser> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        let Some(current) = repo::find_user_by_email(db, &email).await.map_err(db_error)? else {
            return Ok(ModifyUser::from_outcome(Err(format!("no such user: {email}"))));
        };
        require_domain(&gql.auth, &current.domain_name)?;
        if let Some(domain) = &props.domain_name {
            require_domain(&gql.auth, domain)?;
        }
        let role = match props.role.as_deref() {
            Some(text) => Some(try_outcome!(ModifyUser, parse_role(text))),
            None => None,
        };
        if gql.auth.role() != Role::Superadmin
            && (role == Some(UserRole::Superadmin) || current.role.0 == UserRole::Superadmin)
        {
            return Err(forbidden("only a superadmin may grant the superadmin role or change a superadmin"));
        }
        let status = match (props.status.as_deref(), props.is_active) {
            (Some(text), _) => Some(try_outcome!(ModifyUser, parse_status(text))),
            (None, Some(true)) => Some(UserStatus::Active),
            (None, Some(false)) => Some(UserStatus::Inactive),
            (None, None) => None,
        };
        let group_ids = match props.group_ids.as_deref() {
            Some(ids) => Some(try_outcome!(ModifyUser, parse_uuids("group_ids", ids))),
            None => None,
        };
        let changes = repo::UserChanges {
            username: props.username,
            password: props.password,
            need_password_change: props.need_password_change,
            full_name: props.full_name,
            description: props.description,
            status,
            domain_name: props.domain_name,
            role,
            group_ids,
            allowed_client_ip: props.allowed_client_ip,
            totp_activated: props.totp_activated,
            resource_policy: props.resource_policy,
            sudo_session_enabled: props.sudo_session_enabled,
            main_access_key: props.main_access_key,
        };
        let result = outcome(repo::modify_user(db, &email, &changes).await)?;
        let result = match result {
            Ok((row, access_keys)) => {
                invalidate(gql, access_keys.iter().map(String::as_str));
                Ok(super::user::with_groups(db, vec![row]).await?.remove(0))
            }
            Err(msg) => Err(msg),
        };
        Ok(ModifyUser::from_outcome(result))
    }

    /// Deletes a user softly (admins): the status becomes `deleted` and every keypair of the
    /// user is deactivated.
    async fn delete_user(&self, ctx: &Context<'_>, email: String) -> Result<DeleteUser> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        let Some(current) = repo::find_user_by_email(db, &email).await.map_err(db_error)? else {
            return Ok(DeleteUser::from_outcome::<()>(Err(format!("no such user: {email}"))));
        };
        require_domain(&gql.auth, &current.domain_name)?;
        if gql.auth.role() != Role::Superadmin && current.role.0 == UserRole::Superadmin {
            return Err(forbidden("only a superadmin may delete a superadmin"));
        }
        if current.uuid == gql.auth.credential.user_id {
            return Ok(DeleteUser::from_outcome::<()>(Err("a user cannot delete themselves".into())));
        }
        let result = outcome(repo::soft_delete_user(db, &email).await)?;
        if let Ok(access_keys) = &result {
            invalidate(gql, access_keys.iter().map(String::as_str));
        }
        Ok(DeleteUser::from_outcome(result))
    }

    /// Creates a group (admins; a domain admin in their domain).
    async fn create_group(&self, ctx: &Context<'_>, name: String, props: GroupInput) -> Result<CreateGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        require_domain(&gql.auth, &props.domain_name)?;
        try_outcome!(CreateGroup, check_name("name", &name));
        let total = try_outcome!(CreateGroup, slots("total_resource_slots", props.total_resource_slots.as_ref()));
        let hosts =
            try_outcome!(CreateGroup, json_object("allowed_vfolder_hosts", props.allowed_vfolder_hosts.as_ref()));
        let db = gql.db.as_ref();
        if repo::get_domain(db, &props.domain_name).await.map_err(db_error)?.is_none() {
            return Ok(CreateGroup::from_outcome(Err(format!(
                "invalid domain_name: there is no domain {:?}",
                props.domain_name
            ))));
        }
        let policy = props.resource_policy.unwrap_or_else(|| "default".into());
        if repo::get_project_resource_policy(db, &policy).await.map_err(db_error)?.is_none() {
            return Ok(CreateGroup::from_outcome(Err(format!(
                "invalid resource_policy: there is no project resource policy {policy:?}"
            ))));
        }
        let row = group::ActiveModel {
            name: Set(name),
            description: Set(props.description),
            is_active: Set(props.is_active.unwrap_or(true)),
            domain_name: Set(props.domain_name),
            total_resource_slots: Set(JsonOf(total.unwrap_or_default())),
            allowed_vfolder_hosts: Set(serde_json::Value::Object(hosts.unwrap_or_default())),
            integration_id: Set(props.integration_id),
            resource_policy: Set(policy),
            ..Default::default()
        };
        let created = outcome(repo::create_group(db, row).await)?;
        Ok(CreateGroup::from_outcome(created.map(Group)))
    }

    /// Changes a group, or adds (`user_update_mode: "add"`) or removes (`"remove"`) the users
    /// `user_uuids` (admins; a domain admin in their domain).
    async fn modify_group(&self, ctx: &Context<'_>, gid: Uuid, props: ModifyGroupInput) -> Result<ModifyGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_admin(&gql.auth)?;
        let db = gql.db.as_ref();
        let Some(current) = repo::get_group(db, gid.0).await.map_err(db_error)? else {
            return Ok(ModifyGroup::from_outcome(Err(format!("no such group: {}", gid.0))));
        };
        require_domain(&gql.auth, &current.domain_name)?;
        if props.domain_name.as_ref().is_some_and(|d| *d != current.domain_name) {
            return Ok(ModifyGroup::from_outcome(Err(
                "invalid domain_name: a group cannot move to another domain".into()
            )));
        }
        if let Some(name) = &props.name {
            try_outcome!(ModifyGroup, check_name("name", name));
        }
        let mode = match props.user_update_mode.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("add") => Some(repo::MemberUpdate::Add),
            Some("remove") => Some(repo::MemberUpdate::Remove),
            Some(other) => {
                return Ok(ModifyGroup::from_outcome(Err(format!(
                    "invalid user_update_mode: {other:?} is not \"add\" or \"remove\""
                ))))
            }
        };
        let users = try_outcome!(ModifyGroup, parse_uuids("user_uuids", props.user_uuids.as_deref().unwrap_or(&[])));
        if mode.is_none() && !users.is_empty() {
            return Ok(ModifyGroup::from_outcome(Err(
                "invalid user_update_mode: say \"add\" or \"remove\" with user_uuids".into(),
            )));
        }
        let changes = repo::GroupChanges {
            name: props.name,
            description: props.description,
            is_active: props.is_active,
            total_resource_slots: try_outcome!(
                ModifyGroup,
                slots("total_resource_slots", props.total_resource_slots.as_ref())
            ),
            allowed_vfolder_hosts: try_outcome!(
                ModifyGroup,
                json_object("allowed_vfolder_hosts", props.allowed_vfolder_hosts.as_ref())
            )
            .map(serde_json::Value::Object),
            integration_id: props.integration_id,
            resource_policy: props.resource_policy,
        };
        let members = mode.map(|m| (m, users.as_slice()));
        let result = outcome(repo::modify_group(db, gid.0, &changes, members).await)?;
        Ok(ModifyGroup::from_outcome(result.map(Group)))
    }

    /// Creates a domain (superadmin).
    async fn create_domain(&self, ctx: &Context<'_>, name: String, props: DomainInput) -> Result<CreateDomain> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        try_outcome!(CreateDomain, check_name("name", &name));
        let total = try_outcome!(CreateDomain, slots("total_resource_slots", props.total_resource_slots.as_ref()));
        let hosts =
            try_outcome!(CreateDomain, json_object("allowed_vfolder_hosts", props.allowed_vfolder_hosts.as_ref()));
        let row = domain::ActiveModel {
            name: Set(name),
            description: Set(props.description),
            is_active: Set(props.is_active.unwrap_or(true)),
            total_resource_slots: Set(JsonOf(total.unwrap_or_default())),
            allowed_vfolder_hosts: Set(serde_json::Value::Object(hosts.unwrap_or_default())),
            allowed_docker_registries: Set(JsonOf(props.allowed_docker_registries.unwrap_or_default())),
            integration_id: Set(props.integration_id),
            ..Default::default()
        };
        let created = outcome(repo::create_domain(gql.db.as_ref(), row).await)?;
        Ok(CreateDomain::from_outcome(created.map(Domain)))
    }

    /// Creates a scaling group (superadmin).
    async fn create_scaling_group(
        &self,
        ctx: &Context<'_>,
        name: String,
        props: CreateScalingGroupInput,
    ) -> Result<CreateScalingGroup> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        try_outcome!(CreateScalingGroup, check_name("name", &name));
        if props.driver != "static" {
            return Ok(CreateScalingGroup::from_outcome(Err(format!(
                "invalid driver: {:?} is not supported (expected \"static\")",
                props.driver
            ))));
        }
        let scheduler = props.scheduler.trim().to_ascii_lowercase();
        if !matches!(scheduler.as_str(), "fifo" | "lifo" | "drf") {
            return Ok(CreateScalingGroup::from_outcome(Err(format!(
                "invalid scheduler: {:?} is not one of fifo, lifo, drf",
                props.scheduler
            ))));
        }
        let driver_opts = try_outcome!(CreateScalingGroup, json_object("driver_opts", props.driver_opts.as_ref()));
        let scheduler_opts =
            try_outcome!(CreateScalingGroup, json_object("scheduler_opts", props.scheduler_opts.as_ref()));
        let row = scaling_group::ActiveModel {
            name: Set(name),
            description: Set(props.description),
            is_active: Set(props.is_active.unwrap_or(true)),
            is_public: Set(props.is_public.unwrap_or(true)),
            wsproxy_addr: Set(props.wsproxy_addr),
            wsproxy_api_token: Set(props.wsproxy_api_token),
            driver: Set(props.driver),
            driver_opts: Set(serde_json::Value::Object(driver_opts.unwrap_or_default())),
            scheduler: Set(scheduler),
            scheduler_opts: Set(serde_json::Value::Object(scheduler_opts.unwrap_or_default())),
            use_host_network: Set(props.use_host_network.unwrap_or(false)),
            ..Default::default()
        };
        let created = outcome(repo::create_scaling_group(gql.db.as_ref(), row).await)?;
        Ok(CreateScalingGroup::from_outcome(created.map(ScalingGroup)))
    }

    /// Lets a domain use a scaling group (superadmin).
    async fn associate_scaling_group_with_domain(
        &self,
        ctx: &Context<'_>,
        scaling_group: String,
        domain: String,
    ) -> Result<AssociateScalingGroupWithDomain> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let db = gql.db.as_ref();
        if repo::get_scaling_group(db, &scaling_group).await.map_err(db_error)?.is_none() {
            return Ok(AssociateScalingGroupWithDomain::from_outcome::<()>(Err(format!(
                "invalid scaling_group: there is no scaling group {scaling_group:?}"
            ))));
        }
        if repo::get_domain(db, &domain).await.map_err(db_error)?.is_none() {
            return Ok(AssociateScalingGroupWithDomain::from_outcome::<()>(Err(format!(
                "invalid domain: there is no domain {domain:?}"
            ))));
        }
        let result = outcome(repo::associate_scaling_group_with_domain(db, &scaling_group, &domain).await)?;
        Ok(AssociateScalingGroupWithDomain::from_outcome(result))
    }

    /// Creates a keypair resource policy (superadmin).
    async fn create_keypair_resource_policy(
        &self,
        ctx: &Context<'_>,
        name: String,
        props: CreateKeyPairResourcePolicyInput,
    ) -> Result<CreateKeyPairResourcePolicy> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        try_outcome!(CreateKeyPairResourcePolicy, check_name("name", &name));
        let default_for_unspecified: DefaultForUnspecified = try_outcome!(
            CreateKeyPairResourcePolicy,
            props.default_for_unspecified.parse().map_err(|e: DbError| e.to_string())
        );
        let total = try_outcome!(
            CreateKeyPairResourcePolicy,
            slots("total_resource_slots", props.total_resource_slots.as_ref())
        );
        let hosts = try_outcome!(
            CreateKeyPairResourcePolicy,
            json_object("allowed_vfolder_hosts", props.allowed_vfolder_hosts.as_ref())
        );
        let counts = [
            ("max_session_lifetime", i64::from(props.max_session_lifetime.unwrap_or(0))),
            ("max_concurrent_sessions", i64::from(props.max_concurrent_sessions)),
            ("max_concurrent_sftp_sessions", i64::from(props.max_concurrent_sftp_sessions.unwrap_or(1))),
            ("max_containers_per_session", i64::from(props.max_containers_per_session)),
            ("idle_timeout", props.idle_timeout.0),
            ("max_vfolder_count", i64::from(props.max_vfolder_count.unwrap_or(0))),
            ("max_vfolder_size", props.max_vfolder_size.map_or(0, |b| b.0)),
        ];
        if let Some((field, value)) = counts.iter().find(|(_, v)| *v < 0) {
            return Ok(CreateKeyPairResourcePolicy::from_outcome(Err(format!(
                "invalid {field}: must be 0 or more, got {value}"
            ))));
        }
        if props.max_containers_per_session < 1 {
            return Ok(CreateKeyPairResourcePolicy::from_outcome(Err(format!(
                "invalid max_containers_per_session: must be 1 or more, got {}",
                props.max_containers_per_session
            ))));
        }
        let row = keypair_resource_policy::ActiveModel {
            name: Set(name),
            default_for_unspecified: Set(Wire(default_for_unspecified)),
            total_resource_slots: Set(JsonOf(total.unwrap_or_default())),
            max_session_lifetime: Set(props.max_session_lifetime.unwrap_or(0)),
            max_concurrent_sessions: Set(props.max_concurrent_sessions),
            max_concurrent_sftp_sessions: Set(props.max_concurrent_sftp_sessions.unwrap_or(1)),
            max_containers_per_session: Set(props.max_containers_per_session),
            idle_timeout: Set(props.idle_timeout.0),
            allowed_vfolder_hosts: Set(serde_json::Value::Object(hosts.unwrap_or_default())),
            max_vfolder_count: Set(props.max_vfolder_count.unwrap_or(0)),
            max_vfolder_size: Set(props.max_vfolder_size.map_or(0, |b| b.0)),
            max_quota_scope_size: Set(props.max_quota_scope_size.map_or(-1, |b| b.0)),
            ..Default::default()
        };
        let created = outcome(repo::create_keypair_resource_policy(gql.db.as_ref(), row).await)?;
        policies_changed(gql);
        Ok(CreateKeyPairResourcePolicy::from_outcome(created.map(KeyPairResourcePolicy)))
    }

    /// Rescans images in the background (superadmin): with no `registry`, the images of
    /// every live agent and of every configured container registry; with one, that registry
    /// only. Answers at once with `task_id`, whose progress `GET /events/background-task`
    /// streams. An unknown registry (or unreadable etcd) answers `ok: false` naming it.
    async fn rescan_images(&self, ctx: &Context<'_>, registry: Option<String>) -> Result<RescanImages> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let Some(manager) = &gql.manager else {
            return Ok(RescanImages::refused("this endpoint has no manager to scan with"));
        };
        let configured = match manager.registries().resolve().await {
            Ok(configured) => configured,
            Err(e) => return Ok(RescanImages::refused(&format!("registry: the registries cannot be read: {e}"))),
        };
        let (agents, registries) = match registry.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            Some(name) => match configured.iter().find(|r| r.name == name) {
                Some(found) => (false, vec![found.clone()]),
                None => {
                    let names: Vec<&str> = configured.iter().map(|r| r.name.as_str()).collect();
                    return Ok(RescanImages::refused(&format!(
                        "registry: no registry named {name:?} is configured (configured: {})",
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    )));
                }
            },
            None => (true, configured),
        };
        let mut what: Vec<String> = registries.iter().map(|r| format!("registry {}", r.name)).collect();
        if agents {
            what.insert(0, "the agents".into());
        }
        let (db, clients) = (gql.db.clone(), manager.clients().clone());
        let task_id =
            manager.bgtasks().start("rescan_images", Some(gql.auth.credential.user_id), move |progress| async move {
                let on_step = move |step: crate::registry::Step<'_>| progress.step(step.found, step.done, step.message);
                let report = crate::images::rescan(&db, agents.then_some(clients.as_ref()), &registries, &on_step)
                    .await
                    .map_err(|e| format!("database: {e}"))?;
                if report.ok() {
                    Ok(report.summary())
                } else {
                    Err(report.summary())
                }
            });
        Ok(RescanImages {
            ok: true,
            msg: format!("scanning {} in the background", what.join(", ")),
            task_id: Some(task_id),
        })
    }

    /// Names an image with `alias` (superadmin): `target` is an image's reference (canonical,
    /// or as the client spells it), `architecture` picks one of its architectures (default: the
    /// only one, else the manager's). An unknown target, an alias in use or an alias that is
    /// itself an image's name answers `ok: false`.
    async fn alias_image(
        &self,
        ctx: &Context<'_>,
        alias: String,
        target: String,
        architecture: Option<String>,
    ) -> Result<AliasImage> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let db = gql.db.as_ref();
        let alias = alias.trim().to_string();
        if let Err(e) = alias.parse::<bai_core::ImageRef>() {
            return Ok(AliasImage::from_outcome(Err::<(), _>(format!(
                "alias: {alias:?} cannot name an image in a session request: {e}"
            ))));
        }
        if alias.contains('@') {
            return Ok(AliasImage::from_outcome(Err::<(), _>(format!(
                "alias: {alias:?} must not name an architecture or digest"
            ))));
        }
        let architecture = match architecture.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => match bai_core::image_ref::normalize_architecture(a) {
                Ok(a) => Some(a),
                Err(e) => return Ok(AliasImage::from_outcome(Err::<(), _>(format!("architecture: {e}")))),
            },
            None => None,
        };
        if !repo::images_named(db, &alias).await.map_err(db_error)?.is_empty() {
            return Ok(AliasImage::from_outcome(Err::<(), _>(format!("alias: {alias:?} is the name of an image"))));
        }
        if let Some(existing) = repo::get_image_alias(db, &alias).await.map_err(db_error)? {
            let named = repo::list_images(db).await.map_err(db_error)?.into_iter().find(|i| i.id == existing.image);
            let named =
                named.map_or_else(|| "a removed image".to_string(), |i| format!("{} ({})", i.name, i.architecture));
            return Ok(AliasImage::from_outcome(Err::<(), _>(format!(
                "alias: {alias:?} already names {named}; dealias it first"
            ))));
        }
        let mut candidates = repo::images_named(db, target.trim()).await.map_err(db_error)?;
        if candidates.is_empty() {
            if let Ok(reference) = target.trim().parse::<bai_core::ImageRef>() {
                candidates = repo::images_named(db, &reference.canonical()).await.map_err(db_error)?;
            }
        }
        let chosen = match &architecture {
            Some(arch) => candidates.iter().find(|i| &i.architecture == arch),
            None if candidates.len() == 1 => candidates.first(),
            None => candidates
                .iter()
                .find(|i| {
                    i.architecture
                        == bai_core::image_ref::normalize_architecture(std::env::consts::ARCH).unwrap_or_default()
                })
                .or(candidates.first()),
        };
        let Some(image) = chosen else {
            let on = architecture.map(|a| format!(" for {a}")).unwrap_or_default();
            return Ok(AliasImage::from_outcome(Err::<(), _>(format!(
                "target: no image {:?}{on} is known (rescan the images, or give a canonical reference)",
                target.trim()
            ))));
        };
        let created = outcome(repo::create_image_alias(db, &alias, image.id).await)?;
        Ok(AliasImage::from_outcome(created))
    }

    /// Removes the alias `alias` (superadmin); an unknown alias answers `ok: false`.
    async fn dealias_image(&self, ctx: &Context<'_>, alias: String) -> Result<DealiasImage> {
        let gql = ctx.data::<GqlContext>()?;
        require_superadmin(&gql.auth)?;
        let removed = repo::delete_image_alias(gql.db.as_ref(), alias.trim()).await.map_err(db_error)?;
        Ok(DealiasImage::from_outcome(if removed {
            Ok(())
        } else {
            Err(format!("alias: no alias named {:?}", alias.trim()))
        }))
    }
}

result_type!(
    /// The result of `alias_image`.
    AliasImage, "AliasImage"
);
result_type!(
    /// The result of `dealias_image`.
    DealiasImage, "DealiasImage"
);

/// The answer of `rescan_images`.
#[derive(Debug)]
pub struct RescanImages {
    ok: bool,
    msg: String,
    task_id: Option<uuid::Uuid>,
}

impl RescanImages {
    fn refused(msg: &str) -> Self {
        Self { ok: false, msg: msg.to_string(), task_id: None }
    }
}

#[Object(name = "RescanImages", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl RescanImages {
    /// Whether the scan started.
    async fn ok(&self) -> bool {
        self.ok
    }
    /// What is scanned, or why nothing is.
    async fn msg(&self) -> &str {
        &self.msg
    }
    /// The background task (`GET /events/background-task?taskId=`), when the scan started.
    async fn task_id(&self) -> Option<Uuid> {
        self.task_id.map(Uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_documents_are_checked() {
        assert!(check_name("name", "team-1.a_b").is_ok());
        assert!(check_name("name", "").unwrap_err().contains("invalid name"));
        assert!(check_name("name", "with space").is_err());
        let slots_of = |s: &str| slots("total_resource_slots", Some(&JsonString(s.into())));
        assert_eq!(slots_of("{}").unwrap(), Some(ResourceSlot::new()));
        assert_eq!(slots_of("null").unwrap(), None);
        let four = slots_of(r#"{"cpu": "4", "mem": "1g"}"#).unwrap().unwrap();
        assert_eq!(four.get("mem"), (1u64 << 30).into());
        assert!(slots_of("[1]").unwrap_err().contains("expected a JSON object"));
        assert!(slots_of(r#"{"cpu": "-1"}"#).unwrap_err().contains("total_resource_slots"));
        assert!(parse_uuids("user_uuids", &["nope".into()]).unwrap_err().contains("user_uuids"));
    }
}
