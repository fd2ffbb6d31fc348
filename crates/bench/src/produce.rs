//! `rushhour bench produce`: a raw rdkafka producer, the ceiling scale-mode
//! intake is compared with. Same broker, same settings as the Kafka log
//! (`acks=all`, idempotence, linger, compression), the same concurrency as
//! the HTTP load generator (N tasks, each waiting for its delivery report
//! before sending the next), and records of the size intake writes. What it
//! leaves out is exactly what intake adds: HTTP, validation and pricing, the
//! idempotency claim, the JSON.

use anyhow::Context;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct ProduceArgs {
    /// Brokers, host:port[,host:port].
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to write (created with `--partitions` if missing).
    #[arg(long, default_value = "rushhour.bench.raw")]
    pub topic: String,
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Concurrent producers, each with one record in flight.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Bytes per record (an order placed with three lines is ~450).
    #[arg(long, default_value_t = 450)]
    pub record_bytes: usize,
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u64,
    #[arg(long, default_value = "lz4")]
    pub compression: String,
    /// Give every record a W3C `traceparent` header, as the Kafka log does.
    #[arg(long)]
    pub traceparent: bool,
    /// A librdkafka producer setting, set after the defaults above
    /// (repeatable), e.g. `--set max.in.flight.requests.per.connection=1`:
    /// the same experiment as `[log.kafka]` on the Kafka log.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::config::parse_key_value)]
    pub settings: Vec<(String, String)>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct ProduceReport {
    pub records: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub async fn run(args: &ProduceArgs) -> anyhow::Result<()> {
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &args.brokers);
    let admin: AdminClient<DefaultClientContext> = base.create().context("Kafka admin client")?;
    let topic = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(1));
    admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .context("create the benchmark topic")?;
    let mut producer = base.clone();
    producer
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", args.linger_ms.to_string())
        .set("compression.type", &args.compression)
        .set("message.timeout.ms", "10000");
    for (key, value) in &args.settings {
        producer.set(key, value);
    }
    let producer: FutureProducer = producer.create().context("Kafka producer")?;
    let payload: Arc<Vec<u8>> = Arc::new((0..args.record_bytes).map(|i| b'a' + (i % 26) as u8).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let warm = Instant::now() + Duration::from_secs(1);
    let mut tasks = Vec::new();
    for w in 0..args.connections {
        let (producer, payload, stop, topic) = (producer.clone(), payload.clone(), stop.clone(), args.topic.clone());
        let traceparent = args.traceparent;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let (mut ok, mut errors, mut i) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{w}-{i}");
                i += 1;
                let started = Instant::now();
                let mut record = FutureRecord::to(&topic).key(&key).payload(payload.as_slice());
                if traceparent {
                    let value = eventlog::kafka::traceparent();
                    record = record.headers(OwnedHeaders::new().insert(Header {
                        key: "traceparent",
                        value: Some(value.as_str()),
                    }));
                }
                let sent = producer.send(record, Duration::from_secs(5)).await;
                if started < warm {
                    continue;
                }
                match sent {
                    Ok(_) => {
                        ok += 1;
                        let _ = hist.record(started.elapsed().as_micros() as u64);
                    }
                    Err(_) => errors += 1,
                }
            }
            (ok, errors, hist)
        }));
    }
    tokio::time::sleep_until((warm + args.duration).into()).await;
    stop.store(true, Ordering::Relaxed);
    let measured = args.duration.as_secs_f64();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let (mut records, mut errors) = (0, 0);
    for t in tasks {
        let (ok, err, h) = t.await?;
        records += ok;
        errors += err;
        hist.add(&h).ok();
    }
    let report = ProduceReport {
        records,
        errors,
        seconds: measured,
        per_sec: records as f64 / measured,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "raw producer: {} records in {:.1} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            report.records, report.seconds, report.per_sec, report.p50_ms, report.p99_ms, report.errors
        );
    }
    Ok(())
}
