//! `[score]`: the threshold and timing of the focus score, and which of
//! the second-stage signals run and how often (docs/SCORING.md gives the
//! rules, docs/PERFORMANCE.md the cost of each rate). Every signal is on
//! by default: together they fit the budget measured there.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Score {
    /// Default 50.
    pub threshold: u8,
    /// Default 1500.
    pub persistence_ms: u64,
    /// Default 500.
    pub smoothing_ms: u64,
    /// `talking` from the mouth's movement (face landmarks). Default true.
    pub talking: bool,
    /// `gaze_away` from the irises (face landmarks + iris). Default true.
    pub gaze: bool,
    /// `hand_at_face` from the palm detector. Default true.
    pub hand_at_face: bool,
    /// A second person further away (`multiple_faces`) from the full-range
    /// face detector. Default true.
    pub second_person: bool,
    /// Face landmark runs a second (talking, head yaw). Default 15.
    pub landmarks_hz: f32,
    /// Iris runs a second (gaze). Default 5.
    pub iris_hz: f32,
    /// Palm detector runs a second. Default 2.
    pub palm_hz: f32,
    /// Full-range face detector runs a second. Default 1.
    pub full_range_hz: f32,
}

impl Default for Score {
    fn default() -> Self {
        let s = models::SignalConfig::default();
        Self {
            threshold: 50,
            persistence_ms: 1500,
            smoothing_ms: 500,
            talking: s.talking,
            gaze: s.gaze,
            hand_at_face: s.hand_at_face,
            second_person: s.second_person,
            landmarks_hz: s.landmarks_hz,
            iris_hz: s.iris_hz,
            palm_hz: s.palm_hz,
            full_range_hz: s.full_range_hz,
        }
    }
}

impl Score {
    /// The checked score and signal settings, or the field at fault and why.
    pub fn validate(&self) -> Result<(models::ScoreConfig, models::SignalConfig), (&'static str, String)> {
        if !(1..=99).contains(&self.threshold) {
            return Err(("score.threshold", format!("{} is out of range; use 1 to 99, such as 50", self.threshold)));
        }
        if self.persistence_ms > 60_000 {
            return Err(("score.persistence_ms", format!("{} is over a minute; use e.g. 1500", self.persistence_ms)));
        }
        if self.smoothing_ms > 10_000 {
            return Err(("score.smoothing_ms", format!("{} is over 10 s; use e.g. 500", self.smoothing_ms)));
        }
        let rates = [
            ("score.landmarks_hz", self.landmarks_hz, 15.0),
            ("score.iris_hz", self.iris_hz, 5.0),
            ("score.palm_hz", self.palm_hz, 2.0),
            ("score.full_range_hz", self.full_range_hz, 1.0),
        ];
        for (field, hz, good) in rates {
            // Above 30 a model would run on every frame anyway; under 0.1
            // a result would be held for half a minute.
            if !(0.1..=30.0).contains(&hz) {
                return Err((field, format!("{hz} is out of range; use 0.1 to 30 runs a second, such as {good}")));
            }
        }
        let score = models::ScoreConfig {
            threshold: self.threshold,
            persistence_ms: self.persistence_ms,
            smoothing_ms: self.smoothing_ms,
            ..Default::default()
        };
        let signals = models::SignalConfig {
            talking: self.talking,
            gaze: self.gaze,
            hand_at_face: self.hand_at_face,
            second_person: self.second_person,
            landmarks_hz: self.landmarks_hz,
            iris_hz: self.iris_hz,
            palm_hz: self.palm_hz,
            full_range_hz: self.full_range_hz,
            ..Default::default()
        };
        Ok((score, signals))
    }
}
