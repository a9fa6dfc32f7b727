//! Virtual folders: create, list, info, delete, files, uploads and downloads (through the
//! storage side channel: token-authorised TUS uploads and plain downloads), and sharing —
//! direct shares ([`Client::share_vfolder`]), invitations ([`Client::invite_to_vfolder`],
//! [`Client::vfolder_invitations`], [`Client::accept_invitation`]) and leaving a folder shared
//! with you ([`Client::leave_vfolder`]).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{check, seg, unreachable, Body, Client};
use crate::error::{invalid, io_error, protocol, Result};
use crate::session::{parse_files, FileEntry};

/// A virtual folder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VFolder {
    /// Its id (hex).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The storage host, e.g. `local:volume1`.
    #[serde(default)]
    pub host: Option<String>,
    /// `general`, `model` or `data`.
    #[serde(default)]
    pub usage_mode: Option<String>,
    /// The requester's permission: `ro`, `rw` or `wd`.
    #[serde(default)]
    pub permission: Option<String>,
    /// `ready`, …
    #[serde(default)]
    pub status: Option<String>,
    /// `user` or `group` (project).
    #[serde(default, rename = "type")]
    pub ownership_type: Option<String>,
    /// Whether the requester owns it.
    #[serde(default)]
    pub is_owner: bool,
    /// Number of files (when the server reports it).
    #[serde(default, rename = "numFiles")]
    pub num_files: Option<u64>,
    /// Bytes used (when the server reports it).
    #[serde(default)]
    pub used_bytes: Option<u64>,
    /// The quota in bytes (0: none).
    #[serde(default)]
    pub max_size: Option<u64>,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// What to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewVFolder {
    /// The name.
    pub name: String,
    /// The storage host; the manager's default when `None`.
    pub host: Option<String>,
    /// A project name or id for a project folder; a personal folder when `None`.
    pub group: Option<String>,
    /// `general` (default), `model` or `data`.
    pub usage_mode: Option<String>,
    /// `rw` (default), `ro` or `wd`.
    pub permission: Option<String>,
    /// A quota such as `10g`.
    pub quota: Option<String>,
    /// Whether others may clone it.
    pub cloneable: bool,
}

/// An invitation to a folder someone shares with you.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Invitation {
    /// Its id (what [`Client::accept_invitation`] and [`Client::reject_invitation`] take).
    pub id: String,
    /// Who sent it (an e-mail address).
    pub inviter: String,
    /// Who it is for (an e-mail address).
    #[serde(default)]
    pub invitee: String,
    /// The permission offered: `ro`, `rw` or `wd`.
    #[serde(rename = "perm")]
    pub permission: String,
    /// `pending`, …
    #[serde(default)]
    pub state: String,
    /// When it was sent.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The folder's id.
    pub vfolder_id: String,
    /// The folder's name.
    #[serde(default)]
    pub vfolder_name: String,
}

/// The storage hosts the requester may use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct VFolderHosts {
    /// The default host.
    #[serde(default)]
    pub default: Option<String>,
    /// Every allowed host.
    #[serde(default)]
    pub allowed: Vec<String>,
}

/// Progress of a transfer: bytes done, bytes in all.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// No progress reporting.
pub fn no_progress(_done: u64, _total: u64) {}

/// The size of the chunks an upload sends.
pub const UPLOAD_CHUNK: usize = 4 << 20;

#[derive(Deserialize)]
struct Grant {
    token: String,
    url: String,
}

fn folder_route(name: &str, rest: &str) -> String {
    format!("/folders/{}{rest}", seg(name))
}

/// Checks a permission before sending it: `ro`, `rw` or `wd`.
fn check_permission(permission: &str) -> Result<()> {
    match permission {
        "ro" | "rw" | "wd" => Ok(()),
        other => Err(invalid("permission", format!("{other:?} is not one of ro, rw, wd"))),
    }
}

/// Checks a list of e-mail addresses before sending it: at least one.
fn check_emails(emails: &[String]) -> Result<()> {
    if emails.is_empty() {
        return Err(invalid("emails", "name at least one user (by e-mail address)"));
    }
    Ok(())
}

/// A list of strings under `key` in a JSON answer.
fn strings(route: &str, body: &Value, key: &str) -> Result<Vec<String>> {
    serde_json::from_value(body.get(key).cloned().unwrap_or(Value::Array(Vec::new())))
        .map_err(|e| protocol(route, format!("{key}: {e}")))
}

impl Client {
    /// Creates a folder.
    pub async fn create_vfolder(&self, spec: &NewVFolder) -> Result<VFolder> {
        if spec.name.trim().is_empty() {
            return Err(invalid("name", "is empty"));
        }
        let body = json!({
            "name": spec.name, "host": spec.host, "group": spec.group,
            "usage_mode": spec.usage_mode.as_deref().unwrap_or("general"),
            "permission": spec.permission.as_deref().unwrap_or("rw"),
            "quota": spec.quota.as_deref().unwrap_or("0"), "cloneable": spec.cloneable,
        });
        self.send_json(Method::POST, "/folders", &[], Body::Json(body)).await
    }

    /// The folders the requester can use.
    pub async fn list_vfolders(&self) -> Result<Vec<VFolder>> {
        self.send_json(Method::GET, "/folders", &[], Body::Empty).await
    }

    /// One folder, with its current usage.
    pub async fn vfolder_info(&self, name: &str) -> Result<VFolder> {
        self.send_json(Method::GET, &folder_route(name, ""), &[], Body::Empty).await
    }

    /// Deletes a folder.
    pub async fn delete_vfolder(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, &folder_route(name, ""), &[], Body::Empty).await?;
        Ok(())
    }

    /// Renames a folder.
    pub async fn rename_vfolder(&self, name: &str, new_name: &str) -> Result<()> {
        let body = Body::Json(json!({ "new_name": new_name }));
        self.send(Method::POST, &folder_route(name, "/rename"), &[], body).await?;
        Ok(())
    }

    /// The storage hosts the requester may create folders on.
    pub async fn vfolder_hosts(&self) -> Result<VFolderHosts> {
        self.send_json(Method::GET, "/folders/_/hosts", &[], Body::Empty).await
    }

    /// Creates a directory in a folder (`parents`: like `mkdir -p`).
    pub async fn vfolder_mkdir(&self, name: &str, path: &str, parents: bool) -> Result<()> {
        let body = Body::Json(json!({ "path": path, "parents": parents, "exist_ok": parents }));
        self.send(Method::POST, &folder_route(name, "/mkdir"), &[], body).await?;
        Ok(())
    }

    /// The files in a directory of a folder.
    pub async fn vfolder_files(&self, name: &str, path: &str) -> Result<Vec<FileEntry>> {
        let route = folder_route(name, "/files");
        let body: Value = self.send_json(Method::GET, &route, &[], Body::Json(json!({ "path": path }))).await?;
        if let Some(error) = body["error_msg"].as_str().filter(|e| !e.is_empty()) {
            return Err(invalid("path", error.to_string()));
        }
        parse_files(&route, &body["files"])
    }

    /// Deletes files (and, with `recursive`, directories) in a folder.
    pub async fn vfolder_delete_files(&self, name: &str, files: &[String], recursive: bool) -> Result<()> {
        let body = Body::Json(json!({ "files": files, "recursive": recursive }));
        self.send(Method::DELETE, &folder_route(name, "/delete-files"), &[], body).await?;
        Ok(())
    }

    /// Shares a folder at once with these users (by e-mail address) with `permission` (`ro`,
    /// `rw` or `wd`), replacing a permission they had; answers the addresses it is now shared
    /// with. For the folder's owner, and for project folders their project's admins (a
    /// project folder is shared with members only, overriding the folder's permission for
    /// them). An unknown address fails the whole call ([`Error::problem`] lists them) and
    /// shares nothing.
    ///
    /// [`Error::problem`]: crate::Error::problem
    pub async fn share_vfolder(&self, name: &str, permission: &str, emails: &[String]) -> Result<Vec<String>> {
        check_permission(permission)?;
        check_emails(emails)?;
        let route = folder_route(name, "/share");
        let body = Body::Json(json!({ "permission": permission, "emails": emails }));
        let answer: Value = self.send_json(Method::POST, &route, &[], body).await?;
        strings(&route, &answer, "shared_emails")
    }

    /// Takes a shared folder away from these users; answers the addresses that had it.
    pub async fn unshare_vfolder(&self, name: &str, emails: &[String]) -> Result<Vec<String>> {
        check_emails(emails)?;
        let route = folder_route(name, "/unshare");
        let answer: Value =
            self.send_json(Method::DELETE, &route, &[], Body::Json(json!({ "emails": emails }))).await?;
        strings(&route, &answer, "unshared_emails")
    }

    /// Invites these users (by e-mail address) to one of your folders with `permission`; each
    /// gets the folder once they accept ([`Client::accept_invitation`]). Answers the addresses
    /// invited now — users who already have the folder or a pending invitation are left out.
    pub async fn invite_to_vfolder(&self, name: &str, permission: &str, emails: &[String]) -> Result<Vec<String>> {
        check_permission(permission)?;
        check_emails(emails)?;
        let route = folder_route(name, "/invite");
        let body = Body::Json(json!({ "perm": permission, "user_ids": emails }));
        let answer: Value = self.send_json(Method::POST, &route, &[], body).await?;
        strings(&route, &answer, "invited_ids")
    }

    /// The pending invitations sent to you.
    pub async fn vfolder_invitations(&self) -> Result<Vec<Invitation>> {
        let route = "/folders/invitations/list";
        let answer: Value = self.send_json(Method::GET, route, &[], Body::Empty).await?;
        serde_json::from_value(answer.get("invitations").cloned().unwrap_or(Value::Array(Vec::new())))
            .map_err(|e| protocol(route, format!("invitations: {e}")))
    }

    /// Accepts an invitation sent to you: the folder appears among yours with the permission
    /// offered.
    pub async fn accept_invitation(&self, id: &str) -> Result<()> {
        let body = Body::Json(json!({ "inv_id": id }));
        self.send(Method::POST, "/folders/invitations/accept", &[], body).await?;
        Ok(())
    }

    /// Rejects an invitation sent to you, or cancels one you sent.
    pub async fn reject_invitation(&self, id: &str) -> Result<()> {
        let body = Body::Json(json!({ "inv_id": id }));
        self.send(Method::DELETE, "/folders/invitations/delete", &[], body).await?;
        Ok(())
    }

    /// Gives up a folder someone shares with you (found among the folders shared with you,
    /// even if one of your own has the same name). Project folders go with the project.
    pub async fn leave_vfolder(&self, name: &str) -> Result<()> {
        let body = Body::Json(json!({ "shared_user_uuid": null }));
        self.send(Method::POST, &folder_route(name, "/leave"), &[], body).await?;
        Ok(())
    }

    /// Uploads a local file to `remote_path` in a folder, reporting progress after each chunk.
    pub async fn vfolder_upload(
        &self,
        name: &str,
        local: &Path,
        remote_path: &str,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let mut file = tokio::fs::File::open(local).await.map_err(io_error(local))?;
        let size = file.metadata().await.map_err(io_error(local))?.len();
        let body = Body::Json(json!({ "path": remote_path, "size": size }));
        let grant: Grant = self.send_json(Method::POST, &folder_route(name, "/request-upload"), &[], body).await?;
        let mut url = url::Url::parse(&grant.url).map_err(|e| protocol("request-upload", e))?;
        url.query_pairs_mut().append_pair("token", &grant.token);
        let mut offset = 0u64;
        let mut buffer = vec![0u8; UPLOAD_CHUNK];
        progress(0, size);
        while offset < size {
            let n = file.read(&mut buffer).await.map_err(io_error(local))?;
            if n == 0 {
                return Err(protocol("upload", format!("{} shrank while being uploaded", local.display())));
            }
            let response = self
                .http()
                .patch(url.clone())
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Offset", offset.to_string())
                .header(reqwest::header::CONTENT_TYPE, "application/offset+octet-stream")
                .body(buffer[..n].to_vec())
                .send()
                .await
                .map_err(|e| unreachable(&url, &e))?;
            let response = check("PATCH", &url, response).await?;
            offset = response
                .headers()
                .get("upload-offset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| protocol("upload", "the storage answered without Upload-Offset"))?;
            progress(offset.min(size), size);
        }
        Ok(size)
    }

    /// Downloads `remote_path` of a folder to `local` (which must not exist yet, unless
    /// `overwrite`), reporting progress. The file appears only when complete.
    pub async fn vfolder_download(
        &self,
        name: &str,
        remote_path: &str,
        local: &Path,
        overwrite: bool,
        progress: Progress<'_>,
    ) -> Result<u64> {
        if !overwrite && tokio::fs::try_exists(local).await.unwrap_or(false) {
            return Err(invalid("destination", format!("{} already exists", local.display())));
        }
        let body = Body::Json(json!({ "path": remote_path }));
        let grant: Grant = self.send_json(Method::POST, &folder_route(name, "/request-download"), &[], body).await?;
        let mut url = url::Url::parse(&grant.url).map_err(|e| protocol("request-download", e))?;
        url.query_pairs_mut().append_pair("token", &grant.token);
        let response = self.http().get(url.clone()).send().await.map_err(|e| unreachable(&url, &e))?;
        let response = check("GET", &url, response).await?;
        let total = response.content_length().unwrap_or(0);
        let partial = partial_path(local);
        let mut out = tokio::fs::File::create(&partial).await.map_err(io_error(&partial))?;
        let mut done = 0u64;
        progress(0, total);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&partial).await;
                    return Err(protocol("download", e));
                }
            };
            out.write_all(&chunk).await.map_err(io_error(&partial))?;
            done += chunk.len() as u64;
            progress(done, total.max(done));
        }
        out.flush().await.map_err(io_error(&partial))?;
        drop(out);
        tokio::fs::rename(&partial, local).await.map_err(io_error(local))?;
        Ok(done)
    }
}

fn partial_path(local: &Path) -> PathBuf {
    let mut name = local.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".bai-partial");
    local.with_file_name(name)
}
