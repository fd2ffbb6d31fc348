//! `QueueConfig`: which `JobQueue` adapter to run and its settings, and
//! `build()`, which opens (and migrates) it. The binary turns `jobs.url`
//! (or the store's PostgreSQL) into one of these at configuration load, so
//! choosing a backend is a match here rather than in the wiring.

use std::path::PathBuf;
use std::sync::Arc;

use domain::jobs::JobQueue;

use crate::{PgQueue, PgQueueOptions, QueueError, SqliteQueue, SqliteQueueOptions};

/// A job queue to open.
#[derive(Debug, Clone)]
pub enum QueueConfig {
    /// The embedded queue: a SQLite file of its own.
    Sqlite { path: PathBuf, options: SqliteQueueOptions },
    /// The scale-mode queue: PostgreSQL (migrated on build).
    Postgres { url: String, options: PgQueueOptions },
}

impl QueueConfig {
    /// Open the queue: a SQLite file is created and migrated (off the async
    /// threads); a PostgreSQL database is connected to and migrated.
    pub async fn build(&self) -> Result<Arc<dyn JobQueue>, QueueError> {
        match self {
            QueueConfig::Sqlite { path, options } => {
                let (path, options) = (path.clone(), options.clone());
                let queue = tokio::task::spawn_blocking(move || SqliteQueue::open(&path, options))
                    .await
                    .map_err(|e| QueueError::Unavailable(format!("opening the SQLite job queue: {e}")))??;
                Ok(Arc::new(queue))
            }
            QueueConfig::Postgres { url, options } => {
                let queue = PgQueue::connect(url, options.clone()).await?;
                queue.migrate().await?;
                Ok(Arc::new(queue))
            }
        }
    }
}
