//! `rediss://`: the Redis adapters speak TLS to Redis. A TLS-terminating
//! proxy with a throwaway CA (`testkit::tls::TlsProxy`) stands in front of
//! the real Redis (`RUSHHOUR_TEST_REDIS_URL`), so the cache and the feed
//! pass their contract cases through TLS, the proxy's handshake count
//! proves the bytes went that way, and a client without the CA is refused
//! by certificate verification instead of speaking in clear.

use cache::{RedisCacheOptions, RedisFeed, RedisFeedOptions, RedisMenuCache};
use domain::ports::{MenuCache, PortError};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::cache as contract;
use testkit::tls::TlsProxy;

const VAR: &str = "RUSHHOUR_TEST_REDIS_URL";

fn prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("rhtest:{test}:{nanos}")
}

/// The host and port of a `redis://[user:pass@]host:port[/db]` URL.
fn address(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("redis://").expect("a redis:// test URL");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = rest.split('/').next().unwrap();
    host.to_socket_addrs().expect("resolve").next().expect("an address")
}

/// A TLS proxy in front of the test Redis, or `None` (loudly) without one.
async fn proxy(test: &str) -> Option<TlsProxy> {
    let url = testkit::service_url(VAR, test)?;
    Some(TlsProxy::start(address(&url)).await.expect("start the TLS proxy"))
}

fn cache_options(test: &str, ca: Option<std::path::PathBuf>) -> RedisCacheOptions {
    RedisCacheOptions {
        l2_ttl: Duration::from_secs(120),
        timeout: Duration::from_secs(5),
        key_prefix: prefix(test),
        tls_ca_file: ca,
        ..RedisCacheOptions::default()
    }
}

#[tokio::test]
async fn rediss_serves_the_cache_and_the_feed_through_tls() {
    let test = "tls::rediss_serves_the_cache_and_the_feed_through_tls";
    let Some(proxy) = proxy(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = proxy.write_ca(dir.path()).unwrap();
    // By address: the proxy's certificate names 127.0.0.1 as well.
    let url = format!("rediss://127.0.0.1:{}", proxy.port());

    let cache = RedisMenuCache::connect(&url, cache_options(test, Some(ca.clone())))
        .await
        .expect("connect");
    cache.health().await.expect("PING over TLS");
    contract::loads_once_then_hits_until_invalidated(Arc::new(cache)).await;

    let feed = RedisFeed::connect(
        &url,
        RedisFeedOptions {
            channel_prefix: prefix(test),
            timeout: Duration::from_secs(5),
            tls_ca_file: Some(ca),
            ..RedisFeedOptions::default()
        },
    )
    .await
    .expect("connect the feed");
    contract::feed_delivers_in_order(Arc::new(feed)).await;

    assert!(
        proxy.handshakes() >= 2,
        "the cache and the feed connect through TLS ({} handshakes)",
        proxy.handshakes()
    );
}

#[tokio::test]
async fn rediss_refuses_a_certificate_it_cannot_verify() {
    let test = "tls::rediss_refuses_a_certificate_it_cannot_verify";
    let Some(proxy) = proxy(test).await else {
        return;
    };
    // No CA file: the system's roots, which never signed the proxy's CA.
    let url = format!("rediss://127.0.0.1:{}", proxy.port());
    let cache = RedisMenuCache::connect(&url, cache_options(test, None))
        .await
        .expect("connecting is lazy");
    let err = cache.health().await.expect_err("an unknown issuer is refused");
    assert!(matches!(err, PortError::Unavailable(_)), "{err:?}");
    assert_eq!(proxy.handshakes(), 0, "no TLS session was completed");
}

#[tokio::test]
async fn a_ca_file_needs_rediss_and_must_exist() {
    let plain = RedisMenuCache::connect(
        "redis://127.0.0.1:6379",
        cache_options("ca_plain", Some("/nonexistent/ca.pem".into())),
    )
    .await
    .err()
    .expect("a CA file with redis:// is a mistake");
    assert!(
        matches!(&plain, PortError::Invalid(m) if m.contains("not rediss://")),
        "{plain:?}"
    );
    let missing = RedisMenuCache::connect(
        "rediss://127.0.0.1:6379",
        cache_options("ca_missing", Some("/nonexistent/ca.pem".into())),
    )
    .await
    .err()
    .expect("a missing CA file fails at start-up");
    assert!(
        matches!(&missing, PortError::Invalid(m) if m.contains("/nonexistent/ca.pem")),
        "{missing:?}"
    );
}
