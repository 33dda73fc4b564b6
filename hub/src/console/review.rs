//! The review API: what a reviewer goes through after (or during) an exam.
//!
//! - `GET /api/exams/{id}/review`: the exam (with its retention: `delete_at`,
//!   `purged_at`), and its sessions sorted by review priority, each with
//!   its incidents (reasons, duration, lowest score, clip, latest decision).
//! - `GET /api/sessions/{id}/scores[?buckets=N]`: the session's scores
//!   downsampled in PostgreSQL to at most N (default 600, at most 2000)
//!   buckets of whole seconds, each `[t_ms, min, mean]`, with the threshold
//!   and the incident spans: a 3-hour session at 30 FPS is 324k scores,
//!   never shipped whole.
//! - `GET /api/sessions/{id}/incidents.csv`: the session's incidents as CSV.
//!
//! Review priority (higher first), [`priority`]: seconds under the
//! threshold (the incidents' durations) plus, per incident, the weight of
//! its gravest reason ([`crate::domain::incident_weight`]).
//!
//! Rights: the exam's (session's) room, as every console route.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{CurrentUser, rights};
use crate::db::review::{IncidentRow, SessionRow};
use crate::domain::{Decision, PRIORITY_FORMULA, incident_weight};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

/// The threshold the console draws (the agents' default, `score.threshold`).
pub const THRESHOLD: i64 = 50;

/// A session's review priority: see the module docs.
pub fn priority(incidents: &[ReviewIncident]) -> f64 {
    incidents.iter().map(|i| i.duration_s + incident_weight(&crate::domain::reasons(&i.reasons))).sum()
}

#[derive(Clone, Debug, Serialize)]
pub struct ReviewDecision {
    pub decision: Decision,
    pub note: Option<String>,
    pub by: String,
    pub at: proto::Timestamp,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReviewIncident {
    pub id: i64,
    pub key: String,
    pub started: proto::Timestamp,
    pub ended: Option<proto::Timestamp>,
    /// To its end, or to the session's stop (or now) while open.
    pub duration_s: f64,
    pub min_score: i16,
    pub reasons: Vec<String>,
    pub clip: Option<Value>,
    pub decision: Option<ReviewDecision>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReviewSession {
    pub session_id: String,
    pub device_id: String,
    pub student_id: String,
    pub started_at: proto::Timestamp,
    pub stopped_at: Option<proto::Timestamp>,
    pub under_s: f64,
    pub priority: f64,
    pub reviewed: usize,
    pub incidents: Vec<ReviewIncident>,
}

fn review_incident(i: IncidentRow, session_stop: Option<DateTime<Utc>>, now: DateTime<Utc>) -> ReviewIncident {
    let end = i.ended.or(session_stop).unwrap_or(now);
    let id = i.id;
    ReviewIncident {
        id,
        key: i.key,
        started: proto::Timestamp(i.started),
        ended: i.ended.map(proto::Timestamp),
        duration_s: ((end - i.started).num_milliseconds().max(0) as f64) / 1000.0,
        min_score: i.min_score,
        reasons: i.reasons,
        clip: i
            .clip_bytes
            .map(|size| json!({"size": size, "parts": i.clip_parts, "url": format!("/api/incidents/{id}/clip")})),
        decision: i.decision.map(|d| ReviewDecision {
            decision: d.decision,
            note: d.note,
            by: d.by,
            at: proto::Timestamp(d.at),
        }),
    }
}

fn review_session(s: SessionRow, incidents: Vec<ReviewIncident>) -> ReviewSession {
    ReviewSession {
        under_s: incidents.iter().map(|i| i.duration_s).sum(),
        priority: priority(&incidents),
        reviewed: incidents.iter().filter(|i| i.decision.is_some()).count(),
        session_id: s.session_id,
        device_id: s.device_id,
        student_id: s.student_id,
        started_at: proto::Timestamp(s.started_at),
        stopped_at: s.stopped_at.map(proto::Timestamp),
        incidents,
    }
}

/// The sessions of an exam (or the one named), each with its incidents,
/// highest priority first.
pub async fn sessions(app: &AppState, exam: i64, only: Option<&str>) -> Result<Vec<ReviewSession>, ApiError> {
    let now = app.clock.now();
    let c = app.db.get().await?;
    let rows = crate::db::review::sessions(&**c, exam, only).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.session_id.clone()).collect();
    let mut incidents = crate::db::review::incidents(&**c, &ids).await?;
    drop(c);
    let mut out: Vec<ReviewSession> = rows
        .into_iter()
        .map(|s| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                incidents.drain(..).partition(|i| i.session_id.as_deref() == Some(s.session_id.as_str()));
            incidents = rest;
            let list = mine.into_iter().map(|i| review_incident(i, s.stopped_at, now)).collect();
            review_session(s, list)
        })
        .collect();
    out.sort_by(|a, b| b.priority.total_cmp(&a.priority).then_with(|| a.device_id.cmp(&b.device_id)));
    Ok(out)
}

pub async fn review(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    rights::exam(&app, &user, id).await?;
    let c = app.db.get().await?;
    let e = crate::db::review::exam_head(&**c, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("exam {id} does not exist")))?;
    drop(c);
    let ts = |v: Option<DateTime<Utc>>| v.map(proto::Timestamp);
    let list = sessions(&app, id, None).await?;
    Ok(Json(json!({
        "exam": {"id": id, "state": e.state, "name": e.name, "room": e.room,
                 "started_at": ts(e.started_at), "stopped_at": ts(e.stopped_at),
                 "retention_days": e.retention_days,
                 "delete_at": ts(crate::domain::delete_at(e.stopped_at, e.retention_days)),
                 "purged_at": ts(e.purged_at)},
        "threshold": THRESHOLD,
        "priority_formula": PRIORITY_FORMULA,
        "sessions": list,
    })))
}

#[derive(Deserialize)]
pub struct ScoresQuery {
    #[serde(default)]
    pub buckets: Option<u32>,
}

/// Most buckets a score plot may ask for.
pub const MAX_BUCKETS: u32 = 2000;

pub async fn scores(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(session): ApiPath<String>,
    ApiQuery(q): ApiQuery<ScoresQuery>,
) -> Result<Json<Value>, ApiError> {
    let (exam, _) = rights::session(&app, &user, &session).await?;
    let buckets = q.buckets.unwrap_or(600).clamp(10, MAX_BUCKETS) as i64;
    let c = app.db.get().await?;
    let span = crate::db::review::score_span(&**c, &session).await?;
    let mut points: Vec<[f64; 3]> = Vec::new();
    let mut width_s = 1i64;
    if let (Some(from), Some(to)) = (span.from, span.to) {
        let secs = (to - from).num_seconds().max(1);
        width_s = ((secs + buckets - 1) / buckets).max(1);
        points = crate::db::review::score_buckets(&**c, &session, width_s).await?;
    }
    drop(c);
    let list = sessions(&app, exam, Some(&session)).await?;
    let incidents: Vec<Value> = list
        .first()
        .map(|s| {
            s.incidents
                .iter()
                .map(|i| json!({"id": i.id, "started": i.started, "ended": i.ended, "duration_s": i.duration_s}))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(json!({
        "session_id": session, "threshold": THRESHOLD, "scores": span.n, "bucket_s": width_s,
        "from": span.from.map(proto::Timestamp), "to": span.to.map(proto::Timestamp),
        "points": points, "incidents": incidents,
    })))
}

/// One CSV field: quoted when needed; a leading `=`, `+`, `-` or `@` is
/// prefixed with `'` so a spreadsheet does not run it as a formula.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// The CSV of a session's incidents (header first).
pub fn incidents_csv(s: &ReviewSession) -> String {
    let mut out = String::from(
        "incident_id,device_id,student_id,session_id,started,ended,duration_s,min_score,reasons,clip_bytes,decision,note,reviewer,decided_at\r\n",
    );
    for i in &s.incidents {
        let d = i.decision.as_ref();
        let fields = [
            i.id.to_string(),
            s.device_id.clone(),
            s.student_id.clone(),
            s.session_id.clone(),
            i.started.to_string(),
            i.ended.map(|t| t.to_string()).unwrap_or_default(),
            format!("{:.1}", i.duration_s),
            i.min_score.to_string(),
            i.reasons.join(" "),
            i.clip.as_ref().and_then(|c| c["size"].as_i64()).map(|n| n.to_string()).unwrap_or_default(),
            d.map(|d| d.decision.to_string()).unwrap_or_default(),
            d.and_then(|d| d.note.clone()).unwrap_or_default(),
            d.map(|d| d.by.clone()).unwrap_or_default(),
            d.map(|d| d.at.to_string()).unwrap_or_default(),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// The session (with its incidents) a user may read.
pub async fn one_session(app: &AppState, user: &CurrentUser, session: &str) -> Result<ReviewSession, ApiError> {
    let (exam, _) = rights::session(app, user, session).await?;
    sessions(app, exam, Some(session))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("session {session:?} does not exist")))
}

pub async fn csv(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(session): ApiPath<String>,
) -> Result<Response, ApiError> {
    let s = one_session(&app, &user, &session).await?;
    let mut r = incidents_csv(&s).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    // The session id passed check_id: no quote or slash in it.
    let name = format!("attachment; filename=\"incidents-{}.csv\"", s.session_id);
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&name).unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
