//! Desks: enrolment (a new token, only its hash stored), revocation, and
//! finding the desk a bearer token belongs to. Enrolment and revocation
//! notify every hub (`invigil_desks`) so a revoked token stops working at
//! once, not when a cache expires.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Transaction};

use crate::token;

/// The channel hubs LISTEN on for desk changes (payload: the device id).
pub const DESKS_CHANNEL: &str = "invigil_desks";

/// A desk as an authenticated request sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desk {
    pub id: i64,
    pub device_id: String,
    pub room_id: i64,
    pub room: String,
}

/// A desk as the lists show it.
#[derive(Clone, Debug)]
pub struct DeskRow {
    pub id: i64,
    pub device_id: String,
    pub room: String,
    /// Its token is valid (not revoked).
    pub enrolled: bool,
    pub enrolled_at: DateTime<Utc>,
}

impl DeskRow {
    fn from_row(r: &tokio_postgres::Row) -> DeskRow {
        DeskRow {
            id: r.get("id"),
            device_id: r.get("device_id"),
            room: r.get("room"),
            enrolled: r.get("enrolled"),
            enrolled_at: r.get("enrolled_at"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("{0}")]
    Invalid(String),
    #[error("desk {0:?} is already enrolled; `invigil-hub device add {0} --room ROOM --rotate` replaces its token")]
    Enrolled(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Enrols `device_id` in `room` and returns its new token (shown once) and
/// the room's id. An enrolled desk is refused unless `rotate`; a revoked
/// one is enrolled again. Notifies every hub at commit.
pub async fn enrol_in(
    tx: &Transaction<'_>,
    device_id: &str,
    room: &str,
    rotate: bool,
) -> Result<(String, i64), EnrolError> {
    proto::check_id("desk", device_id, proto::batch::MAX_DEVICE_ID_LEN)
        .map_err(|e| EnrolError::Invalid(e.to_string()))?;
    crate::domain::check_room(room).map_err(EnrolError::Invalid)?;
    let tok = token::new_token();
    let hash = token::hash(&tok);
    let room_id = super::rooms::ensure(tx, room).await?;
    let existing = tx
        .query_opt(
            "SELECT token_sha256 IS NOT NULL AS enrolled FROM desks WHERE device_id = $1 FOR UPDATE",
            &[&device_id],
        )
        .await?;
    match existing {
        Some(row) if row.get::<_, bool>("enrolled") && !rotate => {
            return Err(EnrolError::Enrolled(device_id.to_string()));
        }
        Some(_) => {
            tx.execute(
                "UPDATE desks SET token_sha256 = $2, room_id = $3, enrolled_at = now(), revoked_at = NULL WHERE device_id = $1",
                &[&device_id, &hash, &room_id],
            )
            .await?;
        }
        None => {
            tx.execute(
                "INSERT INTO desks (device_id, room_id, token_sha256) VALUES ($1, $2, $3)",
                &[&device_id, &room_id, &hash],
            )
            .await?;
        }
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&DESKS_CHANNEL, &device_id]).await?;
    Ok((tok, room_id))
}

/// Revokes the desk's token; its room's id, or None if there is no such
/// enrolled desk. Notifies every hub at commit.
pub async fn revoke(c: &impl GenericClient, device_id: &str) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "WITH r AS (UPDATE desks SET token_sha256 = NULL, revoked_at = now()
                    WHERE device_id = $1 AND token_sha256 IS NOT NULL RETURNING device_id, room_id)
         SELECT room_id, pg_notify($2, device_id) FROM r",
        &[&device_id, &DESKS_CHANNEL],
    )
    .await?
    .map(|r| r.get("room_id")))
}

/// The enrolled desk whose token hashes to `hash`.
pub async fn by_token(c: &impl GenericClient, hash: &[u8]) -> Result<Option<Desk>, tokio_postgres::Error> {
    let st = c
        .prepare_typed(
            "SELECT d.id, d.device_id, d.room_id, r.name AS room FROM desks d JOIN rooms r ON r.id = d.room_id
             WHERE d.token_sha256 = $1",
            &[tokio_postgres::types::Type::BYTEA],
        )
        .await?;
    Ok(c.query_opt(&st, &[&hash]).await?.map(|r| Desk {
        id: r.get("id"),
        device_id: r.get("device_id"),
        room_id: r.get("room_id"),
        room: r.get("room"),
    }))
}

/// A desk's id and whether its token is revoked.
pub async fn revoked(c: &impl GenericClient, device_id: &str) -> Result<Option<(i64, bool)>, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT id, token_sha256 IS NULL AS revoked FROM desks WHERE device_id = $1", &[&device_id])
        .await?
        .map(|r| (r.get("id"), r.get("revoked"))))
}

/// Desks, of one room or all, by room and device id (at most `limit`).
pub async fn list(
    c: &impl GenericClient,
    room: Option<&str>,
    limit: i64,
) -> Result<Vec<DeskRow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT d.id, d.device_id, r.name AS room, d.token_sha256 IS NOT NULL AS enrolled, d.enrolled_at
             FROM desks d JOIN rooms r ON r.id = d.room_id
             WHERE $1::text IS NULL OR r.name = $1 ORDER BY r.name, d.device_id LIMIT $2",
            &[&room, &limit],
        )
        .await?;
    Ok(rows.iter().map(DeskRow::from_row).collect())
}

/// The desks of a room, by device id.
pub async fn in_room(c: &impl GenericClient, room_id: i64) -> Result<Vec<DeskRow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT d.id, d.device_id, r.name AS room, d.token_sha256 IS NOT NULL AS enrolled, d.enrolled_at
             FROM desks d JOIN rooms r ON r.id = d.room_id WHERE d.room_id = $1 ORDER BY d.device_id",
            &[&room_id],
        )
        .await?;
    Ok(rows.iter().map(DeskRow::from_row).collect())
}
