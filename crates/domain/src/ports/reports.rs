//! `ReportStore`: what the screens read in aggregate rather than order by
//! order: recent prep times (ready-time estimates), a store's day in
//! figures (the manager page), and its best sellers (the menu's "popular
//! now" row, computed by the `popular.refresh` job and kept in a small
//! table). A port of its own: none of it is on an order's path, and a
//! backend may one day serve it from a replica or a warehouse.

use async_trait::async_trait;

use super::{PortResult, StoreBackend};
use crate::ids::StoreId;
use crate::menu::Station;

/// How long one line took: from its order's confirmation to the line's
/// ticket done (epoch ms difference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepSample {
    pub station: Station,
    pub ms: i64,
}

/// One elapsed hour of a store's day: `[start + hour h, start + hour h+1)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HourRow {
    /// Hours since the day's start (0.., 23 or 25 hours on DST days).
    pub hour: u32,
    pub orders: u64,
    pub ready: u64,
    pub picked_up: u64,
    pub cancelled: u64,
    pub rejected: u64,
    /// Time to ready (ready_at − placed_at) of the hour's orders that got
    /// ready: mean and 90th percentile (nearest rank), ms.
    pub avg_ready_ms: Option<f64>,
    pub p90_ready_ms: Option<f64>,
}

/// A store's day as the backend aggregated it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayRows {
    /// Only hours with orders, by hour.
    pub hours: Vec<HourRow>,
    /// Time to ready over the whole day, ms.
    pub avg_ready_ms: Option<f64>,
    pub p90_ready_ms: Option<f64>,
}

/// A best seller: quantity sold of one sku.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopularItem {
    pub sku: String,
    pub name: String,
    pub count: u64,
}

#[async_trait]
pub trait ReportStore: StoreBackend {
    /// Prep samples of `store`'s lines done at or after `since`, the newest
    /// `per_station` of each station.
    async fn prep_samples(&self, store: &StoreId, since: i64, per_station: u32) -> PortResult<Vec<PrepSample>>;

    /// The orders of `store` placed in `[start, end)`, aggregated per
    /// elapsed hour since `start` and over the whole span, in at most two
    /// queries (never a row per order).
    async fn day_rows(&self, store: &StoreId, start: i64, end: i64) -> PortResult<DayRows>;

    /// The `limit` skus of `store` sold most (by quantity) in orders placed
    /// at or after `since` that were not rejected or cancelled; most first,
    /// ties by sku.
    async fn top_items(&self, store: &StoreId, since: i64, limit: u32) -> PortResult<Vec<PopularItem>>;

    /// Replace `store`'s kept popular items with `items` (in rank order).
    async fn save_popular(&self, store: &StoreId, items: &[PopularItem], computed_at: i64) -> PortResult<()>;

    /// `store`'s kept popular items in rank order, and when they were
    /// computed (`None` if never).
    async fn popular(&self, store: &StoreId) -> PortResult<(Vec<PopularItem>, Option<i64>)>;
}
