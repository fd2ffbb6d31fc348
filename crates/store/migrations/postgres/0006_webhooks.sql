-- 0006: outbound webhooks: subscribers, the outbox of order events the
-- store fills itself, and the delivery log (see the SQLite twin for the
-- reasons; the shapes are the same).

-- `events` is a comma-separated list of event types; `store_id` NULL means
-- every store. The secret signs deliveries, so it is kept as given.
CREATE TABLE webhook_subscribers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url        text    NOT NULL,
    events     text    NOT NULL,
    store_id   text COLLATE "C",
    secret     text    NOT NULL,
    enabled    boolean NOT NULL,
    created_at bigint  NOT NULL
);

-- Written by the triggers below in the transaction of the change itself,
-- deleted once fanned out: rows committed out of id order are never
-- skipped, as a cursor over a sequence could skip them.
CREATE TABLE webhook_outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text   NOT NULL,
    order_id      text COLLATE "C" NOT NULL,
    store_id      text COLLATE "C" NOT NULL,
    at            bigint NOT NULL,
    subscriber_id bigint
);

CREATE TABLE webhook_deliveries (
    subscriber_id bigint NOT NULL REFERENCES webhook_subscribers (id) ON DELETE CASCADE,
    event_id      bigint NOT NULL,
    kind          text   NOT NULL,
    order_id      text COLLATE "C" NOT NULL,
    store_id      text COLLATE "C" NOT NULL,
    occurred_at   bigint NOT NULL,
    state         text   NOT NULL,
    attempts      integer NOT NULL,
    next_at       bigint NOT NULL,
    last_status   integer,
    last_body     text,
    last_error    text,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL,
    PRIMARY KEY (subscriber_id, event_id)
);

CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (subscriber_id, order_id, event_id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';

CREATE FUNCTION webhook_order_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_subscribers WHERE enabled) THEN
        INSERT INTO webhook_outbox (kind, order_id, store_id, at)
        VALUES (NEW.status, NEW.order_id::text, NEW.store_id, NEW.at);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER webhook_order_events AFTER INSERT ON events
FOR EACH ROW
WHEN (NEW.kind = 'status' AND NEW.status IN ('confirmed', 'ready', 'picked_up', 'cancelled', 'expired'))
EXECUTE FUNCTION webhook_order_event();

CREATE FUNCTION webhook_payment_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_subscribers WHERE enabled) THEN
        INSERT INTO webhook_outbox (kind, order_id, store_id, at)
        SELECT 'paid', NEW.order_id::text, o.store_id, NEW.applied_at FROM orders o WHERE o.id = NEW.order_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER webhook_payment_events AFTER INSERT ON payment_events
FOR EACH ROW
WHEN (NEW.status = 'paid' AND NEW.outcome = 'applied')
EXECUTE FUNCTION webhook_payment_event();
