//! The exclusive lock a running sandbox holds on its state file, shared by every emulator so
//! that two sandboxes — of the same kind or not — never both write one file.
//!
//! The lock is an OS file lock (`flock` via [`std::fs::File::try_lock`]) on a sidecar file
//! `.NAME.lock` next to the real file (symlinks resolved), not on the state file itself, because
//! every write replaces the state file by rename. `flock` locks belong to the open file
//! description, so they conflict across processes and between two opens in one process alike,
//! and the OS drops them when the process dies. The lock file holds the owner's pid and is left
//! in place when the sandbox stops.
//!
//! Only file-system calls and a polling wait here; no knowledge of any state format.

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another holder kept it for the whole wait; its pid as written in the lock file, if
    /// that could be read.
    Locked { pid: Option<u32>, waited: Duration },
    /// The lock file could not be opened, locked or written.
    Io {
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// The real file behind `path`: symlinks resolved (`path` itself when it does not exist yet).
pub fn resolve(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A hidden file next to `target` named after it: `dir/.NAME.SUFFIX`.
pub fn sidecar(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    parent_dir(target).join(format!(".{name}.{suffix}"))
}

/// The lock file of the state file behind `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    sidecar(&resolve(path), "lock")
}

/// Take the exclusive lock on the state file behind `path`, waiting up to `wait` (real time,
/// polling every 20 ms). The returned file holds the lock until it is dropped.
pub async fn lock_state(path: &Path, wait: Duration) -> Result<std::fs::File, LockError> {
    let lock = lock_path(path);
    let fail = |source: std::io::Error| LockError::Io {
        lock: lock.clone(),
        source,
    };
    // The lock file is truncated and rewritten: never through a symlink planted at its name.
    if std::fs::symlink_metadata(&lock).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(fail(std::io::Error::other(
            "the lock file is a symbolic link; refusing to follow it",
        )));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(fail)?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                let left = wait.saturating_sub(started.elapsed());
                tokio::time::sleep(left.min(Duration::from_millis(20))).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Locked {
                    pid: text.trim().parse().ok(),
                    waited: wait,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(fail(e)),
        }
    }
    // Ours now: record who holds it.
    let record = |f: &mut std::fs::File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())?;
        f.flush()
    };
    record(&mut file).map_err(fail)?;
    Ok(file)
}

/// `10 s`, `200 ms`.
pub fn show_wait(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names() {
        assert_eq!(
            sidecar(Path::new("/x/portal.yaml"), "lock"),
            PathBuf::from("/x/.portal.yaml.lock")
        );
        assert_eq!(
            sidecar(Path::new("portal.yaml"), "tmp"),
            PathBuf::from("./.portal.yaml.tmp")
        );
        assert_eq!(show_wait(Duration::from_secs(10)), "10 s");
        assert_eq!(show_wait(Duration::from_millis(250)), "250 ms");
    }

    #[tokio::test]
    async fn second_lock_waits_then_fails_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, "x").unwrap();
        let held = lock_state(&path, Duration::ZERO).await.unwrap();
        match lock_state(&path, Duration::from_millis(30)).await {
            Err(LockError::Locked { pid, waited }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(waited, Duration::from_millis(30));
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        lock_state(&path, Duration::ZERO).await.unwrap();
    }
}
