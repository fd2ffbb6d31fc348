//! Router-level tests: the whole `api::router()` driven in-process over the
//! real embedded adapters, some of them behind fault switches.
//!
//! They pin what only the assembled router with a hand on its ports can
//! show: which layer answers a broken, hung or panicking backend, load
//! shedding and deadlines, bodies without a declared length, lagging live
//! subscribers, actions on orders not yet applied, readiness of a down
//! backend, metric labels, OpenAPI completeness, streams ending on
//! shutdown, payment webhooks (signatures, redelivery, floods), and the
//! menu's precompressed encodings. The black-box HTTP tests of the
//! ordinary paths live in the binary crate (`crates/rushhour/tests/it`);
//! what they cover is not repeated here.

mod admin;
mod admin_ops;
mod auth;
mod encodings;
mod faults;
mod floor;
mod harness;
mod limits;
mod money;
mod orders;
mod reads;
mod streams;
mod subscribers;
mod webhooks;
