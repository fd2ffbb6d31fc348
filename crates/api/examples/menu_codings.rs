//! How big and how slow each gzip level and brotli quality is on real menu
//! bodies: the measurement behind the levels `api::encoding` compresses
//! menus at (once per snapshot, so size matters and build time barely
//! does). Kept as an example rather than a criterion bench because the
//! question is a table of sizes beside times, asked once per codec change,
//! not a regression to track.
//!
//! ```sh
//! cargo run --release -p api --example menu_codings               # the demo menu
//! cargo run --release -p api --example menu_codings -- menu.json  # any body, e.g.
//! # curl -s localhost:8080/v1/stores/demo-downtown/menu > menu.json
//! ```

use std::io::Write as _;
use std::time::{Duration, Instant};

fn main() {
    let mut bodies: Vec<(String, Vec<u8>)> = vec![(
        "demo menu".into(),
        domain::MenuSnapshot::new(domain::menu::demo_menu()).json.to_vec(),
    )];
    for path in std::env::args().skip(1) {
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        bodies.push((path, body));
    }
    for (name, body) in &bodies {
        println!("{name}: {} bytes identity", body.len());
        println!("  {:<12} {:>8} {:>7} {:>10}", "coding", "bytes", "ratio", "build");
        for level in [1, 6, 9] {
            let (out, t) = time(|| gzip(body, level));
            row(&format!("gzip -{level}"), out, body.len(), t);
        }
        for quality in [4, 6, 9, 10, 11] {
            let (out, t) = time(|| brotli(body, quality));
            row(&format!("br q{quality}"), out, body.len(), t);
        }
    }
}

fn row(what: &str, out: usize, identity: usize, t: Duration) {
    println!(
        "  {what:<12} {out:>8} {:>6.1}% {:>8.2}ms",
        out as f64 * 100.0 / identity as f64,
        t.as_secs_f64() * 1e3
    );
}

/// The median of a few builds (the first warms the allocator and caches).
fn time(f: impl Fn() -> Vec<u8>) -> (usize, Duration) {
    let mut times = Vec::new();
    let mut len = 0;
    for _ in 0..7 {
        let start = Instant::now();
        len = f().len();
        times.push(start.elapsed());
    }
    times.sort();
    (len, times[times.len() / 2])
}

fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

fn brotli(body: &[u8], quality: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, quality, 22);
        w.write_all(body).unwrap();
    }
    out
}
