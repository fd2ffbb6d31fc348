//! The `OrderStore` contract: batches applied once (orders, payments, dead
//! letters, positions), listings and pages, the guarded lifecycle and its
//! live events, a fresh board's open tickets, expiry and counts.

use domain::events::PaymentStatus;
use domain::menu::Station;
use domain::order::TransitionError;
use domain::ports::{DeadLetter, OrderSummary};

use crate::fixtures::payment;

use super::*;

/// Calls `$callback! { orders: case, case, ... }` with every `OrderStore` case.
#[macro_export]
macro_rules! order_store_cases {
    ($callback:ident) => {
        $callback! {
            orders:
            fresh_store_has_no_orders_and_is_healthy,
            apply_batch_confirms_and_rejects,
            apply_batch_is_idempotent,
            dead_letters_are_kept_and_position_advances,
            list_orders_filters_and_pages,
            transitions_reach_picked_up_with_events_in_order,
            cancel_and_expire_stamp_their_time,
            invalid_transitions_are_refused,
            events_after_by_order_and_by_store,
            open_board_replays_only_open_orders_of_the_window,
            concurrent_starts_have_one_winner,
            payments_apply_once_per_event,
            payments_that_do_not_fit_are_recorded_but_change_nothing,
            payment_follows_its_order_in_the_same_batch,
            an_older_payment_arriving_late_changes_nothing,
            expire_ready_expires_only_orders_ready_before_the_cutoff,
            order_counts_cover_every_status,
            pickup_codes_are_consecutive_per_store_and_local_day,
            pickup_codes_survive_replays_and_reach_events_and_listings,
            undo_takes_back_a_step_with_its_times,
            cancel_keeps_its_reason,
            tickets_split_open_and_recently_done_per_station,
            pickup_board_lists_coded_orders_being_made_or_ready,
            an_order_keeps_the_trace_it_was_placed_under,
        }
    };
}

/// The names of every `OrderStore` case, in the order `run_all` runs them.
pub const CASES: &[&str] = order_store_cases!(case_names);

/// The `traceparent` a batch hands over with an order stays on its row for
/// the actions that follow; an order placed untraced, or unknown, has none.
pub async fn an_order_keeps_the_trace_it_was_placed_under(store: Stores) {
    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = placed_order(1, 1_000);
    let plain = placed_order(1, 1_001);
    let batch = [
        Decided {
            trace: Some(TRACE.into()),
            ..confirm(&traced)
        },
        confirm(&plain),
    ];
    apply(&store, 1, 2, &batch, 5_000).await;
    assert_eq!(
        store.order_trace(traced.order_id).await.unwrap().as_deref(),
        Some(TRACE)
    );
    assert_eq!(store.order_trace(plain.order_id).await.unwrap(), None);
    assert_eq!(store.order_trace(placed_order(1, 1_002).order_id).await.unwrap(), None);
}

/// A new store has no orders, events, dead letters or positions, and is
/// healthy.
pub async fn fresh_store_has_no_orders_and_is_healthy(store: Stores) {
    store.health().await.expect("a fresh store is healthy");
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
    assert_eq!(store.expire_ready(i64::MAX, 100, 1).await.unwrap(), vec![]);
    assert_eq!(
        store.order_counts().await.unwrap(),
        OrderStatus::ALL.iter().map(|s| (*s, 0)).collect::<Vec<_>>()
    );
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
        event_with_code(status_event(out.events[0].id, &a, OrderStatus::Confirmed, 5_000), 1)
    );
    assert_eq!(
        out.events[1],
        status_event(out.events[1].id, &b, OrderStatus::Rejected, 5_000)
    );

    let got_a = store.get_order(a.order_id).await.unwrap().expect("order a");
    assert_eq!(got_a, with_code(expected_order(&a, &Decision::Confirm, 5_000), 1));
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
        event_with_code(status_event(mixed.events[0].id, &c, OrderStatus::Confirmed, 8_000), 2)
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
        .apply_batch(ApplyBatch {
            dead: &[d7.clone(), d8.clone()],
            ..ApplyBatch::new(GROUP, 1, 9, 20_000)
        })
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
        .apply_batch(ApplyBatch {
            orders: &[confirm(&a)],
            dead: std::slice::from_ref(&d12),
            ..ApplyBatch::new(GROUP, 1, 13, 21_000)
        })
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
            name: None,
            pickup_code: summary.pickup_code.clone(),
        }
    );
    assert!(summary.pickup_code.is_some(), "a confirmed order has a pickup code");

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
    let mut expected = with_code(expected_order(&p, &Decision::Confirm, 2_000), 1);
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
    let mut want = with_code(expected_order(&a, &Decision::Confirm, 2_000), 1);
    want.status = OrderStatus::Cancelled;
    want.at.cancelled_at = Some(3_000);
    assert_eq!(cancelled, want);
    assert_eq!(
        events,
        vec![event_with_code(
            status_event(events[0].id, &a, OrderStatus::Cancelled, 3_000),
            1
        )]
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
        vec![event_with_code(
            status_event(events[0].id, &b, OrderStatus::Expired, 9_000),
            2
        )]
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

/// A board opened without `Last-Event-ID` (`open_board`) gets the store's
/// newest event id as its cursor and every event, oldest first, of the
/// store's orders placed since the window's start that are still open:
/// not finished ones (rejected, cancelled, picked up), not older ones, not
/// another store's. `limit` cuts the events, never the cursor.
pub async fn open_board_replays_only_open_orders_of_the_window(store: Stores) {
    let empty = store.open_board(&demo_store(), 0, 100).await.unwrap();
    assert_eq!((empty.cursor, empty.events), (0, vec![]), "a store without events");

    let open = placed_order(2, 1_000);
    let rejected = placed_order(1, 1_001);
    let cancelled = placed_order(1, 1_002);
    let picked_up = placed_order(1, 1_003);
    let too_old = placed_order(1, 400);
    let uptown_open = placed_at_store(1, 1_004, uptown());
    let batch = [
        confirm(&open),
        reject(&rejected, "closed"),
        confirm(&cancelled),
        confirm(&picked_up),
        confirm(&too_old),
        confirm(&uptown_open),
    ];
    let mut emitted = apply(&store, 0, 6, &batch, 2_000).await.events;
    for (order, action, at) in [
        (&open, Action::StartLine(1), 3_000),
        (&cancelled, Action::Cancel, 3_100),
        (&picked_up, Action::StartLine(1), 3_200),
        (&picked_up, Action::FinishLine(1), 3_300),
        (&picked_up, Action::PickUp, 3_400),
        (&uptown_open, Action::StartLine(1), 3_500),
    ] {
        emitted.extend(store.transition(order.order_id, action, at).await.unwrap().1);
    }
    assert_increasing(&emitted);
    let of = |id: OrderId| emitted.iter().filter(|e| e.order_id == id).cloned().collect::<Vec<_>>();
    let newest = |s: &StoreId| emitted.iter().filter(|e| e.store == *s).map(|e| e.id).max().unwrap();

    let board = store.open_board(&demo_store(), 500, 100).await.unwrap();
    assert_eq!(
        board.cursor,
        newest(&demo_store()),
        "the cursor is the store's newest event"
    );
    let want = of(open.order_id);
    assert_eq!(want.len(), 3, "confirmed; line 1 started; in progress");
    assert_eq!(board.events, want, "only the open order placed in the window");

    let cut = store.open_board(&demo_store(), 500, 2).await.unwrap();
    assert_eq!(cut.cursor, board.cursor);
    assert_eq!(cut.events, want[..2].to_vec());

    let wider = store.open_board(&demo_store(), 0, 100).await.unwrap();
    let mut want_wider = of(open.order_id);
    want_wider.extend(of(too_old.order_id));
    want_wider.sort_by_key(|e| e.id);
    assert_eq!(
        wider.events, want_wider,
        "a wider window takes the older open order too"
    );

    let up = store.open_board(&uptown(), 500, 100).await.unwrap();
    assert_eq!(up.cursor, newest(&uptown()));
    assert_eq!(up.events, of(uptown_open.order_id));

    // Events after the snapshot are the tail's, read as a resumed stream.
    let (_, later) = store
        .transition(open.order_id, Action::StartLine(2), 4_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .events_after(&EventScope::Store(demo_store()), board.cursor, 100)
            .await
            .unwrap(),
        later
    );
    let again = store.open_board(&demo_store(), 500, 100).await.unwrap();
    assert_eq!(again.cursor, later.last().unwrap().id);
    assert_eq!(again.events, [want, later].concat());
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

/// Callbacks arrive out of order: the provider's time (`provider_ts`), not
/// the order of arrival, decides the payment status. A `failed` from before
/// a `paid`, arriving after it in a later batch or in the same one, is
/// recorded (delivered again, it is a duplicate) and changes nothing; a
/// newer event still does, and an older `paid` does not undo a refund.
/// Within one of the provider's seconds, a payment's lifecycle decides.
pub async fn an_older_payment_arriving_late_changes_nothing(store: Stores) {
    let a = placed_order(1, 1_000);
    let b = placed_order(1, 1_001);
    apply(&store, 0, 2, &[confirm(&a), confirm(&b)], 2_000).await;
    let at = |order: &OrderPlacedV1, id: &str, status: PaymentStatus, provider_ts: i64, received_at: i64| PaymentV1 {
        provider_ts,
        ..payment(order, id, status, received_at)
    };

    let paid = at(&a, "evt-paid", PaymentStatus::Paid, 100, 3_000);
    assert_eq!(pay(&store, 3, &[paid], 3_100).await.payments, counts(1, 0, 0, 0));
    assert_eq!(payment_status(&store, a.order_id).await, "paid");
    // A failure from before the payment arrives late: recorded, no effect.
    let late = at(&a, "evt-late-failed", PaymentStatus::Failed, 90, 5_000);
    assert_eq!(
        pay(&store, 4, std::slice::from_ref(&late), 5_100).await.payments,
        counts(1, 0, 0, 0)
    );
    assert_eq!(payment_status(&store, a.order_id).await, "paid");
    assert_eq!(
        pay(&store, 5, &[late], 5_200).await.payments,
        counts(0, 1, 0, 0),
        "the late event was kept: delivered again, it is a duplicate"
    );
    assert_eq!(payment_status(&store, a.order_id).await, "paid");
    // A newer event still moves it, and an older `paid` does not move it back.
    let refund = at(&a, "evt-refund", PaymentStatus::Refunded, 200, 6_000);
    assert_eq!(pay(&store, 6, &[refund], 6_100).await.payments, counts(1, 0, 0, 0));
    assert_eq!(payment_status(&store, a.order_id).await, "refunded");
    let old_paid = at(&a, "evt-old-paid", PaymentStatus::Paid, 95, 7_000);
    assert_eq!(pay(&store, 7, &[old_paid], 7_100).await.payments, counts(1, 0, 0, 0));
    assert_eq!(payment_status(&store, a.order_id).await, "refunded");

    // Newest first within one batch: the same answer as across batches.
    let b_paid = at(&b, "evt-b-paid", PaymentStatus::Paid, 300, 8_000);
    let b_failed = at(&b, "evt-b-failed", PaymentStatus::Failed, 250, 8_001);
    assert_eq!(
        pay(&store, 8, &[b_paid, b_failed], 8_100).await.payments,
        counts(2, 0, 0, 0)
    );
    assert_eq!(payment_status(&store, b.order_id).await, "paid");
    // The same second as the payment: a failed attempt comes before it.
    let b_tie = at(&b, "evt-b-tie", PaymentStatus::Failed, 300, 9_000);
    assert_eq!(pay(&store, 9, &[b_tie], 9_100).await.payments, counts(1, 0, 0, 0));
    assert_eq!(payment_status(&store, b.order_id).await, "paid");
    assert_eq!(
        store.get_order(a.order_id).await.unwrap().unwrap().status,
        OrderStatus::Confirmed,
        "payments never touch the order's status"
    );
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
        .apply_batch(ApplyBatch {
            orders: &orders,
            payments: &payments,
            ..ApplyBatch::new(GROUP, 2, 4, 2_000)
        })
        .await
        .unwrap();
    assert_eq!(out.inserted, 2);
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.payments, counts(2, 0, 0, 0));
    let mut want = with_code(expected_order(&a, &Decision::Confirm, 2_000), 1);
    want.payment_status = "paid".into();
    assert_eq!(store.get_order(a.order_id).await.unwrap(), Some(want.clone()));
    assert_eq!(payment_status(&store, b.order_id).await, "failed");

    let again = store
        .apply_batch(ApplyBatch {
            orders: &orders,
            payments: &payments,
            ..ApplyBatch::new(GROUP, 2, 4, 3_000)
        })
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
        vec![event_with_code(
            status_event(first[0].id, &old2, OrderStatus::Expired, 10_000),
            2
        )],
        "the longest-waiting order goes first"
    );
    let rest = store.expire_ready(7_000, 10, 10_500).await.unwrap();
    assert_eq!(
        rest,
        vec![event_with_code(
            status_event(rest[0].id, &old1, OrderStatus::Expired, 10_500),
            1
        )]
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

// ------------------------------------------------------------ issue 11

/// A placed order for `store` at `placed_at`, with a first name.
fn named(n: usize, placed_at: i64, store: StoreId, name: Option<&str>) -> OrderPlacedV1 {
    OrderPlacedV1 {
        name: name.map(str::to_owned),
        ..placed_at_store(n, placed_at, store)
    }
}

fn code_of(o: &Order) -> Option<&str> {
    o.pickup_code.as_deref()
}

async fn stored(store: &Stores, p: &OrderPlacedV1) -> Order {
    store.get_order(p.order_id).await.unwrap().expect("order")
}

/// Codes count 1, 2, 3... per store and per local day of the store's time
/// zone, across batches and partitions, in the order orders are applied;
/// rejected orders get none and draw no number.
pub async fn pickup_codes_are_consecutive_per_store_and_local_day(store: Stores) {
    // The demo store is in Europe/London: 2026-07-01T23:30Z is already
    // 2 July there (BST), a new local day although UTC's date is the same
    // as at 22:30Z. `uptown` has no store row: its days are UTC's.
    store.upsert_menu(&demo_menu()).await.unwrap();
    let t0 = 1_782_941_400_000; // 2026-07-01T21:30:00Z, 22:30 in London
    let late = t0 + 2 * 3_600_000; // 23:30Z, 00:30 on 2 July in London
    let a1 = named(1, t0, demo_store(), Some("Ada"));
    let a2 = named(1, t0 + 1, demo_store(), None);
    let r = named(1, t0 + 2, demo_store(), None);
    let u1 = named(1, t0 + 3, uptown(), None);
    apply(
        &store,
        0,
        1,
        &[confirm(&a1), reject(&r, "closed"), confirm(&u1)],
        t0 + 10,
    )
    .await;
    // Another partition, same store and day: the count goes on.
    let a3 = named(1, t0 + 4, demo_store(), None);
    apply(&store, 1, 1, &[confirm(&a3)], t0 + 11).await;
    apply(&store, 0, 2, &[confirm(&a2)], t0 + 12).await;
    // London's next day starts again at 1; uptown's (UTC) day has not changed.
    let b1 = named(1, late, demo_store(), None);
    let u2 = named(1, late + 1, uptown(), None);
    apply(&store, 1, 2, &[confirm(&b1), confirm(&u2)], late + 10).await;

    let code = |n| Some(domain::pickup::PickupCode::nth(n).into_string());
    for (p, want) in [
        (&a1, code(1)),
        (&a3, code(2)),
        (&a2, code(3)),
        (&b1, code(1)),
        (&u1, code(1)),
        (&u2, code(2)),
    ] {
        assert_eq!(
            stored(&store, p).await.pickup_code,
            want,
            "order placed at {}",
            p.placed_at
        );
    }
    let rejected = stored(&store, &r).await;
    assert_eq!((rejected.status, code_of(&rejected)), (OrderStatus::Rejected, None));
    assert_eq!(stored(&store, &a1).await.name.as_deref(), Some("Ada"));
}

/// A replayed batch keeps every code it drew and draws none (the next new
/// order gets the next number); events (as applied and as read back) and
/// listings carry the code and the name.
pub async fn pickup_codes_survive_replays_and_reach_events_and_listings(store: Stores) {
    let a = named(2, 1_000, demo_store(), Some("Grace"));
    let b = named(1, 1_001, demo_store(), None);
    let first = apply(&store, 0, 2, &[confirm(&a), confirm(&b)], 2_000).await;
    assert_eq!(
        first.events,
        vec![
            event_with_code(status_event(first.events[0].id, &a, OrderStatus::Confirmed, 2_000), 1),
            event_with_code(status_event(first.events[1].id, &b, OrderStatus::Confirmed, 2_000), 2),
        ]
    );
    let again = apply(&store, 0, 2, &[confirm(&a), confirm(&b)], 3_000).await;
    assert_eq!((again.inserted, again.events.len()), (0, 0));
    assert_eq!(
        stored(&store, &a).await,
        with_code(expected_order(&a, &Decision::Confirm, 2_000), 1)
    );
    assert_eq!(code_of(&stored(&store, &b).await), Some("A-002"));
    let c = named(1, 1_002, demo_store(), None);
    apply(&store, 1, 1, &[confirm(&c)], 4_000).await;
    assert_eq!(
        code_of(&stored(&store, &c).await),
        Some("A-003"),
        "the replay burned no number"
    );

    // Ticket and status events written later carry them too, and reading
    // back gives every event of the order its code and name.
    let (_, events) = store.transition(a.order_id, Action::StartLine(1), 5_000).await.unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.pickup_code.as_deref() == Some("A-001") && e.name.as_deref() == Some("Grace"))
    );
    let read = order_events(&store, a.order_id).await;
    assert_eq!(read.len(), 3);
    assert!(
        read.iter()
            .all(|e| e.pickup_code.as_deref() == Some("A-001") && e.name.as_deref() == Some("Grace"))
    );
    let board = store.open_board(&demo_store(), 0, 100).await.unwrap();
    assert!(board.events.iter().all(|e| e.pickup_code.is_some()));

    // Listings: the code, and the filters by code and by placing time.
    let by_code = store
        .list_orders(&OrderFilter {
            pickup_code: Some("A-002".into()),
            ..filter(Some(demo_store()), None, 10)
        })
        .await
        .unwrap();
    assert_eq!(by_code.iter().map(|s| s.id).collect::<Vec<_>>(), vec![b.order_id]);
    assert_eq!(by_code[0].pickup_code.as_deref(), Some("A-002"));
    let since = store
        .list_orders(&OrderFilter {
            placed_since: Some(1_001),
            ..filter(Some(demo_store()), None, 10)
        })
        .await
        .unwrap();
    assert_eq!(
        since.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![c.order_id, b.order_id]
    );
    let summary_a = store.list_orders(&filter(None, None, 10)).await.unwrap();
    let summary_a = summary_a.iter().find(|s| s.id == a.order_id).unwrap();
    assert_eq!(summary_a.name.as_deref(), Some("Grace"));
}

/// An undo takes back the line's last step and the status it caused, with
/// its timestamp, emitting events like any step; the stored order matches
/// the domain's `plan`/`apply`. Picked-up orders refuse it.
pub async fn undo_takes_back_a_step_with_its_times(store: Stores) {
    let p = placed_order(2, 1_000);
    apply(&store, 0, 1, &[confirm(&p)], 2_000).await;
    let mut expected = with_code(expected_order(&p, &Decision::Confirm, 2_000), 1);
    let steps = [
        (Action::StartLine(1), 3_000, OrderStatus::InProgress),
        (Action::Undo(1), 3_500, OrderStatus::Confirmed),
        (Action::StartLine(1), 4_000, OrderStatus::InProgress),
        (Action::StartLine(2), 4_100, OrderStatus::InProgress),
        (Action::FinishLine(1), 4_200, OrderStatus::InProgress),
        (Action::FinishLine(2), 4_300, OrderStatus::Ready),
        (Action::Undo(2), 4_400, OrderStatus::InProgress),
        (Action::FinishLine(2), 4_500, OrderStatus::Ready),
    ];
    for (action, now, status) in steps {
        let plan = order::plan(&expected, action).unwrap();
        order::apply(&mut expected, &plan, now);
        let (got, events) = store.transition(p.order_id, action, now).await.expect("transition");
        assert_eq!(got, expected, "after {action:?}");
        assert_eq!(got.status, status);
        assert_eq!(stored(&store, &p).await, expected);
        assert!(
            events.iter().any(|e| e.kind == LiveEventKind::Ticket),
            "{action:?} emits its ticket event"
        );
        if let Action::Undo(n) = action {
            let t = events.iter().find(|e| e.kind == LiveEventKind::Ticket).unwrap();
            assert_eq!((t.line, t.ticket), (Some(n), got.lines[n as usize - 1].ticket));
            assert!(
                events
                    .iter()
                    .any(|e| e.kind == LiveEventKind::Status && e.status == status)
            );
        }
    }
    assert_eq!(
        expected.at.started_at,
        Some(4_000),
        "the first start after the undo counts"
    );
    assert_eq!(expected.at.ready_at, Some(4_500));
    store.transition(p.order_id, Action::PickUp, 5_000).await.unwrap();
    assert!(matches!(
        store.transition(p.order_id, Action::Undo(1), 5_100).await,
        Err(TransitionError::InvalidTransition { .. })
    ));
}

/// A cancel with a reason keeps it with the order; one without keeps none.
pub async fn cancel_keeps_its_reason(store: Stores) {
    let a = placed_order(1, 1_000);
    let b = placed_order(1, 1_001);
    apply(&store, 0, 2, &[confirm(&a), confirm(&b)], 2_000).await;
    let (got, events) = store.cancel(a.order_id, Some("customer left"), 3_000).await.unwrap();
    assert_eq!(
        (got.status, got.cancel_reason.as_deref()),
        (OrderStatus::Cancelled, Some("customer left"))
    );
    assert_eq!(events.len(), 1);
    assert_eq!(stored(&store, &a).await, got);
    let (got, _) = store.cancel(b.order_id, None, 3_000).await.unwrap();
    assert_eq!((got.status, got.cancel_reason), (OrderStatus::Cancelled, None));
    // A refused cancel stores no reason.
    assert!(store.cancel(a.order_id, Some("again"), 4_000).await.is_err());
    assert_eq!(stored(&store, &a).await.cancel_reason.as_deref(), Some("customer left"));
}

fn tickets_query(station: Option<Station>, done_since: i64) -> domain::ports::TicketsQuery {
    domain::ports::TicketsQuery {
        store: demo_store(),
        station,
        placed_since: 0,
        done_since,
        open_limit: 100,
        recent_limit: 100,
    }
}

fn ids_of(orders: &[Order]) -> Vec<OrderId> {
    orders.iter().map(|o| o.id).collect()
}

/// `open` holds the orders with a ticket of the station still to make,
/// oldest first, with their lines; `recent` those whose station's lines
/// are all done since the cutoff, most recently finished first; the cursor
/// is the store's newest event, and a change after it comes after it.
pub async fn tickets_split_open_and_recently_done_per_station(store: Stores) {
    // Lines: 1 latte (barista), 2 croissant (kitchen).
    let a = placed_order(2, 1_000);
    let b = placed_order(2, 1_001);
    let c = placed_order(1, 1_002); // a latte alone
    let r = placed_order(1, 1_003);
    let other = placed_at_store(1, 1_004, uptown());
    apply(
        &store,
        0,
        5,
        &[confirm(&a), confirm(&b), confirm(&c), reject(&r, "no"), confirm(&other)],
        2_000,
    )
    .await;
    // a: latte done at 3_000, croissant open. c: latte done at 5_000 (ready).
    for (p, action, at) in [
        (&a, Action::StartLine(1), 2_500),
        (&a, Action::FinishLine(1), 3_000),
        (&c, Action::StartLine(1), 4_000),
        (&c, Action::FinishLine(1), 5_000),
    ] {
        store.transition(p.order_id, action, at).await.unwrap();
    }
    let snap = store
        .tickets(&tickets_query(Some(Station::Barista), 2_900))
        .await
        .unwrap();
    assert_eq!(ids_of(&snap.open), vec![b.order_id]);
    assert_eq!(
        ids_of(&snap.recent),
        vec![c.order_id, a.order_id],
        "most recently finished first"
    );
    assert_eq!(
        snap.open[0],
        stored(&store, &b).await,
        "open orders come whole, lines included"
    );
    let kitchen = store.tickets(&tickets_query(Some(Station::Kitchen), 0)).await.unwrap();
    assert_eq!(ids_of(&kitchen.open), vec![a.order_id, b.order_id]);
    assert_eq!(ids_of(&kitchen.recent), Vec::<OrderId>::new());
    let both = store.tickets(&tickets_query(None, 0)).await.unwrap();
    assert_eq!(ids_of(&both.open), vec![a.order_id, b.order_id]);
    assert_eq!(ids_of(&both.recent), vec![c.order_id], "all of its lines done");
    // The cutoff leaves out what was finished before it.
    let late = store
        .tickets(&tickets_query(Some(Station::Barista), 4_000))
        .await
        .unwrap();
    assert_eq!(ids_of(&late.recent), vec![c.order_id]);

    // The cursor: the store's newest event; a change after it follows it.
    let newest = store
        .events_after(&EventScope::Store(demo_store()), 0, 1_000)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    assert_eq!(snap.cursor, newest);
    let (_, events) = store.transition(b.order_id, Action::StartLine(1), 6_000).await.unwrap();
    let tail = store
        .events_after(&EventScope::Store(demo_store()), snap.cursor, 100)
        .await
        .unwrap();
    assert_eq!(
        tail, events,
        "what changed after the snapshot is exactly the tail after its cursor"
    );
    // Undoing a finish takes the order out of `recent` and back to `open`.
    store.transition(c.order_id, Action::Undo(1), 7_000).await.unwrap();
    let again = store.tickets(&tickets_query(Some(Station::Barista), 0)).await.unwrap();
    assert_eq!(ids_of(&again.open), vec![b.order_id, c.order_id]);
    assert_eq!(ids_of(&again.recent), vec![a.order_id]);
    // Limits hold, and the window keeps out older orders.
    let capped = store
        .tickets(&domain::ports::TicketsQuery {
            open_limit: 1,
            recent_limit: 0,
            ..tickets_query(None, 0)
        })
        .await
        .unwrap();
    assert_eq!((ids_of(&capped.open), capped.recent.len()), (vec![a.order_id], 0));
    let windowed = store
        .tickets(&domain::ports::TicketsQuery {
            placed_since: 1_001,
            ..tickets_query(None, 0)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&windowed.open), vec![b.order_id, c.order_id]);
    let empty = store
        .tickets(&domain::ports::TicketsQuery {
            store: StoreId("nowhere".into()),
            ..tickets_query(None, 0)
        })
        .await
        .unwrap();
    assert_eq!(empty, domain::ports::TicketsSnapshot::default());
}

/// The pickup board holds the store's coded orders being made or ready,
/// oldest first: not rejected, cancelled or picked-up ones, nor another
/// store's, nor those placed before the window.
pub async fn pickup_board_lists_coded_orders_being_made_or_ready(store: Stores) {
    let ready = named(1, 1_000, demo_store(), Some("Ada"));
    let making = named(1, 1_001, demo_store(), None);
    let gone = named(1, 1_002, demo_store(), None);
    let cancelled = named(1, 1_003, demo_store(), None);
    let rejected = named(1, 1_004, demo_store(), None);
    let other = named(1, 1_005, uptown(), None);
    apply(
        &store,
        0,
        6,
        &[
            confirm(&ready),
            confirm(&making),
            confirm(&gone),
            confirm(&cancelled),
            reject(&rejected, "no"),
            confirm(&other),
        ],
        2_000,
    )
    .await;
    make_ready(&store, &ready, 3_000).await;
    store
        .transition(making.order_id, Action::StartLine(1), 3_100)
        .await
        .unwrap();
    make_ready(&store, &gone, 3_200).await;
    store.transition(gone.order_id, Action::PickUp, 3_300).await.unwrap();
    store
        .transition(cancelled.order_id, Action::Cancel, 3_400)
        .await
        .unwrap();

    let board = store.pickup_board(&demo_store(), 0, 100).await.unwrap();
    let got: Vec<_> = board
        .orders
        .iter()
        .map(|o| (o.id, o.status, o.pickup_code.clone(), o.name.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                ready.order_id,
                OrderStatus::Ready,
                Some("A-001".into()),
                Some("Ada".into())
            ),
            (making.order_id, OrderStatus::InProgress, Some("A-002".into()), None),
        ]
    );
    let newest = store
        .events_after(&EventScope::Store(demo_store()), 0, 1_000)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    assert_eq!(board.cursor, newest);
    assert_eq!(
        store
            .pickup_board(&demo_store(), 1_001, 100)
            .await
            .unwrap()
            .orders
            .len(),
        1
    );
    assert_eq!(store.pickup_board(&demo_store(), 0, 1).await.unwrap().orders.len(), 1);
}
