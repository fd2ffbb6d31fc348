-- 0001: the initial schema of the embedded (SQLite) store.
--
-- Times are epoch milliseconds and money is integer minor units, both
-- INTEGER. Order ids are canonical lowercase UUIDv7 text, which sorts by
-- time, so "newest first" is simply "id descending".
--
-- Tables keyed by a natural key are WITHOUT ROWID: the row lives in the
-- primary-key B-tree itself, so an insert touches one tree instead of two
-- (rowid table + unique index). That matters most for `orders` and
-- `order_lines`, which the processors bulk insert on the hot path.

CREATE TABLE stores (
    id        TEXT    NOT NULL PRIMARY KEY,
    name      TEXT    NOT NULL,
    time_zone TEXT    NOT NULL,
    currency  TEXT    NOT NULL
) WITHOUT ROWID;

CREATE TABLE categories (
    store_id TEXT    NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    code     TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (store_id, code)
) WITHOUT ROWID;

-- Sizes and modifiers are JSON: the menu is always read whole (and cached),
-- never queried by size or modifier, so normalising them would only add
-- joins. `ord` keeps the items in the order they were upserted.
CREATE TABLE items (
    store_id  TEXT    NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    sku       TEXT    NOT NULL,
    ord       INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    category  TEXT    NOT NULL,
    station   TEXT    NOT NULL,
    available INTEGER NOT NULL,
    sizes     TEXT    NOT NULL,
    modifiers TEXT    NOT NULL,
    PRIMARY KEY (store_id, sku)
) WITHOUT ROWID;

-- No foreign key to `stores`: an order is a fact already durable in the
-- event log, and refusing it because a store row is missing would turn an
-- accepted order into a dead letter (and cost a lookup per insert).
CREATE TABLE orders (
    id             TEXT    NOT NULL PRIMARY KEY,
    store_id       TEXT    NOT NULL,
    customer       TEXT,
    status         TEXT    NOT NULL,
    reject_reason  TEXT,
    payment_status TEXT    NOT NULL,
    currency       TEXT    NOT NULL,
    total          INTEGER NOT NULL,
    placed_at      INTEGER NOT NULL,
    confirmed_at   INTEGER,
    rejected_at    INTEGER,
    started_at     INTEGER,
    ready_at       INTEGER,
    picked_up_at   INTEGER,
    cancelled_at   INTEGER,
    expired_at     INTEGER
) WITHOUT ROWID;

CREATE INDEX orders_by_store ON orders (store_id, id);
CREATE INDEX orders_by_status ON orders (status, id);

-- One row per line; `ticket` is the line's ticket status (NULL until the
-- order is confirmed, and for ever on a rejected order).
CREATE TABLE order_lines (
    order_id   TEXT    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line       INTEGER NOT NULL,
    sku        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    station    TEXT    NOT NULL,
    size       TEXT    NOT NULL,
    modifiers  TEXT    NOT NULL,
    qty        INTEGER NOT NULL,
    unit_price INTEGER NOT NULL,
    line_total INTEGER NOT NULL,
    ticket     TEXT,
    PRIMARY KEY (order_id, line)
) WITHOUT ROWID;

-- Live events (the SSE stream). AUTOINCREMENT so an id is never reused even
-- after retention deletes the newest rows: ids double as `Last-Event-ID`.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT    NOT NULL,
    store_id TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    status   TEXT    NOT NULL,
    line     INTEGER,
    station  TEXT,
    ticket   TEXT,
    at       INTEGER NOT NULL
);

CREATE INDEX events_by_order ON events (order_id, id);
CREATE INDEX events_by_store ON events (store_id, id);

-- Where each consumer group resumes each log partition; written in the same
-- transaction as the batch it covers. `partition` and `offset` are SQL
-- keywords, hence the `log_` prefix.
CREATE TABLE consumer_positions (
    grp           TEXT    NOT NULL,
    log_partition INTEGER NOT NULL,
    next_offset   INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (grp, log_partition)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY,
    grp           TEXT    NOT NULL,
    log_partition INTEGER NOT NULL,
    log_offset    INTEGER NOT NULL,
    key           TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    error         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    at            INTEGER NOT NULL
);
