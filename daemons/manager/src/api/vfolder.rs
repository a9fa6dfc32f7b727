//! Virtual folders (`spec/client-wire.md` §8): the signed `/folders` routes and the unsigned
//! storage side channel they hand out URLs for.
//!
//! Folders live on the storage hosts of [`crate::volumes`] (the local backend of
//! [`crate::storage`]), registered as an [`ApiState`] service (`Arc<Volumes>`) and changing
//! live with the shared configuration: a folder's files are reached through its host, and a
//! folder whose host is no longer configured is refused with 400 `vfolder-operation-failed`
//! for anything that touches its files.
//!
//! Access: `{name}` resolves through [`repo::resolve_vfolder`] among the folders the requester
//! may use — their own, folders shared with them, their projects' folders, and (superadmins)
//! everyone's; when names collide the requester's own folder wins, then shared folders, then
//! project folders, then others', the oldest first within each kind. Any other name is 404
//! `object-not-found` ("No such vfolder."). `GET /folders` lists the same set (a superadmin
//! gets every folder with `{"all": true}`), and every folder answer carries the requester's
//! `is_owner` and effective `permission`. Reading (info, files, download) needs any access;
//! writing (upload, mkdir, delete-files, rename-file, move-file) needs `rw` or `wd`, else 403
//! `generic-forbidden`;
//! renaming, deleting, sharing and inviting need the folder's manager (the owner; for a
//! project folder the admins of its domain and superadmins; a superadmin for any folder),
//! else 403. Project folders are created by those admins with `group` (a project name or id).
//!
//! Sharing (`vfolder_permissions`, `vfolder_invitations`), all JSON:
//!
//! - `POST /folders/{name}/share` `{"permission", "emails"}` → `{"shared_emails"}`: grants at
//!   once (replacing an earlier permission); a project folder only to the project's members,
//!   as a per-member override of the folder's permission;
//! - `DELETE /folders/{name}/unshare` `{"emails"}` → `{"unshared_emails"}` (those who had it);
//! - `POST /folders/{name}/invite` `{"perm", "user_ids"}` (e-mail addresses) →
//!   `{"invited_ids"}`: pending invitations to a user folder; users who already have the
//!   folder or a pending invitation are left out;
//! - `GET /folders/invitations/list` → `{"invitations": [{id, inviter, invitee, perm, state,
//!   created_at, vfolder_id, vfolder_name}]}`: the pending invitations sent to the requester;
//! - `POST /folders/invitations/accept` `{"inv_id"}` → `{}`: the invitee gets the permission;
//! - `POST` or `DELETE /folders/invitations/delete` `{"inv_id"}` → `{}`: the invitee rejects,
//!   the inviter cancels;
//! - `POST /folders/{name}/leave` `{"shared_user_uuid"}` → `{}`: the requester gives up a
//!   user folder shared with them (looked up among shared folders only, so an own folder of
//!   the same name does not hide it); with `shared_user_uuid`, a manager removes that user.
//!
//! Bad input is 400 `invalid-api-params` naming the field (`permission`, `emails[2]`,
//! `inv_id`, …; sharing with oneself or with the owner too); unknown addresses are 404
//! `object-not-found` listing them in `msg` and `data.emails`. A refused request changes
//! nothing; each change is one transaction.
//!
//! Transfers: `request-upload` / `request-download` answer `{"token", "url"}`, the URL being
//! the manager's own address (the request's `Host`) plus `/storage/upload` or
//! `/storage/download`. The client then calls that URL with `?token=<token>`, unsigned:
//!
//! - upload (TUS 1.0 subset, §8.1): `PATCH` with `Upload-Offset` and the bytes, answered 204
//!   with the new `Upload-Offset`; `HEAD` answers the offset; the file moves into the folder
//!   when the size given to `request-upload` is reached;
//! - download (§8.2): `GET`, 200 with `Content-Length` (206 for `Range: bytes=N-`).
//!
//! The token is an HMAC-signed, expiring [`Grant`] for one path of one folder.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bai_core::{BinarySize, MountPermission};
use sea_orm::{ActiveValue::Set, DatabaseConnection};
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::Role;
use super::session::{query_params, Params};
use super::{ApiError, ApiState, AuthContext, ErrorKind, Shared};
use crate::db::entities::vfolder;
use crate::db::repo::{self, AccessVia, VFolderAccess, Viewer};
use crate::db::types::{UserRole, VFolderInvitationState, VFolderOwnershipType, VFolderStatus, VFolderUsageMode, Wire};
use crate::sessions::{db_error, Fields};
use crate::storage::{blocking, Entry, Grant, Operation, Storage, StorageError};
use crate::volumes::Volumes;

/// The path of the TUS upload endpoint on the manager's API address.
pub const UPLOAD_PATH: &str = "/storage/upload";
/// The path of the download endpoint on the manager's API address.
pub const DOWNLOAD_PATH: &str = "/storage/download";

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/folders", post(create).get(list))
        .route("/folders/_/hosts", get(list_hosts))
        .route("/folders/_/all_hosts", get(list_hosts))
        .route("/folders/_/all-hosts", get(list_hosts))
        .route("/folders/{name}", get(info).delete(delete_folder))
        .route("/folders/{name}/rename", post(rename))
        .route("/folders/{name}/mkdir", post(mkdir))
        .route("/folders/{name}/files", get(list_files))
        .route("/folders/{name}/rename-file", post(rename_file))
        .route("/folders/{name}/move-file", post(move_file))
        .route("/folders/{name}/delete-files", axum::routing::delete(delete_files).post(delete_files))
        .route("/folders/{name}/request-upload", post(request_upload))
        .route("/folders/{name}/request-download", post(request_download))
        .route("/folders/{name}/share", post(share))
        .route("/folders/{name}/unshare", axum::routing::delete(unshare).post(unshare))
        .route("/folders/{name}/invite", post(invite))
        .route("/folders/{name}/leave", post(leave))
        .route("/folders/invitations/list", get(list_invitations))
        .route("/folders/invitations/accept", post(accept_invitation))
        .route("/folders/invitations/delete", axum::routing::delete(delete_invitation).post(delete_invitation))
}

/// The unsigned routes of this module (token-authorised transfer side channel).
pub fn public_routes() -> Router<ApiState> {
    Router::new()
        .route(UPLOAD_PATH, axum::routing::patch(tus_patch).head(tus_head).options(tus_options))
        .route(DOWNLOAD_PATH, get(download))
}

/// A storage error as an API error; path errors name the path.
pub fn storage_error(err: StorageError) -> ApiError {
    match err {
        StorageError::InvalidPath { path, reason } => ApiError::invalid("path", format!("{path:?}: {reason}")),
        StorageError::NotFound { path } => {
            ApiError::not_found("file").with_title("File not found").with_msg(format!("{path:?} does not exist"))
        }
        e @ StorageError::AlreadyExists { .. } => {
            ApiError::with_kind_msg(ErrorKind::VFolderOperationFailed, e.to_string())
        }
        e @ StorageError::QuotaExceeded { .. } => ApiError::quota_exceeded(e.to_string()),
        e @ StorageError::UploadTooLarge { .. } => ApiError::invalid("body", e.to_string()),
        e @ (StorageError::OffsetMismatch { .. } | StorageError::Busy) => ApiError::conflict(e.to_string()),
        e @ (StorageError::BadToken(_) | StorageError::ExpiredToken(_)) => ApiError::auth_failed(e.to_string()),
        e @ StorageError::Io { .. } => ApiError::internal(format!("storage: {e}")),
    }
}

/// The original's folder-name rule, roughly: 1 to 64 characters of letters, digits, `_`, `-`
/// and `.`, not `.` or `..`.
pub fn validate_folder_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{name:?} must be 1 to 64 characters long"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a folder name"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(format!("{name:?} must consist of ASCII letters, digits, '_', '-' and '.'"));
    }
    Ok(())
}

/// The requester as [`repo::resolve_vfolder`] sees them.
pub(crate) fn viewer(ctx: &AuthContext) -> Viewer {
    let role = match ctx.role() {
        Role::Superadmin => UserRole::Superadmin,
        Role::Admin => UserRole::Admin,
        Role::User => UserRole::User,
    };
    Viewer { user: ctx.credential.user_id, role, domain: ctx.credential.domain_name.clone() }
}

/// The folder named `name` as the requester sees it (own, shared, project; see
/// [`repo::resolve_vfolder`]), or 404 "No such vfolder.".
async fn find_folder(db: &DatabaseConnection, ctx: &AuthContext, name: &str) -> Result<VFolderAccess, ApiError> {
    repo::resolve_vfolder(db, &viewer(ctx), name)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found("vfolder").with_msg(format!("{name:?}")))
}

/// 403 unless the requester may change the folder's contents (`rw` or `wd`).
fn check_writable(access: &VFolderAccess) -> Result<(), ApiError> {
    if !access.can_write() {
        return Err(ApiError::forbidden(format!("the folder {:?} is read-only for you", access.folder.name)));
    }
    Ok(())
}

/// 403 unless the requester may `what` the folder (its owner, a project folder's admins, a
/// superadmin).
fn check_manager(access: &VFolderAccess, what: &str) -> Result<(), ApiError> {
    if !access.can_manage {
        return Err(ApiError::forbidden(format!(
            "only the owner of the folder {:?} may {what} it",
            access.folder.name
        )));
    }
    Ok(())
}

/// The storage of a folder's host; 400 `vfolder-operation-failed` naming the host when it is
/// no longer configured.
fn folder_storage(volumes: &Volumes, row: &vfolder::Model) -> Result<Storage, ApiError> {
    volumes.storage_of(&row.host).map_err(|e| ApiError::with_kind_msg(ErrorKind::VFolderOperationFailed, e.to_string()))
}

/// A name already taken among the folder owner's (user or project) folders.
async fn name_taken(db: &DatabaseConnection, folder: &vfolder::Model, name: &str) -> Result<bool, ApiError> {
    let found = match (folder.user, folder.group) {
        (Some(user), _) => repo::find_user_vfolder(db, user, name).await,
        (None, Some(group)) => repo::find_group_vfolder(db, group, name).await,
        (None, None) => Ok(None),
    };
    Ok(found.map_err(db_error)?.is_some_and(|f| f.id != folder.id))
}

fn quota_of(row: &vfolder::Model) -> Option<u64> {
    row.max_size.filter(|q| *q > 0).map(|q| q as u64)
}

fn folder_json(access: &VFolderAccess, usage: Option<(u64, u64)>) -> Value {
    let row = &access.folder;
    let (files, bytes) = usage.unwrap_or((row.num_files.max(0) as u64, row.cur_size.max(0) as u64));
    let created = row.created_at.to_rfc3339();
    json!({
        "name": row.name,
        "id": row.id.simple().to_string(),
        "quota_scope_id": row.quota_scope_id,
        "host": row.host,
        "usage_mode": row.usage_mode.0.to_string(),
        "permission": access.permission.to_string(),
        "is_owner": access.is_owner,
        "status": row.status.0.to_string(),
        "numFiles": files,
        "num_files": files,
        "used_bytes": bytes,
        "cur_size": bytes,
        "max_size": row.max_size,
        "max_files": row.max_files,
        "type": row.ownership_type.0.to_string(),
        "ownership_type": row.ownership_type.0.to_string(),
        "user": row.user.map(|u| u.to_string()),
        "group": row.group.map(|g| g.to_string()),
        "creator": row.creator,
        "unmanaged_path": row.unmanaged_path,
        "cloneable": row.cloneable,
        "created": created,
        "created_at": created,
        "last_used": row.last_used.map(|t| t.to_rfc3339()),
    })
}

fn string_param(fields: &Fields<'_>, key: &str) -> Result<Option<String>, ApiError> {
    Ok(fields.string(&[key])?.filter(|s| !s.trim().is_empty()))
}

/// `POST /folders`: `{"name", "host", "unmanaged_path", "group", "usage_mode", "permission",
/// "quota", "cloneable"}` → 201 with the folder.
async fn create(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    params: Params,
) -> Result<Response, ApiError> {
    let f = params.fields();
    let name = f.string(&["name"])?.ok_or_else(|| ApiError::invalid("name", "is required"))?;
    validate_folder_name(&name).map_err(|e| ApiError::invalid("name", e))?;
    if string_param(&f, "unmanaged_path")?.is_some() {
        return Err(ApiError::invalid("unmanaged_path", "unmanaged folders are not supported"));
    }
    let (host, storage) = volumes
        .for_new_folder(string_param(&f, "host")?.as_deref())
        .map_err(|e| ApiError::invalid("host", e.to_string()))?;
    let group = match f.get(&["group", "group_id"]).filter(|g| g.as_str() != Some("")) {
        None => None,
        Some(Value::String(g)) => Some(project_for_new_folder(&db, &ctx, g.trim()).await?),
        Some(other) => return Err(ApiError::invalid("group", format!("expected a project name or id, got {other}"))),
    };
    let usage_mode: VFolderUsageMode = match string_param(&f, "usage_mode")? {
        Some(m) => m.parse().map_err(|e: crate::db::DbError| ApiError::invalid("usage_mode", e.to_string()))?,
        None => VFolderUsageMode::default(),
    };
    let permission: MountPermission = match string_param(&f, "permission")? {
        Some(p) => p.parse().map_err(|e: bai_core::Error| ApiError::invalid("permission", e.to_string()))?,
        None => MountPermission::default(),
    };
    let quota = match f.get(&["quota"]) {
        None => None,
        Some(Value::Number(n)) => {
            n.as_u64().ok_or_else(|| ApiError::invalid("quota", format!("{n} is not a number of bytes")))?.into()
        }
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => {
            Some(u64::from(BinarySize::parse(s.trim()).map_err(|e| ApiError::invalid("quota", e.to_string()))?))
        }
        Some(other) => return Err(ApiError::invalid("quota", format!("expected a size such as \"10g\", got {other}"))),
    }
    .filter(|q| *q > 0);
    let max_size =
        quota.map(|q| i64::try_from(q).map_err(|_| ApiError::invalid("quota", "is too large"))).transpose()?;
    let cloneable = f.boolean(&["cloneable"], false)?;
    let taken = match group {
        Some(g) => repo::find_group_vfolder(&*db, g, &name).await,
        None => repo::find_user_vfolder(&*db, ctx.credential.user_id, &name).await,
    };
    if taken.map_err(db_error)?.is_some() {
        return Err(ApiError::with_kind_msg(
            ErrorKind::VFolderAlreadyExists,
            format!("a folder named {name:?} already exists"),
        ));
    }
    let id = Uuid::new_v4();
    {
        let storage = storage.clone();
        blocking(move || storage.create_folder(id)).await.map_err(|e| {
            ApiError::with_kind_msg(
                ErrorKind::VFolderCreationFailed,
                format!("cannot create the folder's directory: {e}"),
            )
        })?;
    }
    let user = ctx.credential.user_id;
    let (scope, ownership, owner) = match group {
        Some(g) => (format!("project:{g}"), VFolderOwnershipType::Group, None),
        None => (format!("user:{user}"), VFolderOwnershipType::User, Some(user)),
    };
    let row = vfolder::ActiveModel {
        id: Set(id),
        host: Set(host),
        quota_scope_id: Set(Some(scope)),
        name: Set(name),
        usage_mode: Set(Wire(usage_mode)),
        permission: Set(Wire(permission)),
        max_size: Set(max_size),
        creator: Set(Some(ctx.credential.email.clone())),
        ownership_type: Set(Wire(ownership)),
        user: Set(owner),
        group: Set(group),
        cloneable: Set(cloneable),
        status: Set(Wire(VFolderStatus::Ready)),
        ..Default::default()
    };
    let row = match repo::create_vfolder(&*db, row).await {
        Ok(row) => row,
        Err(e) => {
            let storage = storage.clone();
            let _ = blocking(move || storage.delete_folder(id)).await;
            return Err(db_error(e));
        }
    };
    let access = VFolderAccess {
        folder: row,
        permission,
        is_owner: true,
        can_manage: true,
        via: if group.is_some() { AccessVia::Project } else { AccessVia::Owner },
    };
    Ok((StatusCode::CREATED, Json(folder_json(&access, Some((0, 0)))).into_response()).into_response())
}

/// The project a new folder goes to: `group` is a project id or a name in the requester's
/// domain; only its domain's admins and superadmins create project folders (403 otherwise).
async fn project_for_new_folder(db: &DatabaseConnection, ctx: &AuthContext, group: &str) -> Result<Uuid, ApiError> {
    let found = match Uuid::parse_str(group) {
        Ok(id) => repo::get_group(db, id).await,
        Err(_) => repo::find_group_by_name(db, &ctx.credential.domain_name, group).await,
    }
    .map_err(db_error)?
    .ok_or_else(|| ApiError::invalid("group", format!("no such project: {group:?}")))?;
    let allowed = ctx.is_superadmin() || (ctx.is_admin() && found.domain_name == ctx.credential.domain_name);
    if !allowed {
        return Err(ApiError::forbidden(format!(
            "only the admins of the domain {:?} create folders of the project {:?}",
            found.domain_name, found.name
        )));
    }
    Ok(found.id)
}

/// `GET /folders` `{"all"}` (SDK `VFolder.list()`): the folders the caller may use — their
/// own, those shared with them and their projects' — with the caller's `is_owner` and
/// `permission`; with `all`, a superadmin gets every folder.
async fn list(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let all = params.fields().boolean(&["all"], false)?;
    let rows = repo::accessible_vfolders(&*db, &viewer(&ctx), all).await.map_err(db_error)?;
    Ok(Json(Value::Array(rows.iter().map(|r| folder_json(r, None)).collect())))
}

/// `GET /folders/_/hosts`: `{"default", "allowed", "volume_info"}`, the hosts configured
/// now (sorted).
async fn list_hosts(_ctx: AuthContext, Shared(volumes): Shared<Volumes>) -> Json<Value> {
    let set = volumes.current();
    let info: serde_json::Map<String, Value> = set
        .hosts
        .keys()
        .map(|h| {
            let info = json!({ "backend": "local", "capabilities": ["file-ops", "quota"], "usage": null, "sftp_scaling_groups": [] });
            (h.clone(), info)
        })
        .collect();
    Json(json!({
        "default": set.default,
        "allowed": set.names(),
        "volume_info": info,
    }))
}

/// `GET /folders/{name}`: the folder with its current usage (the ten keys the CLI needs and
/// more).
async fn info(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let access = find_folder(&db, &ctx, &name).await?;
    let row = &access.folder;
    let id = row.id;
    // A folder whose host is gone shows the usage last measured.
    let Ok(storage) = volumes.storage_of(&row.host) else { return Ok(Json(folder_json(&access, None))) };
    let usage = blocking(move || storage.usage(id)).await.map_err(storage_error)?;
    if (usage.0 as i64, usage.1 as i64) != (row.num_files as i64, row.cur_size) {
        let files = i32::try_from(usage.0).unwrap_or(i32::MAX);
        repo::set_vfolder_usage(&*db, id, files, i64::try_from(usage.1).unwrap_or(i64::MAX)).await.map_err(db_error)?;
    }
    Ok(Json(folder_json(&access, Some(usage))))
}

/// `DELETE /folders/{name}`: deletes the folder and its files (and with them its shares and
/// invitations) → 204. Only its managers may.
async fn delete_folder(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let access = find_folder(&db, &ctx, &name).await?;
    check_manager(&access, "delete")?;
    let storage = folder_storage(&volumes, &access.folder)?;
    let id = access.folder.id;
    repo::delete_vfolder(&*db, id).await.map_err(db_error)?;
    blocking(move || storage.delete_folder(id)).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /folders/{name}/rename` `{"new_name"}` → 201; the new name must be free among the
/// owner's (or the project's) folders. Only its managers may.
async fn rename(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Path(name): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let new_name =
        params.fields().string(&["new_name"])?.ok_or_else(|| ApiError::invalid("new_name", "is required"))?;
    validate_folder_name(&new_name).map_err(|e| ApiError::invalid("new_name", e))?;
    let access = find_folder(&db, &ctx, &name).await?;
    check_manager(&access, "rename")?;
    let row = &access.folder;
    if new_name != row.name && name_taken(&db, row, &new_name).await? {
        return Err(ApiError::with_kind_msg(
            ErrorKind::VFolderAlreadyExists,
            format!("a folder named {new_name:?} already exists"),
        ));
    }
    repo::rename_vfolder(&*db, row.id, &new_name).await.map_err(db_error)?;
    Ok(StatusCode::CREATED)
}

/// The `path` parameter as one path or a list of paths.
fn paths(fields: &Fields<'_>, key: &str) -> Result<Vec<String>, ApiError> {
    match fields.get(&[key]) {
        None => Err(ApiError::invalid(key, "is required")),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::invalid(format!("{key}[{i}]"), "expected a path"))
            })
            .collect(),
        Some(other) => Err(ApiError::invalid(key, format!("expected a path or a list of paths, got {other}"))),
    }
}

/// `POST /folders/{name}/mkdir` `{"path", "parents", "exist_ok"}` → 201.
async fn mkdir(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let f = params.fields();
    let paths = paths(&f, "path")?;
    let parents = f.boolean(&["parents"], false)?;
    let exist_ok = f.boolean(&["exist_ok"], false)?;
    let access = find_folder(&db, &ctx, &name).await?;
    check_writable(&access)?;
    let storage = folder_storage(&volumes, &access.folder)?;
    let id = access.folder.id;
    blocking(move || paths.iter().try_for_each(|p| storage.mkdir(id, p, parents, exist_ok)))
        .await
        .map_err(storage_error)?;
    Ok(StatusCode::CREATED)
}

/// `ls -l`'s mode string.
fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        _ => '-',
    };
    let mut out = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

fn iso(secs: f64) -> String {
    chrono::DateTime::from_timestamp(secs.floor() as i64, ((secs.fract()) * 1e9) as u32)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// `GET /folders/{name}/files` `{"path"}`: `files` (a JSON-encoded string, §8) and `items`.
async fn list_files(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let path = params.fields().string(&["path"])?.filter(|p| !p.is_empty()).unwrap_or_else(|| ".".into());
    let row = find_folder(&db, &ctx, &name).await?.folder;
    let storage = folder_storage(&volumes, &row)?;
    let id = row.id;
    let entries: Vec<Entry> = blocking(move || storage.list(id, &path)).await.map_err(storage_error)?;
    let files: Vec<Value> = entries
        .iter()
        .map(|e| json!({"filename": e.name, "size": e.size, "mode": mode_string(e.mode), "ctime": e.ctime, "atime": e.atime, "mtime": e.mtime}))
        .collect();
    let items: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"name": e.name, "type": e.kind.to_ascii_uppercase(), "size": e.size, "mode": format!("{:o}", e.mode & 0o7777),
                   "created": iso(e.ctime), "modified": iso(e.mtime)})
        })
        .collect();
    Ok(Json(json!({ "items": items, "files": Value::Array(files).to_string() })))
}

/// `DELETE /folders/{name}/delete-files` `{"files", "recursive"}` → 204.
async fn delete_files(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let f = params.fields();
    let files = paths(&f, "files")?;
    let recursive = f.boolean(&["recursive"], false)?;
    let access = find_folder(&db, &ctx, &name).await?;
    check_writable(&access)?;
    let storage = folder_storage(&volumes, &access.folder)?;
    let id = access.folder.id;
    blocking(move || files.iter().try_for_each(|p| storage.delete(id, p, recursive))).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// One required string field.
fn required(fields: &Fields<'_>, key: &str) -> Result<String, ApiError> {
    fields.string(&[key])?.ok_or_else(|| ApiError::invalid(key, "is required"))
}

/// `POST /folders/{name}/rename-file` `{"target_path", "new_name"}` → `{}`: renames a file or
/// directory in place (an existing entry of that name is never replaced).
async fn rename_file(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let f = params.fields();
    let (target, new_name) = (required(&f, "target_path")?, required(&f, "new_name")?);
    in_writable_folder(&db, &ctx, &volumes, &name, move |storage, id| storage.rename_entry(id, &target, &new_name))
        .await
}

/// `POST /folders/{name}/move-file` `{"src", "dst"}` → `{}`: moves an entry within the folder,
/// into `dst` when it is a directory (an existing file is never replaced).
async fn move_file(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let f = params.fields();
    let (src, dst) = (required(&f, "src")?, required(&f, "dst")?);
    in_writable_folder(&db, &ctx, &volumes, &name, move |storage, id| storage.move_entry(id, &src, &dst)).await
}

/// Runs a file operation in the folder `name` the caller may write to, on its storage host
/// (off the async threads); `{}` when it succeeds.
async fn in_writable_folder(
    db: &DatabaseConnection,
    ctx: &AuthContext,
    volumes: &Volumes,
    name: &str,
    op: impl FnOnce(&Storage, Uuid) -> Result<(), StorageError> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    let access = find_folder(db, ctx, name).await?;
    check_writable(&access)?;
    let storage = folder_storage(volumes, &access.folder)?;
    let id = access.folder.id;
    blocking(move || op(&storage, id)).await.map_err(storage_error)?;
    Ok(Json(json!({})))
}

/// The manager's own address as the caller reached it: the `Host` header, with
/// `X-Forwarded-Proto` (a proxy in front) or else this listener's scheme.
fn base_url(state: &ApiState, headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::bad_request("the request has no Host header to build the storage URL from"))?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or(if state.service::<super::Listener>().is_some_and(|l| l.tls) { "https" } else { "http" });
    Ok(format!("{scheme}://{host}"))
}

fn deadline(storage: &Storage) -> i64 {
    chrono::Utc::now().timestamp() + storage.token_lifetime().as_secs() as i64
}

/// `POST /folders/{name}/request-upload` `{"path", "size"}` → `{"token", "url"}`. The path and
/// the quota are checked here, so that the TUS transfer itself does not fail.
async fn request_upload(
    State(state): State<ApiState>,
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let f = params.fields();
    let path = f.string(&["path"])?.ok_or_else(|| ApiError::invalid("path", "is required"))?;
    let size = f.integer(&["size"])?.ok_or_else(|| ApiError::invalid("size", "is required"))?;
    let size = u64::try_from(size).map_err(|_| ApiError::invalid("size", format!("{size} is negative")))?;
    let access = find_folder(&db, &ctx, &name).await?;
    check_writable(&access)?;
    let row = &access.folder;
    let storage = folder_storage(&volumes, row)?;
    let url = format!("{}{UPLOAD_PATH}", base_url(&state, &headers)?);
    let (id, quota) = (row.id, quota_of(row));
    let upload = {
        let (storage, path) = (storage.clone(), path.clone());
        blocking(move || storage.begin_upload(id, &path, size, quota)).await.map_err(storage_error)?
    };
    let grant = Grant { op: Operation::Upload, folder: id, path, size: Some(size), upload, exp: deadline(&storage) };
    Ok(Json(json!({ "token": storage.issue(&grant), "url": url })))
}

/// `POST /folders/{name}/request-download` `{"path"}` → `{"token", "url"}`; the file must
/// exist and be a regular file.
async fn request_download(
    State(state): State<ApiState>,
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Shared(volumes): Shared<Volumes>,
    Path(name): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let path = params.fields().string(&["path"])?.ok_or_else(|| ApiError::invalid("path", "is required"))?;
    let row = find_folder(&db, &ctx, &name).await?.folder;
    let storage = folder_storage(&volumes, &row)?;
    let url = format!("{}{DOWNLOAD_PATH}", base_url(&state, &headers)?);
    storage.open_for_download(row.id, &path).await.map_err(storage_error)?;
    let grant =
        Grant { op: Operation::Download, folder: row.id, path, size: None, upload: None, exp: deadline(&storage) };
    Ok(Json(json!({ "token": storage.issue(&grant), "url": url })))
}

// ---------------------------------------------------------------------------------------------
// Sharing: share/unshare, invitations, leave
// ---------------------------------------------------------------------------------------------

/// A required permission field (`ro`, `rw` or `wd`), under the first of `keys`.
fn permission_param(fields: &Fields<'_>, keys: &[&str]) -> Result<MountPermission, ApiError> {
    let text = fields.string(keys)?.ok_or_else(|| ApiError::invalid(keys[0], "is required (ro, rw or wd)"))?;
    text.trim().parse().map_err(|e: bai_core::Error| ApiError::invalid(keys[0], e.to_string()))
}

/// A required, non-empty list of e-mail addresses under the first of `keys`, trimmed and
/// without repetitions, in the order given.
fn email_list(fields: &Fields<'_>, keys: &[&str]) -> Result<Vec<String>, ApiError> {
    let key = keys[0];
    let items = match fields.get(keys) {
        None => return Err(ApiError::invalid(key, "is required (a list of e-mail addresses)")),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(ApiError::invalid(key, "must list at least one e-mail address")),
        Some(other) => return Err(ApiError::invalid(key, format!("expected a list of e-mail addresses, got {other}"))),
    };
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let email = item.as_str().map(str::trim).filter(|e| !e.is_empty()).ok_or_else(|| {
            ApiError::invalid(format!("{key}[{i}]"), format!("expected an e-mail address, got {item}"))
        })?;
        if !out.iter().any(|e| e == email) {
            out.push(email.to_string());
        }
    }
    Ok(out)
}

/// The users with these addresses, in the same order; 404 `object-not-found` listing every
/// address of no (active) user, with `data: {"emails": [...]}`.
async fn users_for(db: &DatabaseConnection, emails: &[String]) -> Result<Vec<UserRef>, ApiError> {
    let found = repo::active_users_by_email(db, emails).await.map_err(db_error)?;
    let unknown: Vec<&String> = emails.iter().filter(|e| !found.contains_key(*e)).collect();
    if !unknown.is_empty() {
        let list = unknown.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ");
        return Err(ApiError::not_found("user")
            .with_msg(format!("no such user: {list}"))
            .with_data(json!({ "emails": unknown })));
    }
    Ok(emails.iter().map(|e| UserRef { email: e.clone(), id: found[e].uuid }).collect())
}

/// A user named in a request.
struct UserRef {
    email: String,
    id: Uuid,
}

/// 400 on `field` when the list names the requester or the folder's owner.
fn refuse_self_and_owner(
    ctx: &AuthContext,
    folder: &vfolder::Model,
    users: &[UserRef],
    field: &str,
) -> Result<(), ApiError> {
    if users.iter().any(|u| u.id == ctx.credential.user_id) {
        return Err(ApiError::invalid(field, "you cannot share a folder with yourself"));
    }
    if let Some(owner) = users.iter().find(|u| Some(u.id) == folder.user) {
        return Err(ApiError::invalid(field, format!("{} owns the folder {:?}", owner.email, folder.name)));
    }
    Ok(())
}

/// `POST /folders/{name}/share` `{"permission", "emails"}` → `{"shared_emails"}`: gives each
/// user the permission on the folder at once (replacing an earlier one). For the folder's
/// managers; a project folder is shared only with the project's members (a per-member
/// override of the folder's permission).
async fn share(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let f = params.fields();
    let permission = permission_param(&f, &["permission", "perm"])?;
    let emails = email_list(&f, &["emails", "user_ids"])?;
    let access = find_folder(&db, &ctx, &name).await?;
    check_manager(&access, "share")?;
    let folder = &access.folder;
    let users = users_for(&db, &emails).await?;
    refuse_self_and_owner(&ctx, folder, &users, "emails")?;
    if let Some(group) = folder.group {
        let mut outsiders = Vec::new();
        for user in &users {
            if !repo::is_group_member(&*db, user.id, group).await.map_err(db_error)? {
                outsiders.push(user.email.as_str());
            }
        }
        if !outsiders.is_empty() {
            return Err(ApiError::invalid(
                "emails",
                format!("not members of the folder's project: {}", outsiders.join(", ")),
            ));
        }
    }
    let grants: Vec<(Uuid, MountPermission)> = users.iter().map(|u| (u.id, permission)).collect();
    repo::share_vfolder(&*db, folder.id, &grants).await.map_err(db_error)?;
    Ok(Json(json!({ "shared_emails": emails })))
}

/// `DELETE /folders/{name}/unshare` `{"emails"}` → `{"unshared_emails"}`: takes the folder
/// away from these users; the answer lists those who had it. For the folder's managers.
async fn unshare(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let emails = email_list(&params.fields(), &["emails", "user_ids"])?;
    let access = find_folder(&db, &ctx, &name).await?;
    check_manager(&access, "unshare")?;
    let users = users_for(&db, &emails).await?;
    let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
    let removed = repo::unshare_vfolder(&*db, access.folder.id, &ids).await.map_err(db_error)?;
    let unshared: Vec<&str> = users.iter().filter(|u| removed.contains(&u.id)).map(|u| u.email.as_str()).collect();
    Ok(Json(json!({ "unshared_emails": unshared })))
}

/// `POST /folders/{name}/invite` `{"perm", "user_ids"}` (e-mail addresses) → `{"invited_ids"}`:
/// a pending invitation per user, for the owner of a user folder (project folders are shared
/// with `share`). Users who already have the folder or a pending invitation to it are left
/// out of the answer and get nothing new.
async fn invite(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let f = params.fields();
    let permission = permission_param(&f, &["perm", "permission"])?;
    let emails = email_list(&f, &["user_ids", "emails"])?;
    let access = find_folder(&db, &ctx, &name).await?;
    if access.folder.group.is_some() {
        return Err(ApiError::invalid(
            "name",
            format!("{name:?} is a project folder; share it with the project's members instead"),
        ));
    }
    check_manager(&access, "invite others to")?;
    let folder = &access.folder;
    let users = users_for(&db, &emails).await?;
    refuse_self_and_owner(&ctx, folder, &users, "user_ids")?;
    let shared: Vec<Uuid> =
        repo::vfolder_shares(&*db, folder.id).await.map_err(db_error)?.iter().map(|s| s.user).collect();
    let pending: Vec<String> =
        repo::pending_invitations_to(&*db, folder.id).await.map_err(db_error)?.into_iter().map(|i| i.invitee).collect();
    let new: Vec<String> =
        users.into_iter().filter(|u| !shared.contains(&u.id) && !pending.contains(&u.email)).map(|u| u.email).collect();
    repo::create_vfolder_invitations(&*db, folder.id, &ctx.credential.email, &new, permission)
        .await
        .map_err(db_error)?;
    Ok(Json(json!({ "invited_ids": new })))
}

/// `GET /folders/invitations/list` → `{"invitations": [{id, inviter, invitee, perm, state,
/// created_at, vfolder_id, vfolder_name}]}`: the pending invitations sent to the requester.
async fn list_invitations(ctx: AuthContext, Shared(db): Shared<DatabaseConnection>) -> Result<Json<Value>, ApiError> {
    let rows = repo::pending_invitations_for(&*db, &ctx.credential.email).await.map_err(db_error)?;
    let items: Vec<Value> = rows
        .iter()
        .map(|(inv, folder)| {
            json!({
                "id": inv.id.to_string(),
                "inviter": inv.inviter,
                "invitee": inv.invitee,
                "perm": inv.permission.0.to_string(),
                "state": inv.state.0.to_string(),
                "created_at": inv.created_at.to_rfc3339(),
                "modified_at": inv.modified_at.map(|t| t.to_rfc3339()),
                "vfolder_id": folder.id.to_string(),
                "vfolder_name": folder.name,
            })
        })
        .collect();
    Ok(Json(json!({ "invitations": items })))
}

/// The invitation `inv_id` names, if the requester sent or received it (404 otherwise) and it
/// is still pending (400 otherwise).
async fn pending_invitation(
    db: &DatabaseConnection,
    ctx: &AuthContext,
    params: &Params,
) -> Result<crate::db::entities::vfolder_invitation::Model, ApiError> {
    let raw = params.fields().string(&["inv_id", "id"])?.ok_or_else(|| ApiError::invalid("inv_id", "is required"))?;
    let id = Uuid::parse_str(raw.trim())
        .map_err(|_| ApiError::invalid("inv_id", format!("{raw:?} is not an invitation id (a UUID)")))?;
    let email = &ctx.credential.email;
    let inv = repo::get_vfolder_invitation(db, id)
        .await
        .map_err(db_error)?
        .filter(|i| i.invitee == *email || i.inviter == *email)
        .ok_or_else(|| ApiError::not_found("invitation").with_msg(format!("{id}")))?;
    if inv.state.0 != VFolderInvitationState::Pending {
        return Err(ApiError::invalid("inv_id", format!("the invitation {id} is already {}", inv.state.0)));
    }
    Ok(inv)
}

/// `POST /folders/invitations/accept` `{"inv_id"}` → `{}`: the invitee accepts and gets the
/// invitation's permission on the folder.
async fn accept_invitation(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let inv = pending_invitation(&db, &ctx, &params).await?;
    if inv.invitee != ctx.credential.email {
        return Err(ApiError::not_found("invitation").with_msg(format!("{} was not sent to you", inv.id)));
    }
    repo::close_vfolder_invitation(&*db, inv.id, VFolderInvitationState::Accepted, Some(ctx.credential.user_id))
        .await
        .map_err(db_error)?;
    Ok(Json(json!({})))
}

/// `POST` (or `DELETE`) `/folders/invitations/delete` `{"inv_id"}` → `{}`: the invitee
/// rejects a pending invitation, or the inviter cancels it.
async fn delete_invitation(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let inv = pending_invitation(&db, &ctx, &params).await?;
    let state = if inv.invitee == ctx.credential.email {
        VFolderInvitationState::Rejected
    } else {
        VFolderInvitationState::Canceled
    };
    repo::close_vfolder_invitation(&*db, inv.id, state, None).await.map_err(db_error)?;
    Ok(Json(json!({})))
}

/// `POST /folders/{name}/leave` `{"shared_user_uuid"}` → `{}`: the requester gives up a user
/// folder shared with them (named among the folders shared with them, even when one of their
/// own has the same name). With `shared_user_uuid`, a manager of the folder takes it away
/// from that user instead. Project folders are left by leaving the project.
async fn leave(
    ctx: AuthContext,
    Shared(db): Shared<DatabaseConnection>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let shared_user = match params.fields().string(&["shared_user_uuid"])?.filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(s) => Some(
            Uuid::parse_str(s.trim())
                .map_err(|_| ApiError::invalid("shared_user_uuid", format!("{s:?} is not a user id (a UUID)")))?,
        ),
    };
    let (folder, user) = match shared_user {
        Some(user) if user != ctx.credential.user_id => {
            let access = find_folder(&db, &ctx, &name).await?;
            check_manager(&access, "remove users from")?;
            (access.folder.id, user)
        }
        _ => {
            let me = ctx.credential.user_id;
            match repo::find_shared_vfolder(&*db, me, &name).await.map_err(db_error)? {
                Some(folder) => (folder.id, me),
                None => {
                    let access = find_folder(&db, &ctx, &name).await?;
                    let reason = match access.via {
                        AccessVia::Owner => "you own it; delete it instead",
                        AccessVia::Project => "it is a project folder; it goes with the project",
                        AccessVia::Shared | AccessVia::Superadmin => "it is not shared with you",
                    };
                    return Err(ApiError::invalid("name", format!("cannot leave {name:?}: {reason}")));
                }
            }
        }
    };
    let removed = repo::unshare_vfolder(&*db, folder, &[user]).await.map_err(db_error)?;
    if removed.is_empty() {
        return Err(ApiError::not_found("share").with_msg(format!("the folder {name:?} is not shared with {user}")));
    }
    Ok(Json(json!({})))
}

/// Verifies the `token` query parameter for `op` and finds its folder (404 when deleted since)
/// and the storage of its host.
async fn authorize(state: &ApiState, uri: &Uri, op: Operation) -> Result<(Storage, Grant, vfolder::Model), ApiError> {
    let volumes = state.require_service::<Volumes>()?;
    let storage = volumes.base();
    let db = state.require_service::<DatabaseConnection>()?;
    let query = query_params(uri);
    let token = Fields::new(&query, "")
        .string(&["token"])?
        .ok_or_else(|| ApiError::auth_failed("the storage token is missing"))?;
    let grant = storage.verify(&token, chrono::Utc::now().timestamp()).map_err(storage_error)?;
    if grant.op != op {
        return Err(ApiError::forbidden(format!("the token does not allow this operation (it is for {:?})", grant.op)));
    }
    let row =
        repo::get_vfolder(&*db, grant.folder).await.map_err(db_error)?.ok_or_else(|| ApiError::not_found("vfolder"))?;
    let storage = folder_storage(&volumes, &row)?;
    Ok((storage, grant, row))
}

fn tus_headers(response: &mut Response, offset: Option<u64>, length: Option<u64>) {
    let h = response.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(o) = offset {
        h.insert("upload-offset", HeaderValue::from(o));
    }
    if let Some(l) = length {
        h.insert("upload-length", HeaderValue::from(l));
    }
}

/// `PATCH /storage/upload?token=…`: appends the body at `Upload-Offset` → 204 with the new
/// `Upload-Offset`.
async fn tus_patch(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (storage, grant, row) = authorize(&state, &uri, Operation::Upload).await?;
    let offset = headers
        .get("upload-offset")
        .ok_or_else(|| ApiError::invalid("Upload-Offset", "the header is required"))?
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| ApiError::invalid("Upload-Offset", "expected a number of bytes"))?;
    let body = body.into_data_stream();
    let new_offset = storage.write_chunk(&grant, quota_of(&row), offset, body).await.map_err(storage_error)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    tus_headers(&mut response, Some(new_offset), grant.size);
    Ok(response)
}

/// `HEAD /storage/upload?token=…`: the upload's offset and length.
async fn tus_head(State(state): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let (storage, grant, _) = authorize(&state, &uri, Operation::Upload).await?;
    let offset = {
        let (storage, g) = (storage.clone(), grant.clone());
        blocking(move || storage.upload_offset(&g)).await.map_err(storage_error)?
    };
    let mut response = StatusCode::OK.into_response();
    tus_headers(&mut response, Some(offset), grant.size);
    Ok(response)
}

/// `OPTIONS /storage/upload`: the TUS capabilities.
async fn tus_options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    tus_headers(&mut response, None, None);
    response.headers_mut().insert("tus-version", HeaderValue::from_static("1.0.0"));
    response
}

/// `GET /storage/download?token=…`: the file's bytes with `Content-Length` (206 for
/// `Range: bytes=N-`).
async fn download(State(state): State<ApiState>, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let (storage, grant, _) = authorize(&state, &uri, Operation::Download).await?;
    let (mut file, len, _) = storage.open_for_download(grant.folder, &grant.path).await.map_err(storage_error)?;
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(start) = start.filter(|s| *s > 0) {
        if start >= len {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            r.headers_mut()
                .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"));
            return Ok(r);
        }
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::internal(format!("storage: seek: {e}")))?;
    }
    let from = start.filter(|s| *s > 0 && *s < len).unwrap_or(0);
    let stream = futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((axum::body::Bytes::from(buf), file)))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len - from));
    if let Some(file_name) = std::path::Path::new(&grant.path).file_name().and_then(|n| n.to_str()) {
        let encoded = percent_encoding::utf8_percent_encode(file_name, percent_encoding::NON_ALPHANUMERIC);
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    if from > 0 {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {from}-{}/{len}", len - 1)).expect("ascii"),
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_modes() {
        assert!(validate_folder_name("my-data_1.v2").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_folder_name(bad).is_err(), "{bad}");
        }
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o100644), "-rw-r--r--");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
    }
}
