//! The scale-mode event log: Apache Kafka through rdkafka (librdkafka built
//! from source), with idempotency claims in PostgreSQL.
//!
//! - **Append**: an idempotent producer with `acks=all`; `append` returns
//!   only when the broker acknowledged the record (the delivery report), so
//!   an HTTP 202 always stands for a record replicated to the in-sync
//!   replicas. Records are placed with the same partition function as the
//!   embedded log (`domain::ids::partition_for`), so one order's records
//!   keep their order and `find` knows where to look. An append that is not
//!   acknowledged within `append_timeout` fails as unavailable (intake
//!   answers 503 within a second instead of hanging).
//! - **Read**: `reader.rs`, one hand-assigned consumer per process.
//! - **Consumer groups**: `group.rs`; offsets are committed to Kafka after
//!   the store committed the batch (the store's position is the one a
//!   processor resumes from; Kafka's lets tools see lag).
//! - **Idempotency**: `claims.rs` (Kafka cannot claim a key atomically).
//! - **Read-your-writes** (`find`): `lookup.rs`; the records of a key's
//!   partition that the processors have not committed yet, indexed by one
//!   thread that answers every waiting lookup with one incremental read,
//!   so a flood of lookups for random ids cannot starve real ones.
//! - **Trace context**: with traces exported, a record carries the W3C
//!   `traceparent` of its append span in a header, read back by the reader
//!   and the lookups into `LogRecord::trace`; with them off, no header.

mod claims;
mod group;
mod lookup;
mod reader;

use async_trait::async_trait;
use domain::ports::{
    AppendOutcome, AppendRequest, DeadLetter, EventLog, IdempotencyRecord, LogRecord, Membership, PortError,
    PortResult, Position,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tracing::Instrument;

use crate::config::KafkaLogOptions;
use claims::Claims;
use lookup::Lookups;
use reader::Reader;

#[derive(Debug, thiserror::Error)]
pub enum KafkaLogError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("idempotency claims in PostgreSQL: {0}")]
    Claims(#[from] PortError),
}

pub(crate) fn kafka_err(e: KafkaError) -> PortError {
    PortError::Unavailable(format!("Kafka: {e}"))
}

/// Run a blocking librdkafka call off the async threads.
pub(crate) async fn spawn_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> PortResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PortError::Unavailable(format!("blocking Kafka call failed: {e}")))
}

/// How long librdkafka keeps retrying a record before failing it.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct KafkaEventLog {
    opts: KafkaLogOptions,
    producer: FutureProducer,
    reader: Arc<Reader>,
    claims: Claims,
    /// Base settings of every consumer this log creates.
    consumer_config: ClientConfig,
    /// Group members of this process, by group (commits must come from a
    /// member while the group has members).
    members: Mutex<HashMap<String, Weak<BaseConsumer<group::MemberContext>>>>,
    /// Consumers that commit for groups this process is not a member of.
    committers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// `find`: records appended here, ids known missing, and one thread
    /// reading partition tails for everything else.
    lookups: Lookups,
}

impl KafkaEventLog {
    /// The append itself, inside the append span when there is one.
    async fn append_traced(&self, req: AppendRequest) -> PortResult<AppendOutcome> {
        let started = Instant::now();
        // One budget for the claim and the produce together: intake answers
        // within it whichever engine is slow or gone.
        let deadline = tokio::time::Instant::now() + self.opts.append_timeout;
        if let Some(claim) = &req.idempotency {
            let now = domain::ports::system_now_ms();
            let claimed = tokio::time::timeout_at(deadline, self.claims.claim(claim, &req.key, &req.payload, now))
                .await
                .map_err(|_| PortError::Unavailable("idempotency claim timed out".into()))??;
            if !claimed {
                return self.duplicate(&req, &claim.fingerprint).await;
            }
        }
        let trace = req.trace.clone().or_else(telemetry::traces::current_traceparent);
        let at = self
            .produce(&self.opts.topic, &req.key, &req.payload, trace.as_deref(), deadline)
            .await?;
        if let Some(claim) = &req.idempotency {
            // Not awaited: a lost mark only means a retry re-appends the
            // same order, which is applied once.
            self.claims.mark_appended_later(&claim.key);
        }
        metrics::histogram!(telemetry::names::LOG_APPEND_DURATION).record(started.elapsed().as_secs_f64());
        Ok(AppendOutcome::Appended(at))
    }

    /// Connect, create the topics if missing (checking the partition count
    /// of existing ones) and the claim table, and start the reader.
    pub async fn connect(opts: KafkaLogOptions, claims_pool: PgPool) -> Result<Self, KafkaLogError> {
        let mut base = ClientConfig::new();
        // The pass-through first: what the log sets itself is refused there
        // (`KafkaClientSettings::check`) and set after it in any case.
        for (key, value) in &opts.client_settings.0 {
            base.set(key, value);
        }
        base.set("bootstrap.servers", &opts.brokers)
            .set("socket.keepalive.enable", "true")
            .set("log_level", "4");
        ensure_topics(&base, &opts).await?;

        let producer: FutureProducer = base
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", opts.linger.as_millis().to_string())
            .set("compression.type", &opts.compression)
            // librdkafka keeps trying well after the caller got its 503 (an
            // outage shorter than this loses nothing in flight; a retry with
            // the same Idempotency-Key is still placed once). A timeout this
            // short would also make the idempotent producer bump its epoch,
            // which tansu 0.6 does not survive (docs/adr/0005).
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            .create()?;

        let mut consumer_config = base.clone();
        consumer_config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", opts.fetch_wait.as_millis().max(1).to_string())
            .set("session.timeout.ms", opts.session_timeout.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (opts.session_timeout.as_millis() / 4).max(100).to_string(),
            )
            .set("partition.assignment.strategy", "range");
        let reader_consumer: BaseConsumer = consumer_config
            .clone()
            .set("group.id", format!("{}-reader", opts.processor_group))
            .create()?;
        let lookup: BaseConsumer = consumer_config
            .clone()
            .set("group.id", &opts.processor_group)
            .create()?;
        let claims = Claims::open(claims_pool, &opts.topic).await?;
        Ok(Self {
            reader: Reader::start(reader_consumer, &opts.topic, opts.partitions),
            producer,
            claims,
            consumer_config,
            members: Mutex::new(HashMap::new()),
            committers: Mutex::new(HashMap::new()),
            lookups: Lookups::start(lookup, &opts.topic),
            opts,
        })
    }

    pub fn options(&self) -> &KafkaLogOptions {
        &self.opts
    }

    /// How many times `find` asked the broker so far (one round answers
    /// every lookup waiting at the time); for tests and diagnostics.
    pub fn lookup_rounds(&self) -> u64 {
        self.lookups.rounds()
    }

    /// Produce one record to `topic`, placed by key like the embedded log,
    /// with a trace context, and wait for its acknowledgement until `deadline`.
    async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        trace: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> PortResult<Position> {
        let partition = domain::ids::partition_for(key.as_bytes(), self.opts.partitions) as i32;
        let mut record = FutureRecord::to(topic).partition(partition).key(key).payload(payload);
        // No header at all when tracing is off: nothing to format, nothing
        // for the broker to store.
        if let Some(trace) = trace {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: TRACEPARENT,
                value: Some(trace),
            }));
        }
        let at = self.deliver(record, deadline).await?;
        self.lookups.remember(LogRecord {
            partition: at.partition,
            offset: at.offset,
            key: key.to_owned(),
            payload: payload.to_vec(),
            appended_at: domain::ports::system_now_ms(),
            trace: trace.map(str::to_owned),
        });
        Ok(at)
    }

    /// Send `record` and wait for the broker's acknowledgement until `deadline`.
    async fn deliver(
        &self,
        record: FutureRecord<'_, str, [u8]>,
        deadline: tokio::time::Instant,
    ) -> PortResult<Position> {
        let delivery = self.producer.send_result(record).map_err(|(e, _)| kafka_err(e))?;
        match tokio::time::timeout_at(deadline, delivery).await {
            Err(_) => Err(PortError::Unavailable(
                "Kafka did not acknowledge the record in time".into(),
            )),
            Ok(Err(_)) => Err(PortError::Unavailable("Kafka producer shut down".into())),
            Ok(Ok(Err((e, _)))) => Err(kafka_err(e)),
            Ok(Ok(Ok(d))) => Ok(Position {
                partition: d.partition as u32,
                offset: d.offset as u64,
            }),
        }
    }

    /// Someone claimed the key first. Replay only once their record is
    /// durable: wait for them, and append it ourselves if they never do.
    async fn duplicate(&self, req: &AppendRequest, fingerprint: &str) -> PortResult<AppendOutcome> {
        let key = &req.idempotency.as_ref().expect("claimed request").key;
        let deadline = Instant::now() + self.opts.claim_wait;
        loop {
            let existing = self
                .claims
                .get(key)
                .await?
                .ok_or_else(|| PortError::Unavailable("idempotency claim vanished".into()))?;
            if existing.appended || existing.record.fingerprint != fingerprint {
                // A different request under the same key appends nothing;
                // the caller refuses it.
                return Ok(AppendOutcome::Duplicate(existing.record));
            }
            if Instant::now() >= deadline {
                let deadline = tokio::time::Instant::now() + self.opts.append_timeout;
                self.produce(
                    &self.opts.topic,
                    &existing.record_key,
                    &existing.payload,
                    None,
                    deadline,
                )
                .await?;
                let _ = self.claims.mark_appended(key).await;
                return Ok(AppendOutcome::Duplicate(existing.record));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn member(&self, group: &str) -> Option<Arc<BaseConsumer<group::MemberContext>>> {
        self.members.lock().expect("members").get(group).and_then(Weak::upgrade)
    }

    fn committer(&self, group: &str) -> PortResult<Arc<BaseConsumer>> {
        let mut committers = self.committers.lock().expect("committers");
        if let Some(c) = committers.get(group) {
            return Ok(c.clone());
        }
        let c: BaseConsumer = self
            .consumer_config
            .clone()
            .set("group.id", group)
            .create()
            .map_err(kafka_err)?;
        let c = Arc::new(c);
        committers.insert(group.to_owned(), c.clone());
        Ok(c)
    }
}

impl Drop for KafkaEventLog {
    fn drop(&mut self) {
        self.reader.stop();
    }
}

/// The record header carrying the append's W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` header of a consumed record, if it has a readable one.
pub(crate) fn trace_header(m: &impl rdkafka::Message) -> Option<String> {
    use rdkafka::message::Headers;
    m.headers()?
        .iter()
        .find(|h| h.key == TRACEPARENT)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// A random W3C trace context (`version-traceid-parentid-flags`), for the
/// producer benchmark's header cost; the log itself writes the append
/// span's real one.
pub fn traceparent() -> String {
    format!(
        "00-{:032x}-{:016x}-01",
        rand::random::<u128>().max(1),
        rand::random::<u64>().max(1)
    )
}

async fn ensure_topics(base: &ClientConfig, opts: &KafkaLogOptions) -> Result<(), KafkaLogError> {
    let admin: AdminClient<DefaultClientContext> = base.create()?;
    // Create only what is missing: processes starting together then do not
    // race to create, and running needs no create permission once
    // `rushhour migrate` made the topics.
    let mut missing = Vec::new();
    for (topic, partitions) in [(&opts.topic, opts.partitions as usize), (&opts.dlq_topic, 1)] {
        match partition_count(&admin, topic)? {
            Some(have) if have != partitions => {
                return Err(KafkaLogError::Topic {
                    topic: topic.clone(),
                    reason: format!(
                        "has {have} partitions but {partitions} are configured; records are placed \
                         by a function of the partition count, so they must agree"
                    ),
                });
            }
            Some(_) => {}
            None => missing.push(NewTopic::new(
                topic,
                partitions as i32,
                TopicReplication::Fixed(opts.replication_factor),
            )),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let admin_opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(missing.iter(), &admin_opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaLogError::Topic {
                    topic,
                    reason: format!("cannot create: {code}"),
                });
            }
        }
    }
    Ok(())
}

/// Partitions of `topic`, or `None` when it does not exist.
fn partition_count(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<Option<usize>, KafkaLogError> {
    let meta = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(meta
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0))
}

#[async_trait]
impl EventLog for KafkaEventLog {
    fn partitions(&self) -> u32 {
        self.opts.partitions
    }

    async fn append(&self, req: AppendRequest) -> PortResult<AppendOutcome> {
        // As in the SQLite log: a span, and a context to store, only when
        // traces are exported.
        if telemetry::traces::enabled() {
            let span = tracing::info_span!("log.append", otel.name = "log append", otel.kind = "producer");
            return self.append_traced(req).instrument(span).await;
        }
        self.append_traced(req).await
    }

    async fn prune_idempotency(&self, before: i64) -> PortResult<u64> {
        self.claims.prune(before).await
    }

    async fn idempotency(&self, key: &str) -> PortResult<Option<IdempotencyRecord>> {
        Ok(self.claims.get(key).await?.map(|e| e.record))
    }

    async fn find(&self, key: &str) -> PortResult<Option<LogRecord>> {
        let partition = domain::ids::partition_for(key.as_bytes(), self.opts.partitions) as i32;
        self.lookups.find(key, partition).await
    }

    async fn read(&self, partition: u32, from: u64, max: usize, wait: Duration) -> PortResult<Vec<LogRecord>> {
        self.reader.read(partition, from, max, wait).await
    }

    async fn end_offset(&self, partition: u32) -> PortResult<u64> {
        if partition >= self.opts.partitions {
            return Err(PortError::Invalid(format!("no partition {partition}")));
        }
        self.reader.end_offset(partition).await
    }

    async fn commit(&self, group: &str, partition: u32, next: u64) -> PortResult<()> {
        let topic = self.opts.topic.clone();
        if let Some(member) = self.member(group) {
            return spawn_blocking(move || group::commit(&member, &topic, partition, next))
                .await?
                .map_err(kafka_err);
        }
        let committer = self.committer(group)?;
        spawn_blocking(move || group::commit(&committer, &topic, partition, next))
            .await?
            .map_err(kafka_err)
    }

    async fn join(&self, group: &str) -> PortResult<Membership> {
        let mut config = self.consumer_config.clone();
        config.set("group.id", group);
        let (membership, consumer) = group::join(&config, &self.opts.topic, self.reader.clone()).map_err(kafka_err)?;
        self.members
            .lock()
            .expect("members")
            .insert(group.to_owned(), Arc::downgrade(&consumer));
        Ok(membership)
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> PortResult<()> {
        let topic = &self.opts.dlq_topic;
        let body = serde_json::json!({
            "group": letter.group,
            "partition": letter.partition,
            "offset": letter.offset,
            "key": letter.key,
            "payload": String::from_utf8_lossy(&letter.payload),
            "error": letter.error,
            "attempts": letter.attempts,
            "at": letter.at,
        });
        let bytes = serde_json::to_vec(&body).map_err(|e| PortError::Invalid(e.to_string()))?;
        // The DLQ topic has one partition; `produce` places by key within
        // the main topic's partition count, so send it directly.
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(letter.key.as_str())
            .payload(bytes.as_slice());
        let deadline = tokio::time::Instant::now() + self.opts.append_timeout * 5;
        self.deliver(record, deadline).await.map(|_| ())
    }

    async fn health(&self) -> PortResult<()> {
        let (producer, topic) = (self.producer.clone(), self.opts.topic.clone());
        spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_millis(800))
        })
        .await?
        .map_err(kafka_err)?;
        self.claims.health().await
    }
}
