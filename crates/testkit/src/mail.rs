//! The `Mailer` contract suite, run unchanged on every adapter (the outbox
//! directory and SMTP), and the in-process SMTP sink the SMTP run talks to.
//!
//! A case takes the mailer under test and an [`Inbox`]: where that adapter's
//! messages land (the outbox directory; the sink's received list), so one
//! body checks both. Cases are listed once, in `mailer_contract_cases!`;
//! an adapter's tests hand it a macro that makes one `#[tokio::test]` per
//! case, as `store_contract_cases!` does for stores.
//!
//! Why a sink of our own: the SMTP test used to spawn `python3 -m smtpd`,
//! which Python 3.12 removed, so it silently skipped on current systems.
//! The sink speaks just enough SMTP (EHLO/HELO, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT) for lettre's client, keeps every
//! message in memory, and needs nothing installed. A maintained server
//! crate was the alternative; none small enough to be worth a dependency.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use domain::Mailer;
use domain::ports::{Email, PortError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The sender every case's mailer must be built with.
pub const FROM: &str = "Rushhour Receipts <receipts@rushhour.test>";

/// Lists every case; `$callback!` receives them as identifiers.
#[macro_export]
macro_rules! mailer_contract_cases {
    ($callback:ident) => {
        $callback! {
            a_plain_message_is_delivered_with_its_headers,
            an_html_message_is_multipart_alternative,
            a_malformed_recipient_is_invalid_and_delivers_nothing,
            every_send_delivers_one_message,
        }
    };
}

macro_rules! mail_case_names {
    ($($case:ident),* $(,)?) => { &[$(stringify!($case)),*] };
}

/// The names of every case, in the order `run_all` runs them.
pub const CASES: &[&str] = mailer_contract_cases!(mail_case_names);

/// A fresh mailer (built with [`FROM`]) and where its messages land.
pub struct Fresh {
    pub mailer: Arc<dyn Mailer>,
    pub inbox: Arc<dyn Inbox>,
}

/// Run every case, each on a fresh mailer from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            let fresh = make().await;
            $case(fresh.mailer, fresh.inbox).await;
        )*};
    }
    mailer_contract_cases!(run);
}

/// Where an adapter's messages end up, as raw RFC 5322 bytes.
pub trait Inbox: Send + Sync {
    /// Every message delivered so far (in no particular order).
    fn delivered(&self) -> Vec<Vec<u8>>;
}

/// An outbox directory: every `.eml` file in it is a delivered message.
#[derive(Debug, Clone)]
pub struct OutboxDir(pub PathBuf);

impl Inbox for OutboxDir {
    fn delivered(&self) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.expect("read the outbox").path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read(p).expect("read an outbox file"))
            .collect()
    }
}

// ------------------------------------------------------------------ cases

fn email(to: &str, subject: &str, text: &str, html: Option<&str>) -> Email {
    Email {
        to: to.into(),
        subject: subject.into(),
        text: text.into(),
        html: html.map(Into::into),
    }
}

fn only_message(inbox: &dyn Inbox) -> String {
    let delivered = inbox.delivered();
    assert_eq!(delivered.len(), 1, "exactly one message is delivered");
    String::from_utf8(delivered.into_iter().next().unwrap_or_default()).expect("a UTF-8 message")
}

/// The value of header `name` (case-insensitive, unfolded), if present.
pub fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or_default();
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

pub async fn a_plain_message_is_delivered_with_its_headers(mailer: Arc<dyn Mailer>, inbox: Arc<dyn Inbox>) {
    mailer
        .send(&email("bob@example.com", "Plain hello", "just text\n", None))
        .await
        .expect("sent");
    let m = only_message(&*inbox);
    assert_eq!(header(&m, "To").as_deref(), Some("bob@example.com"), "{m}");
    let from = header(&m, "From").expect("a From header");
    assert!(from.contains("receipts@rushhour.test"), "{from}");
    assert_eq!(header(&m, "Subject").as_deref(), Some("Plain hello"), "{m}");
    assert!(header(&m, "Date").is_some(), "{m}");
    assert!(header(&m, "Message-ID").is_some(), "{m}");
    let ctype = header(&m, "Content-Type").expect("a Content-Type");
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(m.contains("just text"), "{m}");
}

pub async fn an_html_message_is_multipart_alternative(mailer: Arc<dyn Mailer>, inbox: Arc<dyn Inbox>) {
    mailer
        .send(&email(
            "Ada Lovelace <ada@example.com>",
            "Your receipt",
            "plain part\n",
            Some("<p>html part</p>"),
        ))
        .await
        .expect("sent");
    let m = only_message(&*inbox);
    assert_eq!(
        header(&m, "To").as_deref(),
        Some("\"Ada Lovelace\" <ada@example.com>"),
        "{m}"
    );
    let ctype = header(&m, "Content-Type").expect("a Content-Type");
    assert!(ctype.starts_with("multipart/alternative"), "{ctype}");
    for needle in ["text/plain", "text/html", "plain part", "<p>html part</p>"] {
        assert!(m.contains(needle), "{needle} missing from {m}");
    }
}

pub async fn a_malformed_recipient_is_invalid_and_delivers_nothing(mailer: Arc<dyn Mailer>, inbox: Arc<dyn Inbox>) {
    let err = mailer
        .send(&email("not-an-address", "x", "x", None))
        .await
        .expect_err("refused");
    assert!(matches!(err, PortError::Invalid(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(inbox.delivered().is_empty());
}

pub async fn every_send_delivers_one_message(mailer: Arc<dyn Mailer>, inbox: Arc<dyn Inbox>) {
    let subjects = ["first", "second", "third"];
    for s in subjects {
        mailer
            .send(&email("carol@example.com", s, "body\n", None))
            .await
            .expect("sent");
    }
    let mut got: Vec<String> = inbox
        .delivered()
        .iter()
        .map(|m| header(&String::from_utf8_lossy(m), "Subject").expect("a Subject"))
        .collect();
    got.sort();
    let mut want = subjects.map(String::from).to_vec();
    want.sort();
    assert_eq!(got, want);
}

// -------------------------------------------------------------- SMTP sink

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The `MAIL FROM` address.
    pub from: String,
    /// The `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message (after `DATA`), dot-unstuffed, CRLF line ends.
    pub data: Vec<u8>,
}

/// An SMTP server on `127.0.0.1` that accepts every message and keeps it.
/// Stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Listen on a free local port; each connection gets its own task.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    // A client that hangs up mid-session is its business.
                    let _ = session(stream, &store).await;
                });
            }
        });
        Ok(Self { addr, received, task })
    }

    /// `smtp://127.0.0.1:<port>`, for `mail::open` or `SmtpOptions`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message accepted so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }
}

impl Inbox for SmtpSink {
    fn delivered(&self) -> Vec<Vec<u8>> {
        lock(&self.received).iter().map(|r| r.data.clone()).collect()
    }
}

fn lock(m: &Mutex<Vec<Received>>) -> MutexGuard<'_, Vec<Received>> {
    // Pushes are single operations: a poisoned list is still whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The address inside `<…>` of a `MAIL FROM:`/`RCPT TO:` argument.
fn address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].trim().to_owned()
}

async fn session(stream: TcpStream, store: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 testkit SMTP sink ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-testkit\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") {
            b"250 testkit\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(address(&command["MAIL FROM:".len()..]));
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                b"503 MAIL first\r\n"
            } else {
                to.push(address(&command["RCPT TO:".len()..]));
                b"250 OK\r\n"
            }
        } else if upper == "DATA" {
            if to.is_empty() {
                b"503 RCPT first\r\n"
            } else {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let data = read_data(&mut read).await?;
                lock(store).push(Received {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 OK: queued\r\n"
            }
        } else if upper == "RSET" {
            from = None;
            to.clear();
            b"250 OK\r\n"
        } else if upper == "NOOP" {
            b"250 OK\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 command not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// The message body up to the lone `.` line, with leading dots unstuffed.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(data);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}

/// `dir`'s messages as an [`Inbox`].
pub fn outbox(dir: &Path) -> Arc<dyn Inbox> {
    Arc::new(OutboxDir(dir.to_path_buf()))
}
