//! Tidy checks over the whole source tree, in the manner of rust-analyzer's
//! `tidy.rs`: rules that keep the code base easy to live in, made mechanical
//! so a review does not have to remember them.
//!
//! - every Rust source file opens with a `//!` comment saying why it exists;
//! - every dependency a crate declares is used by that crate (a leftover
//!   dependency costs build time on every machine and hides the real map);
//! - the heavy clients stay in the crates that adapt them: `sqlx` with
//!   PostgreSQL, `rdkafka` and `redis` each in a short, named list of
//!   `[dependencies]`, so `cargo check -p domain` (and `api`, `worker`, the
//!   binary) never compiles them. Tests may use them as dev-dependencies to
//!   look at what a backend really holds.
//!
//! Reading `std::env` outside configuration is refused by clippy
//! (`clippy.toml` `disallowed-methods`), not here.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The workspace's crates: `crates/<name>/`.
fn crates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn crate_sources(krate: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["src", "tests", "benches", "examples"] {
        rust_files(&krate.join(sub), &mut files);
    }
    if krate.join("build.rs").is_file() {
        files.push(krate.join("build.rs"));
    }
    files
}

#[test]
fn every_source_file_says_why_it_exists() {
    let root = workspace_root();
    let mut missing = Vec::new();
    for krate in crates() {
        for file in crate_sources(&krate) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(file.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` comment saying what lives there and why:\n  {}",
        missing.join("\n  ")
    );
}

/// The dependency names a crate's manifest declares, per table.
fn declared_dependencies(manifest: &toml::Table) -> Vec<(String, String)> {
    let mut deps = Vec::new();
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(toml::Value::Table(t)) = manifest.get(table) {
            // `foo = { package = "bar" }` is named `foo` in code: the key.
            deps.extend(t.keys().map(|name| (table.to_owned(), name.clone())));
        }
    }
    deps
}

#[test]
fn every_declared_dependency_is_used() {
    // Dependencies that are used without being named in code: they switch
    // on features or link native code for another crate.
    const USED_WITHOUT_NAME: &[&str] = &[];
    let mut unused = Vec::new();
    for krate in crates() {
        let manifest: toml::Table = std::fs::read_to_string(krate.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let sources: Vec<(bool, String)> = crate_sources(&krate)
            .into_iter()
            .map(|f| {
                let in_crate = f.starts_with(krate.join("src")) || f.ends_with("build.rs");
                (in_crate, std::fs::read_to_string(&f).unwrap())
            })
            .collect();
        for (table, name) in declared_dependencies(&manifest) {
            if USED_WITHOUT_NAME.contains(&name.as_str()) {
                continue;
            }
            let ident = name.replace('-', "_");
            let used = |text: &str| {
                text.contains(&format!("{ident}::"))
                    || text.contains(&format!("use {ident}"))
                    || text.contains(&format!("extern crate {ident}"))
                    || text.contains(&format!("{ident}!"))
                    || text.contains(&format!("#[{ident}::"))
            };
            // A normal dependency must be used by the crate's own code (one
            // only its tests use belongs in dev-dependencies); a
            // dev-dependency by anything.
            let found = sources
                .iter()
                .any(|(in_crate, text)| (table != "dependencies" || *in_crate) && used(text));
            if !found {
                let k = krate.file_name().unwrap().to_string_lossy().into_owned();
                unused.push(format!("{k}: [{table}] {name}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "declared but never named in the crate's code (remove them, or list them in USED_WITHOUT_NAME with the reason):\n  {}",
        unused.join("\n  ")
    );
}

/// Which crates may depend on a heavy client library, and why.
const CONFINED: &[(&str, &[&str])] = &[
    // The PostgreSQL adapters and their shared kit; testkit creates and drops
    // test schemas; bench measures the raw client as a baseline.
    (
        "sqlx-postgres",
        &["dbkit", "store", "queue", "eventlog", "testkit", "bench"],
    ),
    // The Kafka log; bench's raw producer is the ceiling scale intake is
    // measured against.
    ("rdkafka", &["eventlog", "bench"]),
    // The scale-mode cache and live feed, sessions and rate limiter, and
    // their shared connection plumbing (dbkit's `redis` feature).
    ("redis", &["cache", "dbkit", "sessions", "ratelimit"]),
    // OpenTelemetry: only `telemetry` knows its types; the rest of the tree
    // carries W3C `traceparent` strings (ARCHITECTURE.md, "Tracing").
    ("opentelemetry", &["telemetry"]),
    ("opentelemetry_sdk", &["telemetry"]),
    ("opentelemetry-otlp", &["telemetry"]),
    ("tracing-opentelemetry", &["telemetry"]),
];

fn uses_heavy_client(manifest: &toml::Table, client: &str) -> bool {
    let Some(toml::Value::Table(deps)) = manifest.get("dependencies") else {
        return false;
    };
    match client {
        "sqlx-postgres" => deps.get("sqlx").is_some_and(|spec| {
            spec.get("features")
                .and_then(|f| f.as_array())
                .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("postgres")))
        }),
        other => deps.contains_key(other),
    }
}

#[test]
fn heavy_clients_stay_in_their_adapters() {
    let mut strays = Vec::new();
    for krate in crates() {
        let name = krate.file_name().unwrap().to_string_lossy().into_owned();
        let manifest: toml::Table = std::fs::read_to_string(krate.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        for (client, allowed) in CONFINED {
            if uses_heavy_client(&manifest, client) && !allowed.contains(&name.as_str()) {
                strays.push(format!("{name} depends on {client} (allowed: {})", allowed.join(", ")));
            }
        }
    }
    assert!(
        strays.is_empty(),
        "heavy clients outside their adapters:\n  {}",
        strays.join("\n  ")
    );
}
