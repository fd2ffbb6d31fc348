-- The embedded event log's schema as it was before versioning, every
-- statement `IF NOT EXISTS`: a log file created by an earlier binary
-- (`user_version` 0, tables present) is adopted as it is and becomes
-- version 1; a new file gets the same tables. Later versions are new files.
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    partition        INTEGER NOT NULL,
    offset           INTEGER NOT NULL,
    key              TEXT NOT NULL,
    payload          BLOB NOT NULL,
    appended_at      INTEGER NOT NULL,
    -- The idempotency claim travels on its record: one row, one write, so
    -- the claim is durable exactly when the record is (see `Claims`).
    idem_key         TEXT,
    idem_fingerprint TEXT,
    idem_status      INTEGER,
    idem_response    BLOB,
    PRIMARY KEY (partition, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_key ON records (key);
CREATE TABLE IF NOT EXISTS commits (
    grp         TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, partition)
) WITHOUT ROWID;
