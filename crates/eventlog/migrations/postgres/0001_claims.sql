-- The Kafka log's idempotency claims (see `src/kafka/claims.rs`), shared by
-- every topic (keys are per topic). `IF NOT EXISTS` because the table
-- predates the `log_migrations` ledger: a database created by an earlier
-- binary already has it, and this version adopts it as it is.
CREATE TABLE IF NOT EXISTS log_idempotency (
    topic text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    status integer NOT NULL,
    response bytea NOT NULL,
    record_key text NOT NULL,
    payload bytea NOT NULL,
    appended boolean NOT NULL DEFAULT false,
    created_at bigint NOT NULL,
    PRIMARY KEY (topic, key)
);
