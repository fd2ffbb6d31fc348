//! Contract suite for the `EventLog` port: every backend (SQLite now, Kafka
//! in scale mode) must pass these same bodies. Each case gets a fresh, empty
//! log from the caller.

use domain::ports::{AppendOutcome, AppendRequest, EventLog, IdempotencyClaim, Position};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub type Log = Arc<dyn EventLog>;

fn req(key: &str, payload: &str) -> AppendRequest {
    AppendRequest {
        key: key.into(),
        payload: payload.as_bytes().to_vec(),
        idempotency: None,
        trace: None,
    }
}

fn claimed(key: &str, idem: &str, fingerprint: &str) -> AppendRequest {
    AppendRequest {
        idempotency: Some(IdempotencyClaim {
            key: idem.into(),
            fingerprint: fingerprint.into(),
            status: 202,
            response: format!("{{\"for\":\"{key}\"}}").into_bytes(),
        }),
        ..req(key, key)
    }
}

async fn appended(log: &Log, r: AppendRequest) -> Position {
    match log.append(r).await.expect("append") {
        AppendOutcome::Appended(p) => p,
        other => panic!("expected Appended, got {other:?}"),
    }
}

/// Everything from `from` up to the partition's end (at most `max`): reads
/// until the batch is complete, since a read may return a shorter prefix.
pub async fn read_all(log: &Log, partition: u32, from: u64, max: usize) -> Vec<domain::ports::LogRecord> {
    let end = log.end_offset(partition).await.expect("end offset");
    let mut out: Vec<domain::ports::LogRecord> = Vec::new();
    let mut next = from;
    while next < end && out.len() < max {
        let got = log
            .read(partition, next, max - out.len(), Duration::from_secs(5))
            .await
            .expect("read");
        assert!(
            !got.is_empty(),
            "records {next}..{end} of partition {partition} not readable"
        );
        assert_eq!(got[0].offset, next, "a read must start where it was asked to");
        next = got.last().expect("non-empty").offset + 1;
        out.extend(got);
    }
    out
}

/// Records with one key share a partition and keep their order; offsets
/// grow by one; `read` returns them in order and `end_offset` follows.
pub async fn appends_are_ordered_per_key(log: Log) {
    let mut positions = Vec::new();
    for i in 0..5 {
        positions.push(appended(&log, req("order-a", &format!("a{i}"))).await);
    }
    let p = positions[0].partition;
    assert!(positions.iter().all(|x| x.partition == p), "one key, one partition");
    let offsets: Vec<u64> = positions.iter().map(|x| x.offset).collect();
    assert_eq!(offsets, (offsets[0]..offsets[0] + 5).collect::<Vec<_>>());
    let recs = read_all(&log, p, offsets[0], 100).await;
    let payloads: Vec<String> = recs
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect();
    assert_eq!(payloads, vec!["a0", "a1", "a2", "a3", "a4"]);
    assert!(recs.iter().all(|r| r.key == "order-a" && r.partition == p));
    assert_eq!(log.end_offset(p).await.unwrap(), offsets[4] + 1);
    let limited = read_all(&log, p, offsets[0] + 1, 2).await;
    assert_eq!(
        limited.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![offsets[1], offsets[2]]
    );
}

/// Many concurrent appends all become durable at distinct positions, and
/// every partition's records are contiguous from 0.
pub async fn concurrent_appends_get_distinct_positions(log: Log) {
    let mut tasks = Vec::new();
    for i in 0..400 {
        let log = log.clone();
        tasks.push(tokio::spawn(
            async move { appended(&log, req(&format!("k{i}"), "x")).await },
        ));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        let p = t.await.unwrap();
        assert!(seen.insert((p.partition, p.offset)), "position handed out twice: {p:?}");
    }
    let mut total = 0;
    for part in 0..log.partitions() {
        let recs = read_all(&log, part, 0, 10_000).await;
        let offsets: Vec<u64> = recs.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (0..recs.len() as u64).collect::<Vec<_>>(),
            "gap in partition {part}"
        );
        total += recs.len();
    }
    assert_eq!(total, 400);
    assert!(log.partitions() > 1, "the log should be partitioned");
}

/// A claimed idempotency key appends once; later appends with the same key
/// append nothing and get the stored record back.
pub async fn idempotency_claims_are_atomic(log: Log) {
    appended(&log, claimed("order-1", "idem-1", "fp-1")).await;
    match log.append(claimed("order-2", "idem-1", "fp-2")).await.unwrap() {
        AppendOutcome::Duplicate(rec) => {
            assert_eq!(rec.fingerprint, "fp-1");
            assert_eq!(rec.status, 202);
            assert_eq!(rec.response, b"{\"for\":\"order-1\"}".to_vec());
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert!(
        log.find("order-2").await.unwrap().is_none(),
        "a refused duplicate must not be appended"
    );
    let rec = log.idempotency("idem-1").await.unwrap().expect("claim stored");
    assert_eq!(rec.fingerprint, "fp-1");
    assert!(log.idempotency("idem-unknown").await.unwrap().is_none());
}

/// Racing requests with one key: exactly one wins, whatever the batching.
pub async fn idempotency_race_has_one_winner(log: Log) {
    let mut tasks = Vec::new();
    for i in 0..32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(claimed(&format!("race-{i}"), "same-key", "fp"))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), AppendOutcome::Appended(_)) {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

/// Many keys claimed at once, each by two racing requests (as a retry
/// racing its original does): every key has exactly one winner, the stored
/// claim is the winner's, and the loser gets it back — however the log
/// groups concurrent claims into statements.
pub async fn concurrent_claims_each_have_one_owner(log: Log) {
    const KEYS: usize = 100;
    let mut tasks = Vec::new();
    for k in 0..KEYS {
        for attempt in 0..2 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let fp = format!("fp-{k}-{attempt}");
                let outcome = log
                    .append(claimed(&format!("bulk-{k}-{attempt}"), &format!("bulk-key-{k}"), &fp))
                    .await
                    .unwrap();
                (k, fp, outcome)
            }));
        }
    }
    let mut winner: Vec<Option<String>> = vec![None; KEYS];
    let mut losers = Vec::new();
    for t in tasks {
        let (k, fp, outcome) = t.await.unwrap();
        match outcome {
            AppendOutcome::Appended(_) => {
                assert!(winner[k].is_none(), "key {k} won twice");
                winner[k] = Some(fp);
            }
            AppendOutcome::Duplicate(rec) => losers.push((k, rec.fingerprint)),
        }
    }
    assert_eq!(losers.len(), KEYS, "one loser per key");
    for (k, stored) in losers {
        assert_eq!(
            Some(&stored),
            winner[k].as_ref(),
            "the loser of key {k} sees the winner's claim"
        );
    }
    for (k, fp) in winner.iter().enumerate() {
        let rec = log
            .idempotency(&format!("bulk-key-{k}"))
            .await
            .unwrap()
            .expect("claim stored");
        assert_eq!(Some(&rec.fingerprint), fp.as_ref());
    }
}

/// `find` returns the newest record for a key (read-your-writes).
pub async fn find_returns_the_record_for_a_key(log: Log) {
    appended(&log, req("order-x", "first")).await;
    let p = appended(&log, req("order-x", "second")).await;
    let rec = log.find("order-x").await.unwrap().expect("found");
    assert_eq!(rec.payload, b"second".to_vec());
    assert_eq!((rec.partition, rec.offset), (p.partition, p.offset));
    assert!(log.find("order-none").await.unwrap().is_none());
}

/// A record keeps the W3C `traceparent` it was appended with (the SQLite
/// column, the Kafka header), through `read` and `find` alike; one appended
/// without a context (tracing off) reads as none.
pub async fn trace_context_travels_with_the_record(log: Log) {
    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = appended(
        &log,
        AppendRequest {
            trace: Some(TRACE.into()),
            ..req("order-traced", "placed")
        },
    )
    .await;
    let plain = appended(&log, req("order-plain", "placed")).await;
    let rec = log.find("order-traced").await.unwrap().expect("found");
    assert_eq!(rec.trace.as_deref(), Some(TRACE));
    let read = read_all(&log, traced.partition, traced.offset, 1).await;
    assert_eq!(read[0].trace.as_deref(), Some(TRACE), "read returns the context");
    let read = read_all(&log, plain.partition, plain.offset, 1).await;
    assert_eq!(read[0].key, "order-plain");
    assert_eq!(read[0].trace, None, "no context was given, none is invented");
}

/// A reader waiting on an empty partition wakes up when a record arrives.
pub async fn read_waits_for_new_records(log: Log) {
    let p = domain::ids::partition_for(b"late", log.partitions());
    assert!(log.read(p, 0, 10, Duration::ZERO).await.unwrap().is_empty());
    let reader = {
        let log = log.clone();
        tokio::spawn(async move { log.read(p, 0, 10, Duration::from_secs(10)).await.unwrap() })
    };
    appended(&log, req("late", "hello")).await;
    let got = reader.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"hello".to_vec());
}

pub async fn commits_and_health(log: Log) {
    appended(&log, req("c", "x")).await;
    log.commit("group-a", 0, 1).await.unwrap();
    log.commit("group-a", 0, 1).await.unwrap();
    log.health().await.unwrap();
    assert!(
        log.read(log.partitions(), 0, 1, Duration::ZERO).await.is_err(),
        "unknown partition is an error"
    );
}

/// A lone member of a consumer group is given every partition.
pub async fn a_lone_member_gets_every_partition(log: Log) {
    let mut member = log.join("contract-group").await.expect("join");
    let mut owned = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while owned.len() < log.partitions() as usize {
        let change = tokio::time::timeout_at(deadline, member.next())
            .await
            .expect("assignment within 30 s")
            .expect("membership open");
        match change {
            domain::ports::Rebalance::Assigned(ps) => owned.extend(ps),
            domain::ports::Rebalance::Revoked { partitions, done } => {
                for p in partitions {
                    owned.remove(&p);
                }
                let _ = done.send(());
            }
        }
    }
    assert_eq!(owned, (0..log.partitions()).collect::<HashSet<_>>());
}
