//! Helpers for the end-to-end tests in `tests/e2e/`: find the built
//! `invigil`, the repository's assets, and run the agent as a child
//! process that is always stopped. [`pg`]: a real PostgreSQL (one server
//! per run, one database per test); [`hub`]: the built `invigil-hub`.

pub mod hub;
pub mod pg;

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

/// A FIFO camera in `dir` and `frames` frames of carphone (one face) as raw
/// Y4M to feed it: (FIFO path, video bytes). A `file:` source reads a FIFO
/// like a camera's stream: it ends when the writer closes, hangs while the
/// writer holds it open with nothing written.
pub fn fifo_camera(dir: &Path, frames: u32) -> (PathBuf, Vec<u8>) {
    let y4m = dir.join("carphone.y4m");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(asset("assets/carphone_pristine.mp4"))
        .args(["-frames:v", &frames.to_string(), "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe"])
        .arg(&y4m)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg made the Y4M");
    let fifo = dir.join("camera.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    (fifo, std::fs::read(&y4m).unwrap())
}

/// Writes `DIR/desk.toml` for a test agent: the camera is `file:CAMERA`
/// (a video or a FIFO), the real model, spool and clips inside DIR. `extra`
/// adds `(section, lines)`: lines for `[section]` (merged into it if it is
/// already there, a key given again replacing the default; "" = before the
/// first section).
pub fn desk_config(dir: &Path, camera: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let mut sections: Vec<(String, String)> = vec![
        ("camera".into(), format!("source = \"file:{}\"\n", camera.display())),
        ("model".into(), format!("path = \"{}\"\n", asset("models/face_detection_short_range.tflite").display())),
        ("spool".into(), format!("path = \"{}\"\n", dir.join("spool.sqlite").display())),
        ("clips".into(), format!("dir = \"{}\"\n", dir.join("clips").display())),
    ];
    let mut text = String::new();
    for (section, lines) in extra {
        let lines = format!("{}\n", lines.trim_end());
        if section.is_empty() {
            text.push_str(&lines);
        } else if let Some((_, body)) = sections.iter_mut().find(|(s, _)| s == section) {
            let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
            let given: Vec<String> = lines.lines().map(key).collect();
            *body = body.lines().filter(|l| !given.contains(&key(l))).map(|l| format!("{l}\n")).collect();
            body.push_str(&lines);
        } else {
            sections.push((section.to_string(), lines));
        }
    }
    for (section, body) in sections {
        text.push_str(&format!("[{section}]\n{body}"));
    }
    let path = dir.join("desk.toml");
    std::fs::write(&path, text).unwrap();
    path
}
