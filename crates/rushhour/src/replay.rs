//! `rushhour replay-dlq`: re-drive dead letters. Each record the processors
//! set aside (kept in the store, and copied to the Kafka DLQ topic in scale
//! mode) is appended to the event log again under its original key, then
//! forgotten; the processors take it from there. Meant for after a fix (a
//! binary that can read a newer record, a menu that has the item again).
//!
//! Safe to repeat or interrupt: a letter is removed only after its record
//! is durable in the log, and a record applied twice changes nothing (the
//! order id is in the payload and inserts skip existing orders), so a crash
//! between append and removal costs at most a duplicate record.

use anyhow::Context;
use domain::Rushhour;
use domain::ports::{AppendOutcome, AppendRequest, DeadLetter};

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Only list what would be re-driven.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-drive at most this many letters (oldest first).
    #[arg(long, default_value_t = 10_000)]
    pub limit: u32,
    /// Only letters of this consumer group.
    #[arg(long)]
    pub group: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub replayed: usize,
    pub listed: usize,
}

pub async fn replay(app: &Rushhour, args: &ReplayArgs) -> anyhow::Result<Replayed> {
    let mut letters: Vec<DeadLetter> = app
        .store
        .dead_letters(args.limit)
        .await
        .context("read the dead letters")?;
    letters.retain(|l| args.group.as_ref().is_none_or(|g| &l.group == g));
    letters.reverse(); // oldest first, as they were first read
    let mut out = Replayed {
        listed: letters.len(),
        ..Default::default()
    };
    for l in &letters {
        if args.dry_run {
            println!(
                "{} partition {} offset {} key {}: {} ({} attempts)",
                l.group, l.partition, l.offset, l.key, l.error, l.attempts
            );
            continue;
        }
        let appended = app
            .log
            .append(AppendRequest {
                key: l.key.clone(),
                payload: l.payload.clone(),
                idempotency: None,
            })
            .await
            .with_context(|| format!("re-append dead letter at {}/{}", l.partition, l.offset))?;
        if let AppendOutcome::Appended(at) = appended {
            tracing::info!(key = %l.key, from = l.offset, to_partition = at.partition, to_offset = at.offset, "dead letter re-driven");
        }
        app.store
            .remove_dead_letter(&l.group, l.partition, l.offset)
            .await
            .context("forget a re-driven dead letter")?;
        out.replayed += 1;
    }
    Ok(out)
}
