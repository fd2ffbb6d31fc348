//! The single writer thread: owns the only write connection of a database
//! and runs the closures sent to it, one at a time, in arrival order (the
//! reasons are in the parent module's docs).
//!
//! Performance: this is the hot path of order intake and drain. Each call
//! costs one boxed closure and one oneshot channel, as it did when each
//! adapter had its own copy; `run` is generic, so the closure is
//! monomorphized per call site and nothing else is allocated per statement.
//! Names and labels are formatted only when a thread starts or an error is
//! built.

use std::panic::AssertUnwindSafe;

use domain::ports::PortError;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::Profile;
use super::checkpoint::spawn_checkpointer;

/// Write requests queued for the writer thread before callers wait. A
/// batch is one request, so this is plenty; it bounds memory, not
/// throughput.
const WRITE_QUEUE: usize = 256;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the writer thread. Dropping it closes the channel; the thread
/// finishes the queued jobs, closes the connection and exits, and with it
/// the checkpointer.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    label: &'static str,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("label", &self.label)
            .field("running", &self.is_running())
            .finish()
    }
}

impl Writer {
    /// Start the writer thread on `conn` and the checkpointer thread on
    /// `checkpoint`.
    pub fn spawn(mut conn: Connection, checkpoint: Connection, profile: &Profile) -> Result<Self, PortError> {
        let label = profile.label;
        let nudge = spawn_checkpointer(checkpoint, profile)?;
        let (jobs, mut rx) = mpsc::channel::<Job>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name(format!("{}-writer", profile.thread_prefix))
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    // A panicking job must not take every later write down
                    // with it. Its open transaction, if any, was rolled back
                    // by `Transaction`'s drop during unwinding, and its
                    // caller sees the reply channel close (`Unavailable`).
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
                        tracing::error!(db = label, "a write panicked; its transaction was rolled back");
                    }
                    nudge.after_commit();
                }
                // Dropping `nudge` here stops the checkpointer.
            })
            .map_err(|e| PortError::Unavailable(format!("cannot start the {label} writer thread: {e}")))?;
        Ok(Self { jobs, label })
    }

    /// Run `f` on the writer thread and wait for its result. If the caller
    /// is cancelled after the job was queued the job still runs to the end,
    /// so every write an adapter makes must be safe to have happened
    /// unobserved (the store's batches are idempotent; a queue claim made
    /// for a caller that went away is recovered when its lease expires).
    ///
    /// The caller's query scope and call site go with the job
    /// (`observe::carry`), so its statements count for the caller.
    #[track_caller]
    pub fn run<T, F>(&self, f: F) -> impl Future<Output = Result<T, PortError>> + Send + '_
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        let carry = crate::observe::carry();
        async move {
            let (tx, rx) = oneshot::channel();
            let job: Job = Box::new(move |conn| {
                let _ = tx.send(carry.run(|| f(conn)));
            });
            let label = self.label;
            self.jobs
                .send(job)
                .await
                .map_err(|_| PortError::Unavailable(format!("the {label} writer has stopped")))?;
            rx.await
                .map_err(|_| PortError::Unavailable(format!("the {label} write failed unexpectedly")))
        }
    }

    /// Whether the writer thread still takes work.
    pub(crate) fn is_running(&self) -> bool {
        !self.jobs.is_closed()
    }
}
