//! Compute sessions as the API sees them: the service layer behind `api::session`,
//! `api::stream` and `api::events`.
//!
//! - [`CreateRequest`] parses the body of `POST /session` exactly as the official client
//!   23.09 sends it (`spec/client-wire.md` §6.1), with the original's aliases and lenient
//!   booleans and integers; every error names the field.
//! - [`create_session`] validates the rest against the database (owner, group, image, resource
//!   slots, scaling group), reuses or refuses a live session of the same name, enqueues the
//!   session (PENDING), wakes the scheduler and, unless `enqueueOnly`, waits until the session
//!   runs, dies or `maxWaitSeconds` pass.
//! - [`find_session`] resolves a `{ref}` (name or id) with the original's access-key scopes
//!   (`owner_access_key`), so that users only ever see their own sessions.
//! - [`execute`] runs one step of code execution on the main kernel and answers in the
//!   client's result shape (`console` as merged `[type, data]` pairs, §6.5).

use std::collections::BTreeMap;
use std::time::Duration;

use bai_agent_runtime::rpc::pb;
use bai_core::{
    ClusterMode, Event, KnownSlots, ResourceOpts, ResourceSlot, SessionId, SessionSpec, SessionStatus, SessionType,
    SlotType,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::api::{ApiError, AuthContext, ErrorKind, Role};
use crate::db::entities::{group, image, kernel, session};
use crate::db::repo;
use crate::db::types::{JsonOf, UserRole, Wire};
use crate::db::DbError;
use crate::manager::Manager;

/// The original's session-name rule: 4 to 64 ASCII characters, letters, digits, `_`, `.` and
/// `-`, starting and ending with a letter, digit or `_`.
pub fn validate_session_name(name: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if !(4..=64).contains(&name.len()) {
        return Err(format!("{name:?} must be 4 to 64 characters long"));
    }
    let first = name.chars().next().unwrap_or(' ');
    let last = name.chars().last().unwrap_or(' ');
    if !word(first) || !word(last) || !name.chars().all(|c| word(c) || c == '.' || c == '-') {
        return Err(format!(
            "{name:?} must consist of ASCII letters, digits, '_', '.' and '-', and start and end with a letter, digit or '_'"
        ));
    }
    Ok(())
}

/// A database error as an API error: a missing row is 404 `object-not-found` naming its kind, a
/// conflict 409, an invalid value 400 naming the field, anything else 500.
pub fn db_error(err: DbError) -> ApiError {
    match err {
        DbError::NotFound { kind, .. } => ApiError::not_found(kind),
        DbError::Conflict { what } => ApiError::conflict(what),
        DbError::Invalid { field, reason } => ApiError::invalid(field, reason),
        DbError::Db(e) => ApiError::internal(format!("database: {e}")),
    }
}

/// A random lower-case hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // Only ids depend on it; fall back to a UUID's randomness.
        return Uuid::new_v4().simple().to_string()[..bytes * 2].to_string();
    }
    hex::encode(buf)
}

// ---------------------------------------------------------------------------------------------
// Lenient parameter reading
// ---------------------------------------------------------------------------------------------

/// The JSON object of a request body (or a query), read by field name with aliases, in the
/// original's lenient way (`t.ToBool`, `t.ToInt`). Errors name the field with `prefix`.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    /// Fields of `map`; error messages name them `prefix` + name.
    pub fn new(map: &'a Map<String, Value>, prefix: &'a str) -> Self {
        Self { map, prefix }
    }

    /// The full name of a field for messages.
    pub fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value of the first of `keys` present and not null.
    pub fn get(&self, keys: &[&str]) -> Option<&'a Value> {
        keys.iter().find_map(|k| self.map.get(*k)).filter(|v| !v.is_null())
    }

    /// A string field.
    pub fn string(&self, keys: &[&str]) -> Result<Option<String>, ApiError> {
        match self.get(keys) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::invalid(self.name(keys[0]), format!("expected a string, got {other}"))),
        }
    }

    /// A boolean field: JSON booleans, `true`/`false`, `yes`/`no`, `t`/`f`, `on`/`off`,
    /// `1`/`0` (strings or numbers).
    pub fn boolean(&self, keys: &[&str], default: bool) -> Result<bool, ApiError> {
        match self.get(keys) {
            None => Ok(default),
            Some(v) => parse_bool(v)
                .ok_or_else(|| ApiError::invalid(self.name(keys[0]), format!("expected a boolean, got {v}"))),
        }
    }

    /// An integer field: a JSON integer, or a string holding one.
    pub fn integer(&self, keys: &[&str]) -> Result<Option<i64>, ApiError> {
        match self.get(keys) {
            None => Ok(None),
            Some(v) => parse_int(v)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(self.name(keys[0]), format!("expected an integer, got {v}"))),
        }
    }

    /// An object field.
    pub fn object(&self, keys: &[&str]) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.get(keys) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(ApiError::invalid(self.name(keys[0]), format!("expected an object, got {other}"))),
        }
    }

    /// A list field.
    pub fn list(&self, keys: &[&str]) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.get(keys) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(ApiError::invalid(self.name(keys[0]), format!("expected a list, got {other}"))),
        }
    }

    /// A map of strings to strings.
    pub fn string_map(&self, keys: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
        let mut out = BTreeMap::new();
        if let Some(map) = self.object(keys)? {
            for (k, v) in map {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => {
                        return Err(ApiError::invalid(
                            format!("{}.{k}", self.name(keys[0])),
                            format!("expected a string, got {other}"),
                        ))
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A lenient boolean (`t.ToBool`).
pub fn parse_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
            "false" | "f" | "no" | "n" | "off" | "0" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn parse_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses `starts_at`: an ISO 8601 date and time (UTC when it has no offset), or a delay from
/// `now` such as `1h`, `30m`, `1h30m`, `2d`, `45s` or a bare number of seconds.
pub fn parse_starts_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(naive.and_utc());
        }
    }
    if let Ok(at) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Ok(at.with_timezone(&Utc));
    }
    let bad = || format!("{text:?} is neither an ISO 8601 date and time nor a delay such as \"1h30m\"");
    if text.is_empty() {
        return Err(bad());
    }
    let mut seconds = 0f64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            'w' => 604800.0,
            _ => return Err(bad()),
        };
        let n: f64 = number.parse().map_err(|_| bad())?;
        seconds += n * unit;
        number.clear();
    }
    if !number.is_empty() {
        seconds += number.parse::<f64>().map_err(|_| bad())?;
    }
    if !seconds.is_finite() || seconds > 10.0 * 365.0 * 86400.0 {
        return Err(bad());
    }
    Ok(now + chrono::Duration::milliseconds((seconds * 1000.0) as i64))
}

// ---------------------------------------------------------------------------------------------
// The create request
// ---------------------------------------------------------------------------------------------

/// The `config` object of a create request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreationConfig {
    /// `mounts`: virtual folder names.
    pub mounts: Vec<String>,
    /// `mount_map` (`mountMap`): folder name → path in the container.
    pub mount_map: BTreeMap<String, String>,
    /// `environ`: environment variables.
    pub environ: BTreeMap<String, String>,
    /// `resources`: slot → amount, as the user typed them (`"1"`, `"1g"`), per kernel.
    pub resources: Map<String, Value>,
    /// `resource_opts` (`resourceOpts`), e.g. `{"shmem": "64m"}`.
    pub resource_opts: Map<String, Value>,
    /// `scalingGroup` (`scaling_group`).
    pub scaling_group: Option<String>,
    /// `preopen_ports` (`preopenPorts`); numeric strings are accepted.
    pub preopen_ports: Vec<u16>,
    /// `agentList` (`agent_list`): manually assigned agents (superadmins only).
    pub agent_list: Option<Vec<String>>,
}

/// The body of `POST /session`, parsed (spec §6.1). Only its syntax is checked here;
/// [`create_session`] checks the rest against the database.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    /// `name` (`session_name`, `clientSessionToken`).
    pub name: String,
    /// `image` (`lang`): a canonical reference or an alias.
    pub image: String,
    /// `architecture` (`arch`); the manager's own when omitted.
    pub architecture: String,
    /// `type` (`sessionType`).
    pub session_type: SessionType,
    /// `group` (`groupName`, `group_name`): the project's name (or id).
    pub group: String,
    /// `domain` (`domainName`, `domain_name`).
    pub domain: Option<String>,
    /// `clusterSize` (`cluster_size`).
    pub cluster_size: u32,
    /// `clusterMode` (`cluster_mode`).
    pub cluster_mode: ClusterMode,
    /// `tag`.
    pub tag: Option<String>,
    /// `enqueueOnly`: answer as soon as the session is queued.
    pub enqueue_only: bool,
    /// `maxWaitSeconds`: 0 waits until the session runs or dies.
    pub max_wait_seconds: u64,
    /// `reuseIfExists`: answer with a live session of the same name and image.
    pub reuse_if_exists: bool,
    /// `startupCommand`: a batch session's command.
    pub startup_command: Option<String>,
    /// `starts_at` (`startsAt`), resolved against the time of parsing.
    pub starts_at: Option<DateTime<Utc>>,
    /// `bootstrap_script` (`bootstrapScript`), as sent.
    pub bootstrap_script: Option<String>,
    /// `dependencies`: names or ids of sessions this one waits for.
    pub dependencies: Vec<String>,
    /// `callback_url` (`callbackUrl`, `callbackURL`).
    pub callback_url: Option<String>,
    /// `owner_access_key`: create for another user (admins).
    pub owner_access_key: Option<String>,
    /// `config`.
    pub config: CreationConfig,
}

impl CreateRequest {
    /// Parses a create body; `now` resolves a relative `starts_at`.
    pub fn from_json(body: &Value, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let Value::Object(map) = body else {
            return Err(ApiError::invalid("body", "expected a JSON object"));
        };
        let f = Fields::new(map, "");
        let name = f
            .string(&["name", "session_name", "clientSessionToken"])?
            .ok_or_else(|| ApiError::invalid("name", "is required"))?;
        validate_session_name(&name).map_err(|r| ApiError::invalid("name", r))?;
        if name == "from-template" {
            return Err(ApiError::invalid("name", format!("{name:?} is a reserved word")));
        }
        let image = f.string(&["image", "lang"])?.ok_or_else(|| ApiError::invalid("image", "is required"))?;
        let image = image.trim().to_string();
        if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::invalid("image", format!("{image:?} is not an image reference")));
        }
        image.parse::<bai_core::ImageRef>().map_err(|e| ApiError::invalid("image", e.to_string()))?;
        let architecture = match f.string(&["architecture", "arch"])? {
            Some(a) => {
                bai_core::image_ref::normalize_architecture(&a).map_err(|r| ApiError::invalid("architecture", r))?
            }
            None => std::env::consts::ARCH.to_string(),
        };
        let session_type = match f.string(&["type", "sessionType"])? {
            None => SessionType::Interactive,
            Some(t) => match t.parse::<SessionType>() {
                Ok(SessionType::System) | Err(_) => {
                    return Err(ApiError::invalid("type", format!("{t:?} is not one of interactive, batch, inference")))
                }
                Ok(t) => t,
            },
        };
        let group = f.string(&["group", "groupName", "group_name"])?.unwrap_or_else(|| "default".into());
        let domain = f.string(&["domain", "domainName", "domain_name"])?;
        let cluster_size = match f.integer(&["clusterSize", "cluster_size"])? {
            None => 1,
            Some(n) if (1..=i64::from(bai_core::session::MAX_CLUSTER_SIZE)).contains(&n) => n as u32,
            Some(n) => {
                return Err(ApiError::invalid(
                    "clusterSize",
                    format!("{n} is out of range: expected 1 to {}", bai_core::session::MAX_CLUSTER_SIZE),
                ))
            }
        };
        let cluster_mode = match f.string(&["clusterMode", "cluster_mode"])? {
            None => ClusterMode::SingleNode,
            Some(m) => m.parse().map_err(|_| {
                ApiError::invalid("clusterMode", format!("{m:?} is not one of single-node, multi-node"))
            })?,
        };
        let tag = f.string(&["tag"])?;
        let enqueue_only = f.boolean(&["enqueueOnly", "enqueue_only"], false)?;
        let max_wait_seconds = match f.integer(&["maxWaitSeconds", "max_wait_seconds"])? {
            None => 0,
            Some(n) if n >= 0 => n as u64,
            Some(n) => return Err(ApiError::invalid("maxWaitSeconds", format!("{n} is negative: expected 0 or more"))),
        };
        let reuse_if_exists = f.boolean(&["reuseIfExists", "reuse"], true)?;
        let startup_command = f.string(&["startupCommand", "startup_command"])?;
        let starts_at = match f.string(&["starts_at", "startsAt"])? {
            None => None,
            Some(s) => Some(parse_starts_at(&s, now).map_err(|r| ApiError::invalid("starts_at", r))?),
        };
        let bootstrap_script = f.string(&["bootstrap_script", "bootstrapScript"])?;
        let mut dependencies = Vec::new();
        for (i, item) in f.list(&["dependencies"])?.into_iter().flatten().enumerate() {
            match item {
                Value::String(s) if !s.trim().is_empty() => dependencies.push(s.trim().to_string()),
                other => {
                    return Err(ApiError::invalid(
                        format!("dependencies[{i}]"),
                        format!("expected a session name or id, got {other}"),
                    ))
                }
            }
        }
        let callback_url = f.string(&["callback_url", "callbackUrl", "callbackURL"])?;
        if let Some(url) = &callback_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > 8
                && !url.contains(char::is_whitespace);
            if !ok {
                return Err(ApiError::invalid("callback_url", format!("{url:?} is not an http(s) URL")));
            }
        }
        let owner_access_key = f.string(&["owner_access_key", "ownerAccessKey"])?.filter(|k| !k.is_empty());
        let config = match f.object(&["config"])? {
            Some(c) => parse_config(c)?,
            None => CreationConfig::default(),
        };
        Ok(Self {
            name,
            image,
            architecture,
            session_type,
            group,
            domain,
            cluster_size,
            cluster_mode,
            tag,
            enqueue_only,
            max_wait_seconds,
            reuse_if_exists,
            startup_command,
            starts_at,
            bootstrap_script,
            dependencies,
            callback_url,
            owner_access_key,
            config,
        })
    }
}

fn parse_config(map: &Map<String, Value>) -> Result<CreationConfig, ApiError> {
    let f = Fields::new(map, "config.");
    let mut mounts = Vec::new();
    for (i, item) in f.list(&["mounts"])?.into_iter().flatten().enumerate() {
        match item {
            Value::String(s) if !s.is_empty() => mounts.push(s.clone()),
            other => {
                return Err(ApiError::invalid(
                    format!("config.mounts[{i}]"),
                    format!("expected a folder name, got {other}"),
                ))
            }
        }
    }
    let mount_map = f.string_map(&["mount_map", "mountMap"])?;
    let environ = f.string_map(&["environ"])?;
    let resources = f.object(&["resources"])?.cloned().unwrap_or_default();
    let resource_opts = f.object(&["resource_opts", "resourceOpts"])?.cloned().unwrap_or_default();
    let scaling_group = f.string(&["scalingGroup", "scaling_group"])?.filter(|s| !s.is_empty());
    let mut preopen_ports = Vec::new();
    for (i, item) in f.list(&["preopen_ports", "preopenPorts"])?.into_iter().flatten().enumerate() {
        let port = parse_int(item).filter(|p| (1024..=65535).contains(p));
        match port {
            Some(p) => preopen_ports.push(p as u16),
            None => {
                return Err(ApiError::invalid(
                    format!("config.preopen_ports[{i}]"),
                    format!("{item} is not a port number from 1024 to 65535"),
                ))
            }
        }
    }
    let agent_list = match f.list(&["agentList", "agent_list"])? {
        None => None,
        Some(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    other => {
                        return Err(ApiError::invalid(
                            format!("config.agentList[{i}]"),
                            format!("expected an agent id, got {other}"),
                        ))
                    }
                }
            }
            Some(out)
        }
    };
    Ok(CreationConfig {
        mounts,
        mount_map,
        environ,
        resources,
        resource_opts,
        scaling_group,
        preopen_ports,
        agent_list,
    })
}

// ---------------------------------------------------------------------------------------------
// Scopes: whose sessions a request acts on
// ---------------------------------------------------------------------------------------------

/// The keypair a request acts for, and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owner's access key.
    pub access_key: String,
    /// The owner's user id.
    pub user_id: Uuid,
    /// The owner's domain.
    pub domain_name: String,
    /// The owner's role.
    pub role: Role,
    /// Whether the request named this owner with `owner_access_key` (another user).
    pub delegated: bool,
}

/// The owner a request acts for (the original's `get_access_key_scopes`): the requester, or
/// with `owner_access_key` another user — superadmins for anyone, domain admins for
/// non-superadmins of their domain (else 403), users never (403). An unknown key is 400.
pub async fn owner_scope(
    db: &DatabaseConnection,
    ctx: &AuthContext,
    owner_access_key: Option<&str>,
) -> Result<Owner, ApiError> {
    let me = Owner {
        access_key: ctx.access_key().to_string(),
        user_id: ctx.credential.user_id,
        domain_name: ctx.credential.domain_name.clone(),
        role: ctx.role(),
        delegated: false,
    };
    let Some(other) = owner_access_key.map(str::trim).filter(|k| !k.is_empty() && *k != ctx.access_key()) else {
        return Ok(me);
    };
    let Some((kp, user)) = repo::find_keypair_with_user(db, other).await.map_err(db_error)? else {
        return Err(ApiError::invalid("owner_access_key", "Unknown owner access key"));
    };
    let role = match user.role.0 {
        UserRole::Superadmin => Role::Superadmin,
        UserRole::Admin => Role::Admin,
        _ => Role::User,
    };
    match ctx.role() {
        Role::Superadmin => {}
        Role::Admin => {
            if user.domain_name != ctx.credential.domain_name {
                return Err(ApiError::forbidden(
                    "Domain-admins can perform operations on behalf of other users in the same domain only.",
                ));
            }
            if role == Role::Superadmin {
                return Err(ApiError::forbidden("Domain-admins cannot perform operations on behalf of super-admins."));
            }
        }
        Role::User => return Err(ApiError::forbidden("Only admins can perform operations on behalf of other users.")),
    }
    Ok(Owner { access_key: kp.access_key, user_id: user.uuid, domain_name: user.domain_name, role, delegated: true })
}

fn match_summary(s: &session::Model) -> Value {
    json!({"id": s.id.to_string(), "name": s.name, "status": s.status.0.as_str()})
}

/// A match of a reference: a session, or a session with its main kernel.
trait Matched: Sized {
    fn session(&self) -> &session::Model;

    /// The matches of `reference` among `access_key`'s sessions (anyone's when `None`).
    async fn fetch(
        db: &DatabaseConnection,
        access_key: Option<&str>,
        reference: &str,
        include_dead: bool,
    ) -> Result<Vec<Self>, DbError>;
}

impl Matched for session::Model {
    fn session(&self) -> &session::Model {
        self
    }

    async fn fetch(
        db: &DatabaseConnection,
        access_key: Option<&str>,
        reference: &str,
        include_dead: bool,
    ) -> Result<Vec<Self>, DbError> {
        repo::match_sessions(db, access_key, reference, include_dead).await
    }
}

impl Matched for (session::Model, Option<kernel::Model>) {
    fn session(&self) -> &session::Model {
        &self.0
    }

    async fn fetch(
        db: &DatabaseConnection,
        access_key: Option<&str>,
        reference: &str,
        include_dead: bool,
    ) -> Result<Vec<Self>, DbError> {
        repo::match_sessions_with_main_kernel(db, access_key, reference, include_dead).await
    }
}

/// One session out of the matches of a reference: with `include_dead`, the one live match,
/// else the newest dead one.
fn pick<T: Matched>(mut matches: Vec<T>, include_dead: bool) -> Result<Option<T>, ApiError> {
    if include_dead {
        let live: Vec<usize> = (0..matches.len()).filter(|&i| !matches[i].session().status.0.is_terminal()).collect();
        if live.len() > 1 {
            return Err(ApiError::too_many_sessions_matched(
                live.iter().map(|&i| match_summary(matches[i].session())).collect(),
            ));
        }
        if let Some(&one) = live.first() {
            return Ok(Some(matches.swap_remove(one)));
        }
        return Ok((!matches.is_empty()).then(|| matches.remove(0)));
    }
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.pop()),
        _ => Err(ApiError::too_many_sessions_matched(matches.iter().map(|m| match_summary(m.session())).collect())),
    }
}

/// The session `reference` (a name or an id) designates for this request (spec §6 "How the
/// reference resolves `{ref}`").
///
/// The owner's sessions are searched first (the requester's, or `owner_access_key`'s, see
/// [`owner_scope`]). When that finds nothing and no owner was named, admins also see the
/// sessions of their domain and superadmins every session. Only live sessions match, unless
/// `include_dead`. Nothing is 404 "No such session."; several are 404
/// `too-many-sessions-matched`.
pub async fn find_session(
    db: &DatabaseConnection,
    ctx: &AuthContext,
    reference: &str,
    owner_access_key: Option<&str>,
    include_dead: bool,
) -> Result<session::Model, ApiError> {
    find_matching(db, ctx, reference, owner_access_key, include_dead).await
}

/// [`find_session`] with the session's main kernel, as [`main_kernel`] finds it (`None` when
/// the session has no kernel), read in the same statement.
pub async fn find_session_with_main_kernel(
    db: &DatabaseConnection,
    ctx: &AuthContext,
    reference: &str,
    owner_access_key: Option<&str>,
    include_dead: bool,
) -> Result<(session::Model, Option<kernel::Model>), ApiError> {
    find_matching(db, ctx, reference, owner_access_key, include_dead).await
}

async fn find_matching<T: Matched>(
    db: &DatabaseConnection,
    ctx: &AuthContext,
    reference: &str,
    owner_access_key: Option<&str>,
    include_dead: bool,
) -> Result<T, ApiError> {
    let owner = owner_scope(db, ctx, owner_access_key).await?;
    let own = T::fetch(db, Some(&owner.access_key), reference, include_dead).await.map_err(db_error)?;
    if let Some(found) = pick(own, include_dead)? {
        return Ok(found);
    }
    if !owner.delegated && ctx.is_admin() {
        let mut all = T::fetch(db, None, reference, include_dead).await.map_err(db_error)?;
        if !ctx.is_superadmin() {
            all.retain(|m| m.session().domain_name == ctx.credential.domain_name);
        }
        if let Some(found) = pick(all, include_dead)? {
            return Ok(found);
        }
    }
    Err(ApiError::session_not_found())
}

/// The main kernel of a session (404 "No such kernel." when it has none).
pub async fn main_kernel(db: &DatabaseConnection, session_id: Uuid) -> Result<kernel::Model, ApiError> {
    repo::list_kernels_of_session(db, SessionId::from_uuid(session_id))
        .await
        .map_err(db_error)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("kernel"))
}

// ---------------------------------------------------------------------------------------------
// Creating sessions
// ---------------------------------------------------------------------------------------------

/// CPU cores a kernel gets when neither the request nor the image says.
pub const DEFAULT_CPU: &str = "1";
/// Memory a kernel gets when neither the request nor the image says.
pub const DEFAULT_MEM: &str = "1g";

/// The answer to a create request: always 201 (spec §6.1), with this body.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The session (new or reused).
    pub session_id: SessionId,
    /// `{"sessionId", "sessionName", "status", "servicePorts", "created"}`.
    pub body: Value,
}

/// The slot types a cluster knows: `cpu` and `mem`, and every slot its agents report
/// (`mem`-named slots count bytes, the others are counts).
pub async fn known_slots(db: &DatabaseConnection) -> Result<KnownSlots, ApiError> {
    let mut known = KnownSlots::default();
    for agent in repo::list_agents(db, None, None).await.map_err(db_error)? {
        for (name, _) in agent.available_slots.0.iter() {
            if known.get(name).is_none() {
                let slot_type = if name == "mem" || name.ends_with(".mem") { SlotType::Bytes } else { SlotType::Count };
                // Names were validated when the heartbeat was stored.
                let _ = known.insert(name, slot_type);
            }
        }
    }
    Ok(known)
}

fn slot_error(err: bai_core::Error, known: &KnownSlots) -> ApiError {
    let names: Vec<&str> = known.iter().map(|(n, _)| n).collect();
    match err {
        bai_core::Error::UnknownSlot { slot, .. } => ApiError::invalid(
            format!("config.resources.{slot}"),
            if slot == "shmem" {
                "shared memory is not a resource slot: request it as config.resource_opts.shmem".to_string()
            } else {
                format!("unknown resource slot {slot:?}; this cluster knows: {}", names.join(", "))
            },
        ),
        bai_core::Error::InvalidSlotValue { slot, reason } => {
            ApiError::invalid(format!("config.resources.{slot}"), reason)
        }
        bai_core::Error::InvalidSlotName { name, reason } => {
            ApiError::invalid(format!("config.resources.{name}"), reason)
        }
        other => ApiError::invalid("config.resources", other.to_string()),
    }
}

/// An image's per-slot limits: `resources` (`{slot: {"min", "max"}}`) and the labels
/// `ai.backend.resource.min.<slot>` / `ai.backend.resource.max.<slot>`.
fn image_limits(img: &image::Model, known: &KnownSlots) -> (ResourceSlot, ResourceSlot) {
    let mut min = Map::new();
    let mut max = Map::new();
    if let Some(labels) = img.labels.as_object() {
        for (key, value) in labels {
            if let Some(slot) = key.strip_prefix("ai.backend.resource.min.") {
                min.insert(slot.to_string(), value.clone());
            } else if let Some(slot) = key.strip_prefix("ai.backend.resource.max.") {
                max.insert(slot.to_string(), value.clone());
            }
        }
    }
    if let Some(resources) = img.resources.as_object() {
        for (slot, limits) in resources {
            if let Some(v) = limits.get("min").filter(|v| !v.is_null()) {
                min.insert(slot.clone(), v.clone());
            }
            if let Some(v) = limits.get("max").filter(|v| !v.is_null()) {
                max.insert(slot.clone(), v.clone());
            }
        }
    }
    let parse = |m: Map<String, Value>| {
        let mut out = ResourceSlot::new();
        for (slot, v) in m {
            if known.get(&slot).is_none() {
                continue;
            }
            let one: Map<String, Value> = [(slot.clone(), v)].into_iter().collect();
            if let Ok(parsed) = ResourceSlot::from_user_input(&one, None) {
                if let Err(e) = out.set(&slot, parsed.get(&slot)) {
                    tracing::debug!(error = %e, "image limit ignored");
                }
            }
        }
        out
    };
    (parse(min), parse(max))
}

/// The per-kernel resources of a request: the requested slots (normalised against `known`;
/// an unknown slot is 400 naming it), with `cpu` and `mem` defaulting to the image's minimum,
/// else [`DEFAULT_CPU`] and [`DEFAULT_MEM`]; amounts below the image's minimum or above its
/// maximum are 400.
pub fn resolve_resources(
    requested: &Map<String, Value>,
    known: &KnownSlots,
    img: Option<&image::Model>,
) -> Result<ResourceSlot, ApiError> {
    let mut slots = ResourceSlot::from_user_input(requested, Some(known)).map_err(|e| slot_error(e, known))?;
    let (min, max) = img.map(|i| image_limits(i, known)).unwrap_or_default();
    for (slot, default) in [("cpu", DEFAULT_CPU), ("mem", DEFAULT_MEM)] {
        if requested.contains_key(slot) {
            continue;
        }
        let value = if min.get(slot).is_zero() {
            let one: Map<String, Value> = [(slot.to_string(), Value::String(default.into()))].into_iter().collect();
            ResourceSlot::from_user_input(&one, Some(known)).map_err(|e| slot_error(e, known))?.get(slot)
        } else {
            min.get(slot)
        };
        slots.set(slot, value).map_err(|e| slot_error(e, known))?;
    }
    for (slot, amount) in slots.iter() {
        let low = min.get(slot);
        if amount < low {
            return Err(ApiError::invalid(
                format!("config.resources.{slot}"),
                format!("{amount} is below the image's minimum of {low}"),
            ));
        }
        if max.contains(slot) && !max.get(slot).is_zero() && amount > max.get(slot) {
            return Err(ApiError::invalid(
                format!("config.resources.{slot}"),
                format!("{amount} is above the image's maximum of {}", max.get(slot)),
            ));
        }
    }
    for slot in ["cpu", "mem"] {
        if slots.get(slot).is_zero() {
            return Err(ApiError::invalid(format!("config.resources.{slot}"), "must be more than zero"));
        }
    }
    Ok(slots)
}

fn resource_opts(map: &Map<String, Value>) -> Result<ResourceOpts, ApiError> {
    let mut opts = ResourceOpts::default();
    for (key, value) in map {
        if key == "shmem" {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Null => continue,
                other => {
                    return Err(ApiError::invalid(
                        "config.resource_opts.shmem",
                        format!("expected a size such as \"64m\", got {other}"),
                    ))
                }
            };
            let size = text
                .parse::<bai_core::BinarySize>()
                .map_err(|e| ApiError::invalid("config.resource_opts.shmem", e.to_string()))?;
            opts.shmem = Some(size);
        } else {
            opts.extra.insert(key.clone(), value.clone());
        }
    }
    Ok(opts)
}

/// Maps a field of [`SessionSpec::validate`] to the client's name for it.
fn spec_field(field: &str) -> String {
    match field {
        "cluster_size" => "clusterSize".into(),
        "startup_command" => "startupCommand".into(),
        f if f.starts_with("environ") || f.starts_with("resource") || f.starts_with("mounts") => format!("config.{f}"),
        f => f.into(),
    }
}

async fn resolve_group(
    db: &DatabaseConnection,
    owner: &Owner,
    domain: &str,
    name: &str,
) -> Result<group::Model, ApiError> {
    let found = match Uuid::parse_str(name.trim()) {
        Ok(id) => repo::get_group(db, id).await.map_err(db_error)?.filter(|g| g.domain_name == domain),
        Err(_) => repo::find_group_by_name(db, domain, name).await.map_err(db_error)?,
    };
    let Some(group) = found else {
        return Err(ApiError::invalid("group", format!("no group {name:?} in domain {domain:?}")));
    };
    if !group.is_active {
        return Err(ApiError::invalid("group", format!("the group {name:?} is inactive")));
    }
    if owner.role == Role::User && !repo::is_group_member(db, owner.user_id, group.id).await.map_err(db_error)? {
        return Err(ApiError::invalid("group", format!("the session owner is not a member of the group {name:?}")));
    }
    Ok(group)
}

/// The service ports of a kernel as the client reads them: `[{name, protocol, ports}]`.
pub fn client_service_ports(ports: Option<&Value>) -> Value {
    let items = ports.and_then(Value::as_array).cloned().unwrap_or_default();
    Value::Array(
        items
            .iter()
            .map(|p| {
                let mut out = Map::new();
                out.insert("name".into(), p.get("name").cloned().unwrap_or(Value::Null));
                out.insert("protocol".into(), p.get("protocol").cloned().unwrap_or(json!("tcp")));
                out.insert(
                    "ports".into(),
                    p.get("container_ports").or_else(|| p.get("ports")).cloned().unwrap_or(json!([])),
                );
                for key in ["url_template", "allowed_arguments", "allowed_envs"] {
                    if let Some(v) = p.get(key) {
                        out.insert(key.into(), v.clone());
                    }
                }
                Value::Object(out)
            })
            .collect(),
    )
}

/// Serialises the check-then-insert of a name within this process (two managers may still
/// race; the original has the same window).
static CREATE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a live session of the requested name means for a create request, if there is one.
async fn existing_session(
    db: &DatabaseConnection,
    owner: &Owner,
    request: &CreateRequest,
    image_name: &str,
) -> Result<Option<Created>, ApiError> {
    let existing = session::Entity::find()
        .filter(session::Column::AccessKey.eq(owner.access_key.as_str()))
        .filter(session::Column::Name.eq(request.name.as_str()))
        .filter(session::Column::Status.is_not_in([Wire(SessionStatus::Terminated), Wire(SessionStatus::Cancelled)]))
        .one(db)
        .await
        .map_err(|e| db_error(e.into()))?;
    let Some(existing) = existing else { return Ok(None) };
    let kernel = main_kernel(db, existing.id).await.ok();
    let existing_image = kernel
        .as_ref()
        .and_then(|k| k.image.clone())
        .or_else(|| existing.images.0.first().cloned())
        .unwrap_or_default();
    let same_image = existing_image == image_name || existing_image == request.image;
    if !request.reuse_if_exists || !same_image {
        let mut err = ApiError::session_already_exists(existing.id);
        if !same_image {
            err =
                err.with_msg(format!("a live session named {:?} runs another image ({existing_image})", request.name));
        }
        return Err(err);
    }
    let ports = client_service_ports(kernel.as_ref().and_then(|k| k.service_ports.as_ref()));
    Ok(Some(Created {
        session_id: SessionId::from_uuid(existing.id),
        body: json!({
            "sessionId": existing.id.to_string(),
            "sessionName": existing.name,
            "status": existing.status.0.as_str(),
            "service_ports": ports,
            "servicePorts": ports,
            "created": false,
        }),
    }))
}

/// Creates (or reuses) a session as `POST /session` asks (spec §6.1).
///
/// A folder mounted into a session's kernels, as stored in `vfolder_mounts`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionMount {
    /// The folder's id.
    pub id: Uuid,
    /// The folder's name as the owner sees it.
    pub name: String,
    /// Its directory relative to the storage root (which agents mount as their folder root).
    pub folder: String,
    /// Its name under `/home/work` in the kernels.
    pub target: String,
    /// The owner's permission on it.
    pub permission: bai_core::MountPermission,
}

/// Resolves `config.mounts` (folder names, any order, repeats ignored) and
/// `config.mount_map` (name → `/home/work/<dir>` or `<dir>`) as the session owner sees the
/// folders: their own, shared with them, or of their projects, with their permission.
async fn resolve_mounts(
    db: &DatabaseConnection,
    volumes: Option<&crate::volumes::Volumes>,
    owner: &Owner,
    names: &[String],
    mount_map: &BTreeMap<String, String>,
) -> Result<Vec<SessionMount>, ApiError> {
    if let Some(extra) = mount_map.keys().find(|k| !names.contains(k)) {
        return Err(ApiError::invalid("config.mount_map", format!("{extra:?} is not in config.mounts")));
    }
    let viewer = repo::Viewer {
        user: owner.user_id,
        role: match owner.role {
            Role::Superadmin => UserRole::Superadmin,
            Role::Admin => UserRole::Admin,
            Role::User => UserRole::User,
        },
        domain: owner.domain_name.clone(),
    };
    let mut mounts: Vec<SessionMount> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if mounts.iter().any(|m| &m.name == name) {
            continue;
        }
        let access = repo::resolve_vfolder(db, &viewer, name).await.map_err(db_error)?.ok_or_else(|| {
            ApiError::not_found("vfolder").with_msg(format!("config.mounts[{i}]: no folder named {name:?}"))
        })?;
        let target = match mount_map.get(name) {
            None => name.clone(),
            Some(path) => {
                let field = format!("config.mount_map.{name}");
                let dir = path.strip_prefix("/home/work/").unwrap_or(path).trim_end_matches('/');
                if dir.is_empty() || dir.starts_with('/') || dir.contains('/') || dir == "." || dir == ".." {
                    return Err(ApiError::invalid(
                        field,
                        format!("{path:?}: folders mount at /home/work/<dir> (one directory name)"),
                    ));
                }
                dir.to_string()
            }
        };
        if let Some(other) = mounts.iter().find(|m| m.target == target) {
            return Err(ApiError::invalid(
                "config.mount_map",
                format!("{name:?} and {:?} would both mount at /home/work/{target}", other.name),
            ));
        }
        let folder = match volumes {
            Some(v) => v.mount_path(&access.folder.host, access.folder.id).map_err(|e| {
                ApiError::with_kind_msg(ErrorKind::VFolderOperationFailed, format!("config.mounts[{i}]: {e}"))
            })?,
            None => access.folder.id.simple().to_string(),
        };
        mounts.push(SessionMount {
            id: access.folder.id,
            name: name.clone(),
            folder,
            target,
            permission: access.permission,
        });
    }
    Ok(mounts)
}

/// Refuses (403) an image from a registry the domain does not allow. Only domains whose
/// `allowed_docker_registries` is not empty are restricted. The image's registry is that of
/// its row (found by the name or alias the request gives, else by the canonical reference);
/// rows the agents reported from their own engines stay allowed, and so does an unknown image
/// whose reference names no configured registry's host (the agents' engines may hold it).
async fn check_registry_allowed(
    manager: &Manager,
    domain: &str,
    request: &CreateRequest,
    img: Option<&image::Model>,
) -> Result<(), ApiError> {
    let db = manager.db();
    let Some(row) = repo::get_domain(db, domain).await.map_err(db_error)? else { return Ok(()) };
    let allowed = &row.allowed_docker_registries.0;
    if allowed.is_empty() {
        return Ok(());
    }
    let found = match img {
        Some(i) => Some(i.clone()),
        None => match request.image.parse::<bai_core::ImageRef>() {
            Ok(reference) => {
                repo::find_image(db, &reference.canonical(), &request.architecture).await.map_err(db_error)?
            }
            Err(_) => None,
        },
    };
    let registry = match found {
        Some(i) if i.is_local => return Ok(()),
        Some(i) => i.registry,
        None => {
            let Ok(reference) = request.image.parse::<bai_core::ImageRef>() else { return Ok(()) };
            let registries = manager.registries();
            match registries.file().iter().find(|r| r.host() == reference.registry()) {
                Some(r) => r.name.clone(),
                None => return Ok(()),
            }
        }
    };
    if allowed.contains(&registry) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "image: {:?} comes from registry {registry:?}, which domain {domain:?} does not allow (allowed: {})",
        request.image,
        allowed.join(", ")
    )))
}

/// Checks, in order: the owner (`owner_access_key`), the domain and group, agent assignment
/// (superadmins only), the folders to mount (resolved as the owner sees them, with the
/// owner's permission; 404 for a name they cannot see), the fields the manager does not
/// support yet, an existing live session
/// of the same name (reused when `reuseIfExists` and the image match, else 400
/// `session-already-exists`), the image (any name is accepted; a known one gives its resource
/// limits; an alias names its image; a registry the domain does not allow is 403), the resources, the scaling group and the spec as a whole. Nothing is written
/// before every check passed. The session is then enqueued (PENDING), the scheduler woken and
/// `session_enqueued` sent; unless `enqueueOnly`, the call returns once the session is RUNNING,
/// dead or TERMINATING, or after `maxWaitSeconds` with status `TIMEOUT`.
pub async fn create_session(manager: &Manager, ctx: &AuthContext, request: CreateRequest) -> Result<Created, ApiError> {
    let db = manager.db();
    let owner = owner_scope(db, ctx, request.owner_access_key.as_deref()).await?;
    let domain = request.domain.clone().unwrap_or_else(|| owner.domain_name.clone());
    if domain != owner.domain_name {
        return Err(ApiError::invalid(
            "domain",
            format!("{domain:?} is not the domain of the session owner ({})", owner.domain_name),
        ));
    }
    let group = resolve_group(db, &owner, &domain, &request.group).await?;
    if let Some(agents) = &request.config.agent_list {
        if !ctx.is_superadmin() {
            return Err(ApiError::new(ErrorKind::InsufficientPrivilege)
                .with_msg("You are not allowed to manually assign agents for your session."));
        }
        let expected = if request.cluster_mode == ClusterMode::MultiNode { request.cluster_size as usize } else { 1 };
        if !agents.is_empty() && agents.len() != expected {
            return Err(ApiError::invalid(
                "config.agentList",
                format!(
                    "{} agents given; a {} session of {} kernels needs {expected}",
                    agents.len(),
                    request.cluster_mode,
                    request.cluster_size
                ),
            ));
        }
        for (i, agent) in agents.iter().enumerate() {
            let id = bai_core::AgentId::new(agent)
                .map_err(|e| ApiError::invalid(format!("config.agentList[{i}]"), e.to_string()))?;
            if repo::get_agent(db, &id).await.map_err(db_error)?.is_none() {
                return Err(ApiError::invalid(format!("config.agentList[{i}]"), format!("no agent {agent:?}")));
            }
        }
    }
    let mounts =
        resolve_mounts(db, manager.volumes().map(|v| &**v), &owner, &request.config.mounts, &request.config.mount_map)
            .await?;
    if !request.dependencies.is_empty() {
        return Err(ApiError::invalid("dependencies", "session dependencies are not supported by this manager yet"));
    }
    if request.starts_at.is_some() && request.session_type != SessionType::Batch {
        return Err(ApiError::invalid("starts_at", "only batch sessions may have a start time"));
    }
    let img = repo::find_image(db, &request.image, &request.architecture).await.map_err(db_error)?;
    check_registry_allowed(manager, &domain, &request, img.as_ref()).await?;
    let image_name = img.as_ref().map(|i| i.name.clone()).unwrap_or_else(|| request.image.clone());

    let _guard = CREATE_LOCK.lock().await;
    if let Some(reused) = existing_session(db, &owner, &request, &image_name).await? {
        return Ok(reused);
    }

    let known = known_slots(db).await?;
    let resources = resolve_resources(&request.config.resources, &known, img.as_ref())?;
    let opts = resource_opts(&request.config.resource_opts)?;
    let allowed = repo::allowed_scaling_groups(db, &domain, group.id, &owner.access_key).await.map_err(db_error)?;
    let allowed: Vec<String> = allowed.into_iter().map(|g| g.name).collect();
    let scaling_group = match &request.config.scaling_group {
        Some(sg) if allowed.contains(sg) => sg.clone(),
        Some(sg) => {
            return Err(ApiError::invalid(
                "config.scalingGroup",
                format!("{sg:?} is not a scaling group this session may use (allowed: {})", allowed.join(", ")),
            ))
        }
        None => allowed.first().cloned().ok_or_else(|| {
            ApiError::invalid(
                "config.scalingGroup",
                "no active scaling group is associated with the domain, group or keypair",
            )
        })?,
    };
    let image_ref: bai_core::ImageRef =
        image_name.parse().map_err(|e: bai_core::Error| ApiError::invalid("image", e.to_string()))?;
    let spec = SessionSpec {
        name: request.name.clone(),
        image: image_ref.clone(),
        session_type: request.session_type,
        resources: resources.clone(),
        resource_opts: opts.clone(),
        cluster_size: request.cluster_size,
        cluster_mode: request.cluster_mode,
        mounts: mounts
            .iter()
            .map(|m| bai_core::Mount {
                source: m.folder.clone(),
                target: Some(format!("/home/work/{}", m.target)),
                permission: m.permission,
            })
            .collect(),
        environ: request.config.environ.clone(),
        bootstrap_script: request.bootstrap_script.clone(),
        startup_command: request.startup_command.clone(),
        scaling_group: Some(scaling_group.clone()),
    };
    spec.validate().map_err(|e| match e {
        bai_core::Error::InvalidSpec { field, reason } => ApiError::invalid(spec_field(&field), reason),
        other => ApiError::from(other),
    })?;

    let session_id = Uuid::new_v4();
    let session_row = session::ActiveModel {
        id: Set(session_id),
        creation_id: Set(Some(random_hex(16))),
        name: Set(request.name.clone()),
        session_type: Set(Wire(request.session_type)),
        cluster_mode: Set(Wire(request.cluster_mode)),
        cluster_size: Set(request.cluster_size as i32),
        agent_ids: Set(request.config.agent_list.clone().filter(|a| !a.is_empty()).map(JsonOf)),
        scaling_group_name: Set(Some(scaling_group.clone())),
        target_sgroup_names: Set(JsonOf(vec![scaling_group])),
        domain_name: Set(domain.clone()),
        group_id: Set(group.id),
        user_uuid: Set(owner.user_id),
        access_key: Set(Some(owner.access_key.clone())),
        images: Set(JsonOf(vec![image_name.clone()])),
        tag: Set(request.tag.clone()),
        environ: Set(json!(request.config.environ)),
        bootstrap_script: Set(request.bootstrap_script.clone()),
        starts_at: Set(request.starts_at),
        callback_url: Set(request.callback_url.clone()),
        startup_command: Set(request.startup_command.clone()),
        vfolder_mounts: Set((!mounts.is_empty()).then(|| json!(mounts))),
        ..Default::default()
    };
    let opts_json = serde_json::to_value(&opts).unwrap_or_else(|_| json!({}));
    let registry = img.as_ref().map(|i| i.registry.clone()).unwrap_or_else(|| image_ref.registry().to_string());
    let tag = img.as_ref().and_then(|i| i.tag.clone()).unwrap_or_else(|| image_ref.tag().to_string());
    let kernels: Vec<kernel::ActiveModel> = spec
        .kernels()
        .into_iter()
        .enumerate()
        .map(|(rank, k)| kernel::ActiveModel {
            id: Set(Uuid::new_v4()),
            cluster_role: Set(k.cluster_role.clone()),
            cluster_idx: Set(k.cluster_idx as i32),
            local_rank: Set(rank as i32),
            cluster_hostname: Set(format!("{}{}", k.cluster_role, k.cluster_idx)),
            image: Set(Some(image_name.clone())),
            architecture: Set(request.architecture.clone()),
            registry: Set(Some(registry.clone())),
            tag: Set(Some(tag.clone())),
            requested_slots: Set(JsonOf(resources.clone())),
            resource_opts: Set(opts_json.clone()),
            bootstrap_script: Set(request.bootstrap_script.clone()),
            startup_command: Set(request.startup_command.clone()),
            preopen_ports: Set((!request.config.preopen_ports.is_empty()).then(|| json!(request.config.preopen_ports))),
            internal_data: Set((image_name == "host").then(|| json!({"cmd": ["sleep", "infinity"]}))),
            vfolder_mounts: Set((!mounts.is_empty()).then(|| json!(mounts))),
            ..Default::default()
        })
        .collect();
    repo::insert_session_with_kernels(db, session_row, kernels).await.map_err(db_error)?;
    drop(_guard);

    let id = SessionId::from_uuid(session_id);
    // The request's span names the session, and its dispatch will continue the request's trace.
    tracing::Span::current().record("session_id", tracing::field::display(id));
    manager.remember_creation_trace(id);
    tracing::info!(session = %id, name = %request.name, owner = %owner.access_key, image = %image_name, "session enqueued");
    // Subscribe before waking the scheduler so that no status change is missed.
    let events = if request.enqueue_only { None } else { manager.bus().subscribe().await.ok() };
    manager.schedule_soon();
    manager.announce(id, SessionStatus::Pending).await;
    let status = if request.enqueue_only {
        "PENDING".to_string()
    } else {
        let max_wait = (request.max_wait_seconds > 0).then(|| Duration::from_secs(request.max_wait_seconds));
        match wait_until_settled(db, id, events, max_wait).await? {
            Some(status) => status.as_str().to_string(),
            None => "TIMEOUT".to_string(),
        }
    };
    let ports = if status == "RUNNING" {
        let kernel = main_kernel(db, session_id).await.ok();
        client_service_ports(kernel.as_ref().and_then(|k| k.service_ports.as_ref()))
    } else {
        json!([])
    };
    Ok(Created {
        session_id: id,
        body: json!({
            "sessionId": session_id.to_string(),
            "sessionName": request.name,
            "status": status,
            "servicePorts": ports,
            "created": true,
        }),
    })
}

/// Whether a create request stops waiting at this status.
fn settled(status: SessionStatus) -> bool {
    matches!(status, SessionStatus::Running | SessionStatus::RunningDegraded | SessionStatus::Terminating)
        || status.is_dead()
}

/// Waits until the session is RUNNING (or `session_started` arrives), dead or TERMINATING
/// (its status then), or `max_wait` passes (`None`). Wakes on the session's events and
/// re-reads the database at least every half second.
pub async fn wait_until_settled(
    db: &DatabaseConnection,
    id: SessionId,
    mut events: Option<bai_agent_runtime::bus::EventStream>,
    max_wait: Option<Duration>,
) -> Result<Option<SessionStatus>, ApiError> {
    let deadline = max_wait.map(|d| tokio::time::Instant::now() + d);
    loop {
        let row = repo::get_session(db, id).await.map_err(db_error)?.ok_or_else(ApiError::session_not_found)?;
        if settled(row.status.0) {
            return Ok(Some(row.status.0));
        }
        let tick = tokio::time::Instant::now() + Duration::from_millis(500);
        let wake = deadline.map_or(tick, |d| d.min(tick));
        // `session_started` settles the wait at once: a batch session may end before the
        // database is read again, and the client must still hear that it ran.
        let next_event = async {
            match events.as_mut() {
                Some(stream) => loop {
                    match stream.next().await {
                        Some(Ok(envelope)) if envelope.event.session_id() == Some(id) => {
                            return matches!(envelope.event, Event::SessionStarted { .. });
                        }
                        Some(_) => continue,
                        None => return std::future::pending::<bool>().await,
                    }
                },
                None => std::future::pending::<bool>().await,
            }
        };
        if let Ok(true) = tokio::time::timeout_at(wake, next_event).await {
            return Ok(Some(SessionStatus::Running));
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            let row = repo::get_session(db, id).await.map_err(db_error)?.ok_or_else(ApiError::session_not_found)?;
            return Ok(settled(row.status.0).then_some(row.status.0));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Executing code
// ---------------------------------------------------------------------------------------------

/// Counts a query against a session (`num_queries`, shown by `GET /session/{ref}`).
pub async fn count_query(db: &DatabaseConnection, session_id: Uuid) {
    let result = session::Entity::update_many()
        .col_expr(session::Column::NumQueries, Expr::col(session::Column::NumQueries).add(1))
        .filter(session::Column::Id.eq(session_id))
        .exec(db)
        .await;
    if let Err(e) = result {
        tracing::warn!(session = %session_id, error = %e, "could not count a query");
    }
}

/// The result the original answers when the kernel or its agent is gone (spec §6.5).
pub fn gone_result(run_id: &str) -> Value {
    json!({"status": "finished", "runId": run_id, "exitCode": 130, "options": {}, "files": [], "console": []})
}

/// The agent's batch options from the client's `{clean, build, buildLog, exec}`: `"*"` for
/// `build` is the agent's default (`make` when there is a Makefile); `"*"` for `exec` runs
/// `main.py`; `clean` is not supported by the agent and ignored.
fn batch_options(options: &Value) -> Value {
    let text = |key: &str| {
        options.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
    };
    let mut out = Map::new();
    if let Some(build) = text("build") {
        out.insert("build".into(), Value::String(build));
    }
    if let Some(exec) = text("exec") {
        let exec = if exec == "*" {
            "if [ -f main.py ]; then exec python3 main.py; else echo 'cannot find the main program (main.py)' >&2; exit 127; fi"
                .to_string()
        } else {
            exec
        };
        out.insert("exec".into(), Value::String(exec));
    }
    Value::Object(out)
}

/// Appends an agent console record to a client console (`[[type, data]]`), merging
/// consecutive `stdout` (or `stderr`) records; media become `["media", [mime, data]]`.
pub fn push_console(console: &mut Vec<Value>, record: &pb::ConsoleRecord) {
    match record.kind.as_str() {
        kind @ ("stdout" | "stderr") => {
            if let Some(Value::Array(last)) = console.last_mut() {
                if last.first().and_then(Value::as_str) == Some(kind) {
                    if let Some(Value::String(text)) = last.get_mut(1) {
                        text.push_str(&record.data);
                        return;
                    }
                }
            }
            console.push(json!([kind, record.data]));
        }
        "media" => {
            let data = match serde_json::from_str::<Value>(&record.data) {
                Ok(Value::Array(pair)) => Value::Array(pair),
                Ok(Value::Object(o)) => json!([
                    o.get("type").cloned().unwrap_or(Value::Null),
                    o.get("data").cloned().unwrap_or(Value::Null)
                ]),
                _ => json!(["text/plain", record.data]),
            };
            console.push(json!(["media", data]));
        }
        kind => console.push(json!([kind, record.data])),
    }
}

/// Runs one step of code execution on a session's main kernel and answers the client's result
/// `{status, runId, exitCode, options, files, console}` (spec §6.5): `mode` is `query`,
/// `batch`, `continue` or `input`; console records are gathered for up to `flush_timeout`
/// seconds before the agent answers `continued`. A kernel or agent that is gone gives the
/// original's `finished` with exit code 130; an unknown run id is 400.
pub async fn execute(
    manager: &Manager,
    session_row: &session::Model,
    mode: &str,
    run_id: &str,
    code: &str,
    options: &Value,
    flush_timeout: f64,
) -> Result<Value, ApiError> {
    let db = manager.db();
    let kernel = main_kernel(db, session_row.id).await?;
    // Running code is traffic: the session is not network-idle until this step ends.
    let _activity = manager.idle().connection(SessionId::from_uuid(session_row.id));
    count_query(db, session_row.id).await;
    let Some(addr) = kernel.agent_addr.clone().filter(|_| !kernel.status.0.is_terminal()) else {
        return Ok(gone_result(run_id));
    };
    let options_json = if mode == "batch" { batch_options(options).to_string() } else { String::new() };
    let request = pb::ExecuteRequest {
        session_id: session_row.id.to_string(),
        kernel_id: kernel.id.to_string(),
        run_id: run_id.to_string(),
        mode: mode.to_string(),
        code: code.to_string(),
        flush_timeout,
        api_version: 7,
        options_json,
    };
    let mut client = match manager.clients().client(&addr) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(kernel = %kernel.id, error = %e, "execute: no client for the agent");
            return Ok(gone_result(run_id));
        }
    };
    let mut stream = match client.execute(request).await {
        Ok(s) => s.into_inner(),
        Err(status) => return execute_error(status, run_id),
    };
    let mut console = Vec::new();
    loop {
        let event = match stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(gone_result(run_id)),
            Err(status) => return execute_error(status, run_id),
        };
        match event.event {
            Some(pb::execute_event::Event::Record(record)) => push_console(&mut console, &record),
            Some(pb::execute_event::Event::Result(result)) => {
                let options = serde_json::from_str::<Value>(&result.options_json)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                let (status, exit_code) = match result.status.as_str() {
                    // The client does not know `exec-timeout`; the run is over.
                    "exec-timeout" => {
                        ("finished".to_string(), json!(if result.has_exit_code { result.exit_code } else { -2 }))
                    }
                    s => (s.to_string(), if result.has_exit_code { json!(result.exit_code) } else { Value::Null }),
                };
                let run_id = if result.run_id.is_empty() { run_id.to_string() } else { result.run_id };
                return Ok(json!({
                    "status": status,
                    "runId": run_id,
                    "exitCode": exit_code,
                    "options": options,
                    "files": [],
                    "console": console,
                }));
            }
            None => {}
        }
    }
}

fn execute_error(status: tonic::Status, run_id: &str) -> Result<Value, ApiError> {
    use tonic::Code;
    let message = status.message().to_string();
    match status.code() {
        Code::NotFound if message.starts_with("run ") => Err(ApiError::invalid("runId", message)),
        Code::NotFound | Code::Unavailable | Code::Cancelled | Code::Aborted => {
            tracing::info!(error = %message, "execute: the kernel or its agent is gone");
            Ok(gone_result(run_id))
        }
        Code::InvalidArgument => Err(ApiError::with_kind_msg(ErrorKind::InvalidApiParameters, message)),
        code => Err(ApiError::internal(format!("agent: {code:?}: {message}"))),
    }
}

/// An agent call's error as an API error: an unreachable agent is 503, a bad argument 400, a
/// missing object 404, anything else 500.
pub fn agent_error(status: tonic::Status) -> ApiError {
    use tonic::Code;
    let message = status.message().to_string();
    match status.code() {
        Code::InvalidArgument => ApiError::with_kind_msg(ErrorKind::InvalidApiParameters, message),
        Code::NotFound => ApiError::not_found("kernel").with_msg(message),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            ApiError::service_unavailable(format!("agent: {message}"))
        }
        Code::ResourceExhausted => ApiError::with_kind_msg(ErrorKind::InvalidApiParameters, message),
        code => ApiError::internal(format!("agent: {code:?}: {message}")),
    }
}

/// An agent client for a kernel, or 503 when the kernel is not placed (or the address is bad).
pub fn kernel_client(
    manager: &Manager,
    kernel: &kernel::Model,
) -> Result<bai_agent_runtime::rpc::AgentClient, ApiError> {
    let addr = kernel
        .agent_addr
        .as_deref()
        .filter(|_| !kernel.status.0.is_terminal())
        .ok_or_else(|| ApiError::service_unavailable("the session's main kernel is not running on an agent"))?;
    manager.clients().client(addr).map_err(|e| ApiError::service_unavailable(e.to_string()))
}

/// Whether an event is one of the session events the client knows (spec §6.7), and its name.
pub fn client_event_name(event: &Event) -> Option<&'static str> {
    const KNOWN: [&str; 16] = [
        "session_enqueued",
        "session_scheduled",
        "session_preparing",
        "session_started",
        "session_terminating",
        "session_terminated",
        "session_cancelled",
        "session_success",
        "session_failure",
        "kernel_preparing",
        "kernel_pulling",
        "kernel_creating",
        "kernel_started",
        "kernel_terminating",
        "kernel_terminated",
        "kernel_cancelled",
    ];
    let name = event.name();
    KNOWN.contains(&name).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_original_rule() {
        assert!(validate_session_name("mysess01").is_ok());
        assert!(validate_session_name("a_b.c-d").is_ok());
        assert!(validate_session_name("abc").is_err());
        assert!(validate_session_name("-abc").is_err());
        assert!(validate_session_name("abc.").is_err());
        assert!(validate_session_name("ab cd").is_err());
        assert!(validate_session_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn the_clients_create_body_parses() {
        let body = json!({"tag": null, "name": "mysess01",
            "config": {"mounts": [], "environ": {"FOO": "bar"},
                       "resources": {"cpu": "1", "mem": "1g"}, "resource_opts": {},
                       "scalingGroup": null, "mount_map": {}, "preopen_ports": ["8080"]},
            "dependencies": [], "callback_url": null, "architecture": "x86_64",
            "clusterSize": 1, "clusterMode": "single-node", "starts_at": null, "bootstrap_script": null,
            "owner_access_key": null, "domain": "default", "group": "default", "type": "interactive",
            "enqueueOnly": false, "maxWaitSeconds": 0, "reuseIfExists": true, "startupCommand": null,
            "image": "cr.backend.ai/stable/python:3.9"});
        let r = CreateRequest::from_json(&body, Utc::now()).unwrap();
        assert_eq!(r.name, "mysess01");
        assert_eq!(r.image, "cr.backend.ai/stable/python:3.9");
        assert_eq!(r.config.environ["FOO"], "bar");
        assert_eq!(r.config.preopen_ports, vec![8080]);
        assert!(r.reuse_if_exists && !r.enqueue_only);
        let err = CreateRequest::from_json(&json!({"name": "mysess01", "image": "x", "clusterSize": 0}), Utc::now())
            .unwrap_err();
        assert_eq!(err.data().unwrap().as_object().unwrap().keys().next().unwrap(), "clusterSize");
        let err = CreateRequest::from_json(&json!({"name": "mysess01"}), Utc::now()).unwrap_err();
        assert!(err.data().unwrap().get("image").is_some());
        let r =
            CreateRequest::from_json(&json!({"session_name": "abcd", "lang": "x", "enqueueOnly": "true"}), Utc::now())
                .unwrap();
        assert!(r.enqueue_only);
    }

    #[test]
    fn starts_at_accepts_dates_and_delays() {
        let now = Utc::now();
        assert_eq!(parse_starts_at("1h30m", now).unwrap(), now + chrono::Duration::minutes(90));
        assert_eq!(parse_starts_at("45", now).unwrap(), now + chrono::Duration::seconds(45));
        assert!(parse_starts_at("2030-01-02T03:04:05+00:00", now).is_ok());
        assert!(parse_starts_at("2030-01-02T03:04:05", now).is_ok());
        assert!(parse_starts_at("soon", now).is_err());
    }

    #[test]
    fn resources_default_and_name_unknown_slots() {
        let known = KnownSlots::default();
        let slots = resolve_resources(&Map::new(), &known, None).unwrap();
        assert_eq!(slots.get("cpu"), 1.into());
        assert_eq!(slots.get("mem"), (1u64 << 30).into());
        let req = json!({"cpu": "2", "gpu": "1"});
        let err = resolve_resources(req.as_object().unwrap(), &known, None).unwrap_err();
        assert!(err.data().unwrap().get("config.resources.gpu").is_some(), "{err}");
        let req = json!({"mem": "lots"});
        let err = resolve_resources(req.as_object().unwrap(), &known, None).unwrap_err();
        assert!(err.data().unwrap().get("config.resources.mem").is_some(), "{err}");
    }

    #[test]
    fn console_records_merge() {
        let mut console = Vec::new();
        let rec = |kind: &str, data: &str| pb::ConsoleRecord { kind: kind.into(), data: data.into() };
        push_console(&mut console, &rec("stdout", "a"));
        push_console(&mut console, &rec("stdout", "b"));
        push_console(&mut console, &rec("stderr", "c"));
        push_console(&mut console, &rec("media", r#"["image/png","xx"]"#));
        push_console(&mut console, &rec("stdout", "d"));
        assert_eq!(
            Value::Array(console),
            json!([["stdout", "ab"], ["stderr", "c"], ["media", ["image/png", "xx"]], ["stdout", "d"]])
        );
    }
}
