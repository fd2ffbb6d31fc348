-- 0001: the embedded job queue (its own file, `jobs.db`).
--
-- Times are epoch milliseconds. `payload` is JSON text. Ids come from
-- AUTOINCREMENT so they are never reused after a prune or a discard: a
-- worker or an operator holding an old id can never reach another job.

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    payload      TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    unique_key   TEXT,
    last_error   TEXT,
    worker       TEXT,
    lease_until  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);

-- A unique key is held only while its job is live.
CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
    WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL;

-- The claim order, over queued jobs only: a claim reads the first rows.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';

-- Expired leases, looked up on every claim.
CREATE INDEX jobs_leases ON jobs (queue, lease_until) WHERE state = 'running';

-- Pruning finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'done';

CREATE TABLE schedule_fires (
    schedule TEXT NOT NULL,
    slot     INTEGER NOT NULL,
    fired_at INTEGER NOT NULL,
    PRIMARY KEY (schedule, slot)
) WITHOUT ROWID;
