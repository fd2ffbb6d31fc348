//! Fuzz target `log_record`: a record read back from the event log, as the
//! SQLite log and the Kafka log each hand it over, and everything that
//! reads one does with it. A record is written by this server only, but a
//! log outlives binaries (older and newer versions, a foreign producer on a
//! shared Kafka topic, a restored backup), so reading one must never crash
//! a processor, which would stall its partition for good.
//!
//! The two formats differ only around the payload: the SQLite log stores
//! the key and the `traceparent` as TEXT (a row that is not UTF-8 fails in
//! the read, before any of this), while Kafka hands over bytes: the key
//! decoded lossily and the `traceparent` header dropped when it is not
//! UTF-8 (crates/eventlog/src/kafka/reader.rs, `trace_header`). Both then
//! go through the same steps, which this target runs:
//!
//! - the processor (crates/worker/src/processor.rs, `apply`): the payload
//!   decoded (`LogEvent::decode`); an order decided against its store's
//!   menu (`order::decide`); an undecodable one dead-lettered with the
//!   decoder's message; the batch span linked to the record's trace
//!   (`telemetry::traces::parse`);
//! - read-your-writes (`Rushhour::order`): an order not yet applied is
//!   shown from its record (`placed_view`) and rendered by
//!   `GET /v1/orders/{id}` (`OrderView`, times as RFC 3339);
//! - the partition a key routes to (`ids::partition_for`), as a replayed
//!   dead letter is appended again under its key.
//!
//! Input: the key on the first line, the `traceparent` on the second (an
//! empty line: none), the payload after the second `\n`.

#![no_main]

use api::fuzzing::OrderView;
use domain::events::LogEvent;
use domain::ids::partition_for;
use domain::ports::{Decision, LogRecord};
use libfuzzer_sys::fuzz_target;

rushhour_fuzz::bounded_allocations!();

const PARTITIONS: u32 = 8;

fuzz_target!(|data: &[u8]| {
    let (head, payload) = rushhour_fuzz::lines_then_body(data, 2);
    let key = head.first().copied().unwrap_or_default();
    let trace = head.get(1).copied().filter(|t| !t.is_empty());

    // The SQLite log: TEXT columns, read as `String`.
    if let Ok(key) = std::str::from_utf8(key) {
        let trace = match trace.map(std::str::from_utf8) {
            None => Some(None),
            Some(Ok(t)) => Some(Some(t.to_owned())),
            Some(Err(_)) => None,
        };
        if let Some(trace) = trace {
            read(&record(key.to_owned(), payload, trace));
        }
    }
    // Kafka: bytes, as the reader converts them.
    let kafka_key = String::from_utf8_lossy(key).into_owned();
    let kafka_trace = trace.and_then(|t| std::str::from_utf8(t).ok()).map(str::to_owned);
    read(&record(kafka_key, payload, kafka_trace));
});

fn record(key: String, payload: &[u8], trace: Option<String>) -> LogRecord {
    LogRecord {
        partition: partition_for(key.as_bytes(), PARTITIONS),
        offset: 0,
        key,
        payload: payload.to_vec(),
        appended_at: 1_767_341_700_000,
        trace,
    }
}

fn read(rec: &LogRecord) {
    assert!(rec.partition < PARTITIONS);
    if let Some(t) = rec.trace.as_deref() {
        let _ = telemetry::traces::parse(t);
    }
    match LogEvent::decode(&rec.payload) {
        Ok(LogEvent::OrderPlacedV1(placed)) => {
            let menu = rushhour_fuzz::menu_of(&placed.store);
            match domain::order::decide(&placed, menu) {
                Decision::Confirm => assert!(menu.is_some(), "confirmed without a menu"),
                Decision::Reject(why) => assert!(!why.is_empty()),
            }
            // Read-your-writes: the view from the record, rendered.
            let view = OrderView::from(domain::app::placed_view(&placed));
            serde_json::to_vec(&view).expect("an order view serializes");
        }
        Ok(LogEvent::PaymentV1(payment)) => {
            let status = payment.status.as_str();
            assert_eq!(domain::events::PaymentStatus::parse(status), Some(payment.status));
        }
        Err(e) => {
            // The dead letter's reason.
            let _ = format!("undecodable record: {e}");
        }
    }
}
