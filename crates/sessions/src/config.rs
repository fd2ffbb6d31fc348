//! `SessionsConfig`: where sessions and login attempts live, and `build()`,
//! which opens that backend once for both ports. The binary turns its
//! configuration into one of these at load, so choosing a backend is a
//! match here rather than in the wiring.

use std::path::PathBuf;
use std::sync::Arc;

use domain::ports::{LoginAttempts, PortError, SessionStore};

use crate::{RedisSessions, RedisSessionsOptions, SqliteSessions};

/// The session backend to open.
#[derive(Debug, Clone)]
pub enum SessionsConfig {
    /// The embedded backend: a SQLite file of its own
    /// (`<data_dir>/sessions.db`).
    Sqlite { path: PathBuf },
    /// The scale backend: Redis, shared by every instance.
    Redis { url: String, key_prefix: String },
}

/// The two ports a `SessionsConfig` builds, served by one backend.
#[derive(Clone)]
pub struct Sessions {
    pub sessions: Arc<dyn SessionStore>,
    pub attempts: Arc<dyn LoginAttempts>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl SessionsConfig {
    /// Open the backend: the SQLite file is created and migrated (off the
    /// async threads); Redis connects lazily, so an instance starts while
    /// Redis is down (logins fail with `Unavailable` until it is back).
    pub async fn build(&self) -> Result<Sessions, PortError> {
        match self {
            SessionsConfig::Sqlite { path } => {
                let path = path.clone();
                let db = tokio::task::spawn_blocking(move || SqliteSessions::open(&path))
                    .await
                    .map_err(|e| PortError::Unavailable(format!("opening the session store: {e}")))??;
                let db = Arc::new(db);
                Ok(Sessions {
                    sessions: db.clone(),
                    attempts: db,
                })
            }
            SessionsConfig::Redis { url, key_prefix } => {
                let db = Arc::new(RedisSessions::connect(
                    url,
                    RedisSessionsOptions {
                        key_prefix: key_prefix.clone(),
                        ..RedisSessionsOptions::default()
                    },
                )?);
                Ok(Sessions {
                    sessions: db.clone(),
                    attempts: db,
                })
            }
        }
    }
}
