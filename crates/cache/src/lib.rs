//! Cache and fan-out adapters: the `MenuCache` port (menu snapshots by
//! store) and the `LiveFeed` port (live order events to SSE subscribers).
//!
//! Embedded backends are in-process: [`MemoryMenuCache`] on moka and
//! [`BroadcastFeed`] on a tokio broadcast channel. In scale mode Redis backs
//! both (an L2 under the same L1, and pub/sub across instances); that
//! adapter lives here too, so one crate owns the Redis client.

pub mod feed;
pub mod memory;
pub mod redis_cache;
mod redis_conn;
pub mod redis_feed;

pub use feed::BroadcastFeed;
pub use memory::MemoryMenuCache;
pub use redis_cache::{RedisCacheOptions, RedisMenuCache};
pub use redis_feed::{RedisFeed, RedisFeedOptions};

/// Metric names this crate emits beyond `telemetry::names`. They belong in
/// `telemetry::names` (the single list of metric names); they live here
/// until that crate's owners move them, and the values must not change.
pub mod names {
    /// Redis errors and timeouts the cache and feed absorbed, labels
    /// `backend` (`redis`) and `op` (`get`, `set`, `invalidate`, `clear`,
    /// `publish`, `decode`).
    pub const CACHE_BACKEND_ERRORS: &str = "cache_backend_errors_total";
    /// Menu cache L2 lookups (after an L1 miss), label `result` (`hit`, `miss`).
    pub const CACHE_L2_REQUESTS: &str = "cache_l2_requests_total";
}
