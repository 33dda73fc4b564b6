//! The upstream score batch of `../shared/CONTRACTS.md` ("Upstream"): a box
//! POSTs one every `sync.interval_s` while it has something to send, with
//! `Idempotency-Key: <batch_id>`. The names `session_id`, `student_id` and
//! `scores[].focus_score` are those exam platforms already accept.
//!
//! [`Batch::validate`] is what a receiver checks beyond the JSON's shape;
//! each error names the field by its path.

use serde::{Deserialize, Serialize};

use crate::incident::Incident;
use crate::time::Timestamp;
use crate::{Invalid, Reason, check_id};

/// Most scores in one batch (a box sends at most 900: 30 s at 30 FPS).
pub const MAX_SCORES: usize = 10_000;
/// Most incidents in one batch (a box sends at most 50).
pub const MAX_INCIDENTS: usize = 1_000;
/// Most reasons on one score or incident.
pub const MAX_REASONS: usize = 16;
/// Longest id (session, student, batch, incident) accepted.
pub const MAX_ID_LEN: usize = 128;
/// Longest device id (the agent's config allows 64).
pub const MAX_DEVICE_ID_LEN: usize = 64;
/// Largest frame number: fits a signed 64-bit column and a JavaScript number.
pub const MAX_FRAME: u64 = (1 << 53) - 1;

/// One score batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub session_id: Option<String>,
    pub student_id: Option<String>,
    pub device_id: String,
    pub batch_id: String,
    pub scores: Vec<Score>,
    #[serde(default)]
    pub incidents: Vec<Incident>,
}

/// One frame's score in a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The box's clock when the frame was analysed.
    pub ts: Timestamp,
    pub frame: u64,
    /// 0-100.
    pub focus_score: u8,
    pub num_faces: u32,
    /// Degrees, rounded to 0.1.
    pub yaw_deg: Option<f32>,
    pub pitch_deg: Option<f32>,
    pub reasons: Vec<Reason>,
}

/// A receiver's answer to a stored (or replayed) batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchAck {
    pub batch_id: String,
    /// Scores and incidents the batch held.
    pub scores: usize,
    pub incidents: usize,
    /// True when the batch had been stored before (a retry): nothing was
    /// stored twice.
    pub duplicate: bool,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), message: message.into() }
}

impl Batch {
    /// Checks ranges and ids; the first problem found, named by its path.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_id("device_id", &self.device_id, MAX_DEVICE_ID_LEN)?;
        check_id("batch_id", &self.batch_id, MAX_ID_LEN)?;
        if let Some(s) = &self.session_id {
            check_id("session_id", s, MAX_ID_LEN)?;
        }
        if let Some(s) = &self.student_id {
            check_id("student_id", s, MAX_ID_LEN)?;
        }
        if self.scores.len() > MAX_SCORES {
            return Err(bad("scores", format!("{} scores in one batch; at most {MAX_SCORES}", self.scores.len())));
        }
        if self.incidents.len() > MAX_INCIDENTS {
            return Err(bad(
                "incidents",
                format!("{} incidents in one batch; at most {MAX_INCIDENTS}", self.incidents.len()),
            ));
        }
        for (i, s) in self.scores.iter().enumerate() {
            s.validate(&format!("scores[{i}]"))?;
        }
        for (i, inc) in self.incidents.iter().enumerate() {
            validate_incident(inc, &format!("incidents[{i}]"))?;
        }
        Ok(())
    }
}

impl Score {
    fn validate(&self, at: &str) -> Result<(), Invalid> {
        if self.focus_score > 100 {
            return Err(bad(format!("{at}.focus_score"), format!("{} is out of range 0-100", self.focus_score)));
        }
        if self.frame > MAX_FRAME {
            return Err(bad(format!("{at}.frame"), format!("{} is out of range 0-{MAX_FRAME}", self.frame)));
        }
        if self.num_faces > 1000 {
            return Err(bad(format!("{at}.num_faces"), format!("{} is out of range 0-1000", self.num_faces)));
        }
        for (name, v) in [("yaw_deg", self.yaw_deg), ("pitch_deg", self.pitch_deg)] {
            if let Some(v) = v
                && !(v.is_finite() && (-180.0..=180.0).contains(&v))
            {
                return Err(bad(format!("{at}.{name}"), format!("{v} is out of range -180 to 180")));
            }
        }
        if self.reasons.len() > MAX_REASONS {
            return Err(bad(format!("{at}.reasons"), format!("{} reasons; at most {MAX_REASONS}", self.reasons.len())));
        }
        Ok(())
    }
}

fn validate_incident(inc: &Incident, at: &str) -> Result<(), Invalid> {
    check_id(format!("{at}.id"), &inc.id, MAX_ID_LEN)?;
    if inc.min_score > 100 {
        return Err(bad(format!("{at}.min_score"), format!("{} is out of range 0-100", inc.min_score)));
    }
    if let Some(end) = inc.ended
        && end < inc.started
    {
        return Err(bad(format!("{at}.ended"), format!("{end} is before started ({})", inc.started)));
    }
    if inc.reasons.len() > MAX_REASONS {
        return Err(bad(format!("{at}.reasons"), format!("{} reasons; at most {MAX_REASONS}", inc.reasons.len())));
    }
    if inc.clips.len() > 100 {
        return Err(bad(format!("{at}.clips"), format!("{} clips; at most 100", inc.clips.len())));
    }
    for (j, c) in inc.clip.iter().chain(&inc.clips).enumerate() {
        if c.key.len() > 1024 || c.url.len() > 2048 {
            return Err(bad(format!("{at}.clips[{j}]"), "key or url too long (1024 / 2048 bytes at most)"));
        }
    }
    Ok(())
}
