//! Incidents: a span of frames whose score is under the threshold.
//!
//! Opened on the first frame of an alert, closed on the first frame after
//! it; the minimum score and the union of reasons are kept.

use models::Reason;

use crate::analysis::Analysis;
use crate::spool::IncidentRow;

/// What changed with this frame.
#[derive(Debug, PartialEq)]
pub enum Change {
    Opened(IncidentRow),
    Closed(IncidentRow),
}

#[derive(Debug, Default)]
pub struct Tracker {
    open: Option<(IncidentRow, Vec<Reason>)>,
    counter: u64,
}

impl Tracker {
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn current(&self) -> Option<&IncidentRow> {
        self.open.as_ref().map(|(r, _)| r)
    }

    /// Feeds one analysis; returns an incident that opened or closed.
    pub fn update(&mut self, a: &Analysis, student_id: Option<&str>) -> Option<Change> {
        match (&mut self.open, a.alert) {
            (None, true) => {
                self.counter += 1;
                let id = format!("{}-{}-{}", a.device_id, a.ts.replace([':', '.'], "").replace('-', ""), self.counter);
                let row = IncidentRow {
                    id,
                    session_id: a.session_id.clone(),
                    student_id: student_id.map(str::to_string),
                    started: a.ts.clone(),
                    ended: None,
                    min_score: a.focus_score,
                    reasons: serde_json::to_string(&a.reasons).unwrap_or_default(),
                    clip_path: None,
                };
                self.open = Some((row.clone(), a.reasons.clone()));
                Some(Change::Opened(row))
            }
            (Some((row, reasons)), true) => {
                row.min_score = row.min_score.min(a.focus_score);
                for r in &a.reasons {
                    if !reasons.contains(r) {
                        reasons.push(*r);
                    }
                }
                row.reasons = serde_json::to_string(reasons).unwrap_or_default();
                None
            }
            (Some(_), false) => {
                let (mut row, _) = self.open.take().unwrap();
                row.ended = Some(a.ts.clone());
                Some(Change::Closed(row))
            }
            (None, false) => None,
        }
    }

    /// Closes an open incident at shutdown or session end.
    pub fn close(&mut self, ts: &str) -> Option<IncidentRow> {
        self.open.take().map(|(mut row, _)| {
            row.ended = Some(ts.to_string());
            row
        })
    }

    pub fn set_clip(&mut self, path: &str) {
        if let Some((row, _)) = &mut self.open {
            row.clip_path = Some(path.to_string());
        }
    }
}
