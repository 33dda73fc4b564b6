//! A reviewer's decision on an incident, audited in the room of its exam.

use serde_json::json;

use super::ActionError;
use crate::db::Db;
use crate::db::users::User;
use crate::domain::Decision;

/// Longest note kept with a decision.
pub const MAX_NOTE: usize = 4000;

/// Records `user`'s decision on `incident` (of room `room`, already checked).
pub async fn decide(
    db: &Db,
    user: &User,
    incident: i64,
    room: i64,
    decision: Decision,
    note: Option<&str>,
) -> Result<(), ActionError> {
    if note.is_some_and(|n| n.len() > MAX_NOTE) {
        return Err(ActionError::Invalid(format!("note: longer than {MAX_NOTE} characters")));
    }
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    crate::db::review::insert(&tx, incident, user.id, decision, note).await?;
    let detail = json!({"incident": incident, "decision": decision, "note": note});
    crate::db::audit::append(&*tx, &user.name, "incident.review", Some(room), detail).await?;
    tx.commit().await?;
    Ok(())
}
