//! Dead letters: the records the processors set aside, and re-driving
//! them. One use-case for both `rushhour replay-dlq` and the operator
//! routes (`/v1/admin/dead-letters/...`), so the CLI and the API cannot
//! disagree about what a replay does.
//!
//! A replay appends the record to the event log again under its original
//! key, then forgets the letter; the processors take it from there. Safe to
//! repeat or interrupt: a letter is removed only after its record is
//! durable in the log, and a record applied twice changes nothing (the
//! order id is in the payload and inserts skip existing orders), so a crash
//! between append and removal costs at most a duplicate record.

use crate::ports::{AppendOutcome, AppendRequest, DeadLetter, EventLog, OrderStore, PortResult, Position};

/// How many letters a lookup by position reads. The dead-letter table is an
/// exception list an operator empties, not a log: a few thousand at most.
pub const LOOKUP_LIMIT: u32 = 10_000;

/// Where a letter sits: the consumer group that set it aside, and the
/// record's partition and offset in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LetterId {
    pub group: String,
    pub partition: u32,
    pub offset: u64,
}

impl DeadLetter {
    pub fn id(&self) -> LetterId {
        LetterId {
            group: self.group.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// The letter at `id`, if it is still set aside.
pub async fn find(store: &dyn OrderStore, id: &LetterId) -> PortResult<Option<DeadLetter>> {
    Ok(store
        .dead_letters(LOOKUP_LIMIT)
        .await?
        .into_iter()
        .find(|l| l.id() == *id))
}

/// Re-drive one letter: append its record again, then forget it. Returns
/// where the record landed (`None` only if the log answered with an
/// idempotency duplicate, which a replay never asks for).
pub async fn replay(log: &dyn EventLog, store: &dyn OrderStore, letter: &DeadLetter) -> PortResult<Option<Position>> {
    let appended = log
        .append(AppendRequest {
            key: letter.key.clone(),
            payload: letter.payload.clone(),
            idempotency: None,
            trace: None,
        })
        .await?;
    let at = match appended {
        AppendOutcome::Appended(at) => Some(at),
        AppendOutcome::Duplicate(_) => None,
    };
    store
        .remove_dead_letter(&letter.group, letter.partition, letter.offset)
        .await?;
    Ok(at)
}

/// The letters to re-drive in bulk: at most `limit`, only `group`'s if
/// given, oldest first (the order they were first read in).
pub async fn oldest_first(store: &dyn OrderStore, group: Option<&str>, limit: u32) -> PortResult<Vec<DeadLetter>> {
    let mut letters = store.dead_letters(limit).await?;
    letters.retain(|l| group.is_none_or(|g| l.group == g));
    letters.reverse();
    Ok(letters)
}
