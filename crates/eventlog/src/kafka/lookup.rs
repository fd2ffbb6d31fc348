//! Read-your-writes lookups (`find`) on the Kafka log, built so that a
//! flood of lookups for ids that are not there cannot starve the lookups
//! of real, new orders.
//!
//! Kafka has no index by key: finding a record means reading its
//! partition's tail (the records the processors have not committed yet;
//! everything older is in the store). The first version scanned that tail
//! once per lookup, each scan holding the one lookup consumer's lock in a
//! blocking thread that a request timeout could not cancel, so a few
//! hundred anonymous lookups of random ids queued every real lookup behind
//! them for seconds. Now:
//!
//! - **Known without Kafka**: a record this process appended is remembered
//!   (`recent`, bounded by bytes, a few minutes), and an id found missing
//!   is remembered for two seconds (`missing`, bounded by count), so a
//!   client polling an unknown id costs nothing after the first answer.
//!   An id is only looked up after the store did not have it, and a client
//!   learns an order's id only from the 202 that follows its append, so a
//!   "missing" answer cannot hide an order its client could know of (an
//!   append by this process also clears it).
//! - **One scan serves every waiting lookup**: one thread owns the lookup
//!   consumer and keeps, per partition, an index by key of the tail it has
//!   read (`Tail`). Lookups queue (bounded: a full queue is refused at once
//!   as unavailable) and the thread takes all that are waiting as one
//!   *round*: it asks the broker for the committed offsets and each
//!   partition's end, reads only the records appended since its last round,
//!   and answers every lookup of the round from the index. The cost of a
//!   round does not grow with the number of lookups in it, so a flood makes
//!   rounds bigger, not more numerous, and a real lookup waits at most for
//!   the round in progress and its own.
//! - **Bounded and cancellable**: a round has a deadline, shared fairly
//!   between its partitions and checked inside the read loop; what was read
//!   before the deadline stays indexed, so a long tail is read over several
//!   rounds. A lookup whose caller went away (its request timed out, the
//!   client disconnected) is dropped from the round, and a partition nobody
//!   waits for any more is not read. The caller waits at most
//!   `LOOKUP_WAIT`, then answers unavailable.
//!
//! Rejected: a pool of lookup consumers behind a semaphore. It bounds the
//! damage but still spends one broker scan per lookup, so a flood still
//! takes every permit and real lookups are refused along with it.

use domain::ports::{LogRecord, PortError, PortResult};
use moka::sync::Cache;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::kafka_err;

/// Lookups that may wait for a round; beyond, `find` is refused at once.
const QUEUE: usize = 4_096;
/// Longest a caller waits for its answer (a round in progress, then its own).
const LOOKUP_WAIT: Duration = Duration::from_secs(3);
/// Longest one round may read for, all its partitions together.
const ROUND_BUDGET: Duration = Duration::from_secs(1);
/// Longest a broker query (offsets, watermarks) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Records indexed per partition: beyond, the oldest are forgotten (they are
/// the next the processors apply, and the store answers for them then).
const TAIL_CAP: usize = 20_000;
/// How long an id found missing is answered as missing without asking.
const MISSING_TTL: Duration = Duration::from_secs(2);
const MISSING_CAP: u64 = 100_000;
/// How long, and how many bytes of, records appended here are kept.
const RECENT_TTL: Duration = Duration::from_secs(120);
const RECENT_BYTES: u64 = 16 << 20;

struct Request {
    key: String,
    partition: i32,
    reply: oneshot::Sender<PortResult<Option<LogRecord>>>,
}

pub(crate) struct Lookups {
    queue: flume::Sender<Request>,
    recent: Cache<String, LogRecord>,
    missing: Cache<String, ()>,
    rounds: Arc<AtomicU64>,
}

impl Lookups {
    /// Start the lookup thread; it owns `consumer` and stops when this is
    /// dropped.
    pub(crate) fn start(consumer: BaseConsumer, topic: &str) -> Self {
        let (queue, requests) = flume::bounded(QUEUE);
        let rounds = Arc::new(AtomicU64::new(0));
        let (topic, counter) = (topic.to_owned(), rounds.clone());
        std::thread::Builder::new()
            .name("kafka-lookup".into())
            .spawn(move || serve(&consumer, &topic, &requests, &counter))
            .expect("spawn the Kafka lookup thread");
        Self {
            queue,
            recent: Cache::builder()
                .time_to_live(RECENT_TTL)
                .weigher(|k: &String, v: &LogRecord| u32::try_from(k.len() + v.payload.len() + 64).unwrap_or(u32::MAX))
                .max_capacity(RECENT_BYTES)
                .build(),
            missing: Cache::builder()
                .time_to_live(MISSING_TTL)
                .max_capacity(MISSING_CAP)
                .build(),
            rounds,
        }
    }

    /// A record this process appended: known to `find` without Kafka.
    pub(crate) fn remember(&self, record: LogRecord) {
        self.missing.invalidate(&record.key);
        self.recent.insert(record.key.clone(), record);
    }

    /// Rounds that asked the broker so far.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    pub(crate) async fn find(&self, key: &str, partition: i32) -> PortResult<Option<LogRecord>> {
        if let Some(rec) = self.recent.get(key) {
            return Ok(Some(rec));
        }
        if self.missing.contains_key(key) {
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            key: key.to_owned(),
            partition,
            reply,
        };
        self.queue.try_send(request).map_err(|e| match e {
            flume::TrySendError::Full(_) => PortError::Unavailable("too many log lookups waiting".into()),
            flume::TrySendError::Disconnected(_) => PortError::Unavailable("the Kafka lookup thread stopped".into()),
        })?;
        // Dropping `answer` (a timeout here, or the caller's future being
        // dropped) is what tells the lookup thread nobody waits any more.
        let found = match tokio::time::timeout(LOOKUP_WAIT, answer).await {
            Err(_) => return Err(PortError::Unavailable("Kafka lookup timed out".into())),
            Ok(Err(_)) => return Err(PortError::Unavailable("the Kafka lookup thread stopped".into())),
            Ok(Ok(found)) => found?,
        };
        if found.is_none() {
            self.missing.insert(key.to_owned(), ());
        }
        Ok(found)
    }
}

/// The lookup thread: one round per wake-up, until every sender is gone.
fn serve(consumer: &BaseConsumer, topic: &str, requests: &flume::Receiver<Request>, rounds: &AtomicU64) {
    let mut tails: HashMap<i32, Tail> = HashMap::new();
    while let Ok(first) = requests.recv() {
        let mut round: Vec<Request> = std::iter::once(first).chain(requests.try_iter().take(QUEUE)).collect();
        round.retain(|r| !r.reply.is_closed());
        if round.is_empty() {
            continue;
        }
        rounds.fetch_add(1, Ordering::Relaxed);
        let failed = refresh(consumer, topic, &mut tails, &round);
        for r in round {
            let found = tails.get(&r.partition).and_then(|t| t.get(&r.key));
            // A record read before a failure is still the answer.
            let answer = match (found, failed.get(&r.partition)) {
                (Some(rec), _) => Ok(Some(rec)),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Ok(None),
            };
            let _ = r.reply.send(answer);
        }
    }
}

/// Bring the tails of the round's partitions up to their ends; answers the
/// partitions that could not be brought up to date, with why.
fn refresh(
    consumer: &BaseConsumer,
    topic: &str,
    tails: &mut HashMap<i32, Tail>,
    round: &[Request],
) -> HashMap<i32, PortError> {
    let deadline = Instant::now() + ROUND_BUDGET;
    let mut partitions: Vec<i32> = round.iter().map(|r| r.partition).collect();
    partitions.sort_unstable();
    partitions.dedup();
    let committed = match committed(consumer, topic, &partitions) {
        Ok(c) => c,
        Err(e) => return partitions.into_iter().map(|p| (p, e.clone())).collect(),
    };
    let mut failed = HashMap::new();
    for (i, &p) in partitions.iter().enumerate() {
        let waiting = || round.iter().any(|r| r.partition == p && !r.reply.is_closed());
        if !waiting() {
            continue;
        }
        // An equal share of what is left, so one long tail cannot take the
        // whole round from the others.
        let left = deadline.saturating_duration_since(Instant::now());
        let share = Instant::now() + left / (partitions.len() - i) as u32;
        let tail = tails.entry(p).or_default();
        let result = consumer
            .fetch_watermarks(topic, p, QUERY_TIMEOUT.min(left))
            .map_err(kafka_err)
            .and_then(|(low, high)| {
                let start = committed.get(&p).copied().unwrap_or(low).max(low);
                match tail.plan(start, high) {
                    Some((from, to)) => read(consumer, topic, p, from, to, share, tail, &waiting),
                    None => Ok(()),
                }
            });
        if let Err(e) = result {
            failed.insert(p, e);
        }
    }
    failed
}

/// The processors' committed offset of each partition that has one.
fn committed(consumer: &BaseConsumer, topic: &str, partitions: &[i32]) -> PortResult<HashMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, QUERY_TIMEOUT).map_err(kafka_err)?;
    Ok(partitions
        .iter()
        .filter_map(|&p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some((p, o)),
            _ => None,
        })
        .collect())
}

/// Read `partition` from `from` up to `to` (its end when the round began)
/// into `tail`, until `deadline` or until nobody is `waiting` any more.
#[allow(clippy::too_many_arguments)]
fn read(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    deadline: Instant,
    tail: &mut Tail,
    waiting: &dyn Fn() -> bool,
) -> PortResult<()> {
    let mut assign = TopicPartitionList::new();
    assign
        .add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(kafka_err)?;
    consumer.assign(&assign).map_err(kafka_err)?;
    let outcome = loop {
        let now = Instant::now();
        if now >= deadline {
            break Err(PortError::Unavailable("Kafka lookup timed out".into()));
        }
        if !waiting() {
            // What was read stays indexed for the next round.
            break Ok(());
        }
        match consumer.poll((deadline - now).min(Duration::from_millis(50))) {
            None => {}
            Some(Err(e)) => break Err(kafka_err(e)),
            Some(Ok(m)) if m.partition() == partition => {
                tail.insert(LogRecord {
                    partition: partition as u32,
                    offset: m.offset() as u64,
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    appended_at: m.timestamp().to_millis().unwrap_or(0),
                    trace: super::trace_header(&m),
                });
                if m.offset() + 1 >= to {
                    break Ok(());
                }
            }
            Some(Ok(_)) => {}
        }
    };
    let _ = consumer.unassign();
    outcome
}

/// What the lookup thread has read of one partition's tail, by key: the
/// records from the processors' committed offset (at the last round) up to
/// `next`, at most `TAIL_CAP` of them.
#[derive(Default)]
struct Tail {
    /// The offset the next record read will have; `None` before the first
    /// round.
    next: Option<i64>,
    /// The newest record of each key.
    by_key: HashMap<String, LogRecord>,
    /// `(offset, key)` of every indexed record, oldest first.
    order: VecDeque<(i64, String)>,
}

impl Tail {
    fn get(&self, key: &str) -> Option<LogRecord> {
        self.by_key.get(key).cloned()
    }

    /// The range still to read, given that records before `start` are in
    /// the store (or gone) and `end` is the partition's end; forgets what
    /// is below `start`.
    fn plan(&mut self, start: i64, end: i64) -> Option<(i64, i64)> {
        while self.order.front().is_some_and(|(o, _)| *o < start) {
            self.forget_oldest();
        }
        let mut next = self.next.unwrap_or(start).max(start);
        if next > end {
            // The partition is shorter than what was read: the topic was
            // recreated. Nothing indexed can be trusted.
            *self = Tail::default();
            next = start;
        }
        // Only the newest `TAIL_CAP` records are worth reading: older ones
        // would be forgotten again at once.
        next = next.max(end - TAIL_CAP as i64);
        self.next = Some(next);
        (next < end).then_some((next, end))
    }

    fn insert(&mut self, rec: LogRecord) {
        let offset = rec.offset as i64;
        if self.next.is_some_and(|n| offset < n) {
            // Delivered twice (a fetch restarted): already indexed.
            return;
        }
        self.next = Some(offset + 1);
        self.order.push_back((offset, rec.key.clone()));
        self.by_key.insert(rec.key.clone(), rec);
        while self.order.len() > TAIL_CAP {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((offset, key)) = self.order.pop_front()
            && self.by_key.get(&key).is_some_and(|r| r.offset as i64 == offset)
        {
            self.by_key.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, key: &str) -> LogRecord {
        LogRecord {
            partition: 0,
            offset: offset as u64,
            key: key.into(),
            payload: format!("{key}@{offset}").into_bytes(),
            appended_at: 0,
            trace: None,
        }
    }

    fn fill(tail: &mut Tail, range: std::ops::Range<i64>, key: impl Fn(i64) -> String) {
        for o in range {
            tail.insert(rec(o, &key(o)));
        }
    }

    #[test]
    fn a_tail_reads_only_what_is_new_and_keeps_the_newest_record_per_key() {
        let mut tail = Tail::default();
        assert_eq!(tail.plan(10, 10), None, "an empty tail reads nothing");
        assert_eq!(tail.plan(10, 13), Some((10, 13)));
        fill(
            &mut tail,
            10..13,
            |o| if o == 11 { "a".into() } else { format!("k{o}") },
        );
        assert_eq!(tail.plan(10, 13), None, "nothing new: no read");
        assert_eq!(tail.plan(10, 15), Some((13, 15)), "only the records appended since");
        fill(
            &mut tail,
            13..15,
            |o| if o == 14 { "a".into() } else { format!("k{o}") },
        );
        assert_eq!(tail.get("a").unwrap().offset, 14, "the newest record of a key");
        assert_eq!(tail.get("k10").unwrap().payload, b"k10@10".to_vec());
        assert_eq!(tail.get("nope"), None);
        // A redelivered record changes nothing.
        tail.insert(rec(12, "dup"));
        assert_eq!(tail.get("dup"), None);
    }

    #[test]
    fn a_tail_forgets_what_the_processors_committed() {
        let mut tail = Tail::default();
        tail.plan(0, 5);
        fill(&mut tail, 0..5, |o| format!("k{o}"));
        // The processors committed up to 3: records 0..3 are in the store.
        assert_eq!(tail.plan(3, 5), None);
        assert_eq!(tail.get("k2"), None);
        assert_eq!(tail.get("k3").unwrap().offset, 3);
        assert_eq!(tail.order.len(), 2);
        // A key re-appended later is kept when its older record goes.
        tail.plan(3, 7);
        fill(&mut tail, 5..7, |o| if o == 6 { "k3".into() } else { format!("k{o}") });
        tail.plan(5, 7);
        assert_eq!(tail.get("k3").unwrap().offset, 6);
        // Committed beyond what was read: reading resumes there.
        assert_eq!(tail.plan(9, 12), Some((9, 12)));
        assert!(tail.by_key.is_empty() && tail.order.is_empty());
    }

    #[test]
    fn a_tail_is_bounded_and_starts_over_on_a_shorter_partition() {
        let mut tail = Tail::default();
        let end = TAIL_CAP as i64 * 3;
        assert_eq!(tail.plan(0, end), Some((end - TAIL_CAP as i64, end)), "only the newest");
        fill(&mut tail, end - TAIL_CAP as i64..end + 10, |o| format!("k{o}"));
        assert_eq!(tail.order.len(), TAIL_CAP);
        assert_eq!(tail.by_key.len(), TAIL_CAP);
        assert_eq!(
            tail.get(&format!("k{}", end - TAIL_CAP as i64)),
            None,
            "the oldest went"
        );
        // The topic was recreated: shorter than what was read.
        assert_eq!(tail.plan(0, 4), Some((0, 4)));
        assert!(tail.by_key.is_empty());
    }
}
