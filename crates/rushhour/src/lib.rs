//! The `rushhour` binary's library half: configuration, wiring of ports to
//! adapters, the CLI commands' bodies and the benchmark tools. `main.rs`
//! only parses the command line and calls in here, so integration tests can
//! start the very same application in-process (`spawn_app`).

pub mod bench;
pub mod config;
pub mod drain;
pub mod jobs_cli;
pub mod ops_cli;
#[cfg(feature = "kafka")]
pub mod produce;
pub mod replay;
pub mod tasks;
pub mod wiring;
