//! Connection-level protection of the real server (§7), tried as an
//! abusive client would: the binary started as a child for the header
//! deadline (slowloris, idle sockets), the body deadline (a slow body must
//! not hold the only intake slot) and the connection cap, spoken to over
//! raw TCP; the in-process app for the caps on live streams (clients on
//! different loopback addresses) and a board opened without
//! `Last-Event-ID`.
//!
//! The deadlines are set short so the tests end soon, but nothing asserts
//! how fast anything happened: every wait has a generous upper bound and
//! fails only if the protection did not act at all.

use reqwest::{Client, StatusCode};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::crash::{free_port, ready};
use crate::support::{self, STAFF_KEY, STORE, latte_order, problem, spawn_app_with};

/// Bound on every wait for the server to act.
const BOUND: Duration = Duration::from_secs(30);

struct Server {
    _child: Child,
    addr: SocketAddr,
    base: String,
    _dir: tempfile::TempDir,
}

/// `rushhour serve` on a fresh data dir and port, with `env` on top of the
/// defaults; returns once it is ready. The readiness probe's client keeps
/// no connection open, so none counts against a connection cap.
async fn start(env: &[(&str, &str)]) -> Server {
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rushhour"));
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "error")
        .env("RUSHHOUR__AUTH__STAFF_KEY", STAFF_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start rushhour");
    let base = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let probe = Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    ready(&probe, &base).await;
    Server {
        _child: child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        base,
        _dir: dir,
    }
}

/// Read until the server closes the connection (or resets it); what was
/// read before. Fails if it stays open longer than `BOUND`.
async fn read_until_closed(rd: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn slowloris_and_silent_connections_are_closed_by_the_header_deadline() {
    let server = start(&[("RUSHHOUR__HTTP__HEADER_READ_TIMEOUT_MS", "500")]).await;

    // One client connects and says nothing at all.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Another sends its request head one byte every 50 ms, for ever.
    let (mut rd, mut wr) = TcpStream::connect(server.addr).await.unwrap().into_split();
    let trickle = tokio::spawn(async move {
        let head = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Padding: ";
        for i in 0.. {
            let byte = head.get(i).copied().unwrap_or(b'a');
            if wr.write_all(&[byte]).await.is_err() {
                return; // closed by the server
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let said = read_until_closed(&mut rd).await;
    assert!(
        !said.contains("200 OK"),
        "a request whose head never ended was served: {said}"
    );
    trickle.abort();
    let said = read_until_closed(&mut silent).await;
    assert!(said.is_empty() || said.starts_with("HTTP/1.1 408"), "{said}");

    // Everyone else is served as usual, and the closings are counted.
    let client = support::http_client(Duration::from_secs(30));
    let live = client.get(format!("{}/health/live", server.base)).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_header_read_timeouts_total"), "{metrics}");
}

#[tokio::test]
async fn a_slow_body_holds_no_intake_slot_and_gets_408() {
    let server = start(&[
        ("RUSHHOUR__HTTP__MAX_INFLIGHT_INTAKE", "1"),
        ("RUSHHOUR__HTTP__BODY_READ_TIMEOUT_MS", "1000"),
    ])
    .await;
    // A whole head announcing 200 bytes, then 11 of them, then nothing.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        b"POST /v1/orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"store\": ",
    )
    .await
    .unwrap();
    // A round trip on another connection, so the slow request is surely
    // inside the server by now (in front of the only intake slot, were it
    // taken before the body).
    let client = support::http_client(Duration::from_secs(30));
    let live = client.get(format!("{}/health/live", server.base)).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    let placed = client
        .post(format!("{}/v1/orders", server.base))
        .json(&latte_order())
        .send()
        .await
        .unwrap();
    assert_eq!(
        placed.status(),
        StatusCode::ACCEPTED,
        "{}",
        placed.text().await.unwrap()
    );

    let answer = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
}

/// Send `GET /health/live` on a new connection, kept alive, and read the
/// first bytes of the answer; `None` when the server closed the connection
/// without one.
async fn ask(addr: SocketAddr) -> Option<(TcpStream, String)> {
    let mut conn = TcpStream::connect(addr).await.ok()?;
    conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(BOUND, conn.read(&mut buf))
        .await
        .expect("an answer or a close")
        .ok()?;
    (n > 0).then(|| (conn, String::from_utf8_lossy(&buf[..n]).into_owned()))
}

/// A served connection, retrying while the server has not yet noticed that
/// an earlier connection closed (a bounded start-up wait, not a wait for
/// work).
async fn served(addr: SocketAddr) -> (TcpStream, String) {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(got) = ask(addr).await {
            return got;
        }
        assert!(Instant::now() < deadline, "no connection was served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let server = start(&[
        ("RUSHHOUR__HTTP__MAX_CONNECTIONS", "3"),
        // Long, so the held connections stay open while idle.
        ("RUSHHOUR__HTTP__HEADER_READ_TIMEOUT_MS", "60000"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (conn, answer) = served(server.addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(conn);
    }
    // Three kept-alive connections are open: a fourth is closed unanswered.
    assert!(ask(server.addr).await.is_none(), "the fourth connection was served");

    // When one goes, there is room again; the refusal was counted.
    drop(held.pop());
    let (mut conn, answer) = served(server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let metrics = read_until_closed(&mut conn).await;
    assert!(metrics.contains("http_connections_refused_total"), "{metrics}");
}

/// A client whose connections come from `ip` (any 127.x address reaches
/// the server on Linux's loopback).
fn client_from(ip: [u8; 4]) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn live_streams_are_capped_per_client_address_and_in_total() {
    let app = spawn_app_with(|c| {
        c.http.max_streams = 3;
        c.http.max_streams_per_client = 2;
        // A closed stream is noticed at the latest on its next heartbeat.
        c.http.sse_heartbeat_secs = 1;
    })
    .await;
    let board = app.url(&format!("/v1/stores/{STORE}/board"));
    let open = |client: Client| {
        let board = board.clone();
        async move { client.get(board).bearer_auth(STAFF_KEY).send().await.unwrap() }
    };
    let (a, b, c) = (
        client_from([127, 0, 0, 1]),
        client_from([127, 0, 0, 2]),
        client_from([127, 0, 0, 3]),
    );

    let a1 = open(a.clone()).await;
    let a2 = open(a.clone()).await;
    assert_eq!((a1.status(), a2.status()), (StatusCode::OK, StatusCode::OK));
    let refused = open(a.clone()).await;
    assert_eq!(refused.headers()["retry-after"], "5");
    problem(refused, 429, "too_many_streams").await;

    let b1 = open(b.clone()).await;
    assert_eq!(b1.status(), StatusCode::OK);
    let full = open(c.clone()).await;
    assert!(full.headers().contains_key("retry-after"));
    problem(full, 503, "streams_at_capacity").await;

    // Closing a stream frees its place (the server notices the closed
    // connection on its next heartbeat or event, hence the bounded retry).
    drop(a1);
    let deadline = Instant::now() + BOUND;
    let c1 = loop {
        let r = open(c.clone()).await;
        if r.status() == StatusCode::OK {
            break r;
        }
        assert!(Instant::now() < deadline, "a closed stream's place was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop((a2, b1, c1));
}

#[tokio::test]
async fn a_fresh_board_shows_open_orders_and_no_finished_history() {
    let app = spawn_app_with(|_| {}).await;
    let finished = app.place(&latte_order()).await;
    assert_eq!(app.settled(&finished).await, "confirmed");
    assert_eq!(
        app.staff_post(&format!("/v1/orders/{finished}/cancel")).await.status(),
        StatusCode::OK
    );
    let open = app.place(&latte_order()).await;
    assert_eq!(app.settled(&open).await, "confirmed");

    let mut board = app.sse(&format!("/v1/stores/{STORE}/board"), None).await;
    let first = board.next_event().await.unwrap();
    assert_eq!(
        first.data["order_id"],
        open.as_str(),
        "the open order first, nothing before it"
    );
    assert_eq!(first.data["status"], "confirmed");

    // Then live changes, still nothing of the finished order's history.
    let later = app.place(&latte_order()).await;
    let next = board.next_event().await.unwrap();
    assert_eq!(next.data["order_id"], later.as_str());
}
