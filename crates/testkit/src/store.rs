//! Contract suite for the `Store` port: the behaviour every backend
//! (SQLite now, PostgreSQL next) must show, as plain `async fn`s taking a
//! fresh, empty store.
//!
//! A backend's `tests/it` runs the cases one test each, so a failure is
//! named, by handing a macro to `store_contract_cases!`:
//!
//! ```text
//! macro_rules! contract {
//!     ($($case:ident),* $(,)?) => {$(
//!         #[tokio::test]
//!         async fn $case() {
//!             let (_guard, store) = fresh_store();
//!             testkit::store::$case(store).await;
//!         }
//!     )*};
//! }
//! testkit::store_contract_cases!(contract);
//! ```
//!
//! or runs them all in one test with `run_all`. Both read the single list
//! of cases in `store_contract_cases!`, so a case added there cannot be
//! forgotten by a backend.
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

use domain::events::{LiveEvent, LiveEventKind, OrderPlacedV1, PaymentStatus, PaymentV1};
use domain::ids::{OrderId, StoreId};
use domain::menu::{Category, Item, Size, Station, demo_menu};
use domain::ops::{LoyaltyAccount, PerfSnapshot, PruneStats, Retention, SyncRun};
use domain::order::{self, Action, Order, OrderStatus, TicketStatus, Timestamps, TransitionError};
use domain::ports::{
    BatchApplied, DeadLetter, Decided, Decision, EventScope, OrderFilter, OrderSummary, PaymentsApplied, PortError,
    Store,
};

use crate::fixtures::{loyalty_account, payment, placed_order};

pub type Stores = Arc<dyn Store>;

/// Calls `$callback! { case, case, ... }` with every case of the suite.
#[macro_export]
macro_rules! store_contract_cases {
    ($callback:ident) => {
        $callback! {
            fresh_store_is_empty_and_healthy,
            menus_are_upserted_loaded_and_86d,
            apply_batch_confirms_and_rejects,
            apply_batch_is_idempotent,
            dead_letters_are_kept_and_position_advances,
            list_orders_filters_and_pages,
            transitions_reach_picked_up_with_events_in_order,
            cancel_and_expire_stamp_their_time,
            invalid_transitions_are_refused,
            events_after_by_order_and_by_store,
            concurrent_starts_have_one_winner,
            payments_apply_once_per_event,
            payments_that_do_not_fit_are_recorded_but_change_nothing,
            payment_follows_its_order_in_the_same_batch,
            expire_ready_expires_only_orders_ready_before_the_cutoff,
            prune_removes_old_finished_orders_and_old_records,
            accounts_upsert_keeps_the_newest_version,
            sync_cursors_are_kept_per_kind,
            sync_runs_and_snapshots_list_newest_first,
            menu_diff_adds_changes_removes_and_keeps_availability,
            order_counts_cover_every_status,
            maintain_leaves_a_working_store,
        }
    };
}

macro_rules! case_names {
    ($($case:ident),* $(,)?) => { &[$(stringify!($case)),*] };
}

/// The names of every case, in the order `run_all` runs them.
pub const CASES: &[&str] = store_contract_cases!(case_names);

/// Run every case, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Stores>,
{
    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            $case(make().await).await;
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
    }
}

fn reject(p: &OrderPlacedV1, reason: &str) -> Decided {
    Decided {
        placed: p.clone(),
        decision: Decision::Reject(reason.into()),
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
    }
}

async fn apply(store: &Stores, partition: u32, next: u64, orders: &[Decided], now: i64) -> BatchApplied {
    store
        .apply_batch(GROUP, partition, next, orders, &[], &[], now)
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

// -------------------------------------------------------------------- cases

/// A new store has nothing in it, answers every read with "nothing", and is
/// healthy.
pub async fn fresh_store_is_empty_and_healthy(store: Stores) {
    store.health().await.expect("a fresh store is healthy");
    assert_eq!(store.list_stores().await.unwrap(), vec![]);
    assert_eq!(store.load_menu(&demo_store()).await.unwrap(), None);
    assert_eq!(store.get_order(OrderId::new()).await.unwrap(), None);
    assert_eq!(store.list_orders(&filter(None, None, 10)).await.unwrap(), vec![]);
    assert_eq!(
        store
            .events_after(&EventScope::Store(demo_store()), 0, 10)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![]);
    assert_eq!(store.consumer_position(GROUP, 0).await.unwrap(), 0);
    assert_eq!(store.count_accounts().await.unwrap(), 0);
    assert_eq!(store.loyalty_account("acct-000001").await.unwrap(), None);
    assert_eq!(store.sync_cursor("accounts").await.unwrap(), None);
    assert_eq!(store.sync_runs(None, 10).await.unwrap(), vec![]);
    assert_eq!(store.snapshots(10).await.unwrap(), vec![]);
    assert_eq!(store.expire_ready(i64::MAX, 100, 1).await.unwrap(), vec![]);
    assert_eq!(
        store.order_counts().await.unwrap(),
        OrderStatus::ALL.iter().map(|s| (*s, 0)).collect::<Vec<_>>()
    );
}

/// A menu comes back as it was upserted; availability changes one item of
/// one store; an upsert replaces the whole menu; unknown stores and skus
/// are told apart.
pub async fn menus_are_upserted_loaded_and_86d(store: Stores) {
    let menu = demo_menu();
    let id = menu.store.id.clone();
    store.upsert_menu(&menu).await.unwrap();
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(menu.clone()));
    assert_eq!(store.list_stores().await.unwrap(), vec![menu.store.clone()]);
    assert_eq!(store.load_menu(&uptown()).await.unwrap(), None, "unknown store");

    // 86 the latte: only that item of that store changes.
    assert!(store.set_availability(&id, "latte", false).await.unwrap());
    let mut expected = menu.clone();
    expected
        .items
        .iter_mut()
        .filter(|i| i.sku == "latte")
        .for_each(|i| i.available = false);
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(expected.clone()));
    // Setting the value it already has still finds the item.
    assert!(store.set_availability(&id, "latte", false).await.unwrap());
    assert!(!store.set_availability(&id, "no-such-sku", false).await.unwrap());
    assert!(!store.set_availability(&uptown(), "latte", false).await.unwrap());
    assert!(store.set_availability(&id, "latte", true).await.unwrap());
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(menu.clone()));

    // A second store with its own copy of the menu.
    let mut other = demo_menu();
    other.store.id = uptown();
    other.store.name = "Rushhour Uptown".into();
    other.store.time_zone = "America/New_York".into();
    store.upsert_menu(&other).await.unwrap();
    assert!(store.set_availability(&uptown(), "croissant", false).await.unwrap());
    assert_eq!(
        store.load_menu(&id).await.unwrap(),
        Some(menu.clone()),
        "86ing an item of one store leaves the others alone"
    );
    assert_eq!(
        store.list_stores().await.unwrap(),
        vec![menu.store.clone(), other.store.clone()],
        "stores are listed by id"
    );

    // Upserting replaces the store row, the categories and the items:
    // removed items and categories are gone, availability is as given.
    let mut replaced = menu.clone();
    replaced.store.name = "Rushhour Downtown".into();
    replaced.store.currency = "EUR".into();
    replaced.categories.retain(|c| c.code == "coffee" || c.code == "tea");
    replaced.categories[0].name = "Espresso bar".into();
    replaced.items.retain(|i| i.station == Station::Barista);
    replaced.items.reverse();
    replaced.items[0].available = false;
    replaced.items[1].sizes[0].price += 10;
    store.upsert_menu(&replaced).await.unwrap();
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(replaced.clone()));
    assert_eq!(store.list_stores().await.unwrap()[0], replaced.store);
    assert!(
        !store.set_availability(&id, "croissant", true).await.unwrap(),
        "a removed item is no longer on the menu"
    );
    let mut other_now = other.clone();
    other_now
        .items
        .iter_mut()
        .filter(|i| i.sku == "croissant")
        .for_each(|i| i.available = false);
    assert_eq!(store.load_menu(&uptown()).await.unwrap(), Some(other_now));
}

/// A batch inserts confirmed orders with queued tickets and rejected ones
/// with their reason and no tickets, emits one `status` event per order in
/// id order, and moves the group's position on that partition only.
pub async fn apply_batch_confirms_and_rejects(store: Stores) {
    let a = placed_order(3, 1_000);
    let b = placed_order(1, 1_001);
    let batch = [confirm(&a), reject(&b, "oat milk ran out")];
    let out = apply(&store, 3, 42, &batch, 5_000).await;

    assert_eq!(out.inserted, 2);
    assert_eq!(out.events.len(), 2);
    assert_increasing(&out.events);
    assert_eq!(
        out.events[0],
        status_event(out.events[0].id, &a, OrderStatus::Confirmed, 5_000)
    );
    assert_eq!(
        out.events[1],
        status_event(out.events[1].id, &b, OrderStatus::Rejected, 5_000)
    );

    let got_a = store.get_order(a.order_id).await.unwrap().expect("order a");
    assert_eq!(got_a, expected_order(&a, &Decision::Confirm, 5_000));
    assert_eq!(got_a.lines.len(), 3);
    assert_eq!(got_a.lines[1].station, Station::Kitchen, "lines keep their station");
    let got_b = store.get_order(b.order_id).await.unwrap().expect("order b");
    assert_eq!(
        got_b,
        expected_order(&b, &Decision::Reject("oat milk ran out".into()), 5_000)
    );

    assert_eq!(store.consumer_position(GROUP, 3).await.unwrap(), 42);
    assert_eq!(store.consumer_position(GROUP, 0).await.unwrap(), 0, "other partition");
    assert_eq!(
        store.consumer_position("another-group", 3).await.unwrap(),
        0,
        "other group"
    );

    // The events are readable back exactly as returned.
    let mut read = order_events(&store, a.order_id).await;
    read.extend(order_events(&store, b.order_id).await);
    assert_eq!(read, out.events);

    // The next batch moves the position on.
    let c = placed_order(2, 1_002);
    let out = apply(&store, 3, 43, &[confirm(&c)], 6_000).await;
    assert_eq!(out.inserted, 1);
    assert_eq!(store.consumer_position(GROUP, 3).await.unwrap(), 43);
}

/// Re-applying records (a processor restarting from an older position)
/// inserts nothing, emits nothing and does not undo later changes; a
/// partly replayed batch inserts only the new orders.
pub async fn apply_batch_is_idempotent(store: Stores) {
    let a = placed_order(2, 1_000);
    let b = placed_order(1, 1_001);
    let batch = [confirm(&a), reject(&b, "closed")];
    let first = apply(&store, 0, 2, &batch, 5_000).await;
    assert_eq!(first.inserted, 2);

    // Staff start a line before the replay arrives.
    store.transition(a.order_id, Action::StartLine(1), 6_000).await.unwrap();
    let before = store.get_order(a.order_id).await.unwrap();
    let events_before = store
        .events_after(&EventScope::Store(demo_store()), 0, 100)
        .await
        .unwrap();

    let again = apply(&store, 0, 2, &batch, 7_000).await;
    assert_eq!(
        again,
        BatchApplied {
            inserted: 0,
            events: vec![],
            payments: PaymentsApplied::default(),
        }
    );
    assert_eq!(
        store.get_order(a.order_id).await.unwrap(),
        before,
        "a replay changes nothing"
    );
    assert_eq!(
        store.get_order(b.order_id).await.unwrap(),
        Some(expected_order(&b, &Decision::Reject("closed".into()), 5_000))
    );
    assert_eq!(
        store
            .events_after(&EventScope::Store(demo_store()), 0, 100)
            .await
            .unwrap(),
        events_before,
        "a replay emits no events"
    );
    assert_eq!(store.consumer_position(GROUP, 0).await.unwrap(), 2);

    // A replayed record with a different decision still changes nothing:
    // the first decision stands.
    let flipped = apply(&store, 0, 2, &[reject(&a, "changed my mind")], 7_500).await;
    assert_eq!(flipped.inserted, 0);
    assert_eq!(store.get_order(a.order_id).await.unwrap(), before);

    let c = placed_order(1, 1_002);
    let mixed = apply(&store, 0, 4, &[confirm(&a), confirm(&c)], 8_000).await;
    assert_eq!(mixed.inserted, 1);
    assert_eq!(mixed.events.len(), 1);
    assert_eq!(
        mixed.events[0],
        status_event(mixed.events[0].id, &c, OrderStatus::Confirmed, 8_000)
    );
    assert!(mixed.events[0].id > events_before.last().unwrap().id);
    assert_eq!(store.consumer_position(GROUP, 0).await.unwrap(), 4);
}

/// Dead letters are stored with the batch, listed newest first, and the
/// position moves past them.
pub async fn dead_letters_are_kept_and_position_advances(store: Stores) {
    let letter = |offset: u64, error: &str| DeadLetter {
        group: GROUP.into(),
        partition: 1,
        offset,
        key: format!("key-{offset}"),
        payload: vec![0xff, 0x00, b'{', offset as u8],
        error: error.into(),
        attempts: 5,
        at: 10_000 + offset as i64,
    };
    let (d7, d8) = (letter(7, "expected value at line 1"), letter(8, "unknown type"));
    let out = store
        .apply_batch(GROUP, 1, 9, &[], &[], &[d7.clone(), d8.clone()], 20_000)
        .await
        .unwrap();
    assert_eq!(
        out,
        BatchApplied {
            inserted: 0,
            events: vec![],
            payments: PaymentsApplied::default(),
        }
    );
    assert_eq!(store.consumer_position(GROUP, 1).await.unwrap(), 9);
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![d8.clone(), d7.clone()]);
    assert_eq!(store.dead_letters(1).await.unwrap(), vec![d8.clone()]);

    // Orders and dead letters in one batch.
    let a = placed_order(1, 1_000);
    let d12 = letter(12, "poison");
    let out = store
        .apply_batch(GROUP, 1, 13, &[confirm(&a)], &[], std::slice::from_ref(&d12), 21_000)
        .await
        .unwrap();
    assert_eq!(out.inserted, 1);
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![d12.clone(), d8, d7.clone()]);
    assert_eq!(store.consumer_position(GROUP, 1).await.unwrap(), 13);
    assert!(store.get_order(a.order_id).await.unwrap().is_some());

    // Re-driven letters are forgotten, one by one.
    assert!(store.remove_dead_letter(GROUP, 1, 8).await.unwrap());
    assert!(!store.remove_dead_letter(GROUP, 1, 8).await.unwrap(), "already gone");
    assert!(!store.remove_dead_letter("other-group", 1, 7).await.unwrap());
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![d12, d7]);
}

/// `get_order` and `list_orders`: newest first, store and status filters
/// (alone and together), keyset pages with neither duplicates nor gaps.
pub async fn list_orders_filters_and_pages(store: Stores) {
    let mut all: Vec<(OrderPlacedV1, OrderStatus)> = Vec::new();
    for i in 0..12 {
        let p = placed_order(1 + i % 3, 1_000 + i as i64);
        let rejected = i % 3 == 0;
        all.push((
            p,
            if rejected {
                OrderStatus::Rejected
            } else {
                OrderStatus::Confirmed
            },
        ));
    }
    for i in 0..5 {
        all.push((placed_at_store(2, 2_000 + i, uptown()), OrderStatus::Confirmed));
    }
    let decided: Vec<Decided> = all
        .iter()
        .map(|(p, s)| match s {
            OrderStatus::Rejected => reject(p, "sold out"),
            _ => confirm(p),
        })
        .collect();
    // Two batches, applied out of id order, to show listing sorts by id.
    apply(&store, 0, 9, &decided[8..], 3_000).await;
    apply(&store, 1, 8, &decided[..8], 3_000).await;

    let ids_where = |pred: &dyn Fn(&OrderPlacedV1, OrderStatus) -> bool| {
        let mut ids: Vec<OrderId> = all
            .iter()
            .filter(|(p, s)| pred(p, *s))
            .map(|(p, _)| p.order_id)
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        ids
    };

    let newest_first = ids_where(&|_, _| true);
    assert_eq!(all_pages(&store, filter(None, None, 5)).await, newest_first);
    assert_eq!(all_pages(&store, filter(None, None, 100)).await, newest_first);
    assert_eq!(all_pages(&store, filter(None, None, 1)).await, newest_first);
    assert_eq!(
        all_pages(&store, filter(Some(demo_store()), None, 4)).await,
        ids_where(&|p, _| p.store == demo_store())
    );
    assert_eq!(
        all_pages(&store, filter(Some(uptown()), None, 2)).await,
        ids_where(&|p, _| p.store == uptown())
    );
    assert_eq!(
        all_pages(&store, filter(None, Some(OrderStatus::Rejected), 3)).await,
        ids_where(&|_, s| s == OrderStatus::Rejected)
    );
    assert_eq!(
        all_pages(&store, filter(Some(demo_store()), Some(OrderStatus::Confirmed), 3)).await,
        ids_where(&|p, s| p.store == demo_store() && s == OrderStatus::Confirmed)
    );
    assert_eq!(
        all_pages(&store, filter(Some(uptown()), Some(OrderStatus::Rejected), 3)).await,
        vec![]
    );
    assert_eq!(
        all_pages(&store, filter(Some(StoreId("nowhere".into())), None, 3)).await,
        vec![]
    );
    assert_eq!(store.list_orders(&filter(None, None, 0)).await.unwrap(), vec![]);

    // A cursor in the middle: strictly older orders only.
    let cursor = newest_first[6];
    let page = store
        .list_orders(&OrderFilter {
            before: Some(cursor),
            ..filter(None, None, 3)
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|s| s.id).collect::<Vec<_>>(),
        newest_first[7..10].to_vec()
    );

    // Summaries carry what a listing shows.
    let (p, _) = &all[4];
    let summary = store
        .list_orders(&OrderFilter {
            before: None,
            ..filter(Some(demo_store()), Some(OrderStatus::Confirmed), 100)
        })
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == p.order_id)
        .expect("order 4 is a confirmed demo order");
    assert_eq!(
        summary,
        OrderSummary {
            id: p.order_id,
            store: p.store.clone(),
            status: OrderStatus::Confirmed,
            customer: p.customer.clone(),
            currency: p.currency.clone(),
            total: p.total,
            placed_at: p.placed_at,
        }
    );

    // The status filter follows transitions.
    store.transition(p.order_id, Action::StartLine(1), 4_000).await.unwrap();
    let in_progress = store
        .list_orders(&filter(None, Some(OrderStatus::InProgress), 10))
        .await
        .unwrap();
    assert_eq!(in_progress.iter().map(|s| s.id).collect::<Vec<_>>(), vec![p.order_id]);

    // get_order returns each order whole.
    for (p, s) in &all {
        let o = store.get_order(p.order_id).await.unwrap().expect("listed order");
        assert_eq!(o.lines.len(), p.lines.len());
        assert_eq!(o.store, p.store);
        if o.id != all[4].0.order_id {
            assert_eq!(o.status, *s);
        }
    }
}

/// A two-station order through its whole life: the stored order matches
/// the domain's own `plan`/`apply` after every step, and the events come
/// back in commit order.
pub async fn transitions_reach_picked_up_with_events_in_order(store: Stores) {
    // Line 1 latte (barista), line 2 croissant (kitchen).
    let p = placed_order(2, 1_000);
    let confirmed = apply(&store, 0, 1, &[confirm(&p)], 2_000).await;
    let mut expected = expected_order(&p, &Decision::Confirm, 2_000);
    let mut all_events = confirmed.events.clone();

    // What each step must emit: (kind, (line, station, ticket), status after).
    type Shape = (LiveEventKind, Option<(u32, Station, TicketStatus)>, OrderStatus);
    use TicketStatus::{Done, Started};
    let steps: [(Action, i64, Vec<Shape>); 5] = [
        (
            Action::StartLine(1),
            3_000,
            vec![
                (
                    LiveEventKind::Ticket,
                    Some((1, Station::Barista, Started)),
                    OrderStatus::InProgress,
                ),
                (LiveEventKind::Status, None, OrderStatus::InProgress),
            ],
        ),
        (
            Action::StartLine(2),
            4_000,
            vec![(
                LiveEventKind::Ticket,
                Some((2, Station::Kitchen, Started)),
                OrderStatus::InProgress,
            )],
        ),
        (
            Action::FinishLine(2),
            5_000,
            vec![(
                LiveEventKind::Ticket,
                Some((2, Station::Kitchen, Done)),
                OrderStatus::InProgress,
            )],
        ),
        (
            Action::FinishLine(1),
            6_000,
            vec![
                (
                    LiveEventKind::Ticket,
                    Some((1, Station::Barista, Done)),
                    OrderStatus::Ready,
                ),
                (LiveEventKind::Status, None, OrderStatus::Ready),
            ],
        ),
        (
            Action::PickUp,
            7_000,
            vec![(LiveEventKind::Status, None, OrderStatus::PickedUp)],
        ),
    ];
    for (action, now, want) in steps {
        let plan = order::plan(&expected, action).expect("the domain allows this step");
        order::apply(&mut expected, &plan, now);
        let (got, events) = store.transition(p.order_id, action, now).await.expect("transition");
        assert_eq!(got, expected, "after {action:?}");
        assert_eq!(store.get_order(p.order_id).await.unwrap(), Some(expected.clone()));
        let shape: Vec<_> = events
            .iter()
            .map(|e| {
                assert_eq!((e.order_id, &e.store, e.at), (p.order_id, &p.store, now));
                let ticket = e
                    .line
                    .map(|l| (l, e.station.expect("station"), e.ticket.expect("ticket")));
                (e.kind, ticket, e.status)
            })
            .collect();
        assert_eq!(shape, want, "events of {action:?}");
        all_events.extend(events);
    }
    assert_eq!(
        expected.at,
        Timestamps {
            placed_at: 1_000,
            confirmed_at: Some(2_000),
            started_at: Some(3_000),
            ready_at: Some(6_000),
            picked_up_at: Some(7_000),
            ..Timestamps::default()
        }
    );
    assert_increasing(&all_events);
    assert_eq!(order_events(&store, p.order_id).await, all_events);
}

/// Cancelling a confirmed order and expiring a ready one set their status
/// and timestamp and emit one `status` event each; tickets are untouched.
pub async fn cancel_and_expire_stamp_their_time(store: Stores) {
    let a = placed_order(2, 1_000);
    let b = placed_order(1, 1_001);
    apply(&store, 0, 2, &[confirm(&a), confirm(&b)], 2_000).await;

    let (cancelled, events) = store.transition(a.order_id, Action::Cancel, 3_000).await.unwrap();
    let mut want = expected_order(&a, &Decision::Confirm, 2_000);
    want.status = OrderStatus::Cancelled;
    want.at.cancelled_at = Some(3_000);
    assert_eq!(cancelled, want);
    assert_eq!(
        events,
        vec![status_event(events[0].id, &a, OrderStatus::Cancelled, 3_000)]
    );

    store.transition(b.order_id, Action::StartLine(1), 4_000).await.unwrap();
    store
        .transition(b.order_id, Action::FinishLine(1), 5_000)
        .await
        .unwrap();
    let (expired, events) = store.transition(b.order_id, Action::Expire, 9_000).await.unwrap();
    assert_eq!(expired.status, OrderStatus::Expired);
    assert_eq!(expired.at.ready_at, Some(5_000));
    assert_eq!(expired.at.expired_at, Some(9_000));
    assert_eq!(expired.at.picked_up_at, None);
    assert_eq!(expired.lines[0].ticket, Some(TicketStatus::Done));
    assert_eq!(
        events,
        vec![status_event(events[0].id, &b, OrderStatus::Expired, 9_000)]
    );
    assert_eq!(store.get_order(b.order_id).await.unwrap(), Some(expired));
}

/// Refused actions say why (`InvalidTransition`, `LineNotFound`,
/// `OrderNotFound`) and change nothing, events included.
pub async fn invalid_transitions_are_refused(store: Stores) {
    let unknown = OrderId::new();
    assert_eq!(
        store.transition(unknown, Action::Cancel, 1).await.unwrap_err(),
        TransitionError::OrderNotFound(unknown)
    );

    let ok = placed_order(2, 1_000);
    let no = placed_order(1, 1_001);
    apply(&store, 0, 2, &[confirm(&ok), reject(&no, "closed")], 2_000).await;
    let before = store.get_order(ok.order_id).await.unwrap();
    let events_before = order_events(&store, ok.order_id).await;

    let invalid = |action: &'static str, from: &str| TransitionError::InvalidTransition {
        action,
        from: from.into(),
    };
    let refused = [
        (Action::PickUp, invalid("pickup", "confirmed")),
        (Action::Expire, invalid("expire", "confirmed")),
        (Action::FinishLine(1), invalid("done", "confirmed")),
        (Action::StartLine(9), TransitionError::LineNotFound(9)),
    ];
    for (action, want) in refused {
        assert_eq!(store.transition(ok.order_id, action, 3_000).await.unwrap_err(), want);
    }
    assert_eq!(
        store.get_order(ok.order_id).await.unwrap(),
        before,
        "refusals change nothing"
    );
    assert_eq!(
        order_events(&store, ok.order_id).await,
        events_before,
        "refusals emit nothing"
    );

    // A started line cannot start again, nor can the order be cancelled.
    store
        .transition(ok.order_id, Action::StartLine(1), 4_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .transition(ok.order_id, Action::StartLine(1), 5_000)
            .await
            .unwrap_err(),
        invalid("start", "line 1 started")
    );
    assert_eq!(
        store.transition(ok.order_id, Action::Cancel, 5_000).await.unwrap_err(),
        invalid("cancel", "in_progress")
    );
    assert_eq!(
        store
            .transition(ok.order_id, Action::FinishLine(3), 5_000)
            .await
            .unwrap_err(),
        TransitionError::LineNotFound(3)
    );

    // A rejected order has no tickets and is terminal.
    for action in [Action::StartLine(1), Action::Cancel, Action::PickUp] {
        assert!(
            matches!(
                store.transition(no.order_id, action, 6_000).await.unwrap_err(),
                TransitionError::InvalidTransition { from, .. } if from == "rejected"
            ),
            "{action:?} on a rejected order"
        );
    }
    assert_eq!(order_events(&store, no.order_id).await.len(), 1, "just the rejection");
}

/// `events_after` by order and by store: oldest first, strictly after the
/// cursor, at most `limit`, nothing from other orders or stores.
pub async fn events_after_by_order_and_by_store(store: Stores) {
    let a = placed_order(2, 1_000);
    let u = placed_at_store(1, 1_001, uptown());
    let b = placed_order(1, 1_002);
    let mut emitted = apply(&store, 0, 3, &[confirm(&a), confirm(&u), confirm(&b)], 2_000)
        .await
        .events;
    emitted.extend(
        store
            .transition(a.order_id, Action::StartLine(1), 3_000)
            .await
            .unwrap()
            .1,
    );
    emitted.extend(
        store
            .transition(u.order_id, Action::StartLine(1), 3_100)
            .await
            .unwrap()
            .1,
    );
    emitted.extend(
        store
            .transition(a.order_id, Action::StartLine(2), 3_200)
            .await
            .unwrap()
            .1,
    );
    assert_increasing(&emitted);
    let of = |pred: &dyn Fn(&LiveEvent) -> bool| emitted.iter().filter(|e| pred(e)).cloned().collect::<Vec<_>>();

    let demo = EventScope::Store(demo_store());
    let demo_events = of(&|e| e.store == demo_store());
    assert_eq!(demo_events.len(), 5, "a, b confirmed; a line 1 + in progress; a line 2");
    assert_eq!(store.events_after(&demo, 0, 100).await.unwrap(), demo_events);
    assert_eq!(
        store.events_after(&demo, 0, 2).await.unwrap(),
        demo_events[..2].to_vec()
    );
    assert_eq!(
        store.events_after(&demo, demo_events[1].id, 2).await.unwrap(),
        demo_events[2..4].to_vec(),
        "resuming from a cursor, as `Last-Event-ID` does"
    );
    assert_eq!(store.events_after(&demo, demo_events[4].id, 100).await.unwrap(), vec![]);

    let up = EventScope::Store(uptown());
    assert_eq!(
        store.events_after(&up, 0, 100).await.unwrap(),
        of(&|e| e.store == uptown())
    );
    assert_eq!(
        store
            .events_after(&EventScope::Store(StoreId("nowhere".into())), 0, 100)
            .await
            .unwrap(),
        vec![]
    );

    let by_a = EventScope::Order(a.order_id);
    let a_events = of(&|e| e.order_id == a.order_id);
    assert_eq!(a_events.len(), 4);
    assert_eq!(store.events_after(&by_a, 0, 100).await.unwrap(), a_events);
    assert_eq!(
        store.events_after(&by_a, a_events[0].id, 100).await.unwrap(),
        a_events[1..].to_vec()
    );
    assert_eq!(
        store.events_after(&by_a, a_events[0].id, 1).await.unwrap(),
        a_events[1..2].to_vec()
    );
    assert_eq!(
        store
            .events_after(&EventScope::Order(b.order_id), 0, 100)
            .await
            .unwrap(),
        of(&|e| e.order_id == b.order_id)
    );
    assert_eq!(
        store
            .events_after(&EventScope::Order(OrderId::new()), 0, 100)
            .await
            .unwrap(),
        vec![]
    );
}

/// Ten baristas tap "start" on the same ticket at once: exactly one wins,
/// the others are told it already started, and one ticket event exists.
pub async fn concurrent_starts_have_one_winner(store: Stores) {
    let p = placed_order(1, 1_000);
    apply(&store, 0, 1, &[confirm(&p)], 2_000).await;
    let id = p.order_id;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.transition(id, Action::StartLine(1), 3_000 + i).await })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok((order, events)) => {
                winners += 1;
                assert_eq!(order.status, OrderStatus::InProgress);
                assert_eq!(events.len(), 2);
            }
            Err(e) => assert_eq!(
                e,
                TransitionError::InvalidTransition {
                    action: "start",
                    from: "line 1 started".into()
                }
            ),
        }
    }
    assert_eq!(winners, 1);
    let events = order_events(&store, id).await;
    let tickets: Vec<_> = events.iter().filter(|e| e.kind == LiveEventKind::Ticket).collect();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].ticket, Some(TicketStatus::Started));
    assert_eq!(events.len(), 3, "confirmed, ticket started, in progress");
    let order = store.get_order(id).await.unwrap().expect("order");
    assert_eq!(order.lines[0].ticket, Some(TicketStatus::Started));
}

// ---------------------------------------------------- payments and operations

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
        .apply_batch(GROUP, 0, next, &[], payments, &[], now)
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

/// Each payment event applies once, however often it is delivered (twice
/// in one batch, again in a later one); `failed` and `refunded` set the
/// status as `paid` does, the later of two events in a batch wins, and an
/// old event redelivered undoes nothing. Payments change neither the order
/// status nor the live events.
pub async fn payments_apply_once_per_event(store: Stores) {
    let a = placed_order(2, 1_000);
    let b = placed_order(1, 1_001);
    let c = placed_order(1, 1_002);
    apply(&store, 0, 3, &[confirm(&a), confirm(&b), confirm(&c)], 2_000).await;
    let events_before = store
        .events_after(&EventScope::Store(demo_store()), 0, 100)
        .await
        .unwrap();
    assert_eq!(payment_status(&store, a.order_id).await, "unpaid");

    // The provider sends the same event twice in one flood.
    let e1 = payment(&a, "evt-1", PaymentStatus::Paid, 3_000);
    let out = pay(&store, 5, &[e1.clone(), e1.clone()], 3_100).await;
    assert_eq!(
        out,
        BatchApplied {
            inserted: 0,
            events: vec![],
            payments: counts(1, 1, 0, 0),
        }
    );
    assert_eq!(payment_status(&store, a.order_id).await, "paid");
    assert_eq!(store.consumer_position(GROUP, 0).await.unwrap(), 5);

    // ... and once more later: a duplicate that changes nothing.
    let before = store.get_order(a.order_id).await.unwrap();
    assert_eq!(pay(&store, 6, &[e1], 3_200).await.payments, counts(0, 1, 0, 0));
    assert_eq!(store.get_order(a.order_id).await.unwrap(), before);

    // Failed, paid on a retry, then refunded: each new event sets the status.
    let steps = [
        (PaymentStatus::Failed, "failed"),
        (PaymentStatus::Paid, "paid"),
        (PaymentStatus::Refunded, "refunded"),
    ];
    for (i, (status, want)) in steps.into_iter().enumerate() {
        let e = payment(&b, &format!("evt-b{i}"), status, 4_000 + i as i64);
        let out = pay(&store, 7 + i as u64, &[e], 4_100 + i as i64).await;
        assert_eq!(out.payments, counts(1, 0, 0, 0), "{want}");
        assert_eq!(payment_status(&store, b.order_id).await, want);
    }

    // Two events of one order in one batch: the later one wins.
    let c1 = payment(&c, "evt-c1", PaymentStatus::Paid, 5_000);
    let c2 = payment(&c, "evt-c2", PaymentStatus::Refunded, 5_001);
    assert_eq!(
        pay(&store, 10, &[c1.clone(), c2], 5_100).await.payments,
        counts(2, 0, 0, 0)
    );
    assert_eq!(payment_status(&store, c.order_id).await, "refunded");
    // The older event redelivered does not undo the newer one.
    assert_eq!(pay(&store, 11, &[c1], 5_200).await.payments, counts(0, 1, 0, 0));
    assert_eq!(payment_status(&store, c.order_id).await, "refunded");

    for p in [&a, &b, &c] {
        assert_eq!(
            store.get_order(p.order_id).await.unwrap().unwrap().status,
            OrderStatus::Confirmed
        );
    }
    assert_eq!(
        store
            .events_after(&EventScope::Store(demo_store()), 0, 100)
            .await
            .unwrap(),
        events_before,
        "payments emit no live events"
    );
}

/// A payment for an unknown order, or a `paid` one for another amount or
/// currency than the order's, is recorded (a redelivery is a duplicate) but
/// leaves the order unpaid. Only `paid` is checked against the total.
pub async fn payments_that_do_not_fit_are_recorded_but_change_nothing(store: Stores) {
    let a = placed_order(1, 1_000);
    apply(&store, 0, 1, &[confirm(&a)], 2_000).await;
    let ghost = OrderId::new();
    let unknown = PaymentV1 {
        order_id: ghost,
        ..payment(&a, "evt-ghost", PaymentStatus::Paid, 3_000)
    };
    let short = PaymentV1 {
        amount: a.total - 1,
        ..payment(&a, "evt-short", PaymentStatus::Paid, 3_001)
    };
    let other_currency = if a.currency == "EUR" { "USD" } else { "EUR" };
    let foreign = PaymentV1 {
        currency: other_currency.into(),
        ..payment(&a, "evt-foreign", PaymentStatus::Paid, 3_002)
    };
    let misfits = [unknown, short, foreign];
    assert_eq!(pay(&store, 2, &misfits, 3_100).await.payments, counts(0, 0, 1, 2));
    assert_eq!(payment_status(&store, a.order_id).await, "unpaid");
    assert_eq!(store.get_order(ghost).await.unwrap(), None, "no order is made up");

    // All three were recorded: delivered again, they are duplicates.
    assert_eq!(pay(&store, 3, &misfits, 3_200).await.payments, counts(0, 3, 0, 0));
    assert_eq!(payment_status(&store, a.order_id).await, "unpaid");

    let failed = PaymentV1 {
        amount: 1,
        ..payment(&a, "evt-failed", PaymentStatus::Failed, 3_300)
    };
    assert_eq!(pay(&store, 4, &[failed], 3_400).await.payments, counts(1, 0, 0, 0));
    assert_eq!(payment_status(&store, a.order_id).await, "failed");

    let exact = payment(&a, "evt-exact", PaymentStatus::Paid, 3_500);
    assert_eq!(pay(&store, 5, &[exact], 3_600).await.payments, counts(1, 0, 0, 0));
    assert_eq!(payment_status(&store, a.order_id).await, "paid");
}

/// Payments are applied after the batch's orders, so a payment right behind
/// its order in the log pays it; replaying the whole batch changes nothing.
pub async fn payment_follows_its_order_in_the_same_batch(store: Stores) {
    let a = placed_order(2, 1_000);
    let b = placed_order(1, 1_001);
    let orders = [confirm(&a), confirm(&b)];
    let payments = [
        payment(&a, "evt-a", PaymentStatus::Paid, 1_500),
        payment(&b, "evt-b", PaymentStatus::Failed, 1_501),
    ];
    let out = store
        .apply_batch(GROUP, 2, 4, &orders, &payments, &[], 2_000)
        .await
        .unwrap();
    assert_eq!(out.inserted, 2);
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.payments, counts(2, 0, 0, 0));
    let mut want = expected_order(&a, &Decision::Confirm, 2_000);
    want.payment_status = "paid".into();
    assert_eq!(store.get_order(a.order_id).await.unwrap(), Some(want.clone()));
    assert_eq!(payment_status(&store, b.order_id).await, "failed");

    let again = store
        .apply_batch(GROUP, 2, 4, &orders, &payments, &[], 3_000)
        .await
        .unwrap();
    assert_eq!(
        again,
        BatchApplied {
            inserted: 0,
            events: vec![],
            payments: counts(0, 2, 0, 0),
        }
    );
    assert_eq!(store.get_order(a.order_id).await.unwrap(), Some(want));
    assert_eq!(store.consumer_position(GROUP, 2).await.unwrap(), 4);
}

/// `expire_ready` expires only orders ready since before the cutoff,
/// longest-waiting first and at most `limit`, stores them as
/// `transition(Expire)` would, and returns the same `status` events, also
/// readable from the order's stream.
pub async fn expire_ready_expires_only_orders_ready_before_the_cutoff(store: Stores) {
    let old1 = placed_order(1, 1_000);
    let old2 = placed_order(2, 1_001);
    let recent = placed_order(1, 1_002);
    let waiting = placed_order(1, 1_003);
    let collected = placed_order(1, 1_004);
    let batch = [&old1, &old2, &recent, &waiting, &collected].map(confirm);
    apply(&store, 0, 5, &batch, 2_000).await;
    make_ready(&store, &collected, 4_000).await;
    store
        .transition(collected.order_id, Action::PickUp, 4_500)
        .await
        .unwrap();
    make_ready(&store, &old2, 5_000).await;
    make_ready(&store, &old1, 5_500).await;
    make_ready(&store, &recent, 9_000).await;

    // What the domain says an expiry does to each.
    let mut want1 = store.get_order(old1.order_id).await.unwrap().unwrap();
    let mut want2 = store.get_order(old2.order_id).await.unwrap().unwrap();

    let first = store.expire_ready(7_000, 1, 10_000).await.unwrap();
    assert_eq!(
        first,
        vec![status_event(first[0].id, &old2, OrderStatus::Expired, 10_000)],
        "the longest-waiting order goes first"
    );
    let rest = store.expire_ready(7_000, 10, 10_500).await.unwrap();
    assert_eq!(
        rest,
        vec![status_event(rest[0].id, &old1, OrderStatus::Expired, 10_500)]
    );
    assert!(rest[0].id > first[0].id);
    assert_eq!(store.expire_ready(7_000, 10, 11_000).await.unwrap(), vec![]);

    let plan = order::plan(&want2, Action::Expire).unwrap();
    order::apply(&mut want2, &plan, 10_000);
    let plan = order::plan(&want1, Action::Expire).unwrap();
    order::apply(&mut want1, &plan, 10_500);
    assert_eq!(store.get_order(old2.order_id).await.unwrap(), Some(want2));
    assert_eq!(store.get_order(old1.order_id).await.unwrap(), Some(want1));
    assert_eq!(order_events(&store, old2.order_id).await.last(), first.first());
    assert_eq!(order_events(&store, old1.order_id).await.last(), rest.first());
    let status_of = |p: &OrderPlacedV1| {
        let store = store.clone();
        let id = p.order_id;
        async move { store.get_order(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status_of(&recent).await, OrderStatus::Ready);
    assert_eq!(status_of(&waiting).await, OrderStatus::Confirmed);
    assert_eq!(status_of(&collected).await, OrderStatus::PickedUp);

    // Several at once: one event each, in order-id order.
    let late = placed_order(1, 1_005);
    apply(&store, 0, 6, &[confirm(&late)], 2_000).await;
    make_ready(&store, &late, 20_000).await;
    let both = store.expire_ready(30_000, 10, 31_000).await.unwrap();
    let mut ids = vec![recent.order_id, late.order_id];
    ids.sort();
    assert_eq!(both.iter().map(|e| e.order_id).collect::<Vec<_>>(), ids);
    assert!(both.iter().all(|e| e.status == OrderStatus::Expired && e.at == 31_000));
    assert_increasing(&both);
    assert_eq!(store.expire_ready(i64::MAX, 10, 32_000).await.unwrap(), vec![]);
}

fn sync_run(kind: &str, started_at: i64, outcome: &str) -> SyncRun {
    SyncRun {
        kind: kind.into(),
        started_at,
        finished_at: started_at + 250,
        fetched: 150_000,
        changed: 1_234,
        db_queries: 151,
        errors: 2,
        outcome: outcome.into(),
    }
}

fn snapshot(at: i64, orders_per_minute: i64) -> PerfSnapshot {
    PerfSnapshot {
        at,
        instance: "rushhour-1".into(),
        metrics: [
            ("orders_per_minute", orders_per_minute),
            ("consumer_lag", orders_per_minute / 10),
        ]
        .into_iter()
        .collect(),
    }
}

/// The nightly cleanup deletes finished orders placed before the cutoff
/// with their lines, events and payment events, keeps active and recent
/// ones, and deletes sync runs and snapshots from before the other cutoff.
pub async fn prune_removes_old_finished_orders_and_old_records(store: Stores) {
    let picked = placed_order(1, 1_000);
    let cancelled = placed_order(2, 1_001);
    let rejected = placed_order(1, 1_002);
    let expired = placed_order(1, 1_003);
    let active = placed_order(1, 1_004);
    let ready = placed_order(1, 1_005);
    let recent = placed_order(1, 50_000);
    let batch = [
        confirm(&picked),
        confirm(&cancelled),
        reject(&rejected, "closed"),
        confirm(&expired),
        confirm(&active),
        confirm(&ready),
        confirm(&recent),
    ];
    apply(&store, 0, 7, &batch, 2_000).await;
    make_ready(&store, &picked, 3_000).await;
    store.transition(picked.order_id, Action::PickUp, 3_100).await.unwrap();
    store
        .transition(cancelled.order_id, Action::Cancel, 3_000)
        .await
        .unwrap();
    make_ready(&store, &expired, 3_000).await;
    store.transition(expired.order_id, Action::Expire, 4_000).await.unwrap();
    make_ready(&store, &ready, 3_000).await;
    store.transition(recent.order_id, Action::Cancel, 51_000).await.unwrap();

    let paid_picked = payment(&picked, "evt-picked", PaymentStatus::Paid, 3_500);
    let paid_active = payment(&active, "evt-active", PaymentStatus::Paid, 3_500);
    let ghost = |event: &str, at: i64| PaymentV1 {
        order_id: OrderId::new(),
        ..payment(&active, event, PaymentStatus::Paid, at)
    };
    let (ghost_old, ghost_new) = (ghost("evt-ghost-old", 1_500), ghost("evt-ghost-new", 60_000));
    let all_payments = [paid_picked, paid_active, ghost_old, ghost_new];
    assert_eq!(pay(&store, 8, &all_payments, 3_600).await.payments, counts(2, 0, 2, 0));

    let runs = [
        sync_run("menu", 1_000, "ok"),
        sync_run("accounts", 2_000, "ok"),
        sync_run("menu", 60_000, "not_modified"),
    ];
    for r in &runs {
        store.record_sync_run(r).await.unwrap();
    }
    for s in [snapshot(1_000, 10), snapshot(60_000, 20)] {
        store.record_snapshot(&s).await.unwrap();
    }

    let retention = Retention {
        orders_before: 10_000,
        records_before: 10_000,
    };
    assert_eq!(
        store.prune(&retention).await.unwrap(),
        PruneStats { orders: 4, records: 3 }
    );
    for p in [&picked, &cancelled, &rejected, &expired] {
        assert_eq!(store.get_order(p.order_id).await.unwrap(), None);
        assert_eq!(
            order_events(&store, p.order_id).await,
            vec![],
            "events go with the order"
        );
    }
    for p in [&active, &ready, &recent] {
        assert!(store.get_order(p.order_id).await.unwrap().is_some());
        assert!(!order_events(&store, p.order_id).await.is_empty());
    }
    let mut kept: Vec<OrderId> = [&active, &ready, &recent].iter().map(|p| p.order_id).collect();
    kept.sort_by(|a, b| b.cmp(a));
    assert_eq!(all_pages(&store, filter(None, None, 10)).await, kept);
    assert_eq!(payment_status(&store, active.order_id).await, "paid");

    // The pruned order's payment event went with it (delivered again, it
    // finds no order), as did the old one for an unknown order; the kept
    // ones are still there (duplicates).
    assert_eq!(pay(&store, 9, &all_payments, 70_000).await.payments, counts(0, 2, 2, 0));

    assert_eq!(store.sync_runs(None, 10).await.unwrap(), vec![runs[2].clone()]);
    assert_eq!(store.snapshots(10).await.unwrap(), vec![snapshot(60_000, 20)]);
    assert_eq!(
        store.prune(&retention).await.unwrap(),
        PruneStats { orders: 0, records: 0 },
        "nothing left to prune"
    );
}

/// Accounts: one call writes many, a row is only overwritten by a newer
/// version (also between copies in one call), and the `accounts` cursor
/// moves with the rows when given, and only then.
pub async fn accounts_upsert_keeps_the_newest_version(store: Stores) {
    let v1: Vec<LoyaltyAccount> = (1..=3).map(|n| loyalty_account(n, 100)).collect();
    assert_eq!(store.upsert_accounts(&v1, Some("cursor-1")).await.unwrap(), 3);
    assert_eq!(store.count_accounts().await.unwrap(), 3);
    for a in &v1 {
        assert_eq!(store.loyalty_account(&a.id).await.unwrap(), Some(a.clone()));
    }
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-1")
    );

    let newer = LoyaltyAccount {
        points: 9_999,
        tier: "platinum".into(),
        email: None,
        version: 200,
        ..v1[0].clone()
    };
    let same_version = LoyaltyAccount {
        points: 1,
        ..v1[1].clone()
    };
    let older = LoyaltyAccount {
        name: "Stale".into(),
        version: 50,
        ..v1[2].clone()
    };
    let fourth = loyalty_account(4, 100);
    let written = store
        .upsert_accounts(&[newer.clone(), same_version, older, fourth.clone()], Some("cursor-2"))
        .await
        .unwrap();
    assert_eq!(written, 2, "the newer version and the new account");
    assert_eq!(store.loyalty_account(&newer.id).await.unwrap(), Some(newer));
    assert_eq!(store.loyalty_account(&v1[1].id).await.unwrap(), Some(v1[1].clone()));
    assert_eq!(store.loyalty_account(&v1[2].id).await.unwrap(), Some(v1[2].clone()));
    assert_eq!(store.loyalty_account(&fourth.id).await.unwrap(), Some(fourth));
    assert_eq!(store.count_accounts().await.unwrap(), 4);
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-2")
    );

    // Without a cursor the cursor stays; with only a cursor, only it moves.
    assert_eq!(store.upsert_accounts(&[loyalty_account(5, 1)], None).await.unwrap(), 1);
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-2")
    );
    assert_eq!(store.upsert_accounts(&[], Some("cursor-3")).await.unwrap(), 0);
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-3")
    );
    assert_eq!(store.count_accounts().await.unwrap(), 5);

    // One account three times in a call: the newest copy wins.
    let copies = [
        loyalty_account(6, 3),
        LoyaltyAccount {
            points: 7,
            ..loyalty_account(6, 5)
        },
        LoyaltyAccount {
            points: 1,
            ..loyalty_account(6, 4)
        },
    ];
    assert_eq!(store.upsert_accounts(&copies, None).await.unwrap(), 1);
    assert_eq!(
        store.loyalty_account(&copies[1].id).await.unwrap(),
        Some(copies[1].clone())
    );

    // A sync-sized page in one call, then the same page again.
    let page: Vec<LoyaltyAccount> = (1_000..6_000).map(|n| loyalty_account(n, 10)).collect();
    assert_eq!(store.upsert_accounts(&page, Some("cursor-4")).await.unwrap(), 5_000);
    assert_eq!(store.count_accounts().await.unwrap(), 5_006);
    for a in [&page[0], &page[2_500], &page[4_999]] {
        assert_eq!(store.loyalty_account(&a.id).await.unwrap().as_ref(), Some(a));
    }
    assert_eq!(store.upsert_accounts(&page, Some("cursor-5")).await.unwrap(), 0);
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-5")
    );
    assert_eq!(store.loyalty_account("acct-nobody").await.unwrap(), None);
}

/// Each sync kind keeps its own cursor; `None` clears it.
pub async fn sync_cursors_are_kept_per_kind(store: Stores) {
    assert_eq!(store.sync_cursor("menu").await.unwrap(), None);
    store.set_sync_cursor("menu", Some("\"etag-1\"")).await.unwrap();
    assert_eq!(store.sync_cursor("menu").await.unwrap().as_deref(), Some("\"etag-1\""));
    assert_eq!(store.sync_cursor("accounts").await.unwrap(), None);
    store.set_sync_cursor("accounts", Some("c-1")).await.unwrap();
    store.set_sync_cursor("menu", Some("\"etag-2\"")).await.unwrap();
    assert_eq!(store.sync_cursor("menu").await.unwrap().as_deref(), Some("\"etag-2\""));
    store.set_sync_cursor("menu", None).await.unwrap();
    assert_eq!(store.sync_cursor("menu").await.unwrap(), None);
    assert_eq!(store.sync_cursor("accounts").await.unwrap().as_deref(), Some("c-1"));
}

/// Sync runs list newest (latest start) first, filtered by kind and cut at
/// `limit`; snapshots newest first, metrics as they were.
pub async fn sync_runs_and_snapshots_list_newest_first(store: Stores) {
    let menu1 = sync_run("menu", 1_000, "ok");
    let acct2 = sync_run("accounts", 2_000, "ok");
    let menu3 = sync_run("menu", 3_000, "not_modified");
    let acct15 = sync_run("accounts", 1_500, "failed: upstream answered 503");
    for r in [&menu1, &acct2, &menu3, &acct15] {
        store.record_sync_run(r).await.unwrap();
    }
    assert_eq!(
        store.sync_runs(None, 10).await.unwrap(),
        vec![menu3.clone(), acct2.clone(), acct15, menu1.clone()]
    );
    assert_eq!(
        store.sync_runs(Some("menu"), 10).await.unwrap(),
        vec![menu3.clone(), menu1]
    );
    assert_eq!(store.sync_runs(Some("accounts"), 1).await.unwrap(), vec![acct2]);
    assert_eq!(store.sync_runs(None, 1).await.unwrap(), vec![menu3]);
    assert_eq!(store.sync_runs(Some("nothing"), 10).await.unwrap(), vec![]);

    let snaps = [snapshot(1_000, 120), snapshot(3_000, 300), snapshot(2_000, 240)];
    for s in &snaps {
        store.record_snapshot(s).await.unwrap();
    }
    assert_eq!(
        store.snapshots(10).await.unwrap(),
        vec![snaps[1].clone(), snaps[2].clone(), snaps[0].clone()]
    );
    assert_eq!(store.snapshots(1).await.unwrap(), vec![snaps[1].clone()]);
}

/// A catalog diff: categories upserted by code, changed items rewritten
/// but keeping the store's availability and place, new items appended and
/// available, removed items gone; other stores untouched; an unknown store
/// is `NotFound`.
pub async fn menu_diff_adds_changes_removes_and_keeps_availability(store: Stores) {
    let menu = demo_menu();
    let id = menu.store.id.clone();
    store.upsert_menu(&menu).await.unwrap();
    let mut other = demo_menu();
    other.store.id = uptown();
    store.upsert_menu(&other).await.unwrap();
    assert!(store.set_availability(&id, "latte", false).await.unwrap());

    let mut categories = menu.categories.clone();
    categories[0].name = "Espresso bar".into();
    categories.push(Category {
        code: "seasonal".into(),
        name: "Seasonal".into(),
        position: 0,
    });
    let mut latte = menu.items.iter().find(|i| i.sku == "latte").unwrap().clone();
    latte.name = "Caffè latte".into();
    latte.sizes[0].price += 25;
    latte.available = true;
    let pumpkin = Item {
        sku: "pumpkin-latte".into(),
        name: "Pumpkin spice latte".into(),
        category: "seasonal".into(),
        station: Station::Barista,
        sizes: vec![Size {
            code: "medium".into(),
            name: "Medium 12oz".into(),
            price: 575,
        }],
        modifiers: latte.modifiers.clone(),
        available: false,
    };
    store
        .apply_menu_diff(
            &id,
            &categories,
            &[latte.clone(), pumpkin.clone()],
            &["croissant".into()],
        )
        .await
        .unwrap();

    let mut want = menu.clone();
    want.categories = categories.clone();
    want.categories
        .sort_by(|a, b| (a.position, &a.code).cmp(&(b.position, &b.code)));
    want.items.retain(|i| i.sku != "croissant");
    for i in want.items.iter_mut().filter(|i| i.sku == "latte") {
        *i = Item {
            available: false,
            ..latte.clone()
        };
    }
    want.items.push(Item {
        available: true,
        ..pumpkin.clone()
    });
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(want.clone()));
    assert_eq!(
        store.load_menu(&uptown()).await.unwrap(),
        Some(other),
        "other stores untouched"
    );

    // An empty diff changes nothing; the new item can be 86'd like any.
    store.apply_menu_diff(&id, &[], &[], &[]).await.unwrap();
    assert_eq!(store.load_menu(&id).await.unwrap(), Some(want));
    assert!(store.set_availability(&id, "pumpkin-latte", false).await.unwrap());
    assert!(!store.set_availability(&id, "croissant", true).await.unwrap());

    let nowhere = StoreId("nowhere".into());
    assert_eq!(
        store.apply_menu_diff(&nowhere, &categories, &[pumpkin], &[]).await,
        Err(PortError::NotFound)
    );
    assert_eq!(store.load_menu(&nowhere).await.unwrap(), None);
}

/// Every status with its count, zeros included, following transitions.
pub async fn order_counts_cover_every_status(store: Stores) {
    let a = placed_order(1, 1_000);
    let b = placed_order(1, 1_001);
    let c = placed_order(1, 1_002);
    let d = placed_order(1, 1_003);
    apply(
        &store,
        0,
        4,
        &[confirm(&a), confirm(&b), confirm(&c), reject(&d, "closed")],
        2_000,
    )
    .await;
    store.transition(a.order_id, Action::StartLine(1), 3_000).await.unwrap();
    let want = |confirmed: u64, in_progress: u64| {
        OrderStatus::ALL
            .iter()
            .map(|s| {
                let n = match s {
                    OrderStatus::Confirmed => confirmed,
                    OrderStatus::InProgress => in_progress,
                    OrderStatus::Rejected => 1,
                    _ => 0,
                };
                (*s, n)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(store.order_counts().await.unwrap(), want(2, 1));
    store.transition(b.order_id, Action::StartLine(1), 3_000).await.unwrap();
    assert_eq!(store.order_counts().await.unwrap(), want(1, 2));
}

/// Maintenance reports what ran and leaves the store working.
pub async fn maintain_leaves_a_working_store(store: Stores) {
    let a = placed_order(2, 1_000);
    apply(&store, 0, 1, &[confirm(&a)], 2_000).await;
    let line = store.maintain().await.unwrap();
    assert!(!line.trim().is_empty());
    assert!(!line.contains('\n'), "one line: {line:?}");
    store.health().await.unwrap();
    assert!(store.get_order(a.order_id).await.unwrap().is_some());
    store.maintain().await.unwrap();
    let b = placed_order(1, 1_001);
    assert_eq!(apply(&store, 0, 2, &[confirm(&b)], 3_000).await.inserted, 1);
}
