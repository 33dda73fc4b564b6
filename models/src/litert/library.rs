//! Finding and loading `libLiteRt.so` at run time, so that a build never
//! needs the library and a box without it still runs (on the tflite
//! backend, when the agent's `model.backend` is `auto`).
//!
//! Where it is looked for, first found first (a file that exists but does
//! not load is an error, not skipped):
//! 1. the path the caller gives (the agent's `model.litert_lib`);
//!    given, it is the only candidate;
//! 2. `$INVIGIL_LITERT_LIB`, a path to the file;
//! 3. `/usr/lib/invigil/libLiteRt.so` (the Yocto layer and packages);
//! 4. `${XDG_CACHE_HOME:-$HOME/.cache}/invigil/litert/<arch>/libLiteRt.so`,
//!    where `scripts/fetch-litert` (run by `scripts/setup`) puts it.
//!
//! Each library is loaded once per process and never unloaded.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::ffi::Api;

/// The environment variable naming the library's file.
pub const ENV_VAR: &str = "INVIGIL_LITERT_LIB";
/// Where the Yocto layer installs it.
pub const SYSTEM_PATH: &str = "/usr/lib/invigil/libLiteRt.so";

/// Why LiteRT is not available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LibraryError {
    #[error("libLiteRt.so not found (looked in {}); run scripts/fetch-litert, or set model.litert_lib", tried.join(", "))]
    NotFound { tried: Vec<String> },
    #[error("{path}: cannot load LiteRT: {message}")]
    Load { path: PathBuf, message: String },
}

/// A loaded LiteRT library: cheap to copy, valid for the life of the process.
#[derive(Clone, Copy)]
pub struct LiteRt {
    pub(crate) api: &'static Api,
    path: &'static Path,
}

impl std::fmt::Debug for LiteRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteRt").field("path", &self.path).finish()
    }
}

/// Libraries loaded so far, by path: loading the same file again hands out
/// the same table.
static LOADED: Mutex<Vec<LiteRt>> = Mutex::new(Vec::new());

impl LiteRt {
    /// Finds and loads the library: `explicit` if given, else the first of
    /// the documented places (module docs) that holds a file.
    pub fn load(explicit: Option<&Path>) -> Result<LiteRt, LibraryError> {
        let candidates = Self::candidates(explicit);
        match candidates.iter().find(|p| p.is_file()) {
            Some(path) => Self::load_file(path),
            None => Err(LibraryError::NotFound { tried: candidates.iter().map(|p| p.display().to_string()).collect() }),
        }
    }

    /// The places looked in, in order (module docs).
    pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
        if let Some(p) = explicit {
            return vec![p.to_path_buf()];
        }
        let mut v = Vec::new();
        if let Some(p) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
            v.push(PathBuf::from(p));
        }
        v.push(PathBuf::from(SYSTEM_PATH));
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
        if let Some(c) = cache {
            v.push(c.join("invigil/litert").join(std::env::consts::ARCH).join("libLiteRt.so"));
        }
        v
    }

    /// Loads the library at `path` (once per process).
    pub fn load_file(path: &Path) -> Result<LiteRt, LibraryError> {
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = loaded.iter().find(|l| l.path == path) {
            return Ok(*l);
        }
        let api = Api::load(path).map_err(|message| LibraryError::Load { path: path.to_path_buf(), message })?;
        let lib = LiteRt { api: Box::leak(Box::new(api)), path: Box::leak(path.to_path_buf().into_boxed_path()) };
        loaded.push(lib);
        Ok(lib)
    }

    /// The file this library was loaded from.
    pub fn path(&self) -> &Path {
        self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_path_is_the_only_candidate() {
        let p = Path::new("/opt/x/libLiteRt.so");
        assert_eq!(LiteRt::candidates(Some(p)), vec![p.to_path_buf()]);
    }

    #[test]
    fn the_system_path_is_always_a_candidate() {
        assert!(LiteRt::candidates(None).contains(&PathBuf::from(SYSTEM_PATH)));
    }

    #[test]
    fn a_missing_explicit_library_names_where_it_looked() {
        let err = LiteRt::load(Some(Path::new("/nonexistent/libLiteRt.so"))).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/libLiteRt.so") && err.contains("fetch-litert"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_library_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("invigil-litert-lib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("libLiteRt.so");
        std::fs::write(&p, b"not an ELF file").unwrap();
        let err = LiteRt::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains(&p.display().to_string()) && err.contains("cannot load"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
