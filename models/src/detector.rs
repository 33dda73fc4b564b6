//! The [`FaceDetector`] trait and its TensorFlow Lite backend.

use std::path::{Path, PathBuf};

use tflite::ops::builtin::BuiltinOpResolver;
use tflite::{FlatBufferModel, Interpreter, InterpreterBuilder};

use crate::blazeface::{self, Anchor, Detection, INPUT_SIZE, NUM_ANCHORS, NUM_COORDS};
use crate::image::RgbFrame;

/// Turns one frame into the faces in it.
pub trait FaceDetector: Send {
    /// Detections in frame pixels, strongest first.
    fn detect(&mut self, frame: &RgbFrame<'_>) -> Result<Vec<Detection>, DetectorError>;
    /// A short name for logs and metrics ("tflite", "litert").
    fn backend(&self) -> &'static str;
}

/// What can go wrong loading or running a model. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("model {path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("model {path}: not a TensorFlow Lite flatbuffer")]
    NotAModel { path: PathBuf },
    #[error("model {path}: {what} has shape {got:?}, expected {expected:?} (BlazeFace short range)")]
    WrongShape { path: PathBuf, what: &'static str, got: Vec<usize>, expected: Vec<usize> },
    #[error("model {path}: {message}")]
    Runtime { path: PathBuf, message: String },
}

const EXPECTED_INPUT: [usize; 4] = [1, INPUT_SIZE, INPUT_SIZE, 3];
const EXPECTED_REGRESSORS: [usize; 3] = [1, NUM_ANCHORS, NUM_COORDS];
const EXPECTED_LOGITS: [usize; 3] = [1, NUM_ANCHORS, 1];

/// BlazeFace short-range on the `tflite` crate (TensorFlow Lite 1.15, vendored).
pub struct TfliteDetector {
    path: PathBuf,
    interpreter: Interpreter<'static, BuiltinOpResolver>,
    input: i32,
    regressors: i32,
    logits: i32,
    anchors: Vec<Anchor>,
}

impl TfliteDetector {
    /// Loads and checks the model: a valid flatbuffer whose tensors have
    /// BlazeFace short-range's shapes. `threads` is TFLite's thread count.
    pub fn load(path: &Path, threads: usize) -> Result<Self, DetectorError> {
        let path = path.to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| DetectorError::Read { path: path.clone(), source })?;
        // Verify the flatbuffer first: TFLite 1.15's builder trusts its input.
        if tflite::model::Model::from_buffer(&bytes).is_none() {
            return Err(DetectorError::NotAModel { path });
        }
        let rt = |e: tflite::Error| DetectorError::Runtime { path: path.clone(), message: e.to_string() };
        let model = FlatBufferModel::build_from_buffer(bytes).map_err(rt)?;
        let builder = InterpreterBuilder::new(model, BuiltinOpResolver::default()).map_err(rt)?;
        // build_with_threads, not set_num_threads: the latter prints to stdout.
        let mut interpreter = builder.build_with_threads(threads.max(1) as i32).map_err(rt)?;
        interpreter.allocate_tensors().map_err(rt)?;

        let dims = |idx: i32| interpreter.tensor_info(idx).map(|t| t.dims).unwrap_or_default();
        let inputs = interpreter.inputs().to_vec();
        let outputs = interpreter.outputs().to_vec();
        let input = *inputs.first().ok_or_else(|| DetectorError::WrongShape {
            path: path.clone(),
            what: "input",
            got: vec![],
            expected: EXPECTED_INPUT.to_vec(),
        })?;
        if inputs.len() != 1 || dims(input) != EXPECTED_INPUT {
            return Err(DetectorError::WrongShape {
                path,
                what: "input",
                got: dims(input),
                expected: EXPECTED_INPUT.to_vec(),
            });
        }
        // The two outputs are told apart by shape, not by their order.
        let find = |want: &[usize]| outputs.iter().copied().find(|&o| dims(o) == want);
        let (Some(regressors), Some(logits)) = (find(&EXPECTED_REGRESSORS), find(&EXPECTED_LOGITS)) else {
            let got: Vec<usize> = outputs.iter().flat_map(|&o| dims(o)).collect();
            return Err(DetectorError::WrongShape {
                path,
                what: "outputs",
                got,
                expected: [&EXPECTED_REGRESSORS[..], &EXPECTED_LOGITS[..]].concat(),
            });
        };
        Ok(Self { path, interpreter, input, regressors, logits, anchors: blazeface::anchors() })
    }

    /// Runs the model on an already letterboxed input tensor and returns the
    /// raw regressors and logits (for comparing runtimes).
    pub fn run_raw(&mut self, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>), DetectorError> {
        self.invoke(input)?;
        Ok((self.output(self.regressors)?.to_vec(), self.output(self.logits)?.to_vec()))
    }

    fn invoke(&mut self, input: &[f32]) -> Result<(), DetectorError> {
        let path = &self.path;
        let rt = |e: tflite::Error| DetectorError::Runtime { path: path.clone(), message: e.to_string() };
        self.interpreter.tensor_data_mut::<f32>(self.input).map_err(rt)?.copy_from_slice(input);
        self.interpreter.invoke().map_err(rt)
    }

    fn output(&self, idx: i32) -> Result<&[f32], DetectorError> {
        self.interpreter
            .tensor_data::<f32>(idx)
            .map_err(|e| DetectorError::Runtime { path: self.path.clone(), message: e.to_string() })
    }
}

impl FaceDetector for TfliteDetector {
    fn detect(&mut self, frame: &RgbFrame<'_>) -> Result<Vec<Detection>, DetectorError> {
        let lb = {
            let path = &self.path;
            let input = self
                .interpreter
                .tensor_data_mut::<f32>(self.input)
                .map_err(|e| DetectorError::Runtime { path: path.clone(), message: e.to_string() })?;
            blazeface::preprocess(frame, input)
        };
        let path = &self.path;
        self.interpreter.invoke().map_err(|e| DetectorError::Runtime { path: path.clone(), message: e.to_string() })?;
        let reg = self.output(self.regressors)?;
        let logits = self.output(self.logits)?;
        Ok(blazeface::decode(reg, logits, &self.anchors, &lb))
    }

    fn backend(&self) -> &'static str {
        "tflite"
    }
}
