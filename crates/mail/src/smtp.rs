//! `SmtpMailer`: hands messages to an SMTP relay with lettre's async (tokio)
//! transport.
//!
//! One connection per message (lettre's pool is not compiled in): receipts
//! go out one job at a time from the `mail` queue, so a pool would mostly
//! hold idle sockets that relays close under us anyway. TLS is rustls with
//! the `ring` provider and the bundled Mozilla roots, so nothing needs
//! OpenSSL, cmake or a system trust store at build or run time; a relay
//! behind a private CA is trusted through `tls_ca_file`.
//!
//! The URL grammar is lettre's (`smtps://` is implicit TLS on connect,
//! `smtp://…?tls=required` is STARTTLS that must succeed,
//! `?tls=opportunistic` STARTTLS when offered), plus `?tls=starttls` as a
//! spelling of `required`, the one operators reach for.

use async_trait::async_trait;
use domain::Mailer;
use domain::ports::{Email, PortError, PortResult};
use lettre::message::Mailbox;
use lettre::transport::smtp;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

use crate::{MailError, compose, parse_from, redact};

/// Where and how to relay.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// `smtp://[user:pass@]host:port` (add `?tls=required` or
    /// `?tls=starttls` for STARTTLS) or `smtps://[user:pass@]host:port` for
    /// implicit TLS. User and password are percent-decoded.
    pub url: String,
    /// The `From` of every message, e.g. `Rushhour <receipts@example.com>`.
    pub from: String,
    /// Deadline of each step of an SMTP exchange.
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted besides the bundled roots (a
    /// relay behind a private CA); only with a URL that uses TLS.
    pub tls_ca_file: Option<PathBuf>,
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
        let invalid = |reason: String| MailError::InvalidUrl {
            url: redact(&config.url),
            reason,
        };
        let url = lettre_url(config.url.trim()).map_err(invalid)?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.text)
            .map_err(|e| invalid(e.to_string()))?
            .timeout(Some(config.timeout));
        if let Some(path) = &config.tls_ca_file {
            let tls = url.tls.ok_or_else(|| {
                invalid("tls_ca_file is set, but the URL uses no TLS (smtps://, or smtp:// with ?tls=starttls)".into())
            })?;
            let pem = std::fs::read(path).map_err(|e| invalid(format!("CA file {}: {e}", path.display())))?;
            let cert = smtp::client::Certificate::from_pem(&pem)
                .map_err(|e| invalid(format!("CA file {}: {e}", path.display())))?;
            let params = smtp::client::TlsParameters::builder(url.host.clone())
                .add_root_certificate(cert)
                .build_rustls()
                .map_err(|e| invalid(e.to_string()))?;
            builder = builder.tls(match tls {
                TlsMode::Implicit => smtp::client::Tls::Wrapper(params),
                TlsMode::Required => smtp::client::Tls::Required(params),
                TlsMode::Opportunistic => smtp::client::Tls::Opportunistic(params),
            });
        }
        let transport = builder.build();
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

/// How a URL asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `?tls=required` (or `starttls`): STARTTLS, or no session.
    Required,
    /// `?tls=opportunistic`: STARTTLS when the relay offers it.
    Opportunistic,
}

/// A mail URL as lettre takes it, with what the TLS settings need.
#[derive(Debug)]
struct LettreUrl {
    text: String,
    host: String,
    tls: Option<TlsMode>,
}

/// `url` with `tls=starttls` spelled as lettre knows it (`tls=required`),
/// its host and its TLS mode. Other errors are lettre's to report.
fn lettre_url(url: &str) -> Result<LettreUrl, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "tls" && v.eq_ignore_ascii_case("starttls") {
                "required".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if !pairs.is_empty() {
        parsed.query_pairs_mut().clear().extend_pairs(&pairs);
    }
    let tls_param = pairs.iter().find(|(k, _)| k == "tls").map(|(_, v)| v.as_str());
    let tls = match (parsed.scheme(), tls_param) {
        ("smtps", _) => Some(TlsMode::Implicit),
        (_, Some("required")) => Some(TlsMode::Required),
        (_, Some("opportunistic")) => Some(TlsMode::Opportunistic),
        _ => None,
    };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    Ok(LettreUrl {
        text: parsed.into(),
        host,
        tls,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_say_how_they_use_tls() {
        for (url, want, text) in [
            ("smtp://relay:25", None, "smtp://relay:25"),
            (
                "smtps://u:p@relay:465",
                Some(TlsMode::Implicit),
                "smtps://u:p@relay:465",
            ),
            (
                "smtp://relay:587?tls=starttls",
                Some(TlsMode::Required),
                "smtp://relay:587?tls=required",
            ),
            (
                "smtp://relay:587?tls=STARTTLS",
                Some(TlsMode::Required),
                "smtp://relay:587?tls=required",
            ),
            (
                "smtp://relay:587?tls=required",
                Some(TlsMode::Required),
                "smtp://relay:587?tls=required",
            ),
            (
                "smtp://relay:587?tls=opportunistic",
                Some(TlsMode::Opportunistic),
                "smtp://relay:587?tls=opportunistic",
            ),
        ] {
            let parsed = lettre_url(url).unwrap();
            assert_eq!(
                (parsed.tls, parsed.text.as_str(), parsed.host.as_str()),
                (want, text, "relay"),
                "{url}"
            );
        }
    }

    #[test]
    fn a_ca_file_needs_a_url_with_tls() {
        let err = SmtpMailer::new(&SmtpOptions {
            url: "smtp://u:hunter2@relay:25".into(),
            from: "r@example.com".into(),
            timeout: Duration::from_secs(1),
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("uses no TLS") && !err.contains("hunter2"), "{err}");
        let err = SmtpMailer::new(&SmtpOptions {
            url: "smtps://relay".into(),
            from: "r@example.com".into(),
            timeout: Duration::from_secs(1),
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
