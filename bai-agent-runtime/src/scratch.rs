//! Per-kernel scratch storage: `<scratch-root>/<kernel_id>/` with `config/` (mounted read-only
//! at `/home/config`) and `work/` (mounted read-write at `/home/work`), with a per-kernel quota
//! that the kernel enforces.
//!
//! This module owns creating, finding and removing those directories and the filesystems that
//! enforce their quota. It never touches anything outside the scratch root: removal unmounts
//! only mount points below the kernel's directory and never follows a symbolic link.
//!
//! # How the quota is enforced
//!
//! `work/` gets its own filesystem whose size *is* the quota, so writing past it fails with
//! `ENOSPC` inside the container and cannot fill the host. [`ScratchMode`] picks which:
//!
//! - [`ScratchMode::LoopFile`] (recommended for nodes with disks): a sparse file
//!   `<kid>/scratch.img` of the quota's size, formatted ext4 (no journal, no reserved blocks),
//!   loop-mounted on `work/` (`mount -o loop`, which frees the loop device at unmount). Scratch
//!   lives on disk like the original's default `hostdir` scratch and is not charged to the
//!   container's memory. Costs: it needs `mkfs.ext4`, `mount` and loop devices (often missing in
//!   nested containers), ext4 metadata takes a little of the quota, and the image is sparse, so
//!   the host disk must have room for what kernels actually write.
//! - [`ScratchMode::Tmpfs`]: a tmpfs mounted with `size=<quota>`. Nothing but the `mount(2)`
//!   syscall, instant to create and to free. But it is RAM: pages written by the container are
//!   charged to its memory cgroup, so scratch use counts against the kernel's `mem` slot (a
//!   kernel that writes more than its free memory is OOM-killed rather than getting `ENOSPC`),
//!   and the contents do not survive a reboot. Right for small scratch or diskless nodes.
//! - [`ScratchMode::Unlimited`]: plain directories, no quota — for unprivileged development.
//!   Each creation logs a warning that the quota is not enforced.
//!
//! Both enforcing modes mount, which needs root (`CAP_SYS_ADMIN`), as the agent has on real
//! nodes and on CI. XFS/ext4 project quotas were not chosen: they need the scratch filesystem
//! to be mounted with `prjquota`, which an agent cannot assume. Mounts are made in the agent's
//! mount namespace; the container engine must share it (as `dockerd` on the host does) to see
//! them.
//!
//! Operations on one kernel's scratch must not run concurrently (the agent's lifecycle queue
//! serialises them); operations on different kernels may.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use bai_core::KernelId;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::BindMount;

/// The smallest quota an enforcing mode accepts (ext4 needs room for its metadata).
pub const MIN_QUOTA_BYTES: u64 = 1 << 20;

/// The largest quota an enforcing mode accepts (1 EiB). Far beyond any disk, and it keeps the
/// kernel's page rounding from overflowing: tmpfs reads `size=18446744073709551615` as 0,
/// which means *unlimited*.
pub const MAX_QUOTA_BYTES: u64 = 1 << 60;

/// The image file of [`ScratchMode::LoopFile`], inside the kernel's directory.
const IMAGE_FILE: &str = "scratch.img";

/// How `work/` is given its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScratchMode {
    /// A loop-mounted ext4 image of the quota's size (disk-backed; needs root, `mkfs.ext4`,
    /// `mount` and loop devices).
    LoopFile,
    /// A tmpfs of the quota's size (RAM-backed, charged to the container's memory; needs root).
    Tmpfs,
    /// A plain directory: the quota is **not** enforced (development without root).
    Unlimited,
}

impl ScratchMode {
    /// Whether this mode enforces the quota.
    pub fn enforces_quota(self) -> bool {
        !matches!(self, Self::Unlimited)
    }
}

/// The paths of one kernel's scratch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scratch {
    /// The kernel.
    pub kernel_id: KernelId,
    /// `<root>/<kernel_id>`.
    pub dir: PathBuf,
    /// `<root>/<kernel_id>/config`, mounted read-only at `/home/config`.
    pub config: PathBuf,
    /// `<root>/<kernel_id>/work`, mounted read-write at `/home/work`.
    pub work: PathBuf,
}

impl Scratch {
    /// `work/` → `/home/work`, read-write.
    pub fn work_mount(&self) -> BindMount {
        BindMount { source: self.work.to_string_lossy().into_owned(), target: "/home/work".into(), read_only: false }
    }

    /// `config/` → `/home/config`, read-only.
    pub fn config_mount(&self) -> BindMount {
        BindMount { source: self.config.to_string_lossy().into_owned(), target: "/home/config".into(), read_only: true }
    }
}

/// How full a kernel's scratch filesystem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScratchUsage {
    /// Bytes in use.
    pub used_bytes: u64,
    /// The filesystem's size (the quota, less filesystem metadata for ext4).
    pub size_bytes: u64,
}

/// Creates and removes per-kernel scratch under one root.
#[derive(Debug, Clone)]
pub struct ScratchManager {
    root: PathBuf,
    mode: ScratchMode,
    mkfs: Option<PathBuf>,
    mount: Option<PathBuf>,
}

impl ScratchManager {
    /// A manager for `root` (created if missing; it must be a UTF-8 path). For
    /// [`ScratchMode::LoopFile`], `mkfs.ext4` and `mount` must be found on `PATH` or in
    /// `/sbin`, `/usr/sbin`, `/bin`, `/usr/bin`.
    pub fn new(root: impl AsRef<Path>, mode: ScratchMode) -> Result<Self> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(|e| Error::io("create scratch root", root, e))?;
        let root = fs::canonicalize(root).map_err(|e| Error::io("resolve scratch root", root, e))?;
        if root.to_str().is_none() {
            return Err(Error::invalid("scratch root", format!("{} is not valid UTF-8", root.display())));
        }
        let (mkfs, mount) = match mode {
            ScratchMode::LoopFile => (Some(find_program("mkfs.ext4")?), Some(find_program("mount")?)),
            _ => (None, None),
        };
        Ok(Self { root, mode, mkfs, mount })
    }

    /// The scratch root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The mode.
    pub fn mode(&self) -> ScratchMode {
        self.mode
    }

    /// Where a kernel's scratch is (whether or not it exists), e.g. to reuse it on restart.
    pub fn paths(&self, kernel_id: KernelId) -> Scratch {
        let dir = self.root.join(kernel_id.to_string());
        Scratch { kernel_id, config: dir.join("config"), work: dir.join("work"), dir }
    }

    /// Creates a kernel's scratch with `quota_bytes` for `work/`. Fails if it already exists;
    /// on failure, whatever was created is removed again.
    ///
    /// Cancel safety: the work runs on tokio's blocking pool and completes even if this future
    /// is dropped; [`remove`](Self::remove) cleans up after it either way.
    pub async fn create(&self, kernel_id: KernelId, quota_bytes: u64) -> Result<Scratch> {
        let this = self.clone();
        blocking("create scratch", move || this.create_blocking(kernel_id, quota_bytes)).await
    }

    /// [`create`](Self::create), blocking the calling thread.
    pub fn create_blocking(&self, kernel_id: KernelId, quota_bytes: u64) -> Result<Scratch> {
        if self.mode.enforces_quota() && !(MIN_QUOTA_BYTES..=MAX_QUOTA_BYTES).contains(&quota_bytes) {
            return Err(Error::invalid(
                "scratch quota",
                format!("{quota_bytes} bytes: expected at least {MIN_QUOTA_BYTES} bytes (1 MiB) and at most {MAX_QUOTA_BYTES} (1 EiB)"),
            ));
        }
        let scratch = self.paths(kernel_id);
        match DirBuilder::new().mode(0o755).create(&scratch.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::invalid(
                    "kernel_id",
                    format!(
                        "scratch for {kernel_id} already exists at {}; remove it or reuse it",
                        scratch.dir.display()
                    ),
                ))
            }
            Err(e) => return Err(Error::io("create scratch directory", &scratch.dir, e)),
        }
        match self.populate(&scratch, quota_bytes).and_then(|()| self.check_quota_took(&scratch)) {
            Ok(()) => Ok(scratch),
            Err(e) => {
                if let Err(cleanup) = self.remove_blocking(kernel_id) {
                    tracing::warn!(%kernel_id, error = %cleanup, "cannot clean up a half-created scratch");
                }
                Err(e)
            }
        }
    }

    fn populate(&self, scratch: &Scratch, quota_bytes: u64) -> Result<()> {
        for dir in [&scratch.config, &scratch.work] {
            DirBuilder::new().mode(0o755).create(dir).map_err(|e| Error::io("create scratch directory", dir, e))?;
        }
        match self.mode {
            ScratchMode::Tmpfs => {
                let options = format!("size={quota_bytes},mode=0755");
                nix::mount::mount(
                    Some("bai-scratch"),
                    &scratch.work,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(options.as_str()),
                )
                .map_err(|errno| mount_error("mount tmpfs on", &scratch.work, errno))
            }
            ScratchMode::LoopFile => {
                let image = scratch.dir.join(IMAGE_FILE);
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&image)
                    .map_err(|e| Error::io("create scratch image", &image, e))?;
                file.set_len(quota_bytes).map_err(|e| Error::io("size scratch image", &image, e))?;
                drop(file);
                let mkfs = self.mkfs.as_deref().unwrap_or(Path::new("mkfs.ext4"));
                // No journal (scratch is thrown away, never recovered), no blocks reserved for root.
                let format = ["-q", "-F", "-m", "0", "-O", "^has_journal", "-L", "bai-scratch"];
                run(Command::new(mkfs).args(format).arg(&image), "format scratch image", &image)?;
                let mount = self.mount.as_deref().unwrap_or(Path::new("mount"));
                run(
                    Command::new(mount).args(["-t", "ext4", "-o", "loop,nosuid,nodev"]).arg(&image).arg(&scratch.work),
                    "loop-mount scratch image on",
                    &scratch.work,
                )?;
                // Keep /home/work tidy; e2fsck is never run on scratch.
                let _ = fs::remove_dir(scratch.work.join("lost+found"));
                Ok(())
            }
            ScratchMode::Unlimited => {
                tracing::warn!(
                    kernel_id = %scratch.kernel_id,
                    quota_bytes,
                    "scratch quota NOT enforced (ScratchMode::Unlimited): work/ is a plain directory"
                );
                Ok(())
            }
        }
    }

    /// Checks that the mounted filesystem has a size: tmpfs silently treats a size it rounds to
    /// zero as unlimited.
    fn check_quota_took(&self, scratch: &Scratch) -> Result<()> {
        if !self.mode.enforces_quota() {
            return Ok(());
        }
        match self.usage(scratch.kernel_id)? {
            Some(usage) if usage.size_bytes > 0 => Ok(()),
            other => Err(Error::invalid(
                "scratch quota",
                format!(
                    "{} did not get a size-limited filesystem ({other:?}); refusing an unenforced quota",
                    scratch.work.display()
                ),
            )),
        }
    }

    /// Unmounts and deletes a kernel's scratch. Removing a missing scratch is not an error.
    /// Only mount points below `<root>/<kernel_id>` are unmounted, and symbolic links are
    /// removed, never followed. A mount still busy (a container still running) is detached
    /// lazily.
    ///
    /// Cancel safety: as for [`create`](Self::create); calling it again is harmless.
    pub async fn remove(&self, kernel_id: KernelId) -> Result<()> {
        let this = self.clone();
        blocking("remove scratch", move || this.remove_blocking(kernel_id)).await
    }

    /// [`remove`](Self::remove), blocking the calling thread.
    pub fn remove_blocking(&self, kernel_id: KernelId) -> Result<()> {
        let dir = self.paths(kernel_id).dir;
        let meta = match fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("inspect scratch", &dir, e)),
        };
        if !meta.is_dir() {
            // A symlink (or a file) planted in place of the directory: remove it, not its target.
            return fs::remove_file(&dir).map_err(|e| Error::io("remove scratch", &dir, e));
        }
        // Deepest first, so stacked or nested mounts come off in order.
        let mut points = mount_points_under(&dir)?;
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in points {
            unmount(&point)?;
        }
        // std's remove_dir_all never follows symlinks (it unlinks them) and is race-safe.
        fs::remove_dir_all(&dir)
            .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|e| Error::io("remove scratch", &dir, e))
    }

    /// Hands `config/` and `work/` (the directories themselves, not their contents) to the
    /// kernel's user, so a runner that does not `chown /home/work` itself can write there.
    /// Symbolic links are not followed.
    pub fn set_owner(&self, kernel_id: KernelId, uid: u32, gid: u32) -> Result<()> {
        let scratch = self.paths(kernel_id);
        for dir in [&scratch.config, &scratch.work] {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(|e| Error::io("change owner of", dir, e))?;
        }
        Ok(())
    }

    /// Whether a kernel's scratch directory exists.
    pub fn exists(&self, kernel_id: KernelId) -> bool {
        fs::symlink_metadata(self.paths(kernel_id).dir).is_ok_and(|m| m.is_dir())
    }

    /// Whether a kernel's `work/` is a mount point (false for [`ScratchMode::Unlimited`], and
    /// after a reboot for the enforcing modes).
    pub fn is_mounted(&self, kernel_id: KernelId) -> Result<bool> {
        let work = self.paths(kernel_id).work;
        Ok(mount_points_under(&work)?.contains(&work))
    }

    /// The kernels that have a scratch directory, sorted (for recovery at start-up). Entries
    /// whose name is not a kernel id are ignored.
    pub fn list(&self) -> Result<Vec<KernelId>> {
        let entries = fs::read_dir(&self.root).map_err(|e| Error::io("list scratch root", &self.root, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list scratch root", &self.root, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(id) = name.parse::<KernelId>() else { continue };
            // Only the canonical spelling we create, and only real directories.
            if id.to_string() == name && entry.file_type().is_ok_and(|t| t.is_dir()) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// How full a kernel's scratch filesystem is; `None` when `work/` is not a mount point
    /// ([`ScratchMode::Unlimited`]). A `statvfs` call: cheap enough for every stats sweep,
    /// unlike walking the tree.
    pub fn usage(&self, kernel_id: KernelId) -> Result<Option<ScratchUsage>> {
        if !self.is_mounted(kernel_id)? {
            return Ok(None);
        }
        let work = self.paths(kernel_id).work;
        let st = nix::sys::statvfs::statvfs(&work).map_err(|e| Error::io("statvfs", &work, e.into()))?;
        let frsize = st.fragment_size();
        let blocks = st.blocks();
        Ok(Some(ScratchUsage {
            used_bytes: frsize.saturating_mul(blocks.saturating_sub(st.blocks_free())),
            size_bytes: frsize.saturating_mul(blocks),
        }))
    }
}

async fn blocking<T: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io(operation, "", io::Error::other(format!("blocking task failed: {e}"))))?
}

fn mount_error(operation: &'static str, path: &Path, errno: Errno) -> Error {
    if errno == Errno::EPERM {
        return Error::invalid(
            "scratch mode",
            format!(
                "{operation} {}: not permitted; enforcing the scratch quota needs root (CAP_SYS_ADMIN), \
                 use ScratchMode::Unlimited for unprivileged development",
                path.display()
            ),
        );
    }
    Error::io(operation, path, errno.into())
}

/// Runs a helper program, turning a failure into an error carrying its stderr.
fn run(command: &mut Command, operation: &'static str, path: &Path) -> Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .map_err(|e| Error::io(operation, path, io::Error::new(e.kind(), format!("{program}: {e}"))))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(Error::io(
        operation,
        path,
        io::Error::other(format!("{program} failed ({}): {}", output.status, stderr.trim())),
    ))
}

/// Finds a program on `PATH` or in the usual system directories.
fn find_program(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/sbin", "/usr/sbin", "/bin", "/usr/bin"].map(OsString::from);
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Error::invalid(
                "scratch mode",
                format!("loop-file scratch needs {name}, which is not on PATH (install e2fsprogs / util-linux)"),
            )
        })
}

/// Mount points at or below `dir`, from `/proc/self/mountinfo`.
fn mount_points_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(dir))
        .collect())
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash, …).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = bytes[i + 1..i + 4].iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts one mount point without following symlinks; a busy mount is detached lazily.
fn unmount(point: &Path) -> Result<()> {
    match nix::mount::umount2(point, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => {
            tracing::warn!(path = %point.display(), "scratch mount busy (a container still uses it?); detaching lazily");
            nix::mount::umount2(point, MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH)
                .map_err(|errno| mount_error("unmount scratch", point, errno))
        }
        Err(errno) => Err(mount_error("unmount scratch", point, errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kid(n: u32) -> KernelId {
        format!("00000000-0000-4000-8000-{n:012x}").parse().unwrap()
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mountinfo(r"/a\040b/c\134d"), r"/a b/c\d");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/odd\04"), r"/odd\04");
    }

    #[tokio::test]
    async fn unlimited_mode_lifecycle() {
        let tmp = tempfile::tempdir().unwrap();
        let m = ScratchManager::new(tmp.path().join("scratch"), ScratchMode::Unlimited).unwrap();
        let (a, b) = (kid(1), kid(2));
        assert!(!m.exists(a));
        let s = m.create(a, 0).await.unwrap();
        assert!(s.config.is_dir() && s.work.is_dir());
        assert_eq!(s.work_mount().target, "/home/work");
        assert!(s.config_mount().read_only && !s.work_mount().read_only);
        assert!(!m.is_mounted(a).unwrap());
        assert_eq!(m.usage(a).unwrap(), None);
        let again = m.create(a, 0).await.unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        m.create(b, 0).await.unwrap();
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        m.set_owner(b, uid, gid).unwrap();
        assert!(m.set_owner(kid(9), uid, gid).is_err(), "no such scratch");
        // Stray entries are not kernels.
        fs::create_dir(m.root().join("not-a-kernel")).unwrap();
        fs::write(m.root().join(kid(3).to_string()), "a file").unwrap();
        fs::create_dir(m.root().join(kid(0xabc).to_string().to_uppercase())).unwrap();
        assert_eq!(m.list().unwrap(), vec![a, b]);
        m.remove(a).await.unwrap();
        m.remove(a).await.unwrap();
        assert!(!m.exists(a));
        assert_eq!(m.list().unwrap(), vec![b]);
    }

    #[test]
    fn removal_never_follows_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("precious"), "keep me").unwrap();
        let m = ScratchManager::new(tmp.path().join("scratch"), ScratchMode::Unlimited).unwrap();

        // A link inside work/ pointing out of the root.
        let s = m.create_blocking(kid(1), 0).unwrap();
        std::os::unix::fs::symlink(&outside, s.work.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("precious"), s.config.join("escape-file")).unwrap();
        m.remove_blocking(kid(1)).unwrap();
        assert!(!s.dir.exists());

        // The kernel directory itself replaced by a link out of the root.
        let planted = m.paths(kid(2)).dir;
        std::os::unix::fs::symlink(&outside, &planted).unwrap();
        assert!(!m.exists(kid(2)));
        m.remove_blocking(kid(2)).unwrap();
        assert!(fs::symlink_metadata(&planted).is_err());

        assert_eq!(fs::read_to_string(outside.join("precious")).unwrap(), "keep me");
    }

    #[test]
    fn small_quotas_are_refused_by_enforcing_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let m = ScratchManager { root: tmp.path().to_path_buf(), mode: ScratchMode::Tmpfs, mkfs: None, mount: None };
        let err = m.create_blocking(kid(1), 4096).unwrap_err();
        assert!(err.to_string().contains("at least 1048576"), "{err}");
        let err = m.create_blocking(kid(1), u64::MAX).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
        assert!(!m.exists(kid(1)));
    }

    #[test]
    fn failed_creation_is_rolled_back() {
        let tmp = tempfile::tempdir().unwrap();
        let fail = PathBuf::from("/bin/false");
        let m = ScratchManager {
            root: tmp.path().to_path_buf(),
            mode: ScratchMode::LoopFile,
            mkfs: Some(fail.clone()),
            mount: Some(fail),
        };
        let err = m.create_blocking(kid(1), MIN_QUOTA_BYTES).unwrap_err();
        assert!(
            err.to_string().contains("format scratch image") && err.to_string().contains("/bin/false failed"),
            "{err}"
        );
        assert!(!m.exists(kid(1)));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
