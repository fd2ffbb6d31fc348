//! `Database`: one adapter's SQLite file as the adapters use it — its
//! writer thread, its reader pool and its path — with the read call and the
//! health probe every adapter needs. The store and the job queue each hold
//! one (the event log keeps its own group-commit writer and uses the parts).
//! Writes stay with the adapter, which decides its transaction shape (the
//! queue wraps every write in an `IMMEDIATE` transaction; the store's batch
//! writer manages its own).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use domain::ports::{PortError, PortResult};
use rusqlite::Connection;

use super::{Profile, Readers, Synchronous, Writer};

pub struct Database {
    writer: Writer,
    readers: Arc<Readers>,
    path: PathBuf,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("label", &self.readers.label())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Open the database at `path`, creating the file and its folder if
    /// needed, switching to WAL and applying pending migrations; starts the
    /// writer thread and the checkpointer and opens `read_connections`
    /// readers. Blocking: call it at startup (or from `spawn_blocking`).
    pub fn open(
        path: &Path,
        profile: &Profile,
        synchronous: Synchronous,
        read_connections: usize,
    ) -> Result<Self, PortError> {
        let (writer, readers) = super::open(path, profile, synchronous, read_connections)?;
        Ok(Self {
            writer,
            readers,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer thread, for the adapter's own write calls.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// `f` with a read connection on the blocking pool; `f`'s own error
    /// converts into `PortError` through the adapter's mapping.
    #[track_caller]
    pub fn read<T, E, F>(&self, f: F) -> impl Future<Output = PortResult<T>> + Send + use<T, E, F>
    where
        T: Send + 'static,
        E: Into<PortError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let run = self.readers.run(f);
        async move { run.await?.map_err(Into::into) }
    }

    /// Ready when the writer thread runs and a reader answers `SELECT 1`
    /// within `timeout`.
    pub async fn health(&self, timeout: Duration) -> PortResult<()> {
        let label = self.readers.label();
        if !self.writer.is_running() {
            return Err(PortError::Unavailable(format!("the {label} writer has stopped")));
        }
        let probe = self
            .readers
            .run(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)));
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(Ok(1))) => Ok(()),
            Ok(Ok(Ok(other))) => Err(PortError::Invalid(format!("SELECT 1 returned {other}"))),
            Ok(Ok(Err(e))) => Err(crate::sqlite_error(e)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PortError::Unavailable(format!(
                "no answer from the {label} within {timeout:?}"
            ))),
        }
    }
}
