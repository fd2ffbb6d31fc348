-- 0005: what issue 12 needs from the store. The running instances and the
-- operator commands broadcast to them (`domain::fleet`): `rushhour sync`,
-- `warmup` and `cache clear` reach every serving process through these two
-- tables, which every process of a deployment already shares.
--
-- Applied once, by `PRAGMA user_version`, on top of 0004.

-- One row per running process, refreshed by its heartbeat; `acked` is the
-- newest broadcast it has carried out.
CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    addr       TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL,
    acked      INTEGER NOT NULL
);

-- Operator commands, in order; kept a day.
CREATE TABLE broadcasts (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    commands  TEXT NOT NULL,
    issued_at INTEGER NOT NULL
);

-- Loyalty points a picked-up order earned (`domain::loyalty`): one row per
-- order, so an award replayed by the outbox relay adds nothing; the
-- account's `points` grow in the same transaction as the row is inserted.
-- `reported_at`: when the loyalty service acknowledged it (NULL until then).
CREATE TABLE loyalty_awards (
    order_id    TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    points      INTEGER NOT NULL,
    awarded_at  INTEGER NOT NULL,
    reported_at INTEGER
);
CREATE INDEX loyalty_awards_by_account ON loyalty_awards (account_id, awarded_at);

-- The pickup outbox's relay (`domain::outbox`) keeps a cursor per store in
-- `sync_state` (`outbox.<store>`) and starts a store without one from its
-- first event. A store that already had events when this ran had its
-- receipts enqueued by the handler of the time: its relay starts after
-- them (one `events_by_store` lookup per store).
INSERT INTO sync_state (kind, cursor, updated_at)
SELECT 'outbox.' || s.id, CAST(m.last AS TEXT), 0
FROM stores s
JOIN (SELECT store_id, MAX(id) AS last FROM events GROUP BY store_id) m ON m.store_id = s.id
WHERE true
ON CONFLICT (kind) DO NOTHING;
