//! Content codings for bodies rendered once and served many times (the
//! menu): `Accept-Encoding` negotiation (RFC 9110 §12.5.3), the codecs and
//! their levels, and the per-representation ETags.
//!
//! Why not tower-http's `CompressionLayer`: it compresses every response
//! on every request, and the menu's whole point is to do no per-request
//! work; here each coding is made once per menu snapshot
//! (`domain::MenuSnapshot::encode`) and a request only picks one. Why our
//! own parser: neither `http` nor `headers` parses `Accept-Encoding` with
//! its q-values, and tower-http keeps its parser private; the grammar is
//! small and the cases are pinned by the tests below.
//!
//! The levels are the densest each codec has (gzip 9, brotli 11, window
//! 2^22): a snapshot is compressed once per process per cache fill and
//! then served thousands of times a second, so bytes on the wire matter
//! and build time does not. Measured on the demo menu (5.2 kB) and on the
//! 200-item synced catalogue's menu in `docs/benchmarks.md`.

use std::convert::Infallible;
use std::io::Write as _;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use domain::Coding;

/// gzip's densest level; its cost is paid once per snapshot.
const GZIP_LEVEL: u32 = 9;
/// brotli's densest quality and its largest standard window (4 MiB, more
/// than any menu): once per snapshot, as above.
const BROTLI_QUALITY: u32 = 11;
const BROTLI_WINDOW: u32 = 22;

/// `body` compressed in `coding`.
pub fn compress(coding: Coding, body: &[u8]) -> Vec<u8> {
    match coding {
        Coding::Gzip => {
            let mut e =
                flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::new(GZIP_LEVEL));
            // Writing to a Vec cannot fail.
            e.write_all(body).expect("gzip into memory");
            e.finish().expect("gzip into memory")
        }
        Coding::Brotli => {
            let mut out = Vec::with_capacity(body.len() / 5);
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
                w.write_all(body).expect("brotli into memory");
            }
            out
        }
    }
}

/// The `Content-Encoding` token of `coding`.
pub fn token(coding: Coding) -> &'static str {
    match coding {
        Coding::Gzip => "gzip",
        Coding::Brotli => "br",
    }
}

/// The suffix that makes a representation's strong ETag its own (RFC 9110
/// §8.8.3: different bytes, different strong validator).
fn etag_suffix(coding: Coding) -> &'static str {
    match coding {
        Coding::Gzip => "-gz",
        Coding::Brotli => "-br",
    }
}

/// The ETag of one representation of the body whose identity ETag is
/// `etag` (quoted): `"abc"` → `"abc-br"`.
pub fn etag(etag: &str, coding: Option<Coding>) -> String {
    match coding {
        None => etag.to_owned(),
        Some(c) => {
            let opaque = etag.strip_suffix('"').unwrap_or(etag);
            format!("{opaque}{}\"", etag_suffix(c))
        }
    }
}

/// Every representation's ETag of one body, identity first.
pub fn all_etags(identity: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(None)
        .chain(Coding::ALL.into_iter().map(Some))
        .map(move |c| etag(identity, c))
}

/// The coding to answer with, from the request's `Accept-Encoding`;
/// `None` is identity (no coding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptEncoding(pub Option<Coding>);

impl<S: Send + Sync> FromRequestParts<S> for AcceptEncoding {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AcceptEncoding(negotiate(
            parts.headers.get_all(header::ACCEPT_ENCODING).iter(),
        )))
    }
}

/// Codings we can send, in the order preferred at equal q: brotli is the
/// densest, gzip the most widely understood.
const PREFERENCE: [Coding; 2] = [Coding::Brotli, Coding::Gzip];

/// Quality values in thousandths (RFC 9110 §12.4.2: at most 3 decimals).
type Q = u16;
const Q_MAX: Q = 1000;

/// What one `Accept-Encoding` (all its field lines) says.
#[derive(Debug, Default)]
struct Weights {
    gzip: Option<Q>,
    br: Option<Q>,
    identity: Option<Q>,
    star: Option<Q>,
}

impl Weights {
    fn parse<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Self {
        let mut w = Weights::default();
        for value in values {
            // A value that is not visible ASCII names nothing we can send.
            let Ok(value) = value.to_str() else { continue };
            for element in value.split(',') {
                let mut parts = element.split(';');
                let coding = parts.next().unwrap_or("").trim();
                if coding.is_empty() {
                    continue;
                }
                let q = parts
                    .find_map(|p| {
                        let (k, v) = p.split_once('=')?;
                        k.trim().eq_ignore_ascii_case("q").then(|| parse_q(v.trim()))
                    })
                    .unwrap_or(Q_MAX);
                let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    // RFC 9110 §8.4.1.3: x-gzip is gzip.
                    &mut w.gzip
                } else if coding.eq_ignore_ascii_case("br") {
                    &mut w.br
                } else if coding.eq_ignore_ascii_case("identity") {
                    &mut w.identity
                } else if coding == "*" {
                    &mut w.star
                } else {
                    continue;
                };
                // Named twice: the most generous weight counts.
                *slot = Some(slot.map_or(q, |old| old.max(q)));
            }
        }
        w
    }

    /// A coding is acceptable only if named, or covered by `*`.
    fn coding(&self, c: Coding) -> Q {
        let named = match c {
            Coding::Gzip => self.gzip,
            Coding::Brotli => self.br,
        };
        named.or(self.star).unwrap_or(0)
    }

    /// Identity competes with the codings only when named: unnamed, it is
    /// acceptable (RFC 9110) but least preferred, so `gzip;q=0.9` still
    /// means "gzip, please" rather than "rather not".
    fn identity(&self) -> Q {
        self.identity.unwrap_or(1)
    }
}

/// A qvalue (`0`, `0.5`, `1`, `1.000`); anything else reads as 0, so a
/// malformed weight refuses its coding rather than granting it.
fn parse_q(v: &str) -> Q {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + Q::from(b - b'0'));
    match int {
        "0" => thousandths,
        "1" if thousandths == 0 => Q_MAX,
        _ => 0,
    }
}

/// RFC 9110 §12.5.3: the acceptable coding with the highest q, brotli
/// before gzip at equal q, and either before identity unless identity is
/// named with a higher q (at equal q the client said it does not mind,
/// and fewer bytes is better for both). No
/// header, or an empty one, means identity. If the client refuses every
/// coding we have and identity too, it still gets identity: the RFC
/// allows a 406 there, but a menu nobody can read helps nobody more than
/// one it may not want.
pub fn negotiate<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<Coding> {
    let w = Weights::parse(values);
    let (best, q) = PREFERENCE
        .into_iter()
        .map(|c| (c, w.coding(c)))
        // `max_by_key` keeps the last of equals; reversing keeps the first.
        .rev()
        .max_by_key(|&(_, q)| q)?;
    (q > 0 && q >= w.identity()).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(values: &[&str]) -> Option<Coding> {
        let values: Vec<HeaderValue> = values.iter().map(|v| HeaderValue::from_str(v).unwrap()).collect();
        negotiate(values.iter())
    }

    #[test]
    fn brotli_then_gzip_then_identity() {
        assert_eq!(pick(&[]), None, "no header: no coding");
        assert_eq!(pick(&[""]), None, "an empty header asks for none");
        assert_eq!(pick(&["gzip, br"]), Some(Coding::Brotli), "what the bench sends");
        assert_eq!(pick(&["gzip, deflate, br, zstd"]), Some(Coding::Brotli), "Chrome");
        assert_eq!(
            pick(&["gzip, deflate"]),
            Some(Coding::Gzip),
            "curl --compressed, old clients"
        );
        assert_eq!(pick(&["deflate, zstd"]), None, "nothing we have");
        assert_eq!(pick(&["GZIP"]), Some(Coding::Gzip), "tokens are case-insensitive");
        assert_eq!(pick(&["x-gzip"]), Some(Coding::Gzip));
        assert_eq!(
            pick(&["gzip", "br"]),
            Some(Coding::Brotli),
            "several field lines are one list"
        );
    }

    #[test]
    fn q_values_decide_and_zero_refuses() {
        assert_eq!(pick(&["br;q=0.5, gzip"]), Some(Coding::Gzip));
        assert_eq!(pick(&["br;q=0.8, gzip;q=0.9"]), Some(Coding::Gzip));
        assert_eq!(
            pick(&["br ; Q=0.9 , gzip;q=0.9"]),
            Some(Coding::Brotli),
            "equal q: brotli"
        );
        assert_eq!(pick(&["br;q=0, gzip;q=0.1"]), Some(Coding::Gzip));
        assert_eq!(pick(&["br;q=0, gzip;q=0"]), None);
        assert_eq!(pick(&["br;q=0.000"]), None);
        assert_eq!(pick(&["br;q=1.000"]), Some(Coding::Brotli));
        assert_eq!(pick(&["br;q=0.001"]), Some(Coding::Brotli), "small but acceptable");
        for malformed in ["br;q=2", "br;q=abc", "br;q=0.0001", "br;q=-1", "br;q=1.5", "br;q="] {
            assert_eq!(pick(&[malformed]), None, "{malformed} reads as q=0");
        }
        assert_eq!(
            pick(&["br;level=5, gzip;q=0.5"]),
            Some(Coding::Brotli),
            "other parameters are ignored"
        );
    }

    #[test]
    fn identity_and_star() {
        assert_eq!(pick(&["identity"]), None);
        assert_eq!(pick(&["identity, gzip;q=0.5"]), None, "identity weighs more");
        assert_eq!(
            pick(&["identity;q=0.5, gzip;q=0.5"]),
            Some(Coding::Gzip),
            "equal q: compressed"
        );
        assert_eq!(pick(&["identity;q=0, gzip;q=0.1"]), Some(Coding::Gzip));
        assert_eq!(pick(&["*"]), Some(Coding::Brotli), "* covers every coding");
        assert_eq!(pick(&["*;q=0.5, gzip"]), Some(Coding::Gzip));
        assert_eq!(pick(&["*;q=0"]), None, "refuses all, identity served anyway");
        assert_eq!(pick(&["*;q=0, identity"]), None);
        assert_eq!(pick(&["br;q=0, *"]), Some(Coding::Gzip), "named q=0 beats *");
        assert_eq!(pick(&["gzip;q=0.2, *;q=0.1"]), Some(Coding::Gzip));
    }

    #[test]
    fn each_representation_has_its_own_etag() {
        assert_eq!(etag("\"abc\"", None), "\"abc\"");
        assert_eq!(etag("\"abc\"", Some(Coding::Brotli)), "\"abc-br\"");
        assert_eq!(etag("\"abc\"", Some(Coding::Gzip)), "\"abc-gz\"");
        let all: Vec<String> = all_etags("\"abc\"").collect();
        assert_eq!(all, ["\"abc\"", "\"abc-gz\"", "\"abc-br\""]);
    }

    #[test]
    fn codecs_round_trip() {
        use std::io::Read as _;
        let body = domain::MenuSnapshot::new(domain::menu::demo_menu()).json;
        let gz = compress(Coding::Gzip, &body);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, body);
        let br = compress(Coding::Brotli, &body);
        let mut back = Vec::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut back).unwrap();
        assert_eq!(back, body);
        assert!(
            br.len() < gz.len() && gz.len() < body.len() / 3,
            "{} {} {}",
            br.len(),
            gz.len(),
            body.len()
        );
    }
}
