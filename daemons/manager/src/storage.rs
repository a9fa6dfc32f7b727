//! The local storage host behind virtual folders (`spec/client-wire.md` §8).
//!
//! One host, named by `[storage] default-host` (`local:volume1`), keeps each folder in
//! `<root>/<folder id as 32 hex digits>`; uploads in progress live in
//! `<root>/.uploads/<folder id>/<upload id>` until their last byte arrives, then move into the
//! folder.
//!
//! Every path a client names is relative to its folder and is resolved by [`Storage::resolve`]
//! component by component: `..`, absolute paths and NUL are refused outright, and a symlink on
//! the way is followed only if its canonical target stays inside the folder. Errors name the
//! path the client gave.
//!
//! Transfers go through the storage side channel with a [`Grant`]: what a signed request to the
//! manager allowed (an upload or a download of one path of one folder, until a deadline),
//! serialised into a token and authenticated with HMAC-SHA256 under the manager's secret, so the
//! unsigned side channel never trusts anything the client could forge. Files are streamed in
//! both directions; memory stays bounded whatever their size.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::config::StorageSection;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A path the client gave is malformed or leads outside its folder.
    #[error("{path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The path does not exist.
    #[error("{path:?} does not exist")]
    NotFound {
        /// The path as given.
        path: String,
    },
    /// The path exists already.
    #[error("{path:?} already exists")]
    AlreadyExists {
        /// The path as given.
        path: String,
    },
    /// The folder's quota would be exceeded.
    #[error("the folder's quota of {quota} bytes would be exceeded: {used} bytes are used and {requested} more were requested")]
    QuotaExceeded {
        /// The quota in bytes.
        quota: u64,
        /// Bytes in use (uploads in progress included).
        used: u64,
        /// Bytes requested.
        requested: u64,
    },
    /// An upload sent more bytes than it announced.
    #[error("the upload announced {declared} bytes but sent at least {received}")]
    UploadTooLarge {
        /// The size given to request-upload.
        declared: u64,
        /// The bytes received so far.
        received: u64,
    },
    /// An upload chunk does not continue where the upload stands.
    #[error("Upload-Offset {got} does not match the {expected} bytes received so far")]
    OffsetMismatch {
        /// The bytes received so far.
        expected: u64,
        /// The offset the client sent.
        got: u64,
    },
    /// Another chunk of the same upload is being written.
    #[error("another chunk of this upload is being written")]
    Busy,
    /// A token that is malformed or not signed by this manager.
    #[error("invalid storage token: {0}")]
    BadToken(String),
    /// A token past its deadline.
    #[error("the storage token expired at {0} (Unix time)")]
    ExpiredToken(i64),
    /// An I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StorageError {
    let what = what.into();
    move |source| StorageError::Io { what, source }
}

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Writing one file through the TUS endpoint.
    Upload,
    /// Reading one file.
    Download,
}

/// The content of a storage token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// What it allows.
    pub op: Operation,
    /// The folder.
    pub folder: Uuid,
    /// The path inside the folder, as the client gave it.
    pub path: String,
    /// Uploads: the announced size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Uploads: the id of the upload (its temporary file's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// The deadline, Unix seconds.
    pub exp: i64,
}

/// One directory entry, as `ls` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The file name.
    pub name: String,
    /// `file`, `directory` or `symlink`.
    pub kind: &'static str,
    /// Bytes.
    pub size: u64,
    /// The Unix mode bits, file type included.
    pub mode: u32,
    /// Status change time, Unix seconds.
    pub ctime: f64,
    /// Access time, Unix seconds.
    pub atime: f64,
    /// Modification time, Unix seconds.
    pub mtime: f64,
}

/// The local storage host.
#[derive(Clone)]
pub struct Storage {
    root: PathBuf,
    host: String,
    secret: Vec<u8>,
    token_lifetime: Duration,
    /// Uploads with a chunk being written (one at a time per upload).
    writing: Arc<Mutex<HashSet<String>>>,
}

/// Marks an upload as being written until dropped.
struct WriteGuard {
    writing: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.writing.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("root", &self.root).field("host", &self.host).finish_non_exhaustive()
    }
}

/// The components of a folder-relative path: plain names only (`.` is skipped). Empty means
/// the folder itself.
pub fn split_relative(path: &str) -> Result<Vec<OsString>, StorageError> {
    let invalid = |reason: &str| StorageError::InvalidPath { path: path.to_string(), reason: reason.to_string() };
    if path.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(invalid("absolute paths are not allowed; give a path relative to the folder"));
    }
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(name) => out.push(name.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(invalid("'..' is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid("absolute paths are not allowed; give a path relative to the folder"))
            }
        }
    }
    Ok(out)
}

/// The parent of a folder-relative path as shown in messages (`.` for the folder itself).
fn parent_of(path: &str) -> String {
    Path::new(path).parent().map(|p| p.display().to_string()).filter(|p| !p.is_empty()).unwrap_or_else(|| ".".into())
}

/// Unix seconds of a metadata time, as a float.
fn seconds(secs: i64, nsecs: i64) -> f64 {
    secs as f64 + nsecs as f64 / 1e9
}

impl Storage {
    /// A storage host from its configuration section. Nothing is touched on disk until a
    /// folder is created.
    pub fn new(config: &StorageSection) -> Self {
        let secret = match &config.token_secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => {
                let mut bytes = vec![0u8; 32];
                if getrandom::fill(&mut bytes).is_err() {
                    bytes = Uuid::new_v4().as_bytes().iter().chain(Uuid::new_v4().as_bytes()).copied().collect();
                }
                bytes
            }
        };
        Storage {
            root: config.root.clone(),
            host: config.default_host.clone(),
            secret,
            token_lifetime: Duration::from_secs_f64(config.token_lifetime.max(1.0)),
            writing: Arc::default(),
        }
    }

    /// The host's name, e.g. `local:volume1`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The storage host `name` keeping its folders in `path` under this root (empty: the root
    /// itself), with this secret, token lifetime and upload bookkeeping
    /// ([`crate::volumes`]).
    pub fn on_host(&self, name: &str, path: &str) -> Storage {
        let root = if path.is_empty() { self.root.clone() } else { self.root.join(path) };
        Storage { root, host: name.to_string(), ..self.clone() }
    }

    /// How long tokens stay valid.
    pub fn token_lifetime(&self) -> Duration {
        self.token_lifetime
    }

    /// The directory of a folder.
    pub fn folder_dir(&self, folder: Uuid) -> PathBuf {
        self.root.join(folder.simple().to_string())
    }

    fn uploads_dir(&self, folder: Uuid) -> PathBuf {
        self.root.join(".uploads").join(folder.simple().to_string())
    }

    fn upload_file(&self, folder: Uuid, upload: &str) -> Result<PathBuf, StorageError> {
        if upload.is_empty() || !upload.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StorageError::BadToken("malformed upload id".into()));
        }
        Ok(self.uploads_dir(folder).join(upload))
    }

    /// Creates the directory of a new folder.
    pub fn create_folder(&self, folder: Uuid) -> Result<(), StorageError> {
        std::fs::create_dir_all(&self.root)
            .map_err(io_err(format!("create the storage root {}", self.root.display())))?;
        let dir = self.folder_dir(folder);
        std::fs::create_dir(&dir).map_err(io_err(format!("create {}", dir.display())))
    }

    /// Deletes a folder's directory and uploads in progress (a missing directory is fine).
    pub fn delete_folder(&self, folder: Uuid) -> Result<(), StorageError> {
        for dir in [self.folder_dir(folder), self.uploads_dir(folder)] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("delete {}", dir.display()))(e)),
            }
        }
        Ok(())
    }

    /// The host path of `path` inside `folder`, refusing any path that leaves the folder.
    ///
    /// Each existing component is checked with `symlink_metadata`; a symlink is followed (when
    /// it is not the last component, or `follow_last` is set) only if its canonical target is
    /// inside the folder. The first missing component ends the walk: the rest is appended as
    /// is (it cannot exist, so it cannot be a link). The answer may not exist.
    pub fn resolve(&self, folder: Uuid, path: &str, follow_last: bool) -> Result<PathBuf, StorageError> {
        let parts = split_relative(path)?;
        let dir = self.folder_dir(folder);
        let base = dir.canonicalize().map_err(io_err(format!("the folder's directory {}", dir.display())))?;
        let mut cur = base.clone();
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            let next = cur.join(part);
            let meta = match std::fs::symlink_metadata(&next) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let mut rest = next;
                    rest.extend(&parts[i + 1..]);
                    return Ok(rest);
                }
                Err(e) => return Err(io_err(format!("inspect {path:?}"))(e)),
            };
            if meta.file_type().is_symlink() && (i < last || follow_last) {
                let target = next.canonicalize().map_err(|_| StorageError::InvalidPath {
                    path: path.to_string(),
                    reason: format!("the symlink {:?} cannot be resolved", part.to_string_lossy()),
                })?;
                if !target.starts_with(&base) {
                    return Err(StorageError::InvalidPath {
                        path: path.to_string(),
                        reason: format!("the symlink {:?} leads outside the folder", part.to_string_lossy()),
                    });
                }
                cur = target;
            } else {
                if i < last && !meta.is_dir() {
                    return Err(StorageError::InvalidPath {
                        path: path.to_string(),
                        reason: format!("{:?} is not a directory", part.to_string_lossy()),
                    });
                }
                cur = next;
            }
        }
        Ok(cur)
    }

    /// Files and bytes a folder holds (symlinks count as files of their own size, and are
    /// never followed), plus the bytes of its uploads in progress.
    pub fn usage(&self, folder: Uuid) -> Result<(u64, u64), StorageError> {
        fn walk(dir: &Path, files: &mut u64, bytes: &mut u64) -> io::Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let meta = entry.path().symlink_metadata()?;
                if meta.is_dir() {
                    walk(&entry.path(), files, bytes)?;
                } else {
                    *files += 1;
                    *bytes += meta.len();
                }
            }
            Ok(())
        }
        let (mut files, mut bytes) = (0, 0);
        walk(&self.folder_dir(folder), &mut files, &mut bytes).map_err(io_err("measure the folder"))?;
        let (mut pending, mut pending_bytes) = (0, 0);
        walk(&self.uploads_dir(folder), &mut pending, &mut pending_bytes)
            .map_err(io_err("measure the folder's uploads"))?;
        Ok((files, bytes + pending_bytes))
    }

    /// Refuses `requested` more bytes when they would take the folder past `quota`.
    pub fn check_quota(&self, folder: Uuid, quota: Option<u64>, requested: u64) -> Result<(), StorageError> {
        let Some(quota) = quota else { return Ok(()) };
        let (_, used) = self.usage(folder)?;
        if used.saturating_add(requested) > quota {
            return Err(StorageError::QuotaExceeded { quota, used, requested });
        }
        Ok(())
    }

    /// The entries of a directory, sorted by name.
    pub fn list(&self, folder: Uuid, path: &str) -> Result<Vec<Entry>, StorageError> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.resolve(folder, path, true)?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound { path: path.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(StorageError::InvalidPath { path: path.into(), reason: "is not a directory".into() })
            }
            Err(e) => return Err(io_err(format!("list {path:?}"))(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(format!("list {path:?}")))?;
            let meta = entry.path().symlink_metadata().map_err(io_err(format!("list {path:?}")))?;
            let kind = if meta.file_type().is_symlink() {
                "symlink"
            } else if meta.is_dir() {
                "directory"
            } else {
                "file"
            };
            out.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind,
                size: meta.len(),
                mode: meta.mode(),
                ctime: seconds(meta.ctime(), meta.ctime_nsec()),
                atime: seconds(meta.atime(), meta.atime_nsec()),
                mtime: seconds(meta.mtime(), meta.mtime_nsec()),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a directory (`parents`: and its missing parents; `exist_ok`: an existing
    /// directory is fine).
    pub fn mkdir(&self, folder: Uuid, path: &str, parents: bool, exist_ok: bool) -> Result<(), StorageError> {
        if split_relative(path)?.is_empty() {
            return Err(StorageError::InvalidPath { path: path.into(), reason: "names the folder itself".into() });
        }
        let target = self.resolve(folder, path, true)?;
        match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() && exist_ok => return Ok(()),
            Ok(_) => return Err(StorageError::AlreadyExists { path: path.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("inspect {path:?}"))(e)),
        }
        let result = if parents { std::fs::create_dir_all(&target) } else { std::fs::create_dir(&target) };
        result.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound { path: path.into() },
            io::ErrorKind::AlreadyExists => StorageError::AlreadyExists { path: path.into() },
            _ => io_err(format!("create {path:?}"))(e),
        })
    }

    /// Deletes a file, a symlink (never its target) or, with `recursive`, a directory tree.
    pub fn delete(&self, folder: Uuid, path: &str, recursive: bool) -> Result<(), StorageError> {
        if split_relative(path)?.is_empty() {
            return Err(StorageError::InvalidPath { path: path.into(), reason: "names the folder itself".into() });
        }
        let target = self.resolve(folder, path, false)?;
        let meta = match std::fs::symlink_metadata(&target) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound { path: path.into() }),
            Err(e) => return Err(io_err(format!("inspect {path:?}"))(e)),
        };
        if meta.is_dir() {
            if !recursive {
                return Err(StorageError::InvalidPath {
                    path: path.into(),
                    reason: "is a directory; delete it recursively".into(),
                });
            }
            std::fs::remove_dir_all(&target).map_err(io_err(format!("delete {path:?}")))
        } else {
            std::fs::remove_file(&target).map_err(io_err(format!("delete {path:?}")))
        }
    }

    /// Moves a file, a symlink (never its target) or a directory tree to `dst`, like `mv`:
    /// when `dst` is an existing directory the entry goes inside it under its own name. An
    /// existing file at the destination is never overwritten, and a directory cannot move
    /// into itself. Both paths stay inside the folder.
    pub fn move_entry(&self, folder: Uuid, src: &str, dst: &str) -> Result<(), StorageError> {
        let src_parts = split_relative(src)?;
        let Some(src_name) = src_parts.last().cloned() else {
            return Err(StorageError::InvalidPath { path: src.into(), reason: "names the folder itself".into() });
        };
        let from = self.resolve(folder, src, false)?;
        match std::fs::symlink_metadata(&from) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound { path: src.into() }),
            Err(e) => return Err(io_err(format!("inspect {src:?}"))(e)),
        }
        let mut to = self.resolve(folder, dst, true)?;
        let mut shown = dst.to_string();
        if to.is_dir() {
            to.push(&src_name);
            shown = format!("{}/{}", dst.trim_end_matches('/'), src_name.to_string_lossy());
        }
        if to.starts_with(&from) {
            return Err(StorageError::InvalidPath {
                path: dst.into(),
                reason: format!("{src:?} cannot be moved onto or into itself"),
            });
        }
        match std::fs::symlink_metadata(&to) {
            Ok(_) => return Err(StorageError::AlreadyExists { path: shown }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("inspect {shown:?}"))(e)),
        }
        match to.parent().map(std::fs::symlink_metadata) {
            Some(Ok(meta)) if meta.is_dir() => {}
            _ => return Err(StorageError::NotFound { path: parent_of(&shown) }),
        }
        std::fs::rename(&from, &to).map_err(io_err(format!("move {src:?} to {shown:?}")))
    }

    /// Renames a file or directory in place: `new_name` is a plain name, not a path.
    pub fn rename_entry(&self, folder: Uuid, path: &str, new_name: &str) -> Result<(), StorageError> {
        let name_parts = split_relative(new_name)?;
        if name_parts.len() != 1 || new_name.contains('/') {
            return Err(StorageError::InvalidPath {
                path: new_name.into(),
                reason: "a new name is one plain file name, without '/'".into(),
            });
        }
        let mut parts = split_relative(path)?;
        if parts.pop().is_none() {
            return Err(StorageError::InvalidPath { path: path.into(), reason: "names the folder itself".into() });
        }
        let parent: PathBuf = parts.iter().collect();
        let dst = parent.join(&name_parts[0]);
        let dst = dst
            .to_str()
            .ok_or_else(|| StorageError::InvalidPath { path: new_name.into(), reason: "is not valid UTF-8".into() })?;
        // An existing directory named `new_name` is a collision, not a destination to move into.
        if self.resolve(folder, dst, false).is_ok_and(|p| std::fs::symlink_metadata(p).is_ok()) {
            return Err(StorageError::AlreadyExists { path: dst.into() });
        }
        self.move_entry(folder, path, dst)
    }

    /// Signs a grant into a token: hex of its JSON, a dot, hex of its HMAC-SHA256.
    pub fn issue(&self, grant: &Grant) -> String {
        self.seal(grant)
    }

    /// Checks a token's signature and deadline (`now`, Unix seconds) and answers its grant.
    pub fn verify(&self, token: &str, now: i64) -> Result<Grant, StorageError> {
        let grant: Grant = self.open(token)?;
        if grant.exp < now {
            return Err(StorageError::ExpiredToken(grant.exp));
        }
        Ok(grant)
    }

    /// Signs any claims into a token under the manager's token secret (`storage.token-secret`):
    /// hex of their JSON, a dot, hex of its HMAC-SHA256. Storage grants and app-proxy links
    /// use it; claims of different kinds must not deserialise into each other.
    pub fn seal<T: Serialize>(&self, claims: &T) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(&payload);
        format!("{}.{}", hex::encode(&payload), hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks the signature of a token [`Storage::seal`] made and answers its claims (the
    /// caller checks their deadline).
    pub fn open<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, StorageError> {
        let (payload, tag) = token.split_once('.').ok_or_else(|| StorageError::BadToken("malformed".into()))?;
        let payload = hex::decode(payload).map_err(|_| StorageError::BadToken("malformed".into()))?;
        let tag = hex::decode(tag).map_err(|_| StorageError::BadToken("malformed".into()))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| StorageError::BadToken("signature mismatch".into()))?;
        serde_json::from_slice(&payload).map_err(|e| StorageError::BadToken(e.to_string()))
    }

    /// Prepares an upload of `size` bytes to `path` after checking the path and the quota:
    /// an empty file is created in place at once (the client sends no data for it); otherwise
    /// an empty temporary file is created and its upload id returned.
    pub fn begin_upload(
        &self,
        folder: Uuid,
        path: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<Option<String>, StorageError> {
        if split_relative(path)?.is_empty() {
            return Err(StorageError::InvalidPath { path: path.into(), reason: "names the folder itself".into() });
        }
        let target = self.resolve(folder, path, false)?;
        if target.is_dir() {
            return Err(StorageError::InvalidPath { path: path.into(), reason: "is a directory".into() });
        }
        self.check_quota(folder, quota, size)?;
        if size == 0 {
            self.place(folder, path, None)?;
            return Ok(None);
        }
        let dir = self.uploads_dir(folder);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let id = crate::sessions::random_hex(16);
        let file = dir.join(&id);
        std::fs::File::create(&file).map_err(io_err(format!("create {}", file.display())))?;
        Ok(Some(id))
    }

    /// Moves a finished upload (or, with `None`, a new empty file) to `path`, creating its
    /// parent directories. A symlink at `path` is replaced, never written through.
    fn place(&self, folder: Uuid, path: &str, temp: Option<&Path>) -> Result<(), StorageError> {
        let parts = split_relative(path)?;
        if parts.len() > 1 {
            let parent: PathBuf = parts[..parts.len() - 1].iter().collect();
            let parent_path = self.resolve(folder, &parent.to_string_lossy(), true)?;
            std::fs::create_dir_all(&parent_path).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
                    StorageError::InvalidPath { path: path.into(), reason: "its parent is not a directory".into() }
                }
                _ => io_err(format!("create the parents of {path:?}"))(e),
            })?;
        }
        let target = self.resolve(folder, path, false)?;
        if target.is_dir() {
            return Err(StorageError::InvalidPath { path: path.into(), reason: "is a directory".into() });
        }
        // Always a rename, which replaces a symlink at `target` instead of writing through it.
        match temp {
            Some(temp) => std::fs::rename(temp, &target).map_err(io_err(format!("move the upload to {path:?}"))),
            None => {
                let dir = self.uploads_dir(folder);
                std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
                let empty = dir.join(crate::sessions::random_hex(16));
                std::fs::File::create(&empty).map_err(io_err(format!("create {}", empty.display())))?;
                std::fs::rename(&empty, &target).map_err(|e| {
                    let _ = std::fs::remove_file(&empty);
                    io_err(format!("create {path:?}"))(e)
                })
            }
        }
    }

    /// The bytes an upload has received so far.
    pub fn upload_offset(&self, grant: &Grant) -> Result<u64, StorageError> {
        let file = self.upload_file(grant.folder, grant.upload.as_deref().unwrap_or_default())?;
        match std::fs::metadata(&file) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::NotFound { path: grant.path.clone() }),
            Err(e) => Err(io_err("inspect the upload")(e)),
        }
    }

    /// Appends one TUS chunk at `offset`, streaming `body` to disk, and answers the new offset.
    /// When the announced size is reached the file moves into place. Sending more than the
    /// announced size, or more than the quota leaves room for, deletes the upload.
    pub async fn write_chunk<S, E>(
        &self,
        grant: &Grant,
        quota: Option<u64>,
        offset: u64,
        mut body: S,
    ) -> Result<u64, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let size = grant.size.unwrap_or(0);
        let upload_id = grant.upload.clone().unwrap_or_default();
        let temp = self.upload_file(grant.folder, &upload_id)?;
        if !self.writing.lock().unwrap_or_else(|e| e.into_inner()).insert(upload_id.clone()) {
            return Err(StorageError::Busy);
        }
        let _guard = WriteGuard { writing: self.writing.clone(), id: upload_id };
        let current = {
            let this = self.clone();
            let g = grant.clone();
            blocking(move || this.upload_offset(&g)).await?
        };
        if offset != current {
            return Err(StorageError::OffsetMismatch { expected: current, got: offset });
        }
        let room = match quota {
            Some(quota) => {
                let this = self.clone();
                let folder = grant.folder;
                let (_, used) = blocking(move || this.usage(folder)).await?;
                Some((quota, used, quota.saturating_sub(used)))
            }
            None => None,
        };
        let file = tokio::fs::OpenOptions::new().append(true).open(&temp).await.map_err(io_err("open the upload"))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut written: u64 = 0;
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Ok(c)) => c,
                Some(Err(e)) => break Some(io_err("receive the upload")(io::Error::other(e.to_string()))),
            };
            written += chunk.len() as u64;
            if current + written > size {
                break Some(StorageError::UploadTooLarge { declared: size, received: current + written });
            }
            if let Some((quota, used, room)) = room {
                if written > room {
                    break Some(StorageError::QuotaExceeded { quota, used, requested: size - current });
                }
            }
            if let Err(e) = out.write_all(&chunk).await {
                break Some(io_err("write the upload")(e));
            }
        };
        let flushed = out.flush().await;
        drop(out);
        if let Some(err) = failure {
            if !matches!(err, StorageError::Io { .. }) {
                let _ = tokio::fs::remove_file(&temp).await;
            }
            return Err(err);
        }
        flushed.map_err(io_err("write the upload"))?;
        let new_offset = current + written;
        if new_offset == size {
            let this = self.clone();
            let (folder, path) = (grant.folder, grant.path.clone());
            let temp2 = temp.clone();
            let placed = blocking(move || this.place(folder, &path, Some(&temp2))).await;
            if placed.is_err() {
                let _ = tokio::fs::remove_file(&temp).await;
            }
            placed?;
        }
        Ok(new_offset)
    }

    /// Opens a regular file for download: the open file, its length and modification time.
    pub async fn open_for_download(
        &self,
        folder: Uuid,
        path: &str,
    ) -> Result<(tokio::fs::File, u64, std::time::SystemTime), StorageError> {
        let target = {
            let this = self.clone();
            let p = path.to_string();
            blocking(move || this.resolve(folder, &p, true)).await?
        };
        let meta = match tokio::fs::metadata(&target).await {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound { path: path.into() }),
            Err(e) => return Err(io_err(format!("inspect {path:?}"))(e)),
        };
        if !meta.is_file() {
            return Err(StorageError::InvalidPath { path: path.into(), reason: "is not a regular file".into() });
        }
        let file = tokio::fs::File::open(&target).await.map_err(io_err(format!("open {path:?}")))?;
        Ok((file, meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH)))
    }
}

/// Runs blocking file-system work off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(StorageError::Io { what: "storage task".into(), source: io::Error::other(e.to_string()) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn storage(dir: &Path) -> (Storage, Uuid) {
        let config = StorageSection { root: dir.join("vf"), ..StorageSection::default() };
        let s = Storage::new(&config);
        let id = Uuid::new_v4();
        s.create_folder(id).unwrap();
        (s, id)
    }

    fn reason(r: Result<PathBuf, StorageError>) -> String {
        match r {
            Err(StorageError::InvalidPath { reason, .. }) => reason,
            other => panic!("expected an invalid path, got {other:?}"),
        }
    }

    #[test]
    fn resolution_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let (s, id) = storage(dir.path());
        let base = s.folder_dir(id).canonicalize().unwrap();
        std::fs::create_dir(base.join("sub")).unwrap();
        symlink("/etc", base.join("etc")).unwrap();
        symlink("../..", base.join("up")).unwrap();
        symlink("sub", base.join("alias")).unwrap();
        symlink("/nonexistent/x", base.join("dangling")).unwrap();
        assert!(reason(s.resolve(id, "../x", true)).contains(".."));
        assert!(reason(s.resolve(id, "sub/../../x", true)).contains(".."));
        assert!(reason(s.resolve(id, "/etc/passwd", true)).contains("absolute"));
        assert!(reason(s.resolve(id, "etc/passwd", true)).contains("outside"));
        assert!(reason(s.resolve(id, "etc", true)).contains("outside"));
        assert!(reason(s.resolve(id, "up/x", true)).contains("outside"));
        assert!(reason(s.resolve(id, "dangling", true)).contains("cannot be resolved"));
        assert_eq!(s.resolve(id, "alias/f", true).unwrap(), base.join("sub/f"));
        assert_eq!(s.resolve(id, "./sub/new/deeper", true).unwrap(), base.join("sub/new/deeper"));
        // Without following the last component, a link is itself the answer (delete it, not its target).
        assert_eq!(s.resolve(id, "etc", false).unwrap(), base.join("etc"));
        assert_eq!(s.resolve(id, ".", true).unwrap(), base);
    }

    #[test]
    fn moves_and_renames_stay_inside_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (s, id) = storage(dir.path());
        let base = s.folder_dir(id).canonicalize().unwrap();
        std::fs::create_dir(base.join("sub")).unwrap();
        std::fs::write(base.join("a.txt"), "a").unwrap();
        std::fs::write(base.join("b.txt"), "b").unwrap();
        symlink("/etc", base.join("etc")).unwrap();

        // Into an existing directory, under its own name.
        s.move_entry(id, "a.txt", "sub").unwrap();
        assert_eq!(std::fs::read_to_string(base.join("sub/a.txt")).unwrap(), "a");
        // Onto an existing file: refused, both kept.
        assert!(matches!(s.move_entry(id, "sub/a.txt", "b.txt"), Err(StorageError::AlreadyExists { .. })));
        assert_eq!(std::fs::read_to_string(base.join("b.txt")).unwrap(), "b");
        // Out of the folder, through `..`, an absolute path or a link: refused.
        assert!(matches!(s.move_entry(id, "b.txt", "../b.txt"), Err(StorageError::InvalidPath { .. })));
        assert!(matches!(s.move_entry(id, "b.txt", "/tmp/b.txt"), Err(StorageError::InvalidPath { .. })));
        assert!(matches!(s.move_entry(id, "b.txt", "etc/b.txt"), Err(StorageError::InvalidPath { .. })));
        assert!(matches!(s.move_entry(id, "../x", "c.txt"), Err(StorageError::InvalidPath { .. })));
        // A directory into itself, a missing source, a missing destination directory.
        assert!(matches!(s.move_entry(id, "sub", "sub/inner"), Err(StorageError::InvalidPath { .. })));
        assert!(matches!(s.move_entry(id, "nope", "x"), Err(StorageError::NotFound { .. })));
        assert!(matches!(s.move_entry(id, "b.txt", "no/dir/b.txt"), Err(StorageError::NotFound { .. })));
        // Moving a link moves the link, not its target.
        s.move_entry(id, "etc", "sub/etc-link").unwrap();
        assert!(std::fs::symlink_metadata(base.join("sub/etc-link")).unwrap().file_type().is_symlink());

        s.rename_entry(id, "sub/a.txt", "c.txt").unwrap();
        assert_eq!(std::fs::read_to_string(base.join("sub/c.txt")).unwrap(), "a");
        assert!(matches!(s.rename_entry(id, "sub/c.txt", "../c.txt"), Err(StorageError::InvalidPath { .. })));
        assert!(matches!(s.rename_entry(id, "sub/c.txt", "x/c.txt"), Err(StorageError::InvalidPath { .. })));
        assert!(matches!(s.rename_entry(id, "b.txt", "sub"), Err(StorageError::AlreadyExists { .. })));
        assert!(matches!(s.rename_entry(id, ".", "x"), Err(StorageError::InvalidPath { .. })));
        assert!(base.join("b.txt").exists());
    }

    #[test]
    fn tokens_are_signed_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (s, id) = storage(dir.path());
        let grant = Grant { op: Operation::Download, folder: id, path: "a".into(), size: None, upload: None, exp: 100 };
        let token = s.issue(&grant);
        assert_eq!(s.verify(&token, 50).unwrap(), grant);
        assert!(matches!(s.verify(&token, 101), Err(StorageError::ExpiredToken(100))));
        let (payload, tag) = token.split_once('.').unwrap();
        let mut forged = grant.clone();
        forged.path = "b".into();
        let forged = format!("{}.{tag}", hex::encode(serde_json::to_vec(&forged).unwrap()));
        assert!(matches!(s.verify(&forged, 50), Err(StorageError::BadToken(_))));
        assert!(matches!(s.verify(payload, 50), Err(StorageError::BadToken(_))));
        let other = Storage::new(&StorageSection::default());
        assert!(matches!(other.verify(&token, 50), Err(StorageError::BadToken(_))));
    }

    #[tokio::test]
    async fn one_chunk_at_a_time_per_upload() {
        let dir = tempfile::tempdir().unwrap();
        let (s, id) = storage(dir.path());
        let upload = s.begin_upload(id, "d/f", 10, Some(100)).unwrap().unwrap();
        let grant = Grant {
            op: Operation::Upload,
            folder: id,
            path: "d/f".into(),
            size: Some(10),
            upload: Some(upload.clone()),
            exp: i64::MAX,
        };
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, io::Error>>();
        let (s2, g2) = (s.clone(), grant.clone());
        let first = tokio::spawn(async move { s2.write_chunk(&g2, Some(100), 0, rx).await });
        tx.unbounded_send(Ok(Bytes::from_static(b"hello"))).unwrap();
        while !s.writing.lock().unwrap().contains(&upload) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let second = s.write_chunk(&grant, Some(100), 0, futures::stream::empty::<Result<Bytes, io::Error>>()).await;
        assert!(matches!(second, Err(StorageError::Busy)), "{second:?}");
        drop(tx);
        assert_eq!(first.await.unwrap().unwrap(), 5);
        let wrong = s.write_chunk(&grant, Some(100), 0, futures::stream::empty::<Result<Bytes, io::Error>>()).await;
        assert!(matches!(wrong, Err(StorageError::OffsetMismatch { expected: 5, got: 0 })), "{wrong:?}");
        let rest = futures::stream::iter(vec![Ok::<_, io::Error>(Bytes::from_static(b"world"))]);
        assert_eq!(s.write_chunk(&grant, Some(100), 5, rest).await.unwrap(), 10);
        assert_eq!(std::fs::read(s.folder_dir(id).join("d/f")).unwrap(), b"helloworld");
        assert!(s.writing.lock().unwrap().is_empty());
    }

    #[test]
    fn mkdir_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (s, id) = storage(dir.path());
        s.mkdir(id, "a/b", true, false).unwrap();
        assert!(matches!(s.mkdir(id, "a/b", false, false), Err(StorageError::AlreadyExists { .. })));
        s.mkdir(id, "a/b", false, true).unwrap();
        assert!(matches!(s.mkdir(id, "x/y", false, false), Err(StorageError::NotFound { .. })));
        std::fs::write(s.folder_dir(id).join("a/f"), b"hello").unwrap();
        let names: Vec<_> = s.list(id, "a").unwrap().into_iter().map(|e| (e.name, e.kind, e.size)).collect();
        assert_eq!(names, vec![("b".into(), "directory", names[0].2), ("f".into(), "file", 5)]);
        assert_eq!(s.usage(id).unwrap(), (1, 5));
        assert!(matches!(s.delete(id, "a", false), Err(StorageError::InvalidPath { .. })));
        s.delete(id, "a", true).unwrap();
        assert!(s.list(id, ".").unwrap().is_empty());
    }
}
