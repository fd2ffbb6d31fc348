//! `MailConfig`: which `Mailer` adapter to run, parsed from `mail.url`
//! ([`MailConfig::from_url`]) when configuration loads, and `build()`,
//! which sets it up. Parsing and building are separate so that a wrong
//! scheme is refused with the configuration, before anything is opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use domain::Mailer;

use crate::{DEFAULT_SMTP_TIMEOUT, MailError, OutboxMailer, SmtpMailer, SmtpOptions, redact};

/// A mailer to set up.
#[derive(Debug, Clone)]
pub enum MailConfig {
    /// One `.eml` file per message in `dir`.
    Outbox { dir: PathBuf, from: String },
    /// lettre's async SMTP client.
    Smtp(SmtpOptions),
}

impl MailConfig {
    /// `smtp://…`/`smtps://…` → SMTP (with [`DEFAULT_SMTP_TIMEOUT`]),
    /// `file://` → an outbox in `<data_dir>/outbox`, `file:///abs/dir` → an
    /// outbox in that directory.
    pub fn from_url(url: &str, from: &str, data_dir: &Path) -> Result<Self, MailError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("file://") {
            let dir = if rest.is_empty() {
                data_dir.join("outbox")
            } else if rest.starts_with('/') {
                PathBuf::from(rest)
            } else {
                return Err(MailError::InvalidUrl {
                    url: url.to_owned(),
                    reason: "a file URL is `file://` (the data directory's outbox) or `file:///absolute/dir`".into(),
                });
            };
            return Ok(MailConfig::Outbox {
                dir,
                from: from.to_owned(),
            });
        }
        if url.starts_with("smtp://") || url.starts_with("smtps://") {
            return Ok(MailConfig::Smtp(SmtpOptions {
                url: url.to_owned(),
                from: from.to_owned(),
                timeout: DEFAULT_SMTP_TIMEOUT,
                tls_ca_file: None,
            }));
        }
        Err(MailError::InvalidUrl {
            url: redact(url),
            reason: "expected smtp://, smtps:// or file://".into(),
        })
    }

    /// Set up the mailer: the outbox directory is created; the SMTP URL and
    /// the sender are checked (no connection is made until the first send).
    pub fn build(&self) -> Result<Arc<dyn Mailer>, MailError> {
        match self {
            MailConfig::Outbox { dir, from } => Ok(Arc::new(OutboxMailer::new(dir.clone(), from)?)),
            MailConfig::Smtp(smtp) => Ok(Arc::new(SmtpMailer::new(smtp)?)),
        }
    }
}
