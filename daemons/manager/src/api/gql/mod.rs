//! The GraphQL endpoint (spec `client-wire.md` §7): `POST /admin/gql` and the legacy
//! `POST /admin/graphql`, both signed.
//!
//! - **Envelope** (§7.1). `/admin/gql` takes `{"query", "variables"?, "operation_name"?}`
//!   (`operationName` is accepted too) and always answers **200** with
//!   `{"data": …, "errors": [{"message", "locations"?, "path"?}]?}`: syntax errors, unknown
//!   fields, bad variables and resolver failures (permission errors included) are GraphQL
//!   errors, never HTTP errors. A body that is not such an object is 400
//!   `invalid-api-params`. The legacy `/admin/graphql` answers the bare `data` on success
//!   and 400 `graphql-error` with the errors as `data` otherwise.
//! - **Schema** (§7.5). Field and argument names are snake_case exactly as the original's;
//!   the custom scalars are named `UUID`, `DateTime`, `JSONString` and `BigInt`
//!   ([`scalars`]). Query roots: `compute_session`, `compute_session_list` ([`session`]);
//!   `keypair`, `keypair_list` ([`keypair`]); `vfolder_list` ([`vfolder`]); `agent`,
//!   `agent_list` ([`agent`]); `user`, `user_list` ([`user`]); `domain`, `domains`, `group`,
//!   `groups`, `groups_by_name`, `scaling_group`, `scaling_groups` ([`org`]); `images`
//!   ([`image`]); `keypair_resource_policy`, `keypair_resource_policies`, `resource_presets`
//!   ([`policy`]). Mutations ([`mutation`]): `create_keypair`, `modify_keypair`,
//!   `delete_keypair`, `create_user`, `modify_user`, `delete_user`, `create_group`,
//!   `modify_group`, `create_domain`, `create_scaling_group`,
//!   `associate_scaling_group_with_domain`, `create_keypair_resource_policy`; and
//!   ([`admin_mutation`]) `modify_domain`, `delete_domain`, `purge_domain`, `delete_group`,
//!   `purge_group`, `purge_user`, `modify_scaling_group`, `delete_scaling_group`,
//!   `disassociate_scaling_group_with_domain`, `disassociate_all_scaling_groups_with_domain`,
//!   `associate_scaling_group_with_user_group`, `disassociate_scaling_group_with_user_group`,
//!   `disassociate_all_scaling_groups_with_group`, `associate_scaling_group_with_keypair`,
//!   `disassociate_scaling_group_with_keypair`, `modify_keypair_resource_policy`,
//!   `delete_keypair_resource_policy` — with the original's input type names, merged into
//!   [`Mutation`]. Undeclared variables are ignored.
//! - **Permissions** (§7.4). Roots marked superadmin-only or admin-only in the original are
//!   so here (`require_superadmin`, `require_admin`; a domain admin is confined to their
//!   domain, as in `scoped`); a caller without the role gets a "Forbidden operation." GraphQL
//!   error for that field, never an HTTP error.
//! - **Mutations** answer `{ok, msg, <object>?}`: bad input is `ok: false` with a `msg` naming
//!   the field and changes nothing (each mutation is one transaction); database failures and
//!   permission failures are GraphQL errors. Changes to keypairs and users invalidate the
//!   affected entries of the API's credential cache ([`GqlContext::keypairs`]), so a
//!   deactivated or deleted keypair is refused at once.
//! - **Key order** (§7.1). Every object of the response lists its keys in the order of the
//!   query's selection set (the CLI's table printer pairs columns with values by position):
//!   objects resolve their fields one after another, and [`reorder`] puts the response in
//!   selection order whatever finished first (aliases, fragments and repeated fields
//!   included).
//! - **Lists** (§7.3). `*_list` roots take `limit`/`offset` and answer the exact
//!   `total_count`; `filter` and `order` use the original's mini-languages ([`filter`]), over
//!   the fields each list declares (e.g. [`agent::agent_fields`]). Database access goes
//!   through [`crate::db::repo`] (pages with totals, and the administrative changes).
//!
//! The engine is `async-graphql` (validation, variables, fragments, introspection); this
//! module adds the wire conventions above. To add a root, write a `#[derive(Default)]` struct
//! with an `#[Object(rename_fields = "snake_case", rename_args = "snake_case")]` impl in a
//! submodule, add it to [`Query`] (a mutation root: to [`Mutation`]), and mark its object
//! types `serial`.

pub mod admin_mutation;
pub mod agent;
pub mod filter;
pub mod image;
pub mod keypair;
pub mod mutation;
pub mod org;
pub mod policy;
pub mod scalars;
pub mod session;
pub mod user;
pub mod vfolder;

use std::sync::{Arc, LazyLock};

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{EmptySubscription, Error, MergedObject, Name, Positioned, Schema, Value, Variables};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use sea_orm::DatabaseConnection;
use serde::Deserialize;

use super::auth::{AuthContext, KeypairStore, Role};
use super::error::{ApiError, ErrorKind};
use super::extract::ApiJson;
use super::ApiState;

/// The query root: every root field of the schema.
#[derive(MergedObject, Default)]
pub struct Query(
    session::SessionQuery,
    keypair::KeyPairQuery,
    vfolder::VFolderQuery,
    agent::AgentQuery,
    user::UserQuery,
    org::OrgQuery,
    image::ImageQuery,
    policy::PolicyQuery,
);

/// The mutation root: every mutation of the schema.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct Mutation(mutation::Mutation, admin_mutation::AdminMutation);

/// The schema type.
pub type GqlSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema (the routes share one, built on first use).
pub fn schema() -> GqlSchema {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .register_output_type::<scalars::BigInt>()
        .register_output_type::<scalars::JsonString>()
        .register_output_type::<scalars::DateTime>()
        .register_output_type::<scalars::Uuid>()
        // The CLI's deepest query is 4 levels; this bounds what nested `dependencies` can
        // cost while leaving room for introspection.
        .limit_depth(32)
        // Root-field metrics, recorded when the request carries an `Arc<ManagerMetrics>`.
        .extension(crate::metrics::GqlMetrics)
        .finish()
}

static SCHEMA: LazyLock<GqlSchema> = LazyLock::new(schema);

/// What resolvers see of the request: who asks, the database, and the API's keypair store
/// (mutations of keypairs and users invalidate its cached credentials).
#[derive(Clone)]
pub struct GqlContext {
    /// The caller.
    pub auth: AuthContext,
    /// The manager's database.
    pub db: Arc<DatabaseConnection>,
    /// The keypair store requests authenticate through, when there is one.
    pub keypairs: Option<Arc<dyn KeypairStore>>,
    /// The manager core (for mutations that call agents), when there is one.
    pub manager: Option<Arc<crate::manager::Manager>>,
    /// The storage hosts (purges remove deleted folders' directories), when there are some.
    pub storage: Option<Arc<crate::volumes::Volumes>>,
}

/// The original's `admin_required`: a domain admin or a superadmin, else "Forbidden
/// operation." as a GraphQL error.
pub(crate) fn require_admin(auth: &AuthContext) -> Result<(), Error> {
    if auth.is_admin() {
        Ok(())
    } else {
        Err(forbidden("this requires an administrator"))
    }
}

/// The original's `superadmin_required`, as a GraphQL error.
pub(crate) fn require_superadmin(auth: &AuthContext) -> Result<(), Error> {
    if auth.is_superadmin() {
        Ok(())
    } else {
        Err(forbidden("this requires a superadmin"))
    }
}

/// A database failure as a GraphQL error (logged; the request still answers 200).
pub(crate) fn db_error(err: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %err, "graphql: database error");
    Error::new(format!("database error: {err}"))
}

/// The original's `GenericForbidden`, as a GraphQL error.
pub(crate) fn forbidden(why: &str) -> Error {
    Error::new(format!("Forbidden operation. ({why})"))
}

/// Which value identifies the user in a scoped query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserKey {
    /// The access key.
    AccessKey,
}

/// The scope a query runs in, after [`scoped`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Only rows of this domain (`None`: every domain).
    pub domain_name: Option<String>,
    /// Only rows of this user key (`None`: every user).
    pub user: Option<String>,
}

/// The original's `scoped_query`: a superadmin queries what they name (their own user when
/// `autofill` and they name none); a domain admin the same within their domain; a user only
/// their own rows in their domain. Naming another domain (admin, user) or another user
/// (user) is a "Forbidden operation." error.
pub(crate) fn scoped(
    auth: &AuthContext,
    domain_name: Option<String>,
    user: Option<String>,
    key: UserKey,
    autofill: bool,
) -> Result<Scope, Error> {
    let own = match key {
        UserKey::AccessKey => auth.access_key().to_string(),
    };
    let own_domain = &auth.credential.domain_name;
    match auth.role() {
        Role::Superadmin => Ok(Scope { domain_name, user: if autofill { user.or(Some(own)) } else { user } }),
        Role::Admin => {
            if domain_name.as_ref().is_some_and(|d| d != own_domain) {
                return Err(forbidden("a domain admin may only query their own domain"));
            }
            Ok(Scope { domain_name: Some(own_domain.clone()), user: if autofill { user.or(Some(own)) } else { user } })
        }
        Role::User => {
            if domain_name.as_ref().is_some_and(|d| d != own_domain) {
                return Err(forbidden("a user may only query their own domain"));
            }
            if user.as_ref().is_some_and(|u| *u != own) {
                return Err(forbidden("a user may only query their own access key"));
            }
            Ok(Scope { domain_name: Some(own_domain.clone()), user: Some(own) })
        }
    }
}

/// The selection sets of each response key of an object, in selection order (fragments
/// expanded, repeated keys merged at their first position).
fn collect<'a>(
    set: &'a SelectionSet,
    fragments: &'a std::collections::HashMap<Name, Positioned<FragmentDefinition>>,
    out: &mut IndexMap<String, Vec<&'a SelectionSet>>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                let key = field.alias.as_ref().unwrap_or(&field.name).node.to_string();
                out.entry(key).or_default().push(&field.selection_set.node);
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = fragments.get(&spread.node.fragment_name.node) {
                    collect(&fragment.node.selection_set.node, fragments, out, depth + 1);
                }
            }
            Selection::InlineFragment(inline) => {
                collect(&inline.node.selection_set.node, fragments, out, depth + 1);
            }
        }
    }
}

fn reorder_value(
    value: &mut Value,
    sets: &[&SelectionSet],
    fragments: &std::collections::HashMap<Name, Positioned<FragmentDefinition>>,
    depth: usize,
) {
    match value {
        Value::Object(map) => {
            let mut keys = IndexMap::new();
            for set in sets {
                collect(set, fragments, &mut keys, 0);
            }
            let mut old = std::mem::take(map);
            for (key, subsets) in keys {
                if let Some((name, mut v)) = old.shift_remove_entry(key.as_str()) {
                    if depth < 128 {
                        reorder_value(&mut v, &subsets, fragments, depth + 1);
                    }
                    map.insert(name, v);
                }
            }
            // Anything not selected (nothing, normally) keeps its place after the rest.
            map.extend(old);
        }
        Value::List(items) => {
            for item in items {
                reorder_value(item, sets, fragments, depth);
            }
        }
        _ => {}
    }
}

/// Puts every object of `data` in the selection order of the executed operation of `doc`.
pub fn reorder(data: &mut Value, doc: &ExecutableDocument, operation_name: Option<&str>) {
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    };
    if let Some(op) = operation {
        reorder_value(data, &[&op.node.selection_set.node], &doc.fragments, 0);
    }
}

/// Puts `null` where a field failed. The engine leaves a failed field out of its object (and
/// an object whose every field failed becomes null, `data` included); the original, like
/// the GraphQL specification, answers the field as `null` next to its error, e.g.
/// `{"data": {"compute_session_list": null}, "errors": [{…, "path": ["compute_session_list"]}]}`.
pub fn null_failed_fields(data: &mut Value, errors: &[async_graphql::ServerError]) {
    for error in errors.iter().filter(|e| !e.path.is_empty()) {
        let mut current = &mut *data;
        for segment in &error.path {
            match segment {
                async_graphql::PathSegment::Field(name) => {
                    if matches!(current, Value::Null) {
                        *current = Value::Object(IndexMap::new());
                    }
                    let Value::Object(map) = current else { break };
                    let key = Name::new(name);
                    if !map.contains_key(&key) {
                        map.insert(key, Value::Null);
                        break;
                    }
                    let Some(next) = map.get_mut(&key) else { break };
                    current = next;
                }
                async_graphql::PathSegment::Index(i) => {
                    let Value::List(items) = current else { break };
                    let Some(next) = items.get_mut(*i) else { break };
                    current = next;
                }
            }
        }
    }
}

/// Runs a GraphQL request as `auth`: the response has its keys in selection order.
pub async fn execute(
    db: Arc<DatabaseConnection>,
    auth: AuthContext,
    query: String,
    variables: serde_json::Value,
    operation_name: Option<String>,
) -> async_graphql::Response {
    execute_observed(
        GqlContext { auth, db, keypairs: None, manager: None, storage: None },
        query,
        variables,
        operation_name,
        None,
    )
    .await
}

/// [`execute`] in `context` (with the keypair store whose cache mutations invalidate),
/// recording its root fields in `metrics` (`backendai_graphql_request_*`).
pub async fn execute_observed(
    context: GqlContext,
    query: String,
    variables: serde_json::Value,
    operation_name: Option<String>,
    metrics: Option<Arc<crate::metrics::ManagerMetrics>>,
) -> async_graphql::Response {
    let mut request = async_graphql::Request::new(query).variables(Variables::from_json(variables)).data(context);
    if let Some(metrics) = metrics {
        request = request.data(metrics);
    }
    if let Some(name) = &operation_name {
        request = request.operation_name(name.clone());
    }
    let document = request.parsed_query().ok().cloned();
    let mut response = SCHEMA.execute(request).await;
    null_failed_fields(&mut response.data, &response.errors);
    if let Some(doc) = document {
        reorder(&mut response.data, &doc, operation_name.as_deref());
    }
    response
}

/// The request body (the original's `check_api_params` for GraphQL).
#[derive(Debug, Deserialize)]
struct GqlBody {
    query: String,
    #[serde(default)]
    variables: Option<serde_json::Value>,
    #[serde(default, alias = "operationName")]
    operation_name: Option<String>,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn run(state: &ApiState, auth: AuthContext, body: GqlBody) -> Result<async_graphql::Response, ApiError> {
    let variables = match body.variables {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(v @ serde_json::Value::Object(_)) => v,
        Some(_) => return Err(ApiError::invalid("variables", "expected an object of variable values or null")),
    };
    let db = state.require_service::<DatabaseConnection>()?;
    let metrics = state.service::<crate::metrics::ManagerMetrics>();
    let context = GqlContext {
        auth,
        db,
        keypairs: Some(state.keypairs().clone()),
        manager: state.service::<crate::manager::Manager>(),
        storage: state.service::<crate::volumes::Volumes>(),
    };
    Ok(execute_observed(context, body.query, variables, body.operation_name, metrics).await)
}

/// `POST /admin/gql`: always 200 with `{"data", "errors"?}`.
async fn gql(
    State(state): State<ApiState>,
    auth: AuthContext,
    ApiJson(body): ApiJson<GqlBody>,
) -> Result<Response, ApiError> {
    let response = run(&state, auth, body).await?;
    let bytes = serde_json::to_vec(&response).map_err(|e| ApiError::internal(format!("graphql response: {e}")))?;
    Ok(json_response(StatusCode::OK, bytes))
}

/// `POST /admin/graphql` (legacy): the bare `data`, or 400 `graphql-error` with the errors.
async fn graphql_legacy(
    State(state): State<ApiState>,
    auth: AuthContext,
    ApiJson(body): ApiJson<GqlBody>,
) -> Result<Response, ApiError> {
    let response = run(&state, auth, body).await?;
    if !response.errors.is_empty() {
        let errors = serde_json::to_value(&response.errors).unwrap_or_default();
        return Err(ApiError::new(ErrorKind::GraphQlError).with_data(errors));
    }
    let bytes = serde_json::to_vec(&response.data).map_err(|e| ApiError::internal(format!("graphql response: {e}")))?;
    Ok(json_response(StatusCode::OK, bytes))
}

/// The signed routes of this module: `POST /admin/gql` and `POST /admin/graphql`.
pub fn routes() -> Router<ApiState> {
    Router::new().route("/admin/gql", post(gql)).route("/admin/graphql", post(graphql_legacy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(role: Role, ak: &str) -> AuthContext {
        let mut credential = crate::api::Credential::new(ak, "secret", role);
        credential.domain_name = "default".into();
        AuthContext { credential, api_version: crate::api::ApiVersion::LATEST }
    }

    #[test]
    fn scopes_follow_the_original() {
        let user = auth(Role::User, "AKUSER");
        let s = scoped(&user, None, None, UserKey::AccessKey, false).unwrap();
        assert_eq!(s, Scope { domain_name: Some("default".into()), user: Some("AKUSER".into()) });
        assert!(scoped(&user, None, Some("AKOTHER".into()), UserKey::AccessKey, false).is_err());
        assert!(scoped(&user, Some("other".into()), None, UserKey::AccessKey, false).is_err());
        let admin = auth(Role::Admin, "AKADMIN");
        let s = scoped(&admin, None, Some("AKX".into()), UserKey::AccessKey, false).unwrap();
        assert_eq!(s, Scope { domain_name: Some("default".into()), user: Some("AKX".into()) });
        assert_eq!(scoped(&admin, None, None, UserKey::AccessKey, true).unwrap().user.as_deref(), Some("AKADMIN"));
        let root = auth(Role::Superadmin, "AKROOT");
        assert_eq!(
            scoped(&root, None, None, UserKey::AccessKey, false).unwrap(),
            Scope { domain_name: None, user: None }
        );
    }

    #[test]
    fn schema_has_the_original_names() {
        let sdl = schema().sdl();
        for needle in [
            "scalar UUID",
            "scalar JSONString",
            "scalar DateTime",
            "scalar BigInt",
            "compute_session(id: UUID!): ComputeSession",
            "total_count: Int!",
            "main_kernel_id: UUID",
            "occupying_slots: JSONString!",
            "input KeyPairInput",
            "input ModifyKeyPairInput",
            "input UserInput",
            "input ModifyUserInput",
            "input GroupInput",
            "input ModifyGroupInput",
            "input DomainInput",
            "input CreateScalingGroupInput",
            "input CreateKeyPairResourcePolicyInput",
            "create_keypair(user_id: String!, props: KeyPairInput!): CreateKeyPair!",
            "modify_group(gid: UUID!, props: ModifyGroupInput!): ModifyGroup!",
            "mem_cur_bytes: Float!",
            "size_bytes: BigInt!",
            "groups: [UserGroup!]!",
            "user_info: UserInfo!",
            "max_vfolder_size: BigInt!",
        ] {
            assert!(sdl.contains(needle), "{needle} not in:\n{sdl}");
        }
    }

    #[test]
    fn reorder_follows_the_selection() {
        let doc = async_graphql::parser::parse_query("query { b: x { z y ...F } a }\nfragment F on T { w y }").unwrap();
        let mut data = Value::from_json(serde_json::json!({
            "a": 1,
            "b": [{"w": 1, "y": 2, "z": 3}],
        }))
        .unwrap();
        reorder(&mut data, &doc, None);
        assert_eq!(data.into_json().unwrap().to_string(), r#"{"b":[{"z":3,"y":2,"w":1}],"a":1}"#);
    }
}
