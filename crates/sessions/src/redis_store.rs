//! `RedisSessions`: sessions and login attempts in Redis (scale mode),
//! shared by every API instance, with Redis key expiry doing the cleanup.
//!
//! Layout (the prefix is versioned, `rh:v1` by default, so a binary with
//! another encoding can run beside this one during a rollout):
//!
//! - `{prefix}:session:{hash}`: the session as JSON, expiring (`PXAT`) at
//!   its `expires_at`, so a session nobody ends simply disappears.
//! - `{prefix}:user-sessions:{user}`: a sorted set of the user's session
//!   hashes scored by expiry, for `delete_user_sessions`. A set whose
//!   members expire by themselves would need a sweep; scoring them lets
//!   every login trim the members already expired, and the set itself
//!   expires with its last session. (A plain set, the obvious choice, keeps
//!   the hash of every session a user ever had until someone deletes it.)
//! - `{prefix}:session-expiry`: every live session hash scored by expiry,
//!   so `purge_sessions(now)` finds what has expired at `now` without a
//!   `SCAN`. In production Redis has dropped those keys already and purge
//!   has little to do; logins trim the entries expired before them, so the
//!   index stays bounded even where no purge runs.
//! - `{prefix}:login-attempts:{key}`: a hash (`count`, `last_at`,
//!   `expires_at`) updated by one Lua script, expiring `window` after the
//!   last failure.
//!
//! Every write that touches more than one key is one Lua script (atomic
//! on the server, one round trip); `redis::Script` sends it by `EVALSHA`
//! and loads it again after a Redis restart. The scripts compute the
//! user's set name from the prefix they are given, so this layout is for a
//! single Redis (or a replicated pair), not Redis Cluster.
//!
//! Times come from the caller (`now`), as the ports say, not from Redis:
//! a session is live while `expires_at > now` whatever Redis has dropped,
//! which is what lets the contract suite move time by hand. Every Redis
//! error or timeout is `Unavailable`.

use std::time::Duration;

use async_trait::async_trait;
use dbkit::redis::{bounded, lazy_manager};
use domain::identity::{Attempts, Session};
use domain::ports::{LoginAttempts, PortError, PortResult, SessionStore};
use redis::Script;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::capped_expiry;

#[derive(Debug, Clone)]
pub struct RedisSessionsOptions {
    /// Namespace and encoding version of every key.
    pub key_prefix: String,
    /// Upper bound on any single Redis call, connecting included.
    pub timeout: Duration,
}

impl Default for RedisSessionsOptions {
    fn default() -> Self {
        Self {
            key_prefix: "rh:v1".into(),
            timeout: Duration::from_millis(500),
        }
    }
}

/// Sessions removed per `purge_sessions` script call: small enough that
/// one call never blocks Redis noticeably.
const PURGE_CHUNK: usize = 500;

/// KEYS: session, user set, expiry index. ARGV: JSON, expires_at, hash,
/// now (the session's `created_at`). 0 when the hash exists already.
const CREATE: &str = r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PXAT', ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[2], top[2]) end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
return 1
";

/// KEYS: session, user set, expiry index. ARGV: JSON, expires_at, hash.
/// Replaces the session only if it still exists (`XX`), so a touch racing
/// a logout never brings the session back.
const TOUCH: &str = r"
if not redis.call('SET', KEYS[1], ARGV[1], 'XX', 'PXAT', ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[3])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[2], top[2]) end
redis.call('ZADD', KEYS[3], 'XX', ARGV[2], ARGV[3])
return 1
";

/// KEYS: session, user set, expiry index. ARGV: hash.
const DELETE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
";

/// KEYS: user set, expiry index. ARGV: session key prefix. The sessions
/// that still existed.
const DELETE_USER: &str = r"
local hashes = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, h in ipairs(hashes) do
  n = n + redis.call('DEL', ARGV[1] .. h)
  redis.call('ZREM', KEYS[2], h)
end
redis.call('DEL', KEYS[1])
return n
";

/// KEYS: expiry index. ARGV: now, session key prefix, chunk size. How many
/// expired sessions it removed (at most a chunk).
const PURGE: &str = r"
local hashes = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, h in ipairs(hashes) do
  redis.call('DEL', ARGV[2] .. h)
end
if #hashes > 0 then redis.call('ZREM', KEYS[1], unpack(hashes)) end
return #hashes
";

/// KEYS: counter. ARGV: now, expires_at (now + window). The count after
/// this failure; a counter whose window has passed starts again.
const RECORD_FAILURE: &str = r"
local v = redis.call('HMGET', KEYS[1], 'count', 'expires_at')
local count = 0
if v[1] and v[2] and tonumber(v[2]) > tonumber(ARGV[1]) then count = tonumber(v[1]) end
count = count + 1
redis.call('HSET', KEYS[1], 'count', count, 'last_at', ARGV[1], 'expires_at', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return count
";

struct Scripts {
    create: Script,
    touch: Script,
    delete: Script,
    delete_user: Script,
    purge: Script,
    record_failure: Script,
}

pub struct RedisSessions {
    conn: ConnectionManager,
    opts: RedisSessionsOptions,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("key_prefix", &self.opts.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisSessions {
    /// Returns without Redis being reachable: the connection is made on
    /// first use and re-made after failures. Errors only on a malformed
    /// URL.
    pub fn connect(url: &str, opts: RedisSessionsOptions) -> PortResult<Self> {
        Ok(Self {
            conn: lazy_manager(url)?,
            opts,
            scripts: Scripts {
                create: Script::new(CREATE),
                touch: Script::new(TOUCH),
                delete: Script::new(DELETE),
                delete_user: Script::new(DELETE_USER),
                purge: Script::new(PURGE),
                record_failure: Script::new(RECORD_FAILURE),
            },
        })
    }

    fn session_prefix(&self) -> String {
        format!("{}:session:", self.opts.key_prefix)
    }

    fn session_key(&self, hash: &str) -> String {
        format!("{}:session:{hash}", self.opts.key_prefix)
    }

    fn user_key(&self, user: Uuid) -> String {
        format!("{}:user-sessions:{user}", self.opts.key_prefix)
    }

    fn expiry_key(&self) -> String {
        format!("{}:session-expiry", self.opts.key_prefix)
    }

    fn attempts_key(&self, key: &str) -> String {
        format!("{}:login-attempts:{key}", self.opts.key_prefix)
    }

    /// The stored session, live or not.
    async fn stored(&self, hash: &str) -> PortResult<Option<Session>> {
        let mut conn = self.conn.clone();
        let json: Option<String> = bounded(
            self.opts.timeout,
            redis::cmd("GET").arg(self.session_key(hash)).query_async(&mut conn),
        )
        .await?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| PortError::Invalid(format!("session {hash} is not readable: {e}")))
        })
        .transpose()
    }
}

fn encode(session: &Session) -> PortResult<String> {
    serde_json::to_string(session).map_err(|e| PortError::Invalid(format!("session: {e}")))
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn create_session(&self, session: &Session) -> PortResult<()> {
        let mut conn = self.conn.clone();
        let created: i64 = bounded(
            self.opts.timeout,
            self.scripts
                .create
                .key(self.session_key(&session.token_hash))
                .key(self.user_key(session.user_id))
                .key(self.expiry_key())
                .arg(encode(session)?)
                .arg(session.expires_at)
                .arg(&session.token_hash)
                .arg(session.created_at)
                .invoke_async(&mut conn),
        )
        .await?;
        if created == 0 {
            return Err(PortError::Conflict(format!(
                "a session with hash {} exists",
                session.token_hash
            )));
        }
        Ok(())
    }

    async fn session(&self, token_hash: &str, now: i64) -> PortResult<Option<Session>> {
        Ok(self.stored(token_hash).await?.filter(|s| s.expires_at > now))
    }

    /// A read, then a script that writes only if the session still exists.
    /// Two touches of one session at once both write nearly the same
    /// values, so the last one winning is harmless.
    async fn touch_session(&self, token_hash: &str, now: i64, expires_at: i64) -> PortResult<()> {
        let Some(mut s) = self.session(token_hash, now).await? else {
            return Ok(());
        };
        s.last_seen_at = now;
        s.expires_at = capped_expiry(expires_at, s.absolute_expiry);
        let mut conn = self.conn.clone();
        let _: i64 = bounded(
            self.opts.timeout,
            self.scripts
                .touch
                .key(self.session_key(token_hash))
                .key(self.user_key(s.user_id))
                .key(self.expiry_key())
                .arg(encode(&s)?)
                .arg(s.expires_at)
                .arg(token_hash)
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    /// The session's user (for its set) comes from the session itself; a
    /// session Redis already dropped leaves its hash in the user's set
    /// until the next login trims it or the set expires.
    async fn delete_session(&self, token_hash: &str) -> PortResult<()> {
        let Some(s) = self.stored(token_hash).await? else {
            return Ok(());
        };
        let mut conn = self.conn.clone();
        let _: i64 = bounded(
            self.opts.timeout,
            self.scripts
                .delete
                .key(self.session_key(token_hash))
                .key(self.user_key(s.user_id))
                .key(self.expiry_key())
                .arg(token_hash)
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    async fn delete_user_sessions(&self, user: Uuid) -> PortResult<u64> {
        let mut conn = self.conn.clone();
        let n: i64 = bounded(
            self.opts.timeout,
            self.scripts
                .delete_user
                .key(self.user_key(user))
                .key(self.expiry_key())
                .arg(self.session_prefix())
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(to_u64(n))
    }

    async fn purge_sessions(&self, now: i64) -> PortResult<u64> {
        let mut total = 0;
        loop {
            let mut conn = self.conn.clone();
            let n: i64 = bounded(
                self.opts.timeout,
                self.scripts
                    .purge
                    .key(self.expiry_key())
                    .arg(now)
                    .arg(self.session_prefix())
                    .arg(PURGE_CHUNK)
                    .invoke_async(&mut conn),
            )
            .await?;
            total += to_u64(n);
            if to_u64(n) < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn health(&self) -> PortResult<()> {
        let mut conn = self.conn.clone();
        bounded(self.opts.timeout, redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map(drop)
    }
}

#[async_trait]
impl LoginAttempts for RedisSessions {
    async fn record_failure(&self, key: &str, now: i64, window_ms: i64) -> PortResult<Attempts> {
        let mut conn = self.conn.clone();
        let count: i64 = bounded(
            self.opts.timeout,
            self.scripts
                .record_failure
                .key(self.attempts_key(key))
                .arg(now)
                .arg(now.saturating_add(window_ms))
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(Attempts {
            count: u32::try_from(count).map_err(|_| PortError::Invalid(format!("login attempt count {count}")))?,
            last_at: now,
        })
    }

    async fn attempts(&self, key: &str, now: i64) -> PortResult<Attempts> {
        let mut conn = self.conn.clone();
        let (count, last_at, expires_at): (Option<u32>, Option<i64>, Option<i64>) = bounded(
            self.opts.timeout,
            redis::cmd("HMGET")
                .arg(self.attempts_key(key))
                .arg("count")
                .arg("last_at")
                .arg("expires_at")
                .query_async(&mut conn),
        )
        .await?;
        match (count, last_at, expires_at) {
            (Some(count), Some(last_at), Some(expires_at)) if expires_at > now => Ok(Attempts { count, last_at }),
            _ => Ok(Attempts::default()),
        }
    }

    async fn clear_attempts(&self, key: &str) -> PortResult<()> {
        let mut conn = self.conn.clone();
        bounded(
            self.opts.timeout,
            redis::cmd("DEL")
                .arg(self.attempts_key(key))
                .query_async::<i64>(&mut conn),
        )
        .await
        .map(drop)
    }
}
