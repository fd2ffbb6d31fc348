-- 0003: who may do what (issue 10): staff users, their personal API keys,
-- and the audit trail of staff actions. Mirrors the SQLite
-- `../0003_identity.sql`.
--
-- Applied once, recorded in `schema_migrations`, on top of 0002; `IF NOT
-- EXISTS` only so that a database someone patched by hand still upgrades.
-- Secrets are never stored in clear: a user has an Argon2id PHC string, a
-- key the hex SHA-256 of its whole token. Roles are stored by name
-- (`Role::as_str`) and checked when read, not by a CHECK constraint, so a
-- new role needs no migration.

-- Usernames arrive lower-cased (the use-case folds them), and the unique
-- index on `lower(username)` refuses a second "Alice" even from a caller
-- that forgot. The column is `COLLATE "C"`, so `lower()` folds ASCII only,
-- exactly as SQLite's does, and listings sort byte-wise as there. Lookups
-- use the same expression, so the index serves them.
CREATE TABLE IF NOT EXISTS users (
    id            uuid NOT NULL PRIMARY KEY,
    username      text COLLATE "C" NOT NULL,
    role          text NOT NULL,
    disabled      boolean NOT NULL,
    password_hash text NOT NULL,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS users_by_name ON users (lower(username));

-- A key is found by its visible prefix (unique), then checked against the
-- hash. A key belongs to a user when it has one (users are never deleted,
-- only disabled); `store` limits it to one store's routes.
CREATE TABLE IF NOT EXISTS api_keys (
    id           uuid NOT NULL PRIMARY KEY,
    prefix       text COLLATE "C" NOT NULL UNIQUE,
    hash         text NOT NULL,
    name         text NOT NULL,
    user_id      uuid REFERENCES users (id),
    role         text NOT NULL,
    store        text,
    created_at   bigint NOT NULL,
    last_used_at bigint,
    revoked_at   bigint
);

-- Append-only, read newest first by id; an identity never hands out an id
-- twice. Ids are drawn in insert order, not commit order: unlike live
-- events (`0001`), nothing resumes from an audit id, and a listing racing
-- an append may at worst show that entry on the next look.
-- `detail` is JSON kept as text (not `jsonb`), returned exactly as written.
CREATE TABLE IF NOT EXISTS audit_log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     bigint NOT NULL,
    actor  text COLLATE "C" NOT NULL,
    role   text,
    action text COLLATE "C" NOT NULL,
    target text NOT NULL,
    detail text NOT NULL,
    source text NOT NULL
);

-- The cleanup purges by time; the admin list filters by actor or action
-- and pages backwards by id.
CREATE INDEX IF NOT EXISTS audit_log_by_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_by_actor ON audit_log (actor, id);
CREATE INDEX IF NOT EXISTS audit_log_by_action ON audit_log (action, id);
