//! `CacheConfig`: the menu cache and live-event feed a process runs, and
//! `build()`, which sets both up. In-process (`Memory`) for the embedded
//! mode; over Redis (`Redis`) so every instance shares invalidations and
//! live events. The binary turns `cache.url` into one of these at
//! configuration load, rather than comparing the URL with `memory://` in
//! the wiring.

use std::sync::Arc;
use std::time::Duration;

use domain::ports::{LiveFeed, MenuCache, PortError};

use crate::{BroadcastFeed, MemoryMenuCache, RedisCacheOptions, RedisFeed, RedisFeedOptions, RedisMenuCache};

/// The caches to set up.
#[derive(Debug, Clone)]
pub enum CacheConfig {
    /// In-process menu cache and broadcast feed.
    Memory {
        menu_ttl: Duration,
        max_stores: u64,
        /// Events buffered per live subscriber.
        feed_capacity: usize,
    },
    /// An in-process L1 over Redis, and live events over Redis pub/sub.
    Redis {
        url: String,
        cache: RedisCacheOptions,
        feed: RedisFeedOptions,
    },
}

/// The two ports a `CacheConfig` builds.
#[derive(Clone)]
pub struct Caches {
    pub menus: Arc<dyn MenuCache>,
    pub feed: Arc<dyn LiveFeed>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

impl CacheConfig {
    /// Set up the menu cache and the live feed. Redis connects lazily: an
    /// instance starts (and serves from its own memory and the store) while
    /// Redis is down.
    pub async fn build(&self) -> Result<Caches, PortError> {
        match self {
            CacheConfig::Memory {
                menu_ttl,
                max_stores,
                feed_capacity,
            } => Ok(Caches {
                menus: Arc::new(MemoryMenuCache::new(*menu_ttl, *max_stores)),
                feed: Arc::new(BroadcastFeed::new(*feed_capacity)),
            }),
            CacheConfig::Redis { url, cache, feed } => Ok(Caches {
                menus: Arc::new(RedisMenuCache::connect(url, cache.clone()).await?),
                feed: Arc::new(RedisFeed::connect(url, feed.clone()).await?),
            }),
        }
    }
}
