//! Command-line interface: `serve`, `import`, `reprocess`, `enrich`, `geo`, `migrate`, `parse`, `mailbox`, `outbox`.

mod accounts;
mod check;
mod enrich;
mod geo;
mod import;
mod mailbox;
mod outbox;
mod parse;
mod prune;
mod serve;
mod serve_hosted;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::store::{Requeue, Store};

#[derive(Debug, Parser)]
#[command(
    name = "dmarcd",
    version,
    about = "Self-hosted DMARC and SMTP TLS report server"
)]
pub struct Cli {
    /// Config file (default: ./dmarcd.toml if present; see config.example.toml).
    #[arg(long, global = true, env = "DMARCD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: apply migrations, then process the inbox until stopped.
    Serve,
    /// Store report files, directories, mbox files or Maildir folders in the
    /// inbox and process them; prints a summary.
    Import {
        /// Files or directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run stored messages through the current parser again.
    Reprocess {
        /// Every message that failed.
        #[arg(long, conflicts_with_all = ["all", "ids"])]
        failed: bool,
        /// Every message (reports derived from them are rebuilt).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Inbox message ids.
        ids: Vec<i64>,
    },
    /// Describe stored sending IPs now: country and ASN from the IP
    /// databases, PTR names, source names. `serve` does this continuously;
    /// run it with --refresh after installing a new database file or map.
    Enrich {
        /// Describe every stored IP again, and look up PTR names again
        /// where the answer is stale or lookups were given up.
        #[arg(long)]
        refresh: bool,
        /// With --refresh: look up every PTR name again.
        #[arg(long, requires = "refresh")]
        dns: bool,
    },
    /// IP databases for country and ASN: `dmarcd geo update` downloads
    /// DB-IP's free ones (the `[geo]` section says where from and to).
    Geo {
        #[command(subcommand)]
        action: geo::GeoAction,
    },
    /// IMAP mailboxes ([[mailbox]] in the config): test one, or pull it now.
    Mailbox {
        #[command(subcommand)]
        action: mailbox::MailboxAction,
    },
    /// The outbox (mail and webhooks dmarcd sends): test [mail_out] or a
    /// webhook, list what is queued.
    Outbox {
        #[command(subcommand)]
        action: outbox::OutboxAction,
    },
    /// Manage dashboard users.
    User {
        #[command(subcommand)]
        action: accounts::UserAction,
    },
    /// Manage API tokens (Authorization: Bearer …).
    Token {
        #[command(subcommand)]
        action: accounts::TokenAction,
    },
    /// Manage domain groups (tenants): which domains each holds, who is a
    /// member with which role.
    Group {
        #[command(subcommand)]
        action: accounts::GroupAction,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Delete what the `[retention]` settings no longer keep (the raw bytes
    /// of processed messages past `retention.raw_days`, aggregate records
    /// past `retention.aggregate_days`, day rollups past
    /// `retention.day_rollup_days`), in small batches;
    /// `serve` does this on its own every `retention.interval_minutes`.
    Prune {
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the DNS records of domains (DMARC, SPF, DKIM, MX, MTA-STS,
    /// TLS-RPT, BIMI) and print what is wrong and the records that fix it.
    /// Exits non-zero if any finding is an error.
    Check {
        /// Domain names.
        #[arg(required = true)]
        domains: Vec<String>,
        /// DKIM selectors to check (besides those seen in reports).
        #[arg(long = "selector")]
        selectors: Vec<String>,
        /// One JSON document per domain instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Parse report files or emails and print each report as one line of JSON.
    ///
    /// Accepts .xml, .json, .gz, .zip, zlib and whole emails (.eml), judged
    /// by content. Prints one JSON document per report on stdout (see
    /// docs/parse-output.md), one error line per failing input on stderr,
    /// and exits non-zero if any input failed. Touches no database.
    Parse {
        /// Files to parse ("-" reads standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Pretty-print the JSON (one document per report, still in order).
        #[arg(long)]
        pretty: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Command::Parse { files, pretty } = &cli.command {
        return parse::parse_command(files, *pretty, &config.decode);
    }
    init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::serve(config).await,
            Command::Import { paths } => import::import(&config, &paths).await,
            Command::Reprocess { failed, all, ids } => {
                let selection = if failed {
                    Requeue::Failed
                } else if all {
                    Requeue::All
                } else if !ids.is_empty() {
                    Requeue::Ids(ids)
                } else {
                    anyhow::bail!("say what to reprocess: --failed, --all or message ids");
                };
                import::reprocess(&config, &selection).await
            }
            Command::Enrich { refresh, dns } => enrich::enrich(&config, refresh, dns).await,
            Command::Geo { action } => geo::geo(&config, action).await,
            Command::Mailbox { action } => mailbox::mailbox(&config, action).await,
            Command::Outbox { action } => outbox::outbox(&config, action).await,
            Command::User { action } => accounts::user(&config, action).await,
            Command::Token { action } => accounts::token(&config, action).await,
            Command::Group { action } => accounts::group(&config, action).await,
            Command::Migrate => migrate(&config).await,
            Command::Prune { dry_run } => prune::prune(&config, dry_run).await,
            Command::Check {
                domains,
                selectors,
                json,
            } => check::check(&config, &domains, &selectors, json).await,
            Command::Parse { .. } => unreachable!("handled above"),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(log: &crate::config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DMARCD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: a log file, journald or
    // a pipe would keep them as `\x1b[2m` noise.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        crate::config::LogFormat::Text => builder.try_init(),
        crate::config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Connects to the configured database and brings its schema up to date.
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(config.database.url.as_deref(), &config.data_dir).await?;
    let applied = store.migrate().await?;
    for migration in applied {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    Ok(store)
}

async fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let store = Store::connect(config.database.url.as_deref(), &config.data_dir).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("{}: schema is up to date", store.backend());
    }
    for migration in applied {
        println!(
            "{}: applied {:04} {}",
            store.backend(),
            migration.version,
            migration.name
        );
    }
    Ok(ExitCode::SUCCESS)
}
