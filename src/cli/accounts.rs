//! `dmarcd user …` and `dmarcd token …`: dashboard users and API tokens.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Subcommand;

use serde_json::json;

use crate::accounts::{random_secret, Accounts, TokenAccess};
use crate::audit::{self, Action, Actor, Change};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a dashboard user. Prints a generated password unless
    /// --password-stdin gives one.
    Add {
        name: String,
        /// Read-only: may not reprocess messages or change domains.
        #[arg(long)]
        viewer: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (generated unless --password-stdin) and sign the user out.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user.
    Remove { name: String },
    /// Turn a user's two-step sign-in off (a lost phone); they sign in with
    /// their password alone and may set it up again.
    TotpOff { name: String },
    /// Make a user an admin or a viewer (from their next request on).
    Role {
        name: String,
        #[arg(value_parser = ["admin", "viewer"])]
        role: String,
    },
    /// List users and their roles.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create an API token; it is printed once and stored only as a hash.
    /// It may only read (GET) unless made with --write.
    Create {
        #[arg(long)]
        name: String,
        /// Let the token make changes too (POST, PUT, DELETE).
        #[arg(long)]
        write: bool,
        /// Stop accepting the token this many days from now (default: never).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36500))]
        expires_days: Option<u32>,
    },
    /// List tokens (names, access, expiry and last use, never the tokens).
    List,
    /// Revoke a token: requests with it get 401 from now on.
    Revoke { name: String },
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok((line.trim_end_matches(['\r', '\n']).to_string(), false));
    }
    Ok((random_secret()[..20].to_string(), true))
}

pub(super) async fn user(config: &Config, action: UserAction) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let accounts = Accounts::new(store.clone());
    match action {
        UserAction::Add {
            name,
            viewer,
            password_stdin,
        } => {
            let (password, generated) = password(password_stdin)?;
            let role = if viewer { "viewer" } else { "admin" };
            accounts.add_user(&name, &password, role).await?;
            let change = Change::of(Action::UserAdd, &name).to(&json!({ "role": role }));
            audit::record(&store, &Actor::cli(), change).await?;
            println!("added {role} {name}");
            if generated {
                println!("password: {password}");
            }
        }
        UserAction::Passwd {
            name,
            password_stdin,
        } => {
            let (password, generated) = password(password_stdin)?;
            accounts.set_password(&name, &password).await?;
            audit::record(
                &store,
                &Actor::cli(),
                Change::of(Action::UserPassword, &name),
            )
            .await?;
            println!("password of {name} changed; their sessions ended");
            if generated {
                println!("password: {password}");
            }
        }
        UserAction::Remove { name } => {
            let role = accounts
                .users()
                .await?
                .into_iter()
                .find(|(user, _)| *user == name)
                .map(|(_, role)| role);
            accounts.remove_user(&name).await?;
            let change = Change::of(Action::UserRemove, &name).from(&json!({ "role": role }));
            audit::record(&store, &Actor::cli(), change).await?;
            println!("removed {name}");
        }
        UserAction::TotpOff { name } => {
            accounts.disable_totp(&name).await?;
            audit::record(
                &store,
                &Actor::cli(),
                Change::of(Action::UserTotpOff, &name),
            )
            .await?;
            println!("two-step sign-in of {name} is off");
        }
        UserAction::Role { name, role } => {
            let before = accounts.set_role(&name, &role).await?;
            let change = Change::of(Action::UserRole, &name)
                .from(&json!({ "role": before }))
                .to(&json!({ "role": role }));
            audit::record(&store, &Actor::cli(), change).await?;
            println!("{name} is now {role} (was {before})");
        }
        UserAction::List => {
            for (name, role) in accounts.users().await? {
                println!("{name}\t{role}");
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn token(config: &Config, action: TokenAction) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let accounts = Accounts::new(store.clone());
    match action {
        TokenAction::Create {
            name,
            write,
            expires_days,
        } => {
            let access = if write {
                TokenAccess::Write
            } else {
                TokenAccess::Read
            };
            let expires_at =
                expires_days.map(|days| chrono::Utc::now() + chrono::Duration::days(days.into()));
            let token = accounts
                .create_token_with(&name, access, expires_at)
                .await?;
            let info = accounts
                .tokens()
                .await?
                .into_iter()
                .find(|token| token.name == name);
            let change = Change::of(Action::TokenCreate, format!("token:{name}")).to(&info);
            audit::record(&store, &Actor::cli(), change).await?;
            let until = expires_at.map_or("never expires".to_string(), |at| {
                format!("expires {}", at.format("%Y-%m-%d %H:%M UTC"))
            });
            eprintln!(
                "token {name} created ({} access, {until}); it is shown only now:",
                access.key()
            );
            println!("{token}");
        }
        TokenAction::List => {
            for token in accounts.tokens().await? {
                println!(
                    "{}\t{}\tcreated {}\texpires {}\tlast used {}\t{}",
                    token.name,
                    token.access.key(),
                    token.created_at,
                    token.expires_at.as_deref().unwrap_or("never"),
                    token.last_used_at.as_deref().unwrap_or("never"),
                    if token.revoked {
                        "revoked"
                    } else if token.expired {
                        "expired"
                    } else {
                        "active"
                    }
                );
            }
        }
        TokenAction::Revoke { name } => {
            accounts.revoke_token(&name).await?;
            let change = Change::of(Action::TokenRevoke, format!("token:{name}"));
            audit::record(&store, &Actor::cli(), change).await?;
            println!("revoked {name}");
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
