//! The [`FaceDetector`] trait, BlazeFace short-range on any
//! [`TensorModel`] ([`BlazeFace`]), and the choice of backend
//! ([`Backend`], [`load_face_detector`]).
//!
//! Both backends run the same model file with the same
//! [`blazeface::preprocess`] and [`blazeface::decode`] around it, so they
//! give the same detections (`models/tests/litert.rs` checks it to 1e-3).

use std::path::{Path, PathBuf};

use crate::blazeface::{self, Anchor, Detection, INPUT_SIZE, NUM_ANCHORS, NUM_COORDS};
use crate::image::RgbFrame;
use crate::litert::{LibraryError, LiteRt, LiteRtModel};
use crate::tensor::{ModelSpec, TensorModel};
use crate::tflite_model::TfliteModel;

/// Turns one frame into the faces in it.
pub trait FaceDetector: Send {
    /// Detections in frame pixels, strongest first.
    fn detect(&mut self, frame: &RgbFrame<'_>) -> Result<Vec<Detection>, DetectorError>;
    /// A short name for logs and metrics ("tflite", "litert").
    fn backend(&self) -> &'static str;
}

/// What can go wrong loading or running a model. Each variant names the file
/// (or, for the LiteRT library, the library).
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("model {path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("model {path}: not a TensorFlow Lite flatbuffer")]
    NotAModel { path: PathBuf },
    #[error("model {path}: {what} has shape {got:?}, expected {expected:?} ({model})")]
    WrongShape { path: PathBuf, model: &'static str, what: &'static str, got: Vec<usize>, expected: Vec<usize> },
    #[error("model {path}: {message}")]
    Runtime { path: PathBuf, message: String },
    #[error("{0}")]
    Library(#[from] LibraryError),
}

/// BlazeFace short-range's tensors: a 128x128 RGB input; 896 anchors x 16
/// regressors and 896 logits out.
pub const BLAZEFACE_SPEC: ModelSpec = ModelSpec {
    name: "BlazeFace short range",
    inputs: &[&[1, INPUT_SIZE, INPUT_SIZE, 3]],
    outputs: &[&[1, NUM_ANCHORS, NUM_COORDS], &[1, NUM_ANCHORS, 1]],
};
const REGRESSORS: usize = 0;
const LOGITS: usize = 1;

/// BlazeFace short-range on a runtime's [`TensorModel`].
pub struct BlazeFace<M> {
    model: M,
    anchors: Vec<Anchor>,
}

/// BlazeFace on the `tflite` crate (TensorFlow Lite 1.15, vendored).
pub type TfliteDetector = BlazeFace<TfliteModel>;
/// BlazeFace on LiteRT's CPU accelerator (XNNPACK).
pub type LiteRtDetector = BlazeFace<LiteRtModel>;

impl<M: TensorModel> BlazeFace<M> {
    /// Wraps a model loaded against [`BLAZEFACE_SPEC`].
    pub fn new(model: M) -> Self {
        Self { model, anchors: blazeface::anchors() }
    }

    /// The model underneath (for benchmarks: bare inference).
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// Runs the model on whatever its input holds: bare inference.
    pub fn invoke(&mut self) -> Result<(), DetectorError> {
        self.model.invoke()
    }

    /// Runs the model on an already letterboxed input tensor and returns the
    /// raw regressors and logits (for comparing runtimes).
    pub fn run_raw(&mut self, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>), DetectorError> {
        self.model.input(0)?.copy_from_slice(input);
        self.model.invoke()?;
        Ok((self.model.output(REGRESSORS)?.to_vec(), self.model.output(LOGITS)?.to_vec()))
    }
}

impl TfliteDetector {
    /// Loads and checks the model; `threads` is TFLite's thread count.
    pub fn load(path: &Path, threads: usize) -> Result<Self, DetectorError> {
        Ok(Self::new(TfliteModel::load(path, threads, &BLAZEFACE_SPEC)?))
    }
}

impl LiteRtDetector {
    /// Loads and checks the model on the LiteRT library found where
    /// [`LiteRt::load`] looks, with `threads` XNNPACK threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self, DetectorError> {
        Self::load_on(LiteRt::load(None)?, path, threads)
    }

    /// The same on a given library.
    pub fn load_on(lib: LiteRt, path: &Path, threads: usize) -> Result<Self, DetectorError> {
        Ok(Self::new(LiteRtModel::load(lib, path, threads, &BLAZEFACE_SPEC)?))
    }
}

impl<M: TensorModel> FaceDetector for BlazeFace<M> {
    fn detect(&mut self, frame: &RgbFrame<'_>) -> Result<Vec<Detection>, DetectorError> {
        let lb = blazeface::preprocess(frame, &mut self.model.input(0)?);
        self.model.invoke()?;
        // Both outputs held at once: decode reads them together.
        let (reg, logits) = (self.model.output(REGRESSORS)?, self.model.output(LOGITS)?);
        Ok(blazeface::decode(&reg, &logits, &self.anchors, &lb))
    }

    fn backend(&self) -> &'static str {
        self.model.backend()
    }
}

/// Which runtime runs the models (the agent's `model.backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// LiteRT when its library loads, else tflite.
    #[default]
    Auto,
    Tflite,
    LiteRt,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "tflite" => Ok(Self::Tflite),
            "litert" => Ok(Self::LiteRt),
            other => Err(format!("{other:?} is not a backend; use \"auto\", \"litert\" or \"tflite\"")),
        }
    }
}

/// What [`load_face_detector`] chose, for logs, metrics and `invigil check`.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendChoice {
    /// "litert" or "tflite".
    pub backend: &'static str,
    /// The LiteRT library in use.
    pub library: Option<PathBuf>,
    /// Why `auto` did not use LiteRT.
    pub fallback: Option<String>,
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.library, &self.fallback) {
            (Some(lib), _) => write!(f, "{} ({})", self.backend, lib.display()),
            (None, Some(why)) => write!(f, "{} (LiteRT not used: {why})", self.backend),
            (None, None) => write!(f, "{}", self.backend),
        }
    }
}

/// Loads BlazeFace on `backend`. `Auto` takes LiteRT when its library
/// (`litert_lib`, else [`LiteRt::load`]'s places) loads and compiles the
/// model, else tflite, saying why; a model file at fault is an error on
/// either backend.
pub fn load_face_detector(
    backend: Backend,
    path: &Path,
    threads: usize,
    litert_lib: Option<&Path>,
) -> Result<(Box<dyn FaceDetector>, BackendChoice), DetectorError> {
    let tflite = |fallback: Option<String>| -> Result<(Box<dyn FaceDetector>, BackendChoice), DetectorError> {
        let det = TfliteDetector::load(path, threads)?;
        Ok((Box::new(det), BackendChoice { backend: "tflite", library: None, fallback }))
    };
    let litert = |lib: LiteRt| -> Result<(Box<dyn FaceDetector>, BackendChoice), DetectorError> {
        let det = LiteRtDetector::load_on(lib, path, threads)?;
        Ok((
            Box::new(det),
            BackendChoice { backend: "litert", library: Some(lib.path().to_path_buf()), fallback: None },
        ))
    };
    match backend {
        Backend::Tflite => tflite(None),
        Backend::LiteRt => litert(LiteRt::load(litert_lib)?),
        Backend::Auto => match LiteRt::load(litert_lib) {
            Err(e) => tflite(Some(e.to_string())),
            Ok(lib) => match litert(lib) {
                Err(DetectorError::Runtime { message, .. }) => tflite(Some(message)),
                other => other,
            },
        },
    }
}
