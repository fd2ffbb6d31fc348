-- 0002: payments, loyalty accounts and the background machinery's records
-- (sync cursors, sync runs, performance snapshots).
--
-- Applied once, by `PRAGMA user_version`, on top of 0001; `IF NOT EXISTS`
-- only so that a database someone patched by hand still upgrades. Orders
-- already have `payment_status` (0001), which payments now move.

-- Each payment callback, by the provider's event id: a redelivered event
-- conflicts here and changes nothing. `outcome` says what it did to its
-- order: `applied`, `amount_mismatch` (a `paid` event whose amount or
-- currency differs from the order's) or `unknown_order`; the last two are
-- kept too, so their redeliveries are duplicates as well.
CREATE TABLE IF NOT EXISTS payment_events (
    event_id    TEXT    NOT NULL PRIMARY KEY,
    order_id    TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    amount      INTEGER NOT NULL,
    currency    TEXT    NOT NULL,
    provider_ts INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- The nightly cleanup deletes an order's payments with it.
CREATE INDEX IF NOT EXISTS payment_events_by_order ON payment_events (order_id);

-- Events for unknown orders have no order to be deleted with; the cleanup
-- finds the old ones here (few, so the partial index is small).
CREATE INDEX IF NOT EXISTS payment_events_unknown ON payment_events (received_at)
    WHERE outcome = 'unknown_order';

-- Mirrored from the external loyalty service; `version` is its change
-- stamp, and an upsert only overwrites an older one.
CREATE TABLE IF NOT EXISTS loyalty_accounts (
    id        TEXT    NOT NULL PRIMARY KEY,
    email     TEXT,
    name      TEXT    NOT NULL,
    tier      TEXT    NOT NULL,
    points    INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    synced_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Accounts are looked up by e-mail case-insensitively (seed 002): an index
-- on the expression the lookup uses, `lower(email) = lower(?)`.
CREATE INDEX IF NOT EXISTS loyalty_accounts_by_email ON loyalty_accounts (lower(email));

-- Where each upstream sync (`menu`: the catalog ETag, `accounts`: the
-- change-feed cursor) resumes.
CREATE TABLE IF NOT EXISTS sync_state (
    kind       TEXT    NOT NULL PRIMARY KEY,
    cursor     TEXT,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sync_runs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    fetched     INTEGER NOT NULL,
    changed     INTEGER NOT NULL,
    db_queries  INTEGER NOT NULL,
    errors      INTEGER NOT NULL,
    outcome     TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS sync_runs_by_start ON sync_runs (started_at);
CREATE INDEX IF NOT EXISTS sync_runs_by_kind ON sync_runs (kind, started_at);

-- `metrics` is a JSON object of named figures, read back whole.
CREATE TABLE IF NOT EXISTS perf_snapshots (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    instance TEXT    NOT NULL,
    metrics  TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS perf_snapshots_by_at ON perf_snapshots (at);
