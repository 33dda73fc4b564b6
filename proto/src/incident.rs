//! Incidents: a span of frames whose score is under the threshold, with the
//! clips recorded around it. The same object travels in score batches and,
//! with the device and session, on the agent's `/live`.

use serde::{Deserialize, Serialize};

use crate::Reason;
use crate::time::Timestamp;

/// The `"type"` tag of an [`Incident`]: always `"incident"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentType {
    #[default]
    #[serde(rename = "incident")]
    Incident,
}

/// A clip in object storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clip {
    /// The object's key in its store.
    pub key: String,
    /// Where it is: `s3://BUCKET/KEY`, `file:///DIR/KEY`, or the hub's
    /// path for it (`/api/incidents/ID/clip`).
    pub url: String,
    pub bytes: u64,
}

/// CONTRACTS.md's incident object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    #[serde(rename = "type")]
    pub kind: IncidentType,
    pub id: String,
    pub started: Timestamp,
    /// None while it lasts.
    pub ended: Option<Timestamp>,
    pub min_score: u8,
    pub reasons: Vec<Reason>,
    /// The first clip, once in storage; null before.
    pub clip: Option<Clip>,
    /// Every clip of the incident in storage (a long incident is chained
    /// into several files), the first being `clip`.
    #[serde(default)]
    pub clips: Vec<Clip>,
}

impl Incident {
    /// An incident with its clips (`clip` is the first of them).
    pub fn new(
        id: String,
        started: Timestamp,
        ended: Option<Timestamp>,
        min_score: u8,
        reasons: Vec<Reason>,
        clips: Vec<Clip>,
    ) -> Self {
        Incident {
            kind: IncidentType::Incident,
            id,
            started,
            ended,
            min_score,
            reasons,
            clip: clips.first().cloned(),
            clips,
        }
    }
}

/// An incident as `/live` sends it: with the device and session, when it
/// opens and when it closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveIncident {
    pub device_id: String,
    pub session_id: Option<String>,
    #[serde(flatten)]
    pub incident: Incident,
}
