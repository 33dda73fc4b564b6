//! Rooms and desks: enrolment (a new token, only its hash stored),
//! revocation, and finding the desk a bearer token belongs to.
//! Enrolment and revocation notify every hub (`invigil_desks`) so a
//! revoked token stops working at once, not when a cache expires.

use tokio_postgres::GenericClient;

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

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("{0}")]
    Invalid(String),
    #[error("desk {0:?} is already enrolled; `invigil-hub device add {0} --room ROOM --rotate` replaces its token")]
    Enrolled(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// A room name: 1 to 64 printable characters (spaces allowed), no slash,
/// quote or backslash.
pub fn check_room(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.trim() == name
        && name.chars().all(|c| !c.is_control() && !matches!(c, '/' | '\\' | '"' | '\''));
    if ok {
        Ok(())
    } else {
        Err(format!("room {name:?} is not a room name: use 1 to 64 printable characters without slashes or quotes"))
    }
}

/// The room's id, created if new.
pub async fn room_id(c: &impl GenericClient, name: &str) -> Result<i64, tokio_postgres::Error> {
    let row = c
        .query_one(
            "INSERT INTO rooms (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            &[&name],
        )
        .await?;
    Ok(row.get(0))
}

/// The room's id, if it exists.
pub async fn find_room(c: &impl GenericClient, name: &str) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT id FROM rooms WHERE name = $1", &[&name]).await?.map(|r| r.get(0)))
}

/// Enrols `device_id` in `room` and returns its new token (shown once).
/// An enrolled desk is refused unless `rotate`; a revoked one is enrolled
/// again.
pub async fn enrol(
    c: &mut deadpool_postgres::Object,
    device_id: &str,
    room: &str,
    rotate: bool,
) -> Result<String, EnrolError> {
    proto::check_id("desk", device_id, proto::batch::MAX_DEVICE_ID_LEN)
        .map_err(|e| EnrolError::Invalid(e.to_string()))?;
    check_room(room).map_err(EnrolError::Invalid)?;
    let tok = token::new_token();
    let hash = token::hash(&tok);
    let tx = c.transaction().await?;
    let room_id = room_id(&*tx, room).await?;
    let existing = tx
        .query_opt("SELECT token_sha256 IS NOT NULL FROM desks WHERE device_id = $1 FOR UPDATE", &[&device_id])
        .await?;
    match existing {
        Some(row) if row.get::<_, bool>(0) && !rotate => return Err(EnrolError::Enrolled(device_id.to_string())),
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
    tx.commit().await?;
    Ok(tok)
}

/// Revokes the desk's token; false if there is no such enrolled desk.
pub async fn revoke(c: &impl GenericClient, device_id: &str) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "WITH r AS (UPDATE desks SET token_sha256 = NULL, revoked_at = now()
                        WHERE device_id = $1 AND token_sha256 IS NOT NULL RETURNING device_id)
             SELECT pg_notify($2, device_id) FROM r",
            &[&device_id, &DESKS_CHANNEL],
        )
        .await?;
    Ok(n > 0)
}

/// The enrolled desk whose token hashes to `hash`.
pub async fn by_token(c: &impl GenericClient, hash: &[u8]) -> Result<Option<Desk>, tokio_postgres::Error> {
    let st = c
        .prepare_typed(
            "SELECT d.id, d.device_id, d.room_id, r.name FROM desks d JOIN rooms r ON r.id = d.room_id
             WHERE d.token_sha256 = $1",
            &[tokio_postgres::types::Type::BYTEA],
        )
        .await?;
    Ok(c.query_opt(&st, &[&hash]).await?.map(|r| Desk {
        id: r.get(0),
        device_id: r.get(1),
        room_id: r.get(2),
        room: r.get(3),
    }))
}

/// The desks of a room, by device id.
pub async fn in_room(c: &impl GenericClient, room_id: i64) -> Result<Vec<(i64, String, bool)>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT id, device_id, token_sha256 IS NOT NULL FROM desks WHERE room_id = $1 ORDER BY device_id",
        &[&room_id],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect())
}
