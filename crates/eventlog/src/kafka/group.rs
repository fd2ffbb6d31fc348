//! Consumer-group membership of the Kafka log: which partitions this
//! process processes, and the group's committed offsets.
//!
//! A member is a consumer subscribed to the topic whose only jobs are to
//! take part in rebalances and to commit offsets: its partitions are paused
//! the moment they are assigned, and the records are read by `reader.rs`
//! from the position the processors stored in the database. Its rebalance
//! callback runs on the member's own thread and blocks there on a
//! revocation until the processors of the revoked partitions have finished
//! their batch and stopped (revoke → finish batch → release), so a
//! partition is never processed by two members at once while both are
//! alive.

use domain::ports::{Membership, Rebalance};
use futures::channel::{mpsc, oneshot};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::reader::Reader;

/// Longest a revocation waits for the processors to stop. Past it the
/// partitions are released anyway (a stuck processor must not block the
/// whole group); the store's idempotent apply covers the overlap.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct MemberContext {
    events: mpsc::UnboundedSender<Rebalance>,
    reader: Arc<Reader>,
}

impl ClientContext for MemberContext {}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<u32> {
    tpl.elements().iter().map(|e| e.partition() as u32).collect()
}

impl ConsumerContext for MemberContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                // The member only coordinates; the reader fetches.
                let paused = assigned.and_then(|()| consumer.pause(tpl));
                if let Err(e) = paused {
                    tracing::error!(error = %e, "Kafka group: cannot take the assigned partitions");
                    return;
                }
                let _ = self.events.unbounded_send(Rebalance::Assigned(partitions_of(tpl)));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions = partitions_of(tpl);
                let (done, stopped) = oneshot::channel();
                if self
                    .events
                    .unbounded_send(Rebalance::Revoked {
                        partitions: partitions.clone(),
                        done,
                    })
                    .is_ok()
                {
                    wait_stopped(stopped, &partitions);
                }
                for &p in &partitions {
                    if let Err(e) = self.reader.release(p) {
                        tracing::warn!(partition = p, error = %e, "Kafka group: cannot release a partition");
                    }
                }
                let released = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = released {
                    tracing::error!(error = %e, "Kafka group: cannot release the revoked partitions");
                }
            }
            other => {
                tracing::error!(error = ?other, "Kafka group: rebalance failed; dropping the assignment");
                let _ = consumer.unassign();
            }
        }
    }
}

/// Block the member's thread until the processors report they stopped.
fn wait_stopped(mut stopped: oneshot::Receiver<()>, partitions: &[u32]) {
    let deadline = Instant::now() + REVOKE_TIMEOUT;
    loop {
        match stopped.try_recv() {
            Ok(Some(())) | Err(oneshot::Canceled) => return,
            Ok(None) if Instant::now() >= deadline => {
                tracing::error!(
                    ?partitions,
                    "Kafka group: processors did not stop within {REVOKE_TIMEOUT:?}; releasing anyway"
                );
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A live member; its thread owns the consumer and polls it.
pub(crate) struct Member {
    stop: Arc<AtomicBool>,
}

impl Drop for Member {
    fn drop(&mut self) {
        // The thread drops the consumer, which leaves the group (its
        // partitions go to the others after one last revocation).
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Join `group` on `topic`: start a member and return the membership the
/// processors follow, plus the member (for commits).
pub(crate) fn join(
    config: &ClientConfig,
    topic: &str,
    reader: Arc<Reader>,
) -> KafkaResult<(Membership, Arc<BaseConsumer<MemberContext>>)> {
    let (tx, rx) = mpsc::unbounded();
    let consumer: BaseConsumer<MemberContext> = config.create_with_context(MemberContext { events: tx, reader })?;
    consumer.subscribe(&[topic])?;
    let consumer = Arc::new(consumer);
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (consumer.clone(), stop.clone());
    std::thread::Builder::new()
        .name("kafka-group".into())
        .spawn(move || {
            while !s.load(Ordering::Relaxed) {
                // Serves rebalances; records never arrive (partitions are paused).
                if let Some(Err(e)) = c.poll(Duration::from_millis(100)) {
                    tracing::warn!(error = %e, "Kafka group: consumer error");
                }
            }
            c.unsubscribe();
        })
        .map_err(|e| rdkafka::error::KafkaError::Subscription(format!("spawn the group thread: {e}")))?;
    let member = Member { stop };
    Ok((Membership::new(rx, Box::new(member)), consumer))
}

/// Commit `next` as `group`'s offset for `partition` through `consumer`.
pub(crate) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: u32,
    next: u64,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition as i32, Offset::Offset(next as i64))?;
    consumer.commit(&tpl, CommitMode::Sync)
}
