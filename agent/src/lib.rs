//! The invigil agent: wires capture, scoring, the spool, sync, clips, the
//! live server and the hub link together. Data flows one way: frames ->
//! detections -> scores -> spool -> sync; scores -> incident -> clip ->
//! upload (docs/DESIGN.md maps it).
//!
//! # Layout
//! - [`config`]: the TOML config, strict, every default documented.
//! - [`credentials`]: the one rule for secrets (tokens, storage keys).
//! - [`domain`]: sessions, scores, incidents, clip files; [`sessions`]: the
//!   box's current session.
//! - [`clock`], [`shutdown`], [`worker`]: time as a seam, the one way to
//!   stop, and a loop on a thread of its own.
//! - [`analysis`]: detector + scorer per stream, producing `proto::Analysis`.
//! - [`frame_decode`]: `/analyze` messages to JPEG bytes to pixels at the model's scale.
//! - [`incident`]: spans of low score.
//! - [`spool`]: the durable SQLite spool and its writer thread.
//! - [`sync`]: score batches upstream (HTTP), with retry and dead-letters.
//! - [`upload`]: clips to object storage (S3 or a folder) or through the hub.
//! - [`hub_link`]: the box's WebSocket to its hub: sessions down, live state up.
//! - [`server`]: the live server (`/live`, `/analyze`, sessions, health, metrics).
//! - [`gpio`]: the recording light and call button, behind a small trait.
//! - [`service`]: systemd notifications (READY, WATCHDOG, STATUS, STOPPING).
//! - [`plot`]: the score-over-time picture of `invigil score --plot`.
//! - [`cmds`]: one module per `invigil` subcommand; `cmds::run` is the agent.
//!
//! Wire types (what goes to the hub, to exam pages and to outside checks)
//! are the `proto` crate's. Errors: each module has its own error enum;
//! commands turn them into a [`Failure`] (one line, an exit code) at the edge.

pub mod analysis;
pub mod clock;
pub mod cmds;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod frame_decode;
pub mod gpio;
pub mod hub_link;
pub mod incident;
pub mod plot;
pub mod server;
pub mod service;
pub mod sessions;
pub mod shutdown;
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
