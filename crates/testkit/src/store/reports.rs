//! The `ReportStore` contract: prep samples per station (newest first, per
//! station limit, only the window), a day's figures aggregated per elapsed
//! hour with nearest-rank p90s, best sellers by quantity, and the kept
//! popular items replaced whole.

use domain::menu::Station;
use domain::ports::{PopularItem, PrepSample};

use super::*;

/// Calls `$callback! { reports: case, ... }` with every `ReportStore` case.
#[macro_export]
macro_rules! report_store_cases {
    ($callback:ident) => {
        $callback! {
            reports:
            prep_samples_are_the_newest_per_station_in_the_window,
            day_rows_count_per_hour_with_p90s,
            top_items_rank_by_quantity_and_popular_items_are_replaced_whole,
        }
    };
}

/// The names of every `ReportStore` case.
pub const CASES: &[&str] = report_store_cases!(case_names);

/// Line 1 latte (barista), line 2 croissant (kitchen), confirmed at 2_000.
async fn two_station_order(store: &Stores, placed_at: i64) -> OrderPlacedV1 {
    let p = placed_order(2, placed_at);
    apply(store, 0, 1, &[confirm(&p)], 2_000).await;
    p
}

async fn finish(store: &Stores, p: &OrderPlacedV1, line: u32, at: i64) {
    store
        .transition(p.order_id, Action::StartLine(line), at - 1)
        .await
        .unwrap();
    store
        .transition(p.order_id, Action::FinishLine(line), at)
        .await
        .unwrap();
}

pub async fn prep_samples_are_the_newest_per_station_in_the_window(store: Stores) {
    let a = two_station_order(&store, 1_000).await;
    let b = two_station_order(&store, 1_001).await;
    let c = two_station_order(&store, 1_002).await;
    finish(&store, &a, 1, 5_000).await; // 3 s, before the window
    finish(&store, &b, 1, 12_000).await; // 10 s
    finish(&store, &c, 1, 22_000).await; // 20 s
    finish(&store, &b, 2, 32_000).await; // kitchen, 30 s
    // An undone finish is no sample.
    store
        .transition(c.order_id, Action::StartLine(2), 40_000)
        .await
        .unwrap();
    store
        .transition(c.order_id, Action::FinishLine(2), 41_000)
        .await
        .unwrap();
    store.transition(c.order_id, Action::Undo(2), 42_000).await.unwrap();

    let mut got = store.prep_samples(&demo_store(), 10_000, 10).await.unwrap();
    got.sort_by_key(|s| (s.station.as_str(), s.ms));
    assert_eq!(
        got,
        vec![
            PrepSample {
                station: Station::Barista,
                ms: 10_000
            },
            PrepSample {
                station: Station::Barista,
                ms: 20_000
            },
            PrepSample {
                station: Station::Kitchen,
                ms: 30_000
            },
        ]
    );
    let newest = store.prep_samples(&demo_store(), 0, 1).await.unwrap();
    let mut newest: Vec<_> = newest.iter().map(|s| (s.station, s.ms)).collect();
    newest.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(newest, vec![(Station::Barista, 20_000), (Station::Kitchen, 30_000)]);
    assert_eq!(store.prep_samples(&uptown(), 0, 10).await.unwrap(), vec![]);
}

pub async fn day_rows_count_per_hour_with_p90s(store: Stores) {
    const H: i64 = 3_600_000;
    let start = 100 * H;
    // Hour 0: three orders ready after 10, 20 and 40 s, one rejected.
    // Hour 2: one ready after 60 s and picked up, one cancelled.
    // Before the day and after it: ignored.
    let mut batch = Vec::new();
    let times = [(start, 10), (start + 1, 20), (start + 2, 40), (start + 2 * H, 60)];
    let ready: Vec<OrderPlacedV1> = times.iter().map(|(t, _)| placed_order(1, *t)).collect();
    batch.extend(ready.iter().map(confirm));
    let rejected = placed_order(1, start + 3);
    let cancelled = placed_order(1, start + 2 * H + 5);
    let before = placed_order(1, start - 1);
    let after = placed_order(1, start + 24 * H);
    batch.push(reject(&rejected, "no"));
    batch.extend([&cancelled, &before, &after].map(confirm));
    apply(&store, 0, 1, &batch, start).await;
    for (p, (t, secs)) in ready.iter().zip(times) {
        make_ready(&store, p, t + secs * 1000).await;
    }
    make_ready(&store, &before, start + 1_000).await;
    store
        .transition(ready[3].order_id, Action::PickUp, start + 3 * H)
        .await
        .unwrap();
    store
        .transition(cancelled.order_id, Action::Cancel, start + 3 * H)
        .await
        .unwrap();

    let rows = store.day_rows(&demo_store(), start, start + 24 * H).await.unwrap();
    let hours: Vec<_> = rows
        .hours
        .iter()
        .map(|h| (h.hour, h.orders, h.ready, h.picked_up, h.cancelled, h.rejected))
        .collect();
    assert_eq!(hours, vec![(0, 4, 3, 0, 0, 1), (2, 2, 1, 1, 1, 0)]);
    let times: Vec<_> = rows.hours.iter().map(|h| (h.avg_ready_ms, h.p90_ready_ms)).collect();
    // Nearest rank: ceil(0.9 × 3) = 3rd of 10, 20, 40 s.
    assert_eq!(
        times,
        vec![(Some(70_000.0 / 3.0), Some(40_000.0)), (Some(60_000.0), Some(60_000.0))]
    );
    assert_eq!((rows.avg_ready_ms, rows.p90_ready_ms), (Some(32_500.0), Some(60_000.0)));
    let empty = store.day_rows(&uptown(), start, start + 24 * H).await.unwrap();
    assert_eq!(empty, domain::ports::DayRows::default());
}

pub async fn top_items_rank_by_quantity_and_popular_items_are_replaced_whole(store: Stores) {
    // placed_order cycles latte (qty 1), croissant (2), flat-white (3), ...
    let a = placed_order(3, 1_000);
    let b = placed_order(2, 1_001);
    let old = placed_order(5, 10);
    let no = placed_order(3, 1_002);
    apply(
        &store,
        0,
        1,
        &[confirm(&a), confirm(&b), confirm(&old), reject(&no, "no")],
        2_000,
    )
    .await;
    let top = store.top_items(&demo_store(), 1_000, 8).await.unwrap();
    let got: Vec<_> = top.iter().map(|i| (i.sku.as_str(), i.count)).collect();
    assert_eq!(got, vec![("croissant", 4), ("flat-white", 3), ("latte", 2)]);
    assert_eq!(top[0].name, a.lines[1].name);
    assert_eq!(store.top_items(&demo_store(), 1_000, 1).await.unwrap().len(), 1);

    assert_eq!(store.popular(&demo_store()).await.unwrap(), (vec![], None));
    store.save_popular(&demo_store(), &top, 5_000).await.unwrap();
    assert_eq!(store.popular(&demo_store()).await.unwrap(), (top.clone(), Some(5_000)));
    let one = vec![PopularItem {
        sku: "latte".into(),
        name: "Latte".into(),
        count: 9,
    }];
    store.save_popular(&demo_store(), &one, 6_000).await.unwrap();
    assert_eq!(store.popular(&demo_store()).await.unwrap(), (one, Some(6_000)));
    assert_eq!(store.popular(&uptown()).await.unwrap(), (vec![], None));
}
