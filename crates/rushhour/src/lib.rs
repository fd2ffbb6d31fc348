//! The `rushhour` binary's library half: configuration, wiring of ports to
//! adapters, the CLI commands' bodies (benchmarks live in the `bench`
//! crate; `rushhour bench` delegates there). `main.rs`
//! only parses the command line and calls in here, so integration tests can
//! start the very same application in-process (`spawn_app`).

pub mod config;
pub mod db_cli;
pub mod instance;
pub mod jobs_cli;
pub mod monitor;
pub mod ops_cli;
pub mod profile_cli;
pub mod replay;
pub mod users_cli;
pub mod webhooks_cli;
pub mod wiring;
