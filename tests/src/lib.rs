//! Helpers for the end-to-end tests in `tests/e2e/`: find the built
//! `invigil`, the repository's assets, and run the agent as a child
//! process that is always stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A fetched asset; panics with the fix if it is missing.
pub fn asset(rel: &str) -> PathBuf {
    let p = root().join(rel);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets", p.display());
    p
}

/// The `invigil` binary of the same build profile as this test
/// (`cargo build --bins` first; scripts/test does).
pub fn invigil_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("invigil");
    assert!(bin.exists(), "{} is missing: run `cargo build --release --bins` (scripts/test does)", bin.display());
    bin
}

/// Runs `invigil ARGS` in `cwd` to completion.
pub fn invigil(cwd: &Path, args: &[&str]) -> Output {
    Command::new(invigil_bin()).args(args).current_dir(cwd).env("RUST_LOG", "warn").output().unwrap()
}

/// A running agent; killed on drop if still running.
pub struct Agent {
    pub child: Child,
}

impl Agent {
    pub fn start(cwd: &Path, config: &Path) -> Agent {
        let child = Command::new(invigil_bin())
            .args(["run", "--config"])
            .arg(config)
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Agent { child }
    }

    /// Sends `signal` (e.g. "INT", "TERM", "KILL").
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for exit, at most `limit`; returns the output or panics.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
                return child.wait_with_output().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("invigil did not stop within {limit:?}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 100 ms until it returns Some, at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Scores in a spool file, in order: (frame, focus_score, reasons JSON).
pub fn spool_scores(path: &Path) -> Vec<(i64, i64, String)> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return vec![];
    };
    let Ok(mut stmt) = conn.prepare("SELECT frame, focus_score, reasons FROM scores ORDER BY id") else {
        return vec![];
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(|r| r.unwrap()).collect()
}
