//! The hot-path HTTP client: one HTTP/1.1 keep-alive connection per worker,
//! driven through hyper's low-level connection API.
//!
//! Why not `reqwest` (which the rest of the binary uses): the generator
//! shares a small machine with the server, so its CPU per request comes
//! straight out of the server's throughput. Measured on the 2-core dev box
//! against a trivial axum endpoint, one runtime thread each, 32 connections:
//! reqwest spent ~22 µs of client CPU per request, hyper's `http1` API
//! ~10 µs, and the ceiling it could drive went from ~28k to ~45-50k req/s.
//! That gap is largest on exactly the run that matters most, the
//! `/health/live` ceiling: a heavy client caps the ceiling and so compresses
//! every ratio against it toward 1. What reqwest adds per request (pool
//! checkout, URL handling, redirect and timeout layers, boxed futures) buys
//! nothing when each worker owns its connection. Setup requests (the menu,
//! seed orders, readiness polls) still use reqwest; they are off the clock.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper::http::response::Parts;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use anyhow::{Context, bail};

use super::config::ExtraHeader;
use super::stats::ErrorKind;

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static SIGNATURE: HeaderName = HeaderName::from_static("rushhour-signature");
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static AGENT: HeaderValue = HeaderValue::from_static(concat!("rushhour-bench/", env!("CARGO_PKG_VERSION")));

/// Where the server under test listens, parsed once from `--url`.
#[derive(Debug, Clone)]
pub struct Target {
    host: String,
    port: u16,
    /// The `Host` header, shared (a refcount bump per request, no copy).
    authority: HeaderValue,
    /// `--header`s, sent with every request (refcount bumps, as above).
    extra: Arc<[ExtraHeader]>,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("'{url}' is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            // The servers we measure speak plain HTTP behind a terminating
            // proxy; TLS in the generator would measure the generator.
            Some(other) => bail!("only http:// URLs are supported, not {other}://"),
            None => bail!("'{url}' needs a scheme, e.g. http://127.0.0.1:8080"),
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            bail!("'{url}' should be a base URL without a path");
        }
        let authority = uri.authority().context("no host in the URL")?;
        Ok(Self {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: HeaderValue::from_str(authority.as_str())?,
            extra: Arc::new([]),
        })
    }

    /// The same target, with `headers` on every request.
    pub fn with_headers(mut self, headers: &[ExtraHeader]) -> Self {
        self.extra = headers.into();
        self
    }

    pub fn get(&self, uri: Uri) -> Request<Full<Bytes>> {
        self.request(Method::GET, uri, Bytes::new())
    }

    /// A JSON POST with its own idempotency key.
    pub fn post_json(&self, uri: Uri, body: Bytes, key: HeaderValue) -> Request<Full<Bytes>> {
        let mut req = self.request(Method::POST, uri, body);
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, JSON.clone());
        headers.insert(IDEMPOTENCY_KEY.clone(), key);
        req
    }

    /// A payment provider's callback: JSON signed in `Rushhour-Signature`.
    pub fn post_signed(&self, uri: Uri, body: Bytes, signature: HeaderValue) -> Request<Full<Bytes>> {
        let mut req = self.request(Method::POST, uri, body);
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, JSON.clone());
        headers.insert(SIGNATURE.clone(), signature);
        req
    }

    fn request(&self, method: Method, uri: Uri, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(HOST, self.authority.clone());
        headers.insert(USER_AGENT, AGENT.clone());
        for h in self.extra.iter() {
            headers.append(h.name.clone(), h.value.clone());
        }
        req
    }
}

/// One keep-alive connection. hyper's connection future runs in its own
/// task (one per connection, for the whole run, never one per request) and
/// ends when this handle is dropped.
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(target: &Target) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
        // Requests are small and answered at once: Nagle would only add
        // delay waiting for a second segment that never comes.
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            // Its error, if any, surfaces on the next request through `send`.
            let _ = conn.await;
        });
        Ok(Self { send })
    }

    /// Whether the connection can carry another request; false once the
    /// server has closed it (then the caller reconnects, which is not an
    /// error of the request about to be sent).
    pub async fn ready(&mut self) -> bool {
        self.send.ready().await.is_ok()
    }

    /// Send `req` and read the whole response. The body is returned only for
    /// `keep_body`; otherwise it is read and dropped frame by frame, because
    /// hyper reuses a connection only once the body has been consumed.
    pub async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
        keep_body: bool,
    ) -> Result<(StatusCode, Bytes), ErrorKind> {
        let resp = self.send.send_request(req).await.map_err(|_| ErrorKind::Transport)?;
        let status = resp.status();
        let mut body = resp.into_body();
        if keep_body {
            let bytes = body.collect().await.map_err(|_| ErrorKind::Body)?.to_bytes();
            return Ok((status, bytes));
        }
        while let Some(frame) = body.frame().await {
            frame.map_err(|_| ErrorKind::Body)?;
        }
        Ok((status, Bytes::new()))
    }

    /// Send `req` and read the whole response, head included (`bench
    /// chaos` reads `Idempotent-Replayed`).
    pub async fn exchange_full(&mut self, req: Request<Full<Bytes>>) -> Result<(Parts, Bytes), ErrorKind> {
        let resp = self.send.send_request(req).await.map_err(|_| ErrorKind::Transport)?;
        let (head, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|_| ErrorKind::Body)?.to_bytes();
        Ok((head, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_base_urls() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = Target::parse("http://localhost/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 80));
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(Target::parse("https://example.com").is_err());
        assert!(Target::parse("127.0.0.1:8080").is_err());
        assert!(Target::parse("http://h/v1").is_err());
    }

    #[test]
    fn requests_carry_the_headers_the_api_needs() {
        let t = Target::parse("http://h:1").unwrap();
        let req = t.post_json(
            Uri::from_static("/v1/orders"),
            Bytes::from_static(b"{}"),
            HeaderValue::from_static("k-1"),
        );
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.headers()[HOST], "h:1");
        assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(req.headers()["idempotency-key"], "k-1");
        let req = t.post_signed(
            Uri::from_static("/v1/webhooks/payments"),
            Bytes::from_static(b"{}"),
            HeaderValue::from_static("t=1,v1=00"),
        );
        assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(req.headers()["rushhour-signature"], "t=1,v1=00");
        assert!(req.headers().get("idempotency-key").is_none());
        let req = t.get(Uri::from_static("/health/live"));
        assert_eq!(req.method(), Method::GET);
        assert!(req.headers().get(CONTENT_TYPE).is_none());
        assert!(req.headers().get(hyper::header::ACCEPT_ENCODING).is_none());
        let t = t.with_headers(&["Accept-Encoding: gzip, br".parse().unwrap()]);
        let req = t.get(Uri::from_static("/v1/stores/s/menu"));
        assert_eq!(req.headers()[hyper::header::ACCEPT_ENCODING], "gzip, br");
        assert_eq!(req.headers()[HOST], "h:1", "the generator's own headers stay");
    }
}
