//! The background side of rushhour: order processors that drain the event
//! log into the store, and the runtime pieces they need (a tokio clock).
//! Job queues and the scheduler join this crate with background jobs.
//!
//! Like `api`, this crate is a driver: it talks to ports through
//! `domain::Rushhour` and never names an adapter.

pub mod clock;
pub mod processor;

pub use clock::TokioClock;
pub use processor::{PartitionWorker, ProcessorConfig, spawn_processors};
