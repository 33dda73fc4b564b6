//! A box's connection to the hub: one WebSocket the box opens (boxes only
//! ever connect outward), authenticated with its device token. The hub
//! tells the box its exam session ([`ToDevice::Session`], at once on
//! connect and on every change); the box reports its live state
//! ([`FromDevice::State`]) at least once a second and at once when an
//! incident opens or closes. JSON text messages, one object each, tagged
//! by `"type"`; a side ignores message types it does not know.

use serde::{Deserialize, Serialize};

use crate::Reason;
use crate::time::Timestamp;

/// The path of the connection on the hub.
pub const DEVICE_WS_PATH: &str = "/api/device/ws";
/// The path a box PUTs a clip to: `/api/device/incidents/{incident_id}/clips/{part}`
/// (`part` 0 for the incident's first clip, 1, 2, … for chained ones).
pub const DEVICE_CLIP_PATH: &str = "/api/device/incidents";
/// The box sends its state this often (milliseconds). Twice a second so
/// that a room view, which sees states through the hub's 500 ms flush and
/// its own 250 ms tick, updates every tile at least once a second
/// (docs/PERFORMANCE.md, "200 desks in one room"). The contract is "at
/// least once a second".
pub const STATE_EVERY_MS: u64 = 500;

/// Hub to box.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToDevice {
    /// First message after connecting: who the hub thinks the box is, and
    /// the hub's clock (the box's clock may be wrong: a Pi has no RTC).
    Welcome { device_id: String, room: String, hub_time: Timestamp },
    /// The box's current session; `null`: no session (stop).
    Session { session: Option<DeviceSession> },
}

/// An exam session as the hub hands it to a desk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSession {
    pub session_id: String,
    pub student_id: String,
    /// The exam it belongs to.
    #[serde(default)]
    pub exam_id: Option<String>,
    pub started: Timestamp,
}

/// Box to hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromDevice {
    State(DeviceState),
}

/// The state of one part of the box, as its `/healthz` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    #[default]
    Ok,
    Degraded,
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub state: HealthState,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The incident open on the box, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub id: String,
    pub started: Timestamp,
}

/// A box's live state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    /// The box's clock when it sent this (the hub compares it with its own).
    pub ts: Option<Timestamp>,
    /// The session the box is scoring under (None: none).
    pub session_id: Option<String>,
    /// The last analysed frame, its score and reasons (None before the first).
    pub frame: Option<u64>,
    pub focus_score: Option<u8>,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// An incident is open.
    pub alert: bool,
    /// A clip is being written.
    pub recording: bool,
    pub incident: Option<OpenIncident>,
    pub camera: Health,
    pub encoder: Option<String>,
    pub spool: Health,
    pub sync: Health,
    /// Scores spooled but not yet delivered.
    pub pending_scores: u64,
}
