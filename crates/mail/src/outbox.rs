//! `OutboxMailer`: the embedded default's "mail server", a directory with
//! one RFC 5322 `.eml` file per message.
//!
//! Each file is written under a dot-prefixed temporary name, synced, then
//! renamed into place, so anything watching the directory (an operator's
//! `ls`, a script piping files to `sendmail -t`) never sees half a message.
//! Names are `<epoch ms>-<8 hex>.eml`: they sort by time, and the random
//! part keeps two messages of the same millisecond apart.

use async_trait::async_trait;
use domain::Mailer;
use domain::ports::{Email, PortError, PortResult};
use lettre::message::Mailbox;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{MailError, compose, parse_from};

#[derive(Debug)]
pub struct OutboxMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl OutboxMailer {
    /// An outbox in `dir`, created (with its parents) if missing.
    pub fn new(dir: impl Into<PathBuf>, from: &str) -> Result<Self, MailError> {
        let dir = dir.into();
        let from = parse_from(from)?;
        std::fs::create_dir_all(&dir).map_err(|source| MailError::Outbox {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir, from })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> PortResult<()> {
        let bytes = compose(&self.from, email)?.formatted();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = format!("{now}-{:08x}.eml", rand::random::<u32>());
        let dir = self.dir.clone();
        let path = tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|e| PortError::Unavailable(format!("outbox writer: {e}")))?
            .map_err(|e| PortError::Unavailable(format!("outbox {}: {e}", self.dir.display())))?;
        tracing::debug!(path = %path.display(), "mail written to the outbox");
        Ok(())
    }
}

/// Write `bytes` to `dir/name` so that the name appears only with the whole
/// content behind it.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        // Best effort: a leftover temporary file is harmless (dot-named),
        // but there is no reason to keep it.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(path)
}
