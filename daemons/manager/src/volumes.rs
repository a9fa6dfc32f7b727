//! The storage hosts (volumes) folders are created on, from the shared configuration
//! ([`crate::shared_config`]) and applied live.
//!
//! Keys (under the namespace, in etcd or the fallback file):
//!
//! - `volumes/default_host = "local:volume1"`: where a folder goes when the client names no
//!   host; unset means `[storage] default-host`. The default host exists even when no
//!   `volumes/hosts/<it>/…` key defines it, keeping its folders in `[storage] root` itself.
//! - `volumes/hosts/<proxy:volume>/path = "volume2"`: a host of the local backend, keeping
//!   its folders in `<[storage] root>/<path>/<folder id>` (a relative path without `..`;
//!   empty means the root itself). `volumes/hosts/<host>/backend` may say `local` (the only
//!   backend); a host is defined by any key under `volumes/hosts/<host>/`.
//!
//! The agents mount folders from their `vfolder-root`, which must be the same directory as
//! the manager's `[storage] root`, so a session's mount names `<path>/<folder id>`.
//!
//! A change applies at once: a new host is listed by `GET /folders/_/hosts` and takes new
//! folders; a removed host takes no new folder, and its existing folders are refused (400
//! `vfolder-operation-failed` naming the host) for anything that touches their files —
//! listing, uploads, downloads, deletion, mounting — until the host is defined again; their
//! records (listing folders, renaming, sharing) keep working. A host whose keys do not make
//! sense (a bad path, an unknown backend, a name without `:`) is left out and logged.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use crate::shared_config::{keys, SharedConfig, Snapshot};
use crate::storage::Storage;

/// A storage host of the local backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeHost {
    /// `proxy:volume`.
    pub name: String,
    /// Its directory relative to the storage root (empty: the root itself).
    pub path: String,
}

/// The hosts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSet {
    /// The default host (among `hosts` unless its definition was left out).
    pub default: String,
    /// Every usable host by name.
    pub hosts: BTreeMap<String, VolumeHost>,
    /// Host definitions left out, and why.
    pub problems: Vec<String>,
}

/// Why a host cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    /// A new folder asks for a host that does not exist.
    #[error("unknown storage host {host:?}; the available hosts are {available:?}")]
    UnknownHost {
        /// The host asked for.
        host: String,
        /// The hosts there are.
        available: Vec<String>,
    },
    /// An existing folder's host is no longer configured.
    #[error("the folder's storage host {host:?} is not configured (any more); define it under volumes/hosts/ again to use the folder's files")]
    HostGone {
        /// The folder's host.
        host: String,
    },
}

fn check_path(path: &str) -> Result<(), String> {
    if path.contains('\0') {
        return Err("contains NUL".into());
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err("must be relative to [storage] root".into());
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err("must not contain '..'".into());
    }
    Ok(())
}

impl VolumeSet {
    /// The hosts `snapshot` defines, with `fallback_default` (`[storage] default-host`) as the
    /// default when `volumes/default_host` is unset.
    pub fn from_snapshot(snapshot: &Snapshot, fallback_default: &str) -> Self {
        let mut settings: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        let mut problems = Vec::new();
        for (rest, value) in snapshot.under(keys::VOLUME_HOSTS) {
            match rest.split_once('/') {
                Some((host, setting)) if !host.is_empty() && !setting.is_empty() => {
                    settings.entry(host).or_default().insert(setting, value.trim());
                }
                _ => problems.push(format!(
                    "{}{rest}: expected {}<proxy:volume>/<setting>",
                    keys::VOLUME_HOSTS,
                    keys::VOLUME_HOSTS
                )),
            }
        }
        let mut hosts = BTreeMap::new();
        let defined: Vec<String> = settings.keys().map(|n| n.to_string()).collect();
        for (name, values) in settings {
            let key = |s: &str| format!("{}{name}/{s}", keys::VOLUME_HOSTS);
            if !name.contains(':') {
                problems.push(format!("{}: the host name {name:?} is not of the form proxy:volume", key("")));
                continue;
            }
            let mut ok = true;
            for (setting, value) in &values {
                let problem = match *setting {
                    "path" => check_path(value).err(),
                    "backend" if *value == "local" || value.is_empty() => None,
                    "backend" => Some(format!("{value:?} is not a supported backend (only \"local\")")),
                    _ => Some("unknown setting (path, backend)".to_string()),
                };
                if let Some(p) = problem {
                    problems.push(format!("{}: {p}", key(setting)));
                    ok = false;
                }
            }
            if ok {
                let path = values.get("path").copied().unwrap_or_default().trim_matches('/').to_string();
                hosts.insert(name.to_string(), VolumeHost { name: name.to_string(), path });
            }
        }
        let default = match snapshot.text(keys::DEFAULT_HOST) {
            Some(h) if h.contains(':') => h.to_string(),
            Some(h) => {
                problems.push(format!("{}: {h:?} is not of the form proxy:volume", keys::DEFAULT_HOST));
                fallback_default.to_string()
            }
            None => fallback_default.to_string(),
        };
        if !defined.contains(&default) {
            hosts.insert(default.clone(), VolumeHost { name: default.clone(), path: String::new() });
        }
        Self { default, hosts, problems }
    }

    /// One host of the given name and the storage root.
    pub fn single(name: &str) -> Self {
        let host = VolumeHost { name: name.to_string(), path: String::new() };
        Self { default: name.to_string(), hosts: BTreeMap::from([(name.to_string(), host)]), problems: Vec::new() }
    }

    /// The host names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }
}

/// The storage hosts, kept up to date; an API service (`state.service::<Volumes>()`).
#[derive(Debug, Clone)]
pub struct Volumes {
    base: Storage,
    set: watch::Receiver<Arc<VolumeSet>>,
}

impl Volumes {
    /// The hosts of `shared`, on `base`'s root, secret and token lifetime (`base`'s host name
    /// is the default when `volumes/default_host` is unset). Changes are logged.
    pub fn new(base: Storage, shared: &SharedConfig) -> Self {
        let fallback = base.host().to_string();
        let set = shared.derive(move |s| Arc::new(VolumeSet::from_snapshot(s, &fallback)));
        log_changes(set.clone());
        Self { base, set }
    }

    /// Only `base`'s host, never changing.
    pub fn fixed(base: Storage) -> Self {
        let set = watch::channel(Arc::new(VolumeSet::single(base.host()))).1;
        Self { base, set }
    }

    /// The hosts now.
    pub fn current(&self) -> Arc<VolumeSet> {
        self.set.borrow().clone()
    }

    /// The hosts on each change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<VolumeSet>> {
        self.set.clone()
    }

    /// The storage of the root (it verifies every storage token: all hosts share the secret).
    pub fn base(&self) -> &Storage {
        &self.base
    }

    fn storage(&self, host: &VolumeHost) -> Storage {
        self.base.on_host(&host.name, &host.path)
    }

    /// The host a new folder goes to (`requested`, else the default) and its storage.
    pub fn for_new_folder(&self, requested: Option<&str>) -> Result<(String, Storage), VolumeError> {
        let set = self.current();
        let name = requested.unwrap_or(&set.default);
        match set.hosts.get(name) {
            Some(host) => Ok((host.name.clone(), self.storage(host))),
            None => Err(VolumeError::UnknownHost { host: name.to_string(), available: set.names() }),
        }
    }

    /// The storage of an existing folder's host.
    pub fn storage_of(&self, host: &str) -> Result<Storage, VolumeError> {
        match self.current().hosts.get(host) {
            Some(h) => Ok(self.storage(h)),
            None => Err(VolumeError::HostGone { host: host.to_string() }),
        }
    }

    /// A folder's directory relative to the storage root (what agents mount under their
    /// `vfolder-root`).
    pub fn mount_path(&self, host: &str, folder: Uuid) -> Result<String, VolumeError> {
        let set = self.current();
        let h = set.hosts.get(host).ok_or_else(|| VolumeError::HostGone { host: host.to_string() })?;
        let id = folder.simple().to_string();
        Ok(if h.path.is_empty() { id } else { format!("{}/{id}", h.path) })
    }
}

fn log_changes(mut set: watch::Receiver<Arc<VolumeSet>>) {
    let report = |s: &VolumeSet| {
        for p in &s.problems {
            tracing::warn!(problem = %p, "a storage host definition is ignored");
        }
    };
    report(&set.borrow_and_update());
    tokio::spawn(async move {
        while set.changed().await.is_ok() {
            let s = set.borrow_and_update().clone();
            tracing::info!(default = %s.default, hosts = ?s.names(), "storage hosts changed");
            report(&s);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageSection;

    fn set(pairs: &[(&str, &str)]) -> VolumeSet {
        VolumeSet::from_snapshot(&Snapshot::from_pairs(pairs.iter().copied()), "local:volume1")
    }

    #[test]
    fn hosts_from_keys() {
        let s = set(&[]);
        assert_eq!((s.default.as_str(), s.names()), ("local:volume1", vec!["local:volume1".to_string()]));
        let s = set(&[
            ("volumes/default_host", "local:v2"),
            ("volumes/hosts/local:v2/path", "/vols/two/"),
            ("volumes/hosts/local:v3/backend", "local"),
            ("volumes/hosts/local:bad/path", "../x"),
            ("volumes/hosts/local:nfs/backend", "nfs"),
            ("volumes/hosts/nocolon/path", "x"),
            ("volumes/hosts/local:v4/colour", "x"),
            ("volumes/hosts/stray", "x"),
        ]);
        assert_eq!(s.default, "local:v2");
        // An absolute path is refused: the default host is left out rather than moved.
        assert_eq!(s.names(), vec!["local:v3".to_string()]);
        assert_eq!(s.problems.len(), 6, "{:?}", s.problems);
        assert!(s.problems.iter().any(|p| p.contains("volumes/hosts/local:bad/path") && p.contains("..")));
        assert!(s.problems.iter().any(|p| p.contains("\"nfs\"")));
        let s = set(&[("volumes/hosts/local:v2/path", "two"), ("volumes/default_host", "oops")]);
        assert_eq!(s.default, "local:volume1");
        assert_eq!(s.hosts["local:v2"].path, "two");
        assert_eq!(s.problems.len(), 1);
    }

    #[tokio::test]
    async fn hosts_apply_live() {
        let dir = tempfile::tempdir().unwrap();
        let base = Storage::new(&StorageSection { root: dir.path().to_path_buf(), ..StorageSection::default() });
        let shared = SharedConfig::memory(Snapshot::default());
        let volumes = Volumes::new(base, &shared);
        let err = volumes.for_new_folder(Some("local:v2")).unwrap_err();
        assert_eq!(err.to_string(), "unknown storage host \"local:v2\"; the available hosts are [\"local:volume1\"]");
        let mut changes = volumes.subscribe();
        shared.put("volumes/hosts/local:v2/path", "two").await.unwrap();
        changes.changed().await.unwrap();
        let (host, storage) = volumes.for_new_folder(Some("local:v2")).unwrap();
        assert_eq!(host, "local:v2");
        let id = Uuid::new_v4();
        storage.create_folder(id).unwrap();
        assert!(dir.path().join("two").join(id.simple().to_string()).is_dir());
        assert_eq!(volumes.mount_path("local:v2", id).unwrap(), format!("two/{}", id.simple()));
        assert_eq!(volumes.mount_path("local:volume1", id).unwrap(), id.simple().to_string());
        shared.delete("volumes/hosts/local:v2", true).await.unwrap();
        changes.changed().await.unwrap();
        assert!(matches!(volumes.storage_of("local:v2"), Err(VolumeError::HostGone { .. })));
        assert!(volumes.for_new_folder(Some("local:v2")).is_err());
    }
}
