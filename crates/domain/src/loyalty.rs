//! Loyalty points (issue 12): a picked-up order whose `customer` names a
//! loyalty account earns points, recorded once per order on our side
//! (`PointsLedger`) and reported to the loyalty service by a job.
//!
//! **The rule** ([`PointsRule`], `[loyalty] points_per_unit`): points per
//! whole currency unit of the order's total, rounded down — a 4.50 order
//! earns 4 points at 1 per unit, a 0.99 one none. Totals are minor units
//! with two decimals, as every currency the menus use.
//!
//! **Once.** The award is made by the pickup outbox's relay
//! (`domain::outbox`), which reads the pickup's live event, written in the
//! pickup's store transaction; the award row's primary key is the order
//! id and the account's points grow in the same transaction as it is
//! inserted, so a relay that replays (a crash before its cursor moved), or
//! runs on two workers at once, adds nothing the second time. Awarding in
//! the pickup's own transaction would have meant giving the store the
//! rule, or every caller of `OrderStore::transition` an award to pass;
//! the relay already reads every pickup exactly for this kind of effect.
//!
//! **Reported** by the `loyalty.report` job (unique per order, enqueued by
//! the relay beside the receipt): at least once, idempotent on the
//! service's side by order id, and marked reported here after.

use async_trait::async_trait;

use crate::ids::OrderId;
use crate::order::OrderStatus;
use crate::ports::{PointsAward, PortResult, Store};

/// `[loyalty]`: how many points a currency unit of a total earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointsRule {
    /// 0 switches awards off.
    pub points_per_unit: u32,
}

impl Default for PointsRule {
    fn default() -> Self {
        Self { points_per_unit: 1 }
    }
}

impl PointsRule {
    /// The points a total of `total` minor units earns (rounded down).
    pub fn points(&self, total: i64) -> i64 {
        (total.max(0) / 100).saturating_mul(i64::from(self.points_per_unit))
    }
}

/// The loyalty service, for reporting the points an order earned.
#[async_trait]
pub trait PointsSink: Send + Sync {
    /// Tell the service that `account` earned `points` with `order`. The
    /// service applies a report once per order id, so a repeat is harmless.
    async fn report_points(&self, account: &str, order: OrderId, points: i64) -> PortResult<()>;
}

/// Award the points `order` earned, if it is picked up and its customer
/// names a known loyalty account; answers the order's award (new, or the
/// one an earlier run made), or `None` when it earns none.
pub async fn award(store: &dyn Store, rule: PointsRule, order: OrderId, now: i64) -> PortResult<Option<PointsAward>> {
    if let Some(done) = store.order_award(order).await? {
        return Ok(Some(done));
    }
    let Some(o) = store.get_order(order).await? else {
        return Ok(None);
    };
    if o.status != OrderStatus::PickedUp {
        return Ok(None);
    }
    let Some(account) = o.customer.as_deref().filter(|c| !c.contains('@')) else {
        return Ok(None);
    };
    if store.loyalty_account(account).await?.is_none() {
        return Ok(None);
    }
    let points = rule.points(o.total);
    if points <= 0 {
        return Ok(None);
    }
    let award = PointsAward {
        order_id: order,
        account_id: account.to_owned(),
        points,
        awarded_at: now,
        reported_at: None,
    };
    if store.award_points(&award).await? {
        tracing::info!(order = %order, account, points, "loyalty points awarded");
        Ok(Some(award))
    } else {
        // Another relay got there first: its award is the one.
        store.order_award(order).await
    }
}

/// The `loyalty.report` job's body: report `order`'s award unless the
/// service already has it. `Ok(false)` when there is nothing to report.
pub async fn report(store: &dyn Store, sink: &dyn PointsSink, order: OrderId, now: i64) -> PortResult<bool> {
    let Some(award) = store.order_award(order).await? else {
        return Ok(false);
    };
    if award.reported_at.is_some() {
        return Ok(false);
    }
    sink.report_points(&award.account_id, order, award.points).await?;
    store.mark_reported(order, now).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_per_whole_unit_rounded_down() {
        let one = PointsRule::default();
        assert_eq!([0, 99, 100, 450, 1_999].map(|t| one.points(t)), [0, 0, 1, 4, 19]);
        let ten = PointsRule { points_per_unit: 10 };
        assert_eq!(ten.points(450), 40);
        assert_eq!(PointsRule { points_per_unit: 0 }.points(10_000), 0);
        assert_eq!(one.points(-500), 0, "a negative total earns nothing");
    }
}
