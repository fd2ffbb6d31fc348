//! Scale-mode menu cache: the in-process [`MemoryMenuCache`] (L1, short
//! TTL) in front of Redis (L2, shared by every instance), with invalidations
//! broadcast over Redis pub/sub so every instance drops its L1 entry.
//!
//! Redis is an optimisation here, never a dependency: any Redis error or
//! timeout on the read path is logged, counted and skipped, and the caller
//! is served from L1 and the loader (the store). After an error L2 is
//! bypassed for [`BREAKER_COOLDOWN`], so an outage costs one timeout per
//! cooldown rather than one per request, and logs at most once per cooldown.
//!
//! Layout in Redis: `{prefix}:menu:{store}` holds one flag byte (0 = raw
//! JSON, 1 = lz4 with the uncompressed length prepended) and the serialized
//! [`Menu`]; `{prefix}:invalidate` carries `store:{id}` or `clear`. The
//! prefix is versioned (`rh:v1`) so a binary with another encoding can run
//! beside this one during a rollout without reading its entries.

use async_trait::async_trait;
use domain::MenuSnapshot;
use domain::ids::StoreId;
use domain::menu::Menu;
use domain::ports::{MenuCache, MenuLoad, PortError, PortResult};
use redis::aio::ConnectionManager;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::memory::MemoryMenuCache;
use crate::redis_conn::{self, AbortOnDrop, Follower, bounded};
use telemetry::names;

/// How long L2 is bypassed after a Redis error on the read path.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(1);

const FLAG_RAW: u8 = 0;
const FLAG_LZ4: u8 = 1;
/// Refuse to inflate a value claiming to be larger than this: a corrupt or
/// hostile length prefix must not make us allocate gigabytes.
const MAX_MENU_BYTES: usize = 32 << 20;
const CLEAR_MESSAGE: &[u8] = b"clear";
const STORE_MESSAGE: &[u8] = b"store:";

#[derive(Debug, Clone)]
pub struct RedisCacheOptions {
    /// L1 lifetime: bounds how stale an instance can be if it ever misses
    /// an invalidation message. Keep it short.
    pub l1_ttl: Duration,
    pub l1_max_stores: u64,
    /// L2 lifetime (Redis `EX`): bounds staleness if a write path forgets
    /// to invalidate.
    pub l2_ttl: Duration,
    /// Values whose JSON is larger than this many bytes are lz4-compressed.
    pub compress_over: usize,
    /// Upper bound on any single Redis call, connecting included.
    pub timeout: Duration,
    /// Namespace and encoding version of every key and channel.
    pub key_prefix: String,
    /// `rediss://` only: trust the CA certificates in this PEM file instead
    /// of the system's roots (a private CA).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RedisCacheOptions {
    fn default() -> Self {
        Self {
            l1_ttl: Duration::from_secs(30),
            l1_max_stores: 10_000,
            l2_ttl: Duration::from_secs(15 * 60),
            compress_over: 1024,
            timeout: Duration::from_millis(500),
            key_prefix: "rh:v1".into(),
            tls_ca_file: None,
        }
    }
}

#[derive(Clone)]
pub struct RedisMenuCache {
    l1: MemoryMenuCache,
    l2: Arc<L2>,
    _follower: Arc<AbortOnDrop>,
}

struct L2 {
    conn: ConnectionManager,
    opts: RedisCacheOptions,
    channel: String,
    origin: Instant,
    /// Milliseconds since `origin` until which L2 is bypassed.
    open_until_ms: AtomicU64,
}

impl RedisMenuCache {
    /// Returns without Redis being reachable: the connection is made on
    /// first use and re-made after failures, so an instance can start (and
    /// serve from L1 + the store) during a Redis outage. It waits up to
    /// `opts.timeout` for the invalidation subscription, so that when Redis
    /// is up no invalidation published right after start-up is missed.
    /// Errors only on a malformed URL.
    pub async fn connect(url: &str, opts: RedisCacheOptions) -> Result<Self, PortError> {
        let client = redis_conn::client(url, opts.tls_ca_file.as_deref())?;
        let conn = redis_conn::manager(client.clone(), opts.timeout)?;
        let l1 = MemoryMenuCache::new(opts.l1_ttl, opts.l1_max_stores);
        let channel = format!("{}:invalidate", opts.key_prefix);
        let (ready_tx, ready_rx) = oneshot::channel();
        let follower = tokio::spawn(redis_conn::follow(
            client,
            channel.clone(),
            opts.timeout,
            Some(ready_tx),
            Invalidations { l1: l1.clone() },
        ));
        let _ = tokio::time::timeout(opts.timeout, ready_rx).await;
        Ok(Self {
            l1,
            l2: Arc::new(L2 {
                conn,
                opts,
                channel,
                origin: Instant::now(),
                open_until_ms: AtomicU64::new(0),
            }),
            _follower: Arc::new(AbortOnDrop(follower)),
        })
    }
}

#[async_trait]
impl MenuCache for RedisMenuCache {
    async fn get_or_load(&self, store: &StoreId, load: MenuLoad<'_>) -> PortResult<Arc<MenuSnapshot>> {
        let l2 = &self.l2;
        // The L2 read and the loader both run inside L1's single flight, so
        // fifty concurrent misses in one process cost one GET and at most
        // one load. The SET is awaited (not spawned) so that once a load
        // has returned, other instances find it in L2; it adds one round
        // trip to a miss only, bounded by the timeout.
        let fill: MenuLoad<'_> = Box::pin(async move {
            if let Some(hit) = l2.get(store).await {
                return Ok(hit);
            }
            let snapshot = load.await?;
            l2.set(store, &snapshot.menu).await;
            Ok(snapshot)
        });
        self.l1.get_or_load(store, fill).await
    }

    /// Never fails on a Redis outage: this instance's L1 is dropped either
    /// way, and other instances converge within their L1 TTL.
    async fn invalidate(&self, store: &StoreId) -> PortResult<()> {
        self.l1.invalidate(store).await?;
        let l2 = &self.l2;
        let mut message = STORE_MESSAGE.to_vec();
        message.extend_from_slice(store.0.as_bytes());
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(l2.key(store))
            .ignore()
            .cmd("PUBLISH")
            .arg(&l2.channel)
            .arg(message)
            .ignore();
        let mut conn = l2.conn.clone();
        if let Err(e) = bounded(l2.opts.timeout, pipe.exec_async(&mut conn)).await {
            l2.failed("invalidate", &e);
        }
        Ok(())
    }

    /// Drops every menu of this prefix (SCAN + DEL, never KEYS, which
    /// would block Redis) and tells every instance to drop its L1. Like
    /// `invalidate`, it does not fail on a Redis outage.
    async fn clear(&self) -> PortResult<()> {
        self.l1.clear().await?;
        if let Err(e) = self.l2.clear().await {
            self.l2.failed("clear", &e);
        }
        Ok(())
    }

    async fn health(&self) -> PortResult<()> {
        let mut conn = self.l2.conn.clone();
        bounded(
            self.l2.opts.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map(|_| ())
    }
}

impl L2 {
    fn key(&self, store: &StoreId) -> String {
        format!("{}:menu:{}", self.opts.key_prefix, store.0)
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn bypassed(&self) -> bool {
        self.open_until_ms.load(Ordering::Relaxed) > self.now_ms()
    }

    /// Counts the error, opens the breaker, and logs only when the breaker
    /// was closed, which rate-limits the log to once per cooldown.
    fn failed(&self, op: &'static str, e: &PortError) {
        metrics::counter!(names::CACHE_BACKEND_ERRORS, "backend" => "redis", "op" => op).increment(1);
        let now = self.now_ms();
        let was = self
            .open_until_ms
            .swap(now + BREAKER_COOLDOWN.as_millis() as u64, Ordering::Relaxed);
        if was <= now {
            tracing::warn!(op, error = %e, "redis menu cache unavailable; serving from L1 and the store");
        } else {
            tracing::debug!(op, error = %e, "redis menu cache still unavailable");
        }
    }

    async fn get(&self, store: &StoreId) -> Option<Arc<MenuSnapshot>> {
        if self.bypassed() {
            return None;
        }
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GET").arg(self.key(store)).to_owned();
        let value = match bounded(self.opts.timeout, cmd.query_async::<Option<Vec<u8>>>(&mut conn)).await {
            Ok(v) => v,
            Err(e) => {
                self.failed("get", &e);
                return None;
            }
        };
        let Some(bytes) = value else {
            metrics::counter!(names::CACHE_L2_REQUESTS, "result" => "miss").increment(1);
            return None;
        };
        match decode(&bytes).and_then(|menu| {
            if menu.store.id == *store {
                Ok(menu)
            } else {
                Err(format!("entry holds the menu of store {}", menu.store.id))
            }
        }) {
            Ok(menu) => {
                metrics::counter!(names::CACHE_L2_REQUESTS, "result" => "hit").increment(1);
                Some(Arc::new(MenuSnapshot::new(menu)))
            }
            // A value we cannot read is treated as a miss; the load that
            // follows overwrites it. It does not open the breaker: Redis
            // itself is fine.
            Err(e) => {
                metrics::counter!(names::CACHE_BACKEND_ERRORS, "backend" => "redis", "op" => "decode").increment(1);
                tracing::warn!(store = %store, error = %e, "unreadable menu in redis; reloading");
                None
            }
        }
    }

    async fn set(&self, store: &StoreId, menu: &Menu) {
        if self.bypassed() {
            return;
        }
        let value = match encode(menu, self.opts.compress_over) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(store = %store, error = %e, "menu did not serialize; not stored in redis");
                return;
            }
        };
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("SET")
            .arg(self.key(store))
            .arg(value)
            .arg("EX")
            .arg(self.opts.l2_ttl.as_secs().max(1))
            .to_owned();
        if let Err(e) = bounded(self.opts.timeout, cmd.exec_async(&mut conn)).await {
            self.failed("set", &e);
        }
    }

    async fn clear(&self) -> Result<(), PortError> {
        let pattern = format!("{}:menu:*", glob_escape(&self.opts.key_prefix));
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .to_owned();
            let (next, keys): (u64, Vec<String>) = bounded(self.opts.timeout, scan.query_async(&mut conn)).await?;
            if !keys.is_empty() {
                let del = redis::cmd("DEL").arg(&keys).to_owned();
                bounded(self.opts.timeout, del.exec_async(&mut conn)).await?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let publish = redis::cmd("PUBLISH").arg(&self.channel).arg(CLEAR_MESSAGE).to_owned();
        bounded(self.opts.timeout, publish.exec_async(&mut conn)).await
    }
}

/// Applies invalidations published by any instance (this one included) to
/// this instance's L1.
struct Invalidations {
    l1: MemoryMenuCache,
}

impl Follower for Invalidations {
    /// Invalidations sent while we were not subscribed are lost, so after
    /// every (re)subscription L1 starts empty; L2 refills it cheaply.
    async fn subscribed(&mut self) {
        let _ = self.l1.clear().await;
    }

    async fn message(&mut self, payload: &[u8]) {
        if let Some(id) = payload.strip_prefix(STORE_MESSAGE) {
            let store = StoreId(String::from_utf8_lossy(id).into_owned());
            let _ = self.l1.invalidate(&store).await;
        } else {
            // `clear`, or a message from a newer binary we do not
            // understand: dropping everything is always safe.
            let _ = self.l1.clear().await;
        }
    }
}

fn encode(menu: &Menu, compress_over: usize) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(menu)?;
    if json.len() > compress_over {
        let packed = lz4_flex::compress_prepend_size(&json);
        // Incompressible data is stored raw rather than paying to inflate it.
        if packed.len() < json.len() {
            let mut out = Vec::with_capacity(1 + packed.len());
            out.push(FLAG_LZ4);
            out.extend_from_slice(&packed);
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(1 + json.len());
    out.push(FLAG_RAW);
    out.extend_from_slice(&json);
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<Menu, String> {
    let (&flag, body) = bytes.split_first().ok_or("empty value")?;
    let json = match flag {
        FLAG_RAW => std::borrow::Cow::Borrowed(body),
        FLAG_LZ4 => {
            let (len, packed) = body.split_first_chunk::<4>().ok_or("truncated lz4 header")?;
            let len = u32::from_le_bytes(*len) as usize;
            if len > MAX_MENU_BYTES {
                return Err(format!("lz4 value claims {len} bytes"));
            }
            std::borrow::Cow::Owned(lz4_flex::decompress(packed, len).map_err(|e| format!("lz4: {e}"))?)
        }
        other => return Err(format!("unknown encoding flag {other}")),
    };
    serde_json::from_slice(&json).map_err(|e| format!("json: {e}"))
}

/// SCAN MATCH treats `*?[]\` as glob syntax; a prefix containing them must
/// match only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::menu::demo_menu;

    #[test]
    fn small_menus_are_stored_raw_and_large_ones_compressed() {
        let menu = demo_menu();
        let raw = encode(&menu, usize::MAX).unwrap();
        assert_eq!(raw[0], FLAG_RAW);
        assert_eq!(decode(&raw).unwrap(), menu);

        let packed = encode(&menu, 16).unwrap();
        assert_eq!(packed[0], FLAG_LZ4);
        assert!(packed.len() < raw.len());
        assert_eq!(decode(&packed).unwrap(), menu);
    }

    #[test]
    fn unreadable_values_are_refused() {
        assert!(decode(b"").is_err());
        assert!(decode(&[9, b'{', b'}']).is_err());
        assert!(decode(&[FLAG_LZ4, 1, 2]).is_err());
        let mut huge = vec![FLAG_LZ4];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).unwrap_err().contains("claims"));
        assert!(decode(&[FLAG_RAW, b'{']).is_err());
    }

    #[test]
    fn glob_characters_in_the_prefix_are_escaped() {
        assert_eq!(glob_escape("rh:v1"), "rh:v1");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
