//! A console user: the user of the request's login cookie.
//!
//! - [`CurrentUser`] is the extractor every console route uses: no valid
//!   session is a 401; a request that changes something (any method but
//!   GET/HEAD) from another site is a 403 (its `Origin` must be this host,
//!   and `Sec-Fetch-Site`, when a browser sends it, same-origin), on top of
//!   the cookie's SameSite=Strict.
//! - [`cross_site_upgrade`]: the same rule for WebSockets, which the
//!   browser's same-origin policy does not cover.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};

use crate::db::users::User;
use crate::error::ApiError;
use crate::state::AppState;

/// The login cookie's name.
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

    /// 403 unless an admin.
    pub fn admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("user {:?} is not an admin", self.0.name)))
        }
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
    if headers.get(header::ORIGIN).is_some() && !origin_is_host(headers) {
        return Err(cross());
    }
    Ok(())
}

/// 403 for a WebSocket opened from another site's page.
pub fn cross_site_upgrade(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.get(header::ORIGIN).is_some() && !origin_is_host(headers) {
        return Err(ApiError::forbidden("cross-site WebSocket refused"));
    }
    Ok(())
}

/// The request's `Origin` names the host it was sent to.
fn origin_is_host(headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h.trim_end_matches('/')).unwrap_or("");
    !origin_host.is_empty() && origin_host == host
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let Some(tok) = session_token(&parts.headers) else {
            return Err(ApiError::unauthorized("not logged in: POST /api/login first"));
        };
        same_origin(&parts.method, &parts.headers)?;
        let c = app.db.get().await?;
        match crate::db::users::by_session(&**c, &tok).await? {
            Some(u) => Ok(CurrentUser(u)),
            None => Err(ApiError::unauthorized("the login session expired or was ended: log in again")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
    fn another_sites_websocket_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "hub:8080".parse().unwrap());
        assert!(cross_site_upgrade(&h).is_ok());
        h.insert(header::ORIGIN, "http://hub:8080".parse().unwrap());
        assert!(cross_site_upgrade(&h).is_ok());
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(cross_site_upgrade(&h).is_err());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; invigil_session=tok; b=2"));
        assert_eq!(session_token(&h).as_deref(), Some("tok"));
    }
}
