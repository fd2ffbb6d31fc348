//! In-process menu cache on moka: bounded, TTL'd, and single-flight — moka
//! runs one loader per missing key and makes every concurrent caller wait
//! for it, so a cold cache under a rush costs one store query per store.

use async_trait::async_trait;
use domain::MenuSnapshot;
use domain::ids::StoreId;
use domain::ports::{MenuCache, MenuLoad, PortError, PortResult};
use moka::future::Cache;
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
            menus: Cache::builder().max_capacity(max_stores).time_to_live(ttl).build(),
        }
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
        self.menus
            .try_get_with(store.clone(), load)
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
