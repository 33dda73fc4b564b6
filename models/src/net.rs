//! The second-stage models (face landmarks, iris, palm, full-range faces)
//! behind one object-safe runner, [`Net`], on whichever backend runs
//! BlazeFace, and their tensor specs.
//!
//! [`TensorModel`] has borrowed input and output guards, so it is not
//! object-safe; [`Net`] copies each output into a buffer of its own after
//! every run (at most 145 kB, a few times a second) and owns the model, so
//! the frame analyzer holds any backend's models the same way.

use std::path::Path;

use crate::detector::{Backend, DetectorError};
use crate::litert::{LiteRt, LiteRtModel};
use crate::tensor::{ModelSpec, TensorModel};
use crate::tflite_model::TfliteModel;

/// `face_landmark.tflite`: a 192x192 face crop in [0, 1] -> 468 (x, y, z)
/// points in crop pixels and a face-presence logit.
pub const FACE_LANDMARK_SPEC: ModelSpec = ModelSpec {
    name: "face landmarks (468 points)",
    inputs: &[&[1, 192, 192, 3]],
    outputs: &[&[1, 1, 1, 1404], &[1, 1, 1, 1]],
};
/// `iris_landmark.tflite`: a 64x64 eye crop in [0, 1] -> 71 eye contour
/// points and 5 iris points (centre first), (x, y, z) in crop pixels.
pub const IRIS_SPEC: ModelSpec =
    ModelSpec { name: "iris landmarks", inputs: &[&[1, 64, 64, 3]], outputs: &[&[1, 213], &[1, 15]] };
/// `palm_detection_lite.tflite`: 192x192 in [0, 1] -> 2016 anchors x
/// (box + 7 keypoints) and 2016 logits.
pub const PALM_SPEC: ModelSpec =
    ModelSpec { name: "palm detection lite", inputs: &[&[1, 192, 192, 3]], outputs: &[&[1, 2016, 18], &[1, 2016, 1]] };
/// `face_detection_full_range.tflite`: 192x192 in [-1, 1] -> 2304 anchors
/// x (box + 6 keypoints) and 2304 logits.
pub const FULL_RANGE_SPEC: ModelSpec =
    ModelSpec { name: "BlazeFace full range", inputs: &[&[1, 192, 192, 3]], outputs: &[&[1, 2304, 16], &[1, 2304, 1]] };

/// What [`Net`] needs of a model: fill the input, run, copy the outputs.
trait Runner: Send {
    fn backend(&self) -> &'static str;
    fn run(&mut self, fill: &mut dyn FnMut(&mut [f32]), out: &mut [Vec<f32>]) -> Result<(), DetectorError>;
}

impl<M: TensorModel> Runner for M {
    fn backend(&self) -> &'static str {
        TensorModel::backend(self)
    }

    fn run(&mut self, fill: &mut dyn FnMut(&mut [f32]), out: &mut [Vec<f32>]) -> Result<(), DetectorError> {
        fill(&mut self.input(0)?);
        self.invoke()?;
        for (i, o) in out.iter_mut().enumerate() {
            o.copy_from_slice(&self.output(i)?);
        }
        Ok(())
    }
}

/// One loaded model on any backend, with its outputs kept after each run.
pub struct Net {
    runner: Box<dyn Runner>,
    spec: ModelSpec,
    outputs: Vec<Vec<f32>>,
}

impl Net {
    /// Wraps a loaded model.
    pub fn new<M: TensorModel + 'static>(model: M) -> Self {
        let spec = *model.spec();
        let outputs = (0..spec.outputs.len()).map(|i| vec![0.0; spec.output_len(i)]).collect();
        Net { runner: Box::new(model), spec, outputs }
    }

    /// Loads `path` against `spec` on `backend` (`Auto` is not resolved
    /// here: pass what BlazeFace's load chose, see
    /// [`crate::BackendChoice`]), with `threads` threads.
    pub fn load(
        backend: Backend,
        litert_lib: Option<&Path>,
        path: &Path,
        threads: usize,
        spec: &ModelSpec,
    ) -> Result<Self, DetectorError> {
        match backend {
            Backend::LiteRt => Ok(Net::new(LiteRtModel::load(LiteRt::load(litert_lib)?, path, threads, spec)?)),
            Backend::Tflite | Backend::Auto => Ok(Net::new(TfliteModel::load(path, threads, spec)?)),
        }
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn backend(&self) -> &'static str {
        self.runner.backend()
    }

    /// Fills the input with `fill`, runs the model and returns its outputs
    /// in the spec's order.
    pub fn run(&mut self, mut fill: impl FnMut(&mut [f32])) -> Result<&[Vec<f32>], DetectorError> {
        self.runner.run(&mut fill, &mut self.outputs)?;
        Ok(&self.outputs)
    }
}
