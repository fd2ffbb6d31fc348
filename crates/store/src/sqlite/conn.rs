//! The store's database profile for `dbkit::sqlite`: its schema files and
//! cache sizes. The writer thread, reader pool and checkpointer themselves
//! (and the reasons for them: why a writer thread rather than a
//! `Mutex<Connection>`, why a background checkpointer) live in `dbkit`,
//! shared with the job queue and the event log.

use std::path::Path;

use dbkit::sqlite::Profile;
pub(crate) use dbkit::sqlite::{Readers, Writer};
use rusqlite::Connection;

use super::Synchronous;
use crate::error::Error;

/// The store's database: foreign keys on; 16 MiB of page cache so the order
/// indexes' hot right edges stay resident; 64 prepared statements per
/// connection (the hot paths use about twenty and `list_orders` has eight
/// filter shapes).
pub(crate) const PROFILE: Profile = Profile::new("store", "store", MIGRATIONS)
    .with_cache_kib(16_384)
    .with_statement_cache(64)
    .with_foreign_keys();

/// The schema, one embedded file per version, applied in order; the
/// database's `PRAGMA user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_operations.sql"),
];

/// Open (creating if needed) the database at `path` for writing, switch it
/// to WAL and bring the schema up to date; for tools that write the file
/// directly (the bulk-insert baseline, tests).
pub(crate) fn open_writer(path: &Path, synchronous: Synchronous) -> Result<Connection, Error> {
    Ok(dbkit::sqlite::open_writer(path, &PROFILE, synchronous)?)
}
