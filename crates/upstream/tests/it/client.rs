//! `UpstreamClient` against the simulator: token caching and refresh,
//! retries, the circuit breaker, timeouts, paging and ETags, and the
//! simulator's HTTP controls; `https://` through a private CA.

use domain::ports::PortError;
use domain::sync::{CatalogFetch, CatalogSource, LoyaltySource, NoProgress};
use std::time::Duration;
use testkit::clock::ManualClock;
use upstream::sim::SimStats;
use upstream::{UpstreamClient, UpstreamOptions};

use crate::support::{Recorder, client_config, start};

#[tokio::test]
async fn the_token_is_fetched_once_for_many_calls() {
    let (sim, client) = start(3_000).await;
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let page = client.changes(cursor.as_deref(), 1000).await.unwrap();
        assert_eq!(page.accounts.len(), 1000);
        cursor = Some(page.next_cursor);
    }
    let CatalogFetch::Changed { items, .. } = client.fetch_catalog(None, &NoProgress).await.unwrap() else {
        panic!("a first fetch has no ETag to match");
    };
    assert_eq!(items.len(), 200);
    let stats = sim.stats();
    assert_eq!(stats.token, 1, "one token for every call: {stats:?}");
    assert_eq!(stats.loyalty_changes, 3);
    assert_eq!(stats.catalog, 2, "200 items in pages of 100");

    client.clear_auth();
    client.changes(None, 10).await.unwrap();
    assert_eq!(sim.stats().token, 2, "clear_auth forgets the token");
}

#[tokio::test]
async fn a_revoked_token_is_replaced_transparently() {
    let (sim, client) = start(100).await;
    client.changes(None, 10).await.unwrap();
    sim.expire_tokens();
    let page = client.changes(None, 10).await.expect("refreshed and retried");
    assert_eq!(page.accounts.len(), 10);
    assert_eq!(page.errors, 1, "the 401 is counted");
    let stats = sim.stats();
    assert_eq!((stats.token, stats.unauthorized), (2, 1), "{stats:?}");
}

#[tokio::test]
async fn wrong_credentials_fail_without_retrying() {
    let (url, sim) = upstream::Simulator::start(crate::support::sim_config(10))
        .await
        .unwrap();
    let client = UpstreamClient::new(
        UpstreamOptions {
            client_secret: "wrong".into(),
            ..client_config(&url)
        },
        ManualClock::at_system_now(),
    )
    .unwrap();
    let err = client.changes(None, 10).await.unwrap_err();
    assert!(
        matches!(err, PortError::Invalid(ref m) if m.contains("credentials")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(sim.stats().token, 1, "a refusal is final");
    assert_eq!(sim.stats().loyalty_changes, 0);
}

#[tokio::test]
async fn server_errors_are_retried_until_they_pass() {
    let (sim, client) = start(100).await;
    client.changes(None, 1).await.unwrap(); // token in hand
    sim.fail_next(2, 503);
    let page = client.changes(None, 50).await.expect("third attempt succeeds");
    assert_eq!(page.accounts.len(), 50);
    assert_eq!(page.errors, 2);
    assert_eq!(sim.stats().injected_failures, 2);
    assert_eq!(sim.stats().loyalty_changes, 1 + 3);

    sim.fail_next(1, 429);
    let fetch = client
        .fetch_catalog(None, &NoProgress)
        .await
        .expect("429 is retried too");
    let CatalogFetch::Changed { errors, requests, .. } = fetch else {
        panic!("no ETag was sent");
    };
    assert_eq!((errors, requests), (1, 2));
}

#[tokio::test]
async fn persistent_failures_open_the_circuit_which_then_fails_fast_and_recovers() {
    let (url, sim) = upstream::Simulator::start(crate::support::sim_config(100))
        .await
        .unwrap();
    let clock = ManualClock::at_system_now();
    let client = UpstreamClient::new(
        UpstreamOptions {
            max_retries: 2,
            circuit_failures: 3,
            circuit_cooldown: Duration::from_secs(300),
            ..client_config(&url)
        },
        clock.clone(),
    )
    .unwrap();
    client.changes(None, 1).await.unwrap();
    sim.fail_next(1_000, 500);

    let err = client.changes(None, 10).await.unwrap_err();
    assert!(
        matches!(err, PortError::Unavailable(ref m) if m.contains("500")),
        "{err:?}"
    );
    assert!(client.circuit_open(), "3 failed attempts in a row");
    let reached = sim.stats().loyalty_changes;
    assert_eq!(reached, 1 + 3);

    let err = client.changes(None, 10).await.unwrap_err();
    assert_eq!(err, PortError::Unavailable("upstream circuit open".into()));
    assert_eq!(sim.stats().loyalty_changes, reached, "an open circuit sends nothing");

    // The upstream heals, but the circuit stays open until its cooldown
    // is over on the client's clock.
    sim.fail_next(0, 500);
    clock.advance(Duration::from_secs(299));
    let err = client.changes(None, 10).await.unwrap_err();
    assert_eq!(err, PortError::Unavailable("upstream circuit open".into()));
    assert_eq!(sim.stats().loyalty_changes, reached, "still open: nothing sent");
    clock.advance(Duration::from_secs(1));
    let page = client.changes(None, 10).await.expect("half-open call succeeds");
    assert_eq!(page.accounts.len(), 10);
    assert!(!client.circuit_open());
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_an_error() {
    let (url, sim) = upstream::Simulator::start(crate::support::sim_config(100))
        .await
        .unwrap();
    let client = UpstreamClient::new(
        UpstreamOptions {
            timeout: Duration::from_millis(150),
            max_retries: 1,
            ..client_config(&url)
        },
        ManualClock::at_system_now(),
    )
    .unwrap();
    sim.set_latency(Duration::from_millis(600));
    let err = client.changes(None, 10).await.unwrap_err();
    assert!(
        matches!(err, PortError::Unavailable(ref m) if m.contains("timeout")),
        "{err:?}"
    );
    assert!(
        sim.stats().token >= 1,
        "the token request itself timed out (and was retried)"
    );

    sim.set_latency(Duration::ZERO);
    assert_eq!(client.changes(None, 10).await.unwrap().accounts.len(), 10);
}

#[tokio::test]
async fn the_catalog_is_paged_and_conditional() {
    let (url, sim) = upstream::Simulator::start(crate::support::sim_config(10))
        .await
        .unwrap();
    let client = UpstreamClient::new(
        UpstreamOptions {
            page_size: 50,
            ..client_config(&url)
        },
        ManualClock::at_system_now(),
    )
    .unwrap();
    let progress = Recorder::default();
    let CatalogFetch::Changed {
        categories,
        items,
        etag,
        requests,
        errors,
    } = client.fetch_catalog(None, &progress).await.unwrap()
    else {
        panic!("first fetch");
    };
    assert_eq!((items.len(), requests, errors), (200, 4, 0));
    assert_eq!(progress.get(), (200, 200));
    assert!(items.iter().all(|i| i.available));
    assert!(items.iter().all(|i| categories.iter().any(|c| c.code == i.category)));
    let etag = etag.expect("the catalog has an ETag");
    assert_eq!(etag, sim.catalog_etag());

    let before = sim.stats();
    assert_eq!(
        client.fetch_catalog(Some(&etag), &NoProgress).await.unwrap(),
        CatalogFetch::NotModified
    );
    let after = sim.stats();
    assert_eq!((after.catalog - before.catalog, after.not_modified), (1, 1));

    let changed = sim.mutate_items(3);
    let CatalogFetch::Changed { items, etag: new, .. } = client.fetch_catalog(Some(&etag), &NoProgress).await.unwrap()
    else {
        panic!("the catalog changed");
    };
    assert_ne!(new.as_deref(), Some(etag.as_str()));
    for sku in &changed {
        let got = items.iter().find(|i| &i.sku == sku).unwrap();
        assert_eq!(got.sizes, sim.item(sku).unwrap().sizes, "{sku} has its new prices");
    }
}

#[tokio::test]
async fn the_simulator_is_controllable_over_http() {
    let (url, sim) = upstream::Simulator::start(crate::support::sim_config(500))
        .await
        .unwrap();
    // reqwest has rustls but no crypto provider of its own (ADR 0008).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let etag = sim.catalog_etag();
    let mutated: serde_json::Value = http
        .post(format!("{url}/_sim/mutate"))
        .json(&serde_json::json!({"accounts": 7, "items": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mutated["accounts"].as_array().unwrap().len(), 7);
    assert_eq!(mutated["items"].as_array().unwrap().len(), 2);
    assert_ne!(sim.catalog_etag(), etag);

    let status = http
        .post(format!("{url}/_sim/faults"))
        .json(&serde_json::json!({"fail_next": 1, "fail_status": 502}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let client = UpstreamClient::new(client_config(&url), ManualClock::at_system_now()).unwrap();
    let page = client.changes(None, 5000).await.unwrap();
    assert_eq!((page.accounts.len(), page.errors, page.has_more), (500, 1, false));

    let stats: SimStats = http
        .get(format!("{url}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, sim.stats());
    assert_eq!((stats.injected_failures, stats.token, stats.loyalty_changes), (1, 2, 1));
}

/// `https://`: the client speaks TLS to an upstream whose certificate a
/// private CA signed (`tls_ca_file`), the token request with its client
/// secret included, and refuses the same upstream without that CA.
#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let (url, sim) = upstream::Simulator::start(crate::support::sim_config(100))
        .await
        .unwrap();
    let plain: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let proxy = testkit::tls::TlsProxy::start(plain).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = proxy.write_ca(dir.path()).unwrap();
    let https = format!("https://localhost:{}", proxy.port());

    let client = UpstreamClient::new(
        UpstreamOptions {
            tls_ca_file: Some(ca),
            ..client_config(&https)
        },
        ManualClock::at_system_now(),
    )
    .expect("client builds");
    let page = client.changes(None, 10).await.expect("a page over TLS");
    assert_eq!(page.accounts.len(), 10);
    assert_eq!(sim.stats().token, 1, "the token request went through TLS too");
    assert!(proxy.handshakes() >= 1);

    let untrusting = UpstreamClient::new(
        UpstreamOptions {
            max_retries: 0,
            ..client_config(&https)
        },
        ManualClock::at_system_now(),
    )
    .expect("client builds");
    let before = proxy.handshakes();
    let err = untrusting
        .changes(None, 10)
        .await
        .expect_err("an unknown CA is refused");
    assert!(matches!(err, PortError::Unavailable(_)), "{err:?}");
    assert_eq!(proxy.handshakes(), before, "no TLS session with an unverified server");
    assert_eq!(sim.stats().token, 1, "the secret never reached the unverified server");
}
