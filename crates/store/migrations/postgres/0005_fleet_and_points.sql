-- 0005: what issue 12 needs from the store. The running instances and the
-- operator commands broadcast to them (`domain::fleet`): `rushhour sync`,
-- `warmup` and `cache clear` reach every serving process through these two
-- tables, which every process of a deployment already shares.

-- One row per running process, refreshed by its heartbeat; `acked` is the
-- newest broadcast it has carried out.
CREATE TABLE instances (
    id         text COLLATE "C" PRIMARY KEY,
    role       text NOT NULL,
    addr       text NOT NULL,
    started_at bigint NOT NULL,
    seen_at    bigint NOT NULL,
    acked      bigint NOT NULL
);

-- Operator commands, in order; kept a day.
CREATE TABLE broadcasts (
    seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    commands  text NOT NULL,
    issued_at bigint NOT NULL
);

-- Loyalty points a picked-up order earned (`domain::loyalty`): one row per
-- order, so an award replayed by the outbox relay adds nothing; the
-- account's `points` grow in the same transaction as the row is inserted.
-- `reported_at`: when the loyalty service acknowledged it (NULL until then).
CREATE TABLE loyalty_awards (
    order_id    uuid PRIMARY KEY,
    account_id  text COLLATE "C" NOT NULL,
    points      bigint NOT NULL,
    awarded_at  bigint NOT NULL,
    reported_at bigint
);
CREATE INDEX loyalty_awards_by_account ON loyalty_awards (account_id, awarded_at);

-- The pickup outbox's relay (`domain::outbox`) keeps a cursor per store in
-- `sync_state` (`outbox.<store>`) and starts a store without one from its
-- first event. A store that already had events when this ran had its
-- receipts enqueued by the handler of the time: its relay starts after
-- them (one `events_by_store` lookup per store).
INSERT INTO sync_state (kind, cursor, updated_at)
SELECT 'outbox.' || s.id, last::text, 0
FROM stores s
CROSS JOIN LATERAL (SELECT max(e.id) AS last FROM events e WHERE e.store_id = s.id) m
WHERE m.last IS NOT NULL
ON CONFLICT (kind) DO NOTHING;
