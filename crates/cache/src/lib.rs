//! Cache and fan-out adapters: the `MenuCache` port (menu snapshots by
//! store) and the `LiveFeed` port (live order events to SSE subscribers).
//!
//! Embedded backends are in-process: [`MemoryMenuCache`] on moka and
//! [`BroadcastFeed`] on a tokio broadcast channel. In scale mode Redis backs
//! both (an L2 under the same L1, and pub/sub across instances); that
//! adapter lives here too, so one crate owns the Redis client.

mod config;
pub mod feed;
pub mod memory;
pub mod redis_cache;
mod redis_conn;
pub mod redis_feed;

pub use config::{CacheConfig, Caches};
pub use feed::BroadcastFeed;
pub use memory::MemoryMenuCache;
pub use redis_cache::{RedisCacheOptions, RedisMenuCache};
pub use redis_feed::{RedisFeed, RedisFeedOptions};
