//! Desks: enrol (a new token, shown once) and revoke, audited with their room.

use serde_json::json;

use super::ActionError;
use crate::db::Db;

/// Enrols `desk` in `room` (or replaces its token with `rotate`); its new
/// token.
pub async fn enrol(db: &Db, actor: &str, desk: &str, room: &str, rotate: bool) -> Result<String, ActionError> {
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    let (token, room_id) = crate::db::desks::enrol_in(&tx, desk, room, rotate).await?;
    let detail = json!({"desk": desk, "room": room, "rotate": rotate});
    crate::db::audit::append(&*tx, actor, "device.add", Some(room_id), detail).await?;
    tx.commit().await?;
    Ok(token)
}

/// Revokes `desk`'s token: 401 for it from now on, on every hub.
pub async fn revoke(db: &Db, actor: &str, desk: &str) -> Result<(), ActionError> {
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    let Some(room) = crate::db::desks::revoke(&*tx, desk).await? else {
        return Err(ActionError::NotFound(format!("desk {desk:?} is not enrolled (or already revoked)")));
    };
    crate::db::audit::append(&*tx, actor, "device.revoke", Some(room), json!({"desk": desk})).await?;
    tx.commit().await?;
    Ok(())
}
