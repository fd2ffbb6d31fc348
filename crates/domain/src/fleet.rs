//! Operator commands that reach every running instance (issue 12).
//!
//! `rushhour sync`, `warmup` and `cache clear` run in a short-lived CLI
//! process; what they change must reach the processes that serve. The
//! protocol, over the `Fleet` port (two tables in the store every process
//! already shares):
//! - every serving process is a **member**: it registers at start, beats
//!   every [`BEAT_EVERY`], polls for broadcasts every fraction of a second
//!   (one indexed read), carries each one out in `seq` order (drop its
//!   menu caches, warm them, drop its upstream token) and then records it
//!   as acked in its row; it leaves on a clean shutdown;
//! - the CLI does the work itself (the sync writes the store), then
//!   [`broadcast`]s the command and waits (up to a deadline) until every
//!   instance seen within [`LIVE_WITHIN`] has acked it, and names who did
//!   and who did not.
//!
//! Rejected: calling each instance's admin API (`/v1/admin/cache/clear`,
//! `/v1/admin/sync/{what}`) — it needs a credential in the CLI (the zero
//! setup on one box would have to read the admin password) and a reachable
//! address for every instance behind a load balancer; and Redis pub/sub
//! alone — embedded mode has no Redis, and a receiver count says how many
//! got a message, not who, nor whether they carried it out. The store is
//! shared in both modes, works with no setup, and an ack is written after
//! the command ran.

use std::time::Duration;

use crate::ports::{Clock, Fleet, Instance, PortError, PortResult};

/// How often a member refreshes its row.
pub const BEAT_EVERY: Duration = Duration::from_secs(5);
/// An instance not seen for this long is taken for gone (three beats).
pub const LIVE_WITHIN: Duration = Duration::from_secs(15);
/// How often a member looks for new broadcasts.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// What a member does for a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Drop every cached menu (`cache clear`; after `sync menu`).
    ClearMenus,
    /// Load every store's menu into the caches (`warmup`; after `sync menu`).
    WarmUp,
    /// Drop the cached upstream token (`cache clear --auth`).
    ClearAuth,
    /// The loyalty accounts changed in the store (`sync accounts`).
    /// Nothing an instance caches depends on them today: acking says the
    /// instance runs and reads the new accounts from the store.
    AccountsSynced,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::ClearMenus => "clear_menus",
            Command::WarmUp => "warm_up",
            Command::ClearAuth => "clear_auth",
            Command::AccountsSynced => "accounts_synced",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "clear_menus" => Some(Command::ClearMenus),
            "warm_up" => Some(Command::WarmUp),
            "clear_auth" => Some(Command::ClearAuth),
            "accounts_synced" => Some(Command::AccountsSynced),
            _ => None,
        }
    }

    /// Commands as stored in a broadcast: names, comma-separated.
    pub fn encode(commands: &[Command]) -> String {
        commands.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
    }

    /// The commands a broadcast names; names this binary does not know (a
    /// newer CLI) are skipped, so the broadcast is still acked.
    pub fn decode(s: &str) -> Vec<Command> {
        s.split(',').filter_map(Command::parse).collect()
    }
}

/// Which instances carried a broadcast out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    pub seq: i64,
    /// Acked it before the deadline.
    pub reached: Vec<Instance>,
    /// Alive (beating) but had not acked it by the deadline.
    pub missed: Vec<Instance>,
}

impl Reach {
    /// One line for the operator: who was reached, who was not.
    pub fn summary(&self) -> String {
        fn names(v: &[Instance]) -> String {
            v.iter()
                .map(|i| {
                    if i.addr.is_empty() {
                        format!("{} ({})", i.id, i.role)
                    } else {
                        format!("{} ({}, {})", i.id, i.role, i.addr)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        match (self.reached.len(), self.missed.len()) {
            (0, 0) => "no running instance reached".to_owned(),
            (n, 0) => format!("reached {n} running instance(s): {}", names(&self.reached)),
            (0, m) => format!(
                "no running instance reached; {m} did not answer: {}",
                names(&self.missed)
            ),
            (n, m) => format!(
                "reached {n} running instance(s): {}; {m} did not answer: {}",
                names(&self.reached),
                names(&self.missed)
            ),
        }
    }
}

/// Broadcast `commands` and wait until every live instance has carried
/// them out, for at most `wait` (on `clock`). Instances that start meanwhile
/// are counted if they ack; one that stops beating is dropped from `missed`.
pub async fn broadcast(
    fleet: &dyn Fleet,
    clock: &dyn Clock,
    commands: &[Command],
    wait: Duration,
) -> PortResult<Reach> {
    if commands.is_empty() {
        return Err(PortError::Invalid("a broadcast needs a command".into()));
    }
    let live_ms = LIVE_WITHIN.as_millis() as i64;
    let seq = fleet.broadcast(&Command::encode(commands), clock.now_ms()).await?;
    let deadline = clock.now_ms().saturating_add(wait.as_millis() as i64);
    loop {
        let now = clock.now_ms();
        let live = fleet.instances(now - live_ms).await?;
        let (reached, missed): (Vec<_>, Vec<_>) = live.into_iter().partition(|i| i.acked >= seq);
        if missed.is_empty() || now >= deadline {
            return Ok(Reach { seq, reached, missed });
        }
        clock.sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_unknown_names_are_skipped() {
        let all = [
            Command::ClearMenus,
            Command::WarmUp,
            Command::ClearAuth,
            Command::AccountsSynced,
        ];
        assert_eq!(Command::decode(&Command::encode(&all)), all);
        assert_eq!(Command::decode("warm_up,reindex"), [Command::WarmUp]);
    }

    #[test]
    fn the_summary_names_who_was_reached() {
        let inst = |id: &str, addr: &str| Instance {
            id: id.into(),
            role: "serve".into(),
            addr: addr.into(),
            started_at: 0,
            seen_at: 0,
            acked: 1,
        };
        assert_eq!(Reach::default().summary(), "no running instance reached");
        let r = Reach {
            seq: 1,
            reached: vec![inst("a-1", "127.0.0.1:8080")],
            missed: vec![inst("b-2", "")],
        };
        assert_eq!(
            r.summary(),
            "reached 1 running instance(s): a-1 (serve, 127.0.0.1:8080); 1 did not answer: b-2 (serve)"
        );
    }
}
