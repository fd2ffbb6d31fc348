//! The suite's measurements that are not a load run: a server's resident
//! memory (idle, and with many live-event streams open), and 202 →
//! confirmed latency read from the orders' own timestamps in the store.
//!
//! Why not through the HTTP API: RSS is the kernel's number for the child
//! process, and the confirmation time is best read where the processors
//! write it (`placed_at` is stamped at intake, `confirmed_at` in the
//! processors' store transaction), rather than by a client polling order
//! status, whose poll interval would be the figure.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Connections being opened at once while building up the streams (the
/// server's accept queue and our ephemeral ports stay comfortable).
const OPENING_AT_ONCE: usize = 256;
/// Time for one stream's response head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Resident set size of process `pid`, in bytes (`VmRSS` in
/// `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vm_rss(&status).context("no VmRSS line in /proc/<pid>/status")
}

/// `VmRSS:   23456 kB` → bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Open live-event streams held open by this process; dropping it closes
/// them all.
pub struct Streams {
    pub open: Vec<TcpStream>,
    /// Attempts that did not get a `200` head, by reason.
    pub failed: Vec<String>,
}

/// Open `n` SSE streams to `path` on `addr` (`host:port`), each a plain
/// HTTP/1.1 `GET` whose response head is read and checked for `200`; the
/// bodies are left unread (an idle stream sends next to nothing). Plain
/// sockets rather than an HTTP client: 10,000 of them must cost this
/// process little, and nothing more than the head is wanted.
pub async fn open_streams(addr: &str, path: &str, n: usize) -> Streams {
    let request: std::sync::Arc<str> =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").into();
    let mut open = Vec::with_capacity(n);
    let mut failed = Vec::new();
    let mut tasks = JoinSet::new();
    let mut started = 0;
    while started < n || !tasks.is_empty() {
        while started < n && tasks.len() < OPENING_AT_ONCE {
            let (addr, request) = (addr.to_owned(), request.clone());
            tasks.spawn(async move { open_one(&addr, &request).await });
            started += 1;
        }
        match tasks.join_next().await {
            Some(Ok(Ok(s))) => open.push(s),
            Some(Ok(Err(e))) => failed.push(format!("{e:#}")),
            Some(Err(e)) => failed.push(e.to_string()),
            None => break,
        }
    }
    Streams { open, failed }
}

async fn open_one(addr: &str, request: &str) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await.context("connect")?;
    s.write_all(request.as_bytes()).await.context("send")?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + HEAD_TIMEOUT;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .context("no response head in time")?
            .context("read")?;
        if n == 0 {
            bail!("closed before the response head");
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            bail!("response head too long");
        }
    }
    let status = head.split(|b| *b == b' ').nth(1).unwrap_or_default();
    if status != b"200" {
        bail!("status {}", String::from_utf8_lossy(status));
    }
    Ok(s)
}

/// The failure reasons, counted: `"status 503" × 12, connect × 3`.
pub fn summarize_failures(failed: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for f in failed {
        *counts.entry(f.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(why, n)| format!("{why} × {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// 202 → confirmed over the orders placed since some instant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Confirmation {
    /// Orders placed in the window.
    pub placed: u64,
    /// Of those, confirmed (the rest were rejected or not yet applied when
    /// the wait ended).
    pub confirmed: u64,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

/// Wait (up to `wait`) until every order of the embedded store at `db`
/// placed at or after `since_ms` is confirmed or rejected, then read the
/// spread of `confirmed_at - placed_at` over them. Opened read-only: the
/// server keeps running and writing (WAL readers do not block it).
pub async fn confirmation(db: &Path, since_ms: i64, wait: Duration) -> anyhow::Result<Confirmation> {
    let db = db.to_owned();
    tokio::task::spawn_blocking(move || confirmation_blocking(&db, since_ms, wait))
        .await
        .context("the store reader panicked")?
}

fn confirmation_blocking(db: &Path, since_ms: i64, wait: Duration) -> anyhow::Result<Confirmation> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        let pending: i64 = conn.query_row(
            "SELECT count(*) FROM orders WHERE placed_at >= ?1 AND confirmed_at IS NULL AND rejected_at IS NULL",
            [since_ms],
            |r| r.get(0),
        )?;
        if pending == 0 || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let placed: i64 = conn.query_row("SELECT count(*) FROM orders WHERE placed_at >= ?1", [since_ms], |r| {
        r.get(0)
    })?;
    let mut stmt = conn.prepare(
        "SELECT confirmed_at - placed_at FROM orders \
         WHERE placed_at >= ?1 AND confirmed_at IS NOT NULL ORDER BY 1",
    )?;
    let waits: Vec<i64> = stmt.query_map([since_ms], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(summarize_waits(u64::try_from(placed).unwrap_or(0), &waits))
}

/// Nearest-rank percentiles over sorted waits.
pub fn summarize_waits(placed: u64, sorted: &[i64]) -> Confirmation {
    let pick = |q: f64| -> Option<i64> {
        if sorted.is_empty() {
            return None;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    };
    Confirmation {
        placed,
        confirmed: sorted.len() as u64,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: sorted.last().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_parses_from_proc_status() {
        let status = "Name:\trushhour\nVmPeak:\t  99999 kB\nVmRSS:\t   23456 kB\nThreads:\t5\n";
        assert_eq!(parse_vm_rss(status), Some(23_456 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        // Our own process has one.
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let waits: Vec<i64> = (1..=100).collect();
        let c = summarize_waits(120, &waits);
        assert_eq!((c.placed, c.confirmed), (120, 100));
        assert_eq!((c.p50_ms, c.p99_ms, c.max_ms), (Some(50), Some(99), Some(100)));
        let one = summarize_waits(1, &[7]);
        assert_eq!((one.p50_ms, one.p99_ms), (Some(7), Some(7)));
        let none = summarize_waits(3, &[]);
        assert_eq!((none.confirmed, none.p99_ms), (0, None));
    }

    #[test]
    fn failures_are_counted_by_reason() {
        let f = ["status 503".to_owned(), "connect".to_owned(), "status 503".to_owned()];
        assert_eq!(summarize_failures(&f), "connect × 1, status 503 × 2");
    }

    #[tokio::test]
    async fn streams_check_the_response_head() {
        // A tiny server: the first connection gets a 200 head and is held,
        // the second a 503.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            for answer in [
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
                "HTTP/1.1 503 Busy\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(answer.as_bytes()).await.unwrap();
                held.push(s);
            }
            held
        });
        let first = open_streams(&addr, "/events", 1).await;
        assert_eq!((first.open.len(), first.failed.len()), (1, 0));
        let second = open_streams(&addr, "/events", 1).await;
        assert_eq!(second.failed, ["status 503"]);
        drop(server.await.unwrap());
    }
}
