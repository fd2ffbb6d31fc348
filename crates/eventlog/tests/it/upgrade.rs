//! Upgrade of a log file written before the event log had versioned
//! migrations: the new binary opens it, keeps its records, claims and
//! consumer commits, and leaves it at the latest schema version.
//!
//! The fixture is built here with the exact DDL of that binary (all
//! `IF NOT EXISTS`, `user_version` left at 0), frozen on purpose: it must
//! not follow `migrations/sqlite/`, or the test would stop testing the
//! upgrade from what is on disk today.

use domain::ports::{AppendOutcome, AppendRequest, EventLog, IdempotencyClaim};
use eventlog::{SqliteEventLog, SqliteLogOptions};
use rusqlite::{Connection, params};
use tempfile::TempDir;

/// The schema of the unversioned log, verbatim.
const UNVERSIONED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    partition        INTEGER NOT NULL,
    offset           INTEGER NOT NULL,
    key              TEXT NOT NULL,
    payload          BLOB NOT NULL,
    appended_at      INTEGER NOT NULL,
    -- The idempotency claim travels on its record: one row, one write, so
    -- the claim is durable exactly when the record is (see `Claims`).
    idem_key         TEXT,
    idem_fingerprint TEXT,
    idem_status      INTEGER,
    idem_response    BLOB,
    PRIMARY KEY (partition, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_key ON records (key);
CREATE TABLE IF NOT EXISTS commits (
    grp         TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, partition)
) WITHOUT ROWID;
";

const PARTITIONS: u32 = 4;

/// A log file as the unversioned binary left it: two records of one order
/// (the first carrying an idempotency claim) and a consumer commit.
fn unversioned_log(path: &std::path::Path) -> u32 {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(UNVERSIONED_SCHEMA).unwrap();
    conn.execute(
        "INSERT INTO meta (name, value) VALUES ('partitions', ?1)",
        params![PARTITIONS.to_string()],
    )
    .unwrap();
    let partition = domain::ids::partition_for(b"order-1", PARTITIONS);
    let now = domain::ports::system_now_ms();
    conn.execute(
        "INSERT INTO records (partition, offset, key, payload, appended_at,
                              idem_key, idem_fingerprint, idem_status, idem_response)
         VALUES (?1, 0, 'order-1', x'01', ?2, 'idem-a', 'fp-a', 202, CAST('first answer' AS BLOB)),
                (?1, 1, 'order-1', x'02', ?2, NULL, NULL, NULL, NULL)",
        params![partition, now],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO commits (grp, partition, next_offset) VALUES ('order-processors', ?1, 1)",
        params![partition],
    )
    .unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 0, "the fixture is unversioned");
    partition
}

fn claimed(key: &str) -> AppendRequest {
    AppendRequest {
        key: key.into(),
        payload: vec![9],
        idempotency: Some(IdempotencyClaim {
            key: "idem-a".into(),
            fingerprint: "fp-a".into(),
            status: 202,
            response: b"another answer".to_vec(),
        }),
        trace: None,
    }
}

#[tokio::test]
async fn an_unversioned_log_is_adopted_with_its_records_and_claims() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("log.db");
    let partition = unversioned_log(&path);
    let opts = || SqliteLogOptions {
        partitions: PARTITIONS,
        ..SqliteLogOptions::default()
    };
    let log = SqliteEventLog::open(&path, opts()).expect("the new binary opens the old file");

    // Records are kept, and offsets continue after them.
    let last = log.find("order-1").await.unwrap().expect("record kept");
    assert_eq!(
        (last.partition, last.offset, last.payload.as_slice()),
        (partition, 1, &[2u8][..])
    );
    assert_eq!(log.end_offset(partition).await.unwrap(), 2);
    let read = log.read(partition, 0, 10, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(read.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0, 1]);

    // The claim is kept: a retry gets the stored answer, not a new record.
    match log.append(claimed("order-2")).await.unwrap() {
        AppendOutcome::Duplicate(rec) => {
            assert_eq!(rec.response, b"first answer".to_vec());
            assert_eq!((rec.fingerprint.as_str(), rec.status), ("fp-a", 202));
        }
        other => panic!("the old file's claim was forgotten: {other:?}"),
    }
    assert_eq!(log.idempotency("idem-a").await.unwrap().unwrap().status, 202);
    let fresh = AppendRequest {
        key: "order-1".into(),
        payload: vec![3],
        idempotency: None,
        trace: None,
    };
    match log.append(fresh).await.unwrap() {
        AppendOutcome::Appended(pos) => assert_eq!((pos.partition, pos.offset), (partition, 2)),
        other => panic!("{other:?}"),
    }
    log.commit("order-processors", partition, 3).await.unwrap();
    drop(log);

    // At the latest version, with the consumer commit kept (and moved).
    let raw = Connection::open(&path).unwrap();
    let version: i64 = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, eventlog::sqlite::SCHEMA_VERSION);
    let next: i64 = raw
        .query_row(
            "SELECT next_offset FROM commits WHERE grp = 'order-processors' AND partition = ?1",
            params![partition],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(next, 3);
    drop(raw);

    // And a second open (already versioned) changes nothing.
    let log = SqliteEventLog::open(&path, opts()).unwrap();
    assert_eq!(log.end_offset(partition).await.unwrap(), 3);
}

#[tokio::test]
async fn a_log_from_a_newer_binary_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("log.db");
    drop(SqliteEventLog::open(&path, SqliteLogOptions::default()).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    match SqliteEventLog::open(&path, SqliteLogOptions::default()) {
        Err(domain::ports::PortError::Invalid(msg)) => assert!(msg.contains("99"), "{msg}"),
        other => panic!("expected Invalid, got {:?}", other.map(|_| ())),
    }
}
