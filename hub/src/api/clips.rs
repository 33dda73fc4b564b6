//! Clips through the hub: boxes upload, console users play. A box holds no
//! storage credentials and never names an object key.
//!
//! `PUT /api/device/incidents/{incident_id}/clips/{part}` (device token;
//! `part` 0 for an incident's first clip, 1, 2, … for chained ones):
//! 1. `incident_id` must pass `proto::check_id` and `part` be 0-99 (400);
//! 2. `Content-Length` is required (411), not 0 (400), at most
//!    `limits.max_clip_mib` (413, before a byte is read);
//! 3. the incident must be this desk's: another desk's is a 403; one the
//!    hub has not seen yet is a 409, which the box retries after its next
//!    batch (which carries the incident);
//! 4. the hub picks the key (`{prefix}/{session}/{student}/{incident}[-part].mp4`),
//!    streams the body to storage counting bytes, and keeps the object only
//!    if exactly `Content-Length` bytes came (else 400, nothing kept);
//! 5. then records the clip and answers `proto::Clip` (`url` is this hub's
//!    playback path). A re-upload of the same part replaces it.
//!
//! A refusal reads and discards the rest of the body first (bounded: see
//! [`super::drain`]). Nothing drained is stored.
//!
//! `GET /api/incidents/{id}/clip[?part=N]` (console user with rights to
//! the incident's room, else 403): the MP4, with single-range `Range`
//! requests (206) as `<video>` elements use them. Each view that starts at
//! byte 0 is written to the audit log (a player's follow-up range requests
//! are not, so one view is one entry).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use crate::auth::CurrentUser;
use crate::db::clips::Owner;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use crate::storage::PutError;

/// Most clip parts per incident.
pub const MAX_PART: u32 = 99;

pub async fn upload(
    State(app): State<AppState>,
    ApiPath((incident, part)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<proto::Clip>, ApiError> {
    let mut body = Some(body);
    let r = upload_inner(&app, &incident, &part, &headers, &mut body).await;
    if r.is_err()
        && let Some(b) = body.take()
    {
        crate::body::drain(b, &headers).await;
    }
    app.metrics.clip(match &r {
        Ok(_) => "stored",
        Err(e) if e.status.is_server_error() => "failed",
        Err(_) => "refused",
    });
    if let Err(e) = &r
        && e.status.is_client_error()
    {
        tracing::info!(incident = ?incident, part = ?part, status = e.status.as_u16(), error = %e.message, "clips: upload refused");
    }
    r
}

async fn upload_inner(
    app: &AppState,
    incident: &str,
    part: &str,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Json<proto::Clip>, ApiError> {
    let desk = crate::auth::device::desk(app, headers).await?;
    proto::check_id("incident_id", incident, proto::batch::MAX_ID_LEN).map_err(|e| ApiError::bad(e.to_string()))?;
    let part: u32 = part
        .parse()
        .ok()
        .filter(|p| *p <= MAX_PART)
        .ok_or_else(|| ApiError::bad(format!("part {part:?} is not a number 0-{MAX_PART}")))?;
    if let Err(wait) = app.limiter.take(desk.id) {
        return Err(ApiError::too_many(format!("desk {} sends too fast", desk.device_id), wait));
    }
    let len = crate::body::content_length(headers)
        .ok_or_else(|| ApiError::new(StatusCode::LENGTH_REQUIRED, "Content-Length is required for a clip"))?;
    let cap = app.cfg.limits.max_clip_mib << 20;
    if len == 0 {
        return Err(ApiError::bad("an empty clip"));
    }
    if len > cap {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a clip of {len} bytes is over the limit of {cap} bytes (limits.max_clip_mib)"),
        ));
    }
    let c = app.db.get().await?;
    let inc = match crate::db::clips::owner(&**c, desk.id, incident).await? {
        Owner::This(i) => i,
        Owner::Other => {
            return Err(ApiError::forbidden(format!("incident {incident:?} is not desk {}'s", desk.device_id)));
        }
        Owner::Unknown => {
            let message = format!("incident {incident:?} is not known yet: its batch must arrive first; retry later");
            return Err(ApiError::conflict(message).with_retry_after(5));
        }
    };
    // No connection held while the body streams.
    drop(c);
    let key = app.store.object_key(inc.session_id.as_deref(), inc.student_id.as_deref(), incident, part);
    let Some(body) = body.take() else {
        return Err(ApiError::bad("the body was already read"));
    };
    let bytes = match app.store.put_stream(&key, len, body.into_data_stream()).await {
        Ok(n) => n,
        Err(PutError::Store(e)) => {
            tracing::warn!(key, error = %e, "clips: storage failed");
            return Err(ApiError::unavailable(format!("storage: {e}"), 5));
        }
        Err(PutError::Body(e)) => return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("body: {e}"))),
        Err(e) => return Err(ApiError::bad(e.to_string())),
    };
    let c = app.db.get().await?;
    crate::db::clips::record(&**c, inc.id, part as i32, &key, bytes as i64).await?;
    app.metrics.clip_bytes.inc_by(bytes);
    tracing::info!(desk = %desk.device_id, incident, part, bytes, key, "clips: stored");
    Ok(Json(proto::Clip { key, url: format!("/api/incidents/{}/clip", inc.id), bytes }))
}

#[derive(Deserialize)]
pub struct PartQuery {
    #[serde(default)]
    pub part: u32,
}

pub async fn play(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PartQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = app.db.get().await?;
    let Some((room, key, size)) = crate::db::clips::find(&**c, id, q.part as i32).await? else {
        return match crate::db::clips::incident_room(&**c, id).await? {
            Some(room) => {
                user.room(room)?;
                Err(ApiError::not_found(format!("incident {id} has no clip part {}", q.part)))
            }
            None if user.0.is_admin() => Err(ApiError::not_found(format!("incident {id} does not exist"))),
            None => Err(ApiError::forbidden(format!("user {:?} has no rights to incident {id}", user.0.name))),
        };
    };
    user.room(room)?;
    let size = size as u64;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(r) => match parse_range(r, size) {
            Some(r) => Some(r),
            None => {
                let mut e = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("Range {r:?} is not satisfiable (size {size})"),
                );
                e.retry_after = None;
                let mut resp = axum::response::IntoResponse::into_response(e);
                resp.headers_mut()
                    .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).unwrap());
                return Ok(resp);
            }
        },
    };
    if range.as_ref().is_none_or(|r| r.start == 0) {
        crate::db::audit::append(
            &**c,
            &user.0.name,
            "clip.view",
            Some(room),
            serde_json::json!({"incident": id, "part": q.part}),
        )
        .await?;
        app.metrics.clip_views.inc();
    }
    drop(c);
    let (stream, span, total) = app.store.get(&key, range.clone()).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => {
            ApiError::not_found(format!("the clip of incident {id} is missing from storage"))
        }
        e => ApiError::unavailable(format!("storage: {e}"), 5),
    })?;
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(span.end - span.start));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if range.is_some() {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        let cr = format!("bytes {}-{}/{total}", span.start, span.end - 1);
        r.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).expect("digits"));
    }
    Ok(r)
}

/// One `bytes=` range of an object of `size` bytes, as a half-open range;
/// None when it cannot be satisfied (or is not a single byte range).
pub fn parse_range(h: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() { size - 1 } else { b.parse::<u64>().ok()?.min(size - 1) };
        if start > end || start >= size {
            return None;
        }
        start..end + 1
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_as_browsers_send_them() {
        assert_eq!(parse_range("bytes=0-", 100), Some(0..100));
        assert_eq!(parse_range("bytes=10-19", 100), Some(10..20));
        assert_eq!(parse_range("bytes=90-200", 100), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Some(90..100));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
