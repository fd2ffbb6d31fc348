-- 0003: who may do what (issue 10): staff users, their personal API keys,
-- and the audit trail of staff actions.
--
-- Applied once, by `PRAGMA user_version`, on top of 0002; `IF NOT EXISTS`
-- only so that a database someone patched by hand still upgrades. Secrets
-- are never stored in clear: a user has an Argon2id PHC string, a key the
-- hex SHA-256 of its whole token. Roles are stored by name
-- (`Role::as_str`) and checked when read, not by a CHECK constraint, so a
-- new role needs no migration.

-- Usernames arrive lower-cased (the use-case folds them), and the unique
-- index on `lower(username)` refuses a second "Alice" even from a caller
-- that forgot: uniqueness ignores ASCII case whatever is passed in. Lookups
-- use the same expression, so the index serves them.
CREATE TABLE IF NOT EXISTS users (
    id            TEXT    NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    disabled      INTEGER NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE UNIQUE INDEX IF NOT EXISTS users_by_name ON users (lower(username));

-- A key is found by its visible prefix (unique), then checked against the
-- hash. A key belongs to a user when it has one (users are never deleted,
-- only disabled); `store` limits it to one store's routes.
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    prefix       TEXT    NOT NULL UNIQUE,
    hash         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    user_id      TEXT    REFERENCES users (id),
    role         TEXT    NOT NULL,
    store        TEXT,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) WITHOUT ROWID;

-- Append-only, read newest first by id. `AUTOINCREMENT` so an id is never
-- handed out twice, even after the nightly cleanup purged the newest rows:
-- a client paging with `before` must not meet a new entry under an old id.
-- `detail` is JSON kept as text, returned exactly as written.
CREATE TABLE IF NOT EXISTS audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    role   TEXT,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    detail TEXT    NOT NULL,
    source TEXT    NOT NULL
);

-- The cleanup purges by time; the admin list filters by actor or action
-- and pages by id (each index ends in the rowid, so it serves the order).
CREATE INDEX IF NOT EXISTS audit_log_by_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_by_actor ON audit_log (actor);
CREATE INDEX IF NOT EXISTS audit_log_by_action ON audit_log (action);
