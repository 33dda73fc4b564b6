//! Pixels to face detections, detections to a focus score.
//!
//! The score is a *review priority* for a human proctor, never a verdict.
//!
//! # Layout
//! - [`image`]: a borrowed RGB frame and cheap statistics of it (is the camera covered?).
//! - [`blazeface`]: MediaPipe's BlazeFace short-range decoding: anchors, boxes,
//!   keypoints, weighted non-maximum suppression, letterboxing. Pure numbers.
//! - [`detector`]: the [`FaceDetector`] trait and its TensorFlow Lite backend.
//!   Loading the model file is the only I/O in this crate.
//! - `litert` (feature `litert`): a second backend on the LiteRT C library
//!   (`libLiteRt.so`, fetched by `scripts/fetch-litert`).
//! - [`pose`]: yaw and pitch in degrees from the six BlazeFace keypoints.
//! - [`score`]: the focus score, a pure function of per-frame signals and time:
//!   weights, per-session baseline, smoothing, persistence and hysteresis.
//!   `docs/SCORING.md` explains it with the numbers.

pub mod blazeface;
pub mod detector;
pub mod image;
#[cfg(feature = "litert")]
pub mod litert;
pub mod pose;
pub mod score;

pub use blazeface::{BBox, Detection, Point};
pub use detector::{DetectorError, FaceDetector, TfliteDetector};
pub use image::{FrameStats, RgbFrame};
#[cfg(feature = "litert")]
pub use litert::LiteRtDetector;
pub use pose::Pose;
pub use score::{Reason, ScoreConfig, ScoreOutput, Scorer, Signals};
