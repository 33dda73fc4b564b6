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
    analyzer_and_backend(cfg).map(|(a, _)| a)
}

/// Loads the model on `model.backend` (`auto`: LiteRT when its library
/// loads, else tflite) and says which backend runs it.
pub fn analyzer_and_backend(cfg: &Validated) -> Result<(Analyzer, models::BackendChoice), Failure> {
    let (det, choice) =
        models::load_face_detector(cfg.model_backend, &cfg.model_path, cfg.model_threads, cfg.litert_lib.as_deref())
            .map_err(|e| {
                let hint = match e {
                    models::DetectorError::Read { .. } => " (run scripts/fetch-assets, or set model.path)",
                    _ => "",
                };
                Failure::runtime(format!("{e}{hint}"))
            })?;
    let signals = crate::analysis::load_signals(cfg, &choice).map_err(Failure::runtime)?;
    Ok((Analyzer::new(det, signals, cfg.score.clone(), cfg.device_id.clone()), choice))
}

/// The config with `auto` resolved to what `choice` found, so that later
/// loads (one per `/analyze` connection) take the same backend and library
/// without searching again.
pub fn pin_backend(cfg: &Validated, choice: &models::BackendChoice) -> Validated {
    let mut c = cfg.clone();
    if c.model_backend == models::Backend::Auto {
        c.model_backend = if choice.backend == "litert" { models::Backend::LiteRt } else { models::Backend::Tflite };
        c.litert_lib = choice.library.clone().or(c.litert_lib);
    }
    c
}

pub fn load_config(path: Option<&std::path::Path>) -> Result<Validated, Failure> {
    crate::config::resolve(path).map_err(Failure::usage)
}
