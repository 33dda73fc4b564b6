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
//! its gravest reason ([`weight`]: a second person 120, camera covered 90,
//! camera lost 60, no face 30, anything else 20).
//!
//! Rights: the exam's (session's) room, as every console route.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;

use crate::api::auth::CurrentUser;
use crate::api::{ApiError, AppState};
use crate::console::live::THRESHOLD;

/// The formula, as the page and docs/DESIGN.md state it.
pub const PRIORITY_FORMULA: &str = "priority = seconds under the threshold + for each incident the weight of its \
     gravest reason (second person 120, camera covered 90, camera lost 60, no face 30, any other 20)";

/// The weight of an incident with these reasons.
pub fn weight(reasons: &[String]) -> f64 {
    reasons
        .iter()
        .map(|r| match r.as_str() {
            "multiple_faces" => 120.0,
            "camera_covered" => 90.0,
            "camera_lost" => 60.0,
            "no_face" => 30.0,
            _ => 20.0,
        })
        .fold(20.0, f64::max)
}

/// A session's review priority: see the module docs.
pub fn priority(incidents: &[ReviewIncident]) -> f64 {
    incidents.iter().map(|i| i.duration_s + weight(&i.reasons)).sum()
}

#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub decision: String,
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
    pub decision: Option<Decision>,
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

/// The sessions of an exam (or the one named), each with its incidents.
pub async fn sessions(
    c: &impl GenericClient,
    exam: i64,
    only: Option<&str>,
) -> Result<Vec<ReviewSession>, tokio_postgres::Error> {
    let now = Utc::now();
    let rows = c
        .query(
            "SELECT s.id, d.device_id, st.student_id, s.started_at, s.stopped_at FROM sessions s
             JOIN desks d ON d.id = s.desk_id JOIN students st ON st.id = s.student_id
             WHERE s.exam_id = $1 AND ($2::text IS NULL OR s.id = $2) ORDER BY d.device_id",
            &[&exam, &only],
        )
        .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let inc = c
        .query(
            "SELECT i.id, i.incident_key, i.session_id,
                    i.started + i.offset_ms * interval '1 millisecond',
                    i.ended + i.offset_ms * interval '1 millisecond', i.min_score, i.reasons,
                    (SELECT bytes FROM clips WHERE incident_id = i.id AND part = 0),
                    (SELECT count(*) FROM clips WHERE incident_id = i.id),
                    r.decision, r.note, u.name, r.at
             FROM incidents i
             LEFT JOIN LATERAL (SELECT * FROM reviews WHERE incident_id = i.id ORDER BY at DESC, id DESC LIMIT 1) r ON true
             LEFT JOIN users u ON u.id = r.user_id
             WHERE i.session_id = ANY($1) ORDER BY i.started, i.id",
            &[&ids],
        )
        .await?;
    let mut out: Vec<ReviewSession> = rows
        .iter()
        .map(|r| {
            let sid: String = r.get(0);
            let stopped: Option<DateTime<Utc>> = r.get(4);
            let incidents: Vec<ReviewIncident> = inc
                .iter()
                .filter(|i| i.get::<_, Option<String>>(2).as_deref() == Some(sid.as_str()))
                .map(|i| {
                    let id: i64 = i.get(0);
                    let started: DateTime<Utc> = i.get(3);
                    let ended: Option<DateTime<Utc>> = i.get(4);
                    let end = ended.or(stopped).unwrap_or(now);
                    ReviewIncident {
                        id,
                        key: i.get(1),
                        started: proto::Timestamp(started),
                        ended: ended.map(proto::Timestamp),
                        duration_s: ((end - started).num_milliseconds().max(0) as f64) / 1000.0,
                        min_score: i.get(5),
                        reasons: i.get(6),
                        clip: i.get::<_, Option<i64>>(7).map(|size| {
                            json!({"size": size, "parts": i.get::<_, i64>(8), "url": format!("/api/incidents/{id}/clip")})
                        }),
                        decision: i.get::<_, Option<String>>(9).map(|d| Decision {
                            decision: d,
                            note: i.get(10),
                            by: i.get::<_, Option<String>>(11).unwrap_or_default(),
                            at: proto::Timestamp(i.get(12)),
                        }),
                    }
                })
                .collect();
            ReviewSession {
                under_s: incidents.iter().map(|i| i.duration_s).sum(),
                priority: priority(&incidents),
                reviewed: incidents.iter().filter(|i| i.decision.is_some()).count(),
                session_id: sid,
                device_id: r.get(1),
                student_id: r.get(2),
                started_at: proto::Timestamp(r.get(3)),
                stopped_at: stopped.map(proto::Timestamp),
                incidents,
            }
        })
        .collect();
    out.sort_by(|a, b| b.priority.total_cmp(&a.priority).then_with(|| a.device_id.cmp(&b.device_id)));
    Ok(out)
}

pub async fn review(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let room = crate::api::exams::exam_room(&app, &user, id).await?;
    let c = app.db.get().await?;
    let e = c
        .query_one(
            "SELECT e.state, e.name, e.started_at, e.stopped_at, e.retention_days, e.purged_at, r.name
             FROM exams e JOIN rooms r ON r.id = e.room_id WHERE e.id = $1",
            &[&id],
        )
        .await?;
    let ts = |v: Option<DateTime<Utc>>| v.map(|t| proto::Timestamp(t).to_string());
    let stopped: Option<DateTime<Utc>> = e.get(3);
    let days: i32 = e.get(4);
    let list = sessions(&**c, id, None).await?;
    let _ = room;
    Ok(Json(json!({
        "exam": {"id": id, "state": e.get::<_, String>(0), "name": e.get::<_, Option<String>>(1),
                 "room": e.get::<_, String>(6), "started_at": ts(e.get(2)), "stopped_at": ts(stopped),
                 "retention_days": days, "delete_at": ts(crate::retention::delete_at(stopped, days)),
                 "purged_at": ts(e.get(5))},
        "threshold": THRESHOLD,
        "priority_formula": PRIORITY_FORMULA,
        "sessions": list,
    })))
}

/// A session's exam and room, checked against the user's rights (404 for
/// an admin, 403 for a proctor, when it does not exist).
pub async fn session_exam(app: &AppState, user: &CurrentUser, session: &str) -> Result<(i64, i64), ApiError> {
    let c = app.db.get().await?;
    let row = c
        .query_opt(
            "SELECT s.exam_id, e.room_id FROM sessions s JOIN exams e ON e.id = s.exam_id WHERE s.id = $1",
            &[&session],
        )
        .await?;
    match row {
        Some(r) => {
            user.room(r.get(1))?;
            Ok((r.get(0), r.get(1)))
        }
        None if user.0.admin => Err(ApiError::not_found(format!("session {session:?} does not exist"))),
        None => Err(ApiError::forbidden(format!("user {:?} has no rights to session {session:?}", user.0.name))),
    }
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
    Path(session): Path<String>,
    Query(q): Query<ScoresQuery>,
) -> Result<Json<Value>, ApiError> {
    let (exam, _) = session_exam(&app, &user, &session).await?;
    let buckets = q.buckets.unwrap_or(600).clamp(10, MAX_BUCKETS) as i64;
    let c = app.db.get().await?;
    let span = c
        .query_one(
            "SELECT min(first_ts + offset_ms * interval '1 millisecond'), max(last_ts + offset_ms * interval '1 millisecond'),
                    coalesce(sum(n_scores), 0)::bigint
             FROM batches WHERE session_id = $1",
            &[&session],
        )
        .await?;
    let (from, to, n): (Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64) = (span.get(0), span.get(1), span.get(2));
    let mut points: Vec<[f64; 3]> = Vec::new();
    let mut width_s = 1i64;
    if let (Some(from), Some(to)) = (from, to) {
        let secs = (to - from).num_seconds().max(1);
        width_s = ((secs + buckets - 1) / buckets).max(1);
        let rows = c
            .query(
                // batch_id only grows: bounding it lets the BRIN index skip
                // everything outside the session's first and last batch; the
                // semi-join hashes the session's batches (a plain join hashed
                // the scores: twice as slow); per-second partials, then the
                // box's clock offset and the bucket (docs/PERFORMANCE.md).
                "WITH b AS MATERIALIZED (SELECT id, offset_ms FROM batches WHERE session_id = $1),
                 p AS (SELECT s.batch_id, floor(extract(epoch FROM s.ts))::bigint AS sec, min(s.focus_score) AS mn,
                              sum(s.focus_score) AS sm, count(*) AS n
                       FROM scores s
                       WHERE s.batch_id BETWEEN (SELECT min(id) FROM b) AND (SELECT max(id) FROM b)
                         AND s.batch_id IN (SELECT id FROM b)
                       GROUP BY 1, 2)
                 SELECT floor((p.sec + b.offset_ms / 1000.0) / $2::float8)::bigint AS k, min(p.mn)::int,
                        sum(p.sm)::float8 / sum(p.n)
                 FROM p JOIN b ON b.id = p.batch_id GROUP BY k ORDER BY k",
                &[&session, &(width_s as f64)],
            )
            .await?;
        points = rows
            .iter()
            .map(|r| [(r.get::<_, i64>(0) * width_s * 1000) as f64, r.get::<_, i32>(1) as f64, r.get::<_, f64>(2)])
            .collect();
    }
    let list = sessions(&**c, exam, Some(&session)).await?;
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
        "session_id": session, "threshold": THRESHOLD, "scores": n, "bucket_s": width_s,
        "from": from.map(proto::Timestamp), "to": to.map(proto::Timestamp),
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
            d.map(|d| d.decision.clone()).unwrap_or_default(),
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
    let (exam, _) = session_exam(app, user, session).await?;
    let c = app.db.get().await?;
    sessions(&**c, exam, Some(session))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("session {session:?} does not exist")))
}

pub async fn csv(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(session): Path<String>,
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

    #[test]
    fn the_gravest_reason_weighs() {
        assert_eq!(weight(&["no_face".into(), "multiple_faces".into()]), 120.0);
        assert_eq!(weight(&["looking_away".into()]), 20.0);
        assert_eq!(weight(&[]), 20.0);
    }
}
