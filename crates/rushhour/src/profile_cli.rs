//! `rushhour profile <url> --key K [--seconds N] [-o file.svg]`: ask a
//! running instance for a CPU flamegraph over its HTTP API
//! (`GET /v1/admin/profile/cpu`, admin only) and save it. Like `monitor`,
//! it needs nothing but the URL and a key, so production can be profiled
//! from a laptop.

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
    /// How long to sample, 1 to 60 seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Where to write the flamegraph.
    #[arg(short = 'o', long = "output", default_value = "profile.svg")]
    pub output: PathBuf,
}

/// Take the profile and write it; returns the file and its size.
pub async fn run(args: &ProfileArgs) -> anyhow::Result<(PathBuf, usize)> {
    let base = args.url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("the URL must start with http:// or https:// (got {base:?})");
    }
    let http = reqwest::Client::builder()
        // The profile itself, then the time to symbolize and render it.
        .timeout(Duration::from_secs(args.seconds + 60))
        .build()
        .context("set up the HTTP client")?;
    let mut req = http.get(format!("{base}/v1/admin/profile/cpu?seconds={}", args.seconds));
    if let Some(k) = args.key.as_deref().filter(|k| !k.is_empty()) {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.with_context(|| format!("ask {base} for a profile"))?;
    let status = res.status();
    let body = res.bytes().await.context("read the profile")?;
    if !status.is_success() {
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        bail!(
            "{base} answered {status}: {} ({})",
            problem["code"].as_str().unwrap_or("?"),
            problem["detail"].as_str().unwrap_or("")
        );
    }
    std::fs::write(&args.output, &body).with_context(|| format!("write {}", args.output.display()))?;
    Ok((args.output.clone(), body.len()))
}
