//! The invigil agent: wires capture, scoring, spool, incidents and (later)
//! sync, clips and the live server together.
//!
//! # Layout
//! - [`config`]: the TOML config, strict, every default documented.
//! - [`analysis`]: detector + scorer per stream, producing the result JSON.
//! - [`frame_decode`]: `/analyze` messages to JPEG bytes to pixels at the model's scale.
//! - [`incident`]: spans of low score.
//! - [`spool`]: the durable SQLite spool and its writer thread.
//! - [`sync`]: score batches upstream (HTTP), with retry and dead-letters.
//! - [`upload`]: clips to object storage (S3 or a folder).
//! - [`gpio`]: the recording light and call button, behind a small trait.
//! - [`service`]: systemd notifications (READY, WATCHDOG, STATUS, STOPPING).
//! - [`cmds`]: one module per `invigil` subcommand.
//!
//! Errors: each module has its own error enum; commands turn them into a
//! [`Failure`] (one line, an exit code) at the edge.

pub mod analysis;
pub mod cmds;
pub mod config;
pub mod frame_decode;
pub mod gpio;
pub mod incident;
pub mod plot;
pub mod server;
pub mod service;
pub mod spool;
pub mod sync;
pub mod upload;
pub mod worker;

/// A command's failure: one line for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Bad usage or config: exit code 2.
    pub fn usage(m: impl std::fmt::Display) -> Self {
        Failure { code: 2, message: m.to_string() }
    }
    /// Runtime failure: exit code 1.
    pub fn runtime(m: impl std::fmt::Display) -> Self {
        Failure { code: 1, message: m.to_string() }
    }
}
