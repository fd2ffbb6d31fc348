//! The load engine: workers that send requests closed- or open-loop, record
//! outcomes, and a report over the measured window.
//!
//! The client runs on the same small machine as the server, so every
//! request it spends CPU on is stolen from the thing being measured. Hence:
//! a fixed set of long-lived worker tasks (no task per request, no channel
//! between a scheduler and senders), order bodies rendered before the clock
//! starts, and sharded recording (see `stats.rs`).
//!
//! The HTTP client is one `reqwest::Client` (HTTP/1 only, keep-alive, pool
//! sized to the worker count). Driving hyper directly would save reqwest's
//! per-request URL clone, header map and boxed future, a few hundred
//! nanoseconds against tens of microseconds of server work per request;
//! not enough to justify maintaining our own connection handling, so
//! reqwest it is until a profile says otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Client, Response, StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::{LoadConfig, Mix, Mode, Op, Picker};
use super::order::{BODY_POOL, OrderMenu};
use super::stats::{ErrorKind, OpReport, OpStats, Outcome, Recorder, render_table};

/// Orders placed before the clock starts when the mix reads order status,
/// so status reads have ids to ask for from the first request on.
const SEED_ORDERS: usize = 16;
/// Ids each worker remembers for status reads; recent orders are what a
/// customer polls.
const ID_RING: usize = 64;
/// tokio's timer has millisecond granularity, so sleeping until exactly the
/// intended send time would wake up to 1 ms late and add that to every
/// open-loop latency. Waking this much early and measuring an early request
/// from its actual send time keeps the schedule and the latency honest.
const TIMER_SLACK: Duration = Duration::from_millis(1);
/// How long an open loop keeps working off a backlog after the schedule
/// ends. Requests still unsent then are reported as `missed`.
const OPEN_LOOP_GRACE: Duration = Duration::from_secs(2);
/// Progress bar refresh period.
const TICK: Duration = Duration::from_millis(250);

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// How the caller wants the run to interact with the terminal.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Draw a progress bar on stderr (the caller decides about TTYs).
    pub progress: bool,
    /// First Ctrl-C ends the run early and still reports; a second aborts.
    /// Off when an outer caller (the suite) owns Ctrl-C.
    pub stop_on_ctrl_c: bool,
}

/// Everything a run measured, serializable for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub store: String,
    pub mode: Mode,
    pub connections: usize,
    pub rate: Option<f64>,
    pub mix: Mix,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    /// The window the rates are computed over: `duration`, or less when
    /// the run was interrupted.
    pub window_secs: f64,
    pub interrupted: bool,
    /// Open loop: scheduled requests never sent because the server fell
    /// too far behind. Non-zero means the latencies are understated.
    pub missed: Option<u64>,
    pub ops: Vec<OpReport>,
    pub overall: OpReport,
}

impl LoadReport {
    pub fn op(&self, op: Op) -> Option<&OpReport> {
        self.ops.iter().find(|r| r.op == op.name())
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let shape = match (self.mode, self.rate) {
            (Mode::Open, Some(rate)) => {
                format!("open loop, {rate} req/s, up to {} in flight", self.connections)
            }
            _ => format!("closed loop, {} connections", self.connections),
        };
        let mut out = format!(
            "rushhour bench → {} ({shape}, mix {})\nmeasured {:.1} s after {:.1} s warm-up{}\n\n",
            self.url,
            self.mix,
            self.window_secs,
            self.warmup_secs,
            if self.interrupted { " (interrupted)" } else { "" },
        );
        let mut rows = self.ops.clone();
        if rows.len() > 1 {
            rows.push(self.overall.clone());
        }
        out.push_str(&render_table(&rows));
        if let Some(missed) = self.missed.filter(|m| *m > 0) {
            out.push_str(&format!(
                "\nmissed {missed} scheduled requests: the server fell behind the schedule, so latencies are understated\n"
            ));
        }
        out
    }
}

/// Run one load test against `cfg.url` and report on the measured window.
pub async fn run_load(cfg: &LoadConfig, opts: RunOptions) -> anyhow::Result<LoadReport> {
    let client = build_client(cfg)?;
    let urls = Urls::new(cfg)?;
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let (bodies, seed_ids) = prepare(&client, &urls, cfg, &mut rng).await?;

    let start = Instant::now();
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let scheduled = cfg.rate.map(|rate| scheduled_count(cfg.warmup + cfg.duration, rate));
    let ctx = Arc::new(Ctx {
        client,
        urls,
        bodies,
        seed_ids,
        picker: cfg.mix.picker(),
        recorder: Recorder::new(cfg.connections.min(16)),
        start,
        warm_end,
        end,
        rate: cfg.rate,
        scheduled: scheduled.unwrap_or(0),
        next_ticket: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    let mut workers = JoinSet::new();
    for id in 0..cfg.connections {
        let ctx = Arc::clone(&ctx);
        let seed = rng.random();
        match cfg.mode {
            Mode::Closed => workers.spawn(closed_worker(ctx, id, seed)),
            Mode::Open => workers.spawn(open_worker(ctx, id, seed)),
        };
    }
    let progress = opts.progress.then(|| spawn_progress(Arc::clone(&ctx)));

    let mut stopped_at = None;
    let joined = join_all(&mut workers);
    tokio::pin!(joined);
    if opts.stop_on_ctrl_c {
        tokio::select! {
            r = &mut joined => r?,
            _ = tokio::signal::ctrl_c() => {
                ctx.stop.store(true, Ordering::Relaxed);
                stopped_at = Some(Instant::now());
                eprintln!("\ninterrupted: finishing requests in flight (Ctrl-C again to abort)");
                tokio::select! {
                    r = &mut joined => r?,
                    _ = tokio::signal::ctrl_c() => bail!("interrupted"),
                }
            }
        }
    } else {
        joined.await?;
    }
    if let Some((task, bar)) = progress {
        task.abort();
        bar.finish_and_clear();
    }

    let window = stopped_at.unwrap_or(end).min(end).saturating_duration_since(warm_end);
    let snapshot = ctx.recorder.snapshot();
    let mut overall = OpStats::default();
    let ops = cfg
        .mix
        .ops()
        .map(|op| {
            let stats = &snapshot[op.index()];
            overall.merge(stats);
            OpReport::new(op.name(), stats, window)
        })
        .collect();
    Ok(LoadReport {
        url: cfg.url.clone(),
        store: cfg.store.clone(),
        mode: cfg.mode,
        connections: cfg.connections,
        rate: cfg.rate,
        mix: cfg.mix.clone(),
        duration_secs: cfg.duration.as_secs_f64(),
        warmup_secs: cfg.warmup.as_secs_f64(),
        window_secs: window.as_secs_f64(),
        interrupted: stopped_at.is_some(),
        missed: scheduled.map(|n| n.saturating_sub(ctx.sent.load(Ordering::Relaxed))),
        ops,
        overall: OpReport::new("overall", &overall, window),
    })
}

async fn join_all(set: &mut JoinSet<()>) -> anyhow::Result<()> {
    while let Some(r) = set.join_next().await {
        r.context("a load worker panicked")?;
    }
    Ok(())
}

pub fn build_client(cfg: &LoadConfig) -> anyhow::Result<Client> {
    Client::builder()
        .http1_only()
        // A proxy from the environment would put a third process in the
        // measurement; the target is always reached directly.
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(cfg.connections)
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("rushhour-bench/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Parsed once so the hot path clones a `Url` instead of parsing a string.
struct Urls {
    live: Url,
    menu: Url,
    orders: Url,
    /// `…/v1/orders/`, to which a status read appends the id.
    order_prefix: String,
}

impl Urls {
    fn new(cfg: &LoadConfig) -> anyhow::Result<Self> {
        let parse = |path: &str| {
            let s = format!("{}{path}", cfg.url);
            Url::parse(&s).with_context(|| format!("'{s}' is not a valid URL (check --url)"))
        };
        Ok(Self {
            live: parse("/health/live")?,
            menu: parse(&format!("/v1/stores/{}/menu", cfg.store))?,
            orders: parse("/v1/orders")?,
            order_prefix: format!("{}/v1/orders/", cfg.url),
        })
    }
}

/// Fetch the menu (to build valid orders) and place a few seed orders (for
/// status reads), before the clock starts so neither skews the numbers.
async fn prepare(
    client: &Client,
    urls: &Urls,
    cfg: &LoadConfig,
    rng: &mut SmallRng,
) -> anyhow::Result<(Vec<Bytes>, Vec<String>)> {
    if !(cfg.mix.contains(Op::Orders) || cfg.mix.contains(Op::Status)) {
        return Ok((Vec::new(), Vec::new()));
    }
    let resp = client
        .get(urls.menu.clone())
        .send()
        .await
        .with_context(|| format!("fetching the menu from {}", urls.menu))?;
    let status = resp.status();
    let body = resp.bytes().await.context("reading the menu")?;
    if status != StatusCode::OK {
        bail!("GET {} answered {status}: {}", urls.menu, snippet(&body));
    }
    let menu = OrderMenu::from_json(&cfg.store, &body)?;
    let bodies = menu.body_pool(rng, BODY_POOL);

    let mut seed_ids = Vec::new();
    if cfg.mix.contains(Op::Status) {
        for body in bodies.iter().take(SEED_ORDERS) {
            let resp = place(client, urls, body.clone(), rng)
                .await
                .with_context(|| format!("placing a seed order at {}", urls.orders))?;
            let status = resp.status();
            let bytes = resp.bytes().await.context("reading a seed order's answer")?;
            match status {
                StatusCode::ACCEPTED => {
                    let placed: Placed = serde_json::from_slice(&bytes)
                        .with_context(|| format!("202 without an order id: {}", snippet(&bytes)))?;
                    seed_ids.push(placed.id);
                }
                StatusCode::SERVICE_UNAVAILABLE => {}
                _ => bail!("POST {} answered {status}: {}", urls.orders, snippet(&bytes)),
            }
        }
        if seed_ids.is_empty() {
            bail!("the server shed every seed order; cannot read order status");
        }
    }
    Ok((bodies, seed_ids))
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.into_owned(),
    }
}

#[derive(Deserialize)]
struct Placed {
    id: String,
}

fn place(
    client: &Client,
    urls: &Urls,
    body: Bytes,
    rng: &mut SmallRng,
) -> impl Future<Output = reqwest::Result<Response>> + use<> {
    // A fresh key per request: a reused key would be answered from the
    // idempotency store and measure a replay, not an intake. Random bytes
    // from the worker's RNG avoid the OS entropy call of `Uuid::new_v4`.
    let key = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let key = HeaderValue::from_str(key.hyphenated().encode_lower(&mut buf)).expect("a uuid is a valid header value");
    client
        .post(urls.orders.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(IDEMPOTENCY_KEY.clone(), key)
        .body(body)
        .send()
}

struct Ctx {
    client: Client,
    urls: Urls,
    bodies: Vec<Bytes>,
    seed_ids: Vec<String>,
    picker: Picker,
    recorder: Recorder,
    start: Instant,
    warm_end: Instant,
    end: Instant,
    rate: Option<f64>,
    /// Open loop: number of requests on the schedule (warm-up included).
    scheduled: u64,
    /// Open loop: the next schedule slot a free worker takes.
    next_ticket: AtomicU64,
    /// Open loop: slots actually sent, to count the missed ones.
    sent: AtomicU64,
    /// For the progress bar only (warm-up included).
    completed: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

/// Remembers the ids this worker placed, overwriting the oldest.
struct IdRing {
    ids: Vec<String>,
    next: usize,
}

impl IdRing {
    fn new() -> Self {
        Self {
            ids: Vec::with_capacity(ID_RING),
            next: 0,
        }
    }

    fn push(&mut self, id: String) {
        if self.ids.len() < ID_RING {
            self.ids.push(id);
        } else {
            self.ids[self.next] = id;
            self.next = (self.next + 1) % ID_RING;
        }
    }
}

impl Ctx {
    async fn send(&self, op: Op, rng: &mut SmallRng, ids: &mut IdRing) -> Outcome {
        let sent = match op {
            Op::Live => self.client.get(self.urls.live.clone()).send().await,
            Op::Menu => self.client.get(self.urls.menu.clone()).send().await,
            Op::Status => {
                let id = ids.ids.choose(rng).or_else(|| self.seed_ids.choose(rng));
                let id = id.expect("prepare() seeds ids when the mix reads status");
                let url = format!("{}{id}", self.urls.order_prefix);
                self.client.get(url).send().await
            }
            Op::Orders => {
                let body = self.bodies.choose(rng).expect("prepare() renders bodies").clone();
                match place(&self.client, &self.urls, body, rng).await {
                    Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                        return match resp.bytes().await {
                            Ok(b) => match serde_json::from_slice::<Placed>(&b) {
                                Ok(placed) => {
                                    ids.push(placed.id);
                                    Outcome::Ok
                                }
                                Err(_) => Outcome::Error(ErrorKind::Decode),
                            },
                            Err(e) => Outcome::Error(transport_kind(&e)),
                        };
                    }
                    other => other,
                }
            }
        };
        let expected = if op == Op::Orders { StatusCode::ACCEPTED } else { StatusCode::OK };
        match sent {
            Ok(resp) => finish(resp, expected).await,
            Err(e) => Outcome::Error(transport_kind(&e)),
        }
    }

    fn note(&self, outcome: Outcome) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Read the body to its end, whatever the status: hyper only returns a
/// connection to the pool once its response body is consumed, so skipping
/// this would turn every error into a reconnect. Chunks are dropped as
/// they come rather than concatenated with `bytes()`.
async fn finish(mut resp: Response, expected: StatusCode) -> Outcome {
    let status = resp.status();
    loop {
        match resp.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return Outcome::Error(transport_kind(&e)),
        }
    }
    classify(status, expected)
}

fn classify(status: StatusCode, expected: StatusCode) -> Outcome {
    if status == expected {
        Outcome::Ok
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        Outcome::Shed
    } else {
        Outcome::Error(ErrorKind::Status(status.as_u16()))
    }
}

fn transport_kind(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else if e.is_body() || e.is_decode() {
        ErrorKind::Body
    } else {
        ErrorKind::Transport
    }
}

/// Closed loop: send, wait for the answer, send again, until the window
/// ends. Latency is from send to answer; a request counts when it was sent
/// inside the measured window.
async fn closed_worker(ctx: Arc<Ctx>, worker: usize, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut ids = IdRing::new();
    loop {
        let sent_at = Instant::now();
        if sent_at >= ctx.end || ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let op = ctx.picker.pick(rng.random_range(0..ctx.picker.total()));
        let outcome = ctx.send(op, &mut rng, &mut ids).await;
        ctx.note(outcome);
        if sent_at >= ctx.warm_end {
            ctx.recorder.record(worker, op, outcome, sent_at.elapsed());
        }
    }
}

/// When the `i`-th request of an open loop at `rate` req/s is due, counted
/// from the start of the run. A fixed grid (not "now + 1/rate" after each
/// send) so that a slow answer delays nothing but itself.
pub fn intended_offset(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// How many requests an open loop schedules in `total`: the slots `i` with
/// `intended_offset(i) < total`.
pub fn scheduled_count(total: Duration, rate: f64) -> u64 {
    let n = (total.as_secs_f64() * rate).ceil() as u64;
    // Guard the float rounding at the boundary so the two functions agree.
    if n > 0 && intended_offset(n - 1, rate) >= total {
        n - 1
    } else if intended_offset(n, rate) < total {
        n + 1
    } else {
        n
    }
}

/// Latency as an open-loop client should measure it: from when the request
/// was due, not from when a (possibly backlogged) worker got to send it, so
/// that a server stall shows up in every request it delayed rather than in
/// one (coordinated omission). A request sent slightly early because of
/// `TIMER_SLACK` is measured from its actual send time: from the earlier of
/// the two, in both cases.
pub fn open_loop_latency(intended: Instant, sent_at: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended.min(sent_at))
}

/// Open loop: free workers take the next slot of a fixed schedule, sleep
/// until it is due and send. When all workers are busy, due slots wait and
/// that wait is part of their latency (see `open_loop_latency`).
async fn open_worker(ctx: Arc<Ctx>, worker: usize, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut ids = IdRing::new();
    let rate = ctx.rate.expect("open loop has a rate");
    loop {
        if ctx.stop.load(Ordering::Relaxed) || Instant::now() >= ctx.end + OPEN_LOOP_GRACE {
            break;
        }
        let i = ctx.next_ticket.fetch_add(1, Ordering::Relaxed);
        if i >= ctx.scheduled {
            break;
        }
        let intended = ctx.start + intended_offset(i, rate);
        let wake = intended.checked_sub(TIMER_SLACK).unwrap_or(intended);
        if wake > Instant::now() {
            tokio::time::sleep_until(wake).await;
        }
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let op = ctx.picker.pick(rng.random_range(0..ctx.picker.total()));
        let sent_at = Instant::now();
        ctx.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = ctx.send(op, &mut rng, &mut ids).await;
        ctx.note(outcome);
        if intended >= ctx.warm_end {
            let latency = open_loop_latency(intended, sent_at, Instant::now());
            ctx.recorder.record(worker, op, outcome, latency);
        }
    }
}

fn spawn_progress(ctx: Arc<Ctx>) -> (tokio::task::JoinHandle<()>, ProgressBar) {
    let total = ctx.end.duration_since(ctx.start);
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:8} [{bar:30}] {percent:>3}% {msg}")
            .expect("static template is valid")
            .progress_chars("=> "),
    );
    let task = tokio::spawn({
        let bar = bar.clone();
        async move {
            let mut tick = tokio::time::interval(TICK);
            let mut last = (Instant::now(), 0u64);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let done = ctx.completed.load(Ordering::Relaxed);
                let rps = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                last = (now, done);
                bar.set_prefix(if now < ctx.warm_end { "warm-up" } else if now < ctx.end { "measure" } else { "finish" });
                bar.set_position(now.duration_since(ctx.start).min(total).as_millis() as u64);
                bar.set_message(format!(
                    "{done} req  {rps:.0} req/s  {} not ok",
                    ctx.failed.load(Ordering::Relaxed)
                ));
            }
        }
    });
    (task, bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_slots_form_a_fixed_grid() {
        assert_eq!(intended_offset(0, 50.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 50.0), Duration::from_millis(20));
        assert_eq!(intended_offset(50, 50.0), Duration::from_secs(1));
        assert_eq!(intended_offset(3, 4.0), Duration::from_millis(750));
        // 1/3 s steps: still evenly spaced, no drift accumulates.
        assert_eq!(intended_offset(3_000, 3.0), Duration::from_secs(1_000));
    }

    #[test]
    fn schedule_length_agrees_with_the_slots() {
        for (total, rate) in [(10.0, 50.0), (1.0, 3.0), (0.5, 7.0), (12.0, 500.0), (2.0, 0.4)] {
            let total = Duration::from_secs_f64(total);
            let n = scheduled_count(total, rate);
            assert!(n == 0 || intended_offset(n - 1, rate) < total, "last slot inside");
            assert!(intended_offset(n, rate) >= total, "next slot outside");
        }
        assert_eq!(scheduled_count(Duration::from_secs(10), 50.0), 500);
        assert_eq!(scheduled_count(Duration::from_secs(2), 0.4), 1);
    }

    #[test]
    fn open_loop_latency_counts_from_the_due_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // On time: due 0, sent 0, done 5 → 5 ms.
        assert_eq!(open_loop_latency(t0, t0, t0 + ms(5)), ms(5));
        // Backlogged: due 0, sent at 100 (all workers busy), done at 105.
        // The client's own queueing is the server's stall: 105 ms, not 5.
        assert_eq!(open_loop_latency(t0, t0 + ms(100), t0 + ms(105)), ms(105));
        // Woken early by the timer slack: due 10, sent 9, done 12. The
        // server had it for 3 ms; measuring from the due time would say 2.
        assert_eq!(open_loop_latency(t0 + ms(10), t0 + ms(9), t0 + ms(12)), ms(3));
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(StatusCode::ACCEPTED, StatusCode::ACCEPTED), Outcome::Ok);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, StatusCode::OK), Outcome::Shed);
        assert_eq!(
            classify(StatusCode::OK, StatusCode::ACCEPTED),
            Outcome::Error(ErrorKind::Status(200)),
            "a 200 where a 202 is due is not a durable intake"
        );
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, StatusCode::ACCEPTED),
            Outcome::Error(ErrorKind::Status(422))
        );
    }

    #[test]
    fn id_ring_keeps_the_most_recent() {
        let mut ring = IdRing::new();
        for i in 0..(ID_RING + 5) {
            ring.push(i.to_string());
        }
        assert_eq!(ring.ids.len(), ID_RING);
        assert!(!ring.ids.contains(&"4".to_owned()));
        assert!(ring.ids.contains(&"5".to_owned()));
        assert!(ring.ids.contains(&(ID_RING + 4).to_string()));
    }
}
