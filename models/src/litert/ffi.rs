//! The part of LiteRT 2.1.4's C API (`litert/c/*.h`) this crate uses,
//! resolved at run time from `libLiteRt.so` into [`Api`].
//!
//! Each handle has a type of its own ([`ModelHandle`], [`OptionsHandle`], …),
//! so passing a model where options are expected does not compile. The
//! structs are laid out as the headers' static asserts say (checked by size
//! below). The function signatures are LiteRT 2.1.4's: the 2.3.0 library is
//! not ABI-compatible, which is why the library is pinned (`scripts/fetch-litert`
//! checks its sha256) and why [`Api::load`] refuses a library that lacks one
//! of these symbols.

#![allow(non_upper_case_globals)]

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

pub type LiteRtStatus = c_int;
pub const kLiteRtStatusOk: LiteRtStatus = 0;
pub type LiteRtParamIndex = usize;

macro_rules! handles {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        /// An opaque LiteRT pointer; null until LiteRT fills it in.
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(*mut c_void);

        impl $name {
            pub const NULL: Self = Self(std::ptr::null_mut());
            pub fn is_null(self) -> bool {
                self.0.is_null()
            }
        }
    )*};
}

handles! {
    /// `LiteRtEnvironment`.
    EnvironmentHandle;
    /// `LiteRtModel`.
    ModelHandle;
    /// `LiteRtSignature` (owned by its model).
    SignatureHandle;
    /// `LiteRtTensor` (owned by its model).
    TensorHandle;
    /// `LiteRtOptions`.
    OptionsHandle;
    /// `LiteRtOpaqueOptions`.
    OpaqueOptionsHandle;
    /// `LiteRtCompiledModel`.
    CompiledModelHandle;
    /// `LiteRtTensorBuffer`.
    TensorBufferHandle;
    /// `LiteRtTensorBufferRequirements` (owned by its compiled model).
    RequirementsHandle;
}

pub const kLiteRtHwAcceleratorCpu: c_int = 1;
pub const kLiteRtElementTypeFloat32: c_int = 1;
/// `LiteRtTensorBufferLockMode`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Read = 0,
    Write = 1,
}
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

impl LiteRtRankedTensorType {
    /// The dimensions (negative ones, i.e. dynamic, as 0).
    pub fn dims(&self) -> Vec<usize> {
        let l = &self.layout;
        l.dimensions[..l.rank().min(8)].iter().map(|&d| d.max(0) as usize).collect()
    }
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

/// Declares [`Api`]: one field per C function, and `Api::load`, which
/// resolves every one of them by name or fails naming the missing one.
macro_rules! api {
    ($($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The LiteRT functions, resolved from one loaded `libLiteRt.so`.
        /// The library stays loaded for the life of the process (see
        /// [`Api::load`]), so the pointers never dangle.
        #[allow(non_snake_case)]
        pub struct Api {
            $(pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }

        impl Api {
            /// Opens `path` and resolves every function. The library is
            /// never unloaded: LiteRT's worker threads and static
            /// destructors make unloading unsafe, and one copy per process
            /// is all a box needs.
            pub fn load(path: &Path) -> Result<Api, String> {
                // SAFETY: loading runs the library's initialisers; this is
                // LiteRT, which has no initialiser with preconditions.
                let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
                let api = Api {
                    $($name: {
                        // SAFETY: the field's type is the function's
                        // signature in LiteRT 2.1.4's C headers.
                        let sym = unsafe {
                            lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                                concat!(stringify!($name), "\0").as_bytes(),
                            )
                        };
                        *sym.map_err(|_| format!(
                            "{} has no function {} (is it LiteRT 2.1.4?)",
                            path.display(),
                            stringify!($name)
                        ))?
                    },)*
                };
                std::mem::forget(lib);
                Ok(api)
            }
        }
    };
}

api! {
    LiteRtCreateEnvironment: fn(c_int, *const LiteRtEnvOption, *mut EnvironmentHandle) -> LiteRtStatus;
    LiteRtDestroyEnvironment: fn(EnvironmentHandle);

    LiteRtCreateModelFromBuffer: fn(*const c_void, usize, *mut ModelHandle) -> LiteRtStatus;
    LiteRtDestroyModel: fn(ModelHandle);
    LiteRtGetNumModelSignatures: fn(ModelHandle, *mut LiteRtParamIndex) -> LiteRtStatus;
    LiteRtGetModelSignature: fn(ModelHandle, LiteRtParamIndex, *mut SignatureHandle) -> LiteRtStatus;
    LiteRtGetNumSignatureInputs: fn(SignatureHandle, *mut LiteRtParamIndex) -> LiteRtStatus;
    LiteRtGetSignatureInputTensorByIndex: fn(SignatureHandle, LiteRtParamIndex, *mut TensorHandle) -> LiteRtStatus;
    LiteRtGetNumSignatureOutputs: fn(SignatureHandle, *mut LiteRtParamIndex) -> LiteRtStatus;
    LiteRtGetSignatureOutputTensorByIndex: fn(SignatureHandle, LiteRtParamIndex, *mut TensorHandle) -> LiteRtStatus;
    LiteRtGetRankedTensorType: fn(TensorHandle, *mut LiteRtRankedTensorType) -> LiteRtStatus;

    LiteRtCreateOptions: fn(*mut OptionsHandle) -> LiteRtStatus;
    LiteRtDestroyOptions: fn(OptionsHandle);
    LiteRtSetOptionsHardwareAccelerators: fn(OptionsHandle, c_int) -> LiteRtStatus;
    // Takes ownership of the opaque options when it succeeds.
    LiteRtAddOpaqueOptions: fn(OptionsHandle, OpaqueOptionsHandle) -> LiteRtStatus;
    LiteRtCreateOpaqueOptions: fn(*const c_char, *mut c_void, PayloadDestructor, *mut OpaqueOptionsHandle) -> LiteRtStatus;
    LiteRtDestroyOpaqueOptions: fn(OpaqueOptionsHandle);

    LiteRtCreateCompiledModel: fn(EnvironmentHandle, ModelHandle, OptionsHandle, *mut CompiledModelHandle) -> LiteRtStatus;
    LiteRtDestroyCompiledModel: fn(CompiledModelHandle);
    LiteRtGetCompiledModelInputBufferRequirements:
        fn(CompiledModelHandle, LiteRtParamIndex, LiteRtParamIndex, *mut RequirementsHandle) -> LiteRtStatus;
    LiteRtGetCompiledModelOutputBufferRequirements:
        fn(CompiledModelHandle, LiteRtParamIndex, LiteRtParamIndex, *mut RequirementsHandle) -> LiteRtStatus;
    LiteRtRunCompiledModel: fn(
        CompiledModelHandle,
        LiteRtParamIndex,
        usize,
        *const TensorBufferHandle,
        usize,
        *const TensorBufferHandle
    ) -> LiteRtStatus;

    LiteRtCreateManagedTensorBufferFromRequirements:
        fn(EnvironmentHandle, *const LiteRtRankedTensorType, RequirementsHandle, *mut TensorBufferHandle) -> LiteRtStatus;
    LiteRtDestroyTensorBuffer: fn(TensorBufferHandle);
    LiteRtGetTensorBufferSize: fn(TensorBufferHandle, *mut usize) -> LiteRtStatus;
    LiteRtLockTensorBuffer: fn(TensorBufferHandle, *mut *mut c_void, LockMode) -> LiteRtStatus;
    LiteRtUnlockTensorBuffer: fn(TensorBufferHandle) -> LiteRtStatus;
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
