//! Scratch quotas are really enforced: writing past the quota fails with ENOSPC, files outside
//! are untouched, and removal unmounts and deletes. Mounting needs root; as another user the
//! tests skip (saying why) unless `BAI_REQUIRE_SERVICES=1`, which turns the skip into a failure.

use std::fs;
use std::io::Write;
use std::path::Path;

use bai_agent_runtime::bai_core::KernelId;
use bai_agent_runtime::scratch::{ScratchManager, ScratchMode};

fn required() -> bool {
    std::env::var("BAI_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Whether the test may run; panics instead of skipping when services are required.
fn can_mount() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        !required(),
        "scratch quota tests must run as root (mount(2) needs CAP_SYS_ADMIN) when BAI_REQUIRE_SERVICES=1"
    );
    eprintln!("skipping: scratch quota tests need root to mount (uid {})", nix::unistd::Uid::effective());
    false
}

fn mounted(path: &Path) -> bool {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines().any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

/// Writes 64 KiB chunks until the write fails or `limit` bytes are written; returns how much
/// was written and the error.
fn fill(path: &Path, limit: u64) -> (u64, Option<std::io::Error>) {
    let mut file = fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    let mut written = 0u64;
    while written < limit {
        if let Err(e) = file.write_all(&chunk) {
            return (written, Some(e));
        }
        written += chunk.len() as u64;
    }
    (written, file.sync_all().err())
}

async fn quota_is_enforced(mode: ScratchMode, quota: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let manager = ScratchManager::new(tmp.path().join("scratch"), mode).unwrap();
    let outside = tmp.path().join("outside.txt");
    fs::write(&outside, "outside").unwrap();
    let kid = KernelId::new_random();
    let neighbour = manager.create(KernelId::new_random(), quota).await.unwrap();
    fs::write(neighbour.work.join("n.txt"), "neighbour").unwrap();

    let scratch = manager.create(kid, quota).await.unwrap();
    assert!(mounted(&scratch.work), "{mode:?}: work/ is not a mount point");
    assert!(manager.is_mounted(kid).unwrap());
    assert_eq!(manager.list().unwrap().len(), 2);
    fs::write(scratch.config.join("environ.txt"), "A=1\n").unwrap();
    manager.set_owner(kid, 1000, 1001).unwrap();
    let meta = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&scratch.work).unwrap());
    assert_eq!(meta, 1000, "{mode:?}: the mounted work/ root changes owner");
    let usage = manager.usage(kid).unwrap().expect("mounted scratch has a usage");
    assert!(usage.size_bytes <= quota && usage.size_bytes > quota / 2, "{usage:?} for quota {quota}");

    let (written, err) = fill(&scratch.work.join("big"), 2 * quota);
    let err =
        err.unwrap_or_else(|| panic!("{mode:?}: wrote {written} bytes into a {quota}-byte scratch without error"));
    assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{mode:?}: {err}");
    assert!(written <= quota, "{mode:?}: {written} bytes written past a {quota}-byte quota");
    // The full scratch still answers, and the rest of the host is untouched.
    assert!(fs::write(scratch.work.join("more"), vec![0u8; 1 << 20])
        .is_err_and(|e| e.raw_os_error() == Some(nix::libc::ENOSPC)));
    assert_eq!(fs::read_to_string(&outside).unwrap(), "outside");
    assert_eq!(fs::read_to_string(scratch.config.join("environ.txt")).unwrap(), "A=1\n");
    assert_eq!(fs::read_to_string(neighbour.work.join("n.txt")).unwrap(), "neighbour");
    let used = manager.usage(kid).unwrap().unwrap();
    assert!(used.used_bytes >= written.min(used.size_bytes) / 2, "{used:?}");

    // A symlink out of the root inside the full scratch must survive removal's walk.
    std::os::unix::fs::symlink(tmp.path(), scratch.config.join("escape")).unwrap();
    manager.remove(kid).await.unwrap();
    assert!(!mounted(&scratch.work), "{mode:?}: still mounted after remove");
    assert!(!scratch.dir.exists());
    assert!(!manager.exists(kid));
    manager.remove(kid).await.unwrap();
    assert_eq!(fs::read_to_string(&outside).unwrap(), "outside");
    assert_eq!(fs::read_to_string(neighbour.work.join("n.txt")).unwrap(), "neighbour");
    assert_eq!(manager.list().unwrap(), vec![neighbour.kernel_id]);

    manager.remove(neighbour.kernel_id).await.unwrap();
    assert!(!mounted(&neighbour.work));
    assert!(manager.list().unwrap().is_empty());
}

#[tokio::test]
async fn tmpfs_quota_is_enforced() {
    if !can_mount() {
        return;
    }
    quota_is_enforced(ScratchMode::Tmpfs, 2 << 20).await;
}

#[tokio::test]
async fn loop_file_quota_is_enforced() {
    if !can_mount() {
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        assert!(!required(), "loop-file scratch needs /dev/loop-control when BAI_REQUIRE_SERVICES=1");
        eprintln!("skipping: no loop devices (/dev/loop-control) here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    if let Err(e) = ScratchManager::new(tmp.path(), ScratchMode::LoopFile) {
        assert!(!required(), "loop-file scratch unavailable with BAI_REQUIRE_SERVICES=1: {e}");
        eprintln!("skipping: {e}");
        return;
    }
    quota_is_enforced(ScratchMode::LoopFile, 8 << 20).await;
}

#[tokio::test]
async fn busy_mounts_are_detached_and_removed() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let manager = ScratchManager::new(tmp.path(), ScratchMode::Tmpfs).unwrap();
    let kid = KernelId::new_random();
    let scratch = manager.create(kid, 1 << 20).await.unwrap();
    // An open file keeps the mount busy, as a running container would.
    let mut held = fs::File::create(scratch.work.join("held")).unwrap();
    held.write_all(b"x").unwrap();
    manager.remove(kid).await.unwrap();
    assert!(!mounted(&scratch.work));
    assert!(!scratch.dir.exists());
    // The detached filesystem lives until the last user lets go.
    held.write_all(b"y").unwrap();
    drop(held);
}

#[tokio::test]
async fn failed_creation_leaves_nothing_behind() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let manager = ScratchManager::new(tmp.path(), ScratchMode::Tmpfs).unwrap();
    let kid = KernelId::new_random();
    // Sizes the kernel would round to "unlimited" are refused.
    let err = manager.create(kid, u64::MAX).await.unwrap_err();
    assert!(matches!(err, bai_agent_runtime::Error::Invalid { .. }), "{err}");
    assert!(!manager.exists(kid));
    let err = manager.create(kid, 10).await.unwrap_err();
    assert!(matches!(err, bai_agent_runtime::Error::Invalid { .. }), "{err}");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing created for a refused quota");
}
