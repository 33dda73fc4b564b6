//! Typed columns: the integer states of rows and the text timestamps, so
//! no other code of the spool compares bare numbers or re-parses strings.

use chrono::{DateTime, Utc};
use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};

use crate::domain::Reason;

macro_rules! int_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$vm])* $v = $n),+ }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(*self as i64))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                match v.as_i64()? {
                    $($n => Ok($name::$v),)+
                    other => Err(FromSqlError::OutOfRange(other)),
                }
            }
        }
    };
}

int_enum! {
    /// `scores.delivered` and `incidents.delivered`.
    Delivery {
        Pending = 0,
        /// Upstream answered 2xx.
        Delivered = 1,
        /// Upstream refused it for good (a non-retriable 4xx).
        DeadLettered = 2,
    }
}

int_enum! {
    /// `batches.state`.
    BatchState {
        /// Formed and stored, not yet answered 2xx or refused.
        Pending = 0,
        Delivered = 1,
        DeadLettered = 2,
        /// Dead-lettered, then put back in line by `invigil spool requeue-dead`.
        Requeued = 3,
    }
}

int_enum! {
    /// `clips.uploaded`.
    ClipState {
        Pending = 0,
        /// Stored and its size checked.
        Uploaded = 1,
        /// The file was gone before it could be uploaded.
        Lost = 2,
    }
}

/// A time as the spool stores it (RFC 3339, UTC, milliseconds: sortable text).
pub fn ts_text(t: DateTime<Utc>) -> String {
    proto::Timestamp(t).to_string()
}

/// A stored time, typed again; a damaged value is a conversion error
/// (reported as such), never a silent "now".
pub fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    proto::Timestamp::parse(s)
        .map(|t| t.0)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

/// Reasons as the spool stores them (a JSON array of names).
pub fn reasons_text(r: &[Reason]) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| "[]".into())
}

/// Stored reasons; an unreadable list reads as none (it only lowers what
/// a reviewer is told, never what is delivered).
pub fn parse_reasons(s: &str) -> Vec<Reason> {
    serde_json::from_str(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_unknown_numbers_are_errors() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let back: BatchState = c.query_row("SELECT ?1", [BatchState::Requeued], |r| r.get(0)).unwrap();
        assert_eq!(back, BatchState::Requeued);
        let bad: rusqlite::Result<Delivery> = c.query_row("SELECT 7", [], |r| r.get(0));
        assert!(bad.is_err());
        let t = parse_ts("2026-11-24T09:00:00.033Z").unwrap();
        assert_eq!(ts_text(t), "2026-11-24T09:00:00.033Z");
        assert!(parse_ts("garbage").is_err());
    }
}
