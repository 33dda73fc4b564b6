//! Exams over HTTP (the console builds on these; the command line does the
//! same through `db::exams`).
//!
//! - `POST /api/exams` `{"room","name"?,"roster":[{"desk","student_id","row"?,"col"?}]
//!   | "roster_csv":"desk,student_id\n…","start_at"?,"end_at"?,"start"?,
//!   "retention_days"?}`: creates an exam (201 with the exam as
//!   `GET /api/exams/{id}` shows it); `"start": true` starts it at once,
//!   `start_at`/`end_at` (RFC 3339) schedule it; `roster_csv` is the roster
//!   file's text (the console's import), as `exam start --roster` reads it;
//!   `retention_days` (default 30) is when its clips and scores are deleted
//!   after it stops. Errors name the roster entry (`roster[3]: desk "d9" is
//!   not enrolled …`, `roster.csv: line 4: …`).
//! - `POST /api/exams/{id}/start` and `…/stop`: 409 when the state does
//!   not allow it (already running, stopped, a desk busy in another exam).
//! - `GET /api/exams/{id}`: as `invigil-hub exam show ID --json`.
//! - `GET /api/exams/{id}/incidents`: every incident of the exam.
//! - `POST /api/incidents/{id}/review` `{"decision":"dismissed"|"confirmed"|"unsure","note"?}`.
//!
//! Every change is written to the audit log with the user's name.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth::CurrentUser;
use super::{ApiError, AppState};
use crate::db::exams::{ExamError, NewExam};
use crate::roster::Seat;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    pub room: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub roster: Vec<Seat>,
    #[serde(default)]
    pub roster_csv: Option<String>,
    #[serde(default)]
    pub retention_days: Option<i32>,
    #[serde(default)]
    pub start_at: Option<proto::Timestamp>,
    #[serde(default)]
    pub end_at: Option<proto::Timestamp>,
    #[serde(default)]
    pub start: bool,
}

impl From<ExamError> for ApiError {
    fn from(e: ExamError) -> Self {
        match e {
            ExamError::Invalid(m) => ApiError::bad(m),
            ExamError::Seat { index, message } => ApiError::bad(format!("roster[{index}]: {message}")),
            ExamError::NotFound(id) => ApiError::not_found(format!("exam {id} does not exist")),
            ExamError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            ExamError::Db(e) => e.into(),
        }
    }
}

/// The exam's room id, checked against the user's rights (404 for an
/// admin, 403 for a proctor, when the exam does not exist).
pub async fn exam_room(app: &AppState, user: &CurrentUser, id: i64) -> Result<i64, ApiError> {
    let c = app.db.get().await?;
    match crate::db::exams::exam_room(&**c, id).await? {
        Some((room, _)) => user.room(room).map(|_| room),
        None if user.0.admin => Err(ApiError::not_found(format!("exam {id} does not exist"))),
        None => Err(ApiError::forbidden(format!("user {:?} has no rights to exam {id}", user.0.name))),
    }
}

async fn show_json(app: &AppState, id: i64) -> Result<Json<serde_json::Value>, ApiError> {
    let c = app.db.get().await?;
    let show = crate::db::exams::show(&**c, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("exam {id} does not exist")))?;
    Ok(Json(serde_json::to_value(show).expect("ExamShow serialises")))
}

pub async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    Json(mut req): Json<Create>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let room_id = super::rooms::room_for(&app, &user, &req.room).await?;
    if let Some(csv) = req.roster_csv.take() {
        if !req.roster.is_empty() {
            return Err(ApiError::bad("give roster or roster_csv, not both"));
        }
        if csv.len() > 2 << 20 {
            return Err(ApiError::bad("roster_csv: larger than 2 MiB"));
        }
        req.roster = crate::roster::parse(&csv, "roster.csv").map_err(ApiError::bad)?;
    }
    if req.roster.is_empty() {
        return Err(ApiError::bad("roster: no desks (give roster or roster_csv)"));
    }
    if req.name.as_ref().is_some_and(|n| n.len() > 200) {
        return Err(ApiError::bad("name: longer than 200 characters"));
    }
    if req.roster.len() > crate::roster::MAX_SEATS {
        return Err(ApiError::bad(format!("roster: more than {} desks", crate::roster::MAX_SEATS)));
    }
    let new = NewExam {
        room: req.room.clone(),
        name: req.name.clone(),
        seats: req.roster.clone(),
        start_at: req.start_at.map(|t| t.0),
        end_at: req.end_at.map(|t| t.0),
        created_by: user.0.name.clone(),
        retention_days: req.retention_days,
    };
    let mut c = app.db.get().await?;
    let id = crate::db::exams::create(&mut c, &new).await?;
    crate::db::audit::log_room(
        &**c,
        &user.0.name,
        "exam.create",
        room_id,
        serde_json::json!({"exam": id, "room": req.room, "desks": req.roster.len()}),
    )
    .await?;
    if req.start {
        crate::db::exams::start(&mut c, id).await?;
        crate::db::audit::log_room(&**c, &user.0.name, "exam.start", room_id, serde_json::json!({"exam": id})).await?;
    }
    drop(c);
    Ok((StatusCode::CREATED, show_json(&app, id).await?))
}

pub async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    exam_room(&app, &user, id).await?;
    show_json(&app, id).await
}

pub async fn start(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    switch(&app, &user, id, true).await
}

pub async fn stop(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    switch(&app, &user, id, false).await
}

/// Starts or stops an exam of a room the user has, audited; the exam after.
async fn switch(app: &AppState, user: &CurrentUser, id: i64, start: bool) -> Result<Json<serde_json::Value>, ApiError> {
    let room = exam_room(app, user, id).await?;
    let mut c = app.db.get().await?;
    if start {
        crate::db::exams::start(&mut c, id).await?;
    } else {
        crate::db::exams::stop(&mut c, id).await?;
    }
    let action = if start { "exam.start" } else { "exam.stop" };
    crate::db::audit::log_room(&**c, &user.0.name, action, room, serde_json::json!({"exam": id})).await?;
    drop(c);
    show_json(app, id).await
}

pub async fn incidents(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    exam_room(&app, &user, id).await?;
    let c = app.db.get().await?;
    let sessions: Vec<String> =
        c.query("SELECT id FROM sessions WHERE exam_id = $1", &[&id]).await?.iter().map(|r| r.get(0)).collect();
    let list = crate::db::exams::incidents_of_sessions(&**c, &sessions).await?;
    Ok(Json(serde_json::json!({ "exam": id, "incidents": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub decision: String,
    #[serde(default)]
    pub note: Option<String>,
}

pub async fn review(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(r): Json<Review>,
) -> Result<StatusCode, ApiError> {
    if !matches!(r.decision.as_str(), "dismissed" | "confirmed" | "unsure") {
        return Err(ApiError::bad(format!("decision: {:?} is not one of dismissed, confirmed, unsure", r.decision)));
    }
    if r.note.as_ref().is_some_and(|n| n.len() > 4000) {
        return Err(ApiError::bad("note: longer than 4000 characters"));
    }
    let mut c = app.db.get().await?;
    let room = match crate::db::clips::incident_room(&**c, id).await? {
        Some(room) => {
            user.room(room)?;
            room
        }
        None if user.0.admin => return Err(ApiError::not_found(format!("incident {id} does not exist"))),
        None => return Err(ApiError::forbidden(format!("user {:?} has no rights to incident {id}", user.0.name))),
    };
    let at: DateTime<Utc> = Utc::now();
    // The decision and its audit entry together, or neither.
    let tx = c.transaction().await?;
    tx.execute(
        "INSERT INTO reviews (incident_id, user_id, decision, note, at) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &user.0.id, &r.decision, &r.note, &at],
    )
    .await?;
    crate::db::audit::log_room(
        &*tx,
        &user.0.name,
        "incident.review",
        room,
        serde_json::json!({"incident": id, "decision": r.decision, "note": r.note}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
