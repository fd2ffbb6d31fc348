-- 0001: login sessions and failed-login counters (their own file,
-- `sessions.db`).
--
-- Times are epoch milliseconds. A session is stored under the hex SHA-256
-- of its token, never the token. Rows are columns rather than one JSON
-- blob so the two lookups that are not by key (a user's sessions, expired
-- sessions) are plain indexed queries.

CREATE TABLE sessions (
    token_hash      TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    username        TEXT NOT NULL,
    role            TEXT NOT NULL,
    csrf            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    absolute_expiry INTEGER NOT NULL
) WITHOUT ROWID;

-- Ending every session of a user (disabled, password changed).
CREATE INDEX sessions_user ON sessions (user_id);

-- The nightly purge.
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- One counter per username or client address; it forgets itself at
-- `expires_at` (the window after its last failure).
CREATE TABLE login_attempts (
    key        TEXT PRIMARY KEY,
    count      INTEGER NOT NULL,
    last_at    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX login_attempts_expiry ON login_attempts (expires_at);
