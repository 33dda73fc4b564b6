//! Pixels to face detections, detections to a focus score.
//!
//! The score is a *review priority* for a human proctor, never a verdict.
//!
//! # Layout
//! - [`image`]: a borrowed RGB frame and cheap statistics of it (is the camera covered?).
//! - [`blazeface`]: MediaPipe's BlazeFace short-range decoding: anchors, boxes,
//!   keypoints, weighted non-maximum suppression, letterboxing. Pure numbers.
//! - [`tensor`]: the [`TensorModel`] contract every runtime meets (load a
//!   `.tflite`, check its tensors against a [`ModelSpec`], f32 in, invoke,
//!   f32 out), implemented by [`tflite_model`] (TensorFlow Lite 1.15, built
//!   in) and [`litert`] (LiteRT 2.1.4's `libLiteRt.so`, loaded at run time).
//! - [`detector`]: the [`FaceDetector`] trait, BlazeFace on any
//!   [`TensorModel`], and the backend choice ([`Backend`]: `auto` takes
//!   LiteRT when its library loads, else tflite).
//! - [`pose`]: yaw and pitch in degrees from the six BlazeFace keypoints.
//! - [`roi`]: rotated square regions cropped into tensors, and back.
//! - [`net`]: the second-stage models (face landmarks, iris, palm,
//!   full-range faces) on any backend behind one runner, [`Net`].
//! - [`facemesh`], [`ssd`]: their decoding (468 points and the iris;
//!   SSD anchors and boxes), MediaPipe's, pure numbers.
//! - [`signals`]: the temporal rules of talking, gaze and hand at the face.
//! - [`frame`]: [`FrameAnalyzer`], which runs the second-stage models at
//!   their own rates on the face region and yields a frame's [`FrameSignals`].
//! - [`score`]: the focus score, a pure function of per-frame signals and time:
//!   weights, per-session baseline, smoothing, persistence and hysteresis.
//!   `docs/SCORING.md` explains it with the numbers.
//!
//! Loading model files and the LiteRT library is the only I/O in this crate.

pub mod blazeface;
pub mod detector;
pub mod facemesh;
pub mod frame;
pub mod image;
pub mod litert;
pub mod net;
pub mod pose;
pub mod roi;
pub mod score;
pub mod signals;
pub mod ssd;
pub mod tensor;
pub mod tflite_model;

pub use blazeface::{BBox, Detection, Point};
pub use detector::{
    BLAZEFACE_SPEC, Backend, BackendChoice, BlazeFace, DetectorError, FaceDetector, LiteRtDetector, TfliteDetector,
    load_face_detector,
};
pub use frame::{FrameAnalyzer, FrameSignals, SignalConfig, SignalModels};
pub use image::{FrameStats, RgbFrame};
pub use litert::{LibraryError, LiteRt, LiteRtModel};
pub use net::Net;
pub use pose::Pose;
pub use score::{Reason, ScoreConfig, ScoreOutput, Scorer, Signals};
pub use tensor::{ModelSpec, TensorModel};
pub use tflite_model::TfliteModel;
