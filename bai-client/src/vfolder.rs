//! Virtual folders: create, list, info, delete, files, uploads and downloads (through the
//! storage side channel: token-authorised TUS uploads and plain downloads).

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
