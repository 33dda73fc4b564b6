//! The focus score: 0-100, a review priority for a human, never a verdict.
//!
//! Pure: [`Scorer::update`] takes a frame's [`Signals`] and its timestamp
//! and returns the score; no clock, no I/O. `docs/SCORING.md` gives the
//! numbers and the reasoning.
//!
//! 1. **Instant score** of one frame ([`instant_score`]): camera lost or
//!    covered 0; no face 0; two or more faces 25; one face 100, lowered
//!    linearly as the head turns past half the tolerance (50 at the
//!    tolerance, 10 at 1.5 times it) from the session's baseline pose.
//! 2. **Baseline**: during the first `calibration_ms` of a session the median
//!    pose of single-face frames becomes "facing the screen", clamped so a
//!    student who starts the exam looking away does not set a wrong baseline;
//!    frames turned beyond `max_calibration_yaw_deg` do not count, and when
//!    they are the majority the baseline is the camera's axis (0, 0).
//!    Looking down at the paper is therefore not looking away.
//! 3. **Smoothing**: an exponential moving average with time constant `smoothing_ms`.
//! 4. **Persistence**: a fall below `threshold` must last `persistence_ms`
//!    before the score is allowed under it; until then it is held at the
//!    threshold. A blink or a glance never triggers.
//! 5. **Hysteresis**: once under, the score stays under the threshold until
//!    the smoothed score has been at least `threshold + recovery_margin`
//!    for `recovery_ms`.

use serde::{Deserialize, Serialize};

use crate::blazeface::Detection;
use crate::frame::FrameSignals;
use crate::image::FrameStats;
use crate::pose::Pose;

/// What lowered a score. Serialised in snake case, as the result JSON says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NoFace,
    MultipleFaces,
    LookingAway,
    CameraCovered,
    CameraLost,
    /// The mouth moves as in speech (see [`crate::signals::Talking`]).
    Talking,
    /// The eyes point away while the head faces the screen.
    GazeAway,
    /// A palm over the ear or the mouth.
    HandAtFace,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoFace => "no_face",
            Reason::MultipleFaces => "multiple_faces",
            Reason::LookingAway => "looking_away",
            Reason::CameraCovered => "camera_covered",
            Reason::CameraLost => "camera_lost",
            Reason::Talking => "talking",
            Reason::GazeAway => "gaze_away",
            Reason::HandAtFace => "hand_at_face",
        }
    }
}

/// Everything the score needs to know about one frame.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Signals {
    pub num_faces: usize,
    /// Pose of the strongest face, if any and if its keypoints allow one.
    pub pose: Option<Pose>,
    /// The frame is dark or flat.
    pub covered: bool,
    /// No frame arrived: the camera is gone or the pipeline failed.
    pub lost: bool,
    /// The second-stage signals ([`crate::frame::FrameSignals`]). Talking
    /// carries since when (stream ms): its window counts as persistence.
    pub talking_since: Option<u64>,
    pub gaze_away: bool,
    pub hand_at_face: bool,
}

impl Signals {
    pub fn from_frame(detections: &[Detection], stats: &FrameStats) -> Self {
        Signals {
            num_faces: detections.len(),
            pose: detections.first().and_then(Pose::from_detection),
            covered: stats.covered(),
            ..Default::default()
        }
    }

    /// Adds what the second-stage models found: the landmarks' yaw replaces
    /// the keypoints' (it sees a profile as one), the full-range detector's
    /// faces count when it finds more than BlazeFace's one or more, and the
    /// three new conditions.
    pub fn with(mut self, f: &FrameSignals) -> Self {
        if let (Some(p), Some(yaw)) = (self.pose.as_mut(), f.yaw_deg) {
            p.yaw_deg = yaw;
        }
        // Only people beyond the first face: with no face of its own the
        // frame stays `no_face` (a face without a pose would score 100).
        if self.num_faces >= 1 {
            self.num_faces = self.num_faces.max(f.full_range_faces.unwrap_or(0));
        }
        self.talking_since = f.talking_since;
        self.gaze_away = f.gaze_away;
        self.hand_at_face = f.hand_at_face;
        self
    }

    pub fn camera_lost() -> Self {
        Signals { lost: true, ..Default::default() }
    }
}

/// Score settings. Defaults are those of `[score]` in the config.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreConfig {
    /// Under this a clip is recorded and an incident opened. Default 50.
    pub threshold: u8,
    /// How long a fall must last before the score goes under the threshold. Default 1500 ms.
    pub persistence_ms: u64,
    /// Time constant of the moving average. Default 500 ms.
    pub smoothing_ms: u64,
    /// Head turn, from the baseline, that scores exactly the threshold. Default 30°.
    pub yaw_tolerance_deg: f32,
    /// Head tilt, from the baseline, that scores exactly the threshold. Default 25°.
    pub pitch_tolerance_deg: f32,
    /// Length of the baseline calibration at the start of a session. Default 3000 ms.
    pub calibration_ms: u64,
    /// The baseline is clamped to ± this yaw. Default 15°.
    pub max_baseline_yaw_deg: f32,
    /// The baseline is clamped to this pitch range (looking down is positive). Default -10..30°.
    pub baseline_pitch_range: (f32, f32),
    /// Recovery needs the score this far above the threshold. Default 10.
    pub recovery_margin: u8,
    /// ... for this long. Default 1000 ms.
    pub recovery_ms: u64,
    /// Only frames with the head turned at most this far count towards
    /// the baseline, so a head turned from the first second does not
    /// become "facing the screen". Default 25°.
    pub max_calibration_yaw_deg: f32,
    /// Instant score of a frame with `talking`. Default 20.
    pub talking_score: f32,
    /// Instant score of a frame with `hand_at_face`. Default 20.
    pub hand_score: f32,
    /// Instant score of a frame with `gaze_away` (counted only while the
    /// head's pose costs nothing). Default 30.
    pub gaze_score: f32,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            threshold: 50,
            persistence_ms: 1500,
            smoothing_ms: 500,
            yaw_tolerance_deg: 30.0,
            pitch_tolerance_deg: 25.0,
            calibration_ms: 3000,
            max_baseline_yaw_deg: 15.0,
            baseline_pitch_range: (-10.0, 30.0),
            recovery_margin: 10,
            recovery_ms: 1000,
            max_calibration_yaw_deg: 25.0,
            talking_score: 20.0,
            hand_score: 20.0,
            gaze_score: 30.0,
        }
    }
}

/// Score of one frame before any temporal logic, and why it is low.
pub fn instant_score(s: &Signals, baseline: Pose, cfg: &ScoreConfig) -> (f32, Vec<Reason>) {
    if s.lost {
        return (0.0, vec![Reason::CameraLost]);
    }
    if s.covered {
        return (0.0, vec![Reason::CameraCovered]);
    }
    match s.num_faces {
        0 => (0.0, vec![Reason::NoFace]),
        1 => {
            let (mut score, mut reasons) = (100.0, vec![]);
            let mut head_ok = true;
            if let Some(p) = s.pose {
                let away = ((p.yaw_deg - baseline.yaw_deg).abs() / cfg.yaw_tolerance_deg)
                    .max((p.pitch_deg - baseline.pitch_deg).abs() / cfg.pitch_tolerance_deg);
                // 100 up to half the tolerance, 50 at the tolerance, 10 from 1.4 times it.
                if away > 0.5 {
                    score = (100.0 - (away - 0.5) * 100.0).max(10.0);
                    head_ok = false;
                }
                if away > 1.0 {
                    reasons.push(Reason::LookingAway);
                }
            }
            // Each condition caps the score; the reasons name all that apply.
            let mut cap = |on: bool, value: f32, reason: Reason| {
                if on {
                    score = f32::min(score, value);
                    reasons.push(reason);
                }
            };
            cap(s.talking_since.is_some(), cfg.talking_score, Reason::Talking);
            cap(s.hand_at_face, cfg.hand_score, Reason::HandAtFace);
            // Eyes away count only while the head faces the screen; a
            // turned head is looking_away's.
            cap(s.gaze_away && head_ok, cfg.gaze_score, Reason::GazeAway);
            (score, reasons)
        }
        _ => (25.0, vec![Reason::MultipleFaces]),
    }
}

/// The score of one frame after the temporal logic.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreOutput {
    /// 0-100; under the threshold only after persistence, and until recovery.
    pub score: u8,
    /// The frame's own score, before smoothing.
    pub instant: u8,
    /// What is lowering the score: the frame's own reasons, or while the
    /// score is held low, the reasons that brought it down.
    pub reasons: Vec<Reason>,
    /// True while the score is under the threshold (an incident is open).
    pub alert: bool,
    /// The baseline pose in force.
    pub baseline: Pose,
    /// True while the baseline is still being calibrated.
    pub calibrating: bool,
}

/// Per-session scoring state. Feed it frames in time order.
#[derive(Clone, Debug)]
pub struct Scorer {
    cfg: ScoreConfig,
    start_ms: Option<u64>,
    last_ms: u64,
    ema: f32,
    alert: bool,
    /// When the smoothed score last went under the threshold (while not in alert).
    low_since: Option<u64>,
    /// When the smoothed score last rose above threshold + margin (while in alert).
    high_since: Option<u64>,
    alert_reasons: Vec<Reason>,
    calibration: Vec<Pose>,
    /// Single-face frames seen while calibrating, frontal or not.
    calibration_frames: usize,
    baseline: Option<Pose>,
}

impl Scorer {
    pub fn new(cfg: ScoreConfig) -> Self {
        Self {
            cfg,
            start_ms: None,
            last_ms: 0,
            ema: 100.0,
            alert: false,
            low_since: None,
            high_since: None,
            alert_reasons: Vec::new(),
            calibration: Vec::new(),
            calibration_frames: 0,
            baseline: None,
        }
    }

    pub fn config(&self) -> &ScoreConfig {
        &self.cfg
    }

    fn baseline_now(&mut self, t: u64, s: &Signals) -> (Pose, bool) {
        if let Some(b) = self.baseline {
            return (b, false);
        }
        let start = *self.start_ms.get_or_insert(t);
        if let (1, Some(p)) = (s.num_faces, s.pose)
            && !s.covered
        {
            self.calibration_frames += 1;
            if p.yaw_deg.abs() <= self.cfg.max_calibration_yaw_deg {
                self.calibration.push(p);
            }
        }
        // While calibrating, the median so far is the provisional baseline,
        // so the first seconds are scored against the student's own posture.
        let b = self.median_baseline();
        if t.saturating_sub(start) < self.cfg.calibration_ms {
            return (b, true);
        }
        self.baseline = Some(b);
        self.calibration = Vec::new();
        (b, false)
    }

    fn median_baseline(&self) -> Pose {
        // Mostly turned while calibrating: the head was turned from the
        // start, and its few frontal-looking frames are the model's noise.
        // The camera's own axis is the baseline then.
        if self.calibration.len() * 2 < self.calibration_frames {
            return Pose::default();
        }
        let median = |mut v: Vec<f32>| -> f32 {
            if v.is_empty() {
                return 0.0;
            }
            v.sort_by(f32::total_cmp);
            v[v.len() / 2]
        };
        let yaw = median(self.calibration.iter().map(|p| p.yaw_deg).collect());
        let pitch = median(self.calibration.iter().map(|p| p.pitch_deg).collect());
        let m = self.cfg.max_baseline_yaw_deg;
        let (lo, hi) = self.cfg.baseline_pitch_range;
        Pose { yaw_deg: yaw.clamp(-m, m), pitch_deg: pitch.clamp(lo, hi) }
    }

    /// Scores one frame observed at `t_ms` (any monotonic millisecond clock;
    /// a timestamp earlier than the previous one is treated as equal to it).
    pub fn update(&mut self, t_ms: u64, s: &Signals) -> ScoreOutput {
        let first = self.start_ms.is_none();
        let t = t_ms.max(self.last_ms);
        let (baseline, calibrating) = self.baseline_now(t, s);
        let (instant, reasons) = instant_score(s, baseline, &self.cfg);
        let thr = self.cfg.threshold as f32;

        if first {
            // No history: the first frame sets the state directly, so a
            // session that starts with nobody at the desk is low at once.
            self.ema = instant;
            self.alert = instant < thr;
            if self.alert {
                self.alert_reasons = reasons.clone();
            }
        } else {
            let dt = (t - self.last_ms) as f32;
            let alpha = if self.cfg.smoothing_ms == 0 { 1.0 } else { 1.0 - (-dt / self.cfg.smoothing_ms as f32).exp() };
            self.ema += alpha * (instant - self.ema);
        }
        self.last_ms = t;

        if !self.alert {
            if self.ema < thr {
                // Talking was judged over its window: that time counts
                // towards persistence (one open mouth never gets there).
                let from = match s.talking_since {
                    Some(ts) if reasons.contains(&Reason::Talking) => ts.min(t),
                    _ => t,
                };
                let since = *self.low_since.get_or_insert(from);
                if !reasons.is_empty() {
                    self.alert_reasons = reasons.clone();
                }
                if t - since >= self.cfg.persistence_ms {
                    self.alert = true;
                    self.high_since = None;
                }
            } else {
                self.low_since = None;
            }
        } else if self.ema >= thr + self.cfg.recovery_margin as f32 {
            let since = *self.high_since.get_or_insert(t);
            if t - since >= self.cfg.recovery_ms {
                self.alert = false;
                self.low_since = None;
                self.alert_reasons.clear();
            }
        } else {
            self.high_since = None;
            if !reasons.is_empty() {
                self.alert_reasons = reasons.clone();
            }
        }

        // Held at the threshold during persistence, under it during an alert.
        let score = if self.alert { self.ema.min(thr - 1.0) } else { self.ema.max(thr) };
        let out_reasons = if self.alert { self.alert_reasons.clone() } else { reasons };
        ScoreOutput {
            score: score.round().clamp(0.0, 100.0) as u8,
            instant: instant.round() as u8,
            reasons: out_reasons,
            alert: self.alert,
            baseline,
            calibrating,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_MS: u64 = 33;

    fn facing() -> Signals {
        Signals { num_faces: 1, pose: Some(Pose::default()), ..Default::default() }
    }
    fn turned(yaw: f32) -> Signals {
        Signals { num_faces: 1, pose: Some(Pose { yaw_deg: yaw, pitch_deg: 0.0 }), ..Default::default() }
    }
    fn nobody() -> Signals {
        Signals::default()
    }

    /// Feeds `s` for `ms` milliseconds at 30 FPS from `*t`; returns the outputs.
    fn feed(sc: &mut Scorer, t: &mut u64, ms: u64, s: &Signals) -> Vec<ScoreOutput> {
        let end = *t + ms;
        let mut out = Vec::new();
        while *t < end {
            out.push(sc.update(*t, s));
            *t += FRAME_MS;
        }
        out
    }

    #[test]
    fn each_reason_has_its_instant_score() {
        let cfg = ScoreConfig::default();
        let b = Pose::default();
        assert_eq!(instant_score(&facing(), b, &cfg), (100.0, vec![]));
        assert_eq!(instant_score(&nobody(), b, &cfg), (0.0, vec![Reason::NoFace]));
        let two = Signals { num_faces: 2, ..facing() };
        assert_eq!(instant_score(&two, b, &cfg), (25.0, vec![Reason::MultipleFaces]));
        let covered = Signals { covered: true, ..facing() };
        assert_eq!(instant_score(&covered, b, &cfg), (0.0, vec![Reason::CameraCovered]));
        assert_eq!(instant_score(&Signals::camera_lost(), b, &cfg), (0.0, vec![Reason::CameraLost]));
        // At the tolerance: exactly the threshold, not yet "looking away".
        assert_eq!(instant_score(&turned(30.0), b, &cfg), (50.0, vec![]));
        let (s, r) = instant_score(&turned(-45.0), b, &cfg);
        assert_eq!((s, r), (10.0, vec![Reason::LookingAway]));
        // Small turns cost nothing.
        assert_eq!(instant_score(&turned(14.0), b, &cfg).0, 100.0);
    }

    #[test]
    fn a_glance_shorter_than_persistence_never_goes_under_the_threshold() {
        let mut sc = Scorer::new(ScoreConfig::default());
        let mut t = 0;
        feed(&mut sc, &mut t, 4000, &facing());
        let glance = feed(&mut sc, &mut t, 1200, &turned(60.0));
        assert!(glance.iter().all(|o| o.score >= 50 && !o.alert), "{:?}", glance.last());
        let back = feed(&mut sc, &mut t, 2000, &facing());
        assert!(back.iter().all(|o| o.score >= 50));
        assert!(back.last().unwrap().score >= 95);
    }

    #[test]
    fn a_condition_that_persists_goes_under_with_its_reason() {
        let mut sc = Scorer::new(ScoreConfig::default());
        let mut t = 0;
        feed(&mut sc, &mut t, 4000, &facing());
        let away = feed(&mut sc, &mut t, 3000, &nobody());
        let first_low = away.iter().position(|o| o.score < 50).expect("goes under");
        // Held for persistence (1.5 s) after the EMA crosses 50 (about 0.35 s).
        let ms = first_low as u64 * FRAME_MS;
        assert!((1500..=2200).contains(&ms), "went under after {ms} ms");
        assert_eq!(away.last().unwrap().reasons, vec![Reason::NoFace]);
        assert!(away.last().unwrap().alert);
    }

    #[test]
    fn recovery_needs_margin_and_time() {
        let cfg = ScoreConfig::default();
        let mut sc = Scorer::new(cfg.clone());
        let mut t = 0;
        feed(&mut sc, &mut t, 4000, &facing());
        feed(&mut sc, &mut t, 3000, &nobody());
        // A frame scoring exactly 55 (above 50, below 60) does not end the alert.
        let meh = feed(&mut sc, &mut t, 3000, &turned(27.0));
        assert!(meh.iter().all(|o| o.alert && o.score < 50), "{:?}", meh.last());
        let back = feed(&mut sc, &mut t, 3000, &facing());
        let recovered = back.iter().position(|o| !o.alert).expect("recovers");
        // EMA needs ~0.5 s to pass 60, then 1 s of recovery.
        assert!(recovered as u64 * FRAME_MS >= cfg.recovery_ms);
        assert!(back[..recovered].iter().all(|o| o.score < 50));
        assert!(back[recovered..].iter().all(|o| o.score >= 50));
    }

    #[test]
    fn flicker_between_good_and_bad_frames_does_not_trigger() {
        let mut sc = Scorer::new(ScoreConfig::default());
        let mut t = 0;
        feed(&mut sc, &mut t, 4000, &facing());
        for i in 0..300 {
            let s = if i % 2 == 0 { nobody() } else { facing() };
            let o = sc.update(t, &s);
            assert!(!o.alert, "frame {i}");
            t += FRAME_MS;
        }
    }

    #[test]
    fn calibration_makes_looking_down_at_the_paper_the_baseline() {
        let looking_down =
            Signals { num_faces: 1, pose: Some(Pose { yaw_deg: 0.0, pitch_deg: 28.0 }), ..Default::default() };
        // Without a baseline a 28° tilt is past the 25° tolerance.
        assert_eq!(instant_score(&looking_down, Pose::default(), &ScoreConfig::default()).1, vec![Reason::LookingAway]);
        let mut sc = Scorer::new(ScoreConfig::default());
        let mut t = 0;
        let out = feed(&mut sc, &mut t, 8000, &looking_down);
        assert!(out[0].calibrating);
        let last = out.last().unwrap();
        assert!(!last.calibrating);
        assert_eq!(last.baseline.pitch_deg, 28.0);
        assert_eq!(last.score, 100);
        assert!(out.iter().all(|o| !o.alert));
    }

    #[test]
    fn a_baseline_far_off_is_clamped() {
        let mut sc = Scorer::new(ScoreConfig::default());
        let mut t = 0;
        let out = feed(&mut sc, &mut t, 3500, &turned(20.0));
        assert_eq!(out.last().unwrap().baseline.yaw_deg, 15.0);
        assert!(!out.last().unwrap().alert);
        let mut sc = Scorer::new(ScoreConfig::default());
        let out = feed(&mut sc, &mut t, 3500, &turned(70.0));
        // A head turned from the start is not a baseline at all: it stays 0.
        assert_eq!(out.last().unwrap().baseline.yaw_deg, 0.0);
        assert!(out.last().unwrap().alert);
        assert_eq!(out.last().unwrap().reasons, vec![Reason::LookingAway]);
    }

    #[test]
    fn a_session_that_starts_empty_is_low_from_the_first_frame() {
        let mut sc = Scorer::new(ScoreConfig::default());
        let o = sc.update(0, &nobody());
        assert!(o.alert);
        assert_eq!(o.score, 0);
    }

    #[test]
    fn time_going_backwards_is_not_a_panic() {
        let mut sc = Scorer::new(ScoreConfig::default());
        sc.update(1000, &facing());
        let o = sc.update(500, &facing());
        assert_eq!(o.score, 100);
    }

    #[test]
    fn talking_a_hand_and_eyes_away_cap_the_score_with_their_reasons() {
        let (cfg, b) = (ScoreConfig::default(), Pose::default());
        let talking = Signals { talking_since: Some(0), ..facing() };
        assert_eq!(instant_score(&talking, b, &cfg), (20.0, vec![Reason::Talking]));
        let hand = Signals { hand_at_face: true, ..facing() };
        assert_eq!(instant_score(&hand, b, &cfg), (20.0, vec![Reason::HandAtFace]));
        let eyes = Signals { gaze_away: true, ..facing() };
        assert_eq!(instant_score(&eyes, b, &cfg), (30.0, vec![Reason::GazeAway]));
        // With the head turned, the eyes are the head's business.
        let turned_eyes = Signals { gaze_away: true, ..turned(45.0) };
        assert_eq!(instant_score(&turned_eyes, b, &cfg), (10.0, vec![Reason::LookingAway]));
        let all = Signals { talking_since: Some(0), hand_at_face: true, ..turned(20.0) };
        assert_eq!(instant_score(&all, b, &cfg), (20.0, vec![Reason::Talking, Reason::HandAtFace]));
    }

    #[test]
    fn talking_counts_its_window_as_persistence() {
        let mut sc = Scorer::new(ScoreConfig::default());
        let mut t = 0;
        feed(&mut sc, &mut t, 5000, &facing());
        // Recognised now, over a window that began 2 s ago.
        let talking = Signals { talking_since: Some(t - 2000), ..facing() };
        let out = feed(&mut sc, &mut t, 3000, &talking);
        let first_low = out.iter().position(|o| o.alert).expect("goes under");
        // Only the average's fall (about 0.5 s from 100 to 50 towards 20).
        assert!((first_low as u64 * FRAME_MS) < 800, "went under after {} ms", first_low as u64 * FRAME_MS);
        assert_eq!(out.last().unwrap().reasons, vec![Reason::Talking]);
    }

    #[test]
    fn a_head_turned_for_most_of_the_calibration_does_not_become_the_baseline() {
        let mut sc = Scorer::new(ScoreConfig::default());
        let mut t = 0;
        // Mostly in profile (40°), a few noisy frontal-looking frames.
        for i in 0..100 {
            let yaw = if i % 4 == 0 { 5.0 } else { 40.0 };
            sc.update(t, &turned(yaw));
            t += FRAME_MS;
        }
        let o = sc.update(t, &turned(40.0));
        assert_eq!(o.baseline, Pose::default());
        assert_eq!(o.reasons, vec![Reason::LookingAway]);
    }
}
