-- 0004: what the screens of issue 11 need from the store: pickup codes and
-- first names, cancel reasons, when each ticket was started and done, and
-- the indexes the boards, the day's figures and the estimates read through.
--
-- Applied once, by `PRAGMA user_version`, on top of 0003. Every new column
-- is nullable: orders applied before it simply have none.

ALTER TABLE orders ADD COLUMN name TEXT;
ALTER TABLE orders ADD COLUMN pickup_code TEXT;
ALTER TABLE orders ADD COLUMN cancel_reason TEXT;

-- When the line's ticket was last started and done (epoch ms); an undo
-- clears the one it takes back. What prep-time estimates and a board's
-- "recently done" list are computed from.
ALTER TABLE order_lines ADD COLUMN started_at INTEGER;
ALTER TABLE order_lines ADD COLUMN done_at INTEGER;

-- The last pickup number drawn per store and local day (`YYYY-MM-DD` in the
-- store's time zone); bumped in `apply_batch`'s transaction for each
-- confirmed order it inserts, so a replay draws none.
CREATE TABLE pickup_counters (
    store_id TEXT    NOT NULL,
    day      TEXT    NOT NULL,
    last     INTEGER NOT NULL,
    PRIMARY KEY (store_id, day)
) WITHOUT ROWID;

-- A manager's search by code, and a store's day (figures, popular items).
CREATE INDEX orders_by_store_code ON orders (store_id, pickup_code);
CREATE INDEX orders_by_store_placed ON orders (store_id, placed_at);
-- Tickets done recently (a board's recall list, prep-time samples): few
-- rows per minute, so a partial index on the done ones stays small.
CREATE INDEX order_lines_by_done ON order_lines (done_at) WHERE done_at IS NOT NULL;

-- The popular items a scheduled job computes per store (`popular.refresh`),
-- read by the menu page: the whole list replaced at once per store.
CREATE TABLE popular_items (
    store_id    TEXT    NOT NULL,
    rank        INTEGER NOT NULL,
    sku         TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    computed_at INTEGER NOT NULL,
    PRIMARY KEY (store_id, rank)
) WITHOUT ROWID;
