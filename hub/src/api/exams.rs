//! Exams over HTTP (the console builds on these; the command line does the
//! same through [`crate::actions::exams`]).
//!
//! - `POST /api/exams` `{"room","name"?,"roster":[{"desk","student_id","row"?,"col"?}]
//!   | "roster_csv":"desk,student_id\n…","start_at"?,"end_at"?,"start"?,
//!   "retention_days"?}`: creates an exam (201 with the exam as
//!   `GET /api/exams/{id}` shows it); `"start": true` starts it at once
//!   (in the same transaction: a start that fails creates nothing),
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
//! Every change is written to the audit log with the user's name, in the
//! change's transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{CurrentUser, rights};
use crate::db::exams::NewExam;
use crate::domain::Decision;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::roster::Seat;
use crate::state::AppState;

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

impl Create {
    /// The roster (from `roster` or `roster_csv`), checked for size.
    fn seats(&mut self) -> Result<Vec<Seat>, ApiError> {
        if let Some(csv) = self.roster_csv.take() {
            if !self.roster.is_empty() {
                return Err(ApiError::bad("give roster or roster_csv, not both"));
            }
            if csv.len() > 2 << 20 {
                return Err(ApiError::bad("roster_csv: larger than 2 MiB"));
            }
            self.roster = crate::roster::parse(&csv, "roster.csv").map_err(ApiError::bad)?;
        }
        if self.roster.is_empty() {
            return Err(ApiError::bad("roster: no desks (give roster or roster_csv)"));
        }
        if self.name.as_ref().is_some_and(|n| n.len() > 200) {
            return Err(ApiError::bad("name: longer than 200 characters"));
        }
        if self.roster.len() > crate::roster::MAX_SEATS {
            return Err(ApiError::bad(format!("roster: more than {} desks", crate::roster::MAX_SEATS)));
        }
        Ok(std::mem::take(&mut self.roster))
    }
}

async fn show_json(app: &AppState, id: i64) -> Result<Json<Value>, ApiError> {
    let c = app.db.get().await?;
    let show = crate::db::exam_show::show(&**c, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("exam {id} does not exist")))?;
    Ok(Json(serde_json::to_value(show).expect("ExamShow serialises")))
}

pub async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiJson(mut req): ApiJson<Create>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    rights::room(&app, &user, &req.room).await?;
    let seats = req.seats()?;
    let new = NewExam {
        room: req.room.clone(),
        name: req.name.clone(),
        seats,
        start_at: req.start_at.map(|t| t.0),
        end_at: req.end_at.map(|t| t.0),
        created_by: user.0.name.clone(),
        retention_days: req.retention_days,
    };
    let id = crate::actions::exams::create(&app.db, &user.0.name, &new, req.start).await?;
    Ok((StatusCode::CREATED, show_json(&app, id).await?))
}

pub async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    rights::exam(&app, &user, id).await?;
    show_json(&app, id).await
}

pub async fn start(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    rights::exam(&app, &user, id).await?;
    crate::actions::exams::start(&app.db, &user.0.name, id).await?;
    show_json(&app, id).await
}

pub async fn stop(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    rights::exam(&app, &user, id).await?;
    crate::actions::exams::stop(&app.db, &user.0.name, id).await?;
    show_json(&app, id).await
}

pub async fn incidents(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    rights::exam(&app, &user, id).await?;
    let c = app.db.get().await?;
    let sessions = crate::db::sessions::of_exam(&**c, id).await?;
    let list = crate::db::exam_show::incidents_of_sessions(&**c, &sessions).await?;
    Ok(Json(serde_json::json!({ "exam": id, "incidents": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub decision: Decision,
    #[serde(default)]
    pub note: Option<String>,
}

pub async fn review(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(r): ApiJson<Review>,
) -> Result<StatusCode, ApiError> {
    let room = rights::incident(&app, &user, id).await?;
    crate::actions::reviews::decide(&app.db, &user.0, id, room, r.decision, r.note.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
