//! Why the embedded log uses rusqlite on one writer thread with group
//! commit (ADR 0002): the same inserts through rusqlite and through sqlx's
//! SQLite driver, one transaction per record and 100 records per
//! transaction, and the log itself with group commit on and off under 64
//! concurrent appends. Run: `cargo bench -p eventlog --bench append`.

use criterion::{Criterion, criterion_group, criterion_main};
use domain::ports::{AppendRequest, EventLog};
use eventlog::{SqliteEventLog, SqliteLogOptions, Synchronous};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DDL: &str = "CREATE TABLE IF NOT EXISTS records (partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key TEXT NOT NULL, payload BLOB NOT NULL, appended_at INTEGER NOT NULL, PRIMARY KEY (partition, offset)) WITHOUT ROWID";
const INSERT: &str = "INSERT INTO records (partition, offset, key, payload, appended_at) VALUES (?1, ?2, ?3, ?4, ?5)";

fn payload() -> Vec<u8> {
    vec![b'x'; 600]
}

fn rusqlite_conn(dir: &tempfile::TempDir, sync: &str) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.path().join("r.db")).unwrap();
    c.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; {DDL}"))
        .unwrap();
    c
}

fn drivers(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("driver");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (sync, per_txn) in [("NORMAL", 100usize), ("FULL", 1)] {
        let name = format!("{}_per_txn_{}", per_txn, sync.to_lowercase());
        g.bench_function(format!("rusqlite/{name}"), |b| {
            let dir = tempfile::TempDir::new().unwrap();
            let mut conn = rusqlite_conn(&dir, sync);
            let mut off = 0i64;
            let p = payload();
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let tx = conn.transaction().unwrap();
                    for _ in 0..per_txn {
                        tx.prepare_cached(INSERT)
                            .unwrap()
                            .execute(rusqlite::params![0, off, "k", p, 0])
                            .unwrap();
                        off += 1;
                    }
                    tx.commit().unwrap();
                }
                t.elapsed()
            });
        });
        g.bench_function(format!("sqlx/{name}"), |b| {
            let dir = tempfile::TempDir::new().unwrap();
            let sync_mode = if sync == "FULL" {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            };
            let pool = rt.block_on(async {
                let opts = SqliteConnectOptions::new()
                    .filename(dir.path().join("s.db"))
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(sync_mode);
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .unwrap();
                sqlx::query(DDL).execute(&pool).await.unwrap();
                pool
            });
            let mut off = 0i64;
            let p = payload();
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let mut tx = pool.begin().await.unwrap();
                        for _ in 0..per_txn {
                            sqlx::query(INSERT)
                                .bind(0i64)
                                .bind(off)
                                .bind("k")
                                .bind(&p)
                                .bind(0i64)
                                .execute(&mut *tx)
                                .await
                                .unwrap();
                            off += 1;
                        }
                        tx.commit().await.unwrap();
                    }
                    t.elapsed()
                })
            });
        });
    }
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("eventlog_64_concurrent_appends");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for on in [true, false] {
        g.bench_function(if on { "group_commit_on" } else { "group_commit_off" }, |b| {
            let dir = tempfile::TempDir::new().unwrap();
            let log: Arc<dyn EventLog> = Arc::new(
                SqliteEventLog::open(
                    &dir.path().join("log.db"),
                    SqliteLogOptions {
                        group_commit: on,
                        synchronous: Synchronous::Full,
                        ..Default::default()
                    },
                )
                .unwrap(),
            );
            let mut n = 0u64;
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let appends = (0..64).map(|_| {
                            n += 1;
                            let log = log.clone();
                            let req = AppendRequest {
                                key: format!("k{n}"),
                                payload: payload(),
                                idempotency: None,
                                trace: None,
                            };
                            tokio::spawn(async move { log.append(req).await.unwrap() })
                        });
                        for h in futures::future::join_all(appends).await {
                            h.unwrap();
                        }
                    }
                    t.elapsed()
                })
            });
        });
    }
    g.finish();
}

criterion_group!(benches, drivers, group_commit);
criterion_main!(benches);
