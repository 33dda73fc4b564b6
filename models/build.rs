//! Links libLiteRt.so when the `litert` feature is on; does nothing otherwise.
//!
//! The library's directory is `LITERT_LIB_DIR`, else where
//! `scripts/fetch-litert` puts it (`${XDG_CACHE_HOME:-~/.cache}/invigil/litert/<arch>`).
//! This crate's tests, benches and examples get an rpath to it; crates above
//! read it as `DEP_LITERT_LIB_DIR` (or set `LD_LIBRARY_PATH`).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LITERT_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_LITERT").is_none() {
        return;
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let dir = match std::env::var_os("LITERT_LIB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_default();
            cache.join("invigil/litert").join(&arch)
        }
    };
    let lib = dir.join("libLiteRt.so");
    if !lib.is_file() {
        panic!(
            "feature `litert`: {} not found; run scripts/fetch-litert{} and set LITERT_LIB_DIR to the directory it prints",
            lib.display(),
            if arch == "x86_64" { String::new() } else { format!(" --arch {arch}") }
        );
    }
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=LiteRt");
    // Tests, benches and examples of this crate find the library at run time.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
}
