//! Reading partitions of the Kafka log for the processors.
//!
//! One consumer per process, assigned partitions by hand (never a group
//! subscription: group membership is `group.rs`'s job), polled by one
//! thread that files each record under its partition. `read(p, from, …)`
//! serves from that buffer; a `from` outside it (a retried batch, or the
//! position a processor loaded from the store when it took the partition)
//! seeks. Records stay buffered until a later read moves past them, so a
//! batch that failed to apply is re-read without a round trip. A partition
//! whose buffer is full is paused until its processor catches up, so memory
//! stays bounded when the store is slow.

use domain::ports::{LogRecord, PortError, PortResult};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

use super::{kafka_err, spawn_blocking};

/// Above this many buffered records a partition is paused; below `LOW` it
/// is resumed.
const HIGH: usize = 20_000;
const LOW: usize = 2_000;
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle, flowing partition asks the broker for its end.
const END_RECHECK: Duration = Duration::from_secs(1);
/// How long a read waits for records the broker has but has not sent yet.
const FETCH_GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    assigned: bool,
    paused: bool,
    /// Offset the next fetched record should have.
    next: u64,
    buf: VecDeque<LogRecord>,
    /// Records have arrived since the last assign or seek: the fetcher is
    /// flowing, so an empty buffer means there is nothing more yet.
    flowing: bool,
    /// When the broker was last asked for the partition's end.
    end_checked: Option<std::time::Instant>,
}

struct Part {
    state: Mutex<State>,
    arrived: Notify,
}

pub(crate) struct Reader {
    consumer: Arc<BaseConsumer>,
    topic: String,
    parts: Vec<Part>,
    stop: AtomicBool,
}

enum Step {
    Got(Vec<LogRecord>, bool),
    Assign,
    Seek,
    Wait,
}

impl Reader {
    pub(crate) fn start(consumer: BaseConsumer, topic: &str, partitions: u32) -> Arc<Self> {
        let reader = Arc::new(Self {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            parts: (0..partitions)
                .map(|_| Part {
                    state: Mutex::new(State::default()),
                    arrived: Notify::new(),
                })
                .collect(),
            stop: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&reader);
        std::thread::Builder::new()
            .name("kafka-reader".into())
            .spawn(move || {
                while let Some(r) = weak.upgrade() {
                    if r.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    r.poll_once(Duration::from_millis(100));
                }
            })
            .expect("spawn the Kafka reader thread");
        reader
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn tpl(&self, partition: u32, offset: Option<u64>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let off = offset.map_or(Offset::Invalid, |o| Offset::Offset(o as i64));
        // Only fails for an offset kind librdkafka cannot represent.
        let _ = tpl.add_partition_offset(&self.topic, partition as i32, off);
        tpl
    }

    fn poll_once(&self, timeout: Duration) {
        match self.consumer.poll(timeout) {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "Kafka reader: fetch error"),
            Some(Ok(m)) => {
                let Some(part) = self.parts.get(m.partition() as usize) else {
                    return;
                };
                let offset = m.offset() as u64;
                let mut st = part.state.lock().expect("reader state");
                // Older than expected: a duplicate delivery after a seek.
                if !st.assigned || offset < st.next {
                    return;
                }
                st.buf.push_back(LogRecord {
                    partition: m.partition() as u32,
                    offset,
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    appended_at: m.timestamp().to_millis().unwrap_or(0),
                    trace: super::trace_header(&m),
                });
                st.next = offset + 1;
                st.flowing = true;
                if st.buf.len() >= HIGH && !st.paused {
                    match self.consumer.pause(&self.tpl(m.partition() as u32, None)) {
                        Ok(()) => st.paused = true,
                        Err(e) => tracing::warn!(error = %e, "Kafka reader: cannot pause a full partition"),
                    }
                }
                drop(st);
                part.arrived.notify_one();
            }
        }
    }

    pub(crate) async fn read(
        self: &Arc<Self>,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> PortResult<Vec<LogRecord>> {
        let part = self
            .parts
            .get(partition as usize)
            .ok_or_else(|| PortError::Invalid(format!("no partition {partition}")))?;
        let mut deadline = tokio::time::Instant::now() + wait;
        let mut checked_end = false;
        loop {
            let step = {
                let mut st = part.state.lock().expect("reader state");
                if !st.assigned {
                    // Marked before assigning, so the poll thread keeps
                    // what arrives the moment the assignment takes effect.
                    *st = State {
                        assigned: true,
                        next: from,
                        ..State::default()
                    };
                    Step::Assign
                } else {
                    while st.buf.front().is_some_and(|r| r.offset < from) {
                        st.buf.pop_front();
                    }
                    match st.buf.front() {
                        Some(r) if r.offset == from => {
                            let got: Vec<LogRecord> = st.buf.iter().take(max).cloned().collect();
                            let resume = st.paused && st.buf.len() < LOW;
                            if resume {
                                st.paused = false;
                            }
                            Step::Got(got, resume)
                        }
                        None if st.next == from => Step::Wait,
                        _ => Step::Seek,
                    }
                }
            };
            match step {
                Step::Got(got, resume) => {
                    if resume && let Err(e) = self.consumer.resume(&self.tpl(partition, None)) {
                        tracing::warn!(partition, error = %e, "Kafka reader: cannot resume a partition");
                    }
                    return Ok(got);
                }
                Step::Assign => {
                    let me = self.clone();
                    let assigned =
                        spawn_blocking(move || me.consumer.incremental_assign(&me.tpl(partition, Some(from)))).await;
                    if let Err(e) = assigned.and_then(|r| r.map_err(kafka_err)) {
                        part.state.lock().expect("reader state").assigned = false;
                        return Err(e);
                    }
                }
                Step::Seek => {
                    let me = self.clone();
                    spawn_blocking(move || {
                        me.consumer
                            .seek(&me.topic, partition as i32, Offset::Offset(from as i64), SEEK_TIMEOUT)
                    })
                    .await?
                    .map_err(kafka_err)?;
                    let mut st = part.state.lock().expect("reader state");
                    st.buf.clear();
                    st.next = from;
                    st.flowing = false;
                    if st.paused {
                        st.paused = false;
                        drop(st);
                        self.consumer.resume(&self.tpl(partition, None)).map_err(kafka_err)?;
                    }
                }
                Step::Wait => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        // Empty-handed; but records already in the log must
                        // be returned even by a read that does not wait
                        // (they may only not have been fetched yet). The
                        // broker is asked only when the fetcher has not
                        // delivered since the last assign or seek, or not
                        // for a second: a query per batch would cost the
                        // broker more than the batch.
                        let ask = {
                            let mut st = part.state.lock().expect("reader state");
                            let stale = st.end_checked.is_none_or(|t| t.elapsed() >= END_RECHECK);
                            let ask = !checked_end && (!st.flowing || stale);
                            if ask {
                                st.end_checked = Some(std::time::Instant::now());
                            }
                            ask
                        };
                        if !ask || self.end_offset(partition).await? <= from {
                            return Ok(Vec::new());
                        }
                        checked_end = true;
                        deadline = now + FETCH_GRACE;
                    }
                    let _ = tokio::time::timeout(deadline - now, part.arrived.notified()).await;
                }
            }
        }
    }

    /// The offset the next record of `partition` will get (asks the broker).
    pub(crate) async fn end_offset(self: &Arc<Self>, partition: u32) -> PortResult<u64> {
        let me = self.clone();
        let (_, high) = spawn_blocking(move || me.consumer.fetch_watermarks(&me.topic, partition as i32, SEEK_TIMEOUT))
            .await?
            .map_err(kafka_err)?;
        Ok(high.max(0) as u64)
    }

    /// Stop fetching `partition` (it is being handed to another process).
    /// Blocking: called from the group member's thread.
    pub(crate) fn release(&self, partition: u32) -> PortResult<()> {
        let Some(part) = self.parts.get(partition as usize) else {
            return Ok(());
        };
        let was_assigned = std::mem::take(&mut *part.state.lock().expect("reader state")).assigned;
        if was_assigned {
            self.consumer
                .incremental_unassign(&self.tpl(partition, None))
                .map_err(kafka_err)?;
        }
        Ok(())
    }
}
