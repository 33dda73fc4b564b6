//! Invigil's wire types: what the agent (the box at a desk) and the hub
//! (the school's server) say to each other and to outside checks. Serde
//! types only, no I/O, so a change to a contract breaks both sides at
//! compile time. The formats are those of `../shared/CONTRACTS.md`; a field
//! may be added, never renamed or removed (golden-JSON tests in
//! `proto/tests/golden.rs` pin the bytes).
//!
//! # Layout
//! - [`time`]: timestamps on the wire (RFC 3339, UTC, milliseconds).
//! - [`reason`]: what lowered a score (`no_face`, …), open to names a newer
//!   box may send.
//! - [`analysis`]: one analysed frame (`/live`, `/analyze`, `score --json`).
//! - [`incident`]: an incident and its clips (score batches, `/live`).
//! - [`batch`]: the upstream score batch (`POST …/analyze-batch`) and its
//!   checks.
//! - [`device`]: the messages of a box's connection to the hub (sessions
//!   down, live state up) and the clip-upload reply.

pub mod analysis;
pub mod batch;
pub mod device;
pub mod incident;
pub mod reason;
pub mod time;

pub use analysis::Analysis;
pub use batch::{Batch, BatchAck, Score};
pub use incident::{Clip, Incident, LiveIncident};
pub use reason::Reason;
pub use time::Timestamp;

/// A wire value that is well-formed JSON but out of its allowed range; names
/// the field by its path in the document (`scores[17].focus_score`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// Checks an identifier sent by a box (device, session, student, batch and
/// incident ids): 1 to `max` characters, printable ASCII without spaces,
/// quotes, slashes or backslashes, so it is safe in logs, object keys and
/// file names.
pub fn check_id(field: impl Into<String>, value: &str, max: usize) -> Result<(), Invalid> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'/' | b'\\'));
    if ok {
        Ok(())
    } else {
        Err(Invalid {
            field: field.into(),
            message: format!(
                "{value:?} is not an id: use 1 to {max} printable characters without spaces, quotes or slashes"
            ),
        })
    }
}
