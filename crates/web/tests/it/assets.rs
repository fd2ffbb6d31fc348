//! Assets: content-hashed names, the best encoding the client accepts,
//! `ETag` per encoding, 304 on `If-None-Match`, a year's `immutable`
//! caching, and every module's imports rewritten to hashed names.

use axum::http::{StatusCode, header};
use std::io::Read;

use crate::harness::pages;

#[test]
fn every_asset_has_a_content_hashed_name() {
    assert!(
        web::assets::ASSETS.len() >= 10,
        "the stylesheet and the modules are embedded"
    );
    for a in web::assets::ASSETS {
        let (stem, ext) = a.logical.rsplit_once('.').unwrap();
        let hash = a
            .name
            .strip_prefix(&format!("{stem}."))
            .and_then(|r| r.strip_suffix(&format!(".{ext}")))
            .unwrap_or_else(|| panic!("{} is not {stem}.<hash>.{ext}", a.name));
        assert_eq!(hash.len(), 12, "{}", a.name);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{}", a.name);
        assert_eq!(web::assets::url(a.logical), format!("/assets/{}", a.name));
    }
}

#[test]
fn modules_import_each_other_by_hashed_name() {
    let board = web::assets::ASSETS.iter().find(|a| a.logical == "board.js").unwrap();
    let text = std::str::from_utf8(board.raw).unwrap();
    let common = web::assets::ASSETS.iter().find(|a| a.logical == "common.js").unwrap();
    assert!(
        text.contains(&format!("\"./{}\"", common.name)),
        "board.js imports the hashed common.js"
    );
    assert!(!text.contains("\"./common.js\""), "no unhashed import is left");
}

#[tokio::test]
async fn assets_are_served_in_the_best_encoding_the_client_accepts() {
    let p = pages().await;
    let css = web::assets::url("app.css");
    let raw = web::assets::ASSETS.iter().find(|a| a.logical == "app.css").unwrap().raw;

    let br = p.get_with(&css, &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(br.status, StatusCode::OK);
    assert_eq!(br.headers[header::CONTENT_ENCODING], "br");
    assert_eq!(br.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(br.headers[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert_eq!(br.headers[header::VARY], "Accept-Encoding");
    let mut out = Vec::new();
    brotli_decompress(&br.body, &mut out);
    assert_eq!(out, raw, "brotli decodes to the file");
    assert!(
        br.body.len() < raw.len() / 2,
        "compressed: {} of {}",
        br.body.len(),
        raw.len()
    );

    let gz = p.get_with(&css, &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.headers[header::CONTENT_ENCODING], "gzip");
    let mut out = Vec::new();
    flate2_read(&gz.body, &mut out);
    assert_eq!(out, raw, "gzip decodes to the file");

    let plain = p.get(&css).await;
    assert!(plain.headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(plain.body, raw);

    let tags = [&br, &gz, &plain].map(|a| a.headers[header::ETAG].to_str().unwrap().to_owned());
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2],
        "one strong ETag per encoding: {tags:?}"
    );

    let js = p.get(&web::assets::url("board.js")).await;
    assert_eq!(js.headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(js.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[tokio::test]
async fn a_known_etag_answers_304_and_an_unknown_name_404() {
    let p = pages().await;
    let url = web::assets::url("common.js");
    let first = p.get_with(&url, &[("accept-encoding", "br")]).await;
    let etag = first.headers[header::ETAG].to_str().unwrap().to_owned();
    let again = p
        .get_with(&url, &[("accept-encoding", "br"), ("if-none-match", &etag)])
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.headers[header::ETAG], etag.as_str());
    // Another encoding's tag of the same content is just as current.
    let other = p
        .get_with(&url, &[("accept-encoding", "gzip"), ("if-none-match", &etag)])
        .await;
    assert_eq!(other.status, StatusCode::NOT_MODIFIED);
    let stale = p.get_with(&url, &[("if-none-match", "\"0000\"")]).await;
    assert_eq!(stale.status, StatusCode::OK);

    assert_eq!(
        p.get("/assets/common.000000000000.js").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(p.get("/assets/common.js").await.status, StatusCode::NOT_FOUND);
}

fn brotli_decompress(data: &[u8], out: &mut Vec<u8>) {
    let mut r = brotli::Decompressor::new(data, 4096);
    r.read_to_end(out).unwrap();
}

fn flate2_read(data: &[u8], out: &mut Vec<u8>) {
    let mut r = flate2::read::GzDecoder::new(data);
    r.read_to_end(out).unwrap();
}
