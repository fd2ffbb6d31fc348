//! Integration tests of the embedded event log: the shared `EventLog`
//! contract suite, plus what only a file-backed log can show (reopening,
//! group commit actually batching, partition-count guard).

use domain::ports::{AppendOutcome, AppendRequest, EventLog};
use eventlog::{SqliteEventLog, SqliteLogOptions};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use testkit::eventlog as contract;

fn open(dir: &TempDir, opts: SqliteLogOptions) -> SqliteEventLog {
    SqliteEventLog::open(&dir.path().join("log.db"), opts).expect("open log")
}

fn fresh() -> (TempDir, Arc<dyn EventLog>) {
    let dir = TempDir::new().unwrap();
    let log = open(&dir, SqliteLogOptions::default());
    (dir, Arc::new(log))
}

macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (_dir, log) = fresh();
            contract::$case(log).await;
        }
    )*};
}

contract_cases!(
    appends_are_ordered_per_key,
    concurrent_appends_get_distinct_positions,
    idempotency_claims_are_atomic,
    idempotency_race_has_one_winner,
    concurrent_claims_each_have_one_owner,
    find_returns_the_record_for_a_key,
    trace_context_travels_with_the_record,
    read_waits_for_new_records,
    commits_and_health,
    a_lone_member_gets_every_partition,
);

#[cfg(feature = "kafka")]
mod kafka;
mod upgrade;

fn req(key: String) -> AppendRequest {
    AppendRequest {
        key,
        payload: vec![1, 2, 3],
        idempotency: None,
        trace: None,
    }
}

#[tokio::test]
async fn contract_holds_without_group_commit() {
    let dir = TempDir::new().unwrap();
    let opts = SqliteLogOptions {
        group_commit: false,
        ..Default::default()
    };
    contract::concurrent_appends_get_distinct_positions(Arc::new(open(&dir, opts))).await;
}

#[tokio::test]
async fn reopened_log_keeps_records_and_continues_offsets() {
    let dir = TempDir::new().unwrap();
    let first = {
        let log = open(&dir, SqliteLogOptions::default());
        let AppendOutcome::Appended(p) = log.append(req("k".into())).await.unwrap() else {
            panic!("appended")
        };
        p
    };
    let log = open(&dir, SqliteLogOptions::default());
    let AppendOutcome::Appended(second) = log.append(req("k".into())).await.unwrap() else {
        panic!("appended")
    };
    assert_eq!(second.partition, first.partition);
    assert_eq!(second.offset, first.offset + 1);
    assert_eq!(log.read(first.partition, 0, 10, Duration::ZERO).await.unwrap().len(), 2);
}

#[tokio::test]
async fn changing_the_partition_count_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(open(&dir, SqliteLogOptions::default()));
    let err = SqliteEventLog::open(
        &dir.path().join("log.db"),
        SqliteLogOptions {
            partitions: 3,
            ..Default::default()
        },
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("partitions"), "{err}");
}

/// The trace context is on the record's row: a restarted process links its
/// batches to the orders appended before the restart.
#[tokio::test]
async fn trace_context_survives_a_reopen() {
    const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let dir = TempDir::new().unwrap();
    let at = {
        let log = open(&dir, SqliteLogOptions::default());
        let mut r = req("order-7".into());
        r.trace = Some(TRACE.into());
        match log.append(r).await.unwrap() {
            AppendOutcome::Appended(at) => at,
            other => panic!("{other:?}"),
        }
    };
    let log = open(&dir, SqliteLogOptions::default());
    let got = log.read(at.partition, at.offset, 1, Duration::ZERO).await.unwrap();
    assert_eq!(got[0].trace.as_deref(), Some(TRACE));
    assert_eq!(
        log.find("order-7").await.unwrap().unwrap().trace.as_deref(),
        Some(TRACE)
    );
}

#[tokio::test]
async fn idempotency_claims_survive_a_reopen() {
    let dir = TempDir::new().unwrap();
    let claimed = |key: &str| AppendRequest {
        key: key.into(),
        payload: b"p".to_vec(),
        idempotency: Some(domain::ports::IdempotencyClaim {
            key: "idem-a".into(),
            fingerprint: "fp-a".into(),
            status: 202,
            response: b"first answer".to_vec(),
        }),
        trace: None,
    };
    {
        let log = open(&dir, SqliteLogOptions::default());
        assert!(matches!(
            log.append(claimed("order-1")).await.unwrap(),
            AppendOutcome::Appended(_)
        ));
    }
    let log = open(&dir, SqliteLogOptions::default());
    match log.append(claimed("order-2")).await.unwrap() {
        AppendOutcome::Duplicate(rec) => {
            assert_eq!(rec.response, b"first answer".to_vec());
            assert_eq!(rec.fingerprint, "fp-a");
        }
        other => panic!("a reopened log forgot its claim: {other:?}"),
    }
    assert_eq!(log.idempotency("idem-a").await.unwrap().unwrap().status, 202);
    assert!(log.find("order-2").await.unwrap().is_none());
}
