//! The web crate's one integration-test binary: the embedded assets
//! (hashed names, encodings, 304, caching headers) and every page's
//! rendering (status, content type, security headers, key elements),
//! driven in-process through the router with a real embedded store
//! seeded with the demo menu. Browser behaviour is tested end to end in
//! `crates/rushhour/tests/it/browser*`.

mod assets;
mod harness;
mod pages;
