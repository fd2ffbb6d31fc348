//! The data directory's instance lock: an embedded server holds an
//! exclusive lock on `<data_dir>/rushhour.lock` for as long as it runs, so
//! `rushhour restore` (and a second server) can tell, reliably, that the
//! files are in use.
//!
//! Why a kernel file lock (`File::try_lock`, `flock` on Linux) and not a
//! pid file: the kernel drops the lock when the process dies, even by
//! `kill -9`, so a crash never leaves a stale lock to clean up by hand, and
//! there is no pid that a new process could have been given since.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "rushhour.lock";

/// Held for the life of a server (or of a restore); dropping it releases
/// the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Take the lock on `data_dir` (created if missing), or fail naming
    /// `what` holds it when another process does.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => bail!(
                "a rushhour instance is running on {} (it holds {}): stop it first",
                data_dir.display(),
                path.display()
            ),
            Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("lock {}", path.display())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
