//! `replay-dlq`: a dead letter is appended to the log again and forgotten,
//! and the running processors then apply it like any other record.

use domain::events::LogEvent;
use domain::ports::DeadLetter;
use rushhour::replay::{ReplayArgs, replay};

use crate::support::spawn_app;

#[tokio::test]
async fn a_re_driven_dead_letter_is_applied_and_forgotten() {
    let app = spawn_app().await;
    let placed = bench::drain::sample_orders(1, 2).remove(0);
    let id = placed.order_id.to_string();
    let letter = DeadLetter {
        group: "order-processors".into(),
        partition: 0,
        offset: 41,
        key: id.clone(),
        payload: LogEvent::OrderPlacedV1(placed).encode(),
        error: "store refused it (since fixed)".into(),
        attempts: 5,
        at: 1,
    };
    let store = &app.built.app.store;
    // Set aside as a processor would (position 0 stays where it is).
    let at = store.consumer_position("order-processors", 0).await.unwrap();
    store
        .apply_batch(domain::ports::ApplyBatch {
            dead: std::slice::from_ref(&letter),
            ..domain::ports::ApplyBatch::new("order-processors", 0, at, 1)
        })
        .await
        .unwrap();
    assert_eq!(app.get(&format!("/v1/orders/{id}")).await.status(), 404);

    let listed = replay(
        &app.built.app,
        &ReplayArgs {
            dry_run: true,
            limit: 100,
            group: None,
        },
    )
    .await
    .unwrap();
    assert_eq!((listed.listed, listed.replayed), (1, 0), "a dry run changes nothing");
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![letter.clone()]);

    let done = replay(
        &app.built.app,
        &ReplayArgs {
            dry_run: false,
            limit: 100,
            group: Some("order-processors".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(done.replayed, 1);
    assert!(
        store.dead_letters(10).await.unwrap().is_empty(),
        "re-driven letters are forgotten"
    );
    assert_eq!(app.settled(&id).await, "confirmed");
}
