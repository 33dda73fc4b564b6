//! Rooms and their desks, live.
//!
//! `GET /api/rooms/{room}/desks` answers from the database (`desk_live`,
//! written by whichever hub each desk is connected to), so every hub gives
//! the same answer. A desk is `online` while its hub heard from it within
//! the last [`OFFLINE_AFTER_S`] seconds. Each desk shows its open session,
//! its latest state (`proto::device::DeviceState`) and its clock skew
//! (hub - box, seconds).

use axum::Json;
use axum::extract::{Path, State};
use chrono::Utc;

use super::auth::CurrentUser;
use super::{ApiError, AppState};

/// A desk heard from nothing for this long is offline.
pub const OFFLINE_AFTER_S: i64 = 10;

/// The room's id, or 404 (403 first for a proctor, who may not learn which
/// rooms exist).
pub async fn room_for(app: &AppState, user: &CurrentUser, room: &str) -> Result<i64, ApiError> {
    let c = app.db.get().await?;
    match crate::db::desks::find_room(&**c, room).await? {
        Some(id) => {
            user.room(id)?;
            Ok(id)
        }
        None if user.0.admin => Err(ApiError::not_found(format!("room {room:?} does not exist"))),
        None => Err(ApiError::forbidden(format!("user {:?} has no rights to this room", user.0.name))),
    }
}

pub async fn list(State(app): State<AppState>, user: CurrentUser) -> Result<Json<serde_json::Value>, ApiError> {
    let c = app.db.get().await?;
    let rows = c
        .query(
            "SELECT r.id, r.name, count(d.id) FILTER (WHERE d.token_sha256 IS NOT NULL)
             FROM rooms r LEFT JOIN desks d ON d.room_id = r.id GROUP BY r.id, r.name ORDER BY r.name",
            &[],
        )
        .await?;
    let rooms: Vec<serde_json::Value> = rows
        .iter()
        .filter(|r| user.0.may(r.get(0)))
        .map(|r| serde_json::json!({"name": r.get::<_, String>(1), "desks": r.get::<_, i64>(2)}))
        .collect();
    Ok(Json(serde_json::json!({ "rooms": rooms })))
}

pub async fn desks(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room_id = room_for(&app, &user, &room).await?;
    let c = app.db.get().await?;
    let desks = crate::db::desks::in_room(&**c, room_id).await?;
    let ids: Vec<i64> = desks.iter().map(|d| d.0).collect();
    let sessions = crate::db::exams::sessions_for(&**c, &ids).await?;
    let live = crate::db::live::of_room(&**c, room_id).await?;
    let now = Utc::now();
    let out: Vec<serde_json::Value> = desks
        .iter()
        .map(|(id, device_id, enrolled)| {
            let l = live.iter().find(|l| l.0 == *id);
            let online = l.is_some_and(|l| l.2 && (now - l.3).num_seconds() < OFFLINE_AFTER_S);
            serde_json::json!({
                "device_id": device_id,
                "enrolled": enrolled,
                "online": online,
                "hub": l.map(|l| l.1.clone()),
                "seen_at": l.map(|l| proto::Timestamp(l.3).to_string()),
                "clock_skew_s": l.and_then(|l| l.4).map(|ms| ms as f64 / 1000.0),
                "session": sessions.get(id),
                "state": l.and_then(|l| l.5.clone()),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "room": room, "desks": out })))
}

pub async fn exams(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room_id = room_for(&app, &user, &room).await?;
    let c = app.db.get().await?;
    Ok(Json(serde_json::json!({ "room": room, "exams": crate::db::exams::in_room(&**c, room_id).await? })))
}
