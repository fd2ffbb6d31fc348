//! The background checkpointer: a thread with its own connection that runs
//! a `PASSIVE` WAL checkpoint after writes, at most once per
//! `CHECKPOINT_INTERVAL`, so no commit has to copy the WAL back into the
//! database file inside its own transaction (the measurement is in the
//! parent module's docs). Used by [`super::Writer`] and by the event log's
//! group-commit writer.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use domain::ports::PortError;
use rusqlite::Connection;

use super::Profile;

/// At most one background checkpoint per interval; writes in between only
/// grow the WAL a little, and fewer, larger checkpoints mean fewer fsyncs.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Wakes the checkpointer after a commit. Dropping it stops the thread.
#[derive(Debug)]
pub struct Nudge(SyncSender<()>);

impl Nudge {
    /// Ask for a checkpoint; never blocks. Nudges sent while one is
    /// already due coalesce into it.
    pub fn after_commit(&self) {
        // Full means a checkpoint is already due: nothing to add.
        let _ = self.0.try_send(());
    }
}

/// Start the checkpointer thread on `conn` (see `open_checkpointer`).
pub fn spawn_checkpointer(conn: Connection, profile: &Profile) -> Result<Nudge, PortError> {
    // Capacity one: nudges sent while a checkpoint is pending coalesce.
    let (nudge, nudged) = sync_channel::<()>(1);
    let label = profile.label;
    std::thread::Builder::new()
        .name(format!("{}-checkpoint", profile.thread_prefix))
        .spawn(move || checkpoint_loop(&conn, &nudged, label))
        .map_err(|e| PortError::Unavailable(format!("cannot start the {label} checkpoint thread: {e}")))?;
    Ok(Nudge(nudge))
}

/// Checkpoint after writes, at most once per `CHECKPOINT_INTERVAL`, until
/// the writer stops. `PASSIVE` copies what it can without waiting for
/// readers or the writer; frames it cannot copy yet are taken next time.
fn checkpoint_loop(conn: &Connection, nudged: &Receiver<()>, label: &'static str) {
    while nudged.recv().is_ok() {
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            Ok((_, log, copied)) => tracing::trace!(db = label, log, copied, "checkpoint"),
            Err(e) => {
                tracing::warn!(db = label, error = %e, "checkpoint failed; the writer's auto-checkpoint remains")
            }
        }
        // A rate limit, not a wait for work: nudges arriving meanwhile
        // coalesce into one checkpoint after the pause.
        std::thread::sleep(CHECKPOINT_INTERVAL);
    }
}
