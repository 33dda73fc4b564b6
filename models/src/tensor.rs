//! What every model of this crate needs from a runtime, whatever the
//! backend: load a `.tflite` file, check its tensors against a
//! [`ModelSpec`], write the f32 input, invoke, read the f32 outputs.
//!
//! [`TensorModel`] is that contract; [`crate::TfliteModel`] and
//! [`crate::LiteRtModel`] implement it, and the face detector
//! ([`crate::BlazeFace`]) sits on it. A second model (landmarks, iris, …)
//! is a new [`ModelSpec`] and its own pre- and post-processing, with no new
//! runtime code.
//!
//! Promises of both implementations:
//! - the file is verified as a TensorFlow Lite flatbuffer before the runtime
//!   sees it ([`DetectorError::NotAModel`]);
//! - inputs are matched to the spec by position, outputs by shape (a model
//!   may list its outputs in any order); every tensor must be float32 with
//!   exactly the spec's shape, else [`DetectorError::WrongShape`] names the
//!   file, the shapes found and the shapes expected;
//! - after loading, running does not allocate.

use std::ops::{Deref, DerefMut};
use std::path::Path;

use crate::detector::DetectorError;

/// The tensors a model must have.
#[derive(Clone, Copy, Debug)]
pub struct ModelSpec {
    /// Named in errors, e.g. "BlazeFace short range".
    pub name: &'static str,
    /// Input shapes, in the model's order.
    pub inputs: &'static [&'static [usize]],
    /// Output shapes; the model's outputs are found by shape, and
    /// [`TensorModel::output`]'s index is the index in this list.
    pub outputs: &'static [&'static [usize]],
}

/// A tensor as a runtime describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub dims: Vec<usize>,
    pub is_f32: bool,
}

impl ModelSpec {
    /// Checks the tensors found against the spec. Returns, for each spec
    /// output, the index of the model's output that has its shape.
    pub fn check(
        &self,
        path: &Path,
        inputs: &[TensorInfo],
        outputs: &[TensorInfo],
    ) -> Result<Vec<usize>, DetectorError> {
        let flat = |t: &[TensorInfo]| t.iter().flat_map(|t| t.dims.iter().copied()).collect::<Vec<_>>();
        let inputs_ok = inputs.len() == self.inputs.len()
            && inputs.iter().zip(self.inputs).all(|(t, want)| t.is_f32 && t.dims == *want);
        if !inputs_ok {
            return Err(DetectorError::WrongShape {
                path: path.to_path_buf(),
                model: self.name,
                what: "input",
                got: flat(inputs),
                expected: self.inputs.concat(),
            });
        }
        let mut used = vec![false; outputs.len()];
        let mut map = Vec::with_capacity(self.outputs.len());
        for want in self.outputs {
            let found = outputs.iter().enumerate().position(|(i, t)| !used[i] && t.is_f32 && t.dims == *want);
            match found {
                Some(i) => {
                    used[i] = true;
                    map.push(i);
                }
                None => {
                    return Err(DetectorError::WrongShape {
                        path: path.to_path_buf(),
                        model: self.name,
                        what: "outputs",
                        got: flat(outputs),
                        expected: self.outputs.concat(),
                    });
                }
            }
        }
        Ok(map)
    }

    /// Number of f32 values of input `i`.
    pub fn input_len(&self, i: usize) -> usize {
        self.inputs[i].iter().product()
    }

    /// Number of f32 values of output `i`.
    pub fn output_len(&self, i: usize) -> usize {
        self.outputs[i].iter().product()
    }
}

/// Reads a model file and verifies it is a TensorFlow Lite flatbuffer.
pub(crate) fn read_model_file(path: &Path) -> Result<Vec<u8>, DetectorError> {
    let bytes = std::fs::read(path).map_err(|source| DetectorError::Read { path: path.to_path_buf(), source })?;
    // Verify the flatbuffer first: TFLite 1.15's builder trusts its input,
    // and both backends then refuse the same files with the same error.
    if tflite::model::Model::from_buffer(&bytes).is_none() {
        return Err(DetectorError::NotAModel { path: path.to_path_buf() });
    }
    Ok(bytes)
}

/// One loaded model on one runtime: f32 tensors in, f32 tensors out.
pub trait TensorModel: Send {
    /// Input `i`, writable until dropped.
    type Input<'a>: DerefMut<Target = [f32]>
    where
        Self: 'a;
    /// Output `i`, readable until dropped. Several may be held at once.
    type Output<'a>: Deref<Target = [f32]>
    where
        Self: 'a;

    /// The spec the model was checked against.
    fn spec(&self) -> &ModelSpec;
    /// The model file.
    fn path(&self) -> &Path;
    /// A short name for logs and metrics ("tflite", "litert").
    fn backend(&self) -> &'static str;
    /// Input `i` of the spec, exactly its length.
    fn input(&mut self, i: usize) -> Result<Self::Input<'_>, DetectorError>;
    /// Runs the model on its inputs.
    fn invoke(&mut self) -> Result<(), DetectorError>;
    /// Output `i` of the spec, exactly its length.
    fn output(&self, i: usize) -> Result<Self::Output<'_>, DetectorError>;

    /// An error of this model's runtime.
    fn runtime_error(&self, message: String) -> DetectorError {
        DetectorError::Runtime { path: self.path().to_path_buf(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ModelSpec =
        ModelSpec { name: "test model", inputs: &[&[1, 4, 4, 3]], outputs: &[&[1, 10, 2], &[1, 10, 1]] };

    fn t(dims: &[usize]) -> TensorInfo {
        TensorInfo { dims: dims.to_vec(), is_f32: true }
    }

    #[test]
    fn outputs_are_found_by_shape_in_any_order() {
        let map = SPEC.check(Path::new("m"), &[t(&[1, 4, 4, 3])], &[t(&[1, 10, 1]), t(&[1, 10, 2])]).unwrap();
        assert_eq!(map, vec![1, 0]);
    }

    #[test]
    fn a_wrong_input_names_the_file_both_shapes_and_the_model() {
        let err = SPEC.check(Path::new("x.tflite"), &[t(&[1, 8, 8, 3])], &[]).unwrap_err().to_string();
        assert!(err.contains("x.tflite") && err.contains("[1, 8, 8, 3]") && err.contains("[1, 4, 4, 3]"), "{err}");
        assert!(err.contains("test model"), "{err}");
    }

    #[test]
    fn a_tensor_that_is_not_f32_does_not_match() {
        let ints = TensorInfo { dims: vec![1, 4, 4, 3], is_f32: false };
        assert!(SPEC.check(Path::new("m"), &[ints], &[t(&[1, 10, 2]), t(&[1, 10, 1])]).is_err());
    }

    #[test]
    fn two_outputs_of_one_shape_are_matched_once_each() {
        const TWO: ModelSpec = ModelSpec { name: "two", inputs: &[], outputs: &[&[1, 1], &[1, 1]] };
        assert_eq!(TWO.check(Path::new("m"), &[], &[t(&[1, 1]), t(&[1, 1])]).unwrap(), vec![0, 1]);
        assert!(TWO.check(Path::new("m"), &[], &[t(&[1, 1])]).is_err());
    }
}
