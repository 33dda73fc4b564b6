//! Models on LiteRT, the runtime that succeeds TensorFlow Lite: its CPU
//! accelerator runs them through XNNPACK, 1.5x as fast as the vendored
//! TFLite 1.15 with one thread on x86-64 (`docs/PERFORMANCE.md`, "Models").
//!
//! `libLiteRt.so` (from the PyPI wheel `ai-edge-litert==2.1.4`) is loaded at
//! run time ([`LiteRt::load`], which says where it looks), through the
//! typed table of [`ffi`]. [`LiteRtModel`] is the generic layer of
//! [`TensorModel`]: one compiled model with one host buffer per tensor.
//!
//! LiteRT's INFO lines on each load and free are kept off stderr
//! ([`quiet`]).
//!
//! Safety: every LiteRT object is owned by one Rust value that destroys it
//! on drop, dependents first ([`LiteRtModel`]'s field order); buffers are
//! reached only through [`Locked`], which unlocks on drop, also when a
//! caller panics while holding it.

pub mod ffi;
mod library;
mod quiet;

use std::ffi::{CString, c_char, c_void};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};

pub use library::{ENV_VAR, LibraryError, LiteRt, SYSTEM_PATH};

use self::ffi::*;
use crate::detector::DetectorError;
use crate::tensor::{ModelSpec, TensorInfo, TensorModel, read_model_file};

/// A failed LiteRT call, with the step it was.
fn check(path: &Path, what: &str, status: LiteRtStatus) -> Result<(), DetectorError> {
    if status == kLiteRtStatusOk {
        return Ok(());
    }
    Err(DetectorError::Runtime {
        path: path.to_path_buf(),
        message: format!("LiteRT {what}: {} (status {status})", status_name(status)),
    })
}

/// Declares an owning wrapper that destroys its handle once, on drop.
macro_rules! owned {
    ($(#[$doc:meta])* $name:ident($handle:ty) => $destroy:ident) => {
        $(#[$doc])*
        struct $name {
            api: &'static Api,
            h: $handle,
        }

        impl Drop for $name {
            fn drop(&mut self) {
                if !self.h.is_null() {
                    // SAFETY: `h` was created by this library, is owned by
                    // this value alone, and its dependents were dropped first.
                    unsafe { (self.api.$destroy)(self.h) }
                }
            }
        }
    };
}

owned!(Environment(EnvironmentHandle) => LiteRtDestroyEnvironment);
owned!(
    /// Also keeps the flatbuffer LiteRT reads from (see [`LiteRtModel`]).
    Model(ModelHandle) => LiteRtDestroyModel
);
owned!(Options(OptionsHandle) => LiteRtDestroyOptions);
owned!(OpaqueOptions(OpaqueOptionsHandle) => LiteRtDestroyOpaqueOptions);
owned!(CompiledModel(CompiledModelHandle) => LiteRtDestroyCompiledModel);
owned!(Buffer(TensorBufferHandle) => LiteRtDestroyTensorBuffer);

/// A model compiled for LiteRT's CPU accelerator (XNNPACK), with one host
/// buffer per input and output.
pub struct LiteRtModel {
    /// Freed in `drop`, with LiteRT's INFO lines kept off stderr.
    h: ManuallyDrop<Handles>,
    output_map: Vec<usize>,
    spec: ModelSpec,
    path: PathBuf,
    lib: LiteRt,
}

/// Everything LiteRT allocated for one model.
struct Handles {
    // Dropped in this order: buffers, compiled model, options, model,
    // flatbuffer, environment.
    inputs: Vec<Buffer>,
    /// In the model's order; `output_map` turns a spec index into one.
    outputs: Vec<Buffer>,
    /// The same handles as `inputs` and `outputs`, as `LiteRtRunCompiledModel` takes them.
    input_handles: Vec<TensorBufferHandle>,
    output_handles: Vec<TensorBufferHandle>,
    compiled: CompiledModel,
    _options: Options,
    _model: Model,
    /// The flatbuffer LiteRT reads from: it must outlive `_model`.
    _bytes: Vec<u8>,
    _env: Environment,
}

impl Drop for LiteRtModel {
    fn drop(&mut self) {
        let _quiet = quiet::QuietStderr::new();
        // SAFETY: `h` is dropped here once and never used again.
        unsafe { ManuallyDrop::drop(&mut self.h) };
    }
}

// SAFETY: the handles are used only through `&mut self` or through guards
// that borrow `self` (never from two threads at once), and LiteRT objects are
// not tied to the thread that made them.
unsafe impl Send for LiteRtModel {}

/// Frees the TOML payload of the CPU options (a `CString` given to LiteRT).
unsafe extern "C" fn free_cstring_payload(payload: *mut c_void) {
    if !payload.is_null() {
        // SAFETY: the payload was made by `CString::into_raw` in `cpu_options`.
        drop(unsafe { CString::from_raw(payload.cast::<c_char>()) });
    }
}

impl LiteRtModel {
    /// Loads `path` on `lib`, checks its tensors against `spec` and compiles
    /// it for the CPU accelerator with `threads` XNNPACK threads.
    pub fn load(lib: LiteRt, path: &Path, threads: usize, spec: &ModelSpec) -> Result<Self, DetectorError> {
        let api = lib.api;
        let bytes = read_model_file(path)?;
        // Declared first, so dropped last: also after a failure half-way.
        let _quiet = quiet::QuietStderr::new();

        // Only the CPU accelerator: no probing for GPU and NPU libraries.
        let int = |tag, v| LiteRtEnvOption { tag, value: LiteRtAnyInt { ty: kLiteRtAnyTypeInt, int_value: v } };
        let env_options = [int(kLiteRtEnvOptionTagAutoRegisterAccelerators, kLiteRtHwAcceleratorCpu.into())];
        let mut env = Environment { api, h: EnvironmentHandle::NULL };
        // SAFETY: a valid array of `len` options and an out-pointer to a local.
        let status =
            unsafe { (api.LiteRtCreateEnvironment)(env_options.len() as i32, env_options.as_ptr(), &mut env.h) };
        check(path, "create environment", status)?;

        let mut model = Model { api, h: ModelHandle::NULL };
        // SAFETY: `bytes` is moved into the returned value after `model`
        // (dropped later), so LiteRT's view of it stays valid.
        let status = unsafe { (api.LiteRtCreateModelFromBuffer)(bytes.as_ptr().cast(), bytes.len(), &mut model.h) };
        check(path, "read model", status)?;

        let (input_types, output_types) = signature_types(api, path, model.h)?;
        let info = |t: &LiteRtRankedTensorType| TensorInfo {
            dims: t.dims(),
            is_f32: t.element_type == kLiteRtElementTypeFloat32,
        };
        let output_map = spec.check(
            path,
            &input_types.iter().map(info).collect::<Vec<_>>(),
            &output_types.iter().map(info).collect::<Vec<_>>(),
        )?;

        let options = cpu_options(api, path, threads)?;
        let mut compiled = CompiledModel { api, h: CompiledModelHandle::NULL };
        // SAFETY: live environment, model and options; an out-pointer to a local.
        let status = unsafe { (api.LiteRtCreateCompiledModel)(env.h, model.h, options.h, &mut compiled.h) };
        check(path, "compile model", status)?;

        let mut inputs = Vec::with_capacity(input_types.len());
        for (i, ty) in input_types.iter().enumerate() {
            inputs.push(host_buffer(api, path, &env, &compiled, true, i, ty)?);
        }
        let mut outputs = Vec::with_capacity(output_types.len());
        for (i, ty) in output_types.iter().enumerate() {
            outputs.push(host_buffer(api, path, &env, &compiled, false, i, ty)?);
        }
        let input_handles = inputs.iter().map(|b| b.h).collect();
        let output_handles = outputs.iter().map(|b| b.h).collect();
        let h = Handles {
            inputs,
            outputs,
            input_handles,
            output_handles,
            compiled,
            _options: options,
            _model: model,
            _bytes: bytes,
            _env: env,
        };
        let m = Self { h: ManuallyDrop::new(h), output_map, spec: *spec, path: path.to_path_buf(), lib };
        // The buffers must hold the whole tensors the guards hand out.
        for i in 0..spec.inputs.len() {
            m.check_size(&m.h.inputs[i], spec.input_len(i))?;
        }
        for i in 0..spec.outputs.len() {
            m.check_size(&m.h.outputs[m.output_map[i]], spec.output_len(i))?;
        }
        Ok(m)
    }

    /// The library this model runs on.
    pub fn library(&self) -> LiteRt {
        self.lib
    }

    fn check_size(&self, b: &Buffer, floats: usize) -> Result<(), DetectorError> {
        let mut size = 0;
        // SAFETY: a live buffer and an out-pointer to a local.
        let status = unsafe { (b.api.LiteRtGetTensorBufferSize)(b.h, &mut size) };
        check(&self.path, "buffer size", status)?;
        if size < floats * 4 {
            return Err(self.runtime_error(format!("LiteRT buffer of {size} bytes, expected {}", floats * 4)));
        }
        Ok(())
    }

    fn lock(&self, b: &Buffer, mode: LockMode, len: usize) -> Result<Locked<'_>, DetectorError> {
        let mut addr = std::ptr::null_mut();
        // SAFETY: a live buffer and an out-pointer to a local.
        let status = unsafe { (b.api.LiteRtLockTensorBuffer)(b.h, &mut addr, mode) };
        check(&self.path, "lock buffer", status)?;
        if addr.is_null() || !(addr as usize).is_multiple_of(std::mem::align_of::<f32>()) {
            // SAFETY: the buffer was locked just above.
            unsafe { (b.api.LiteRtUnlockTensorBuffer)(b.h) };
            return Err(self.runtime_error("LiteRT lock buffer: no aligned host memory".into()));
        }
        Ok(Locked { api: b.api, h: b.h, ptr: addr.cast(), len, _model: PhantomData })
    }
}

/// The input and output tensor types of the model's first (default) signature.
fn signature_types(
    api: &Api,
    path: &Path,
    model: ModelHandle,
) -> Result<(Vec<LiteRtRankedTensorType>, Vec<LiteRtRankedTensorType>), DetectorError> {
    let mut nsig = 0;
    // SAFETY: a live model and an out-pointer to a local (as in each call
    // below, on the model or the signature it owns).
    check(path, "count signatures", unsafe { (api.LiteRtGetNumModelSignatures)(model, &mut nsig) })?;
    if nsig == 0 {
        return Err(DetectorError::Runtime {
            path: path.to_path_buf(),
            message: "LiteRT: the model has no signature".into(),
        });
    }
    let mut sig = SignatureHandle::NULL;
    // SAFETY: as above.
    check(path, "get signature", unsafe { (api.LiteRtGetModelSignature)(model, 0, &mut sig) })?;
    let (mut nin, mut nout) = (0, 0);
    // SAFETY: as above.
    check(path, "count inputs", unsafe { (api.LiteRtGetNumSignatureInputs)(sig, &mut nin) })?;
    // SAFETY: as above.
    check(path, "count outputs", unsafe { (api.LiteRtGetNumSignatureOutputs)(sig, &mut nout) })?;
    let ty = |input: bool, i: usize| -> Result<LiteRtRankedTensorType, DetectorError> {
        let mut t = TensorHandle::NULL;
        let status = if input {
            // SAFETY: `i` is below the count LiteRT gave; out-pointer to a local.
            unsafe { (api.LiteRtGetSignatureInputTensorByIndex)(sig, i, &mut t) }
        } else {
            // SAFETY: as above.
            unsafe { (api.LiteRtGetSignatureOutputTensorByIndex)(sig, i, &mut t) }
        };
        check(path, "get tensor", status)?;
        let mut ty = LiteRtRankedTensorType::default();
        // SAFETY: a tensor of the live model; out-pointer to a local.
        check(path, "get tensor type", unsafe { (api.LiteRtGetRankedTensorType)(t, &mut ty) })?;
        Ok(ty)
    };
    let inputs = (0..nin).map(|i| ty(true, i)).collect::<Result<Vec<_>, _>>()?;
    let outputs = (0..nout).map(|i| ty(false, i)).collect::<Result<Vec<_>, _>>()?;
    Ok((inputs, outputs))
}

/// Compilation options: the CPU accelerator with `threads` XNNPACK threads.
fn cpu_options(api: &'static Api, path: &Path, threads: usize) -> Result<Options, DetectorError> {
    let mut options = Options { api, h: OptionsHandle::NULL };
    // SAFETY: an out-pointer to a local.
    check(path, "create options", unsafe { (api.LiteRtCreateOptions)(&mut options.h) })?;
    // SAFETY: live options.
    let status = unsafe { (api.LiteRtSetOptionsHardwareAccelerators)(options.h, kLiteRtHwAcceleratorCpu) };
    check(path, "select CPU", status)?;
    let payload = CString::new(format!("num_threads = {}\n", threads.max(1))).expect("no NUL in a number");
    let payload = payload.into_raw().cast::<c_void>();
    let mut cpu = OpaqueOptions { api, h: OpaqueOptionsHandle::NULL };
    // SAFETY: a NUL-terminated identifier, a payload that
    // `free_cstring_payload` frees, and an out-pointer to a local.
    let status = unsafe {
        (api.LiteRtCreateOpaqueOptions)(
            CPU_OPTIONS_IDENTIFIER.as_ptr(),
            payload,
            Some(free_cstring_payload),
            &mut cpu.h,
        )
    };
    if status != kLiteRtStatusOk {
        // SAFETY: LiteRT did not take the payload; it is still ours to free.
        unsafe { free_cstring_payload(payload) };
    }
    check(path, "create CPU options", status)?;
    // SAFETY: live options; on success they own `cpu`, so it is not destroyed here.
    let status = unsafe { (api.LiteRtAddOpaqueOptions)(options.h, cpu.h) };
    check(path, "add CPU options", status)?;
    cpu.h = OpaqueOptionsHandle::NULL;
    Ok(options)
}

/// One host buffer for tensor `i`, as the compiled model wants it.
fn host_buffer(
    api: &'static Api,
    path: &Path,
    env: &Environment,
    compiled: &CompiledModel,
    input: bool,
    i: usize,
    ty: &LiteRtRankedTensorType,
) -> Result<Buffer, DetectorError> {
    let mut req = RequirementsHandle::NULL;
    let status = if input {
        // SAFETY: a live compiled model, a tensor index LiteRT listed, an out-pointer to a local.
        unsafe { (api.LiteRtGetCompiledModelInputBufferRequirements)(compiled.h, 0, i, &mut req) }
    } else {
        // SAFETY: as above.
        unsafe { (api.LiteRtGetCompiledModelOutputBufferRequirements)(compiled.h, 0, i, &mut req) }
    };
    check(path, "buffer requirements", status)?;
    let mut b = Buffer { api, h: TensorBufferHandle::NULL };
    // SAFETY: live environment and requirements (owned by the compiled
    // model), a tensor type on our stack, an out-pointer to a local.
    let status = unsafe { (api.LiteRtCreateManagedTensorBufferFromRequirements)(env.h, ty, req, &mut b.h) };
    check(path, "create buffer", status)?;
    Ok(b)
}

/// A locked tensor buffer seen as f32s (read-only: an output); unlocked on drop.
pub struct Locked<'a> {
    api: &'static Api,
    h: TensorBufferHandle,
    ptr: *mut f32,
    len: usize,
    /// The model (and so the buffer) outlives the guard.
    _model: PhantomData<&'a LiteRtModel>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: locked host memory of at least `len` f32s (checked at
        // load), aligned (checked at lock), valid until the unlock in drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A buffer locked for writing (an input); unlocked on drop.
pub struct LockedMut<'a>(Locked<'a>);

impl std::ops::Deref for LockedMut<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for LockedMut<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `Locked::deref`; input guards come from
        // `&mut LiteRtModel`, so no other guard of this buffer exists.
        unsafe { std::slice::from_raw_parts_mut(self.0.ptr, self.0.len) }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: the buffer is live and was locked by `LiteRtModel::lock`.
        // An unlock error leaves nothing for us to undo.
        unsafe { (self.api.LiteRtUnlockTensorBuffer)(self.h) };
    }
}

impl TensorModel for LiteRtModel {
    type Input<'a> = LockedMut<'a>;
    type Output<'a> = Locked<'a>;

    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn backend(&self) -> &'static str {
        "litert"
    }

    fn input(&mut self, i: usize) -> Result<LockedMut<'_>, DetectorError> {
        self.lock(&self.h.inputs[i], LockMode::Write, self.spec.input_len(i)).map(LockedMut)
    }

    fn invoke(&mut self) -> Result<(), DetectorError> {
        let h = &self.h;
        let (inputs, outputs) = (&h.input_handles, &h.output_handles);
        // SAFETY: a live compiled model and live, unlocked buffers (guards
        // borrow `self`, so none is held during this `&mut self` call); the
        // arrays are read by LiteRT during the call only.
        let status = unsafe {
            (self.lib.api.LiteRtRunCompiledModel)(
                h.compiled.h,
                0,
                inputs.len(),
                inputs.as_ptr(),
                outputs.len(),
                outputs.as_ptr(),
            )
        };
        check(&self.path, "run", status)
    }

    fn output(&self, i: usize) -> Result<Locked<'_>, DetectorError> {
        self.lock(&self.h.outputs[self.output_map[i]], LockMode::Read, self.spec.output_len(i))
    }
}
