//! Admin management from the console (admins only; a proctor gets 403):
//! users and desks (rooms come with them: a room exists once a desk is
//! enrolled in it or a user is granted it). Each change is audited with
//! the admin's name, in the change's transaction (`crate::actions`).
//!
//! - `GET /api/admin/users`; `POST /api/admin/users`
//!   `{"name","role":"admin"|"proctor","rooms":[…],"password"}` (201);
//! - `GET /api/admin/desks`; `POST /api/admin/desks` `{"desk","room","rotate"?}`
//!   (201 with the desk's token, shown this once);
//!   `POST /api/admin/desks/{desk}/revoke` (204; the desk is disconnected).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::CurrentUser;
use crate::domain::Role;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// The most desks the admin page lists.
pub const MAX_DESKS: i64 = 10_000;

pub async fn users(State(app): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    user.admin()?;
    let c = app.db.get().await?;
    let list = crate::db::users::list(&**c).await?;
    Ok(Json(json!({ "users": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub rooms: Vec<String>,
    pub password: String,
}

pub async fn add_user(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiJson(n): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.admin()?;
    if n.rooms.len() > 1000 || n.password.len() > 1024 {
        return Err(ApiError::bad("rooms or password: too long"));
    }
    crate::actions::users::add(&app.db, &user.0.name, &n.name, n.role, &n.rooms, &n.password).await?;
    Ok((StatusCode::CREATED, Json(json!({"name": n.name, "role": n.role, "rooms": n.rooms}))))
}

pub async fn desks(State(app): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    user.admin()?;
    let c = app.db.get().await?;
    let list: Vec<Value> = crate::db::desks::list(&**c, None, MAX_DESKS)
        .await?
        .into_iter()
        .map(|d| {
            json!({"desk": d.device_id, "room": d.room, "enrolled": d.enrolled,
                   "enrolled_at": proto::Timestamp(d.enrolled_at).to_string()})
        })
        .collect();
    Ok(Json(json!({ "desks": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDesk {
    pub desk: String,
    pub room: String,
    #[serde(default)]
    pub rotate: bool,
}

pub async fn add_desk(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiJson(n): ApiJson<NewDesk>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.admin()?;
    let token = crate::actions::desks::enrol(&app.db, &user.0.name, &n.desk, &n.room, n.rotate).await?;
    // A rotated token replaces the old one at once on this hub.
    app.tokens.clear();
    Ok((StatusCode::CREATED, Json(json!({"desk": n.desk, "room": n.room, "token": token}))))
}

pub async fn revoke_desk(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(desk): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    user.admin()?;
    crate::actions::desks::revoke(&app.db, &user.0.name, &desk).await?;
    // This hub forgets the token before answering; the others when the
    // database's notification reaches them.
    app.tokens.clear();
    Ok(StatusCode::NO_CONTENT)
}
