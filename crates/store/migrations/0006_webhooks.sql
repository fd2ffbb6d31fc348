-- 0006: outbound webhooks: subscribers, the outbox of order events the
-- store fills itself, and the delivery log.
--
-- Applied once, by `PRAGMA user_version`, on top of the previous step.

-- `events` is a comma-separated list of event types; `store_id` NULL means
-- every store. The secret signs deliveries, so it is kept as given (it is
-- shown to the admin once, at creation).
CREATE TABLE webhook_subscribers (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,
    store_id   TEXT,
    secret     TEXT    NOT NULL,
    enabled    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Order events waiting to be fanned out to subscribers, written by the
-- triggers below in the transaction of the change itself (a transactional
-- outbox), deleted once fanned out. AUTOINCREMENT: the id is the event id
-- subscribers see, never reused. `subscriber_id` set = a test ping for it.
CREATE TABLE webhook_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    store_id      TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    subscriber_id INTEGER
);

-- One event for one subscriber. `state`: pending, delivered or dead.
CREATE TABLE webhook_deliveries (
    subscriber_id INTEGER NOT NULL REFERENCES webhook_subscribers (id) ON DELETE CASCADE,
    event_id      INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    store_id      TEXT    NOT NULL,
    occurred_at   INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    next_at       INTEGER NOT NULL,
    last_status   INTEGER,
    last_body     TEXT,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (subscriber_id, event_id)
) WITHOUT ROWID;

-- What is pending, per subscriber and order (the head of each order's line).
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (subscriber_id, order_id, event_id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';

-- The order changes subscribers can ask for. Nothing is written while no
-- subscriber is enabled, so a deployment without webhooks pays one indexed
-- lookup per status event.
CREATE TRIGGER webhook_order_events AFTER INSERT ON events
WHEN NEW.kind = 'status'
 AND NEW.status IN ('confirmed', 'ready', 'picked_up', 'cancelled', 'expired')
 AND EXISTS (SELECT 1 FROM webhook_subscribers WHERE enabled = 1)
BEGIN
    INSERT INTO webhook_outbox (kind, order_id, store_id, at)
    VALUES (NEW.status, NEW.order_id, NEW.store_id, NEW.at);
END;

-- A payment that made its order paid (a redelivered event conflicts on
-- `payment_events`' key and never gets here).
CREATE TRIGGER webhook_payment_events AFTER INSERT ON payment_events
WHEN NEW.status = 'paid' AND NEW.outcome = 'applied'
 AND EXISTS (SELECT 1 FROM webhook_subscribers WHERE enabled = 1)
BEGIN
    INSERT INTO webhook_outbox (kind, order_id, store_id, at)
    SELECT 'paid', NEW.order_id, o.store_id, NEW.applied_at FROM orders o WHERE o.id = NEW.order_id;
END;
