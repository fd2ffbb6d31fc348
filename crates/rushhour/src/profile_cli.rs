//! `rushhour profile <url> --key K [--seconds N] [-o file.svg]`: ask a
//! running instance for a CPU flamegraph over its HTTP API
//! (`GET /v1/admin/profile/cpu`, admin only) and save it. With `--heap
//! [--format svg|pprof]`, its live allocations by call site instead
//! (`GET /v1/admin/profile/heap`): a flamegraph, or pprof protobuf for
//! `go tool pprof`. Like `monitor`, it needs nothing but the URL and a
//! key, so production can be profiled from a laptop.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

#[derive(clap::Args, Debug, Clone)]
pub struct ProfileArgs {
    /// Base URL of the instance, e.g. http://127.0.0.1:8080.
    pub url: String,
    /// An admin API key (`rhk_…`) or session token (`rhs_…`).
    #[arg(long, env = "RUSHHOUR_MONITOR_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// A heap profile (live allocations by call site) instead of a CPU one.
    #[arg(long)]
    pub heap: bool,
    /// CPU: how long to sample, 1 to 60 seconds (default 10). Heap: how
    /// long to record allocations, 1 to 600 (default 30), unless the
    /// instance records them from start ([profiling] heap = true).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Heap profile's format: `svg` (a flamegraph) or `pprof` (gzipped
    /// protobuf, for `go tool pprof -http=: heap.pb.gz`).
    #[arg(long, value_enum, default_value_t = HeapFormat::Svg, requires = "heap")]
    pub format: HeapFormat,
    /// Where to write it (default profile.svg; heap.svg or heap.pb.gz with --heap).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapFormat {
    Svg,
    Pprof,
}

/// A profile written to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub file: PathBuf,
    pub bytes: usize,
    /// What it covers: `10 s` of CPU, or the heap's `x-heap-window`.
    pub covers: String,
    pub heap: bool,
}

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.heap {
            let covers = if self.covers == "since-start" {
                "live allocations since start".to_owned()
            } else if let Some(secs) = self.covers.strip_suffix('s') {
                format!("allocated in the last {secs} s and still live")
            } else {
                self.covers.clone()
            };
            write!(
                f,
                "heap profile ({covers}) written to {} ({} bytes)",
                self.file.display(),
                self.bytes
            )
        } else {
            write!(
                f,
                "CPU profile of {} written to {} ({} bytes)",
                self.covers,
                self.file.display(),
                self.bytes
            )
        }
    }
}

/// Take the profile and write it.
pub async fn run(args: &ProfileArgs) -> anyhow::Result<Taken> {
    let base = args.url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("the URL must start with http:// or https:// (got {base:?})");
    }
    // The server's defaults, repeated so the timeout and the message know.
    let (route, default_seconds, default_output) = match (args.heap, args.format) {
        (false, _) => ("cpu?", 10, "profile.svg"),
        (true, HeapFormat::Svg) => ("heap?format=svg&", 30, "heap.svg"),
        (true, HeapFormat::Pprof) => ("heap?format=pprof&", 30, "heap.pb.gz"),
    };
    let seconds = args.seconds.unwrap_or(default_seconds);
    let url = format!("{base}/v1/admin/profile/{route}seconds={seconds}");
    let http = reqwest::Client::builder()
        // The profile itself, then the time to symbolize and render it.
        .timeout(Duration::from_secs(seconds + 60))
        .build()
        .context("set up the HTTP client")?;
    let mut req = http.get(url);
    if let Some(k) = args.key.as_deref().filter(|k| !k.is_empty()) {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.with_context(|| format!("ask {base} for a profile"))?;
    let status = res.status();
    let window = res
        .headers()
        .get("x-heap-window")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.bytes().await.context("read the profile")?;
    if !status.is_success() {
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        bail!(
            "{base} answered {status}: {} ({})",
            problem["code"].as_str().unwrap_or("?"),
            problem["detail"].as_str().unwrap_or("")
        );
    }
    let file = args.output.clone().unwrap_or_else(|| PathBuf::from(default_output));
    std::fs::write(&file, &body).with_context(|| format!("write {}", file.display()))?;
    Ok(Taken {
        file,
        bytes: body.len(),
        covers: if args.heap {
            window.unwrap_or_else(|| format!("{seconds}s"))
        } else {
            format!("{seconds} s")
        },
        heap: args.heap,
    })
}
