//! The store's database profile for `dbkit::sqlite`: its schema files and
//! cache sizes. The writer thread, reader pool and checkpointer themselves
//! (and the reasons for them: why a writer thread rather than a
//! `Mutex<Connection>`, why a background checkpointer) live in `dbkit`,
//! shared with the job queue and the event log.

use dbkit::sqlite::Profile;

/// The store's database: foreign keys on; 16 MiB of page cache so the order
/// indexes' hot right edges stay resident; 64 prepared statements per
/// connection (the hot paths use about twenty and `list_orders` has eight
/// filter shapes).
pub const PROFILE: Profile = Profile::new("store", "store", MIGRATIONS)
    .with_cache_kib(16_384)
    .with_statement_cache(64)
    .with_foreign_keys();

/// The schema, one embedded file per version, applied in order; the
/// database's `PRAGMA user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_operations.sql"),
    include_str!("../../migrations/0003_identity.sql"),
    include_str!("../../migrations/0004_floor.sql"),
    include_str!("../../migrations/0005_fleet_and_points.sql"),
    include_str!("../../migrations/0006_webhooks.sql"),
    include_str!("../../migrations/0007_trace.sql"),
];

/// Open (creating if needed) the database at `path` for writing, switch it
/// to WAL and bring the schema up to date; for tests that inspect the file
/// directly.
#[cfg(test)]
pub(crate) fn open_writer(
    path: &std::path::Path,
    synchronous: super::Synchronous,
) -> Result<rusqlite::Connection, crate::error::Error> {
    Ok(dbkit::sqlite::open_writer(path, &PROFILE, synchronous)?)
}
