//! One analysed frame: the result JSON of `../shared/CONTRACTS.md`
//! ("Analysis result"), sent on the agent's `/live` and as replies on
//! `/analyze`, and written by `invigil score --json`.

use serde::{Deserialize, Serialize};

use crate::Reason;
use crate::time::Timestamp;

/// The `"type"` tag of an [`Analysis`]: always `"analysis"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnalysisType {
    #[default]
    #[serde(rename = "analysis")]
    Analysis,
}

/// One analysed frame. Fields in the order the contract shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    #[serde(rename = "type")]
    pub kind: AnalysisType,
    pub device_id: String,
    pub session_id: Option<String>,
    pub frame: u64,
    pub ts: Timestamp,
    /// 0-100.
    pub focus_score: u8,
    pub face_detected: bool,
    pub num_faces: usize,
    pub looking_away: bool,
    pub yaw_deg: Option<f32>,
    pub pitch_deg: Option<f32>,
    pub reasons: Vec<Reason>,
    /// A clip is being written.
    pub recording: bool,
    /// Detection and scoring time of this frame.
    pub latency_ms: f32,
    /// Strongest face box in frame pixels (xmin, ymin, xmax, ymax), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_box: Option<[f32; 4]>,
    /// Milliseconds of stream time (pipeline running time or video position).
    pub t_ms: u64,
    /// The score is held under the threshold: an incident is open.
    pub alert: bool,
}

/// A frame `/analyze` could not score: `{"type":"error","frame":N,"error":"…"}`
/// (`frame` is null when no frame is at fault, e.g. the model failed to load).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "error")]
pub struct AnalyzeError {
    pub frame: Option<u64>,
    pub error: String,
}

/// A frame `/analyze` dropped because the client sent faster than frames
/// are scored: `{"type":"dropped","frame":N}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "dropped")]
pub struct AnalyzeDropped {
    pub frame: u64,
}
