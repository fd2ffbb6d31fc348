//! Redis plumbing shared by the Redis adapters of the session store and
//! the rate limiter: parsing the URL, a lazily connecting multiplexed
//! connection, one deadline per call, and the translation of
//! `redis::RedisError` into `PortError` (always `Unavailable`: a Redis
//! failure is the state of a server or a network, which may change).
//!
//! Connections are lazy (`ConnectionManager::new_lazy_with_config`) so an
//! instance starts while Redis is down and picks it up when it returns;
//! failing at start instead would turn a Redis outage into a boot loop.
//! Connecting has its own, longer timeout than a call: a call that gives up
//! early leaves the connection attempt to finish for the next one, whereas
//! a connect timeout as short as a hot-path call (50 ms for the rate
//! limiter) would never connect across a slow network at all.

use std::future::Future;
use std::time::Duration;

use domain::ports::{PortError, PortResult};
use redis::RedisResult;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Parses the URL without connecting. A malformed URL is a configuration
/// mistake that retrying cannot fix, hence `Invalid`. The URL itself is not
/// echoed (it may carry a password); the client's parse errors do not
/// include it either.
pub fn client(url: &str) -> PortResult<redis::Client> {
    redis::Client::open(url).map_err(|e| PortError::Invalid(format!("redis url: {e}")))
}

/// A multiplexed connection to `url` that connects on first use and
/// reconnects after failures. The manager retries a connection once, with
/// a short delay: every call is bounded by [`bounded`] anyway, so a caller
/// never waits on its retries.
pub fn lazy_manager(url: &str) -> PortResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client(url)?, config).map_err(unavailable)
}

pub fn unavailable(e: redis::RedisError) -> PortError {
    PortError::Unavailable(format!("redis: {e}"))
}

/// Runs one Redis call with a hard deadline and maps its error.
pub async fn bounded<T>(timeout: Duration, call: impl Future<Output = RedisResult<T>>) -> PortResult<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(PortError::Unavailable(format!("redis: no answer within {timeout:?}"))),
    }
}
