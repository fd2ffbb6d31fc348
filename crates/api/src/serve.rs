//! The HTTP server loop: accept, cap, serve each connection with hyper, and
//! drain on shutdown. It replaces `axum::serve`, which gives hyper no timer
//! (so hyper's header-read timeout is off) and accepts every connection it
//! is offered: one client opening thousands of sockets and trickling a
//! header byte now and then (slowloris) could hold the process's file
//! descriptors for ever.
//!
//! What this loop adds, each with a setting in `ServeOptions`:
//! - a **header-read deadline** (hyper's own, given a Tokio timer): a
//!   connection whose request head has not fully arrived in time is closed.
//!   It also runs while a kept-alive connection waits for its next request,
//!   so an idle connection is closed after the same time;
//! - a **cap on open connections**: beyond it a new connection is closed at
//!   accept, before a byte is read, and counted; the ones already open are
//!   served as before;
//! - the **client address** of every request as
//!   `axum::extract::ConnectInfo<SocketAddr>`, for stream caps and rate
//!   limits;
//! - **graceful shutdown**: once the token is cancelled the listener is
//!   closed, idle connections are closed, and in-flight requests finish
//!   (open SSE streams end on the same token).
//!
//! HTTP/1.1 only. hyper-util's auto (HTTP/1 + h2c) builder first sniffs
//! for the HTTP/2 preface with no deadline at all, so a connection that
//! sends nothing would be held for ever; no client of this API speaks h2c
//! (browsers use HTTP/2 only over TLS, which a proxy in front terminates).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use telemetry::names;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connection-level protection of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Longest a request head (request line and headers) may take to
    /// arrive, and longest an idle kept-alive connection is kept.
    pub header_read_timeout: Duration,
    /// Connections open at once; beyond it new ones are closed at accept.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    /// The shipped configuration's values.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// Serve `router` on `listener` until `shutdown` is cancelled, then stop
/// accepting and return once every open connection has finished its
/// in-flight request. Errors of single connections are logged, never
/// returned: one bad client must not stop the server.
pub async fn serve(listener: TcpListener, router: Router, options: ServeOptions, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(options.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let open = metrics::gauge!(names::HTTP_CONNECTIONS_OPEN);
    open.set(0.0);

    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: pause rather than
                    // spin, as `axum::serve` does.
                    tracing::error!(error = %e, "accept failed; pausing for a second");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        // Refused by dropping the socket: nothing is read or written, so a
        // flood of connections costs an accept and a close each.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!(names::HTTP_CONNECTIONS_REFUSED).increment(1);
            drop(stream);
            continue;
        };
        let service = router
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = http.serve_connection(
            TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn);
        let open = open.clone();
        open.increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    metrics::counter!(names::HTTP_HEADER_TIMEOUTS).increment(1);
                }
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            open.decrement(1.0);
            drop(permit);
        });
    }
    // Closing the listener first: clients are refused by the kernel rather
    // than queued in a backlog nobody will read.
    drop(listener);
    graceful.shutdown().await;
}

/// Errors that concern only the connection being accepted (the client
/// gave up before we got to it); the listener itself is fine.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}
