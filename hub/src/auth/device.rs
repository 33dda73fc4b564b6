//! A box's identity: the desk of its bearer token, as the hub's records
//! say, from the token cache while it is trusted, else from PostgreSQL.

use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, header};

use crate::db::desks::Desk;
use crate::error::ApiError;
use crate::state::App;

/// The desk of the request's bearer token: 401 when missing, unknown or
/// revoked.
pub async fn desk(app: &App, headers: &HeaderMap) -> Result<Desk, ApiError> {
    let Some(tok) = crate::token::bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) else {
        return Err(ApiError::unauthorized("missing Authorization: Bearer <device token>"));
    };
    let hash = crate::token::hash(tok);
    if app.notify_up.load(Ordering::Relaxed)
        && let Some(d) = app.tokens.get(&hash)
    {
        return Ok(d);
    }
    let c = app.db.get().await?;
    match crate::db::desks::by_token(&**c, &hash).await? {
        Some(d) => {
            app.tokens.put(hash, d.clone());
            Ok(d)
        }
        None => Err(ApiError::unauthorized("unknown or revoked device token")),
    }
}
