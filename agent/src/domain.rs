//! The agent's domain types, in one place: what a session, a score, an
//! incident and a clip file are, whoever stores, sends or shows them. The
//! spool stores these, sync and `/live` turn them into the wire types of
//! the `proto` crate, and the run loop makes them. Times are typed
//! (`DateTime<Utc>`); they become strings only on the wire and on disk.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
pub use proto::Reason;

/// An exam session: scores, incidents and clips carry its ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub session_id: String,
    pub student_id: String,
    pub started: DateTime<Utc>,
    /// The hub's exam, when the session came from a hub.
    pub exam_id: Option<String>,
}

/// One analysed frame's score, as spooled and synced.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub session_id: Option<String>,
    pub student_id: Option<String>,
    pub frame: u64,
    pub ts: DateTime<Utc>,
    pub focus_score: u8,
    pub num_faces: u32,
    pub yaw_deg: Option<f32>,
    pub pitch_deg: Option<f32>,
    pub reasons: Vec<Reason>,
}

impl Score {
    /// The score of an analysed frame, for the student of its session.
    pub fn of(a: &proto::Analysis, student_id: Option<String>) -> Self {
        Score {
            session_id: a.session_id.clone(),
            student_id,
            frame: a.frame,
            ts: a.ts.0,
            focus_score: a.focus_score,
            num_faces: a.num_faces as u32,
            yaw_deg: a.yaw_deg,
            pitch_deg: a.pitch_deg,
            reasons: a.reasons.clone(),
        }
    }
}

/// A span of frames under the threshold: opened when the score goes under,
/// updated while it stays there, closed when it recovers.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub id: String,
    pub session_id: Option<String>,
    pub student_id: Option<String>,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub min_score: u8,
    /// Every reason seen while it lasted, in the order first seen.
    pub reasons: Vec<Reason>,
    /// Its first clip's file, once one is being written.
    pub clip_path: Option<String>,
}

impl Incident {
    /// The incident as the wire carries it, with the clips already in storage.
    pub fn to_wire(&self, clips: Vec<proto::Clip>) -> proto::Incident {
        proto::Incident::new(
            self.id.clone(),
            self.started.into(),
            self.ended.map(Into::into),
            self.min_score,
            self.reasons.clone(),
            clips,
        )
    }
}

/// A finished (fsynced, renamed) clip file of an incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipFile {
    pub incident_id: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// Where exam sessions come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionSource {
    /// The local control API (`invigil session`, `POST /session/start`).
    Local,
    /// The hub the box reports to.
    Hub,
}

/// What the desk is doing now, for the hub's room view: the last analysed
/// frame and the open incident. Updated by the run loop at every frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeskState {
    pub session_id: Option<String>,
    pub frame: Option<u64>,
    pub focus_score: Option<u8>,
    pub reasons: Vec<Reason>,
    pub alert: bool,
    pub recording: bool,
    /// The open incident: its id and when it opened.
    pub incident: Option<(String, DateTime<Utc>)>,
}
