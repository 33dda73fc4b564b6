//! Models on the `tflite` crate (TensorFlow Lite 1.15, vendored and built
//! by cargo): the fallback runtime, always present. The same
//! [`TensorModel`] contract as LiteRT's (see [`crate::tensor`]).

use std::path::{Path, PathBuf};

use tflite::context::ElemKindOf;
use tflite::ops::builtin::BuiltinOpResolver;
use tflite::{FlatBufferModel, Interpreter, InterpreterBuilder};

use crate::detector::DetectorError;
use crate::tensor::{ModelSpec, TensorInfo, TensorModel, read_model_file};

/// One model in a TensorFlow Lite 1.15 interpreter.
pub struct TfliteModel {
    interpreter: Interpreter<'static, BuiltinOpResolver>,
    /// Interpreter tensor indices of the spec's inputs and outputs.
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    spec: ModelSpec,
    path: PathBuf,
}

impl TfliteModel {
    /// Loads `path`, checks its tensors against `spec`; `threads` is
    /// TFLite's thread count.
    pub fn load(path: &Path, threads: usize, spec: &ModelSpec) -> Result<Self, DetectorError> {
        let bytes = read_model_file(path)?;
        let rt = |e: tflite::Error| DetectorError::Runtime { path: path.to_path_buf(), message: e.to_string() };
        let model = FlatBufferModel::build_from_buffer(bytes).map_err(rt)?;
        let builder = InterpreterBuilder::new(model, BuiltinOpResolver::default()).map_err(rt)?;
        // build_with_threads, not set_num_threads: the latter prints to stdout.
        let mut interpreter = builder.build_with_threads(threads.max(1) as i32).map_err(rt)?;
        interpreter.allocate_tensors().map_err(rt)?;

        let info = |idx: i32| {
            let t = interpreter.tensor_info(idx);
            TensorInfo {
                dims: t.as_ref().map(|t| t.dims.clone()).unwrap_or_default(),
                is_f32: t.is_some_and(|t| t.element_kind == <f32 as ElemKindOf>::elem_kind_of()),
            }
        };
        let inputs = interpreter.inputs().to_vec();
        let all_outputs = interpreter.outputs().to_vec();
        let map = spec.check(
            path,
            &inputs.iter().map(|&i| info(i)).collect::<Vec<_>>(),
            &all_outputs.iter().map(|&i| info(i)).collect::<Vec<_>>(),
        )?;
        let outputs = map.iter().map(|&i| all_outputs[i]).collect();
        Ok(Self { interpreter, inputs, outputs, spec: *spec, path: path.to_path_buf() })
    }

    fn err(&self, e: tflite::Error) -> DetectorError {
        self.runtime_error(e.to_string())
    }
}

impl TensorModel for TfliteModel {
    type Input<'a> = &'a mut [f32];
    type Output<'a> = &'a [f32];

    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn backend(&self) -> &'static str {
        "tflite"
    }

    fn input(&mut self, i: usize) -> Result<&mut [f32], DetectorError> {
        let (idx, path) = (self.inputs[i], &self.path);
        self.interpreter
            .tensor_data_mut::<f32>(idx)
            .map_err(|e| DetectorError::Runtime { path: path.clone(), message: e.to_string() })
    }

    fn invoke(&mut self) -> Result<(), DetectorError> {
        self.interpreter.invoke().map_err(|e| self.err(e))
    }

    fn output(&self, i: usize) -> Result<&[f32], DetectorError> {
        self.interpreter.tensor_data::<f32>(self.outputs[i]).map_err(|e| self.err(e))
    }
}
