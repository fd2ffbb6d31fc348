//! `rushhour monitor <url>`: a live terminal view of a running instance, in
//! the style of `htop` and `pg_activity`, drawn with ratatui over crossterm.
//!
//! It reads only the HTTP API (`GET /v1/admin/figures`, once per refresh)
//! with an admin credential — an API key or a session token, from `--key`
//! or `RUSHHOUR_MONITOR_KEY` — and never a database URL: an operator can
//! watch production from a laptop with nothing but a key, and the monitor
//! cannot do anything the key could not.
//!
//! When the server stops answering, the last good figures stay on screen
//! under a STALE banner with their age, and polling goes on; the next good
//! answer clears it. `--once` prints one text snapshot and `--json` the
//! figures object, for scripts; both exit non-zero with a plain message
//! when the server did not answer.
//!
//! Rendering is a pure function of [`view::Screen`] (`view::draw`), so the
//! tests draw frames on ratatui's `TestBackend` and read the text back.

pub mod view;

use anyhow::{Context, bail};
use std::time::{Duration, Instant};

use view::Screen;

#[derive(clap::Args, Debug, Clone)]
pub struct MonitorArgs {
    /// Base URL of the instance, e.g. http://127.0.0.1:8080.
    pub url: String,
    /// An admin API key (`rhk_…`) or session token (`rhs_…`).
    #[arg(long, env = "RUSHHOUR_MONITOR_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Seconds between refreshes.
    #[arg(short = 'r', long = "refresh", default_value_t = 1.0)]
    pub refresh: f64,
    /// Print one text snapshot and exit.
    #[arg(long, conflicts_with = "json")]
    pub once: bool,
    /// Print the figures as one JSON object and exit.
    #[arg(long)]
    pub json: bool,
}

/// How long one poll may take before it counts as no answer.
const POLL_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads the figures of one instance.
pub struct FiguresClient {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
}

impl FiguresClient {
    pub fn new(base: &str, key: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("the URL must start with http:// or https:// (got {base:?})");
        }
        let http = reqwest::Client::builder()
            .timeout(POLL_TIMEOUT)
            .build()
            .context("set up the HTTP client")?;
        Ok(Self {
            http,
            url: format!("{base}/v1/admin/figures"),
            key: key.filter(|k| !k.is_empty()),
        })
    }

    /// One poll: the figures as JSON, or a one-line reason fit for an
    /// operator (never the credential).
    pub async fn fetch_json(&self) -> Result<serde_json::Value, String> {
        let mut req = self.http.get(&self.url);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} s", POLL_TIMEOUT.as_secs())
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                format!("request failed: {e}")
            }
        })?;
        let status = res.status();
        if !status.is_success() {
            let code = res
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(match status.as_u16() {
                401 => format!("the server refused the credential (401 {code}); pass an admin key with --key"),
                403 => format!("the credential is not an admin's (403 {code})"),
                s => format!("the server answered {s} {code}"),
            });
        }
        res.json().await.map_err(|e| format!("unreadable answer: {e}"))
    }

    pub async fn fetch(&self) -> Result<api::FiguresView, String> {
        let v = self.fetch_json().await?;
        serde_json::from_value(v).map_err(|e| format!("unexpected figures: {e}"))
    }
}

/// Run the monitor as the arguments say; `Ok` for exit 0.
pub async fn run(args: &MonitorArgs) -> anyhow::Result<()> {
    let client = FiguresClient::new(&args.url, args.key.clone())?;
    if args.json {
        let v = client
            .fetch_json()
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.url))?;
        println!("{v}");
        return Ok(());
    }
    if args.once {
        let f = client.fetch().await.map_err(|e| anyhow::anyhow!("{}: {e}", args.url))?;
        print!("{}", view::snapshot_text(&args.url, &f));
        return Ok(());
    }
    if !(0.1..=3600.0).contains(&args.refresh) {
        bail!("--refresh must be 0.1 to 3600 seconds");
    }
    live(client, args).await
}

/// The interactive view: poll every refresh, draw, react to keys.
async fn live(client: FiguresClient, args: &MonitorArgs) -> anyhow::Result<()> {
    let keys = view::spawn_key_reader();
    let mut terminal = ratatui::try_init().context("set up the terminal")?;
    let result = live_loop(&mut terminal, client, args, keys).await;
    ratatui::restore();
    result
}

async fn live_loop(
    terminal: &mut ratatui::DefaultTerminal,
    client: FiguresClient,
    args: &MonitorArgs,
    mut keys: tokio::sync::mpsc::Receiver<view::Key>,
) -> anyhow::Result<()> {
    let mut screen = Screen::new(args.url.clone(), Duration::from_secs_f64(args.refresh));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.refresh));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !screen.paused {
                    let answer = client.fetch().await;
                    screen.update(answer, Instant::now());
                }
            }
            key = keys.recv() => match key {
                Some(view::Key::Quit) | None => return Ok(()),
                Some(view::Key::Pause) => screen.paused = !screen.paused,
                Some(view::Key::Redraw) => {}
            },
        }
        terminal
            .draw(|f| view::draw(f, &screen, Instant::now()))
            .context("draw")?;
    }
}
