//! BlazeFace short-range on LiteRT (feature `litert`), the runtime that
//! succeeds TensorFlow Lite: its CPU accelerator runs the model through
//! XNNPACK, 1.5x as fast as the vendored TFLite 1.15 with one thread and
//! 2.7x with two on x86-64 (`docs/PERFORMANCE.md`, "Models").
//!
//! It calls the LiteRT C API of `libLiteRt.so` from the PyPI wheel
//! `ai-edge-litert==2.1.4` (`scripts/fetch-litert`) through the few
//! declarations in [`ffi`], written from LiteRT 2.1.4's `litert/c/*.h`. The
//! library is linked dynamically (`build.rs`); it must be 2.1.4: the 2.3.0
//! library is not ABI-compatible.
//!
//! Same contract as [`TfliteDetector`](crate::TfliteDetector): the same
//! [`DetectorError`]s and shape checks, and [`blazeface::preprocess`] /
//! [`blazeface::decode`] around the model, so both backends give the same
//! detections (`models/tests/litert.rs` checks it to 1e-3).

use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr;

use crate::blazeface::{self, Anchor, Detection, INPUT_SIZE, NUM_ANCHORS, NUM_COORDS};
use crate::detector::{DetectorError, FaceDetector};
use crate::image::RgbFrame;

/// The part of LiteRT 2.1.4's C API this backend uses. Handles are opaque
/// pointers; the two structs are laid out as the headers' static asserts say.
#[allow(non_camel_case_types, non_upper_case_globals)]
pub mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    pub type LiteRtStatus = c_int;
    pub const kLiteRtStatusOk: LiteRtStatus = 0;

    pub type LiteRtEnvironment = *mut c_void;
    pub type LiteRtModel = *mut c_void;
    pub type LiteRtSignature = *mut c_void;
    pub type LiteRtTensor = *mut c_void;
    pub type LiteRtOptions = *mut c_void;
    pub type LiteRtOpaqueOptions = *mut c_void;
    pub type LiteRtCompiledModel = *mut c_void;
    pub type LiteRtTensorBuffer = *mut c_void;
    pub type LiteRtTensorBufferRequirements = *mut c_void;
    pub type LiteRtParamIndex = usize;

    pub const kLiteRtHwAcceleratorCpu: c_int = 1;
    pub const kLiteRtElementTypeFloat32: c_int = 1;
    pub const kLiteRtTensorBufferLockModeRead: c_int = 0;
    pub const kLiteRtTensorBufferLockModeWrite: c_int = 1;
    /// Identifier of the CPU (XNNPACK) accelerator's opaque options; their
    /// payload is a NUL-terminated TOML string such as `num_threads = 2`.
    pub const CPU_OPTIONS_IDENTIFIER: &std::ffi::CStr = c"xnnpack";

    /// `LiteRtLayout`: `unsigned rank : 7; bool has_strides : 1;` share the
    /// first 4 bytes; 68 bytes in all.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct LiteRtLayout {
        pub rank_and_flags: u32,
        pub dimensions: [i32; 8],
        pub strides: [u32; 8],
    }

    impl LiteRtLayout {
        pub fn rank(&self) -> usize {
            (self.rank_and_flags & 0x7f) as usize
        }
    }

    /// `LiteRtRankedTensorType`: 72 bytes.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct LiteRtRankedTensorType {
        pub element_type: c_int,
        pub layout: LiteRtLayout,
    }

    pub const kLiteRtEnvOptionTagAutoRegisterAccelerators: c_int = 24;
    pub const kLiteRtAnyTypeInt: c_int = 2;

    /// `LiteRtAny` holding an integer (the union's `int_value`): 16 bytes.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct LiteRtAnyInt {
        pub ty: c_int,
        pub int_value: i64,
    }

    /// `LiteRtEnvOption`: a tag and a value, 24 bytes.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct LiteRtEnvOption {
        pub tag: c_int,
        pub value: LiteRtAnyInt,
    }

    const _: () = assert!(std::mem::size_of::<LiteRtEnvOption>() == 24);
    const _: () = assert!(std::mem::size_of::<LiteRtLayout>() == 68);
    const _: () = assert!(std::mem::size_of::<LiteRtRankedTensorType>() == 72);

    pub type PayloadDestructor = Option<unsafe extern "C" fn(*mut c_void)>;

    // Linked by build.rs (`-l LiteRt` from LITERT_LIB_DIR).
    unsafe extern "C" {
        pub fn LiteRtCreateEnvironment(
            num_options: c_int,
            options: *const LiteRtEnvOption,
            environment: *mut LiteRtEnvironment,
        ) -> LiteRtStatus;
        pub fn LiteRtDestroyEnvironment(environment: LiteRtEnvironment);

        pub fn LiteRtCreateModelFromBuffer(addr: *const c_void, size: usize, model: *mut LiteRtModel) -> LiteRtStatus;
        pub fn LiteRtDestroyModel(model: LiteRtModel);
        pub fn LiteRtGetNumModelSignatures(model: LiteRtModel, num: *mut LiteRtParamIndex) -> LiteRtStatus;
        pub fn LiteRtGetModelSignature(
            model: LiteRtModel,
            index: LiteRtParamIndex,
            signature: *mut LiteRtSignature,
        ) -> LiteRtStatus;
        pub fn LiteRtGetNumSignatureInputs(signature: LiteRtSignature, num: *mut LiteRtParamIndex) -> LiteRtStatus;
        pub fn LiteRtGetSignatureInputTensorByIndex(
            signature: LiteRtSignature,
            index: LiteRtParamIndex,
            tensor: *mut LiteRtTensor,
        ) -> LiteRtStatus;
        pub fn LiteRtGetNumSignatureOutputs(signature: LiteRtSignature, num: *mut LiteRtParamIndex) -> LiteRtStatus;
        pub fn LiteRtGetSignatureOutputTensorByIndex(
            signature: LiteRtSignature,
            index: LiteRtParamIndex,
            tensor: *mut LiteRtTensor,
        ) -> LiteRtStatus;
        pub fn LiteRtGetRankedTensorType(tensor: LiteRtTensor, ty: *mut LiteRtRankedTensorType) -> LiteRtStatus;

        pub fn LiteRtCreateOptions(options: *mut LiteRtOptions) -> LiteRtStatus;
        pub fn LiteRtDestroyOptions(options: LiteRtOptions);
        pub fn LiteRtSetOptionsHardwareAccelerators(options: LiteRtOptions, accelerators: c_int) -> LiteRtStatus;
        /// Takes ownership of `opaque` when it succeeds.
        pub fn LiteRtAddOpaqueOptions(options: LiteRtOptions, opaque: LiteRtOpaqueOptions) -> LiteRtStatus;
        pub fn LiteRtCreateOpaqueOptions(
            identifier: *const c_char,
            payload: *mut c_void,
            destructor: PayloadDestructor,
            options: *mut LiteRtOpaqueOptions,
        ) -> LiteRtStatus;
        pub fn LiteRtDestroyOpaqueOptions(options: LiteRtOpaqueOptions);

        pub fn LiteRtCreateCompiledModel(
            environment: LiteRtEnvironment,
            model: LiteRtModel,
            options: LiteRtOptions,
            compiled: *mut LiteRtCompiledModel,
        ) -> LiteRtStatus;
        pub fn LiteRtDestroyCompiledModel(compiled: LiteRtCompiledModel);
        pub fn LiteRtGetCompiledModelInputBufferRequirements(
            compiled: LiteRtCompiledModel,
            signature: LiteRtParamIndex,
            input: LiteRtParamIndex,
            requirements: *mut LiteRtTensorBufferRequirements,
        ) -> LiteRtStatus;
        pub fn LiteRtGetCompiledModelOutputBufferRequirements(
            compiled: LiteRtCompiledModel,
            signature: LiteRtParamIndex,
            output: LiteRtParamIndex,
            requirements: *mut LiteRtTensorBufferRequirements,
        ) -> LiteRtStatus;
        pub fn LiteRtRunCompiledModel(
            compiled: LiteRtCompiledModel,
            signature: LiteRtParamIndex,
            num_inputs: usize,
            inputs: *mut LiteRtTensorBuffer,
            num_outputs: usize,
            outputs: *mut LiteRtTensorBuffer,
        ) -> LiteRtStatus;

        pub fn LiteRtCreateManagedTensorBufferFromRequirements(
            environment: LiteRtEnvironment,
            ty: *const LiteRtRankedTensorType,
            requirements: LiteRtTensorBufferRequirements,
            buffer: *mut LiteRtTensorBuffer,
        ) -> LiteRtStatus;
        pub fn LiteRtDestroyTensorBuffer(buffer: LiteRtTensorBuffer);
        pub fn LiteRtGetTensorBufferSize(buffer: LiteRtTensorBuffer, size: *mut usize) -> LiteRtStatus;
        pub fn LiteRtLockTensorBuffer(buffer: LiteRtTensorBuffer, addr: *mut *mut c_void, mode: c_int) -> LiteRtStatus;
        pub fn LiteRtUnlockTensorBuffer(buffer: LiteRtTensorBuffer) -> LiteRtStatus;
    }

    /// LiteRT's name for a status (the library does not export `LiteRtGetStatusString`).
    pub fn status_name(status: LiteRtStatus) -> &'static str {
        match status {
            0 => "ok",
            1 => "invalid argument",
            2 => "memory allocation failure",
            3 => "runtime failure",
            4 => "missing input tensor",
            5 => "unsupported",
            6 => "not found",
            7 => "timeout expired",
            8 => "wrong version",
            10 => "already exists",
            100 => "cancelled",
            500 => "file I/O",
            501 => "invalid flatbuffer",
            502 => "dynamic loading",
            503 => "serialization",
            504 => "compilation",
            _ => "unknown error",
        }
    }
}

use ffi::*;

const EXPECTED_INPUT: [usize; 4] = [1, INPUT_SIZE, INPUT_SIZE, 3];
const EXPECTED_REGRESSORS: [usize; 3] = [1, NUM_ANCHORS, NUM_COORDS];
const EXPECTED_LOGITS: [usize; 3] = [1, NUM_ANCHORS, 1];

/// Everything LiteRT allocated for one loaded model, destroyed in reverse
/// order of creation on drop (buffers, compiled model, options, model,
/// environment), including after a failure half-way through [`LiteRtDetector::load`].
struct Handles {
    env: LiteRtEnvironment,
    /// The flatbuffer LiteRT reads from; it must outlive `model`.
    bytes: Vec<u8>,
    model: LiteRtModel,
    options: LiteRtOptions,
    compiled: LiteRtCompiledModel,
    /// Input buffer, then the outputs in signature order.
    input: LiteRtTensorBuffer,
    outputs: Vec<LiteRtTensorBuffer>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: each handle is null or was created by LiteRT, is owned by
        // this struct alone and is destroyed once, dependents first.
        unsafe {
            for &b in self.outputs.iter().chain([&self.input]) {
                if !b.is_null() {
                    LiteRtDestroyTensorBuffer(b);
                }
            }
            if !self.compiled.is_null() {
                LiteRtDestroyCompiledModel(self.compiled);
            }
            if !self.options.is_null() {
                LiteRtDestroyOptions(self.options);
            }
            if !self.model.is_null() {
                LiteRtDestroyModel(self.model);
            }
            if !self.env.is_null() {
                LiteRtDestroyEnvironment(self.env);
            }
        }
    }
}

/// BlazeFace short-range on LiteRT's CPU accelerator (XNNPACK).
pub struct LiteRtDetector {
    path: PathBuf,
    h: Handles,
    /// Indices into `h.outputs`.
    regressors: usize,
    logits: usize,
    anchors: Vec<Anchor>,
}

// SAFETY: the handles are used only through `&mut self` (never from two
// threads at once), and LiteRT objects are not tied to the thread that made them.
unsafe impl Send for LiteRtDetector {}

/// Frees the TOML payload of the CPU options (a `CString` given to LiteRT).
unsafe extern "C" fn free_cstring_payload(payload: *mut c_void) {
    if !payload.is_null() {
        // SAFETY: the payload was made by `CString::into_raw` in `LiteRtDetector::load`.
        drop(unsafe { CString::from_raw(payload.cast::<c_char>()) });
    }
}

impl LiteRtDetector {
    /// Loads and checks the model: a valid flatbuffer whose tensors have
    /// BlazeFace short-range's shapes, compiled for the CPU accelerator with
    /// `threads` XNNPACK threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self, DetectorError> {
        let path = path.to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| DetectorError::Read { path: path.clone(), source })?;
        // Verify the flatbuffer first, as TfliteDetector does, so both
        // backends refuse the same files with the same error.
        if tflite::model::Model::from_buffer(&bytes).is_none() {
            return Err(DetectorError::NotAModel { path });
        }
        let check = |what: &str, status: LiteRtStatus| -> Result<(), DetectorError> {
            if status == kLiteRtStatusOk {
                Ok(())
            } else {
                Err(DetectorError::Runtime {
                    path: path.clone(),
                    message: format!("LiteRT {what}: {} (status {status})", status_name(status)),
                })
            }
        };
        let mut h = Handles {
            env: ptr::null_mut(),
            bytes,
            model: ptr::null_mut(),
            options: ptr::null_mut(),
            compiled: ptr::null_mut(),
            input: ptr::null_mut(),
            outputs: Vec::new(),
        };
        // SAFETY (the block): every call gets live handles made above and
        // out-pointers to locals; `h` owns what is created and frees it on
        // every early return.
        let (regressors, logits) = unsafe {
            // Only the CPU accelerator: no probing for GPU and NPU libraries.
            // (LiteRT still logs a few INFO lines to stderr per load; the
            // minimum-severity option is ignored by 2.1.4's default logger.)
            let int = |tag, v| LiteRtEnvOption { tag, value: LiteRtAnyInt { ty: kLiteRtAnyTypeInt, int_value: v } };
            let env_options = [int(kLiteRtEnvOptionTagAutoRegisterAccelerators, kLiteRtHwAcceleratorCpu.into())];
            check(
                "create environment",
                LiteRtCreateEnvironment(env_options.len() as i32, env_options.as_ptr(), &mut h.env),
            )?;
            check("read model", LiteRtCreateModelFromBuffer(h.bytes.as_ptr().cast(), h.bytes.len(), &mut h.model))?;

            // Shapes, from the model's first (default) signature.
            let mut nsig = 0;
            check("count signatures", LiteRtGetNumModelSignatures(h.model, &mut nsig))?;
            if nsig == 0 {
                return Err(DetectorError::Runtime { path, message: "LiteRT: the model has no signature".into() });
            }
            let mut sig = ptr::null_mut();
            check("get signature", LiteRtGetModelSignature(h.model, 0, &mut sig))?;
            let (mut nin, mut nout) = (0, 0);
            check("count inputs", LiteRtGetNumSignatureInputs(sig, &mut nin))?;
            check("count outputs", LiteRtGetNumSignatureOutputs(sig, &mut nout))?;
            let tensor_type = |input: bool, i: usize| -> Result<LiteRtRankedTensorType, DetectorError> {
                let mut t = ptr::null_mut();
                let mut ty = LiteRtRankedTensorType::default();
                if input {
                    check("get input", LiteRtGetSignatureInputTensorByIndex(sig, i, &mut t))?;
                } else {
                    check("get output", LiteRtGetSignatureOutputTensorByIndex(sig, i, &mut t))?;
                }
                check("get tensor type", LiteRtGetRankedTensorType(t, &mut ty))?;
                Ok(ty)
            };
            let dims = |ty: &LiteRtRankedTensorType| -> Vec<usize> {
                let l = &ty.layout;
                l.dimensions[..l.rank().min(8)].iter().map(|&d| d.max(0) as usize).collect()
            };
            let f32_dims = |ty: &LiteRtRankedTensorType| {
                let d = dims(ty);
                if ty.element_type == kLiteRtElementTypeFloat32 { d } else { Vec::new() }
            };
            let input_ty = if nin > 0 { Some(tensor_type(true, 0)?) } else { None };
            let input_dims = input_ty.as_ref().map(f32_dims).unwrap_or_default();
            if nin != 1 || input_dims != EXPECTED_INPUT {
                return Err(DetectorError::WrongShape {
                    path,
                    what: "input",
                    got: input_ty.as_ref().map(dims).unwrap_or_default(),
                    expected: EXPECTED_INPUT.to_vec(),
                });
            }
            let output_tys = (0..nout).map(|i| tensor_type(false, i)).collect::<Result<Vec<_>, _>>()?;
            // The two outputs are told apart by shape, not by their order.
            let find = |want: &[usize]| output_tys.iter().position(|t| f32_dims(t) == want);
            let (Some(regressors), Some(logits)) = (find(&EXPECTED_REGRESSORS), find(&EXPECTED_LOGITS)) else {
                return Err(DetectorError::WrongShape {
                    path,
                    what: "outputs",
                    got: output_tys.iter().flat_map(dims).collect(),
                    expected: [&EXPECTED_REGRESSORS[..], &EXPECTED_LOGITS[..]].concat(),
                });
            };

            // Compile for the CPU accelerator with `threads` XNNPACK threads.
            check("create options", LiteRtCreateOptions(&mut h.options))?;
            check("select CPU", LiteRtSetOptionsHardwareAccelerators(h.options, kLiteRtHwAcceleratorCpu))?;
            let payload = CString::new(format!("num_threads = {}\n", threads.max(1))).expect("no NUL");
            let payload = payload.into_raw().cast::<c_void>();
            let mut cpu = ptr::null_mut();
            let status = LiteRtCreateOpaqueOptions(
                CPU_OPTIONS_IDENTIFIER.as_ptr(),
                payload,
                Some(free_cstring_payload),
                &mut cpu,
            );
            if status != kLiteRtStatusOk {
                free_cstring_payload(payload);
            }
            check("create CPU options", status)?;
            let status = LiteRtAddOpaqueOptions(h.options, cpu);
            if status != kLiteRtStatusOk {
                LiteRtDestroyOpaqueOptions(cpu);
            }
            check("add CPU options", status)?;
            check("compile model", LiteRtCreateCompiledModel(h.env, h.model, h.options, &mut h.compiled))?;

            // One host buffer per tensor, as the compiled model wants them.
            let buffer = |input: bool, i: usize, ty: &LiteRtRankedTensorType| {
                let mut req = ptr::null_mut();
                if input {
                    check(
                        "input requirements",
                        LiteRtGetCompiledModelInputBufferRequirements(h.compiled, 0, i, &mut req),
                    )?;
                } else {
                    check(
                        "output requirements",
                        LiteRtGetCompiledModelOutputBufferRequirements(h.compiled, 0, i, &mut req),
                    )?;
                }
                let mut b = ptr::null_mut();
                check("create buffer", LiteRtCreateManagedTensorBufferFromRequirements(h.env, ty, req, &mut b))?;
                Ok::<_, DetectorError>(b)
            };
            let input = buffer(true, 0, input_ty.as_ref().expect("checked above"))?;
            h.input = input;
            for (i, ty) in output_tys.iter().enumerate() {
                let b = buffer(false, i, ty)?;
                h.outputs.push(b);
            }
            // The buffers must hold the whole tensors the slices below cover.
            for (b, want) in [
                (h.input, EXPECTED_INPUT.iter().product::<usize>()),
                (h.outputs[regressors], NUM_ANCHORS * NUM_COORDS),
                (h.outputs[logits], NUM_ANCHORS),
            ] {
                let mut size = 0;
                check("buffer size", LiteRtGetTensorBufferSize(b, &mut size))?;
                if size < want * 4 {
                    return Err(DetectorError::Runtime {
                        path,
                        message: format!("LiteRT buffer of {size} bytes, expected {}", want * 4),
                    });
                }
            }
            (regressors, logits)
        };
        Ok(Self { path, h, regressors, logits, anchors: blazeface::anchors() })
    }

    fn err(&self, what: &str, status: LiteRtStatus) -> DetectorError {
        DetectorError::Runtime {
            path: self.path.clone(),
            message: format!("LiteRT {what}: {} (status {status})", status_name(status)),
        }
    }

    /// Locks `buffer` for `mode`, hands its first `len` floats to `f`, unlocks.
    fn with_buffer<R>(
        &self,
        buffer: LiteRtTensorBuffer,
        mode: i32,
        len: usize,
        f: impl FnOnce(&mut [f32]) -> R,
    ) -> Result<R, DetectorError> {
        let mut addr = ptr::null_mut();
        // SAFETY: `buffer` is a live host buffer of at least `len` floats
        // (checked in `load`); LiteRT returns host memory aligned for f32,
        // valid until the unlock below, and nothing else touches it meanwhile.
        unsafe {
            let status = LiteRtLockTensorBuffer(buffer, &mut addr, mode);
            if status != kLiteRtStatusOk || addr.is_null() {
                return Err(self.err("lock buffer", status));
            }
            let out = f(std::slice::from_raw_parts_mut(addr.cast::<f32>(), len));
            let status = LiteRtUnlockTensorBuffer(buffer);
            if status != kLiteRtStatusOk {
                return Err(self.err("unlock buffer", status));
            }
            Ok(out)
        }
    }

    /// Runs the model on whatever its input buffer holds: bare inference,
    /// for benchmarks.
    pub fn invoke(&mut self) -> Result<(), DetectorError> {
        let h = &mut self.h;
        // SAFETY: live compiled model and buffers; the arrays are read by
        // LiteRT during the call only.
        let status =
            unsafe { LiteRtRunCompiledModel(h.compiled, 0, 1, &mut h.input, h.outputs.len(), h.outputs.as_mut_ptr()) };
        if status != kLiteRtStatusOk {
            return Err(self.err("run", status));
        }
        Ok(())
    }

    /// Runs the model on an already letterboxed input tensor and returns the
    /// raw regressors and logits (for comparing runtimes).
    pub fn run_raw(&mut self, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>), DetectorError> {
        self.with_buffer(self.h.input, kLiteRtTensorBufferLockModeWrite, input.len(), |t| t.copy_from_slice(input))?;
        self.invoke()?;
        let read = kLiteRtTensorBufferLockModeRead;
        let reg = self.with_buffer(self.h.outputs[self.regressors], read, NUM_ANCHORS * NUM_COORDS, |t| t.to_vec())?;
        let logits = self.with_buffer(self.h.outputs[self.logits], read, NUM_ANCHORS, |t| t.to_vec())?;
        Ok((reg, logits))
    }
}

impl FaceDetector for LiteRtDetector {
    fn detect(&mut self, frame: &RgbFrame<'_>) -> Result<Vec<Detection>, DetectorError> {
        let n = INPUT_SIZE * INPUT_SIZE * 3;
        let lb =
            self.with_buffer(self.h.input, kLiteRtTensorBufferLockModeWrite, n, |t| blazeface::preprocess(frame, t))?;
        self.invoke()?;
        let read = kLiteRtTensorBufferLockModeRead;
        let (reg_buf, logit_buf) = (self.h.outputs[self.regressors], self.h.outputs[self.logits]);
        // Both outputs locked at once: decode reads them together.
        self.with_buffer(reg_buf, read, NUM_ANCHORS * NUM_COORDS, |reg| {
            self.with_buffer(logit_buf, read, NUM_ANCHORS, |logits| blazeface::decode(reg, logits, &self.anchors, &lb))
        })?
    }

    fn backend(&self) -> &'static str {
        "litert"
    }
}
