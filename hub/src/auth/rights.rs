//! Rights per room: a proctor acts on the rooms granted, an admin on all.
//! Each function finds the room of what is asked for (by the hub's own
//! records) and checks it against the user. What does not exist is a 404
//! for an admin and a 403 for a proctor, who may not learn which rooms,
//! exams, sessions or incidents exist.

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::state::App;

fn refused(user: &CurrentUser, what: &str) -> ApiError {
    ApiError::forbidden(format!("user {:?} has no rights to {what}", user.0.name))
}

/// Checks `room` (found or not) against the user's rights.
fn check(user: &CurrentUser, room: Option<i64>, what: &str) -> Result<i64, ApiError> {
    match room {
        Some(id) => user.room(id).map(|_| id),
        None if user.0.is_admin() => Err(ApiError::not_found(format!("{what} does not exist"))),
        None => Err(refused(user, what)),
    }
}

/// The room's id.
pub async fn room(app: &App, user: &CurrentUser, room: &str) -> Result<i64, ApiError> {
    let c = app.db.get().await?;
    let found = crate::db::rooms::find(&**c, room).await?;
    match found {
        Some(id) => user.room(id).map(|_| id),
        None if user.0.is_admin() => Err(ApiError::not_found(format!("room {room:?} does not exist"))),
        None => Err(ApiError::forbidden(format!("user {:?} has no rights to this room", user.0.name))),
    }
}

/// The room of exam `id`.
pub async fn exam(app: &App, user: &CurrentUser, id: i64) -> Result<i64, ApiError> {
    let c = app.db.get().await?;
    let room = crate::db::exams::exam_room(&**c, id).await?.map(|r| r.0);
    check(user, room, &format!("exam {id}"))
}

/// The exam and room of session `id`.
pub async fn session(app: &App, user: &CurrentUser, id: &str) -> Result<(i64, i64), ApiError> {
    let c = app.db.get().await?;
    let found = crate::db::sessions::exam_and_room(&**c, id).await?;
    let room = check(user, found.map(|f| f.1), &format!("session {id:?}"))?;
    Ok((found.map(|f| f.0).unwrap_or_default(), room))
}

/// The room of incident `id`.
pub async fn incident(app: &App, user: &CurrentUser, id: i64) -> Result<i64, ApiError> {
    let c = app.db.get().await?;
    let room = crate::db::clips::incident_room(&**c, id).await?;
    check(user, room, &format!("incident {id}"))
}
