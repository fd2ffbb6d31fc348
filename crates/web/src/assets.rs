//! The embedded assets (CSS and ES modules from `crates/web/assets/`),
//! hashed and precompressed by `build.rs`, served at `/assets/{name}`.
//!
//! A hashed name never changes content, so every answer may be cached
//! for a year (`immutable`); the encoding is chosen from the client's
//! `Accept-Encoding` (brotli, then gzip, then none) among the three
//! copies made at build time — nothing is compressed per request. Each
//! encoding has its own strong `ETag` (RFC 9110 §8.8.3: different bytes,
//! different tag), and `If-None-Match` with any of them answers 304.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::LazyLock;

/// One embedded asset: its source name, its hashed name, and the three
/// encodings of its bytes.
#[derive(Debug)]
pub struct Asset {
    /// The name under `assets/` (`board.js`).
    pub logical: &'static str,
    /// The content-hashed name it is served under (`board.3f9a1c2b4d5e.js`).
    pub name: &'static str,
    /// Strong validator of the identity encoding, quoted.
    pub etag: &'static str,
    pub mime: &'static str,
    pub raw: &'static [u8],
    pub gzip: &'static [u8],
    pub br: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

static BY_NAME: LazyLock<HashMap<&'static str, &'static Asset>> =
    LazyLock::new(|| ASSETS.iter().map(|a| (a.name, a)).collect());
static BY_LOGICAL: LazyLock<HashMap<&'static str, &'static Asset>> =
    LazyLock::new(|| ASSETS.iter().map(|a| (a.logical, a)).collect());

/// The URL of the asset `logical` (`"board.js"` → `/assets/board.<hash>.js`).
///
/// # Panics
/// When no such file is under `assets/`: a page naming a missing asset is
/// a programming error every page test catches.
pub fn url(logical: &str) -> String {
    let a = BY_LOGICAL
        .get(logical)
        .unwrap_or_else(|| panic!("no asset named {logical} under crates/web/assets"));
    format!("/assets/{}", a.name)
}

/// The asset served under `name`, if any.
pub fn by_name(name: &str) -> Option<&'static Asset> {
    BY_NAME.get(name).copied()
}

/// A content coding the client may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    fn token(self) -> Option<&'static str> {
        match self {
            Encoding::Brotli => Some("br"),
            Encoding::Gzip => Some("gzip"),
            Encoding::Identity => None,
        }
    }
}

/// The best encoding `Accept-Encoding` allows: brotli, then gzip, then
/// none. A coding with `q=0` is refused; `*` stands for any coding not
/// named.
pub fn negotiate(accept: Option<&str>) -> Encoding {
    let Some(accept) = accept else {
        return Encoding::Identity;
    };
    let mut q = HashMap::new();
    for part in accept.split(',') {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let weight = it
            .find_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok()))
            .unwrap_or(1.0);
        if !coding.is_empty() {
            q.insert(coding, weight);
        }
    }
    let allowed = |c: &str| match q.get(c).or_else(|| q.get("*")) {
        Some(w) => *w > 0.0,
        None => false,
    };
    if allowed("br") {
        Encoding::Brotli
    } else if allowed("gzip") {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

impl Asset {
    /// The bytes and the ETag of one encoding.
    pub fn encoded(&self, e: Encoding) -> (&'static [u8], String) {
        let tag = self.etag.trim_matches('"');
        match e {
            Encoding::Brotli => (self.br, format!("\"{tag}-br\"")),
            Encoding::Gzip => (self.gzip, format!("\"{tag}-gz\"")),
            Encoding::Identity => (self.raw, self.etag.to_owned()),
        }
    }

    /// Whether an `If-None-Match` value names this asset (any encoding).
    fn matches(&self, inm: &str) -> bool {
        let tag = self.etag.trim_matches('"');
        inm.split(',')
            .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
            .any(|t| t == "*" || t == tag || t.strip_prefix(tag).is_some_and(|rest| rest == "-br" || rest == "-gz"))
    }
}

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = by_name(&name) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let encoding = negotiate(headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
    let (body, etag) = asset.encoded(encoding);
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex ETag"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let inm = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if inm.is_some_and(|v| asset.matches(v)) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    if let Some(token) = encoding.token() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
    }
    (StatusCode::OK, h, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_brotli_and_honours_q_zero() {
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd")), Encoding::Brotli);
        assert_eq!(negotiate(Some("gzip")), Encoding::Gzip);
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0.5")), Encoding::Gzip);
        assert_eq!(negotiate(Some("*")), Encoding::Brotli);
        assert_eq!(negotiate(Some("*;q=0, identity")), Encoding::Identity);
        assert_eq!(negotiate(None), Encoding::Identity);
        assert_eq!(negotiate(Some("")), Encoding::Identity);
    }
}
