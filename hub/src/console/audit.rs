//! `GET /api/audit[?room=R][&before=ID]`: the audit log, newest first, 200
//! entries a page (`before`: the last id of the previous page). An admin
//! reads every entry (or one room's); a proctor must name a room of theirs
//! (403 otherwise) and sees only that room's entries.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{CurrentUser, rights};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Entries a page.
pub const PAGE: i64 = 200;

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub before: Option<i64>,
}

pub async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let room = match q.room.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => Some(rights::room(&app, &user, r).await?),
        None if user.0.is_admin() => None,
        None => return Err(ApiError::forbidden("a proctor reads the audit log of a room: add ?room=ROOM")),
    };
    let c = app.db.get().await?;
    let entries = crate::db::audit::list(&**c, room, q.before, PAGE).await?;
    Ok(Json(json!({ "room": q.room, "entries": entries })))
}
