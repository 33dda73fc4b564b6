//! The hub's background jobs, each a loop that runs until the hub stops
//! and survives a failing database (it logs, waits, and tries again):
//!
//! | job | every | what |
//! | --- | --- | --- |
//! | [`notify`] | on each notification | LISTEN for exam and desk changes from any hub; push sessions, drop cached tokens, disconnect revoked desks |
//! | [`reconcile`] | 3 s | re-read the sessions of every desk connected here (a missed notification costs seconds) |
//! | [`scheduler`] | 1 s | start and stop exams whose time has come |
//! | [`live_flush`] | 500 ms | write the changed live states of desks connected here to `desk_live` |
//! | [`retention`] | 60 s | delete the clips and scores of exams whose retention has run out |
//!
//! Every job may run on every hub at once: claims are atomic in PostgreSQL.

pub mod live_flush;
pub mod notify;
pub mod reconcile;
pub mod retention;
pub mod scheduler;

use tokio::task::JoinHandle;

pub use crate::error::JobError;
use crate::state::AppState;

/// Starts every job; each ends when the hub's shutdown is raised.
pub fn spawn_all(app: &AppState) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(notify::run(app.clone())),
        tokio::spawn(reconcile::run(app.clone())),
        tokio::spawn(scheduler::run(app.clone())),
        tokio::spawn(live_flush::run(app.clone())),
        tokio::spawn(retention::run(app.clone())),
    ]
}
