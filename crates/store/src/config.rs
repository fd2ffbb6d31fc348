//! `StoreConfig`: which `Store` adapter to run and its settings, and
//! `build()`, which opens (and migrates) it. The binary turns `store.url`
//! into one of these at configuration load, so choosing a backend is a
//! match here rather than string comparisons in the wiring (Vector's
//! `SinkConfig::build` is the model).

use std::path::PathBuf;
use std::sync::Arc;

use domain::ports::{PortError, Store};

use crate::{PgStore, PgStoreOptions, SqliteStore, SqliteStoreOptions};

/// A store to open.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded store: one SQLite file.
    Sqlite { path: PathBuf, options: SqliteStoreOptions },
    /// The scale-mode store: a PostgreSQL database (migrated on build).
    Postgres { url: String, options: PgStoreOptions },
}

impl StoreConfig {
    /// Open the store: a SQLite file is created and migrated (off the async
    /// threads); a PostgreSQL database is connected to and migrated.
    pub async fn build(&self) -> Result<Arc<dyn Store>, PortError> {
        match self {
            StoreConfig::Sqlite { path, options } => {
                let (path, options) = (path.clone(), options.clone());
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, options))
                    .await
                    .map_err(|e| PortError::Unavailable(format!("opening the SQLite store: {e}")))??;
                Ok(Arc::new(store))
            }
            StoreConfig::Postgres { url, options } => {
                let store = PgStore::connect(url, options.clone()).await?;
                store.migrate().await?;
                Ok(Arc::new(store))
            }
        }
    }
}
