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
//! One layer per job; a request goes routes -> auth -> handler (api or
//! console) -> action (writes with their audit entry) -> db (every SQL
//! statement), and never back up.
//! - [`server`]: starts everything for `run` (and in-process tests) and
//!   stops it in order; [`shutdown`], the one stop signal; [`clock`], time
//!   as a seam.
//! - [`state`]: [`state::App`], the handles every part shares.
//! - [`routes`]: the one router (API and console) and the layers every
//!   answer passes (request id and log, security headers).
//! - [`error`]: [`error::ApiError`], the one error shape, and database
//!   errors classified by SQLSTATE; [`extract`]: extractors that reject in
//!   that shape; [`body`]: capped request bodies and gzip.
//! - [`auth`]: who is asking (a desk by its token, a user by their cookie)
//!   and what they may touch (rights per room).
//! - [`api`]: the HTTP API of boxes and console scripts (ingest, device
//!   WebSocket, clips, login, rooms, exams, health).
//! - [`console`]: the room console's pages (server-rendered shells, vanilla
//!   JS and CSS embedded in the binary), its live WebSocket, and the review,
//!   export, audit and admin API they use.
//! - [`actions`]: what a person can do (exams, desks, users, decisions),
//!   each with its audit entry in one transaction, for API and CLI alike.
//! - [`db`]: the pool, versioned migrations, and every SQL statement, as
//!   typed functions per table group.
//! - [`domain`]: the hub's vocabulary as types (exam state, role,
//!   decision, reason weights).
//! - [`connections`]: desks connected to this hub (their latest state, the
//!   channel to push sessions down); [`sessions`]: a desk's session pushed
//!   when it changes.
//! - [`jobs`]: background loops (LISTEN/NOTIFY, reconcile, scheduler, live
//!   flush, retention).
//! - [`token_cache`], [`limits`]: desks by token hash; token buckets.
//! - [`storage`]: the clip store (local folder or S3) and object keys.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`token`]: random tokens and their SHA-256 (device tokens, login
//!   sessions).
//! - [`roster`]: the exam roster CSV (`desk,student_id[,row,col]`).
//! - [`config`]: the strict TOML config; `validate()` names the field at
//!   fault and a good value.
//! - [`cmds`]: one file per subcommand; `main.rs` only dispatches.

pub mod actions;
pub mod api;
pub mod auth;
pub mod body;
pub mod clock;
pub mod cmds;
pub mod config;
pub mod connections;
pub mod console;
pub mod db;
pub mod domain;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod roster;
pub mod routes;
pub mod server;
pub mod sessions;
pub mod shutdown;
pub mod state;
pub mod storage;
pub mod token;
pub mod token_cache;

/// Exit codes, as the agent's: 2 for bad usage or config, 1 for a runtime
/// failure.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_FAILURE: i32 = 1;
