//! The embedded queue's database profile for `dbkit::sqlite`: its schema
//! files and cache sizes. The writer thread, reader pool and background
//! checkpointer (every write on one thread in arrival order; operator reads
//! beside it under WAL; `PASSIVE` checkpoints off the commit path) live in
//! `dbkit`, shared with the store and the event log, with their reasons.

use dbkit::sqlite::Profile;

/// The queue's file: 8 MiB of page cache (the default), 48 prepared
/// statements per connection (`list` alone has a few shapes), no foreign
/// keys (jobs and schedule slots refer to nothing).
pub(super) const PROFILE: Profile = Profile::new("job queue", "queue", MIGRATIONS).with_statement_cache(48);

/// One embedded file per schema version; `PRAGMA user_version` counts how
/// many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_trace.sql"),
];
