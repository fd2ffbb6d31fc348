//! `rushhour webhooks …`: outbound webhook subscribers from the command
//! line, against the configured store (the embedded files or PostgreSQL),
//! as `/v1/admin/webhooks` does it: the same checks, the secret generated
//! and printed once, every change audited (actor `cli:<os user>`).
//!
//! Deliveries are made by a running worker (`serve` or `worker`): `test`
//! queues a ping and `deliveries` shows what became of it; `retry` puts
//! dead deliveries back to pending, and the worker's dispatcher queues
//! them like any delivery that falls due.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use domain::ports::{AuditLog, WebhookStore};
use domain::webhooks::{self, DeliveryState, EventType, NewSubscriber, SubscriberPatch};
use identity::Actor;
use std::io::Write;

use crate::jobs_cli::rfc3339;

#[derive(Args, Debug)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// List subscribers (never their secrets).
    List,
    /// Add a subscriber; its signing secret is printed once.
    Add {
        /// Where deliveries are POSTed (http:// or https://).
        url: String,
        /// Comma-separated: confirmed, ready, picked_up, cancelled, expired, paid.
        #[arg(long, default_value = "confirmed,ready,picked_up,cancelled,expired,paid")]
        events: String,
        /// Only this store's orders.
        #[arg(long)]
        store: Option<String>,
        /// Add it disabled (enable with `webhooks enable`).
        #[arg(long)]
        disabled: bool,
    },
    /// Remove a subscriber and its delivery log.
    Remove { id: i64 },
    /// Stop sending to a subscriber (its pending deliveries wait).
    Disable { id: i64 },
    /// Send to a disabled subscriber again.
    Enable { id: i64 },
    /// Queue a `ping` event for one subscriber (a running worker delivers it).
    Test { id: i64 },
    /// A subscriber's delivery log, newest first.
    Deliveries {
        id: i64,
        /// Only `pending`, `delivered` or `dead`.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Put a dead delivery (or, with --all-dead, every dead one of the
    /// subscriber) back to pending, due now, attempts from zero.
    Retry {
        id: i64,
        /// The delivery's event id (`evt_42` or `42`), from `webhooks deliveries`.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        delivery: Option<String>,
        /// Every dead delivery of the subscriber.
        #[arg(long)]
        all_dead: bool,
    },
}

/// The event types in a comma-separated list (each once).
pub fn parse_events(s: &str) -> anyhow::Result<Vec<EventType>> {
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match EventType::parse(name).filter(|t| *t != EventType::Ping) {
            Some(t) if !out.contains(&t) => out.push(t),
            Some(_) => {}
            None => bail!("unknown event type {name:?}: confirmed, ready, picked_up, cancelled, expired or paid"),
        }
    }
    Ok(out)
}

/// Run one `webhooks` command; `os_user` names the actor in the audit log.
pub async fn run<S>(store: &S, args: &WebhooksArgs, os_user: &str, now: i64, out: &mut dyn Write) -> anyhow::Result<()>
where
    S: WebhookStore + AuditLog + ?Sized,
{
    let actor = Actor::cli(os_user);
    let audit = |action: &'static str, target: String, detail: String| domain::identity::AuditEntry {
        id: 0,
        at: now,
        actor: actor.name.clone(),
        role: actor.role,
        action: action.into(),
        target,
        detail,
        source: String::new(),
    };
    match &args.command {
        WebhooksCommand::List => {
            writeln!(out, "{:>4} {:<8} {:<44} {:<14} events", "id", "state", "url", "store")?;
            for s in store.subscribers().await? {
                let state = if s.enabled { "enabled" } else { "disabled" };
                writeln!(
                    out,
                    "{:>4} {:<8} {:<44} {:<14} {}",
                    s.id,
                    state,
                    s.url,
                    s.store.as_deref().unwrap_or("*"),
                    webhooks::encode_types(&s.events)
                )?;
            }
        }
        WebhooksCommand::Add {
            url,
            events,
            store: only,
            disabled,
        } => {
            let events = parse_events(events)?;
            webhooks::validate(url, &events)?;
            let secret = format!("whsec_{}", identity::random_hex(32));
            let sub = store
                .create_subscriber(&NewSubscriber {
                    url: url.clone(),
                    events,
                    store: only.clone().filter(|s| !s.is_empty()),
                    secret: secret.clone(),
                    enabled: !disabled,
                    created_at: now,
                })
                .await
                .context("add the subscriber")?;
            let detail = serde_json::json!({ "url": sub.url, "events": webhooks::encode_types(&sub.events) });
            store
                .append_audit(&audit("webhook_add", sub.id.to_string(), detail.to_string()))
                .await?;
            writeln!(out, "added subscriber {} -> {}", sub.id, sub.url)?;
            writeln!(out, "secret: {secret}")?;
            writeln!(out, "(shown once; it verifies the Rushhour-Signature header)")?;
        }
        WebhooksCommand::Remove { id } => {
            if !store.delete_subscriber(*id).await? {
                bail!("no webhook subscriber {id}");
            }
            store
                .append_audit(&audit("webhook_remove", id.to_string(), "{}".into()))
                .await?;
            writeln!(out, "removed subscriber {id}")?;
        }
        WebhooksCommand::Disable { id } | WebhooksCommand::Enable { id } => {
            let enabled = matches!(args.command, WebhooksCommand::Enable { .. });
            let patch = SubscriberPatch { enabled: Some(enabled) };
            let sub = match store.update_subscriber(*id, &patch).await {
                Err(domain::PortError::NotFound) => bail!("no webhook subscriber {id}"),
                other => other?,
            };
            let detail = serde_json::json!({ "enabled": sub.enabled }).to_string();
            store
                .append_audit(&audit("webhook_update", id.to_string(), detail))
                .await?;
            let state = if sub.enabled { "enabled" } else { "disabled" };
            writeln!(out, "subscriber {id} {state}")?;
        }
        WebhooksCommand::Test { id } => {
            let event = match store.add_ping(*id, now).await {
                Err(domain::PortError::NotFound) => bail!("no webhook subscriber {id}"),
                other => other?,
            };
            store
                .append_audit(&audit("webhook_test", id.to_string(), "{}".into()))
                .await?;
            writeln!(
                out,
                "queued {} for subscriber {id}; see `rushhour webhooks deliveries {id}`",
                webhooks::event_id(event)
            )?;
        }
        WebhooksCommand::Retry {
            id,
            delivery,
            all_dead: _,
        } => {
            let event = match delivery.as_deref() {
                None => None,
                Some(d) => {
                    Some(webhooks::parse_event_id(d).with_context(|| format!("{d:?} is not an event id (evt_<n>)"))?)
                }
            };
            if store.subscriber(*id).await?.is_none() {
                bail!("no webhook subscriber {id}");
            }
            let n = store.retry_deliveries(*id, event, now).await?;
            if let Some(event) = event
                && n == 0
            {
                let found = store.deliveries(*id, None, Some(event + 1), 1).await?;
                match found.first().filter(|d| d.event_id == event) {
                    None => bail!("subscriber {id} has no delivery {}", webhooks::event_id(event)),
                    Some(d) => bail!(
                        "delivery {} is {}, not dead; only dead deliveries are retried",
                        webhooks::event_id(event),
                        d.state.as_str()
                    ),
                }
            }
            let detail = match event {
                Some(e) => serde_json::json!({ "event_id": webhooks::event_id(e) }),
                None => serde_json::json!({ "all_dead": n }),
            };
            store
                .append_audit(&audit("webhook_retry", id.to_string(), detail.to_string()))
                .await?;
            writeln!(
                out,
                "{n} dead deliver{} of subscriber {id} pending again; a running worker sends {}",
                if n == 1 { "y" } else { "ies" },
                if n == 1 { "it" } else { "them" }
            )?;
        }
        WebhooksCommand::Deliveries { id, state, limit } => {
            let state = match state.as_deref() {
                None | Some("") => None,
                Some(s) => Some(
                    DeliveryState::parse(s)
                        .with_context(|| format!("unknown state {s:?}: pending, delivered or dead"))?,
                ),
            };
            if store.subscriber(*id).await?.is_none() {
                bail!("no webhook subscriber {id}");
            }
            writeln!(
                out,
                "{:<12} {:<10} {:<10} {:>8} {:>6} {:<24} order / last error",
                "event", "type", "state", "attempts", "status", "updated"
            )?;
            for d in store.deliveries(*id, state, None, (*limit).clamp(1, 500)).await? {
                let status = d.last_status.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
                let order = if d.order_id.is_empty() { "-" } else { &d.order_id };
                writeln!(
                    out,
                    "{:<12} {:<10} {:<10} {:>8} {:>6} {:<24} {}{}",
                    webhooks::event_id(d.event_id),
                    d.kind.as_str(),
                    d.state.as_str(),
                    d.attempts,
                    status,
                    rfc3339(d.updated_at),
                    order,
                    d.last_error.map(|e| format!(" / {e}")).unwrap_or_default()
                )?;
            }
        }
    }
    Ok(())
}
