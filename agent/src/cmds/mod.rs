//! One module per subcommand; each returns `Result<(), Failure>`.

pub mod check;
pub mod devices;
pub mod plan;
pub mod run;
pub mod score;
pub mod session;
pub mod spool;

use crate::Failure;
use crate::analysis::Analyzer;
use crate::config::Validated;

/// Logs: to the journal with structured fields when systemd connected our
/// stderr to it (`JOURNAL_STREAM`), else plain text on stderr. `RUST_LOG`
/// filters (default `info`). Tokens are never logged.
pub fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_syslog_identifier("invigil".into()))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Loads the model named by the config into an analyzer.
pub fn analyzer(cfg: &Validated) -> Result<Analyzer, Failure> {
    let det = models::TfliteDetector::load(&cfg.model_path, cfg.model_threads).map_err(|e| {
        let hint = if matches!(e, models::DetectorError::Read { .. }) {
            " (run scripts/fetch-assets, or set model.path)"
        } else {
            ""
        };
        Failure::runtime(format!("{e}{hint}"))
    })?;
    Ok(Analyzer::new(Box::new(det), cfg.score.clone(), cfg.device_id.clone()))
}

pub fn load_config(path: Option<&std::path::Path>) -> Result<Validated, Failure> {
    crate::config::resolve(path).map_err(Failure::usage)
}
