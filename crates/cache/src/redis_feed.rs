//! Scale-mode live feed: live events fanned out to every instance over
//! Redis pub/sub (`{prefix}:events`, one JSON `LiveEvent` per message).
//!
//! Each `RedisFeed` holds ONE subscriber connection, followed by one
//! background task that forwards messages into a bounded tokio broadcast
//! channel; every SSE client subscribes to that channel. The rejected
//! alternative, one Redis subscription per SSE client, would cost a Redis
//! connection per open browser tab. Like the in-process feed this is best
//! effort: a subscriber that falls behind, or that was connected while the
//! Redis subscription was down, gets `FeedItem::Lagged` and re-reads from
//! the store.

use async_trait::async_trait;
use domain::LiveEvent;
use domain::ports::{FeedItem, LiveFeed, PortError, PortResult};
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::aio::ConnectionManager;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::redis_conn::{self, AbortOnDrop, Follower, bounded};
use telemetry::names;

#[derive(Debug, Clone)]
pub struct RedisFeedOptions {
    /// Events buffered per SSE subscriber before it is told it lagged.
    pub capacity: usize,
    /// Namespace of the channel; tests use a unique one for isolation.
    pub channel_prefix: String,
    /// Upper bound on any single Redis call, connecting included.
    pub timeout: Duration,
    /// `rediss://` only: trust the CA certificates in this PEM file instead
    /// of the system's roots (a private CA).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RedisFeedOptions {
    fn default() -> Self {
        Self {
            capacity: 1024,
            channel_prefix: "rh:v1".into(),
            timeout: Duration::from_millis(500),
            tls_ca_file: None,
        }
    }
}

#[derive(Clone)]
pub struct RedisFeed {
    conn: ConnectionManager,
    channel: String,
    timeout: Duration,
    tx: broadcast::Sender<FeedItem>,
    _follower: Arc<AbortOnDrop>,
}

impl RedisFeed {
    /// Returns without Redis being reachable (the follower keeps trying in
    /// the background), after waiting up to `opts.timeout` for the shared
    /// subscription so that, when Redis is up, events published right
    /// after this returns are delivered. Errors only on a malformed URL.
    pub async fn connect(url: &str, opts: RedisFeedOptions) -> Result<Self, PortError> {
        let client = redis_conn::client(url, opts.tls_ca_file.as_deref())?;
        let conn = redis_conn::manager(client.clone(), opts.timeout)?;
        let channel = format!("{}:events", opts.channel_prefix);
        let tx = broadcast::channel(opts.capacity.max(1)).0;
        let (ready_tx, ready_rx) = oneshot::channel();
        let follower = tokio::spawn(redis_conn::follow(
            client,
            channel.clone(),
            opts.timeout,
            Some(ready_tx),
            Forward { tx: tx.clone() },
        ));
        let _ = tokio::time::timeout(opts.timeout, ready_rx).await;
        Ok(Self {
            conn,
            channel,
            timeout: opts.timeout,
            tx,
            _follower: Arc::new(AbortOnDrop(follower)),
        })
    }
}

#[async_trait]
impl LiveFeed for RedisFeed {
    /// One pipeline per call, so a batch of events costs one round trip and
    /// reaches Redis (and so every subscriber) in order. Errors are
    /// returned, not swallowed: the caller decides whether a lost
    /// notification matters (subscribers recover from the store either way).
    async fn publish(&self, events: &[LiveEvent]) -> PortResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for e in events {
            let json = serde_json::to_vec(e).map_err(|e| PortError::Invalid(format!("live event: {e}")))?;
            pipe.cmd("PUBLISH").arg(&self.channel).arg(json).ignore();
        }
        let mut conn = self.conn.clone();
        bounded(self.timeout, pipe.exec_async(&mut conn))
            .await
            .inspect_err(|_| {
                metrics::counter!(names::CACHE_BACKEND_ERRORS, "backend" => "redis", "op" => "publish").increment(1);
            })
    }

    /// Never opens a connection: it joins the shared broadcast channel. If
    /// the Redis subscription is down at the moment, the stream gets
    /// `Lagged` once it is back.
    async fn subscribe(&self) -> PortResult<BoxStream<'static, FeedItem>> {
        let stream = BroadcastStream::new(self.tx.subscribe()).map(|item| match item {
            Ok(item) => item,
            Err(BroadcastStreamRecvError::Lagged(_)) => FeedItem::Lagged,
        });
        Ok(stream.boxed())
    }
}

/// Forwards the Redis subscription into the broadcast channel.
struct Forward {
    tx: broadcast::Sender<FeedItem>,
}

impl Follower for Forward {
    /// A (re)subscription follows a gap in which events may have been
    /// published and lost, so subscribers are told to re-read. The first
    /// successful one normally has no receivers yet (`connect` waits for
    /// it before returning); when it does, they joined during an outage
    /// and need the signal too.
    async fn subscribed(&mut self) {
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(FeedItem::Lagged);
    }

    async fn message(&mut self, payload: &[u8]) {
        match serde_json::from_slice::<LiveEvent>(payload) {
            Ok(event) => {
                let _ = self.tx.send(FeedItem::Event(event));
            }
            // A message we cannot read (a newer binary's event, say) is
            // one subscribers would miss; tell them so they re-read.
            Err(e) => {
                metrics::counter!(names::CACHE_BACKEND_ERRORS, "backend" => "redis", "op" => "decode").increment(1);
                tracing::warn!(error = %e, "unreadable live event on redis; subscribers told to re-read");
                let _ = self.tx.send(FeedItem::Lagged);
            }
        }
    }
}
