//! Contract suites for the store ports: the behaviour every backend
//! (SQLite and PostgreSQL) must show, one module per narrow port —
//! `orders` (`OrderStore`), `menus` (`MenuStore`), `accounts`
//! (`AccountStore`), `ops` (`OpsStore`) and `identity` (`UserStore` and
//! `AuditLog`), `reports` (`ReportStore`), `fleet` (`Fleet`) and `points`
//! (`PointsLedger`) — each case a plain `async fn` taking a fresh, empty store. A case takes the narrowest port it can: the
//! order and operations cases set their scene through other ports too
//! (prune needs orders), so they take the whole `Store`.
//!
//! Each module owns its case list (`order_store_cases!`,
//! `menu_store_cases!`, `account_store_cases!`, `ops_store_cases!`,
//! `identity_cases!`);
//! `store_contract_cases!` hands every list to one callback, once per port,
//! as `port: case, case, ...`. A backend's `tests/it` runs the cases one
//! test each, so a failure is named:
//!
//! ```text
//! macro_rules! contract {
//!     ($port:ident: $($case:ident),* $(,)?) => {
//!         mod $port {$(
//!             #[tokio::test]
//!             async fn $case() {
//!                 let (_guard, store) = crate::fresh_store();
//!                 testkit::store::$port::$case(store).await;
//!             }
//!         )*}
//!     };
//! }
//! testkit::store_contract_cases!(contract);
//! ```
//!
//! or runs them all in one test with `run_all` and checks that it built one
//! store per name in `cases()`. Both read the same lists, so a case added to
//! a module cannot be forgotten by a backend, nor a port's suite by the
//! aggregate (`every_case_is_listed_once` below).
//!
//! Contract details a backend might otherwise get subtly different: orders
//! list newest first by id (UUIDv7, so by time); events are numbered by the
//! store in commit order; `load_menu` returns categories by `(position,
//! code)` and items in the order they were upserted; `payment_status` of a
//! newly applied order is `unpaid`; payments change no order status and
//! emit no live events; `apply_menu_diff` on an unknown store is
//! `NotFound`; `order_counts` lists every status (zeros included) in
//! `OrderStatus::ALL` order; `expire_ready`'s events follow order-id order.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use domain::events::{LiveEvent, LiveEventKind, OrderPlacedV1, PaymentV1};
use domain::ids::{OrderId, StoreId};
use domain::menu::demo_menu;
use domain::order::{self, Action, Order, OrderStatus, TicketStatus, Timestamps};
use domain::ports::{ApplyBatch, BatchApplied, Decided, Decision, EventScope, OrderFilter, PaymentsApplied, Store};

use crate::fixtures::placed_order;

pub type Stores = Arc<dyn Store>;

/// The names of one port's cases (`port: case, ...`), for its `CASES`.
macro_rules! case_names {
    ($port:ident: $($case:ident),* $(,)?) => { &[$(stringify!($case)),*] };
}

pub mod accounts;
pub mod fleet;
pub mod identity;
pub mod menus;
pub mod ops;
pub mod orders;
pub mod points;
pub mod reports;
pub mod webhooks;

/// Calls `$callback! { port: case, case, ... }` once per store port, with
/// that port's cases.
#[macro_export]
macro_rules! store_contract_cases {
    ($callback:ident) => {
        $crate::order_store_cases!($callback);
        $crate::menu_store_cases!($callback);
        $crate::account_store_cases!($callback);
        $crate::ops_store_cases!($callback);
        $crate::identity_cases!($callback);
        $crate::report_store_cases!($callback);
        $crate::webhook_store_cases!($callback);
        $crate::fleet_cases!($callback);
        $crate::points_cases!($callback);
    };
}

/// Every case of every store port as `port::case`, in the order `run_all`
/// runs them.
pub fn cases() -> Vec<&'static str> {
    let mut names = Vec::new();
    macro_rules! collect {
        ($port:ident: $($case:ident),* $(,)?) => {$(
            names.push(concat!(stringify!($port), "::", stringify!($case)));
        )*};
    }
    store_contract_cases!(collect);
    names
}

/// Run every case of every store port, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Stores>,
{
    macro_rules! run {
        ($port:ident: $($case:ident),* $(,)?) => {$(
            $port::$case(make().await).await;
        )*};
    }
    store_contract_cases!(run);
}

const GROUP: &str = "order-processors";

fn demo_store() -> StoreId {
    demo_menu().store.id
}

fn uptown() -> StoreId {
    StoreId("uptown".into())
}

fn confirm(p: &OrderPlacedV1) -> Decided {
    Decided {
        placed: p.clone(),
        decision: Decision::Confirm,
        trace: None,
    }
}

fn reject(p: &OrderPlacedV1, reason: &str) -> Decided {
    Decided {
        placed: p.clone(),
        decision: Decision::Reject(reason.into()),
        trace: None,
    }
}

/// A placed order for another store than the demo one.
fn placed_at_store(n: usize, at: i64, store: StoreId) -> OrderPlacedV1 {
    OrderPlacedV1 {
        store,
        ..placed_order(n, at)
    }
}

/// The order as the store must hold it right after the processor decided.
fn expected_order(p: &OrderPlacedV1, decision: &Decision, now: i64) -> Order {
    let (status, reason, ticket) = match decision {
        Decision::Confirm => (OrderStatus::Confirmed, None, Some(TicketStatus::Queued)),
        Decision::Reject(r) => (OrderStatus::Rejected, Some(r.clone()), None),
    };
    let mut at = Timestamps {
        placed_at: p.placed_at,
        ..Timestamps::default()
    };
    order::stamp(&mut at, status, now);
    Order {
        id: p.order_id,
        store: p.store.clone(),
        customer: p.customer.clone(),
        status,
        reject_reason: reason,
        payment_status: "unpaid".into(),
        currency: p.currency.clone(),
        total: p.total,
        lines: p.lines.iter().map(|l| l.to_line(ticket)).collect(),
        at,
        name: p.name.clone(),
        // The n-th confirmed order of its store's day gets `PickupCode::nth(n)`;
        // a case that knows n sets it (`with_code`).
        pickup_code: None,
        cancel_reason: None,
    }
}

/// `order` with pickup code number `n` of its day.
fn with_code(order: Order, n: u32) -> Order {
    Order {
        pickup_code: Some(domain::pickup::PickupCode::nth(n).into_string()),
        ..order
    }
}

/// `event` carrying pickup code number `n` of its day.
fn event_with_code(event: LiveEvent, n: u32) -> LiveEvent {
    LiveEvent {
        pickup_code: Some(domain::pickup::PickupCode::nth(n).into_string()),
        ..event
    }
}

fn status_event(id: i64, p: &OrderPlacedV1, status: OrderStatus, at: i64) -> LiveEvent {
    LiveEvent {
        id,
        kind: LiveEventKind::Status,
        order_id: p.order_id,
        store: p.store.clone(),
        status,
        line: None,
        station: None,
        ticket: None,
        at,
        pickup_code: None,
        name: p.name.clone(),
    }
}

async fn apply(store: &Stores, partition: u32, next: u64, orders: &[Decided], now: i64) -> BatchApplied {
    store
        .apply_batch(ApplyBatch {
            orders,
            ..ApplyBatch::new(GROUP, partition, next, now)
        })
        .await
        .expect("apply_batch")
}

async fn order_events(store: &Stores, id: OrderId) -> Vec<LiveEvent> {
    store
        .events_after(&EventScope::Order(id), 0, 1000)
        .await
        .expect("events_after")
}

fn assert_increasing(events: &[LiveEvent]) {
    assert!(
        events.windows(2).all(|w| w[0].id < w[1].id),
        "event ids must grow in commit order: {:?}",
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

fn filter(store: Option<StoreId>, status: Option<OrderStatus>, limit: u32) -> OrderFilter {
    OrderFilter {
        store,
        status,
        before: None,
        limit,
        pickup_code: None,
        placed_since: None,
    }
}

/// Every id `list_orders` yields for `base`, page by page, asserting the
/// page size is respected and that no id is repeated across pages.
async fn all_pages(store: &Stores, base: OrderFilter) -> Vec<OrderId> {
    let mut out: Vec<OrderId> = Vec::new();
    let mut seen = HashSet::new();
    let mut before = None;
    loop {
        let page = store
            .list_orders(&OrderFilter { before, ..base.clone() })
            .await
            .expect("list_orders");
        assert!(page.len() <= base.limit as usize, "a page holds at most `limit` orders");
        for s in &page {
            assert!(seen.insert(s.id), "order {} listed twice across pages", s.id);
            out.push(s.id);
        }
        match page.last() {
            Some(last) => before = Some(last.id),
            None => break,
        }
    }
    out
}

// ------------------------------------------------------ payments, for orders and ops

fn counts(applied: usize, duplicates: usize, unknown_order: usize, mismatched: usize) -> PaymentsApplied {
    PaymentsApplied {
        applied,
        duplicates,
        unknown_order,
        mismatched,
    }
}

/// A batch of payments alone, on partition 0.
async fn pay(store: &Stores, next: u64, payments: &[PaymentV1], now: i64) -> BatchApplied {
    store
        .apply_batch(ApplyBatch {
            payments,
            ..ApplyBatch::new(GROUP, 0, next, now)
        })
        .await
        .expect("apply_batch with payments")
}

async fn payment_status(store: &Stores, id: OrderId) -> String {
    store
        .get_order(id)
        .await
        .expect("get_order")
        .expect("order")
        .payment_status
}

/// Start and finish every line at `at`, so the order is `ready` since `at`.
async fn make_ready(store: &Stores, p: &OrderPlacedV1, at: i64) {
    for l in &p.lines {
        store
            .transition(p.order_id, Action::StartLine(l.line), at)
            .await
            .unwrap();
    }
    for l in &p.lines {
        store
            .transition(p.order_id, Action::FinishLine(l.line), at)
            .await
            .unwrap();
    }
    assert_eq!(
        store.get_order(p.order_id).await.unwrap().unwrap().at.ready_at,
        Some(at)
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    /// Each case is listed once, every port's list reaches the aggregate,
    /// and none is lost: 22 cases in the single `Store` suite before it was
    /// split by port (its `fresh_store_is_empty_and_healthy` became one
    /// emptiness case per port), 25 since, 27 with `open_board` and
    /// out-of-order payments, 37 with the identity ports, 43 with pickup codes,
    /// undo, cancel reasons, tickets and the pickup board, 46 with reports, 49 with the fleet and points, 53 with webhooks. Raise the floor
    /// as cases come.
    #[test]
    fn every_case_is_listed_once() {
        let all = super::cases();
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "a case is listed twice: {all:?}");
        let per_port = super::orders::CASES.len()
            + super::menus::CASES.len()
            + super::accounts::CASES.len()
            + super::ops::CASES.len()
            + super::identity::CASES.len()
            + super::reports::CASES.len()
            + super::webhooks::CASES.len()
            + super::fleet::CASES.len()
            + super::points::CASES.len();
        assert_eq!(all.len(), per_port, "every port's cases reach `store_contract_cases!`");
        assert!(all.len() >= 53, "store contract cases went from 53 to {}", all.len());
    }
}
