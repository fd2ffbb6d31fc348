-- 0001: the initial schema of the PostgreSQL store (scale mode).
--
-- It mirrors the SQLite schema (`../0001_init.sql`) so both backends pass
-- the same contract suite: times are epoch milliseconds and money integer
-- minor units, both `bigint`, rather than `timestamptz`/`numeric`, because
-- the domain holds them as `i64` and a conversion at every read would only
-- add places to get a time zone or a rounding wrong.
--
-- Text keys (store ids, category codes, skus) are `COLLATE "C"`: listings
-- sort them byte-wise exactly as SQLite does, whatever the database's
-- default collation, and "C" comparisons are the cheapest there are.
--
-- Order ids are `uuid` (16 bytes, compared byte-wise, so UUIDv7 ids sort by
-- time and "newest first" is simply "id descending").

CREATE TABLE stores (
    id        text COLLATE "C" NOT NULL PRIMARY KEY,
    name      text NOT NULL,
    time_zone text NOT NULL,
    currency  text NOT NULL
);

CREATE TABLE categories (
    store_id text COLLATE "C" NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    code     text COLLATE "C" NOT NULL,
    name     text NOT NULL,
    position integer NOT NULL,
    PRIMARY KEY (store_id, code)
);

-- Sizes and modifiers are JSON: the menu is always read whole (and cached),
-- never queried by size or modifier, so normalising them would only add
-- joins. `ord` keeps the items in the order they were upserted.
CREATE TABLE items (
    store_id  text COLLATE "C" NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    sku       text COLLATE "C" NOT NULL,
    ord       integer NOT NULL,
    name      text NOT NULL,
    category  text NOT NULL,
    station   text NOT NULL,
    available boolean NOT NULL,
    sizes     jsonb NOT NULL,
    modifiers jsonb NOT NULL,
    PRIMARY KEY (store_id, sku)
);

-- No foreign key to `stores`: an order is a fact already durable in the
-- event log, and refusing it because a store row is missing would turn an
-- accepted order into a dead letter (and cost a lookup per insert).
CREATE TABLE orders (
    id             uuid NOT NULL PRIMARY KEY,
    store_id       text COLLATE "C" NOT NULL,
    customer       text,
    status         text NOT NULL,
    reject_reason  text,
    payment_status text NOT NULL,
    currency       text NOT NULL,
    total          bigint NOT NULL,
    placed_at      bigint NOT NULL,
    confirmed_at   bigint,
    rejected_at    bigint,
    started_at     bigint,
    ready_at       bigint,
    picked_up_at   bigint,
    cancelled_at   bigint,
    expired_at     bigint
);

CREATE INDEX orders_by_store ON orders (store_id, id DESC);
CREATE INDEX orders_by_status ON orders (status, id DESC);

-- One row per line; `ticket` is the line's ticket status (NULL until the
-- order is confirmed, and for ever on a rejected order).
CREATE TABLE order_lines (
    order_id   uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line       integer NOT NULL,
    sku        text NOT NULL,
    name       text NOT NULL,
    station    text NOT NULL,
    size       text NOT NULL,
    modifiers  jsonb NOT NULL,
    qty        integer NOT NULL,
    unit_price bigint NOT NULL,
    line_total bigint NOT NULL,
    ticket     text,
    PRIMARY KEY (order_id, line)
);

-- Live events (the SSE stream). An identity column is never reused, even
-- after retention deletes the newest rows: ids double as `Last-Event-ID`.
-- That ids also follow commit order per store is the writers' job (see
-- `insert_events` in `src/postgres.rs`), not the sequence's.
CREATE TABLE events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id uuid NOT NULL,
    store_id text COLLATE "C" NOT NULL,
    kind     text NOT NULL,
    status   text NOT NULL,
    line     integer,
    station  text,
    ticket   text,
    at       bigint NOT NULL
);

CREATE INDEX events_by_order ON events (order_id, id);
CREATE INDEX events_by_store ON events (store_id, id);

-- Where each consumer group resumes each log partition; written in the same
-- transaction as the batch it covers. `bigint` because partitions are
-- `u32` and offsets `u64` (capped at `i64::MAX`).
CREATE TABLE consumer_positions (
    grp           text NOT NULL,
    log_partition bigint NOT NULL,
    next_offset   bigint NOT NULL,
    updated_at    bigint NOT NULL,
    PRIMARY KEY (grp, log_partition)
);

CREATE TABLE dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grp           text NOT NULL,
    log_partition bigint NOT NULL,
    log_offset    bigint NOT NULL,
    key           text NOT NULL,
    payload       bytea NOT NULL,
    error         text NOT NULL,
    attempts      bigint NOT NULL,
    at            bigint NOT NULL
);
