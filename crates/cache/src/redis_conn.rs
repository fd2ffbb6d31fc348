//! Plumbing shared by the Redis adapters (`RedisMenuCache`, `RedisFeed`):
//! connecting lazily, bounding every call by a timeout, translating
//! `redis::RedisError` into `PortError` at the boundary, and the long-lived
//! pub/sub follower task that resubscribes with backoff.
//!
//! Both adapters connect lazily (`ConnectionManager::new_lazy_with_config`)
//! so an instance can start while Redis is down and pick it up when it
//! returns; the alternative, failing `connect`, would turn a cache outage
//! into a boot loop, which §5 of the product spec rules out.

use domain::ports::PortError;
use futures::StreamExt;
use redis::RedisResult;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often an idle subscription is pinged. A half-open TCP connection
/// (Redis restarted behind a NAT, say) never ends the message stream on its
/// own; without the ping a follower could wait forever on a dead socket.
const HEARTBEAT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Parses the URL without connecting. A malformed URL is a configuration
/// mistake that retrying cannot fix, hence `Invalid`. The URL itself is not
/// echoed (it may carry a password); the client's parse errors do not
/// include it either.
///
/// `rediss://` connects with TLS (rustls, ring): the server's certificate
/// is checked against the system's roots, or only against the CAs in
/// `tls_ca_file` when one is given (the CA is read now, so a missing file
/// fails at start-up rather than at the first cache miss).
pub(crate) fn client(url: &str, tls_ca_file: Option<&Path>) -> Result<redis::Client, PortError> {
    let invalid = |e: redis::RedisError| PortError::Invalid(format!("redis url: {e}"));
    let Some(ca) = tls_ca_file else {
        return redis::Client::open(url).map_err(invalid);
    };
    if !url.starts_with("rediss://") {
        return Err(PortError::Invalid(
            "a Redis TLS CA file is given, but the URL is not rediss://".into(),
        ));
    }
    let root = std::fs::read(ca).map_err(|e| PortError::Invalid(format!("redis TLS CA file {}: {e}", ca.display())))?;
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root),
    };
    redis::Client::build_with_tls(url, certs).map_err(invalid)
}

/// A multiplexed connection that (re)connects on demand. The manager's own
/// retries are kept short because every call is also bounded by `timeout`
/// here: a caller must never wait on Redis longer than that.
pub(crate) fn manager(client: redis::Client, timeout: Duration) -> Result<ConnectionManager, PortError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)
}

pub(crate) fn unavailable(e: redis::RedisError) -> PortError {
    PortError::Unavailable(format!("redis: {e}"))
}

/// Runs one Redis call with a hard deadline and maps its error.
pub(crate) async fn bounded<T>(timeout: Duration, call: impl Future<Output = RedisResult<T>>) -> Result<T, PortError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(PortError::Unavailable(format!("redis: no answer within {timeout:?}"))),
    }
}

/// Aborts a background task when the last handle of its owner is dropped,
/// so a dropped adapter does not leave a subscriber reconnecting forever.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a pub/sub follower does with its subscription.
pub(crate) trait Follower: Send + 'static {
    /// Called after every successful (re)subscription. Messages published
    /// while the follower was not subscribed are lost, so this is where it
    /// makes up for them.
    fn subscribed(&mut self) -> impl Future<Output = ()> + Send;

    fn message(&mut self, payload: &[u8]) -> impl Future<Output = ()> + Send;
}

/// Follows `channel` until the task is aborted: subscribe, hand every
/// message to `follower`, and on any failure wait (exponential backoff,
/// capped) and subscribe again. `ready` fires after the first successful
/// subscription so a constructor can wait for it.
pub(crate) async fn follow(
    client: redis::Client,
    channel: String,
    timeout: Duration,
    mut ready: Option<oneshot::Sender<()>>,
    mut follower: impl Follower,
) {
    let mut delay = BACKOFF_MIN;
    loop {
        let subscribed = bounded(timeout, async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            sink.subscribe(&channel).await?;
            Ok((sink, stream))
        })
        .await;
        match subscribed {
            Ok((mut sink, mut stream)) => {
                delay = BACKOFF_MIN;
                follower.subscribed().await;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                tracing::debug!(%channel, "redis subscription established");
                let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
                heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(msg) => follower.message(msg.get_payload_bytes()).await,
                            None => break,
                        },
                        _ = heartbeat.tick() => {
                            if let Err(e) = bounded(timeout, sink.ping::<redis::Value>()).await {
                                tracing::warn!(%channel, error = %e, "redis subscription heartbeat failed");
                                break;
                            }
                        }
                    }
                }
                tracing::warn!(%channel, "redis subscription dropped; resubscribing");
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, retry_in = ?delay, "cannot subscribe to redis channel");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}
