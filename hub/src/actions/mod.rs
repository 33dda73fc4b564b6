//! What a person can do to the hub's records — from the console, the JSON
//! API or the command line alike — each action and its audit entry in one
//! transaction, with the room it concerns: either both are stored or
//! neither. The API handlers and the `invigil-hub` subcommands call these
//! functions and differ only in how they report an [`ActionError`] (a
//! status code, or an exit code).

pub mod desks;
pub mod exams;
pub mod reviews;
pub mod users;

use axum::http::StatusCode;

use crate::db::PoolError;
use crate::db::desks::EnrolError;
use crate::db::exams::ExamError;
use crate::db::users::UserError;
use crate::error::ApiError;

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The request is wrong (a 400; exit 2).
    #[error("{0}")]
    Invalid(String),
    /// A roster entry at fault (its index from 0).
    #[error("roster entry {}: {message}", index + 1)]
    Seat { index: usize, message: String },
    #[error("{0}")]
    NotFound(String),
    /// It cannot be done in the current state (a 409).
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database: {}", crate::db::describe(.0))]
    Pool(#[from] PoolError),
}

impl From<ExamError> for ActionError {
    fn from(e: ExamError) -> Self {
        match e {
            ExamError::Invalid(m) => ActionError::Invalid(m),
            ExamError::Seat { index, message } => ActionError::Seat { index, message },
            ExamError::NotFound(id) => ActionError::NotFound(format!("exam {id} does not exist")),
            ExamError::Conflict(m) => ActionError::Conflict(m),
            ExamError::Db(e) => ActionError::Db(e),
        }
    }
}

impl From<EnrolError> for ActionError {
    fn from(e: EnrolError) -> Self {
        match e {
            EnrolError::Invalid(m) => ActionError::Invalid(m),
            e @ EnrolError::Enrolled(_) => ActionError::Conflict(e.to_string()),
            EnrolError::Db(e) => ActionError::Db(e),
        }
    }
}

impl From<UserError> for ActionError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid(m) => ActionError::Invalid(m),
            e @ UserError::Exists(_) => ActionError::Conflict(e.to_string()),
            UserError::Db(e) => ActionError::Db(e),
        }
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Invalid(m) => ApiError::bad(m),
            ActionError::Seat { index, message } => ApiError::bad(format!("roster[{index}]: {message}")),
            ActionError::NotFound(m) => ApiError::not_found(m),
            ActionError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            ActionError::Db(e) => e.into(),
            ActionError::Pool(e) => e.into(),
        }
    }
}
