//! The same `EventLog` contract against a real Kafka-protocol broker (tansu
//! in CI), plus what only a shared, multi-member log can show: a consumer
//! group splitting partitions between two members and handing them over on
//! revocation. Needs `RUSHHOUR_TEST_KAFKA_BROKERS` and, for the idempotency
//! claims, `RUSHHOUR_TEST_POSTGRES_URL`.

use domain::ports::{EventLog, Membership, Rebalance};
use eventlog::{KafkaEventLog, KafkaLogOptions};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use testkit::eventlog as contract;

/// A log on a topic no other test uses, or `None` (skipped) without services.
async fn fresh(test: &str) -> Option<Arc<KafkaEventLog>> {
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
        find_returns_the_record_for_a_key,
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
