//! `rushhour replay-dlq`: re-drive dead letters. Each record the processors
//! set aside (kept in the store, and copied to the Kafka DLQ topic in scale
//! mode) is appended to the event log again under its original key, then
//! forgotten; the processors take it from there. Meant for after a fix (a
//! binary that can read a newer record, a menu that has the item again).
//!
//! The re-drive itself is `domain::dead_letters::replay`, shared with the
//! operator routes (`POST /v1/admin/dead-letters/.../replay`); its docs
//! say why a repeated or interrupted replay is safe.

use anyhow::Context;
use domain::Rushhour;
use domain::dead_letters;

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
    let letters = dead_letters::oldest_first(&*app.store, args.group.as_deref(), args.limit)
        .await
        .context("read the dead letters")?;
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
        let at = dead_letters::replay(&*app.log, &*app.store, l)
            .await
            .with_context(|| format!("re-drive dead letter at {}/{}", l.partition, l.offset))?;
        if let Some(at) = at {
            tracing::info!(key = %l.key, from = l.offset, to_partition = at.partition, to_offset = at.offset, "dead letter re-driven");
        }
        out.replayed += 1;
    }
    Ok(out)
}
