//! The load engine: workers that send requests closed- or open-loop, record
//! outcomes, and a report over the measured window.
//!
//! The client runs on the same small machine as the server, so every
//! request it spends CPU on is stolen from the thing being measured. Hence:
//! a fixed set of long-lived worker tasks (no task per request, no channel
//! between a scheduler and senders), order bodies rendered before the clock
//! starts, and sharded recording (see `stats.rs`).
//!
//! Each worker owns one keep-alive connection (`client.rs` says why that is
//! hyper rather than reqwest); connections are opened before the clock
//! starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{StatusCode, Uri};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::Client;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{Conn, Target};
use super::config::{ExtraHeader, LoadConfig, Mix, Mode, Op, Picker};
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
/// Pause after a failed connect, so that a dead server turns a closed loop
/// into a slow trickle of `connect` errors rather than a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(50);
/// Progress bar refresh period.
const TICK: Duration = Duration::from_millis(250);

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
    /// `--header`s sent with every request on the clock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ExtraHeader>,
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
        let headers: String = self.headers.iter().map(|h| format!(", {h}")).collect();
        let mut out = format!(
            "rushhour bench → {} ({shape}, mix {}{headers})\nmeasured {:.1} s after {:.1} s warm-up{}\n\n",
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
    let target = Target::parse(&cfg.url).context("--url")?.with_headers(&cfg.headers);
    let urls = Urls::new(cfg)?;
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let (bodies, seed_ids) = prepare(&build_client(cfg)?, &urls, cfg, &mut rng).await?;
    let mut conns = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        let conn = tokio::time::timeout(cfg.timeout, Conn::open(&target))
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| format!("connecting to {}", cfg.url))?;
        conns.push(conn);
    }

    let start = Instant::now();
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let scheduled = cfg.rate.map(|rate| scheduled_count(cfg.warmup + cfg.duration, rate));
    let ctx = Arc::new(Ctx {
        target,
        urls,
        bodies,
        seed_ids,
        picker: cfg.mix.picker(),
        recorder: Recorder::new(cfg.connections.min(16)),
        start,
        warm_end,
        end,
        rate: cfg.rate,
        timeout: cfg.timeout,
        scheduled: scheduled.unwrap_or(0),
        next_ticket: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    let mut workers = JoinSet::new();
    for (id, conn) in conns.into_iter().enumerate() {
        let worker = Worker {
            ctx: Arc::clone(&ctx),
            id,
            rng: SmallRng::seed_from_u64(rng.random()),
            ids: IdRing::new(),
            conn: Some(conn),
        };
        match cfg.mode {
            Mode::Closed => workers.spawn(worker.closed()),
            Mode::Open => workers.spawn(worker.open()),
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
        headers: cfg.headers.clone(),
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

/// The client for setup requests (menu, seed orders), off the clock.
fn build_client(cfg: &LoadConfig) -> anyhow::Result<Client> {
    // reqwest has rustls but no crypto provider of its own (ADR 0008): the
    // process default must be ring before a client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .http1_only()
        // A proxy from the environment would put a third process in the
        // measurement; the target is always reached directly.
        .no_proxy()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("rushhour-bench/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Request targets, parsed once: the hot path clones a `Uri` (reference
/// counts, no parsing). The `*_url` forms are for the setup client.
struct Urls {
    live: Uri,
    menu: Uri,
    orders: Uri,
    menu_url: String,
    orders_url: String,
}

impl Urls {
    fn new(cfg: &LoadConfig) -> anyhow::Result<Self> {
        let menu = format!("/v1/stores/{}/menu", cfg.store);
        Ok(Self {
            live: Uri::from_static("/health/live"),
            menu: Uri::try_from(menu.as_str()).with_context(|| format!("'{}' is not a valid store id", cfg.store))?,
            orders: Uri::from_static("/v1/orders"),
            menu_url: format!("{}{menu}", cfg.url),
            orders_url: format!("{}/v1/orders", cfg.url),
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
        .get(&urls.menu_url)
        .send()
        .await
        .with_context(|| format!("fetching the menu from {}", urls.menu_url))?;
    let status = resp.status();
    let body = resp.bytes().await.context("reading the menu")?;
    if status != reqwest::StatusCode::OK {
        bail!("GET {} answered {status}: {}", urls.menu_url, snippet(&body));
    }
    let menu = OrderMenu::from_json(&cfg.store, &body)?;
    let bodies = menu.body_pool(rng, BODY_POOL);

    let mut seed_ids = Vec::new();
    if cfg.mix.contains(Op::Status) {
        for body in bodies.iter().take(SEED_ORDERS) {
            let resp = client
                .post(&urls.orders_url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", idempotency_key(rng))
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("placing a seed order at {}", urls.orders_url))?;
            let status = resp.status();
            let bytes = resp.bytes().await.context("reading a seed order's answer")?;
            match status {
                reqwest::StatusCode::ACCEPTED => {
                    let placed: Placed = serde_json::from_slice(&bytes)
                        .with_context(|| format!("202 without an order id: {}", snippet(&bytes)))?;
                    seed_ids.push(placed.links.this);
                }
                reqwest::StatusCode::SERVICE_UNAVAILABLE => {}
                _ => bail!("POST {} answered {status}: {}", urls.orders_url, snippet(&bytes)),
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
    links: PlacedLinks,
}

/// The receipt's link to the order: its path with the customer's access
/// token, which is what a status read must carry.
#[derive(Deserialize)]
struct PlacedLinks {
    #[serde(rename = "self")]
    this: String,
}

/// A fresh key per request: a reused key would be answered from the
/// idempotency store and measure a replay, not an intake. Random bytes from
/// the worker's RNG avoid the OS entropy call of `Uuid::new_v4`.
fn idempotency_key(rng: &mut SmallRng) -> HeaderValue {
    let key = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(key.hyphenated().encode_lower(&mut buf)).expect("a uuid is a valid header value")
}

struct Ctx {
    target: Target,
    urls: Urls,
    bodies: Vec<Bytes>,
    seed_ids: Vec<String>,
    picker: Picker,
    recorder: Recorder,
    start: Instant,
    warm_end: Instant,
    end: Instant,
    rate: Option<f64>,
    timeout: Duration,
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

/// One worker: its connection, RNG and the ids it placed.
struct Worker {
    ctx: Arc<Ctx>,
    id: usize,
    rng: SmallRng,
    ids: IdRing,
    /// `None` after a failure: the next request reconnects.
    conn: Option<Conn>,
}

impl Worker {
    fn pick(&mut self) -> Op {
        let picker = &self.ctx.picker;
        picker.pick(self.rng.random_range(0..picker.total()))
    }

    /// Send one request of kind `op` and classify the answer. Never fails:
    /// every failure is an outcome to count.
    async fn send(&mut self, op: Op) -> Outcome {
        let ctx = Arc::clone(&self.ctx);
        let req = match op {
            Op::Live => ctx.target.get(ctx.urls.live.clone()),
            Op::Menu => ctx.target.get(ctx.urls.menu.clone()),
            Op::Status => {
                let id = self
                    .ids
                    .ids
                    .choose(&mut self.rng)
                    .or_else(|| ctx.seed_ids.choose(&mut self.rng));
                let path = id.expect("prepare() seeds ids when the mix reads status");
                match Uri::try_from(path.as_str()) {
                    Ok(uri) => ctx.target.get(uri),
                    // An id the server made that is not a valid path.
                    Err(_) => return Outcome::Error(ErrorKind::Decode),
                }
            }
            Op::Orders => {
                let body = ctx
                    .bodies
                    .choose(&mut self.rng)
                    .expect("prepare() renders bodies")
                    .clone();
                let key = idempotency_key(&mut self.rng);
                ctx.target.post_json(ctx.urls.orders.clone(), body, key)
            }
        };
        let (status, body) = match tokio::time::timeout(ctx.timeout, self.exchange(req, op == Op::Orders)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(kind)) => {
                self.conn = None;
                if kind == ErrorKind::Connect {
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                }
                return Outcome::Error(kind);
            }
            // The connection may still carry the late answer; never reuse it.
            Err(_) => {
                self.conn = None;
                return Outcome::Error(ErrorKind::Timeout);
            }
        };
        let expected = if op == Op::Orders {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        let outcome = classify(status, expected);
        if op == Op::Orders && outcome == Outcome::Ok {
            match serde_json::from_slice::<Placed>(&body) {
                Ok(placed) => self.ids.push(placed.links.this),
                Err(_) => return Outcome::Error(ErrorKind::Decode),
            }
        }
        outcome
    }

    /// Reconnect if the server closed the connection, then exchange.
    async fn exchange(
        &mut self,
        req: hyper::Request<http_body_util::Full<Bytes>>,
        keep_body: bool,
    ) -> Result<(StatusCode, Bytes), ErrorKind> {
        let reusable = match self.conn.as_mut() {
            Some(conn) => conn.ready().await,
            None => false,
        };
        if !reusable {
            self.conn = None;
            let conn = Conn::open(&self.ctx.target).await.map_err(|_| ErrorKind::Connect)?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.exchange(req, keep_body).await
    }

    fn record(&self, op: Op, outcome: Outcome, latency: Duration) {
        self.ctx.recorder.record(self.id, op, outcome, latency);
    }

    /// Closed loop: send, wait for the answer, send again, until the window
    /// ends. Latency is from send to answer; a request counts when it was
    /// sent inside the measured window.
    async fn closed(mut self) {
        loop {
            let sent_at = Instant::now();
            if sent_at >= self.ctx.end || self.ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            let op = self.pick();
            let outcome = self.send(op).await;
            self.ctx.note(outcome);
            if sent_at >= self.ctx.warm_end {
                self.record(op, outcome, sent_at.elapsed());
            }
        }
    }

    /// Open loop: a free worker takes the next slot of a fixed schedule,
    /// sleeps until it is due and sends. When all workers are busy, due
    /// slots wait, and that wait is part of their latency (see
    /// `open_loop_latency`).
    async fn open(mut self) {
        let ctx = Arc::clone(&self.ctx);
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
            let op = self.pick();
            let sent_at = Instant::now();
            ctx.sent.fetch_add(1, Ordering::Relaxed);
            let outcome = self.send(op).await;
            ctx.note(outcome);
            if intended >= ctx.warm_end {
                self.record(op, outcome, open_loop_latency(intended, sent_at, Instant::now()));
            }
        }
    }
}

impl Ctx {
    fn note(&self, outcome: Outcome) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
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
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            // The first tick is immediate; a rate over its few microseconds
            // would print nonsense, so the first update waits one period.
            tick.tick().await;
            let mut last = (Instant::now(), 0u64);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let done = ctx.completed.load(Ordering::Relaxed);
                let rps = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                last = (now, done);
                bar.set_prefix(if now < ctx.warm_end {
                    "warm-up"
                } else if now < ctx.end {
                    "measure"
                } else {
                    "finish"
                });
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
