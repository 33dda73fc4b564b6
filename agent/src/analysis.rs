//! One frame in, one analysis result out: detector + scorer for one stream
//! (the camera, or one `/analyze` connection). The result is the JSON of
//! `../shared/CONTRACTS.md` ("Analysis result").

use std::time::Instant;

use models::{Detection, FaceDetector, Reason, RgbFrame, ScoreOutput, Scorer, Signals};
use serde::Serialize;

/// One analysed frame, as sent on `/live`, `/analyze` and by `score --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Analysis {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub device_id: String,
    pub session_id: Option<String>,
    pub frame: u64,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub focus_score: u8,
    pub face_detected: bool,
    pub num_faces: usize,
    pub looking_away: bool,
    pub yaw_deg: Option<f32>,
    pub pitch_deg: Option<f32>,
    pub reasons: Vec<Reason>,
    pub recording: bool,
    /// Detection and scoring time of this frame.
    pub latency_ms: f32,
    /// Strongest face box in frame pixels (for the preview), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_box: Option<[f32; 4]>,
    /// Milliseconds of stream time (pipeline running time or video position).
    pub t_ms: u64,
    /// True while the score is held under the threshold (an incident is open).
    pub alert: bool,
}

/// Detector plus per-stream score state.
pub struct Analyzer {
    detector: Box<dyn FaceDetector>,
    scorer: Scorer,
    pub device_id: String,
}

impl Analyzer {
    pub fn new(detector: Box<dyn FaceDetector>, score: models::ScoreConfig, device_id: String) -> Self {
        Self { detector, scorer: Scorer::new(score), device_id }
    }

    /// Starts a new baseline and a new temporal state (a new session).
    pub fn reset(&mut self) {
        self.scorer = Scorer::new(self.scorer.config().clone());
    }

    pub fn threshold(&self) -> u8 {
        self.scorer.config().threshold
    }

    /// Detects, scores and describes one frame seen at stream time `t_ms`.
    pub fn analyse(
        &mut self,
        frame: &RgbFrame<'_>,
        frame_no: u64,
        t_ms: u64,
        ts: String,
    ) -> Result<Analysis, models::DetectorError> {
        let started = Instant::now();
        let faces = self.detector.detect(frame)?;
        let signals = Signals::from_frame(&faces, &frame.stats());
        let out = self.scorer.update(t_ms, &signals);
        Ok(self.describe(&faces, &signals, &out, frame_no, t_ms, ts, started))
    }

    /// A frame that did not arrive: the camera is lost (an end of stream, an
    /// error, a stall, a failed start). A fault of the device, not behaviour:
    /// it scores 0 and is an incident at once, without waiting out
    /// `persistence_ms` (a camera unplugged for a second matters). The
    /// scorer still sees it, so smoothing carries on from it.
    pub fn camera_lost(&mut self, frame_no: u64, t_ms: u64, ts: String) -> Analysis {
        let started = Instant::now();
        let signals = Signals::camera_lost();
        let mut out = self.scorer.update(t_ms, &signals);
        out.score = 0;
        out.alert = true;
        out.reasons = vec![Reason::CameraLost];
        self.describe(&[], &signals, &out, frame_no, t_ms, ts, started)
    }

    #[allow(clippy::too_many_arguments)]
    fn describe(
        &self,
        faces: &[Detection],
        signals: &Signals,
        out: &ScoreOutput,
        frame: u64,
        t_ms: u64,
        ts: String,
        started: Instant,
    ) -> Analysis {
        Analysis {
            kind: "analysis",
            device_id: self.device_id.clone(),
            session_id: None,
            frame,
            ts,
            focus_score: out.score,
            face_detected: !faces.is_empty(),
            num_faces: faces.len(),
            looking_away: out.reasons.contains(&Reason::LookingAway),
            yaw_deg: signals.pose.map(|p| round1(p.yaw_deg)),
            pitch_deg: signals.pose.map(|p| round1(p.pitch_deg)),
            reasons: out.reasons.clone(),
            recording: false,
            latency_ms: round2(started.elapsed().as_secs_f32() * 1000.0),
            face_box: faces.first().map(|d| [d.bbox.xmin, d.bbox.ymin, d.bbox.xmax, d.bbox.ymax].map(round1)),
            t_ms,
            alert: out.alert,
        }
    }
}

fn round1(v: f32) -> f32 {
    (v * 10.0).round() / 10.0
}
fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_ts() -> String {
    ts_of(chrono::Utc::now())
}

pub fn ts_of(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
