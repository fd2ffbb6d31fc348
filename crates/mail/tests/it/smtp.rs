//! `SmtpMailer` end to end against a real SMTP server: Python's stdlib
//! `smtpd` DebuggingServer, which accepts every message and prints it to
//! stdout. It is spawned per test on a free local port and killed by a drop
//! guard, so a failing assertion cannot leave it running.
//!
//! Without `python3` (or its `smtpd` module, gone since Python 3.12) the
//! test is skipped loudly, and fails under `RUSHHOUR_REQUIRE_SERVICES=1`,
//! the convention of `testkit::service_url`.

use domain::ports::PortError;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{FROM, picked_up_order};

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The spawned server; killed and reaped on drop.
struct SmtpServer {
    child: Child,
    port: u16,
    /// Everything the server printed so far.
    output: Arc<Mutex<String>>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Wait (bounded) until the server's output contains every needle.
    fn wait_for_output(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.output.lock().unwrap().clone();
            if needles.iter().all(|n| out.contains(n)) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "the server never printed {needles:?}; it printed:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[allow(clippy::disallowed_methods)] // the same sanctioned env read as testkit::service_url
fn skip_or_fail(test: &str, why: &str) -> Option<SmtpServer> {
    if std::env::var("RUSHHOUR_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: {why}, but RUSHHOUR_REQUIRE_SERVICES=1");
    }
    eprintln!("\n!!! SKIPPED {test}: {why}; install python3 (< 3.12, with smtpd) to run it !!!\n");
    None
}

/// Start `python3 -m smtpd -n -c DebuggingServer` and wait until it
/// accepts connections; `None` (after a loud notice) when it cannot run.
fn smtp_server(test: &str) -> Option<SmtpServer> {
    let has_smtpd = Command::new("python3")
        .args(["-W", "ignore", "-c", "import smtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_smtpd {
        return skip_or_fail(test, "python3 with the smtpd module is not available");
    }
    let port = free_port();
    let mut child = Command::new("python3")
        .args(["-u", "-W", "ignore", "-m", "smtpd", "-n", "-c", "DebuggingServer"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3 -m smtpd");
    let stdout = child.stdout.take().expect("piped stdout");
    let output = Arc::new(Mutex::new(String::new()));
    let sink = output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut out = sink.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    });
    let server = SmtpServer { child, port, output };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtpd did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

#[tokio::test]
async fn a_receipt_reaches_a_real_smtp_server() {
    let Some(server) = smtp_server("a_receipt_reaches_a_real_smtp_server") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mailer = mail::open(&format!("smtp://127.0.0.1:{}", server.port), FROM, data.path()).unwrap();
    let order = picked_up_order();
    let receipt = domain::receipt::render(&order, "Demo Downtown", "ada@example.com");
    mailer.send(&receipt).await.unwrap();

    let out = server.wait_for_output(&[&receipt.subject, "To: ada@example.com", "X-Peer: 127.0.0.1"]);
    assert!(
        out.contains("From: \"Rushhour Receipts\" <receipts@rushhour.test>"),
        "{out}"
    );
    assert!(out.contains(&order.id.to_string()), "{out}");
    assert!(!data.path().join("outbox").exists(), "SMTP writes no outbox");
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let port = free_port();
    let mailer = mail::SmtpMailer::new(&mail::SmtpConfig {
        url: format!("smtp://127.0.0.1:{port}"),
        from: FROM.into(),
        timeout: Duration::from_secs(5),
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
