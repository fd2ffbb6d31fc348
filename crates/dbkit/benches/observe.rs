//! What counting and timing statements costs (issue 12's N+1 guard,
//! `dbkit::observe`), side by side in one run: one indexed `SELECT` on a
//! cached statement without the trace hook, with it outside any scope, and
//! with it inside a request's scope; then the same through the reader pool
//! (`Readers::run`, the path every store read takes), hook off and on in a
//! scope. The Prometheus recorder is installed, so the histogram and
//! counter updates are the real ones. Run:
//! `cargo bench -p dbkit --bench observe`.

use criterion::{Criterion, criterion_group, criterion_main};
use dbkit::observe;
use dbkit::sqlite::Readers;
use rusqlite::Connection;

fn table(path: &std::path::Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT OR IGNORE INTO t SELECT i, 'row ' || i FROM n;",
    )
    .unwrap();
}

fn select(c: &Connection, id: i64) -> String {
    c.prepare_cached("SELECT v FROM t WHERE id = ?1")
        .unwrap()
        .query_row([id], |r| r.get(0))
        .unwrap()
}

fn statement(c: &mut Criterion) {
    let _ = telemetry::prometheus();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    table(&path);
    let plain = Connection::open(&path).unwrap();
    let hooked = Connection::open(&path).unwrap();
    observe::watch_sqlite(&hooked);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let carry = rt.block_on(observe::within(observe::Scope::new(), async { observe::carry() }));

    let mut g = c.benchmark_group("statement");
    let mut id = 0;
    let mut next = move || {
        id = id % 1000 + 1;
        id
    };
    g.bench_function("hook off", |b| b.iter(|| select(&plain, next())));
    g.bench_function("hook on, no scope", |b| b.iter(|| select(&hooked, next())));
    g.bench_function("hook on, in a scope", |b| {
        b.iter(|| carry.clone().run(|| select(&hooked, next())))
    });
    g.finish();
}

fn pool_read(c: &mut Criterion) {
    let _ = telemetry::prometheus();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    table(&path);
    let open = |hook: bool| {
        let conns = (0..4)
            .map(|_| {
                let c = Connection::open(&path).unwrap();
                if hook {
                    observe::watch_sqlite(&c);
                }
                c
            })
            .collect();
        Readers::new(conns, if hook { "bench hooked" } else { "bench plain" })
    };
    let (plain, hooked) = (open(false), open(true));
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut g = c.benchmark_group("pool read");
    g.bench_function("hook off", |b| {
        b.to_async(&rt)
            .iter(|| async { plain.run(|c| select(c, 500)).await.unwrap() })
    });
    g.bench_function("hook on, in a scope", |b| {
        b.to_async(&rt).iter(|| {
            observe::within(observe::Scope::new(), async {
                hooked.run(|c| select(c, 500)).await.unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, statement, pool_read);
criterion_main!(benches);
