//! Admin management from the console (admins only; a proctor gets 403):
//! users and desks (rooms come with them: a room exists once a desk is
//! enrolled in it or a user is granted it). Each change is audited with
//! the admin's name, as the command line's are.
//!
//! - `GET /api/admin/users`; `POST /api/admin/users`
//!   `{"name","role":"admin"|"proctor","rooms":[…],"password"}` (201);
//! - `GET /api/admin/desks`; `POST /api/admin/desks` `{"desk","room","rotate"?}`
//!   (201 with the desk's token, shown this once);
//!   `POST /api/admin/desks/{desk}/revoke` (204; the desk is disconnected).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::auth::CurrentUser;
use crate::api::{ApiError, AppState};
use crate::db::desks::EnrolError;
use crate::db::users::UserError;

pub async fn users(State(app): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    user.admin()?;
    let c = app.db.get().await?;
    let rows = c
        .query(
            "SELECT u.name, u.role, u.disabled_at IS NOT NULL,
                    coalesce(array_agg(r.name ORDER BY r.name) FILTER (WHERE r.name IS NOT NULL), '{}')
             FROM users u LEFT JOIN user_rooms ur ON ur.user_id = u.id LEFT JOIN rooms r ON r.id = ur.room_id
             GROUP BY u.id ORDER BY u.name",
            &[],
        )
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"name": r.get::<_, String>(0), "role": r.get::<_, String>(1), "disabled": r.get::<_, bool>(2),
                   "rooms": r.get::<_, Vec<String>>(3)})
        })
        .collect();
    Ok(Json(json!({ "users": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub rooms: Vec<String>,
    pub password: String,
}

pub async fn add_user(
    State(app): State<AppState>,
    user: CurrentUser,
    Json(n): Json<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.admin()?;
    if n.rooms.len() > 1000 || n.password.len() > 1024 {
        return Err(ApiError::bad("rooms or password: too long"));
    }
    let mut c = app.db.get().await?;
    match crate::db::users::add(&mut c, &n.name, &n.role, &n.rooms, &n.password).await {
        Ok(_) => {}
        Err(UserError::Invalid(m)) => return Err(ApiError::bad(m)),
        Err(e @ UserError::Exists(_)) => return Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(UserError::Db(e)) => return Err(e.into()),
    }
    crate::db::audit::log(&**c, &user.0.name, "user.add", json!({"user": n.name, "role": n.role, "rooms": n.rooms}))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"name": n.name, "role": n.role, "rooms": n.rooms}))))
}

pub async fn desks(State(app): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    user.admin()?;
    let c = app.db.get().await?;
    let rows = c
        .query(
            "SELECT d.device_id, r.name, d.token_sha256 IS NOT NULL, d.enrolled_at FROM desks d
             JOIN rooms r ON r.id = d.room_id ORDER BY r.name, d.device_id LIMIT 10000",
            &[],
        )
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"desk": r.get::<_, String>(0), "room": r.get::<_, String>(1), "enrolled": r.get::<_, bool>(2),
                   "enrolled_at": proto::Timestamp(r.get(3)).to_string()})
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
    Json(n): Json<NewDesk>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.admin()?;
    let mut c = app.db.get().await?;
    let token = match crate::db::desks::enrol(&mut c, &n.desk, &n.room, n.rotate).await {
        Ok(t) => t,
        Err(EnrolError::Invalid(m)) => return Err(ApiError::bad(m)),
        Err(e @ EnrolError::Enrolled(_)) => return Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(EnrolError::Db(e)) => return Err(e.into()),
    };
    // A rotated token replaces the old one at once on this hub.
    app.desks.clear();
    let room = crate::db::desks::room_id(&**c, &n.room).await?;
    crate::db::audit::log_room(
        &**c,
        &user.0.name,
        "device.add",
        room,
        json!({"desk": n.desk, "room": n.room, "rotate": n.rotate}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"desk": n.desk, "room": n.room, "token": token}))))
}

pub async fn revoke_desk(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(desk): Path<String>,
) -> Result<StatusCode, ApiError> {
    user.admin()?;
    let c = app.db.get().await?;
    if !crate::db::desks::revoke(&**c, &desk).await? {
        return Err(ApiError::not_found(format!("desk {desk:?} is not enrolled (or already revoked)")));
    }
    // This hub forgets the token before answering; the others when the
    // database's notification reaches them.
    app.desks.clear();
    crate::db::audit::log(&**c, &user.0.name, "device.revoke", json!({"desk": desk})).await?;
    Ok(StatusCode::NO_CONTENT)
}
