//! `rushhour users …`: staff accounts and personal API keys from the
//! command line, against the configured store (the embedded files or
//! PostgreSQL) — how the first accounts are made, and how an operator gets
//! back in when every admin password is lost.
//!
//! Every change goes through `identity::Identity`, so it is validated,
//! audited (actor `cli:<os user>`) and ends the sessions it must, exactly
//! as through the API. Passwords are read from stdin (`--password-stdin`)
//! or generated and printed once; never taken as an argument, where they
//! would land in the shell history and the process list.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use domain::identity::Role;
use identity::{Actor, Identity, KeyRequest};
use std::io::{BufRead, Write};

#[derive(Args, Debug)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// List staff accounts.
    List,
    /// Create an account (the password is generated and printed unless --password-stdin).
    Add {
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: its sessions end and its keys stop working.
    Disable { username: String },
    /// Enable a disabled account.
    Enable { username: String },
    /// Set a new password (generated unless --password-stdin); sessions end.
    SetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's role; its sessions end.
    SetRole {
        username: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// List API keys (never their secrets).
    Keys,
    /// Issue a personal API key; the key is printed once.
    IssueKey {
        /// What the key is for ("till 3").
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Limit the key to one store.
        #[arg(long)]
        store: Option<String>,
        /// Tie the key to a user (it stops when they are disabled).
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an API key by its prefix (`rhk_…`).
    RevokeKey { prefix: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: barista, manager or admin"))
}

/// Run one `users` command; `os_user` names the actor in the audit log.
pub async fn run(
    identity: &Identity,
    args: &UsersArgs,
    os_user: &str,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let actor = Actor::cli(os_user);
    match &args.command {
        UsersCommand::List => {
            let users = identity.list_users().await?;
            writeln!(out, "{:<24} {:<8} {:<8} updated", "username", "role", "state")?;
            for u in users {
                let state = if u.disabled { "disabled" } else { "active" };
                writeln!(
                    out,
                    "{:<24} {:<8} {:<8} {}",
                    u.username,
                    u.role,
                    state,
                    crate::jobs_cli::rfc3339(u.updated_at)
                )?;
            }
        }
        UsersCommand::Add {
            username,
            role,
            password_stdin,
        } => {
            let (password, generated) = password(*password_stdin, stdin)?;
            let user = identity.add_user(&actor, username, *role, &password).await?;
            writeln!(out, "created {} ({})", user.username, user.role)?;
            if generated {
                writeln!(out, "password: {password}")?;
            }
        }
        UsersCommand::Disable { username } => {
            identity.set_disabled(&actor, username, true).await?;
            writeln!(out, "disabled {username}; its sessions ended")?;
        }
        UsersCommand::Enable { username } => {
            identity.set_disabled(&actor, username, false).await?;
            writeln!(out, "enabled {username}")?;
        }
        UsersCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let (password, generated) = password(*password_stdin, stdin)?;
            identity.set_password(&actor, username, &password).await?;
            writeln!(out, "password of {username} changed; its sessions ended")?;
            if generated {
                writeln!(out, "password: {password}")?;
            }
        }
        UsersCommand::SetRole { username, role } => {
            identity.set_role(&actor, username, *role).await?;
            writeln!(out, "{username} is now {role}; its sessions ended")?;
        }
        UsersCommand::Keys => {
            let keys = identity.list_keys().await?;
            writeln!(
                out,
                "{:<13} {:<8} {:<16} {:<20} {:<10} name",
                "prefix", "role", "store", "last used", "state"
            )?;
            for k in keys {
                let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                let used = k
                    .last_used_at
                    .map(crate::jobs_cli::rfc3339)
                    .unwrap_or_else(|| "never".into());
                writeln!(
                    out,
                    "{:<13} {:<8} {:<16} {:<20} {:<10} {}",
                    k.prefix,
                    k.role,
                    k.store.as_deref().unwrap_or("*"),
                    used,
                    state,
                    k.name
                )?;
            }
        }
        UsersCommand::IssueKey {
            name,
            role,
            store,
            user,
        } => {
            let issued = identity
                .issue_key(
                    &actor,
                    KeyRequest {
                        name: name.clone(),
                        role: *role,
                        store: store.clone(),
                        user: user.clone(),
                    },
                )
                .await?;
            writeln!(
                out,
                "issued {} ({}, {})",
                issued.record.prefix,
                issued.record.role,
                issued.record.store.as_deref().unwrap_or("every store")
            )?;
            writeln!(out, "key (shown once): {}", issued.key)?;
        }
        UsersCommand::RevokeKey { prefix } => {
            identity.revoke_key(&actor, prefix).await?;
            writeln!(out, "revoked {prefix}")?;
        }
    }
    Ok(())
}

/// The password from stdin, or a generated one (and whether it was).
fn password(from_stdin: bool, stdin: &mut dyn BufRead) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((identity::generated_password(), true));
    }
    let mut line = String::new();
    stdin.read_line(&mut line).context("read the password from stdin")?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("no password on stdin");
    }
    Ok((p, false))
}
