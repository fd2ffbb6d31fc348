//! `UpstreamClient`: the HTTP client for the catalog API and the loyalty
//! service, implementing the domain's `CatalogSource` and `LoyaltySource`.
//!
//! Every call goes through the same three layers, innermost first:
//! - **attempt**: one HTTP request with a timeout (the client's, covering
//!   connect, headers and body), measured and counted by endpoint/status;
//! - **retry**: 5xx, 429, timeouts and transport errors are retried with
//!   exponential backoff and full jitter (honouring `Retry-After`), at most
//!   `max_retries` times; other answers are final;
//! - **circuit breaker**: `circuit_failures` failed attempts in a row open
//!   the circuit for `circuit_cooldown`, during which calls fail at once
//!   with `PortError::Unavailable("upstream circuit open")`, unless a
//!   caller asked for a half-open probe (`UpstreamCircuit::probe`: every
//!   sync job attempt does, see `breaker`).
//!
//! Authenticated calls add OAuth2 client credentials on top: the token is
//! fetched once, cached until 30 s before it expires (single flight: one
//! refresh however many callers miss together), and a 401 drops it and
//! retries once with a fresh one (the upstream may revoke tokens early).
//!
//! Transport: `https://` through rustls with the ring provider, verifying
//! the server against the system's roots plus an optional private CA
//! (`tls_ca_file`); the TLS configuration is built here rather than by
//! reqwest's `rustls` feature, which would compile in a second crypto
//! provider (aws-lc, a C build; ADR 0008). Plain `http://` is accepted only
//! to a loopback address (the simulator, a local sidecar) or without a
//! client secret: the secret goes in the token request's HTTP Basic header,
//! and sending it in clear across a network is refused at construction.

use async_trait::async_trait;
use bytes::Bytes;
use domain::Clock;
use domain::menu::{Category, Item};
use domain::ops::LoyaltyAccount;
use domain::ports::{PortError, PortResult};
use domain::sync::{AccountChanges, CatalogFetch, CatalogSource, LoyaltySource, SyncProgress};
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH, RETRY_AFTER};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telemetry::names;

use crate::breaker::Breaker;
use crate::wire::{CatalogPage, ChangesPage, TokenResponse, paths};

/// Refresh a token this long before the upstream says it expires (at most
/// half its lifetime, for the short-lived tokens of tests).
pub const TOKEN_SKEW: Duration = Duration::from_secs(30);
/// The longest pause between two retries, whatever the backoff or
/// `Retry-After` says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a catalog fetch starts over when the catalog changes between
/// its pages, before giving up until the next run.
const CATALOG_RESTARTS: u32 = 3;
/// A catalog with more pages than this is refused (a paging bug upstream,
/// not a menu).
const MAX_CATALOG_PAGES: u32 = 10_000;

const EP_TOKEN: &str = "token";
const EP_CATALOG: &str = "catalog";
const EP_CHANGES: &str = "loyalty_changes";
const EP_POINTS: &str = "loyalty_points";

/// How to reach and treat the upstreams.
#[derive(Clone)]
pub struct UpstreamOptions {
    /// `https://host[:port]`, or `http://` to a loopback address (see the
    /// module docs).
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Catalog items per page, 50–100.
    pub page_size: u32,
    /// Per attempt, from connecting until the body is read.
    pub timeout: Duration,
    /// Retries after the first attempt of a call.
    pub max_retries: u32,
    /// Failed attempts in a row that open the circuit.
    pub circuit_failures: u32,
    /// How long an open circuit fails calls fast.
    pub circuit_cooldown: Duration,
    /// The first retry's pause; each further retry doubles it (capped at
    /// [`MAX_BACKOFF`]), and jitter takes up to half of it off.
    pub backoff: Duration,
    /// `https://` only: a PEM file of CA certificates trusted besides the
    /// system's roots (an upstream behind a private CA).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8090".into(),
            client_id: "rushhour".into(),
            client_secret: String::new(),
            page_size: 100,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            circuit_failures: 5,
            circuit_cooldown: Duration::from_secs(30),
            backoff: Duration::from_millis(200),
            tls_ca_file: None,
        }
    }
}

impl std::fmt::Debug for UpstreamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamOptions")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("page_size", &self.page_size)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("circuit_failures", &self.circuit_failures)
            .field("circuit_cooldown", &self.circuit_cooldown)
            .field("backoff", &self.backoff)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// Why an `UpstreamClient` could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("upstream base_url {0:?} is not an https:// or http:// URL")]
    BaseUrl(String),
    #[error(
        "upstream base_url {0:?} is plain http:// to a host that is not loopback: the client secret would cross \
         the network in clear; use https:// (with upstream.tls_ca_file for a private CA)"
    )]
    SecretInClear(String),
    #[error("upstream TLS: {0}")]
    Tls(String),
    #[error("upstream page_size {0} is outside 50..=100")]
    PageSize(u32),
    #[error("building the HTTP client: {0}")]
    Client(String),
}

struct CachedToken {
    value: Arc<str>,
    refresh_at: Instant,
}

/// An upstream answer that is final (no retry would change it).
struct Raw {
    status: StatusCode,
    etag: Option<String>,
    body: Bytes,
}

/// The outcome of one attempt that is worth retrying.
struct Retryable {
    what: String,
    retry_after: Option<Duration>,
}

pub struct UpstreamClient {
    http: reqwest::Client,
    base: String,
    cfg: UpstreamOptions,
    token: Mutex<Option<CachedToken>>,
    /// Held while a token is fetched, so concurrent misses share one fetch.
    refresh: tokio::sync::Mutex<()>,
    breaker: Breaker,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// A client for `cfg`; `clock` times the circuit breaker's cooldown
    /// (`worker::TokioClock` in production, a manual clock in tests).
    pub fn new(cfg: UpstreamOptions, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let url = reqwest::Url::parse(&cfg.base_url).map_err(|_| ConfigError::BaseUrl(cfg.base_url.clone()))?;
        match url.scheme() {
            "https" => {}
            "http" if cfg.client_secret.is_empty() || is_loopback(&url) => {}
            "http" => return Err(ConfigError::SecretInClear(cfg.base_url.clone())),
            _ => return Err(ConfigError::BaseUrl(cfg.base_url.clone())),
        }
        if !(50..=100).contains(&cfg.page_size) {
            return Err(ConfigError::PageSize(cfg.page_size));
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(cfg.tls_ca_file.as_deref())?)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("rushhour/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base: cfg.base_url.trim_end_matches('/').to_owned(),
            breaker: Breaker::new(cfg.circuit_failures, cfg.circuit_cooldown, clock),
            cfg,
            token: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    /// Forget the cached access token; the next call fetches a new one.
    pub fn clear_auth(&self) {
        *self.slot() = None;
    }

    /// Whether the circuit breaker is failing calls fast right now.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<CachedToken>> {
        // Replacing an Option is atomic from a panic's point of view.
        self.token.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn cached_token(&self) -> Option<Arc<str>> {
        self.slot()
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.value.clone())
    }

    /// Drop `used` if it is still the cached token (a concurrent caller may
    /// already have replaced it).
    fn forget(&self, used: &str) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|t| &*t.value == used) {
            *slot = None;
        }
    }

    async fn access_token(&self, errors: &mut u64) -> PortResult<Arc<str>> {
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let _single_flight = self.refresh.lock().await;
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let url = self.url(paths::TOKEN);
        let raw = self
            .execute(EP_TOKEN, errors, || {
                self.http
                    .post(&url)
                    .basic_auth(&self.cfg.client_id, Some(&self.cfg.client_secret))
                    .form(&[("grant_type", "client_credentials")])
            })
            .await?;
        if matches!(
            raw.status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(PortError::Invalid(format!(
                "upstream refused the client credentials of {:?} ({})",
                self.cfg.client_id, raw.status
            )));
        }
        let token: TokenResponse = decode(EP_TOKEN, &expect_ok(EP_TOKEN, raw)?)?;
        if !token.token_type.eq_ignore_ascii_case("bearer") {
            return Err(PortError::Invalid(format!(
                "upstream issued a {:?} token, not a bearer token",
                token.token_type
            )));
        }
        let ttl = Duration::from_secs(token.expires_in);
        let value: Arc<str> = token.access_token.into();
        *self.slot() = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + ttl - TOKEN_SKEW.min(ttl / 2),
        });
        tracing::debug!(expires_in = token.expires_in, "upstream token fetched");
        Ok(value)
    }

    /// One call with a bearer token: a 401 drops the token and tries once
    /// more with a fresh one.
    async fn authed<F>(&self, endpoint: &'static str, errors: &mut u64, build: F) -> PortResult<Raw>
    where
        F: Fn(&str) -> reqwest::RequestBuilder + Sync,
    {
        let mut refreshed = false;
        loop {
            let token = self.access_token(errors).await?;
            let raw = self.execute(endpoint, errors, || build(&token)).await?;
            if raw.status != StatusCode::UNAUTHORIZED {
                return Ok(raw);
            }
            *errors += 1;
            self.forget(&token);
            if refreshed {
                return Err(PortError::Unavailable(format!(
                    "{endpoint}: upstream refused a freshly issued token"
                )));
            }
            tracing::info!(endpoint, "upstream token refused; fetching a new one");
            refreshed = true;
        }
    }

    /// One call, retried with backoff while the failure may pass, behind
    /// the circuit breaker. Returns the first final answer, whatever its
    /// status.
    async fn execute<F>(&self, endpoint: &'static str, errors: &mut u64, build: F) -> PortResult<Raw>
    where
        F: Fn() -> reqwest::RequestBuilder + Sync,
    {
        let mut attempt = 0u32;
        loop {
            if !self.breaker.allows() {
                metrics::counter!(names::UPSTREAM_REQUESTS, "endpoint" => endpoint, "status" => "circuit_open")
                    .increment(1);
                return Err(PortError::Unavailable("upstream circuit open".into()));
            }
            let started = Instant::now();
            let outcome = attempt_once(endpoint, build()).await;
            metrics::histogram!(names::UPSTREAM_REQUEST_DURATION, "endpoint" => endpoint)
                .record(started.elapsed().as_secs_f64());
            let failed = match outcome {
                Ok(raw) => {
                    self.breaker.success();
                    return Ok(raw);
                }
                Err(Ok(failed)) => failed,
                Err(Err(e)) => return Err(e),
            };
            *errors += 1;
            self.breaker.failure();
            if attempt >= self.cfg.max_retries {
                return Err(PortError::Unavailable(format!(
                    "{endpoint}: {} (gave up after {} attempts)",
                    failed.what,
                    attempt + 1
                )));
            }
            let pause = backoff(self.cfg.backoff, attempt, failed.retry_after);
            tracing::debug!(endpoint, attempt, error = %failed.what, pause_ms = pause.as_millis() as u64, "retrying upstream call");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One pass over the catalog's pages; `Ok(None)` when the catalog
    /// changed under it (a later page carried another ETag).
    async fn catalog_pass(
        &self,
        etag: Option<&str>,
        progress: &dyn SyncProgress,
        requests: &mut u64,
        errors: &mut u64,
    ) -> PortResult<Option<CatalogFetch>> {
        let url = self.url(paths::CATALOG_ITEMS);
        let per_page = self.cfg.page_size.to_string();
        let mut categories: Vec<Category> = Vec::new();
        let mut items: Vec<Item> = Vec::new();
        let mut catalog_etag: Option<String> = None;
        let mut page = 1u32;
        loop {
            let page_s = page.to_string();
            *requests += 1;
            let raw = self
                .authed(EP_CATALOG, errors, |token| {
                    let req = self
                        .http
                        .get(&url)
                        .bearer_auth(token)
                        .query(&[("page", page_s.as_str()), ("per_page", per_page.as_str())]);
                    match etag {
                        Some(tag) if page == 1 => req.header(IF_NONE_MATCH, tag),
                        _ => req,
                    }
                })
                .await?;
            if page == 1 && raw.status == StatusCode::NOT_MODIFIED {
                return Ok(Some(CatalogFetch::NotModified));
            }
            if page == 1 {
                catalog_etag = raw.etag.clone();
            } else if raw.etag.is_some() && raw.etag != catalog_etag {
                tracing::info!(page, "catalog changed while it was fetched; starting over");
                return Ok(None);
            }
            let body: CatalogPage = decode(EP_CATALOG, &expect_ok(EP_CATALOG, raw)?)?;
            if page == 1 {
                categories = body.categories.into_iter().map(Category::from).collect();
                progress.set_total(body.total_items);
                items.reserve(body.total_items.min(100_000) as usize);
            }
            let n = body.items.len() as u64;
            for item in body.items {
                items.push(item.into_item().map_err(PortError::Invalid)?);
            }
            progress.advance(n);
            match body.next_page {
                None => break,
                Some(next) if next > page && next <= MAX_CATALOG_PAGES => page = next,
                Some(next) => {
                    return Err(PortError::Invalid(format!(
                        "catalog page {page} points to page {next} next"
                    )));
                }
            }
        }
        Ok(Some(CatalogFetch::Changed {
            categories,
            items,
            etag: catalog_etag,
            requests: *requests,
            errors: *errors,
        }))
    }
}

/// Send one request and read its body. `Ok` is a final answer; `Err(Ok)` a
/// failure worth retrying; `Err(Err)` one that is not.
async fn attempt_once(
    endpoint: &'static str,
    req: reqwest::RequestBuilder,
) -> Result<Raw, Result<Retryable, PortError>> {
    let transport = |e: reqwest::Error| {
        if e.is_builder() {
            return Err(PortError::Invalid(format!("{endpoint}: bad request: {e}")));
        }
        let label = if e.is_timeout() { "timeout" } else { "transport" };
        metrics::counter!(names::UPSTREAM_REQUESTS, "endpoint" => endpoint, "status" => label).increment(1);
        Ok(Retryable {
            what: format!("{label}: {e}"),
            retry_after: None,
        })
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.bytes().await.map_err(transport)?;
    metrics::counter!(names::UPSTREAM_REQUESTS, "endpoint" => endpoint, "status" => status.as_str().to_owned())
        .increment(1);
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(Ok(Retryable {
            what: format!("upstream answered {status}"),
            retry_after,
        }));
    }
    Ok(Raw { status, etag, body })
}

/// Exponential backoff with jitter: `base·2^attempt` capped at
/// [`MAX_BACKOFF`], less a random part of up to half of it (so clients that
/// failed together do not retry together), but never shorter than what the
/// upstream asked for with `Retry-After`.
fn backoff(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let full = base.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF);
    let half = full / 2;
    let jittered = half + rand::rng().random_range(Duration::ZERO..=half);
    match retry_after {
        Some(asked) => jittered.max(asked.min(MAX_BACKOFF)),
        None => jittered,
    }
}

fn expect_ok(endpoint: &str, raw: Raw) -> PortResult<Bytes> {
    if raw.status == StatusCode::OK {
        return Ok(raw.body);
    }
    let excerpt = String::from_utf8_lossy(&raw.body[..raw.body.len().min(200)]).into_owned();
    Err(PortError::Invalid(format!(
        "{endpoint}: upstream answered {}: {excerpt}",
        raw.status
    )))
}

fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> PortResult<T> {
    serde_json::from_slice(body).map_err(|e| PortError::Invalid(format!("{endpoint}: unreadable answer: {e}")))
}

#[async_trait]
impl CatalogSource for UpstreamClient {
    #[tracing::instrument(skip_all)]
    async fn fetch_catalog(&self, etag: Option<&str>, progress: &dyn SyncProgress) -> PortResult<CatalogFetch> {
        let mut requests = 0;
        let mut errors = 0;
        for _ in 0..CATALOG_RESTARTS {
            if let Some(fetch) = self.catalog_pass(etag, progress, &mut requests, &mut errors).await? {
                return Ok(fetch);
            }
        }
        Err(PortError::Unavailable(
            "the catalog kept changing while it was fetched".into(),
        ))
    }
}

/// `rushhour cache clear --auth` reaches the token through this port.
impl domain::sync::UpstreamAuth for UpstreamClient {
    fn clear_auth(&self) {
        UpstreamClient::clear_auth(self);
    }
}

/// The `loyalty.report` job reports an order's points through this port.
#[async_trait]
impl domain::loyalty::PointsSink for UpstreamClient {
    #[tracing::instrument(skip_all, fields(order = %order, points))]
    async fn report_points(&self, account: &str, order: domain::OrderId, points: i64) -> PortResult<()> {
        // The account id goes into the path: percent-encode it as a segment.
        let mut url = reqwest::Url::parse(&self.url(paths::ACCOUNT_POINTS.split("{id}").next().unwrap_or("")))
            .map_err(|e| PortError::Invalid(format!("{EP_POINTS}: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| PortError::Invalid(format!("{EP_POINTS}: the base URL cannot take a path")))?
            .pop_if_empty()
            .push(account)
            .push("points");
        let body = crate::wire::PointsReport {
            order_id: order.to_string(),
            points,
        };
        let mut errors = 0;
        let raw = self
            .authed(EP_POINTS, &mut errors, |token| {
                self.http.post(url.clone()).bearer_auth(token).json(&body)
            })
            .await?;
        if raw.status == StatusCode::NOT_FOUND {
            return Err(PortError::Invalid(format!(
                "{EP_POINTS}: the loyalty service has no account {account:?}"
            )));
        }
        let answer: crate::wire::PointsAnswer = decode(EP_POINTS, &expect_ok(EP_POINTS, raw)?)?;
        tracing::debug!(applied = answer.applied, "points reported");
        Ok(())
    }
}

/// The job bodies probe and wait out the breaker through this port.
impl domain::sync::UpstreamCircuit for UpstreamClient {
    fn probe(&self) {
        self.breaker.grant_probe();
    }

    fn open_for(&self) -> Option<Duration> {
        self.breaker.open_for()
    }
}

#[async_trait]
impl LoyaltySource for UpstreamClient {
    #[tracing::instrument(skip_all, fields(limit))]
    async fn changes(&self, cursor: Option<&str>, limit: u32) -> PortResult<AccountChanges> {
        let url = self.url(paths::ACCOUNT_CHANGES);
        let since = cursor.unwrap_or("");
        let limit_s = limit.to_string();
        let mut errors = 0;
        let raw = self
            .authed(EP_CHANGES, &mut errors, |token| {
                self.http
                    .get(&url)
                    .bearer_auth(token)
                    .query(&[("since", since), ("limit", limit_s.as_str())])
            })
            .await?;
        let page: ChangesPage = decode(EP_CHANGES, &expect_ok(EP_CHANGES, raw)?)?;
        Ok(AccountChanges {
            accounts: page.accounts.into_iter().map(LoyaltyAccount::from).collect(),
            next_cursor: page.next_cursor,
            has_more: page.has_more,
            total_hint: page.total,
            errors,
        })
    }
}

/// Whether `url` names this machine: a loopback address or `localhost`.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// rustls with the ring provider, trusting the system's roots and the CAs
/// in `ca_file`.
pub(crate) fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable entries of the system store are skipped, as every client
    // using it does; an empty store only matters for https://.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ConfigError::Tls(format!("CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(ConfigError::Tls(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ConfigError::Tls(format!("CA file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_caps_and_honours_retry_after() {
        let base = Duration::from_millis(100);
        for attempt in 0..4 {
            let full = base * (1 << attempt);
            let d = backoff(base, attempt, None);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(base, 30, None) <= MAX_BACKOFF);
        assert!(backoff(base, 0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        assert!(backoff(base, 0, Some(Duration::from_secs(3600))) <= MAX_BACKOFF);
    }

    #[test]
    fn config_is_checked() {
        let ok = UpstreamOptions::default();
        assert!(UpstreamClient::new(ok.clone(), testkit::clock::ManualClock::new(0)).is_ok());
        let https = UpstreamOptions {
            base_url: "https://catalog.example".into(),
            ..ok.clone()
        };
        assert!(UpstreamClient::new(https, testkit::clock::ManualClock::new(0)).is_ok());
        // The secret never crosses a network in clear; loopback (the
        // simulator) and secret-less clients may use http://.
        for (base_url, secret, allowed) in [
            ("http://catalog.example:8090", "s3cret", false),
            ("http://10.0.0.7:8090", "s3cret", false),
            ("http://catalog.example:8090", "", true),
            ("http://127.0.0.1:8090", "s3cret", true),
            ("http://127.5.0.1:8090", "s3cret", true),
            ("http://localhost:8090", "s3cret", true),
            ("http://[::1]:8090", "s3cret", true),
        ] {
            let opts = UpstreamOptions {
                base_url: base_url.into(),
                client_secret: secret.into(),
                ..ok.clone()
            };
            match UpstreamClient::new(opts, testkit::clock::ManualClock::new(0)) {
                Ok(_) => assert!(allowed, "{base_url} with a secret must be refused"),
                Err(ConfigError::SecretInClear(u)) => assert!(!allowed && u == base_url, "{base_url}"),
                Err(e) => panic!("{base_url}: {e}"),
            }
        }
        let no_ca = UpstreamOptions {
            base_url: "https://catalog.example".into(),
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
            ..ok.clone()
        };
        assert!(matches!(
            UpstreamClient::new(no_ca, testkit::clock::ManualClock::new(0)),
            Err(ConfigError::Tls(m)) if m.contains("/nonexistent/ca.pem")
        ));
        let page = UpstreamOptions {
            page_size: 500,
            ..ok.clone()
        };
        assert!(matches!(
            UpstreamClient::new(page, testkit::clock::ManualClock::new(0)),
            Err(ConfigError::PageSize(500))
        ));
        let junk = UpstreamOptions {
            base_url: "not a url".into(),
            ..ok
        };
        assert!(matches!(
            UpstreamClient::new(junk, testkit::clock::ManualClock::new(0)),
            Err(ConfigError::BaseUrl(_))
        ));
    }
}
