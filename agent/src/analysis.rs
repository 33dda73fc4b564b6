//! One frame in, one analysis result out: detector, the second-stage
//! signals (`models::FrameAnalyzer`: talking, gaze, hand at the face, a
//! second person; `[score]` says which run) and scorer for one stream
//! (the camera, or one `/analyze` connection). The result is the wire type
//! `proto::Analysis` (CONTRACTS.md "Analysis result"); the caller fills in
//! the session and the recording flag.

use std::time::Instant;

use chrono::{DateTime, Utc};
use models::{Detection, FaceDetector, FrameAnalyzer, RgbFrame, ScoreOutput, Scorer, Signals};
use proto::Analysis;
use proto::analysis::AnalysisType;

use crate::domain::Reason;

/// The wire name of a reason the scorer gives. Exhaustive: a reason added
/// to the models crate must be named here (and in proto) to compile.
pub fn reason(r: models::Reason) -> Reason {
    match r {
        models::Reason::NoFace => Reason::NoFace,
        models::Reason::MultipleFaces => Reason::MultipleFaces,
        models::Reason::LookingAway => Reason::LookingAway,
        models::Reason::CameraCovered => Reason::CameraCovered,
        models::Reason::CameraLost => Reason::CameraLost,
        models::Reason::Talking => Reason::Talking,
        models::Reason::GazeAway => Reason::GazeAway,
        models::Reason::HandAtFace => Reason::HandAtFace,
    }
}

/// Detector, the second-stage models (`models::FrameAnalyzer`) and the
/// per-stream score state.
pub struct Analyzer {
    detector: Box<dyn FaceDetector>,
    signals: FrameAnalyzer,
    scorer: Scorer,
    pub device_id: String,
}

impl Analyzer {
    pub fn new(
        detector: Box<dyn FaceDetector>,
        signals: FrameAnalyzer,
        score: models::ScoreConfig,
        device_id: String,
    ) -> Self {
        Self { detector, signals, scorer: Scorer::new(score), device_id }
    }

    /// Starts a new baseline and a new temporal state (a new session).
    pub fn reset(&mut self) {
        self.scorer = Scorer::new(self.scorer.config().clone());
        self.signals.reset();
    }

    pub fn threshold(&self) -> u8 {
        self.scorer.config().threshold
    }

    /// The detector's runtime ("tflite", "litert").
    pub fn backend(&self) -> &'static str {
        self.detector.backend()
    }

    /// Detects, scores and describes one frame seen at stream time `t_ms`.
    pub fn analyse(
        &mut self,
        frame: &RgbFrame<'_>,
        frame_no: u64,
        t_ms: u64,
        ts: DateTime<Utc>,
    ) -> Result<Analysis, models::DetectorError> {
        let started = Instant::now();
        let faces = self.detector.detect(frame)?;
        let more = self.signals.analyse(frame, &faces, t_ms)?;
        let signals = Signals::from_frame(&faces, &frame.stats()).with(&more);
        let out = self.scorer.update(t_ms, &signals);
        Ok(self.describe(&faces, &signals, &out, frame_no, t_ms, ts, started))
    }

    /// A frame that did not arrive: the camera is lost (an end of stream, an
    /// error, a stall, a failed start). A fault of the device, not behaviour:
    /// it scores 0 and is an incident at once, without waiting out
    /// `persistence_ms` (a camera unplugged for a second matters). The
    /// scorer still sees it, so smoothing carries on from it.
    pub fn camera_lost(&mut self, frame_no: u64, t_ms: u64, ts: DateTime<Utc>) -> Analysis {
        let started = Instant::now();
        let signals = Signals::camera_lost();
        let mut out = self.scorer.update(t_ms, &signals);
        out.score = 0;
        out.alert = true;
        out.reasons = vec![models::Reason::CameraLost];
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
        ts: DateTime<Utc>,
        started: Instant,
    ) -> Analysis {
        Analysis {
            kind: AnalysisType::Analysis,
            device_id: self.device_id.clone(),
            session_id: None,
            frame,
            ts: ts.into(),
            focus_score: out.score,
            face_detected: !faces.is_empty(),
            num_faces: faces.len(),
            looking_away: out.reasons.contains(&models::Reason::LookingAway),
            yaw_deg: signals.pose.map(|p| round1(p.yaw_deg)),
            pitch_deg: signals.pose.map(|p| round1(p.pitch_deg)),
            reasons: out.reasons.iter().copied().map(reason).collect(),
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

/// Loads the second-stage models `[score]` turns on, from the folder of
/// `model.path`, on the backend BlazeFace's load chose.
pub fn load_signals(cfg: &crate::config::Validated, choice: &models::BackendChoice) -> Result<FrameAnalyzer, String> {
    let dir = cfg.model_path.parent().unwrap_or(std::path::Path::new("."));
    let backend = if choice.backend == "litert" { models::Backend::LiteRt } else { models::Backend::Tflite };
    let lib = choice.library.as_deref().or(cfg.litert_lib.as_deref());
    let models = models::SignalModels::load(&cfg.signals, dir, backend, lib, cfg.model_threads).map_err(|e| {
        let hint = match e {
            models::DetectorError::Read { .. } => " (run scripts/fetch-assets, or turn the signal off in [score])",
            _ => "",
        };
        format!("{e}{hint}")
    })?;
    // Said once per process, not once per /analyze connection.
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        for why in &models.unavailable {
            tracing::warn!(reason = %why, "signal unavailable on this backend");
        }
    });
    Ok(FrameAnalyzer::new(cfg.signals.clone(), models))
}
