//! The same `EventLog` contract against a real Kafka-protocol broker (tansu
//! in CI), plus what only a shared, multi-member log can show: a consumer
//! group splitting partitions between two members and handing them over on
//! revocation. Needs `RUSHHOUR_TEST_KAFKA_BROKERS` and, for the idempotency
//! claims, `RUSHHOUR_TEST_POSTGRES_URL`.

use domain::ports::{AppendRequest, EventLog, Membership, PortError, Rebalance};
use eventlog::{KafkaEventLog, KafkaLogOptions};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use testkit::eventlog as contract;

/// Options for a topic no other test uses, with the claims' pool, or
/// `None` (skipped) without services.
async fn options(test: &str) -> Option<(KafkaLogOptions, sqlx::PgPool)> {
    let brokers = testkit::service_url("RUSHHOUR_TEST_KAFKA_BROKERS", test)?;
    let pg = testkit::service_url("RUSHHOUR_TEST_POSTGRES_URL", test)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&pg)
        .await
        .expect("connect to PostgreSQL");
    let topic = format!("it-{test}-{}", uuid::Uuid::now_v7().simple());
    let opts = KafkaLogOptions {
        brokers,
        dlq_topic: format!("{topic}.dlq"),
        topic,
        partitions: 4,
        append_timeout: Duration::from_secs(10),
        session_timeout: Duration::from_secs(6),
        processor_group: format!("{test}-processors"),
        ..Default::default()
    };
    Some((opts, pool))
}

/// A log on a topic no other test uses, or `None` (skipped) without services.
async fn fresh(test: &str) -> Option<Arc<KafkaEventLog>> {
    let (opts, pool) = options(test).await?;
    Some(Arc::new(
        KafkaEventLog::connect(opts, pool).await.expect("connect to Kafka"),
    ))
}

macro_rules! kafka_contract_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let Some(log) = fresh(concat!("kafka_", stringify!($case))).await else { return };
            contract::$case(log).await;
        }
    )*};
}

mod contract_on_kafka {
    use super::*;
    kafka_contract_cases!(
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
}

/// Drain membership changes for `for_` and return the partitions owned at
/// the end, answering revocations at once.
async fn settle(member: &mut Membership, owned: &mut HashSet<u32>, for_: Duration) {
    let deadline = tokio::time::Instant::now() + for_;
    while let Ok(Some(change)) = tokio::time::timeout_at(deadline, member.next()).await {
        match change {
            Rebalance::Assigned(ps) => owned.extend(ps),
            Rebalance::Revoked { partitions, done } => {
                for p in partitions {
                    owned.remove(&p);
                }
                let _ = done.send(());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_partitions_and_one_takes_over_when_the_other_leaves() {
    let Some(log) = fresh("kafka_group_split").await else {
        return;
    };
    let group = "split-group";
    let mut a = log.join(group).await.unwrap();
    let mut owned_a = HashSet::new();
    settle(&mut a, &mut owned_a, Duration::from_secs(8)).await;
    assert_eq!(owned_a.len(), 4, "a lone member owns everything: {owned_a:?}");

    let mut b = log.join(group).await.unwrap();
    let mut owned_b = HashSet::new();
    // Both must answer their revocations for the rebalance to complete.
    let (ra, rb) = tokio::join!(
        settle(&mut a, &mut owned_a, Duration::from_secs(15)),
        settle(&mut b, &mut owned_b, Duration::from_secs(15)),
    );
    let _ = (ra, rb);
    assert!(
        !owned_a.is_empty() && !owned_b.is_empty(),
        "split: {owned_a:?} / {owned_b:?}"
    );
    assert!(
        owned_a.is_disjoint(&owned_b),
        "no partition twice: {owned_a:?} / {owned_b:?}"
    );
    assert_eq!(owned_a.len() + owned_b.len(), 4);

    drop(b);
    settle(&mut a, &mut owned_a, Duration::from_secs(15)).await;
    assert_eq!(owned_a.len(), 4, "the survivor takes every partition back: {owned_a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_is_read_again_and_reads_resume_anywhere() {
    let Some(log) = fresh("kafka_reread").await else { return };
    let key = "order-reread";
    for i in 0..10 {
        let req = domain::ports::AppendRequest {
            key: key.into(),
            payload: format!("r{i}").into_bytes(),
            idempotency: None,
            trace: None,
        };
        log.append(req).await.unwrap();
    }
    let p = domain::ids::partition_for(key.as_bytes(), log.partitions());
    let log: contract::Log = log;
    let first = contract::read_all(&log, p, 0, 4).await;
    assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    // The batch failed to apply: the processor asks for it again (from the
    // buffer, or by seeking back when a read already moved past it).
    let again = contract::read_all(&log, p, 0, 4).await;
    assert_eq!(again, first);
    let once_more = log.read(p, 0, 4, Duration::from_secs(5)).await.unwrap();
    assert!(!once_more.is_empty() && once_more[..] == first[..once_more.len()]);
    // Forward, then back to a position before the buffer (a new owner
    // resuming from the store's position).
    let later = log.read(p, 7, 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(later.first().map(|r| r.offset), Some(7));
    let back = contract::read_all(&log, p, 2, 2).await;
    assert_eq!(back.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(back[0].payload, b"r2".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_fast() {
    let Some(pg) = testkit::service_url("RUSHHOUR_TEST_POSTGRES_URL", "kafka_unreachable") else {
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new().connect(&pg).await.unwrap();
    let opts = KafkaLogOptions {
        brokers: "127.0.0.1:1".into(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(30), KafkaEventLog::connect(opts, pool)).await;
    assert!(
        matches!(res, Ok(Err(_))),
        "connect to a dead broker must fail, not hang"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// `log.kafka.*` reaches librdkafka: a setting it rejects fails the log's
/// first client, before any broker is contacted (so no service is needed),
/// with librdkafka's own words. In the default build (no OpenSSL) that is
/// what `security.protocol = SASL_SSL` gets from librdkafka itself; the
/// binary's `LogConfig::build` says so earlier, naming the feature.
#[tokio::test]
async fn pass_through_settings_reach_every_client() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .expect("a lazy pool");
    let mut settings = std::collections::BTreeMap::new();
    settings.insert("security.protocol".to_owned(), "not_a_protocol".to_owned());
    let opts = KafkaLogOptions {
        brokers: "127.0.0.1:1".into(),
        client_settings: eventlog::KafkaClientSettings(settings),
        ..Default::default()
    };
    let err = KafkaEventLog::connect(opts, pool)
        .await
        .err()
        .expect("librdkafka refuses the setting");
    let text = err.to_string();
    assert!(text.contains("security.protocol"), "{text}");
}

fn record(key: &str, payload: &str) -> AppendRequest {
    AppendRequest {
        key: key.into(),
        payload: payload.as_bytes().to_vec(),
        idempotency: None,
        trace: None,
    }
}

/// Hundreds of anonymous lookups of random ids, again and again, while real
/// records are appended by one process and read back through another (as
/// when a client's next request reaches another API instance, which knows
/// nothing of the order without Kafka): every real read is answered with
/// its record while the flood runs, no random id is ever "found", and the
/// flood is answered by rounds that each serve many lookups rather than by
/// one broker scan per lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_id_lookups_does_not_starve_reads_of_real_records() {
    let Some((opts, pool)) = options("kafka_lookup_flood").await else {
        return;
    };
    let writer = KafkaEventLog::connect(opts.clone(), pool.clone())
        .await
        .expect("connect the writer");
    let reader = Arc::new(KafkaEventLog::connect(opts, pool).await.expect("connect the reader"));
    let stop = Arc::new(AtomicBool::new(false));
    let (flooded, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut flood = Vec::new();
    for _ in 0..300 {
        let (reader, stop, flooded, refused) = (reader.clone(), stop.clone(), flooded.clone(), refused.clone());
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = uuid::Uuid::now_v7().to_string();
                match reader.find(&id).await {
                    Ok(None) => {}
                    Err(PortError::Unavailable(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                    other => panic!("a random id is never found: {other:?}"),
                }
                flooded.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the flood get going before the first real record.
    while flooded.load(Ordering::Relaxed) < 1_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut retried = 0;
    for i in 0..20 {
        let key = uuid::Uuid::now_v7().to_string();
        let payload = format!("order {i}");
        writer.append(record(&key, &payload)).await.expect("append");
        // A generous liveness bound, not a speed claim.
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match reader.find(&key).await {
                    Ok(Some(rec)) => break rec,
                    Ok(None) => panic!("record {i} is in the log but was not found"),
                    Err(PortError::Unavailable(_)) => retried += 1,
                    Err(e) => panic!("lookup of record {i}: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("record {i} was not answered while the flood ran"));
        assert_eq!(found.key, key);
        assert_eq!(found.payload, payload.as_bytes());
    }
    let during = flooded.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.expect("flood task");
    }
    let (flooded, rounds) = (flooded.load(Ordering::Relaxed), reader.lookup_rounds());
    eprintln!(
        "{flooded} random lookups ({} refused), 20 real reads ({retried} retried), {rounds} rounds",
        refused.load(Ordering::Relaxed)
    );
    assert!(during >= 1_000, "the flood ran alongside the real reads");
    assert!(
        rounds * 4 < flooded,
        "rounds serve many lookups each: {rounds} rounds for {flooded} lookups"
    );
}

/// An id found missing is answered from memory for a moment (no round),
/// and a record this process appended is known without asking the broker,
/// even one whose id was found missing just before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_ids_are_remembered_and_own_appends_need_no_broker() {
    let Some(log) = fresh("kafka_lookup_memory").await else {
        return;
    };
    let id = uuid::Uuid::now_v7().to_string();
    assert_eq!(log.find(&id).await.unwrap(), None);
    let rounds = log.lookup_rounds();
    assert!(rounds >= 1, "the first lookup asked the broker");
    for _ in 0..3 {
        assert_eq!(log.find(&id).await.unwrap(), None);
    }
    assert_eq!(log.lookup_rounds(), rounds, "answered from the negative cache");

    log.append(record(&id, "placed")).await.unwrap();
    let rec = log.find(&id).await.unwrap().expect("an own append is found at once");
    assert_eq!(rec.payload, b"placed".to_vec());
    assert_eq!(log.lookup_rounds(), rounds, "without asking the broker");
}
