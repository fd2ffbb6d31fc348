//! Protection of the service itself (§7): load shedding on intake, request
//! deadlines, the body-read deadline, caps on live streams, and the
//! last-resort responses (panic, unknown route, wrong method) that keep even
//! those answers in problem+json. (Connection-level protection — header
//! deadline, connection cap — lives in the server loop, `serve.rs`.)
//!
//! Shedding is a non-blocking `try_acquire` on a semaphore placed in front of
//! the intake handler, so an overloaded instance answers 503 at once instead
//! of queueing work it cannot finish; the client retries after
//! `Retry-After`, by which time the rush may have passed or another instance
//! may take it.
//!
//! The body is read *before* that permit is taken ([`read_body`]), under
//! its own deadline: a permit is held only by a request whose bytes are all
//! here, so clients trickling bodies cannot hold every intake (or webhook)
//! slot while sending nothing useful. A body that is late gets 408
//! `body_timeout` and the connection is closed.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use telemetry::names;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::extract::declared_length;

/// Hold one intake permit while the request runs, or refuse it. Runs after
/// [`read_body`], so a permit is never held while waiting for a client.
pub async fn shed_intake(State(permits): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    match permits.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            metrics::counter!(names::HTTP_SHED, "path" => "/v1/orders").increment(1);
            ApiError::Overloaded.into_response()
        }
    }
}

/// How [`read_body`] reads a body: at most `limit` bytes within `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub limit: usize,
    pub timeout: Duration,
    /// The route, for the timeout counter's label.
    pub path: &'static str,
}

/// Read the whole body (within the size limit) under the deadline, then
/// pass the request on with the body in memory. Placed outside the
/// route's permit layer. No copy is added: a body that arrived in one
/// chunk is passed on as that chunk, and the handler's extractor takes it
/// as it is.
pub async fn read_body(State(deadline): State<BodyDeadline>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    // A declared length above the limit is refused before a byte is read.
    if declared_length(&parts.headers).is_some_and(|n| n > deadline.limit as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let read = tokio::time::timeout(deadline.timeout, Limited::new(body, deadline.limit).collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::PayloadTooLarge.into_response();
        }
        // The client went away or sent a broken chunked encoding.
        Ok(Err(e)) => return ApiError::BadRequest(format!("the request body could not be read: {e}")).into_response(),
        Err(_) => {
            metrics::counter!(names::HTTP_BODY_TIMEOUTS, "path" => deadline.path).increment(1);
            let mut resp = ApiError::BodyTimeout.into_response();
            // The rest of the body may still be on its way: this connection
            // cannot carry another request, so say it will close.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The caps on open Server-Sent Event streams: in total, and per client
/// address. A stream holds a [`StreamSlot`] for as long as it is open.
///
/// One mutex over a map: streams are opened and closed at human rates (a
/// board, a customer's order page), never on the intake path, so a lock
/// costs nothing that matters and keeps both counts exact.
#[derive(Debug)]
pub struct StreamLimits {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<OpenStreams>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// An open stream's place under the caps; given back when dropped (the
/// client went away, or the stream ended).
#[derive(Debug)]
pub struct StreamSlot {
    limits: Arc<StreamLimits>,
    client: IpAddr,
}

impl StreamLimits {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            open: Mutex::new(OpenStreams::default()),
        })
    }

    /// Streams open now, over every client.
    pub fn open_total(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Take a slot for `client`, or refuse: 429 `too_many_streams` when
    /// this client already holds its share, 503 `streams_at_capacity` when
    /// the process holds its total.
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.per_client.get(&client).copied().unwrap_or(0);
        if mine >= self.max_per_client {
            metrics::counter!(names::STREAMS_REFUSED, "reason" => "per_client").increment(1);
            return Err(ApiError::TooManyStreams);
        }
        if open.total >= self.max_total {
            metrics::counter!(names::STREAMS_REFUSED, "reason" => "total").increment(1);
            return Err(ApiError::StreamsAtCapacity);
        }
        open.total += 1;
        *open.per_client.entry(client).or_default() += 1;
        metrics::gauge!(names::STREAMS_OPEN).set(open.total as f64);
        Ok(StreamSlot {
            limits: self.clone(),
            client,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        // Entries are removed at zero, so the map holds only clients with a
        // stream open and cannot grow with the number of clients ever seen.
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
        metrics::gauge!(names::STREAMS_OPEN).set(open.total as f64);
    }
}

/// Answer 503 `timeout` when a request outlives its deadline. Dropping the
/// handler's future cancels its backend calls; an intake that was cut off
/// may still have become durable, which is what `Idempotency-Key` retries
/// are for.
pub async fn timeout(State(deadline): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// `CatchPanicLayer` handler: log the panic, answer a generic 500 problem.
pub fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic payload)");
    ApiError::Internal(format!("handler panicked: {msg}")).into_response()
}

pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn open(limits: &StreamLimits) -> usize {
        limits.open.lock().unwrap().total
    }

    #[test]
    fn stream_caps_count_per_client_and_in_total_and_free_on_drop() {
        let limits = StreamLimits::new(3, 2);
        let (a, b, c) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
        );
        let a1 = limits.acquire(a).unwrap();
        let _a2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).unwrap_err().code(), "too_many_streams");
        let _b1 = limits.acquire(b).unwrap();
        assert_eq!(open(&limits), 3);
        assert_eq!(limits.acquire(c).unwrap_err().code(), "streams_at_capacity");
        // The per-client answer wins over the total: it tells the client
        // that the fix is on its side.
        assert_eq!(limits.acquire(a).unwrap_err().code(), "too_many_streams");
        drop(a1);
        assert_eq!(open(&limits), 2);
        let _c1 = limits.acquire(c).unwrap();
        assert_eq!(open(&limits), 3);
        let streams = limits.open.lock().unwrap();
        assert_eq!(streams.per_client.len(), 3);
        assert_eq!(streams.per_client[&a], 1);
    }
}
