//! Integration tests of the bench crate: the raw baselines write exactly
//! the rows a processor would, in the store's own schema, so the ratios
//! the benchmarks print compare like with like. (The load generator's own
//! tests are unit tests in `src/tests.rs`: they need its private parts.)

use std::path::Path;

use bench::baseline;
use domain::ports::{OrderStore, PortError};
use store::{SqliteStore, SqliteStoreOptions};
use testkit::fixtures::placed_order;

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn raw_insert_writes_the_rows_a_processor_would() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baseline/raw.db");
    // 250 orders: two full 100-row statements and a shorter one; lines
    // cycle through 1..=4 per order.
    let orders: Vec<_> = (0..250).map(|i| placed_order(1 + i % 4, 1_000 + i as i64)).collect();
    let lines: usize = orders.iter().map(|o| o.lines.len()).sum();
    let elapsed = baseline::raw_insert(&path, &orders).unwrap();
    assert!(elapsed.as_nanos() > 0);

    let conn = raw(&path);
    assert_eq!(count(&conn, "orders"), 250);
    assert_eq!(count(&conn, "order_lines"), lines as i64);
    assert_eq!(count(&conn, "events"), 250);
    assert_eq!(
        conn.query_row("SELECT count(*) FROM order_lines WHERE ticket = 'queued'", [], |r| r
            .get::<_, i64>(0))
            .unwrap(),
        lines as i64
    );
    assert_eq!(
        count(&conn, "consumer_positions"),
        0,
        "the baseline records no position"
    );

    // A fresh database is required.
    assert!(matches!(
        baseline::raw_insert(&path, &orders),
        Err(PortError::Conflict(_))
    ));
}

/// The baseline writes the store's schema faithfully: the store reads its
/// rows back as confirmed orders with queued tickets.
#[tokio::test]
async fn raw_insert_rows_read_back_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.db");
    let orders: Vec<_> = (0..3).map(|i| placed_order(2, 1_000 + i)).collect();
    baseline::raw_insert(&path, &orders).unwrap();
    let store = SqliteStore::open(&path, SqliteStoreOptions::default()).unwrap();
    for o in &orders {
        let got = store.get_order(o.order_id).await.unwrap().expect("baseline order");
        assert_eq!(got.status, domain::OrderStatus::Confirmed);
        assert_eq!(got.total, o.total);
        let want: Vec<_> = o
            .lines
            .iter()
            .map(|l| l.to_line(Some(domain::TicketStatus::Queued)))
            .collect();
        assert_eq!(got.lines, want);
    }
    let events = store
        .events_after(&domain::ports::EventScope::Store(orders[0].store.clone()), 0, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
}
