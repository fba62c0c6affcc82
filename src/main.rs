//! The `smsdrop` command: parses arguments, loads the configuration, calls into the
//! library and maps the result to an exit code (0 accepted, 1 rejected, 2 usage or
//! configuration error).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use smsdrop::check::{self, CheckRequest, OutputFormat};
use smsdrop::config::Config;
use smsdrop::ingest;
use smsdrop::intake::Status;
use smsdrop::intake::zone::NumberZones;

#[derive(Parser)]
#[command(
    name = "smsdrop",
    version,
    about = "Zip archives over FTP → validated, scheduled SMS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the FTP/FTPS server and the poller until SIGTERM or SIGINT.
    Serve {
        /// Configuration file (default: the embedded development config).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Dry run: show what an archive would do; nothing is queued or written.
    Check {
        /// The archive, named <login>_<YYYYMMDDhhmmss>.zip.
        archive: PathBuf,
        /// Configuration file (default: the embedded development config).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Account to check against (default: the login in the archive name).
        #[arg(long)]
        account: Option<String>,
        /// Processing time, RFC 3339 (default: now).
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Process one archive as the poller does: queue, results, duplicate check.
    Ingest {
        archive: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Account the archive is for (default: the login in the archive name).
        #[arg(long)]
        account: Option<String>,
    },
    /// Read the queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Check a configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the argon2id PHC hash of the password read from standard input.
    HashPassword,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration (and its registry files) and print what smsdrop
    /// would run with; exit 2 naming the key at fault.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Batches and messages by status.
    Stats,
    /// Queued messages, in batch and line order.
    List {
        /// Only this batch.
        #[arg(long)]
        batch: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-23T07:00:00Z ({e})"))
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default()?,
    })
}

/// 0 when anything was accepted, 1 when the archive was rejected.
fn exit_code(status: Status) -> ExitCode {
    match status {
        Status::Accepted | Status::PartiallyAccepted => ExitCode::SUCCESS,
        Status::Rejected => ExitCode::from(1),
    }
}

/// Logs go to stderr: level from `RUST_LOG` (default `info`, libunftp at `warn`),
/// JSON lines when
/// `SMSDROP_LOG_FORMAT=json`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // libunftp's own spans carry whole structs at info level: keep them quiet.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,libunftp=warn,unftp_sbe_fs=warn,rustls=error")
        });
    // Colours only for a person at a terminal, never into journald or a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if std::env::var("SMSDROP_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The one-shot commands print their own results; they log only when asked.
    if matches!(cli.command, Command::Serve { .. }) || std::env::var_os("RUST_LOG").is_some() {
        init_logging();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smsdrop: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config: path } => {
            let config = std::sync::Arc::new(load_config(path.as_deref())?);
            let zones =
                std::sync::Arc::new(NumberZones::from_files(&config.numbering.registry_files)?);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let signals = shutdown.clone();
                tokio::spawn(async move {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("SIGTERM handler");
                    let signal = tokio::select! {
                        _ = tokio::signal::ctrl_c() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                    };
                    tracing::info!(signal, "shutting down: no new sessions, uploads in progress get 10 s, archives being processed finish");
                    signals.cancel();
                });
                let listeners = smsdrop::serve::Listeners::open(&config).await?;
                smsdrop::serve::run(listeners, config, path, zones, shutdown).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            archive,
            config,
            account,
            now,
            format,
        } => {
            let config = load_config(config.as_deref())?;
            let zones = NumberZones::from_files(&config.numbering.registry_files)?;
            let request = CheckRequest {
                archive: &archive,
                account: account.as_deref(),
                now,
                format,
            };
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            let status = check::run(&config, &zones, &request, &mut out)?;
            out.flush()?;
            Ok(exit_code(status))
        }
        Command::Ingest {
            archive,
            config,
            account,
        } => {
            let config = load_config(config.as_deref())?;
            let zones = NumberZones::from_files(&config.numbering.registry_files)?;
            let meta = std::fs::metadata(&archive)
                .with_context(|| format!("cannot read archive {}", archive.display()))?;
            anyhow::ensure!(meta.is_file(), "{} is not a file", archive.display());
            let file_name = archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let summary = match check::resolve_account(&config, &file_name, account.as_deref())? {
                Some(account) => {
                    let backend =
                        smsdrop::queue::Backend::open(&config.queue, &config.spool.state_dir)?;
                    let mut queue = backend.writer()?;
                    ingest::ingest(&config, &zones, &mut *queue, &archive, account, Utc::now())?
                        .summary
                }
                None => check::name_only_report(&file_name, Utc::now(), Utc::now()).summary,
            };
            println!("{}", serde_json::to_string(&summary)?);
            Ok(exit_code(summary.status))
        }
        Command::Queue { command, config } => {
            let config = load_config(config.as_deref())?;
            let Some(queue) =
                smsdrop::queue::open_read_only(&config.queue, &config.spool.state_dir)?
            else {
                anyhow::bail!("no queue at {} yet", config.queue.path.display());
            };
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            match command {
                QueueCommand::Stats => {
                    let stats = queue.stats()?;
                    writeln!(out, "batches:   {}", stats.batches)?;
                    writeln!(out, "messages:  {}", stats.messages)?;
                    for (status, n) in &stats.by_status {
                        writeln!(out, "  {status:<9} {n}")?;
                    }
                    if let Some(next) = &stats.next_send_at {
                        writeln!(out, "next send: {next}")?;
                    }
                }
                QueueCommand::List { batch, format } => {
                    queue.list(batch.as_deref(), &mut |m| match format {
                        OutputFormat::Jsonl => {
                            serde_json::to_writer(&mut out, m)?;
                            out.write_all(b"\n")
                        }
                        OutputFormat::Text => writeln!(
                            out,
                            "{}  {}  {}  {}  {}",
                            m.message_id, m.phone, m.send_at, m.status, m.text
                        ),
                    })?;
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let config = load_config(config.as_deref())?;
            let zones = NumberZones::from_files(&config.numbering.registry_files)?;
            print!(
                "{}",
                smsdrop::config::describe(&config, zones.registry_len())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::HashPassword => {
            let mut password = String::new();
            io::stdin()
                .read_to_string(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.strip_suffix('\n').unwrap_or(&password);
            let password = password.strip_suffix('\r').unwrap_or(password);
            anyhow::ensure!(!password.is_empty(), "the password is empty");
            println!("{}", smsdrop::password::hash(password)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
