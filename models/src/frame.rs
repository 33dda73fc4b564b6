//! The per-frame pipeline beyond BlazeFace: [`FrameAnalyzer`] runs the
//! second-stage models at their own, lower rates on the face's region,
//! holds each result until its next run, and turns them into the frame's
//! [`FrameSignals`] with the temporal rules of [`crate::signals`].
//!
//! Rates are by stream time (`t_ms`), not by frame count: a model with
//! rate r runs on the first frame at least 1000/r ms (less 5 ms of slack
//! for frame timestamps rounded to the millisecond) after its last run.
//! - face landmarks (while `talking` or `gaze` is on): the jaw's
//!   opening and the head's yaw;
//! - iris (with `gaze`): both eyes, on frames whose landmarks are fresh;
//! - palm (with `hand_at_face`): a square 3x the face around it;
//! - full-range faces (with `second_person`): the whole frame, for people
//!   further away than BlazeFace short-range sees.
//!
//! Time and pixels in, signals out: the only state is what the rules keep;
//! no clock, no I/O (models are loaded by [`SignalModels::load`]).

use std::path::Path;

use crate::blazeface::{Anchor, BBox, Detection};
use crate::detector::{Backend, DetectorError};
use crate::facemesh::{self, EYE_CROP, EYES, FACE_CROP, FaceMesh, Gaze};
use crate::image::RgbFrame;
use crate::net::{FACE_LANDMARK_SPEC, FULL_RANGE_SPEC, IRIS_SPEC, Net, PALM_SPEC};
use crate::roi::{self, Border, CropSpec, Range, Region};
use crate::signals::{GazeConfig, GazeTracker, Persist, Talking, TalkingConfig, hand_overlaps_face};
use crate::ssd::{self, SsdOptions};

/// Which signals are on and how often their models run (`[score]` in the
/// agent's config; defaults in docs/SCORING.md, measured in
/// docs/PERFORMANCE.md).
#[derive(Clone, Debug, PartialEq)]
pub struct SignalConfig {
    pub talking: bool,
    pub gaze: bool,
    pub hand_at_face: bool,
    pub second_person: bool,
    /// Face landmark runs a second. Default 15.
    pub landmarks_hz: f32,
    /// Iris runs (both eyes) a second. Default 5.
    pub iris_hz: f32,
    /// Palm detector runs a second. Default 2.
    pub palm_hz: f32,
    /// Full-range face detector runs a second. Default 1.
    pub full_range_hz: f32,
    pub talking_rule: TalkingConfig,
    pub gaze_rule: GazeConfig,
    /// How long a palm must stay at the face. Default 1000 ms.
    pub hand_persistence_ms: u64,
}

impl Default for SignalConfig {
    fn default() -> Self {
        Self {
            talking: true,
            gaze: true,
            hand_at_face: true,
            second_person: true,
            landmarks_hz: 15.0,
            iris_hz: 5.0,
            palm_hz: 2.0,
            full_range_hz: 1.0,
            talking_rule: TalkingConfig::default(),
            gaze_rule: GazeConfig::default(),
            hand_persistence_ms: 1000,
        }
    }
}

impl SignalConfig {
    /// Every signal off: BlazeFace alone, as before these signals existed.
    pub fn off() -> Self {
        Self { talking: false, gaze: false, hand_at_face: false, second_person: false, ..Default::default() }
    }

    fn landmarks_on(&self) -> bool {
        self.talking || self.gaze
    }
}

/// File names of the models, in the folder of BlazeFace's.
pub const FACE_LANDMARK_FILE: &str = "face_landmark.tflite";
pub const IRIS_FILE: &str = "iris_landmark.tflite";
pub const PALM_FILE: &str = "palm_detection_lite.tflite";
pub const FULL_RANGE_FILE: &str = "face_detection_full_range.tflite";

/// The loaded second-stage models (None where the signal is off).
#[derive(Default)]
pub struct SignalModels {
    pub landmarks: Option<Net>,
    pub iris: Option<Net>,
    pub palm: Option<Net>,
    pub full_range: Option<Net>,
    /// Signals turned off because the backend cannot run their model (the
    /// palm detector needs op versions TensorFlow Lite 1.15 lacks), one
    /// sentence each, for the log and `invigil check`.
    pub unavailable: Vec<String>,
}

impl SignalModels {
    /// Loads the models `cfg` needs from `dir` on `backend` (the one
    /// BlazeFace's load chose). A missing or malformed file is an error; a
    /// model the runtime cannot build turns its signal off, said in
    /// [`SignalModels::unavailable`].
    pub fn load(
        cfg: &SignalConfig,
        dir: &Path,
        backend: Backend,
        litert_lib: Option<&Path>,
        threads: usize,
    ) -> Result<Self, DetectorError> {
        let mut unavailable = Vec::new();
        let mut load = |on: bool, signal: &str, file: &str, spec| -> Result<Option<Net>, DetectorError> {
            if !on {
                return Ok(None);
            }
            match Net::load(backend, litert_lib, &dir.join(file), threads, spec) {
                Ok(net) => Ok(Some(net)),
                Err(DetectorError::Runtime { path, message }) => {
                    unavailable.push(format!(
                        "{signal} is off: {} cannot run {}: {message}",
                        backend_name(backend),
                        path.display()
                    ));
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        };
        let landmarks = load(cfg.landmarks_on(), "talking and gaze", FACE_LANDMARK_FILE, &FACE_LANDMARK_SPEC)?;
        let iris = load(cfg.gaze, "gaze", IRIS_FILE, &IRIS_SPEC)?;
        let palm = load(cfg.hand_at_face, "hand_at_face", PALM_FILE, &PALM_SPEC)?;
        // TensorFlow Lite 1.15 builds the full-range model but computes it
        // wrong (models/tests/signals.rs): LiteRT only.
        let full_on = cfg.second_person && backend == Backend::LiteRt;
        let full_range = load(full_on, "second_person", FULL_RANGE_FILE, &FULL_RANGE_SPEC)?;
        if cfg.second_person && !full_on {
            unavailable.push(format!(
                "second_person is off: {} gives wrong outputs for {FULL_RANGE_FILE} (LiteRT runs it)",
                backend_name(backend)
            ));
        }
        Ok(SignalModels { landmarks, iris, palm, full_range, unavailable })
    }
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::LiteRt => "LiteRT",
        Backend::Tflite | Backend::Auto => "TensorFlow Lite 1.15",
    }
}

/// What the second-stage models say about one frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameSignals {
    /// Talking, since this stream time (the start of the window it was
    /// recognised in).
    pub talking_since: Option<u64>,
    pub gaze_away: bool,
    pub hand_at_face: bool,
    /// Faces the full-range detector holds (None: not run or too old).
    pub full_range_faces: Option<usize>,
    /// Head yaw from the landmarks, when fresh (degrees, as [`crate::Pose`]).
    pub yaw_deg: Option<f32>,
    /// The latest mouth (inner lips) and jaw openings, in face heights, when fresh.
    pub mouth_opening: Option<f32>,
    pub jaw_opening: Option<f32>,
    /// The latest gaze, when fresh.
    pub gaze: Option<Gaze>,
}

/// When a model with `hz` runs next.
#[derive(Clone, Copy, Debug, Default)]
struct Schedule {
    last: Option<u64>,
}

impl Schedule {
    fn due(&self, t: u64, hz: f32) -> bool {
        if hz <= 0.0 {
            return false;
        }
        let period = (1000.0 / hz) as u64;
        self.last.is_none_or(|l| t + 5 >= l + period || t < l)
    }
}

/// A landmark result older than this is not used for yaw or gaze.
const FRESH_MS: u64 = 250;
/// The landmark model's face presence under which its mouth and eyes are
/// not used (its yaw still is).
const MIN_PRESENCE: f32 = 0.5;

const PALM_CROP: CropSpec = CropSpec { size: 192, border: Border::Zero, range: Range::Unit, mirror: false };
const FULL_CROP: CropSpec = CropSpec { size: 192, border: Border::Zero, range: Range::Signed, mirror: false };
/// The palm detector sees a square this many times the face's longer side.
pub const PALM_REGION_SCALE: f32 = 3.0;

/// The palm detector's region around a face.
pub fn palm_region(face: &Detection) -> Region {
    Region {
        cx: (face.bbox.xmin + face.bbox.xmax) / 2.0,
        cy: (face.bbox.ymin + face.bbox.ymax) / 2.0,
        side: PALM_REGION_SCALE * face.bbox.width().max(face.bbox.height()),
        angle: 0.0,
    }
}

/// Runs the second-stage models on a face and keeps the signals' state.
pub struct FrameAnalyzer {
    cfg: SignalConfig,
    models: SignalModels,
    face_tensor: Vec<f32>,
    eye_tensor: Vec<f32>,
    det_tensor: Vec<f32>,
    palm_anchors: Vec<Anchor>,
    full_anchors: Vec<Anchor>,
    runs: [Schedule; 4],
    mesh: Option<(u64, FaceMesh)>,
    gaze: Option<(u64, Gaze)>,
    palms: Option<(u64, Vec<BBox>)>,
    people: Option<(u64, usize)>,
    talking: Talking,
    gaze_rule: GazeTracker,
    gaze_away: bool,
    hand: Persist,
}

const LANDMARKS: usize = 0;
const IRIS: usize = 1;
const PALM: usize = 2;
const FULL: usize = 3;

impl FrameAnalyzer {
    pub fn new(cfg: SignalConfig, models: SignalModels) -> Self {
        Self {
            talking: Talking::new(cfg.talking_rule),
            gaze_rule: GazeTracker::new(cfg.gaze_rule),
            cfg,
            models,
            face_tensor: vec![0.0; FACE_CROP.size * FACE_CROP.size * 3],
            eye_tensor: vec![0.0; EYE_CROP.size * EYE_CROP.size * 3],
            det_tensor: vec![0.0; 192 * 192 * 3],
            palm_anchors: ssd::PALM.anchors(),
            full_anchors: ssd::FULL_RANGE.anchors(),
            runs: [Schedule::default(); 4],
            mesh: None,
            gaze: None,
            palms: None,
            people: None,
            gaze_away: false,
            hand: Persist::default(),
        }
    }

    pub fn config(&self) -> &SignalConfig {
        &self.cfg
    }

    /// A new session: baselines and held results start again.
    pub fn reset(&mut self) {
        let models = std::mem::take(&mut self.models);
        *self = FrameAnalyzer::new(self.cfg.clone(), models);
    }

    /// The latest face mesh and when it was made (for the status page and tests).
    pub fn mesh(&self) -> Option<&(u64, FaceMesh)> {
        self.mesh.as_ref()
    }

    /// Runs what is due on `frame` (whose faces BlazeFace found, strongest
    /// first) at stream time `t_ms`, and returns the frame's signals.
    pub fn analyse(
        &mut self,
        frame: &RgbFrame<'_>,
        faces: &[Detection],
        t_ms: u64,
    ) -> Result<FrameSignals, DetectorError> {
        let t = t_ms;
        let Some(face) = faces.first() else {
            self.full_range_if_due(frame, t)?;
            // Nobody: nothing to hold for the next face.
            self.mesh = None;
            self.gaze = None;
            self.palms = None;
            self.talking.clear();
            self.gaze_rule.lost();
            self.gaze_away = false;
            self.hand.reset();
            return Ok(self.signals(t, false));
        };
        let iris_due = self.cfg.gaze && self.runs[IRIS].due(t, self.cfg.iris_hz);
        let lm_due = self.cfg.talking && self.runs[LANDMARKS].due(t, self.cfg.landmarks_hz);
        if iris_due {
            self.runs[IRIS].last = Some(t);
        }
        if (lm_due || iris_due) && self.models.landmarks.is_some() {
            self.runs[LANDMARKS].last = Some(t);
            let mesh = self.landmarks(frame, face)?;
            // A face turned far away is still a face (BlazeFace found it)
            // and its yaw still reads, but the model's own presence is then
            // low and the mouth and eyes are not to be trusted.
            if mesh.presence >= MIN_PRESENCE {
                if self.cfg.talking {
                    self.talking.push(t, mesh.jaw_opening());
                }
                if iris_due && self.models.iris.is_some() {
                    let g = self.iris(frame, &mesh)?;
                    self.gaze = Some((t, g));
                    self.gaze_away = self.gaze_rule.update(t, g);
                }
            } else if iris_due {
                // Eyes not measured: not "away" either (and not held from before).
                self.gaze_rule.lost();
                self.gaze_away = false;
            }
            self.mesh = Some((t, mesh));
        }
        // One heavy model a frame where it can wait: the palm and
        // full-range detectors take the frames the landmarks leave (at
        // 15/s, every other one), so no frame pays for all of them.
        let mut busy = self.runs[LANDMARKS].last == Some(t);
        if !busy && self.models.palm.is_some() && self.runs[PALM].due(t, self.cfg.palm_hz) {
            busy = true;
            self.runs[PALM].last = Some(t);
            let p = self.palms(frame, face)?;
            self.palms = Some((t, p));
        }
        if !busy {
            self.full_range_if_due(frame, t)?;
        }
        let on_face = self.palms.as_ref().is_some_and(|(_, p)| hand_overlaps_face(p, face));
        let hand = self.hand.update(t, on_face, self.cfg.hand_persistence_ms);
        Ok(self.signals(t, hand))
    }

    fn signals(&mut self, t: u64, hand: bool) -> FrameSignals {
        let fresh = |at: u64| t.saturating_sub(at) <= FRESH_MS;
        let mesh = self.mesh.as_ref().filter(|(at, _)| fresh(*at));
        // A full-range count is held for 2.5 of its periods.
        let hold = (2500.0 / self.cfg.full_range_hz.max(0.01)) as u64;
        FrameSignals {
            talking_since: if self.cfg.talking { self.talking.since(t) } else { None },
            gaze_away: self.cfg.gaze && self.gaze_away,
            hand_at_face: hand,
            full_range_faces: self.people.filter(|(at, _)| t.saturating_sub(*at) <= hold).map(|(_, n)| n),
            yaw_deg: mesh.map(|(_, m)| m.yaw_deg()),
            mouth_opening: mesh.map(|(_, m)| m.mouth_opening()),
            jaw_opening: mesh.map(|(_, m)| m.jaw_opening()),
            gaze: self.gaze.filter(|(at, _)| t.saturating_sub(*at) <= 1000).map(|(_, g)| g),
        }
    }

    fn landmarks(&mut self, frame: &RgbFrame<'_>, face: &Detection) -> Result<FaceMesh, DetectorError> {
        let region = facemesh::face_region(face);
        roi::crop(frame, &region, &FACE_CROP, &mut self.face_tensor);
        let Some(net) = self.models.landmarks.as_mut() else {
            return Ok(FaceMesh { points: vec![[0.0; 3]; 468], presence: 0.0 });
        };
        let tensor = &self.face_tensor;
        let out = net.run(|i| i.copy_from_slice(tensor))?;
        Ok(FaceMesh::decode(&out[0], out[1][0], &region))
    }

    fn iris(&mut self, frame: &RgbFrame<'_>, mesh: &FaceMesh) -> Result<Gaze, DetectorError> {
        let mut centres = [Default::default(); 2];
        for (i, c) in centres.iter_mut().enumerate() {
            let region = mesh.eye_region(i);
            let spec = CropSpec { mirror: EYES[i].2, ..EYE_CROP };
            roi::crop(frame, &region, &spec, &mut self.eye_tensor);
            let Some(net) = self.models.iris.as_mut() else { return Ok(Gaze::default()) };
            let tensor = &self.eye_tensor;
            let out = net.run(|t| t.copy_from_slice(tensor))?;
            *c = facemesh::iris_centre(&out[1], &region, spec.mirror);
        }
        Ok(mesh.gaze(centres))
    }

    fn palms(&mut self, frame: &RgbFrame<'_>, face: &Detection) -> Result<Vec<BBox>, DetectorError> {
        let region = palm_region(face);
        let found = self.ssd(frame, &region, &PALM_CROP, &ssd::PALM, PALM)?;
        Ok(found.into_iter().map(|d| d.bbox).collect())
    }

    fn full_range_if_due(&mut self, frame: &RgbFrame<'_>, t: u64) -> Result<(), DetectorError> {
        if self.models.full_range.is_some() && self.runs[FULL].due(t, self.cfg.full_range_hz) {
            self.runs[FULL].last = Some(t);
            self.people = Some((t, self.full_range(frame)?));
        }
        Ok(())
    }

    fn full_range(&mut self, frame: &RgbFrame<'_>) -> Result<usize, DetectorError> {
        let region = Region::whole(frame.width, frame.height);
        Ok(self.ssd(frame, &region, &FULL_CROP, &ssd::FULL_RANGE, FULL)?.len())
    }

    fn ssd(
        &mut self,
        frame: &RgbFrame<'_>,
        region: &Region,
        crop: &CropSpec,
        opts: &SsdOptions,
        which: usize,
    ) -> Result<Vec<ssd::SsdDetection>, DetectorError> {
        roi::crop(frame, region, crop, &mut self.det_tensor);
        let (net, anchors) = match which {
            PALM => (self.models.palm.as_mut(), &self.palm_anchors),
            _ => (self.models.full_range.as_mut(), &self.full_anchors),
        };
        // Callers run only loaded models; none loaded finds nothing.
        let Some(net) = net else { return Ok(Vec::new()) };
        let tensor = &self.det_tensor;
        let out = net.run(|t| t.copy_from_slice(tensor))?;
        Ok(ssd::decode(opts, &out[0], &out[1], anchors, region))
    }
}
