-- 0001: the scale-mode job queue, shared by every process of a deployment.
--
-- It mirrors the SQLite schema (`../sqlite/0001_init.sql`): times are epoch
-- milliseconds (`bigint`) as the domain holds them. `payload` is jsonb.
-- Ids come from a sequence the enqueue statement draws from itself, so it
-- can tell which input row became which job (see `postgres.rs`).

CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    queue        text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    state        text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    payload      jsonb NOT NULL,
    priority     smallint NOT NULL,
    run_at       bigint NOT NULL,
    attempts     integer NOT NULL,
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    unique_key   text COLLATE "C",
    last_error   text,
    worker       text,
    lease_until  bigint,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL,
    finished_at  bigint
);

-- A unique key is held only while its job is live; `enqueue` names this
-- predicate in `ON CONFLICT`. Jobs without a key stay out of the index, so
-- their state changes do not touch it.
CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
    WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL;

-- The claim order, over queued jobs only.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';

-- Expired leases, looked up on every claim.
CREATE INDEX jobs_leases ON jobs (queue, lease_until) WHERE state = 'running';

-- Pruning finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'done';

-- Rows churn (each job is updated at least twice, then pruned), leaving
-- dead tuples behind in the table and its partial indexes: vacuum and
-- analyze this table sooner than the default 20% of changed rows.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

CREATE TABLE schedule_fires (
    schedule text COLLATE "C" NOT NULL,
    slot     bigint NOT NULL,
    fired_at bigint NOT NULL,
    PRIMARY KEY (schedule, slot)
);
