//! `POST /api/exam/analyze-batch`: the boxes' score batches, exactly as
//! they send them today (`../shared/CONTRACTS.md`, "Upstream").
//!
//! Order of checks, each refusing with one line that names what is at
//! fault, before anything is stored:
//! 1. the bearer token names an enrolled desk (else 401: the box
//!    dead-letters and pauses until its token file changes);
//! 2. the desk's token bucket has a token (else 429 + `Retry-After`);
//! 3. `Content-Length` over `limits.max_batch_kib` is refused at once
//!    (413); the body is read counting bytes against the same cap;
//! 4. `Content-Encoding: gzip` is gunzipped with a cap on the output
//!    (`limits.max_batch_expanded_kib`: a gzip bomb is a 413, broken gzip a
//!    400); any other encoding is a 415, which makes the box send plain
//!    JSON;
//! 5. the JSON is parsed into `proto::Batch` (a 400 naming the path, e.g.
//!    `scores[3].frame`), then `Batch::validate` (ranges; 400 naming the
//!    field);
//! 6. the batch's device_id must be the token's desk (else 403), and an
//!    `Idempotency-Key` must equal its batch_id (else 400).
//!
//! Then [`crate::db::ingest::store`] stores it in one statement and the
//! answer (`proto::BatchAck`, `duplicate: true` for a replay) is sent only
//! after the commit. A database that is down or saturated is a 503 with
//! `Retry-After`, so the box retries the same bytes later.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use proto::{Batch, BatchAck};
use sha2::{Digest, Sha256};

use crate::db::ingest::{Received, StoreError};
use crate::error::ApiError;
use crate::state::AppState;

/// The box's clock when it sent the batch (RFC 3339).
pub const SENT_AT_HEADER: &str = "x-invigil-sent-at";

pub async fn analyze_batch(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let t0 = Instant::now();
    let at = app.clock.now();
    match handle(&app, &headers, body, at).await {
        Ok(ack) => {
            app.metrics.batch_seconds.observe(t0.elapsed().as_secs_f64());
            app.metrics.batch(if ack.duplicate { "duplicate" } else { "stored" });
            if !ack.duplicate {
                app.metrics.scores_stored.inc_by(ack.scores as u64);
            }
            Json(ack).into_response()
        }
        Err(e) => {
            app.metrics.batch(match e.status.as_u16() {
                429 => "limited",
                500..=599 => "failed",
                _ => "refused",
            });
            if e.status.is_client_error() && e.status != StatusCode::TOO_MANY_REQUESTS {
                tracing::info!(status = e.status.as_u16(), error = %e.message, "ingest: batch refused");
            }
            e.into_response()
        }
    }
}

async fn handle(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<BatchAck, ApiError> {
    let desk = crate::auth::device::desk(app, headers).await?;
    if let Err(wait) = app.limiter.take(desk.id) {
        return Err(ApiError::too_many(format!("desk {} sends too fast; retry in {wait} s", desk.device_id), wait));
    }
    let cap = app.cfg.limits.max_batch_kib as usize * 1024;
    let raw = crate::body::read_capped(headers, body, cap).await?;
    let json = crate::body::decode(headers, raw, app.cfg.limits.max_batch_expanded_kib as usize * 1024)?;
    let batch: Batch = crate::extract::parse_json(&json)?;
    batch.validate().map_err(|e| ApiError::bad(format!("body: {e}")))?;
    storable(&batch).map_err(|e| ApiError::bad(format!("body: {e}")))?;
    if batch.device_id != desk.device_id {
        return Err(ApiError::forbidden(format!(
            "body: device_id {:?} is not this token's desk ({:?})",
            batch.device_id, desk.device_id
        )));
    }
    if let Some(k) = headers.get("idempotency-key") {
        let k = k.to_str().unwrap_or("").trim();
        if k != batch.batch_id {
            return Err(ApiError::bad(format!(
                "Idempotency-Key {k:?} differs from the body's batch_id {:?}",
                batch.batch_id
            )));
        }
    }
    let sent_at =
        headers.get(SENT_AT_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| match proto::Timestamp::parse(v) {
            Ok(t) => Some(t.0),
            Err(e) => {
                // Not a reason to refuse the scores; the skew falls back to
                // the live state or the scores.
                tracing::warn!(desk = %desk.device_id, error = %e, "ingest: ignoring a bad {SENT_AT_HEADER} header");
                None
            }
        });
    let rx = Received {
        at,
        sent_at,
        live_skew_ms: app.connections.skew(desk.id),
        body_sha256: Sha256::digest(&json).to_vec(),
    };
    let t_wait = Instant::now();
    let c = app.db.get().await?;
    app.metrics.db_wait_seconds.observe(t_wait.elapsed().as_secs_f64());
    let t_store = Instant::now();
    let r = crate::db::ingest::store(&c, &desk, &batch, &rx, &app.cfg.hub_id).await;
    app.metrics.batch_store_seconds.observe(t_store.elapsed().as_secs_f64());
    let stored = match r {
        Ok(s) => s,
        Err(StoreError::Conflict(m)) => {
            return Err(ApiError::conflict(format!(
                "Idempotency-Key: batch {m:?} was stored before with a different body"
            )));
        }
        Err(StoreError::Db(e)) => return Err(e.into()),
    };
    if !stored.duplicate {
        app.metrics.clock_skew_seconds.observe(stored.skew_ms.unsigned_abs() as f64 / 1000.0);
        if stored.skew_ms.abs() > 5000 {
            log_skew(app, &desk, stored.skew_ms, stored.skew_source);
        }
    }
    Ok(BatchAck {
        batch_id: batch.batch_id,
        scores: batch.scores.len(),
        incidents: batch.incidents.len(),
        duplicate: stored.duplicate,
    })
}

/// One line a minute per desk whose clock is off by more than 5 s.
fn log_skew(app: &AppState, desk: &crate::db::desks::Desk, skew_ms: i64, source: &str) {
    let mut g = app.skew_logged.lock().unwrap_or_else(|p| p.into_inner());
    if g.get(&desk.id).is_some_and(|t| t.elapsed().as_secs() < 60) {
        return;
    }
    if g.len() > 100_000 {
        g.clear();
    }
    g.insert(desk.id, Instant::now());
    tracing::warn!(desk = %desk.device_id, skew_s = skew_ms as f64 / 1000.0, source, "ingest: the box's clock is off; its scores are placed by the hub's clock");
}

/// What `Batch::validate` does not check but PostgreSQL would refuse (a
/// refusal there would be a 503 and a box retrying for ever): control
/// characters in clip keys and URLs (jsonb has no `\u0000`). Timestamps
/// need no check: every RFC 3339 time (years 0000-9999) fits a
/// `timestamptz`, and a box with a wrong clock is not refused.
pub fn storable(b: &Batch) -> Result<(), proto::Invalid> {
    for (i, inc) in b.incidents.iter().enumerate() {
        for (j, c) in inc.clip.iter().chain(&inc.clips).enumerate() {
            if c.key.chars().chain(c.url.chars()).any(char::is_control) {
                return Err(proto::Invalid {
                    field: format!("incidents[{i}].clips[{j}]"),
                    message: "key or url holds a control character".into(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_postgresql_would_refuse_is_a_400_naming_the_field() {
        let t = |s: &str| proto::Timestamp::parse(s).unwrap();
        let mut b = Batch {
            session_id: None,
            student_id: None,
            device_id: "d".into(),
            batch_id: "b".into(),
            scores: vec![],
            incidents: vec![proto::Incident::new("i".into(), t("1970-01-01T00:00:05Z"), None, 0, vec![], vec![])],
        };
        assert!(storable(&b).is_ok(), "a Pi that booted without a clock");
        b.incidents[0].clips.push(proto::Clip { key: "a\u{0}b".into(), url: "u".into(), bytes: 1 });
        assert_eq!(storable(&b).unwrap_err().field, "incidents[0].clips[0]");
    }
}
