//! Console logins.
//!
//! - `POST /api/login` with `{"user","password"}` sets the cookie
//!   `invigil_session` (random token, HttpOnly, SameSite=Strict, Secure
//!   unless `server.secure_cookies = false`, Max-Age = `server.login_hours`)
//!   and answers the user; a wrong name or password is a 401 that does not
//!   say which. After `limits.login_failures` failures for one user name
//!   within `limits.login_window_min` (counted in PostgreSQL, so across
//!   every hub) further attempts for that name get 429 + `Retry-After`
//!   without the password being checked, until the oldest failure leaves
//!   the window; a success clears the count.
//! - `POST /api/logout` ends the session; `GET /api/me` says who is logged in.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::CurrentUser;
use crate::auth::user::{COOKIE, same_origin, session_token};
use crate::db::users::{LoginLimit, LoginOutcome, User};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub user: String,
    pub password: String,
}

fn user_json(u: &User) -> serde_json::Value {
    serde_json::json!({"user": u.name, "role": u.role, "rooms": u.rooms})
}

pub async fn login(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ApiJson(l): ApiJson<Login>,
) -> Result<Response, ApiError> {
    same_origin(&method, &headers)?;
    if l.user.len() > 64 || l.password.len() > 1024 {
        return Err(ApiError::unauthorized("wrong user name or password"));
    }
    let c = app.db.get().await?;
    let limit = LoginLimit { failures: app.cfg.limits.login_failures, window_s: app.cfg.limits.login_window_min * 60 };
    let (tok, user) = match crate::db::users::login(&**c, &l.user, &l.password, app.cfg.login_hours, limit).await? {
        LoginOutcome::Ok(tok, user) => (tok, user),
        LoginOutcome::Wrong => {
            tracing::info!(user = ?l.user, "auth: a login failed");
            return Err(ApiError::unauthorized("wrong user name or password"));
        }
        LoginOutcome::Throttled { retry_after_s } => {
            tracing::warn!(user = ?l.user, retry_after_s, "auth: too many failed logins for this name; refused unchecked");
            let message = format!("too many failed logins for this user name: try again in {retry_after_s} s");
            return Err(ApiError::too_many(message, retry_after_s));
        }
    };
    crate::db::audit::append(&**c, &user.name, "login", None, serde_json::json!({})).await?;
    let secure = if app.cfg.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={tok}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        app.cfg.login_hours as u64 * 3600
    );
    let mut r = Json(user_json(&user)).into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a token is a valid header"));
    Ok(r)
}

pub async fn logout(State(app): State<AppState>, method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    same_origin(&method, &headers)?;
    if let Some(tok) = session_token(&headers) {
        let c = app.db.get().await?;
        crate::db::users::logout(&**c, &tok).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("invigil_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(r)
}

pub async fn me(user: CurrentUser) -> Json<serde_json::Value> {
    Json(user_json(&user.0))
}
