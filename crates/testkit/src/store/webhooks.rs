//! The `WebhookStore` contract: subscribers round-trip; every order change
//! a subscriber can ask for (confirmed, ready, picked_up, cancelled,
//! expired, paid) reaches the outbox in the change's own transaction, and
//! nothing does while no subscriber is enabled; `dispatch` fans each event
//! out once by type and store; `due_deliveries` hands out only the oldest
//! pending delivery of each order; recorded attempts keep the last
//! response; a dead delivery can be put back to pending and then goes
//! ahead of its order's later ones; the cleanup's pruning deletes old
//! delivered and dead rows in bounded statements and never a pending one;
//! deleting a subscriber takes its log with it.

use domain::events::PaymentStatus;
use domain::webhooks::{Attempt, DeliveryState, EventType, NewSubscriber, Subscriber, SubscriberPatch};

use super::*;
use crate::fixtures::payment;

/// Calls `$callback! { webhooks: case, ... }` with every `WebhookStore` case.
#[macro_export]
macro_rules! webhook_store_cases {
    ($callback:ident) => {
        $callback! {
            webhooks:
            subscribers_round_trip,
            order_changes_reach_the_outbox_only_with_a_subscriber,
            dispatch_fans_out_by_type_and_store_once,
            only_the_oldest_pending_delivery_of_an_order_is_due,
            a_retried_dead_delivery_goes_again_ahead_of_its_orders_later_ones,
            pruning_deletes_old_finished_deliveries_in_bounded_statements,
        }
    };
}

/// The names of every `WebhookStore` case.
pub const CASES: &[&str] = webhook_store_cases!(case_names);

fn new_sub(url: &str, events: &[EventType], store: Option<&str>) -> NewSubscriber {
    NewSubscriber {
        url: url.into(),
        events: events.to_vec(),
        store: store.map(Into::into),
        secret: "whsec_test".into(),
        enabled: true,
        created_at: 1_000,
    }
}

async fn add(store: &Stores, url: &str, events: &[EventType], only: Option<&str>) -> Subscriber {
    store
        .create_subscriber(&new_sub(url, events, only))
        .await
        .expect("create_subscriber")
}

/// Every delivery of `sub`, oldest event first.
async fn log(store: &Stores, sub: i64) -> Vec<(EventType, String, DeliveryState)> {
    let mut rows = store.deliveries(sub, None, None, 1000).await.expect("deliveries");
    rows.reverse();
    rows.into_iter().map(|d| (d.kind, d.order_id, d.state)).collect()
}

pub async fn subscribers_round_trip(store: Stores) {
    assert_eq!(store.subscribers().await.unwrap(), vec![]);
    let a = add(
        &store,
        "https://a.example/hook",
        &[EventType::Ready, EventType::Paid],
        None,
    )
    .await;
    let b = add(&store, "http://127.0.0.1:9/b", &[EventType::Confirmed], Some("uptown")).await;
    assert!(a.id < b.id, "ids grow");
    assert_eq!(a.events, vec![EventType::Ready, EventType::Paid]);
    assert_eq!(a.secret, "whsec_test", "the secret is kept to sign with");
    assert_eq!(b.store.as_deref(), Some("uptown"));
    assert_eq!(store.subscribers().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(store.subscriber(a.id).await.unwrap(), Some(a.clone()));

    let off = store
        .update_subscriber(a.id, &SubscriberPatch { enabled: Some(false) })
        .await
        .unwrap();
    assert!(!off.enabled);
    assert_eq!(
        store
            .update_subscriber(9_999, &SubscriberPatch { enabled: Some(true) })
            .await,
        Err(domain::PortError::NotFound)
    );
    assert_eq!(store.add_ping(9_999, 2_000).await, Err(domain::PortError::NotFound));

    assert!(store.delete_subscriber(a.id).await.unwrap());
    assert!(!store.delete_subscriber(a.id).await.unwrap());
    assert_eq!(store.subscriber(a.id).await.unwrap(), None);
    assert_eq!(store.subscribers().await.unwrap(), vec![b]);
}

pub async fn order_changes_reach_the_outbox_only_with_a_subscriber(store: Stores) {
    // No subscriber: the order path writes nothing for webhooks.
    let early = placed_order(1, 1_000);
    apply(&store, 0, 1, &[confirm(&early)], 1_100).await;
    assert_eq!(store.outbox_len().await.unwrap(), 0);

    let all = add(&store, "https://all.example", &EventType::SUBSCRIBABLE, None).await;
    let a = placed_order(2, 2_000);
    let b = placed_order(3, 2_001);
    let c = placed_order(4, 2_002);
    apply(&store, 0, 2, &[confirm(&a), confirm(&b), confirm(&c)], 2_100).await;
    make_ready(&store, &a, 3_000).await;
    store.transition(a.order_id, Action::PickUp, 3_100).await.unwrap();
    store.cancel(b.order_id, Some("no milk"), 3_200).await.unwrap();
    make_ready(&store, &c, 3_300).await;
    let expired = store.expire_ready(3_301, 100, 3_400).await.unwrap();
    assert_eq!(expired.len(), 1);
    pay(&store, 3, &[payment(&a, "evt-paid", PaymentStatus::Paid, 3_500)], 3_600).await;
    // A redelivered payment and a failed one are no `paid` event.
    pay(&store, 4, &[payment(&a, "evt-paid", PaymentStatus::Paid, 3_500)], 3_700).await;
    pay(
        &store,
        5,
        &[payment(&b, "evt-failed", PaymentStatus::Failed, 3_800)],
        3_900,
    )
    .await;

    let n = domain::webhooks::dispatch_all(&*store, 2, 4_000).await.unwrap();
    assert_eq!(n as u64, 9, "3 confirmed, 2 ready, picked_up, cancelled, expired, paid");
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    let id = |p: &OrderPlacedV1| p.order_id.to_string();
    let pending = DeliveryState::Pending;
    let mut want = vec![
        (EventType::Confirmed, id(&a), pending),
        (EventType::Confirmed, id(&b), pending),
        (EventType::Confirmed, id(&c), pending),
        (EventType::Ready, id(&a), pending),
        (EventType::PickedUp, id(&a), pending),
        (EventType::Cancelled, id(&b), pending),
        (EventType::Ready, id(&c), pending),
        (EventType::Expired, id(&c), pending),
        (EventType::Paid, id(&a), pending),
    ];
    // The batch's three confirmations may be numbered in any order among
    // themselves; everything after them is in commit order.
    let mut got = log(&store, all.id).await;
    got[..3].sort();
    want[..3].sort();
    assert_eq!(got, want);
}

pub async fn dispatch_fans_out_by_type_and_store_once(store: Stores) {
    let ready_only = add(
        &store,
        "https://r.example",
        &[EventType::Ready, EventType::Confirmed],
        None,
    )
    .await;
    let up = add(&store, "https://u.example", &[EventType::Confirmed], Some("uptown")).await;
    let off = add(&store, "https://off.example", &[EventType::Confirmed], None).await;
    store
        .update_subscriber(off.id, &SubscriberPatch { enabled: Some(false) })
        .await
        .unwrap();
    let here = placed_order(1, 1_000);
    let there = placed_at_store(2, 1_001, uptown());
    apply(&store, 0, 1, &[confirm(&here), confirm(&there)], 1_100).await;
    let ping = store.add_ping(up.id, 1_200).await.unwrap();

    assert_eq!(store.dispatch(100, 2_000).await.unwrap(), 3);
    assert_eq!(store.dispatch(100, 2_001).await.unwrap(), 0, "the outbox is empty");
    assert_eq!(log(&store, ready_only.id).await.len(), 2);
    let u = store.deliveries(up.id, None, None, 10).await.unwrap();
    assert_eq!(
        u.iter().map(|d| (d.kind, d.order_id.clone())).collect::<Vec<_>>(),
        vec![
            (EventType::Ping, String::new()),
            (EventType::Confirmed, there.order_id.to_string())
        ]
    );
    assert_eq!(u[0].event_id, ping);
    assert_eq!(u[0].attempts, 0);
    assert_eq!(u[0].next_at, 2_000, "due at dispatch");
    assert_eq!(log(&store, off.id).await, vec![], "a disabled subscriber gets nothing");
    assert_eq!(store.pending_deliveries().await.unwrap(), 4);
    assert_eq!(store.due_subscribers(2_000).await.unwrap(), vec![ready_only.id, up.id]);
    assert_eq!(store.due_subscribers(1_999).await.unwrap(), Vec::<i64>::new());

    // Deleting a subscriber takes its deliveries along.
    assert!(store.delete_subscriber(up.id).await.unwrap());
    assert_eq!(store.pending_deliveries().await.unwrap(), 2);
}

pub async fn only_the_oldest_pending_delivery_of_an_order_is_due(store: Stores) {
    let sub = add(&store, "https://s.example", &EventType::SUBSCRIBABLE, None).await;
    let a = placed_order(1, 1_000);
    apply(&store, 0, 1, &[confirm(&a)], 1_100).await;
    make_ready(&store, &a, 1_200).await;
    let b = placed_order(2, 1_300);
    apply(&store, 0, 2, &[confirm(&b)], 1_400).await;
    store.dispatch(100, 2_000).await.unwrap();

    let due = store.due_deliveries(sub.id, 2_000, 10).await.unwrap();
    let kinds: Vec<_> = due.iter().map(|d| (d.kind, d.order_id.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (EventType::Confirmed, a.order_id.to_string()),
            (EventType::Confirmed, b.order_id.to_string())
        ],
        "a's `ready` waits behind its `confirmed`"
    );
    assert_eq!(store.due_deliveries(sub.id, 2_000, 1).await.unwrap().len(), 1, "limit");

    // a's confirmed fails and backs off; b's is delivered.
    let attempt = |event_id, state, next_at, status: Option<u16>, error: Option<&str>| Attempt {
        subscriber: sub.id,
        event_id,
        state,
        next_at,
        status,
        body: status.map(|s| format!("answer {s}")),
        error: error.map(Into::into),
        at: 2_100,
    };
    store
        .record_attempts(&[
            attempt(
                due[0].event_id,
                DeliveryState::Pending,
                5_000,
                Some(503),
                Some("receiver answered 503"),
            ),
            attempt(due[1].event_id, DeliveryState::Delivered, 2_100, Some(200), None),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.due_deliveries(sub.id, 4_999, 10).await.unwrap(),
        vec![],
        "a backs off, its ready waits"
    );
    assert_eq!(store.due_subscribers(4_999).await.unwrap(), Vec::<i64>::new());
    let again = store.due_deliveries(sub.id, 5_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event_id, due[0].event_id);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_status, Some(503));
    assert_eq!(again[0].last_body.as_deref(), Some("answer 503"));
    assert_eq!(again[0].last_error.as_deref(), Some("receiver answered 503"));

    // Dead: no more attempts, and the order's next event is due.
    store
        .record_attempts(&[attempt(
            due[0].event_id,
            DeliveryState::Dead,
            5_100,
            None,
            Some("timed out"),
        )])
        .await
        .unwrap();
    let next = store.due_deliveries(sub.id, 5_100, 10).await.unwrap();
    assert_eq!(next.iter().map(|d| d.kind).collect::<Vec<_>>(), vec![EventType::Ready]);
    let dead = store
        .deliveries(sub.id, Some(DeliveryState::Dead), None, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].last_status, None);
    assert_eq!(dead[0].last_error.as_deref(), Some("timed out"));
    // A late record of a delivery that is no longer pending changes nothing.
    store
        .record_attempts(&[attempt(
            due[0].event_id,
            DeliveryState::Delivered,
            6_000,
            Some(200),
            None,
        )])
        .await
        .unwrap();
    let still = store
        .deliveries(sub.id, Some(DeliveryState::Dead), None, 10)
        .await
        .unwrap();
    assert_eq!(still, dead);
    // Keyset paging: newest first, `before` an event id.
    let all = store.deliveries(sub.id, None, None, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    let older = store.deliveries(sub.id, None, Some(all[0].event_id), 10).await.unwrap();
    assert_eq!(older, all[1..].to_vec());
}

/// An attempt of `sub`'s delivery `event_id` recorded at `at`.
fn attempt_at(sub: i64, event_id: i64, state: DeliveryState, next_at: i64, status: u16, at: i64) -> Attempt {
    Attempt {
        subscriber: sub,
        event_id,
        state,
        next_at,
        status: Some(status),
        body: Some(format!("answer {status}")),
        error: (status >= 300).then(|| format!("receiver answered {status}")),
        at,
    }
}

pub async fn a_retried_dead_delivery_goes_again_ahead_of_its_orders_later_ones(store: Stores) {
    let sub = add(&store, "https://s.example", &EventType::SUBSCRIBABLE, None).await;
    let a = placed_order(1, 1_000);
    apply(&store, 0, 1, &[confirm(&a)], 1_100).await;
    make_ready(&store, &a, 1_200).await;
    store.dispatch(100, 2_000).await.unwrap();
    let first = store.due_deliveries(sub.id, 2_000, 10).await.unwrap();
    assert_eq!(first.len(), 1, "the ready waits behind the confirmed");
    let confirmed = first[0].event_id;
    store
        .record_attempts(&[attempt_at(sub.id, confirmed, DeliveryState::Dead, 2_100, 500, 2_100)])
        .await
        .unwrap();
    // With the confirmed dead the ready goes; it fails once and backs off.
    let next = store.due_deliveries(sub.id, 2_100, 10).await.unwrap();
    assert_eq!(next.iter().map(|d| d.kind).collect::<Vec<_>>(), vec![EventType::Ready]);
    let ready = next[0].event_id;
    store
        .record_attempts(&[attempt_at(sub.id, ready, DeliveryState::Pending, 9_000, 503, 2_200)])
        .await
        .unwrap();

    // Only dead deliveries go back: not a pending one, an unknown event, or
    // another subscriber's.
    assert_eq!(store.retry_deliveries(sub.id, Some(ready), 3_000).await.unwrap(), 0);
    assert_eq!(
        store
            .retry_deliveries(sub.id, Some(ready + 1_000), 3_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.retry_deliveries(sub.id + 1, None, 3_000).await.unwrap(), 0);
    assert_eq!(store.retry_deliveries(sub.id, Some(confirmed), 3_000).await.unwrap(), 1);

    let again = store.due_deliveries(sub.id, 3_000, 10).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|d| (d.event_id, d.state, d.attempts))
            .collect::<Vec<_>>(),
        vec![(confirmed, DeliveryState::Pending, 0)],
        "pending again, due now, attempts from zero"
    );
    assert_eq!(
        again[0].last_status,
        Some(500),
        "its last answer stays until the next attempt"
    );
    assert_eq!(store.due_subscribers(3_000).await.unwrap(), vec![sub.id]);
    assert_eq!(
        store
            .due_deliveries(sub.id, 9_000, 10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.event_id)
            .collect::<Vec<_>>(),
        vec![confirmed],
        "the order's ready, due by then, waits behind the retried confirmed"
    );
    assert_eq!(
        store.retry_deliveries(sub.id, None, 3_500).await.unwrap(),
        0,
        "nothing is dead now"
    );

    // Every dead one at once.
    store
        .record_attempts(&[
            attempt_at(sub.id, confirmed, DeliveryState::Dead, 3_100, 500, 3_100),
            attempt_at(sub.id, ready, DeliveryState::Dead, 3_100, 500, 3_100),
        ])
        .await
        .unwrap();
    assert_eq!(store.retry_deliveries(sub.id, None, 4_000).await.unwrap(), 2);
    let dead = store
        .deliveries(sub.id, Some(DeliveryState::Dead), None, 10)
        .await
        .unwrap();
    assert_eq!(dead, vec![]);
    assert_eq!(store.pending_deliveries().await.unwrap(), 2);
}

pub async fn pruning_deletes_old_finished_deliveries_in_bounded_statements(store: Stores) {
    let sub = add(&store, "https://s.example", &EventType::SUBSCRIBABLE, None).await;
    let orders: Vec<_> = (1..=4).map(|n| placed_order(n, 1_000)).collect();
    let decided: Vec<_> = orders.iter().map(confirm).collect();
    apply(&store, 0, 4, &decided, 1_100).await;
    store.dispatch(100, 2_000).await.unwrap();
    let due = store.due_deliveries(sub.id, 2_000, 10).await.unwrap();
    assert_eq!(due.len(), 4, "one confirmed per order");
    let id = |n: usize| due[n].event_id;
    // Two delivered long ago, one dead as long ago, one still pending.
    store
        .record_attempts(&[
            attempt_at(sub.id, id(0), DeliveryState::Delivered, 10_000, 200, 10_000),
            attempt_at(sub.id, id(1), DeliveryState::Delivered, 10_000, 200, 10_000),
            attempt_at(sub.id, id(2), DeliveryState::Dead, 10_000, 500, 10_000),
            attempt_at(sub.id, id(3), DeliveryState::Pending, 90_000, 503, 10_000),
        ])
        .await
        .unwrap();

    // At most `limit` rows per call.
    assert_eq!(store.prune_deliveries(20_000, 5_000, 1).await.unwrap(), 1);
    assert_eq!(store.prune_deliveries(20_000, 5_000, 1).await.unwrap(), 1);
    assert_eq!(
        store.prune_deliveries(20_000, 5_000, 1).await.unwrap(),
        0,
        "the dead one is kept longer"
    );
    assert_eq!(store.prune_deliveries(20_000, 20_000, 10).await.unwrap(), 1);
    assert_eq!(
        store.prune_deliveries(i64::MAX, i64::MAX, 10).await.unwrap(),
        0,
        "a pending delivery is never pruned, however old"
    );
    let left = store.deliveries(sub.id, None, None, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|d| (d.event_id, d.state)).collect::<Vec<_>>(),
        vec![(id(3), DeliveryState::Pending)]
    );
}
