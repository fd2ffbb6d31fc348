//! `PointsLedger`: the loyalty points picked-up orders earned
//! (`domain::loyalty`), one award per order, added to the account's points
//! when recorded. A port of its own (not more methods on `AccountStore`,
//! which mirrors the loyalty service): these rows are ours until the
//! service has them.

use async_trait::async_trait;

use super::{PortResult, StoreBackend};
use crate::ids::OrderId;

/// The points one order earned for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsAward {
    pub order_id: OrderId,
    pub account_id: String,
    pub points: i64,
    pub awarded_at: i64,
    /// When the loyalty service acknowledged it (`None` until then).
    pub reported_at: Option<i64>,
}

#[async_trait]
pub trait PointsLedger: StoreBackend {
    /// Record `award` and add its points to its account, in one
    /// transaction, once per order: `false` (and nothing changed) when the
    /// order already has an award.
    async fn award_points(&self, award: &PointsAward) -> PortResult<bool>;

    /// The award of `order`, if it earned one.
    async fn order_award(&self, order: OrderId) -> PortResult<Option<PointsAward>>;

    /// An account's awards, newest first.
    async fn account_awards(&self, account: &str, limit: u32) -> PortResult<Vec<PointsAward>>;

    /// The loyalty service acknowledged `order`'s award at `at`.
    async fn mark_reported(&self, order: OrderId, at: i64) -> PortResult<()>;
}
