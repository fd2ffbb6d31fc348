//! `rushhour bench drain`: how fast the order processors turn a backlog in
//! the log into confirmed orders, side by side with a raw multi-row SQLite
//! insert of the same rows (the ceiling for this machine's disk and SQLite).
//! Runs in-process on temporary files, so nothing else competes.

use anyhow::Context;
use domain::events::{LogEvent, OrderPlacedV1, PlacedLineV1};
use domain::menu::{MenuSnapshot, demo_menu};
use domain::order::{LineDraft, OrderDraft, price};
use domain::ports::{AppendRequest, EventLog};
use domain::{OrderId, Rushhour, RushhourConfig};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct DrainArgs {
    /// Orders in the backlog.
    #[arg(long, default_value_t = 20_000)]
    pub orders: usize,
    /// Lines per order.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// Processor micro-batch size.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Processor linger (ms) while a batch fills.
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Apply into a PostgreSQL store (fresh schemas, dropped afterwards) and
    /// compare with a raw `COPY` of the same rows, instead of SQLite.
    #[arg(long, value_name = "postgres://...")]
    pub store_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DrainReport {
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    pub orders: usize,
    pub lines_per_order: usize,
    pub batch: usize,
    pub partitions: u32,
    pub drain_seconds: f64,
    pub drain_per_sec: f64,
    pub raw_seconds: f64,
    pub raw_per_sec: f64,
    /// drain / raw.
    pub ratio: f64,
}

/// Orders shaped like intake produces them, cycling through the demo menu.
pub fn sample_orders(n: usize, lines: usize) -> Vec<OrderPlacedV1> {
    let menu = MenuSnapshot::new(demo_menu());
    let items = &menu.menu.items;
    (0..n)
        .map(|i| {
            let draft = OrderDraft {
                store: menu.store().id.0.clone(),
                customer: None,
                name: None,
                lines: (0..lines)
                    .map(|j| {
                        let item = &items[(i * 7 + j * 3) % items.len()];
                        LineDraft {
                            sku: item.sku.clone(),
                            size: Some(item.sizes[(i + j) % item.sizes.len()].code.clone()),
                            modifiers: vec![item.modifiers[j % item.modifiers.len()].code.clone()],
                            qty: 1 + (j % 2) as i64,
                        }
                    })
                    .collect(),
            };
            let (priced, total) = price(&draft, &menu).expect("sample orders are valid");
            OrderPlacedV1 {
                order_id: OrderId::new(),
                store: menu.store().id.clone(),
                customer: None,
                name: None,
                currency: menu.store().currency.clone(),
                total,
                lines: priced.iter().map(PlacedLineV1::from).collect(),
                placed_at: domain::ports::system_now_ms(),
            }
        })
        .collect()
}

/// Where the drain writes, and what it is compared with.
enum Target<'a> {
    /// A SQLite store vs a raw multi-row INSERT into a fresh file.
    Sqlite,
    /// A PostgreSQL store in schema `apply` vs a raw COPY into schema `copy`.
    Postgres { url: &'a str, apply: String, copy: String },
}

pub async fn measure(args: &DrainArgs) -> anyhow::Result<DrainReport> {
    let dir = tempfile::TempDir::new().context("temp dir")?;
    let orders = sample_orders(args.orders, args.lines);

    let log_path = dir.path().join("log.db");
    let log: Arc<dyn EventLog> = Arc::new(eventlog::SqliteEventLog::open(&log_path, Default::default())?);
    let target = match &args.store_url {
        Some(url) => {
            let tag = uuid::Uuid::new_v4().simple().to_string();
            Target::Postgres {
                url,
                apply: format!("rh_bench_{tag}_apply"),
                copy: format!("rh_bench_{tag}_copy"),
            }
        }
        None => Target::Sqlite,
    };
    let store: Arc<dyn domain::ports::Store> = match &target {
        Target::Postgres { url, apply, .. } => {
            let opts = store::PgStoreOptions {
                schema: Some(apply.clone()),
                ..Default::default()
            };
            let pg = store::PgStore::connect(url, opts).await?;
            pg.migrate().await?;
            Arc::new(pg)
        }
        _ => Arc::new(store::SqliteStore::open(
            &dir.path().join("store.db"),
            Default::default(),
        )?),
    };
    store.upsert_menu(&demo_menu()).await?;

    // Fill the backlog (not timed), 256 appends in flight for group commit.
    let mut pending = futures::stream::FuturesUnordered::new();
    for o in &orders {
        let log = log.clone();
        let req = AppendRequest {
            key: o.order_id.to_string(),
            payload: LogEvent::OrderPlacedV1(o.clone()).encode(),
            idempotency: None,
            trace: None,
        };
        pending.push(async move { log.append(req).await });
        if pending.len() >= 256 {
            use futures::StreamExt;
            pending.next().await.transpose()?;
        }
    }
    {
        use futures::StreamExt;
        while let Some(r) = pending.next().await {
            r?;
        }
    }

    let app = Arc::new(Rushhour {
        log: log.clone(),
        store,
        menus: Arc::new(cache::MemoryMenuCache::new(Duration::from_secs(600), 16)),
        feed: Arc::new(cache::BroadcastFeed::new(16)),
        clock: Arc::new(worker::TokioClock),
        config: RushhourConfig::default(),
    });
    let config = worker::ProcessorConfig {
        max_batch: args.batch,
        linger: Duration::from_millis(args.linger_ms),
        ..Default::default()
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..log.partitions() {
        let (app, config) = (app.clone(), config.clone());
        let end = log.end_offset(p).await?;
        tasks.push(tokio::spawn(async move {
            let mut w = worker::PartitionWorker::start(app, config, p).await?;
            while w.position() < end {
                w.run_once(Duration::ZERO).await?;
            }
            Ok::<_, domain::PortError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let drain = started.elapsed();

    let raw = match &target {
        Target::Postgres { url, apply, copy } => {
            let raw = crate::baseline_pg::raw_copy(url, copy, &orders).await;
            for s in [apply, copy] {
                if let Err(e) = crate::baseline_pg::drop_schema(url, s).await {
                    tracing::warn!(schema = %s, error = %e, "could not drop a benchmark schema");
                }
            }
            raw?
        }
        Target::Sqlite => crate::baseline::raw_insert(&dir.path().join("raw.db"), &orders)?,
    };
    let n = args.orders as f64;
    let report = DrainReport {
        store: match target {
            Target::Postgres { .. } => "postgres",
            Target::Sqlite => "sqlite",
        },
        orders: args.orders,
        lines_per_order: args.lines,
        batch: args.batch,
        partitions: log.partitions(),
        drain_seconds: drain.as_secs_f64(),
        drain_per_sec: n / drain.as_secs_f64(),
        raw_seconds: raw.as_secs_f64(),
        raw_per_sec: n / raw.as_secs_f64(),
        ratio: raw.as_secs_f64() / drain.as_secs_f64(),
    };
    Ok(report)
}

pub async fn run(args: &DrainArgs) -> anyhow::Result<()> {
    let r = measure(args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "processor drain into {}: {} orders x {} lines in {:.2}s = {:.0} orders/s\n\
             raw {} of the same rows: {:.2}s = {:.0} orders/s\n\
             ratio drain/raw = {:.2} (goal: >= 0.3 on SQLite, >= 0.5 on PostgreSQL)",
            r.store,
            r.orders,
            r.lines_per_order,
            r.drain_seconds,
            r.drain_per_sec,
            if r.store == "postgres" {
                "COPY"
            } else {
                "multi-row INSERT"
            },
            r.raw_seconds,
            r.raw_per_sec,
            r.ratio
        );
    }
    Ok(())
}
