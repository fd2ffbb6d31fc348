-- 0004: what the screens of issue 11 need from the store: pickup codes and
-- first names, cancel reasons, when each ticket was started and done, and
-- the indexes the boards, the day's figures and the estimates read through.
-- Every new column is nullable: orders applied before it simply have none.

ALTER TABLE orders ADD COLUMN name text;
ALTER TABLE orders ADD COLUMN pickup_code text COLLATE "C";
ALTER TABLE orders ADD COLUMN cancel_reason text;

-- When the line's ticket was last started and done (epoch ms); an undo
-- clears the one it takes back.
ALTER TABLE order_lines ADD COLUMN started_at bigint;
ALTER TABLE order_lines ADD COLUMN done_at bigint;

-- The last pickup number drawn per store and local day (`YYYY-MM-DD` in the
-- store's time zone); bumped in `apply_batch`'s transaction, so a replay
-- draws none, and row-locked there, so two partitions never draw the same.
CREATE TABLE pickup_counters (
    store_id text COLLATE "C" NOT NULL,
    day      text COLLATE "C" NOT NULL,
    last     integer NOT NULL,
    PRIMARY KEY (store_id, day)
);

CREATE INDEX orders_by_store_code ON orders (store_id, pickup_code);
CREATE INDEX orders_by_store_placed ON orders (store_id, placed_at);
CREATE INDEX order_lines_by_done ON order_lines (done_at) WHERE done_at IS NOT NULL;

-- The popular items a scheduled job computes per store (`popular.refresh`).
CREATE TABLE popular_items (
    store_id    text COLLATE "C" NOT NULL,
    rank        integer NOT NULL,
    sku         text NOT NULL,
    name        text NOT NULL,
    count       bigint NOT NULL,
    computed_at bigint NOT NULL,
    PRIMARY KEY (store_id, rank)
);
