//! Virtual-folder mounts: turning "folder `x` under this host root, as `name`, with this
//! permission" into a validated [`BindMount`] that cannot escape the host root.
//!
//! This module owns the checks between a folder named in a request and the bind mount handed
//! to the container engine. The host side: the folder is a relative path of normal components
//! (no `..`, `.`, absolute paths or NUL), and its canonical form (every symlink resolved) must be
//! a directory strictly inside the canonical host root; the *resolved* path is what gets
//! mounted, so a symlink swapped in later cannot redirect the mount. The container side: the
//! target is `/home/work/<name>` or a given absolute, normalised path that is not a system
//! directory ([`bai_core::session::validate_container_path`]), not `/home/work` itself or one
//! of its ancestors, and not inside the other intrinsic mounts (`/home/config`,
//! `/opt/backend.ai`, `/dev`, `/tmp`).
//!
//! Permissions: `ro` mounts read-only; `rw` and `rw-delete` (`wd`) both mount read-write. A
//! bind mount cannot allow writing but forbid deleting, so, as in the original, the difference
//! between them is enforced by the storage side (the storage proxy's file APIs), not here.

use std::path::{Component, Path, PathBuf};

use bai_core::session::validate_container_path;
use bai_core::MountPermission;

use crate::error::{Error, Result};
use crate::runtime::BindMount;

/// Where kernels' working directory is; named folders go below it.
pub const WORK_DIR: &str = "/home/work";

/// Container paths owned by the kernel's intrinsic mounts: a folder may not be mounted at or
/// below them.
const RESERVED_SUBTREES: [&str; 3] = ["/home/config", "/opt/backend.ai", "/dev"];

/// Resolves virtual-folder mounts. See the [module documentation](self) for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VFolderMount;

impl VFolderMount {
    /// The bind mount of `folder` (relative to `host_root`) at `/home/work/<name>`.
    ///
    /// `name` is one path component (no `/`, not `.` or `..`, no NUL); names starting with a
    /// dot (e.g. `.local`) are allowed, as the original's automount folders use them.
    ///
    /// ```
    /// # fn main() -> bai_agent_runtime::Result<()> {
    /// use bai_agent_runtime::bai_core::MountPermission;
    /// use bai_agent_runtime::vfolder::VFolderMount;
    ///
    /// let host = tempfile::tempdir().unwrap();
    /// std::fs::create_dir_all(host.path().join("u1/data")).unwrap();
    /// let m = VFolderMount::resolve(host.path(), "u1/data", "data", MountPermission::ReadOnly)?;
    /// assert_eq!(m.target, "/home/work/data");
    /// assert!(m.read_only);
    /// assert!(VFolderMount::resolve(host.path(), "../etc", "x", MountPermission::ReadWrite).is_err());
    /// # Ok(()) }
    /// ```
    pub fn resolve(host_root: &Path, folder: &str, name: &str, permission: MountPermission) -> Result<BindMount> {
        validate_name(name)?;
        Self::resolve_at(host_root, folder, &format!("{WORK_DIR}/{name}"), permission)
    }

    /// The bind mount of `folder` (relative to `host_root`) at the absolute container path
    /// `target`.
    pub fn resolve_at(host_root: &Path, folder: &str, target: &str, permission: MountPermission) -> Result<BindMount> {
        validate_target(target)?;
        let source = resolve_source(host_root, folder)?;
        let source = source.into_os_string().into_string().map_err(|p| {
            Error::invalid("vfolder.folder", format!("{} is not valid UTF-8", PathBuf::from(p).display()))
        })?;
        Ok(BindMount { source, target: target.to_owned(), read_only: permission == MountPermission::ReadOnly })
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') || name.len() > 255 {
        return Err(Error::invalid(
            "vfolder.name",
            format!("{name:?}: expected one path component of 1 to 255 bytes, without '/' or NUL, not '.' or '..'"),
        ));
    }
    Ok(())
}

fn validate_target(target: &str) -> Result<()> {
    validate_container_path(target).map_err(|reason| Error::invalid("vfolder.target", reason))?;
    let target_path = Path::new(target);
    if Path::new(WORK_DIR).starts_with(target_path) {
        return Err(Error::invalid(
            "vfolder.target",
            format!("{target:?} would hide the kernel's working directory {WORK_DIR}; mount below it"),
        ));
    }
    if target == "/tmp" {
        return Err(Error::invalid("vfolder.target", "\"/tmp\" is the kernel's own scratch; mount below or elsewhere"));
    }
    if let Some(reserved) = RESERVED_SUBTREES.iter().find(|r| target_path.starts_with(r)) {
        return Err(Error::invalid(
            "vfolder.target",
            format!("{target:?} is inside {reserved}, which the agent mounts"),
        ));
    }
    Ok(())
}

/// The canonical host path of `folder`, checked to be a directory strictly inside `host_root`.
fn resolve_source(host_root: &Path, folder: &str) -> Result<PathBuf> {
    if folder.contains('\0') {
        return Err(Error::invalid("vfolder.folder", format!("{folder:?} contains NUL")));
    }
    let rel = Path::new(folder);
    if folder.is_empty() || rel.is_absolute() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::invalid(
            "vfolder.folder",
            format!("{folder:?}: expected a relative path of plain components (no '..', '.', or leading '/')"),
        ));
    }
    let root = host_root.canonicalize().map_err(|e| Error::io("resolve vfolder host root", host_root, e))?;
    let joined = root.join(rel);
    let resolved = match joined.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound { kind: "vfolder", id: folder.to_owned() })
        }
        Err(e) => return Err(Error::io("resolve vfolder", &joined, e)),
    };
    if resolved == root || !resolved.starts_with(&root) {
        return Err(Error::invalid(
            "vfolder.folder",
            format!("{folder:?} resolves to {}, outside the host root {}", resolved.display(), root.display()),
        ));
    }
    if !resolved.is_dir() {
        return Err(Error::invalid("vfolder.folder", format!("{folder:?} is not a directory")));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    use MountPermission::{ReadOnly, ReadWrite, ReadWriteDelete};

    struct Host {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn host() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("vfroot");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("user1/data/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("user1/file.txt"), "x").unwrap();
        Host { _tmp: tmp, root, outside }
    }

    fn invalid_field(r: Result<BindMount>) -> String {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn mounts_at_home_work_with_the_right_mode() {
        let h = host();
        let canonical = h.root.canonicalize().unwrap().join("user1/data");
        for (perm, ro) in [(ReadOnly, true), (ReadWrite, false), (ReadWriteDelete, false)] {
            let m = VFolderMount::resolve(&h.root, "user1/data", "mydata", perm).unwrap();
            assert_eq!(
                m,
                BindMount {
                    source: canonical.display().to_string(),
                    target: "/home/work/mydata".into(),
                    read_only: ro
                }
            );
        }
        let m = VFolderMount::resolve(&h.root, "user1/data/", ".local", ReadWrite).unwrap();
        assert_eq!(m.target, "/home/work/.local");
        let m = VFolderMount::resolve_at(&h.root, "user1/data/sub", "/data/sub", ReadOnly).unwrap();
        assert_eq!((m.target.as_str(), m.read_only), ("/data/sub", true));
    }

    #[test]
    fn refuses_bad_folder_paths() {
        let h = host();
        for bad in ["", ".", "..", "../outside", "user1/../user1/data", "./user1/data", "/etc", "user1/da\0ta"] {
            assert_eq!(invalid_field(VFolderMount::resolve(&h.root, bad, "x", ReadWrite)), "vfolder.folder", "{bad:?}");
        }
        assert!(matches!(
            VFolderMount::resolve(&h.root, "user1/missing", "x", ReadWrite),
            Err(Error::NotFound { kind: "vfolder", .. })
        ));
        assert_eq!(invalid_field(VFolderMount::resolve(&h.root, "user1/file.txt", "x", ReadWrite)), "vfolder.folder");
    }

    #[test]
    fn refuses_symlink_escapes() {
        let h = host();
        // Straight out of the root.
        symlink(&h.outside, h.root.join("user1/escape")).unwrap();
        // Relative, through a parent.
        symlink("../../outside", h.root.join("user1/rel-escape")).unwrap();
        // A chain of links inside the root that ends outside.
        symlink("escape", h.root.join("user1/chain")).unwrap();
        // A link to the root itself would expose every folder.
        symlink(&h.root, h.root.join("user1/whole-root")).unwrap();
        // A link to an absolute /etc.
        symlink("/etc", h.root.join("user1/etc")).unwrap();
        for bad in
            ["user1/escape", "user1/rel-escape", "user1/chain", "user1/whole-root", "user1/etc", "user1/escape/deeper"]
        {
            match VFolderMount::resolve(&h.root, bad, "x", ReadWrite) {
                Err(Error::Invalid { field, reason }) => {
                    assert_eq!(field, "vfolder.folder", "{bad}");
                    assert!(reason.contains("outside the host root"), "{bad}: {reason}");
                }
                Err(Error::NotFound { .. }) if bad.ends_with("deeper") => {}
                other => panic!("{bad}: expected a refusal, got {other:?}"),
            }
        }
        // A link that stays inside resolves to its target.
        symlink("data", h.root.join("user1/alias")).unwrap();
        let m = VFolderMount::resolve(&h.root, "user1/alias", "x", ReadWrite).unwrap();
        assert!(m.source.ends_with("/vfroot/user1/data"), "{}", m.source);
        // A host root that is itself a symlink is fine: comparisons use canonical paths.
        let link_root = h.outside.join("root-link");
        symlink(&h.root, &link_root).unwrap();
        VFolderMount::resolve(&link_root, "user1/data", "x", ReadWrite).unwrap();
    }

    #[test]
    fn refuses_bad_targets() {
        let h = host();
        for bad in ["", "/", ".", "..", "a/b", "x\0"] {
            assert_eq!(
                invalid_field(VFolderMount::resolve(&h.root, "user1/data", bad, ReadWrite)),
                "vfolder.name",
                "{bad:?}"
            );
        }
        for bad in [
            "/home/work",
            "/home",
            "/home/work/",
            "/home//work/x",
            "/home/work/../etc",
            "relative",
            "/etc",
            "/usr/lib",
            "/proc",
            "/opt/kernel/x",
            "/home/config",
            "/home/config/x",
            "/opt/backend.ai",
            "/dev/shm",
            "/tmp",
        ] {
            assert_eq!(
                invalid_field(VFolderMount::resolve_at(&h.root, "user1/data", bad, ReadWrite)),
                "vfolder.target",
                "{bad:?}"
            );
        }
        assert!(VFolderMount::resolve_at(&h.root, "user1/data", "/tmp/data", ReadWrite).is_ok());
        assert!(VFolderMount::resolve_at(&h.root, "user1/data", "/home/configs", ReadWrite).is_ok());
    }
}
