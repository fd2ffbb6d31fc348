//! The third-party upstreams rushhour syncs from: the catalog API (menu
//! master data) and the loyalty service (≈150k member accounts).
//!
//! - [`UpstreamClient`] implements the domain's `CatalogSource` and
//!   `LoyaltySource` over HTTP: OAuth2 client credentials with a cached
//!   token, paged catalog fetches with `If-None-Match`, the accounts change
//!   feed, retries with backoff and jitter, and a circuit breaker.
//! - [`sim`] simulates both upstreams (deterministic data, injectable
//!   faults), so tests, demos and benchmarks never reach the internet.
//! - [`wire`] is the JSON both sides speak.
//!
//! The sync procedures themselves (`domain::sync::sync_menu`,
//! `sync_accounts`) live in the domain: they only need the ports.

mod breaker;
pub mod client;
pub mod sim;
pub mod webhooks;
pub mod wire;

pub use client::{ConfigError, UpstreamClient, UpstreamOptions};
pub use sim::{SimOptions, SimStats, Simulator};
pub use webhooks::HttpWebhookSender;
