//! `SmtpMailer`: hands messages to an SMTP relay with lettre's async (tokio)
//! transport.
//!
//! One connection per message (lettre's pool is not compiled in): receipts
//! go out one job at a time from the `mail` queue, so a pool would mostly
//! hold idle sockets that relays close under us anyway. TLS is rustls with
//! the `ring` provider and the bundled Mozilla roots, so nothing needs
//! OpenSSL, cmake or a system trust store at build or run time.

use async_trait::async_trait;
use domain::Mailer;
use domain::ports::{Email, PortError, PortResult};
use lettre::message::Mailbox;
use lettre::transport::smtp;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

use crate::{MailError, compose, parse_from, redact};

/// Where and how to relay.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// `smtp://[user:pass@]host:port` (add `?tls=required` for STARTTLS) or
    /// `smtps://[user:pass@]host:port` for implicit TLS. User and password
    /// are percent-decoded.
    pub url: String,
    /// The `From` of every message, e.g. `Rushhour <receipts@example.com>`.
    pub from: String,
    /// Deadline of each step of an SMTP exchange.
    pub timeout: Duration,
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The relay, password removed, for logs.
    relay: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("relay", &self.relay)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Parse the URL and sender; connects only when sending.
    pub fn new(config: &SmtpOptions) -> Result<Self, MailError> {
        let from = parse_from(&config.from)?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.url.trim())
            .map_err(|e| MailError::InvalidUrl {
                url: redact(&config.url),
                reason: e.to_string(),
            })?
            .timeout(Some(config.timeout))
            .build();
        Ok(Self {
            transport,
            from,
            relay: redact(&config.url),
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> PortResult<()> {
        let message = compose(&self.from, email)?;
        match self.transport.send(message).await {
            Ok(response) => {
                tracing::debug!(relay = %self.relay, code = %response.code(), "mail relayed");
                Ok(())
            }
            Err(e) => Err(port_error(&e)),
        }
    }
}

/// A 5xx reply (unknown mailbox, message refused) will be refused again, and
/// so will a message lettre itself cannot encode: `Invalid`. Everything else
/// — refused or dropped connections, timeouts, TLS failures, 4xx replies,
/// a garbled reply — may go through on a later attempt: `Unavailable`.
fn port_error(e: &smtp::Error) -> PortError {
    let text = error_chain(e);
    if e.is_permanent() || e.is_client() {
        PortError::Invalid(text)
    } else {
        PortError::Unavailable(text)
    }
}

/// lettre's `Display` says only the kind ("Connection error"); the cause
/// (e.g. "Connection refused") is in the source chain.
fn error_chain(e: &smtp::Error) -> String {
    let mut text = format!("smtp: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
