//! Incidents: a span of frames whose score is under the threshold.
//!
//! Opened on the first frame of an alert, closed on the first frame after
//! it; the minimum score and the union of reasons are kept. The tracker
//! knows analyses and incidents, nothing of where they are stored.

use chrono::{DateTime, Utc};
use proto::Analysis;

use crate::domain::Incident;

/// What changed with this frame.
#[derive(Debug, PartialEq)]
pub enum Change {
    Opened(Incident),
    Closed(Incident),
}

#[derive(Debug, Default)]
pub struct Tracker {
    open: Option<Incident>,
    counter: u64,
}

/// An incident id: the device, the time it opened, a counter (unique per
/// run, and across runs by the time).
pub fn incident_id(device_id: &str, ts: DateTime<Utc>, counter: u64) -> String {
    format!("{device_id}-{}-{counter}", ts.format("%Y%m%dT%H%M%S%3fZ"))
}

impl Tracker {
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn current(&self) -> Option<&Incident> {
        self.open.as_ref()
    }

    /// Feeds one analysis; returns an incident that opened or closed.
    pub fn update(&mut self, a: &Analysis, student_id: Option<&str>) -> Option<Change> {
        match (&mut self.open, a.alert) {
            (None, true) => {
                self.counter += 1;
                let inc = Incident {
                    id: incident_id(&a.device_id, a.ts.0, self.counter),
                    session_id: a.session_id.clone(),
                    student_id: student_id.map(str::to_string),
                    started: a.ts.0,
                    ended: None,
                    min_score: a.focus_score,
                    reasons: a.reasons.clone(),
                    clip_path: None,
                };
                self.open = Some(inc.clone());
                Some(Change::Opened(inc))
            }
            (Some(inc), true) => {
                inc.min_score = inc.min_score.min(a.focus_score);
                for r in &a.reasons {
                    if !inc.reasons.contains(r) {
                        inc.reasons.push(r.clone());
                    }
                }
                None
            }
            (Some(_), false) => {
                let mut inc = self.open.take().expect("matched Some");
                inc.ended = Some(a.ts.0);
                Some(Change::Closed(inc))
            }
            (None, false) => None,
        }
    }

    /// Closes an open incident at shutdown or session end.
    pub fn close(&mut self, ts: DateTime<Utc>) -> Option<Incident> {
        self.open.take().map(|mut inc| {
            inc.ended = Some(ts);
            inc
        })
    }

    pub fn set_clip(&mut self, path: &str) {
        if let Some(inc) = &mut self.open {
            inc.clip_path = Some(path.to_string());
        }
    }
}
