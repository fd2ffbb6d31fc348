//! `SmtpMailer` end to end against a real SMTP conversation: the
//! in-process `testkit::mail::SmtpSink` (it replaced a spawned
//! `python3 -m smtpd`, gone since Python 3.12), which accepts every message
//! and keeps it for the test to read; over TLS through
//! `testkit::tls::TlsProxy` (`smtps://`), and STARTTLS held to its word.

use domain::ports::PortError;
use mailparse::MailHeaderMap;
use std::net::TcpListener;
use std::time::Duration;
use testkit::mail::SmtpSink;

use crate::{FROM, picked_up_order};

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn a_receipt_reaches_a_real_smtp_server() {
    let sink = SmtpSink::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mailer = mail::open(&sink.url(), FROM, data.path()).unwrap();
    let order = picked_up_order();
    let receipt = domain::receipt::render(&order, "Demo Downtown", "ada@example.com");
    mailer.send(&receipt).await.unwrap();

    let received = sink.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.from, "receipts@rushhour.test");
    assert_eq!(r.to, ["ada@example.com"]);
    let parsed = mailparse::parse_mail(&r.data).unwrap();
    let headers = parsed.get_headers();
    assert_eq!(headers.get_first_value("Subject").unwrap(), receipt.subject);
    assert_eq!(headers.get_first_value("To").unwrap(), "ada@example.com");
    assert_eq!(
        headers.get_first_value("From").unwrap(),
        "\"Rushhour Receipts\" <receipts@rushhour.test>"
    );
    let text = String::from_utf8_lossy(&r.data);
    assert!(text.contains(&order.id.to_string()), "{text}");
    assert!(!data.path().join("outbox").exists(), "SMTP writes no outbox");
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let port = free_port();
    let mailer = mail::SmtpMailer::new(&mail::SmtpOptions {
        url: format!("smtp://127.0.0.1:{port}"),
        from: FROM.into(),
        timeout: Duration::from_secs(5),
        tls_ca_file: None,
    })
    .unwrap();
    let receipt = domain::receipt::render(&picked_up_order(), "Demo Downtown", "ada@example.com");
    let err = domain::Mailer::send(&mailer, &receipt).await.unwrap_err();
    assert!(matches!(err, PortError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("refused"), "the cause is kept: {err}");
}

#[test]
fn smtp_urls_are_checked_at_setup() {
    let dir = std::env::temp_dir();
    for bad in ["smtp://", "smtp://127.0.0.1:25?tls=sometimes", "imap://127.0.0.1"] {
        assert!(
            matches!(mail::open(bad, FROM, &dir), Err(mail::MailError::InvalidUrl { .. })),
            "{bad}"
        );
    }
    for good in [
        "smtp://127.0.0.1:2525",
        "smtp://user:p%40ss@127.0.0.1:587?tls=required",
        "smtps://mail.example.com",
    ] {
        assert!(mail::open(good, FROM, &dir).is_ok(), "{good}");
    }
}

/// `smtps://`: implicit TLS, verified against a private CA (`tls_ca_file`).
/// A TLS-terminating proxy with a throwaway CA stands in front of the sink,
/// so the message arrives only if the mailer spoke TLS and trusted the CA.
#[tokio::test]
async fn smtps_delivers_through_tls_with_the_configured_ca() {
    let sink = SmtpSink::start().await.unwrap();
    let plain: std::net::SocketAddr = sink.url().trim_start_matches("smtp://").parse().unwrap();
    let proxy = testkit::tls::TlsProxy::start(plain).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = proxy.write_ca(dir.path()).unwrap();
    let receipt = domain::receipt::render(&picked_up_order(), "Demo Downtown", "ada@example.com");

    let mailer = mail::SmtpMailer::new(&mail::SmtpOptions {
        url: format!("smtps://localhost:{}", proxy.port()),
        from: FROM.into(),
        timeout: Duration::from_secs(5),
        tls_ca_file: Some(ca),
    })
    .unwrap();
    domain::Mailer::send(&mailer, &receipt).await.expect("sent over TLS");
    assert_eq!(sink.received().len(), 1);
    assert!(proxy.handshakes() >= 1);

    // The same relay without the CA: the certificate is refused, nothing sent.
    let untrusting = mail::SmtpMailer::new(&mail::SmtpOptions {
        url: format!("smtps://localhost:{}", proxy.port()),
        from: FROM.into(),
        timeout: Duration::from_secs(5),
        tls_ca_file: None,
    })
    .unwrap();
    let err = domain::Mailer::send(&untrusting, &receipt).await.unwrap_err();
    assert!(matches!(err, PortError::Unavailable(_)), "{err:?}");
    assert_eq!(sink.received().len(), 1, "nothing more was delivered");
}

/// `?tls=starttls` means STARTTLS or nothing: a relay that does not offer it
/// (the sink) gets no message in clear.
#[tokio::test]
async fn starttls_is_required_when_asked_for() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = mail::open(
        &format!("{}?tls=starttls", sink.url()),
        FROM,
        std::path::Path::new("/nonexistent"),
    )
    .unwrap();
    let receipt = domain::receipt::render(&picked_up_order(), "Demo Downtown", "ada@example.com");
    mailer.send(&receipt).await.expect_err("no STARTTLS, no mail");
    assert!(sink.received().is_empty(), "nothing went out in clear");
}
