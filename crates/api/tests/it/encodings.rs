//! The menu's precompressed representations through the whole router:
//! each decodes to the identity body byte for byte, `Accept-Encoding`
//! (q-values, `identity`, `*`) picks one, `Vary` and per-encoding ETags
//! are on every answer, any encoding's ETag revalidates, and HEAD
//! describes the body a GET would send. The negotiation's corner cases
//! are unit-tested in `api::encoding`; these check the wiring.

use std::io::Read as _;

use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::json;

use crate::harness::{Answer, Harness, STORE, harness};

fn menu_uri() -> String {
    format!("/v1/stores/{STORE}/menu")
}

async fn menu(h: &Harness, accept: Option<&str>, inm: Option<&str>) -> Answer {
    let mut req = Request::get(menu_uri());
    if let Some(a) = accept {
        req = req.header(header::ACCEPT_ENCODING, a);
    }
    if let Some(t) = inm {
        req = req.header(header::IF_NONE_MATCH, t);
    }
    h.send(req.body(Body::empty()).unwrap()).await
}

fn decode(a: &Answer) -> Vec<u8> {
    let mut out = Vec::new();
    match a.headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap()) {
        None => out.extend_from_slice(&a.body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&a.body[..]).read_to_end(&mut out).unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(&a.body[..], 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
    out
}

fn header(a: &Answer, name: header::HeaderName) -> Option<&str> {
    a.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_encoding_decodes_to_the_identity_body() {
    let h = harness().await;
    let plain = menu(&h, None, None).await;
    assert_eq!(plain.status, 200);
    assert_eq!(header(&plain, header::CONTENT_ENCODING), None, "no header, no coding");
    assert_eq!(header(&plain, header::VARY), Some("Accept-Encoding"));
    let etag = header(&plain, header::ETAG).unwrap().to_owned();
    assert_eq!(plain.json()["store"]["id"], STORE);

    for (accept, coding, suffix) in [
        ("gzip, br", Some("br"), "-br"),
        ("gzip, deflate, br, zstd", Some("br"), "-br"),
        ("gzip", Some("gzip"), "-gz"),
        ("br;q=0.5, gzip", Some("gzip"), "-gz"),
        ("identity, gzip;q=0.5", None, ""),
        ("deflate", None, ""),
        ("", None, ""),
        ("*;q=0", None, ""),
    ] {
        // Twice: the first request may compress, the second must find it made.
        for _ in 0..2 {
            let a = menu(&h, Some(accept), None).await;
            assert_eq!(a.status, 200, "{accept}");
            assert_eq!(header(&a, header::CONTENT_ENCODING), coding, "{accept}");
            assert_eq!(header(&a, header::VARY), Some("Accept-Encoding"), "{accept}");
            assert_eq!(header(&a, header::CONTENT_TYPE), Some("application/json"));
            assert_eq!(header(&a, header::CACHE_CONTROL), Some("public, max-age=30"));
            let want = format!("{}{suffix}\"", etag.trim_end_matches('"'));
            assert_eq!(header(&a, header::ETAG), Some(want.as_str()), "{accept}");
            let length: usize = header(&a, header::CONTENT_LENGTH).unwrap().parse().unwrap();
            assert_eq!(length, a.body.len(), "{accept}: Content-Length is the sent bytes");
            if coding.is_some() {
                assert!(a.body.len() < plain.body.len() / 3, "{accept}: {} bytes", a.body.len());
            }
            assert_eq!(decode(&a), plain.body.to_vec(), "{accept}: byte for byte");
        }
    }
}

#[tokio::test]
async fn any_encodings_etag_revalidates_and_304s_vary() {
    let h = harness().await;
    let etag = header(&menu(&h, None, None).await, header::ETAG).unwrap().to_owned();
    let opaque = etag.trim_matches('"');
    let tags = [etag.clone(), format!("\"{opaque}-gz\""), format!("\"{opaque}-br\"")];
    for accept in [None, Some("gzip"), Some("gzip, br")] {
        let expected = match accept {
            None => etag.clone(),
            Some("gzip") => tags[1].clone(),
            Some(_) => tags[2].clone(),
        };
        for held in tags
            .iter()
            .chain([&format!("W/{}", tags[2]), &format!("\"zzz\", {}", tags[1])])
        {
            let a = menu(&h, accept, Some(held)).await;
            assert_eq!(a.status, 304, "{accept:?} holding {held}");
            assert!(a.body.is_empty());
            assert_eq!(
                header(&a, header::ETAG),
                Some(expected.as_str()),
                "the 304 names what a 200 would send"
            );
            assert_eq!(header(&a, header::VARY), Some("Accept-Encoding"));
            assert_eq!(header(&a, header::CONTENT_ENCODING), None);
        }
        // Another snapshot's tags, with or without a suffix, match nothing.
        for stale in ["\"0000-br\"", "\"0000\"", format!("\"{opaque}-zz\"").as_str()] {
            assert_eq!(menu(&h, accept, Some(stale)).await.status, 200, "{stale}");
        }
    }

    // 86 the latte: a new snapshot, so every old tag is stale, compressed
    // or not, and the new body is compressed afresh.
    let a = h
        .staff(
            Method::PUT,
            &format!("/v1/stores/{STORE}/items/latte/availability"),
            Some(json!({"available": false})),
        )
        .await;
    assert_eq!(a.status, 204);
    for held in &tags {
        let a = menu(&h, Some("gzip, br"), Some(held)).await;
        assert_eq!(a.status, 200, "{held} is the old menu's");
        assert_ne!(header(&a, header::ETAG), Some(tags[2].as_str()));
        let body: serde_json::Value = serde_json::from_slice(&decode(&a)).unwrap();
        let latte = body["categories"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["items"].as_array().unwrap())
            .find(|i| i["sku"] == "latte")
            .unwrap();
        assert_eq!(latte["available"], false);
    }
}

#[tokio::test]
async fn head_describes_the_negotiated_body() {
    let h = harness().await;
    let get = menu(&h, Some("gzip, br"), None).await;
    let req = Request::head(menu_uri())
        .header(header::ACCEPT_ENCODING, "gzip, br")
        .body(Body::empty())
        .unwrap();
    let head = h.send(req).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(header(&head, header::CONTENT_ENCODING), Some("br"));
    assert_eq!(header(&head, header::VARY), Some("Accept-Encoding"));
    assert_eq!(header(&head, header::ETAG), header(&get, header::ETAG));
    assert_eq!(
        header(&head, header::CONTENT_LENGTH),
        Some(get.body.len().to_string().as_str())
    );
}
