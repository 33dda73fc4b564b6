//! Console logins and rights.
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
//! - [`CurrentUser`] is the extractor every console route uses: no valid
//!   session is a 401; a request that changes something (any method but
//!   GET/HEAD) from another site is a 403 (its `Origin` must be this host,
//!   and `Sec-Fetch-Site`, when a browser sends it, same-origin), on top of
//!   SameSite=Strict.
//! - Rights: an admin may do everything; a proctor only what concerns the
//!   rooms granted (`user add --room`); anything else is a 403.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::db::users::{LoginLimit, LoginOutcome, User};

pub const COOKIE: &str = "invigil_session";

/// The logged-in user of a console request.
pub struct CurrentUser(pub User);

impl CurrentUser {
    /// 403 unless this user may act on `room_id`.
    pub fn room(&self, room_id: i64) -> Result<(), ApiError> {
        if self.0.may(room_id) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("user {:?} has no rights to this room", self.0.name)))
        }
    }

    pub fn admin(&self) -> Result<(), ApiError> {
        if self.0.admin { Ok(()) } else { Err(ApiError::forbidden(format!("user {:?} is not an admin", self.0.name))) }
    }
}

/// The login token of the request's cookie.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then(|| v.to_string())
    })
}

/// 403 for a state-changing request from another site.
pub fn same_origin(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let cross = || ApiError::forbidden("cross-site request refused");
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(cross());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        if origin_host.is_empty() || origin_host.trim_end_matches('/') != host {
            return Err(cross());
        }
    }
    Ok(())
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let Some(tok) = session_token(&parts.headers) else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "not logged in: POST /api/login first"));
        };
        same_origin(&parts.method, &parts.headers)?;
        let c = app.db.get().await?;
        match crate::db::users::by_session(&**c, &tok).await? {
            Some(u) => Ok(CurrentUser(u)),
            None => {
                Err(ApiError::new(StatusCode::UNAUTHORIZED, "the login session expired or was ended: log in again"))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub user: String,
    pub password: String,
}

fn user_json(u: &User) -> serde_json::Value {
    serde_json::json!({"user": u.name, "role": if u.admin { "admin" } else { "proctor" }, "rooms": u.rooms})
}

pub async fn login(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Json(l): Json<Login>,
) -> Result<Response, ApiError> {
    same_origin(&method, &headers)?;
    if l.user.len() > 64 || l.password.len() > 1024 {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password"));
    }
    let c = app.db.get().await?;
    let limit = LoginLimit { failures: app.cfg.limits.login_failures, window_s: app.cfg.limits.login_window_min * 60 };
    let (tok, user) = match crate::db::users::login(&**c, &l.user, &l.password, app.cfg.login_hours, limit).await? {
        LoginOutcome::Ok(tok, user) => (tok, user),
        LoginOutcome::Wrong => {
            tracing::info!(user = %l.user, "auth: a login failed");
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password"));
        }
        LoginOutcome::Throttled { retry_after_s } => {
            tracing::warn!(user = %l.user, retry_after_s, "auth: too many failed logins for this name; refused unchecked");
            let message = format!("too many failed logins for this user name: try again in {retry_after_s} s");
            return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).with_retry_after(retry_after_s));
        }
    };
    crate::db::audit::log(&**c, &user.name, "login", serde_json::json!({})).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_writes_are_refused_and_reads_allowed() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("hub.school:8080"));
        assert!(same_origin(&Method::POST, &h).is_ok(), "a script without Origin");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://hub.school:8080"));
        assert!(same_origin(&Method::POST, &h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(same_origin(&Method::POST, &h).is_err());
        assert!(same_origin(&Method::GET, &h).is_ok());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&Method::POST, &h).is_err());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; invigil_session=tok; b=2"));
        assert_eq!(session_token(&h).as_deref(), Some("tok"));
    }
}
