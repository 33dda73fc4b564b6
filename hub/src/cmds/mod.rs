//! The command line: one file per subcommand, each returning an exit code
//! (0 ok, 1 runtime failure, 2 bad usage or config). Errors go to stderr
//! as one line naming the file, field or input at fault. The commands and
//! their output are a contract (`../shared/CONTRACTS.md`, "The hub").
//!
//! Every command but `run` opens a small pool (2 connections) and brings
//! the schema up to date first (`migrate` under the advisory lock), so a
//! script may call any command on a fresh database.

pub mod device;
pub mod exam;
pub mod migrate;
pub mod run;
pub mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Validated;
use crate::db::Db;
use crate::{EXIT_FAILURE, EXIT_USAGE};

#[derive(Parser)]
#[command(
    name = "invigil-hub",
    version,
    about = "The Invigil hub: ingest, exam sessions and clips for a school's exam rooms"
)]
pub struct Cli {
    /// The config file (default /etc/invigil-hub/config.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// The server (systemd runs this); migrates the schema first.
    Run,
    /// Creates or upgrades the schema, then exits.
    Migrate,
    /// Desks (boxes): enrol, revoke, list.
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// Console accounts.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Exams: start (with a roster), stop, show.
    #[command(subcommand)]
    Exam(exam::ExamCmd),
}

/// Parses the command line and runs it; the process's exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let cfg = match crate::config::resolve(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invigil-hub: {e}");
            return EXIT_USAGE;
        }
    };
    init_logs(&cfg, matches!(cli.cmd, Cmd::Run));
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("invigil-hub: cannot start the runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Run => run::run(cfg).await,
            Cmd::Migrate => migrate::run(cfg).await,
            Cmd::Device(c) => device::run(cfg, c).await,
            Cmd::User(c) => user::run(cfg, c).await,
            Cmd::Exam(c) => exam::run(cfg, c).await,
        }
    })
}

/// Logs to stderr: `info` for `run`, `warn` for the other commands (their
/// stdout is for scripts), `RUST_LOG` overrides; JSON lines with
/// `log.format = "json"`.
fn init_logs(cfg: &Validated, server: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(if server { "info" } else { "warn" }));
    // Colours only on a terminal: journald (and any log file) would keep
    // the escape codes as text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if cfg.json_logs { b.json().flatten_event(true).try_init() } else { b.try_init() };
}

/// A 2-connection pool on the configured database with the schema up to
/// date; or the exit code after printing why not.
pub async fn connect(cfg: &Validated) -> Result<Db, i32> {
    let db =
        Db::connect_tls(&cfg.database_url, 2, cfg.ca_file.as_deref()).await.map_err(|e| fail(&format!("{e:#}")))?;
    let mut c = db.dedicated().await.map_err(|e| fail(&format!("database: {e}")))?;
    crate::db::migrate::migrate(&mut c).await.map_err(|e| fail(&e.to_string()))?;
    Ok(db)
}

/// Prints `invigil-hub: MESSAGE` and gives the runtime-failure code.
pub fn fail(message: &str) -> i32 {
    eprintln!("invigil-hub: {message}");
    EXIT_FAILURE
}

/// Prints `invigil-hub: MESSAGE` and gives the bad-usage code.
pub fn usage(message: &str) -> i32 {
    eprintln!("invigil-hub: {message}");
    EXIT_USAGE
}

/// The exit code for an action that was not done, after printing why
/// (bad input: 2; anything else: 1).
pub fn action_failed(e: &crate::actions::ActionError) -> i32 {
    use crate::actions::ActionError;
    match e {
        ActionError::Invalid(_) | ActionError::Seat { .. } => usage(&e.to_string()),
        _ => fail(&e.to_string()),
    }
}

/// Who runs a command, for the audit log (`cli:USER`).
pub fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into())
    )
}
