//! `dmarcd user …` and `dmarcd token …`: dashboard users and API tokens.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Subcommand;

use serde_json::json;

use crate::accounts::{random_secret, Accounts, TokenAccess};
use crate::audit::{self, Action, Actor, Change};
use crate::config::Config;
use crate::scope::{GroupRole, Scope};

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
        /// A viewer joins this domain group (default: the default group).
        #[arg(long, requires = "viewer")]
        group: Option<String>,
        /// Their role in --group.
        #[arg(long, default_value = "viewer", value_parser = ["owner", "analyst", "viewer"])]
        group_role: String,
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
        /// Limit the token to this domain group's domains.
        #[arg(long, conflicts_with = "write")]
        group: Option<String>,
        /// Its role in --group (a viewer's token only reads).
        #[arg(long, default_value = "viewer", requires = "group",
              value_parser = ["owner", "analyst", "viewer"])]
        role: String,
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
            group,
            group_role,
        } => {
            let (password, generated) = password(password_stdin)?;
            let role = if viewer { "viewer" } else { "admin" };
            let membership = group.as_deref().map(|group| {
                (
                    group,
                    GroupRole::parse(&group_role).unwrap_or(GroupRole::Viewer),
                )
            });
            accounts
                .add_user_in(&name, &password, role, membership)
                .await?;
            let change = Change::of(Action::UserAdd, &name)
                .to(&json!({ "role": role, "group": group, "group_role": group.as_ref().map(|_| &group_role) }));
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
            group,
            role,
        } => {
            let group_role = GroupRole::parse(&role).unwrap_or(GroupRole::Viewer);
            let access = if write || (group.is_some() && group_role >= GroupRole::Analyst) {
                TokenAccess::Write
            } else {
                TokenAccess::Read
            };
            let expires_at =
                expires_days.map(|days| chrono::Utc::now() + chrono::Duration::days(days.into()));
            let token = match &group {
                Some(group) => {
                    accounts
                        .create_group_token(&name, group, group_role, expires_at)
                        .await?
                }
                None => {
                    accounts
                        .create_token_with(&name, access, expires_at)
                        .await?
                }
            };
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
                let group = match (&token.group, &token.group_role) {
                    (Some(group), Some(role)) => format!("group {group} ({role})"),
                    _ => "every domain".to_string(),
                };
                println!(
                    "{}\t{}\t{group}\tcreated {}\texpires {}\tlast used {}\t{}",
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

#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// List domain groups with their domains and members.
    List,
    /// Make a domain group (a customer, a brand).
    Add { name: String },
    /// Remove a group: its domains go back to the default group, its
    /// members leave it, its tokens are deleted.
    Remove { name: String },
    /// Put a domain in a group (a domain is in one group; dmarcd adds it
    /// if no report has named it yet).
    Domain { group: String, domain: String },
    /// Make a user a member of a group with a role, or change their role.
    Member {
        group: String,
        user: String,
        #[arg(value_parser = ["owner", "analyst", "viewer"])]
        role: String,
    },
    /// Take a user out of a group.
    Leave { group: String, user: String },
}

pub(super) async fn group(config: &Config, action: GroupAction) -> anyhow::Result<ExitCode> {
    use crate::groups;
    let store = super::open_store(config).await?;
    let actor = Actor::cli();
    // The operator, like an admin, manages every group.
    let scope = Scope::All;
    let result = match action {
        GroupAction::List => {
            for group in groups::list(&store, &scope).await? {
                let members: Vec<String> = group
                    .members
                    .iter()
                    .map(|m| format!("{} ({})", m.user, m.role))
                    .collect();
                println!(
                    "{}\tdomains: {}\tmembers: {}",
                    group.name,
                    if group.domains.is_empty() {
                        "-".to_string()
                    } else {
                        group.domains.join(", ")
                    },
                    if members.is_empty() {
                        "-".to_string()
                    } else {
                        members.join(", ")
                    }
                );
            }
            Ok(())
        }
        GroupAction::Add { name } => groups::create(&store, &actor, &scope, &name)
            .await
            .map(|_| println!("added group {name}")),
        GroupAction::Remove { name } => groups::remove(&store, &actor, &scope, &name)
            .await
            .map(|()| println!("removed group {name}; its domains are in the default group")),
        GroupAction::Domain { group, domain } => {
            groups::assign_domain(&store, &actor, &scope, &group, &domain)
                .await
                .map(|()| println!("{domain} is in group {group}"))
        }
        GroupAction::Member { group, user, role } => {
            let role = GroupRole::parse(&role).unwrap_or(GroupRole::Viewer);
            groups::set_member(&store, &actor, &scope, &group, &user, role)
                .await
                .map(|()| println!("{user} is {} of group {group}", role.key()))
        }
        GroupAction::Leave { group, user } => {
            groups::remove_member(&store, &actor, &scope, &group, &user)
                .await
                .map(|()| println!("{user} left group {group}"))
        }
    };
    store.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}
