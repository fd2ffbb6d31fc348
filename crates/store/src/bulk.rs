//! The backend-independent half of the store's bulk writes: de-duplicating
//! a call's rows before they meet `ON CONFLICT`, the outcomes a payment
//! callback can have and the counts that follow from them, which of an
//! order's payment events sets its status, and which orders the cleanup
//! may delete. Both backends use these, so the SQL is theirs
//! but the rules read the same whichever database runs them.
//!
//! De-duplication matters for correctness, not only speed: PostgreSQL
//! refuses an `ON CONFLICT DO UPDATE` that would touch one row twice in a
//! statement, and a batch's counts must not depend on whether a repeat was
//! caught by the database or by us.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use domain::events::PaymentV1;
use domain::menu::{Category, Item};
use domain::ops::LoyaltyAccount;
use domain::order::OrderStatus;
use domain::ports::PaymentsApplied;

use crate::decode::{DecodeError, invalid};

/// A payment event that set its order's payment status.
pub(crate) const APPLIED: &str = "applied";
/// A `paid` event whose amount or currency differ from the order's.
pub(crate) const AMOUNT_MISMATCH: &str = "amount_mismatch";
/// An event for an order the store does not have.
pub(crate) const UNKNOWN_ORDER: &str = "unknown_order";

/// The `outcome` of a payment event being recorded, as SQL both backends
/// accept: `p` is the incoming event (`status`, `amount`, `currency`) and
/// `o` its order, LEFT JOINed (all NULL when there is none).
pub(crate) const OUTCOME_SQL: &str = "CASE WHEN o.id IS NULL THEN 'unknown_order' \
     WHEN p.status = 'paid' AND (p.amount <> o.total OR p.currency <> o.currency) THEN 'amount_mismatch' \
     ELSE 'applied' END";

/// The first occurrence of each `event_id`, in batch order. The repeats
/// are duplicates whatever the database says.
pub(crate) fn unique_payments(payments: &[PaymentV1]) -> Vec<&PaymentV1> {
    let mut seen = std::collections::HashSet::with_capacity(payments.len());
    payments.iter().filter(|p| seen.insert(p.event_id.as_str())).collect()
}

/// The counts of a batch of `total` payments of which the database newly
/// recorded those in `recorded` (by outcome); everything else was a
/// duplicate.
pub(crate) fn count_outcomes<'a>(
    total: usize,
    recorded: impl IntoIterator<Item = (&'a str, usize)>,
) -> Result<PaymentsApplied, DecodeError> {
    let mut out = PaymentsApplied::default();
    let mut new = 0;
    for (outcome, n) in recorded {
        match outcome {
            APPLIED => out.applied += n,
            AMOUNT_MISMATCH => out.mismatched += n,
            UNKNOWN_ORDER => out.unknown_order += n,
            other => return Err(invalid("payment outcome", other)),
        }
        new += n;
    }
    out.duplicates = total.saturating_sub(new);
    Ok(out)
}

/// Payment events of one order, newest first, as SQL both backends accept
/// for an `ORDER BY` over rows aliased `alias` (`provider_ts`, `status`):
/// the provider's timestamp decides, not the order of arrival (callbacks
/// come out of order, and a late `failed` must not undo a `paid`). Its
/// timestamps are whole seconds, so two events of one second are ranked
/// by the lifecycle a payment follows: a refund comes after a payment,
/// and a payment after a failed attempt.
pub(crate) fn newest_payment_first(alias: &str) -> String {
    format!(
        "{alias}.provider_ts DESC, CASE {alias}.status WHEN 'refunded' THEN 3 WHEN 'paid' THEN 2 \
         WHEN 'failed' THEN 1 ELSE 0 END DESC"
    )
}

/// The orders whose payment history the batch's applied events changed
/// (`unique` in batch order, `outcomes` by event id for those newly
/// recorded), each once, in the order their first event came. Their
/// status is then settled from the whole history (`newest_payment_first`).
pub(crate) fn orders_with_applied_payments(
    unique: &[&PaymentV1],
    outcomes: &HashMap<String, String>,
) -> Vec<domain::ids::OrderId> {
    let mut seen = std::collections::HashSet::new();
    unique
        .iter()
        .filter(|p| outcomes.get(&p.event_id).map(String::as_str) == Some(APPLIED))
        .map(|p| p.order_id)
        .filter(|o| seen.insert(*o))
        .collect()
}

/// One row per key, the last occurrence winning (what upserting them one
/// after the other would leave), in first-seen order.
fn last_wins<'a, T, K: std::hash::Hash + Eq>(rows: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut at: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<&T> = Vec::with_capacity(rows.len());
    for r in rows {
        match at.entry(key(r)) {
            Entry::Occupied(e) => out[*e.get()] = r,
            Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(r);
            }
        }
    }
    out
}

/// Items by sku, the last copy of a sku winning.
pub(crate) fn unique_items(items: &[Item]) -> Vec<&Item> {
    last_wins(items, |i| i.sku.as_str())
}

/// Categories by code, the last copy of a code winning.
pub(crate) fn unique_categories(categories: &[Category]) -> Vec<&Category> {
    last_wins(categories, |c| c.code.as_str())
}

/// Accounts by id, the highest `version` winning (the first of equals, as
/// the "only a newer version overwrites" rule would keep it).
pub(crate) fn unique_accounts(accounts: &[LoyaltyAccount]) -> Vec<&LoyaltyAccount> {
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(accounts.len());
    let mut out: Vec<&LoyaltyAccount> = Vec::with_capacity(accounts.len());
    for a in accounts {
        match at.entry(a.id.as_str()) {
            Entry::Occupied(e) => {
                let slot = &mut out[*e.get()];
                if slot.version < a.version {
                    *slot = a;
                }
            }
            Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(a);
            }
        }
    }
    out
}

/// The statuses of finished orders, which the nightly cleanup may delete.
pub(crate) fn finished_statuses() -> Vec<&'static str> {
    OrderStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(OrderStatus::as_str)
        .collect()
}

/// Every status with its count (zero when absent), in `OrderStatus::ALL`
/// order, from `(status, count)` rows.
pub(crate) fn all_counts(
    rows: impl IntoIterator<Item = (String, i64)>,
) -> Result<Vec<(OrderStatus, u64)>, DecodeError> {
    let mut counts: Vec<(OrderStatus, u64)> = OrderStatus::ALL.into_iter().map(|s| (s, 0)).collect();
    for (status, n) in rows {
        let status = crate::decode::status(&status)?;
        let n = crate::decode::u64_of("order count", n)?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::events::PaymentStatus;
    use domain::ids::OrderId;

    fn pay(event: &str, order: OrderId, status: PaymentStatus) -> PaymentV1 {
        PaymentV1 {
            event_id: event.into(),
            order_id: order,
            status,
            amount: 100,
            currency: "USD".into(),
            provider_ts: 1,
            received_at: 2,
        }
    }

    #[test]
    fn repeats_are_dropped_and_orders_with_applied_events_are_settled_once() {
        let (a, b) = (OrderId::new(), OrderId::new());
        let batch = [
            pay("e1", a, PaymentStatus::Paid),
            pay("e1", a, PaymentStatus::Failed),
            pay("e2", b, PaymentStatus::Paid),
            pay("e3", a, PaymentStatus::Refunded),
            pay("e4", b, PaymentStatus::Failed),
        ];
        let unique = unique_payments(&batch);
        assert_eq!(
            unique.iter().map(|p| p.event_id.as_str()).collect::<Vec<_>>(),
            ["e1", "e2", "e3", "e4"]
        );
        // e4 was recorded as an unknown order's: it sets nothing.
        let outcomes: HashMap<String, String> =
            [("e1", APPLIED), ("e2", APPLIED), ("e3", APPLIED), ("e4", UNKNOWN_ORDER)]
                .into_iter()
                .map(|(e, o)| (e.to_owned(), o.to_owned()))
                .collect();
        assert_eq!(orders_with_applied_payments(&unique, &outcomes), vec![a, b]);
        let only_unknown: HashMap<String, String> = [("e4".to_owned(), UNKNOWN_ORDER.to_owned())].into();
        assert_eq!(orders_with_applied_payments(&unique, &only_unknown), vec![]);

        let counts = count_outcomes(batch.len(), [(APPLIED, 3), (UNKNOWN_ORDER, 1)]).unwrap();
        assert_eq!(
            counts,
            PaymentsApplied {
                applied: 3,
                duplicates: 1,
                unknown_order: 1,
                mismatched: 0
            }
        );
        assert!(count_outcomes(1, [("teleported", 1)]).is_err());
    }

    #[test]
    fn accounts_keep_the_newest_version_and_items_the_last_copy() {
        let acct = |id: &str, version: i64, name: &str| LoyaltyAccount {
            id: id.into(),
            email: None,
            name: name.into(),
            tier: "gold".into(),
            points: 0,
            version,
        };
        let batch = [
            acct("a", 2, "new"),
            acct("b", 1, "b"),
            acct("a", 1, "old"),
            acct("a", 2, "same"),
        ];
        let got: Vec<_> = unique_accounts(&batch).into_iter().map(|a| a.name.as_str()).collect();
        assert_eq!(got, ["new", "b"]);

        let mut latte = domain::menu::demo_menu().items[0].clone();
        let first = latte.clone();
        latte.name = "Latte grande".into();
        let items = [first, latte.clone()];
        assert_eq!(unique_items(&items), vec![&latte]);
    }

    #[test]
    fn finished_orders_are_the_terminal_ones() {
        assert_eq!(finished_statuses(), ["rejected", "picked_up", "cancelled", "expired"]);
        let counts = all_counts([("ready".to_owned(), 2), ("expired".to_owned(), 5)]).unwrap();
        assert_eq!(counts.len(), OrderStatus::ALL.len());
        assert!(counts.contains(&(OrderStatus::Ready, 2)));
        assert!(counts.contains(&(OrderStatus::Placed, 0)));
        assert!(all_counts([("teleported".to_owned(), 1)]).is_err());
    }
}
