//! `HttpWebhookSender`: the outbound webhooks' HTTP client (the
//! `domain::ports::WebhookSender` port), here because this crate already
//! owns the process's outbound HTTP stack: reqwest over rustls with the ring
//! provider, trusting the system roots and an optional private CA
//! (`tls_config`, shared with `UpstreamClient`).
//!
//! One client (one connection pool) for every subscriber: keep-alive
//! connections are reused per host. Every request carries its own deadline
//! (connect included), so a receiver that never answers costs one
//! delivery's timeout, and only on that subscriber's job. Redirects are not
//! followed: a signed body is for the URL the admin registered.

use async_trait::async_trait;
use domain::ports::{Outgoing, SentResponse, WebhookSender};
use domain::webhooks::BODY_EXCERPT;

use crate::client::{ConfigError, tls_config};

#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    http: reqwest::Client,
}

impl HttpWebhookSender {
    /// A sender trusting the system roots and the CAs in `ca_file`.
    pub fn new(ca_file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(ca_file)?)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rushhour-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self { http })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn post(&self, req: Outgoing<'_>) -> Result<SentResponse, String> {
        let mut builder = self.http.post(req.url).timeout(req.timeout).body(req.body.to_vec());
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        let mut resp = builder.send().await.map_err(describe)?;
        let status = resp.status().as_u16();
        let body = read_excerpt(&mut resp, BODY_EXCERPT).await;
        Ok(SentResponse { status, body })
    }
}

/// reqwest's error with its causes (e.g. "connection refused"), which its
/// `Display` alone leaves out.
fn describe(e: reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The first `max` bytes of the body as lossy UTF-8; the rest is not
/// read. A body that fails half-way keeps what arrived.
async fn read_excerpt(resp: &mut reqwest::Response, max: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(max);
    String::from_utf8_lossy(&buf).into_owned()
}
