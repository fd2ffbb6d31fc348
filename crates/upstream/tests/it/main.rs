//! Integration tests of the upstream client against the simulator, and of
//! the sync procedures (`domain::sync`) end to end: simulator → client →
//! a real store (SQLite, and PostgreSQL when `RUSHHOUR_TEST_POSTGRES_URL`
//! is set) and the in-process menu cache.

mod client;
mod support;
mod sync;
