//! In-process menu cache on moka: bounded, TTL'd, and single-flight — moka
//! runs one loader per missing key and makes every concurrent caller wait
//! for it, so a cold cache under a rush costs one store query per store.
//!
//! What leaves the cache is counted by cause (`cache_evictions_total`,
//! moka's eviction listener), and each store's load time is kept in the
//! live figures so `GET /v1/admin/cache` can show entry ages.

use async_trait::async_trait;
use domain::MenuSnapshot;
use domain::ids::StoreId;
use domain::ports::{MenuCache, MenuLoad, PortError, PortResult};
use moka::future::Cache;
use moka::notification::RemovalCause;
use std::sync::Arc;
use std::time::Duration;
use telemetry::names;

#[derive(Clone)]
pub struct MemoryMenuCache {
    menus: Cache<StoreId, Arc<MenuSnapshot>>,
}

impl MemoryMenuCache {
    /// `ttl` bounds how stale a menu can get if an invalidation is ever
    /// missed; invalidation on change is the normal path.
    pub fn new(ttl: Duration, max_stores: u64) -> Self {
        Self {
            menus: Cache::builder()
                .max_capacity(max_stores)
                .time_to_live(ttl)
                .eviction_listener(evicted)
                .build(),
        }
    }
}

/// Count what left the cache, and why; a replaced entry is still cached
/// (its new load time was recorded by the loader).
fn evicted(store: Arc<StoreId>, _menu: Arc<MenuSnapshot>, cause: RemovalCause) {
    let cause_label = match cause {
        RemovalCause::Expired => "expired",
        RemovalCause::Size => "size",
        RemovalCause::Explicit => "explicit",
        RemovalCause::Replaced => "replaced",
    };
    metrics::counter!(names::CACHE_EVICTIONS, "cache" => "menu", "cause" => cause_label).increment(1);
    if cause != RemovalCause::Replaced {
        telemetry::figures().forget_cache_entry(store.as_str());
    }
}

#[async_trait]
impl MenuCache for MemoryMenuCache {
    async fn get_or_load(&self, store: &StoreId, load: MenuLoad<'_>) -> PortResult<Arc<MenuSnapshot>> {
        if let Some(hit) = self.menus.get(store).await {
            metrics::counter!(names::CACHE_REQUESTS, "result" => "hit").increment(1);
            telemetry::figures().record_cache(store.as_str(), true);
            return Ok(hit);
        }
        metrics::counter!(names::CACHE_REQUESTS, "result" => "miss").increment(1);
        telemetry::figures().record_cache(store.as_str(), false);
        let loading = store.clone();
        self.menus
            .try_get_with(store.clone(), async move {
                let menu = load.await?;
                telemetry::figures().record_cache_load(loading.as_str(), domain::ports::system_now_ms());
                Ok(menu)
            })
            .await
            .map_err(|e: Arc<PortError>| (*e).clone())
    }

    async fn invalidate(&self, store: &StoreId) -> PortResult<()> {
        metrics::counter!(names::CACHE_INVALIDATIONS).increment(1);
        self.menus.invalidate(store).await;
        Ok(())
    }

    async fn clear(&self) -> PortResult<()> {
        self.menus.invalidate_all();
        Ok(())
    }

    async fn health(&self) -> PortResult<()> {
        Ok(())
    }
}
