//! Console accounts: add (with the rooms a proctor may see), audited.

use serde_json::json;

use super::ActionError;
use crate::db::Db;
use crate::domain::Role;

/// Adds a user with the rooms they may see.
pub async fn add(
    db: &Db,
    actor: &str,
    name: &str,
    role: Role,
    rooms: &[String],
    password: &str,
) -> Result<i64, ActionError> {
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    let id = crate::db::users::add_in(&tx, name, role, rooms, password).await?;
    let detail = json!({"user": name, "role": role, "rooms": rooms});
    crate::db::audit::append(&*tx, actor, "user.add", None, detail).await?;
    tx.commit().await?;
    Ok(id)
}
