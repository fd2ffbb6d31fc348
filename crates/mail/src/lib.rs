//! Outgoing e-mail: the adapters behind `domain::ports::Mailer`. (The
//! receipt a customer gets when an order is picked up is rendered by
//! `domain::receipt`.)
//!
//! Two adapters, chosen by URL (`MailConfig::from_url`, then `build`):
//! - `smtp://[user:pass@]host:port` (plain, or STARTTLS with
//!   `?tls=required` / `?tls=opportunistic`) and `smtps://host:port`
//!   (implicit TLS): `SmtpMailer`, lettre's async SMTP client.
//! - `file://` (the embedded default, `<data_dir>/outbox/`) or
//!   `file:///abs/dir`: `OutboxMailer`, one RFC 5322 `.eml` file per message.
//!   A single-process install has no mail server to talk to, and a file an
//!   operator can open (or hand to `sendmail -t`) beats silently dropping
//!   receipts.
//!
//! Both adapters build the very same `lettre::Message` (`compose`), so what
//! lands in the outbox is byte for byte what SMTP would have sent, bar the
//! `Date` and `Message-ID`.

mod config;
mod outbox;
mod smtp;

use domain::Mailer;
use domain::ports::{Email, PortError};
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use config::MailConfig;
pub use outbox::OutboxMailer;
pub use smtp::{SmtpMailer, SmtpOptions};

/// How long one SMTP exchange (connect, greeting, each command) may take
/// when the mailer comes from `open`.
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a mailer could not be set up. Sending errors are `PortError`s.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The mail URL is not one this crate understands. `url` has any
    /// password removed.
    #[error("invalid mail URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid sender address '{address}': {reason}")]
    InvalidFrom { address: String, reason: String },
    #[error("cannot create the outbox directory {}: {source}", path.display())]
    Outbox {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The mailer for `url` (see [`MailConfig::from_url`]): parse, then build.
pub fn open(url: &str, from: &str, data_dir: &Path) -> Result<Arc<dyn Mailer>, MailError> {
    MailConfig::from_url(url, from, data_dir)?.build()
}

/// Parse the sender address once, at setup, so a typo fails at startup
/// rather than on the first receipt.
pub(crate) fn parse_from(from: &str) -> Result<Mailbox, MailError> {
    from.trim().parse::<Mailbox>().map_err(|e| MailError::InvalidFrom {
        address: from.to_owned(),
        reason: e.to_string(),
    })
}

/// The RFC 5322 message for `email`: plain text, or `multipart/alternative`
/// when there is an HTML part. A recipient that is not an address is
/// `Invalid` (retrying cannot fix it).
pub(crate) fn compose(from: &Mailbox, email: &Email) -> Result<Message, PortError> {
    let to = email
        .to
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| PortError::Invalid(format!("recipient '{}': {e}", email.to)))?;
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.subject.as_str())
        .message_id(None);
    let built = match &email.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(email.text.clone(), html.clone())),
        None => builder.header(ContentType::TEXT_PLAIN).body(email.text.clone()),
    };
    built.map_err(|e| PortError::Invalid(format!("message: {e}")))
}

/// `url` without its password, for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("smtp://bob:s3cret@mx:25"), "smtp://bob:***@mx:25");
        assert_eq!(redact("smtp://mx:25"), "smtp://mx:25");
        let err = open("ftp://bob:s3cret@mx", "a@b.c", Path::new("/tmp"))
            .err()
            .expect("ftp is refused");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn relative_file_urls_and_bad_senders_are_refused() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            open("file://outbox", "a@b.c", &dir),
            Err(MailError::InvalidUrl { .. })
        ));
        assert!(matches!(
            open("smtp://127.0.0.1:25", "not an address", &dir),
            Err(MailError::InvalidFrom { .. })
        ));
    }

    #[test]
    fn bad_recipients_are_invalid_not_retryable() {
        let from = parse_from("Rushhour <receipts@example.com>").unwrap();
        let email = Email {
            to: "nobody".into(),
            subject: "s".into(),
            text: "t".into(),
            html: None,
        };
        assert!(matches!(compose(&from, &email), Err(PortError::Invalid(_))));
    }
}
