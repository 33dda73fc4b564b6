//! Rooms and their desks, live.
//!
//! `GET /api/rooms/{room}/desks` answers from the database (`desk_live`,
//! written by whichever hub each desk is connected to), so every hub gives
//! the same answer. A desk is `online` while its hub heard from it within
//! the last [`crate::domain::OFFLINE_AFTER_S`] seconds. Each desk shows its open session,
//! its latest state (`proto::device::DeviceState`) and its clock skew
//! (hub - box, seconds).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::{CurrentUser, rights};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

pub async fn list(State(app): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    let c = app.db.get().await?;
    let rooms: Vec<Value> = crate::db::rooms::list(&**c)
        .await?
        .into_iter()
        .filter(|r| user.0.may(r.id))
        .map(|r| json!({"name": r.name, "desks": r.desks}))
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}

pub async fn desks(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let room_id = rights::room(&app, &user, &room).await?;
    let c = app.db.get().await?;
    let desks = crate::db::desks::in_room(&**c, room_id).await?;
    let ids: Vec<i64> = desks.iter().map(|d| d.id).collect();
    let sessions = crate::db::sessions::open_for(&**c, &ids).await?;
    let live = crate::db::desk_live::of_room(&**c, room_id).await?;
    drop(c);
    let now = app.clock.now();
    let out: Vec<Value> = desks
        .iter()
        .map(|d| {
            let l = live.iter().find(|l| l.desk_id == d.id);
            let online =
                l.is_some_and(|l| l.connected && (now - l.seen_at).num_seconds() < crate::domain::OFFLINE_AFTER_S);
            json!({
                "device_id": d.device_id,
                "enrolled": d.enrolled,
                "online": online,
                "hub": l.map(|l| &l.hub),
                "seen_at": l.map(|l| proto::Timestamp(l.seen_at)),
                "clock_skew_s": l.and_then(|l| l.skew_ms).map(|ms| ms as f64 / 1000.0),
                "session": sessions.get(&d.id),
                "state": l.and_then(|l| l.state.as_ref()),
            })
        })
        .collect();
    Ok(Json(json!({ "room": room, "desks": out })))
}

pub async fn exams(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let room_id = rights::room(&app, &user, &room).await?;
    let c = app.db.get().await?;
    Ok(Json(json!({ "room": room, "exams": crate::db::exams::in_room(&**c, room_id).await? })))
}
