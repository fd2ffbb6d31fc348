//! `Backups`: take a backup of every database and keep the newest few, for
//! the nightly `db.backup` job. A port, so the job catalog (which knows
//! only `domain`) can run it; the binary implements it over
//! `dbkit::backup` with the configured paths, the same code as
//! `rushhour backup`.

use async_trait::async_trait;

use super::PortResult;

#[async_trait]
pub trait Backups: Send + Sync {
    /// Take one backup, then delete the finished backups beyond the
    /// configured number to keep. Answers where it went.
    async fn backup_and_prune(&self) -> PortResult<BackupTaken>;
}

/// What one scheduled backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupTaken {
    /// The new backup's folder.
    pub dir: String,
    /// Files copied into it.
    pub files: usize,
    /// Older backups deleted by the retention.
    pub pruned: usize,
}
