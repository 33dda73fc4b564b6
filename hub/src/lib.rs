//! `invigil-hub`: the server a school runs for its exam rooms. Boxes (the
//! `invigil` agent at each desk) send their score batches here, keep one
//! WebSocket open to learn their exam session and report their live state,
//! and upload their clips through it; proctors start and stop exams and
//! review incidents. Everything durable is in PostgreSQL; clips are in an
//! `object_store` (a local folder or S3-compatible storage). Several hub
//! processes may share one database: nothing that matters lives only in a
//! process (live desk state is mirrored to the database every 500 ms).
//!
//! What it promises, with the test that proves each, is in
//! `docs/DESIGN.md` ("hub"); the command line and HTTP paths that others
//! rely on are in `../shared/CONTRACTS.md` ("The hub").
//!
//! # Layout
//! - [`config`]: the strict TOML config; `validate()` names the field at
//!   fault and a good value.
//! - [`db`]: the connection pool, versioned migrations
//!   (`db/migrations/NNNN_*.sql`, embedded), and one module of typed,
//!   parameterised queries per table group.
//! - [`api`]: the HTTP router: batch ingest, the device WebSocket, clip
//!   upload and playback, login and rights, rooms and exams, `/healthz`,
//!   `/metrics`.
//! - [`live`]: connected desks on this hub (their latest state, the channel
//!   to push sessions down), mirrored to the `desk_live` table.
//! - [`sessions`]: LISTEN/NOTIFY and the periodic reconcile that push
//!   session changes to connected desks, and the exam scheduler.
//! - [`storage`]: the clip store (local folder or S3) and object keys.
//! - [`console`]: the room console's pages (server-rendered shells, vanilla
//!   JS and CSS embedded in the binary), its live WebSocket, and the review,
//!   export and audit API they use.
//! - [`retention`]: deletes an exam's clips and scores N days after it
//!   stopped.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`token`]: random tokens and their SHA-256 (device tokens, login
//!   sessions).
//! - [`roster`]: the exam roster CSV (`desk,student_id`).
//! - [`server`]: starts everything for `run` (and in-process tests) and
//!   stops it in order.
//! - [`cmds`]: one file per subcommand; `main.rs` only dispatches.

pub mod api;
pub mod cmds;
pub mod config;
pub mod console;
pub mod db;
pub mod live;
pub mod metrics;
pub mod retention;
pub mod roster;
pub mod server;
pub mod sessions;
pub mod storage;
pub mod token;

/// Exit codes, as the agent's: 2 for bad usage or config, 1 for a runtime
/// failure.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_FAILURE: i32 = 1;
