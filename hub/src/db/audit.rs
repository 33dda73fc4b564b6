//! The audit log: who did what, when. Every admin action (enrolment,
//! revocation, users, exams), every clip view and every review decision is
//! written here; an action and its entry are one transaction
//! (`crate::actions`).
//! Entries about a room carry its id, so a proctor can read their rooms'
//! log (the console's audit page) and nobody else's.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

/// Appends one entry; `room_id` is the room it concerns, if any (a
/// proctor reads their rooms' entries).
pub async fn append(
    c: &impl GenericClient,
    actor: &str,
    action: &str,
    room_id: Option<i64>,
    detail: serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO audit_log (actor, action, detail, room_id) VALUES ($1, $2, $3, $4)",
        &[&actor, &action, &detail, &room_id],
    )
    .await?;
    Ok(())
}

/// The newest entries (for tests).
pub async fn recent(
    c: &impl GenericClient,
    limit: i64,
) -> Result<Vec<(String, String, serde_json::Value)>, tokio_postgres::Error> {
    Ok(c.query("SELECT actor, action, detail FROM audit_log ORDER BY id DESC LIMIT $1", &[&limit])
        .await?
        .iter()
        .map(|r| (r.get("actor"), r.get("action"), r.get("detail")))
        .collect())
}

/// One entry as the console lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: proto::Timestamp,
    pub actor: String,
    pub action: String,
    pub room: Option<String>,
    pub detail: serde_json::Value,
}

/// The newest `limit` entries, of one room (`Some`) or of all (`None`),
/// older than `before` (an entry id) when given: newest first.
pub async fn list(
    c: &impl GenericClient,
    room: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT a.id, a.at, a.actor, a.action, r.name AS room, a.detail FROM audit_log a
             LEFT JOIN rooms r ON r.id = a.room_id
             WHERE ($1::bigint IS NULL OR a.room_id = $1) AND ($2::bigint IS NULL OR a.id < $2)
             ORDER BY a.id DESC LIMIT $3",
            &[&room, &before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            id: r.get("id"),
            at: proto::Timestamp(r.get::<_, DateTime<Utc>>("at")),
            actor: r.get("actor"),
            action: r.get("action"),
            room: r.get("room"),
            detail: r.get("detail"),
        })
        .collect())
}
