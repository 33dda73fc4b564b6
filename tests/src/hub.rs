//! The built `invigil-hub` for end-to-end tests: write a config on a test
//! database ([`crate::pg::database`]), enrol desks, start the hub as a
//! child process on a free loopback port, wait for `/healthz`, and stop it
//! (SIGTERM) or kill it (`kill -9`). A [`Hub`] is killed on drop.
//!
//! ```ignore
//! let db = invigil_e2e::pg::database("my_test");
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = invigil_e2e::hub::config(dir.path(), &db, "");
//! let token = invigil_e2e::hub::enrol(&cfg, "desk-1", "hall-a");
//! let hub = invigil_e2e::hub::Hub::start(&cfg);
//! // agents: [hub] url = hub.url(), token_file = a file holding `token`
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `invigil-hub` binary of the same build profile as this test
/// (`cargo build --bins` first; scripts/test does).
pub fn hub_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("invigil-hub");
    assert!(bin.exists(), "{} is missing: run `cargo build --release --bins` (scripts/test does)", bin.display());
    bin
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes `DIR/hub.toml`: the database, a free port, clips in `DIR/clips`,
/// plain-HTTP cookies, a small pool; `extra` is appended (whole sections).
pub fn config(dir: &Path, db_url: &str, extra: &str) -> PathBuf {
    config_on(dir, "hub.toml", db_url, free_port(), extra)
}

/// As [`config`], with the file name and port given.
pub fn config_on(dir: &Path, file: &str, db_url: &str, port: u16, extra: &str) -> PathBuf {
    let mut text = format!(
        "[database]\nurl = \"{db_url}\"\npool_size = 8\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\nsecure_cookies = false\nshutdown_timeout_s = 10\n"
    );
    if !extra.contains("[storage]") {
        text.push_str(&format!("[storage]\nurl = \"file://{}\"\n", dir.join("clips").display()));
    }
    text.push_str(extra);
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// The port of a config written by [`config`].
pub fn port_of(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let l = text.lines().find(|l| l.starts_with("listen")).expect("a listen line");
    l.rsplit(':').next().unwrap().trim_end_matches('"').parse().unwrap()
}

/// Runs `invigil-hub ARGS --config CONFIG` to completion (stdin empty).
pub fn cmd(config: &Path, args: &[&str]) -> Output {
    cmd_with_stdin(config, args, "")
}

/// As [`cmd`], writing `stdin` to the command.
pub fn cmd_with_stdin(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(hub_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Enrols `desk` in `room`; its token.
pub fn enrol(config: &Path, desk: &str, room: &str) -> String {
    let out = cmd(config, &["device", "add", desk, "--room", room]);
    assert!(out.status.success(), "device add {desk}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A desk enrolled in `room` and pointed at `hub`: its home folder under
/// `dir` (its token file, config and spool), its config file and its
/// local server's port. `clips` is the `[clips]` section's body.
pub fn hub_desk(dir: &Path, hub: &Hub, desk: &str, room: &str, video: &Path, clips: &str) -> (PathBuf, PathBuf, u16) {
    let home = dir.join(desk);
    std::fs::create_dir_all(&home).unwrap();
    let token = home.join("hub.token");
    std::fs::write(&token, enrol(&hub.config, desk, room) + "\n").unwrap();
    let port = free_port();
    let cfg = crate::desk_config(
        &home,
        video,
        &[
            ("", &format!("device_id = \"{desk}\"")),
            ("hub", &format!("url = \"{}\"\ntoken_file = \"{}\"", hub.url(), token.display())),
            ("sync", "interval_s = 1"),
            ("server", &format!("listen = \"127.0.0.1:{port}\"")),
            ("clips", clips),
        ],
    );
    (home, cfg, port)
}

/// Waits (up to 60 s) until the agent on `port` says its hub link is ok.
pub fn wait_linked(hub: &Hub, desk: &str, port: u16) {
    let linked = crate::wait_for(Duration::from_secs(60), || {
        let v = get(port, "/healthz", &[])?.json();
        (v["hub"]["state"] == "ok").then_some(())
    });
    assert!(linked.is_some(), "{desk} never connected to the hub\n{}", hub.log_text());
}

/// A running `invigil-hub run`; killed on drop.
pub struct Hub {
    pub child: Child,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Hub {
    /// Starts the hub on `config` and waits (at most 30 s) for `/healthz`.
    /// Its stderr goes to `CONFIG.log` (appended across restarts).
    pub fn start(config: &Path) -> Hub {
        let port = port_of(config);
        let log = config.with_extension("log");
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(hub_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", std::env::var("INVIGIL_HUB_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        let mut hub = Hub { child, port, config: config.to_path_buf(), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = hub.child.try_wait().unwrap() {
                panic!("invigil-hub exited at start ({st}): {}", hub.log_text());
            }
            if get(port, "/healthz", &[]).is_some_and(|r| r.status == 200) {
                return hub;
            }
            assert!(Instant::now() < deadline, "invigil-hub did not answer /healthz within 30 s: {}", hub.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9` and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; waits (at most `limit`) and returns the exit status.
    pub fn stop(mut self, limit: Duration) -> std::process::ExitStatus {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "invigil-hub did not stop within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// One HTTP/1.1 request to 127.0.0.1:port (`Connection: close`); None if
/// the connection fails or no complete answer comes within 10 s.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = unchunk(&body)?;
    }
    Some(Reply { status, headers, body })
}

/// GET with headers.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    request(port, "GET", path, headers, b"")
}

fn unchunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(nl + 2..nl + 2 + n)?);
        b = b.get(nl + 4 + n..)?;
    }
}

/// A score batch as the agent builds it (proto's JSON, gzip'd as
/// `agent/src/sync.rs` does); `frames` scores from `first`, 30 a second
/// from `t0_ms`.
pub fn batch_body(
    device: &str,
    batch_id: &str,
    session: Option<(&str, &str)>,
    first: u64,
    frames: u64,
    t0_ms: i64,
) -> Vec<u8> {
    let scores: Vec<serde_json::Value> = (first..first + frames)
        .map(|f| {
            let ts = chrono_like(t0_ms + (f as i64) * 1000 / 30);
            serde_json::json!({"ts": ts, "frame": f, "focus_score": (f % 101), "num_faces": 1, "yaw_deg": -4.2, "pitch_deg": 6.0, "reasons": []})
        })
        .collect();
    let b = serde_json::json!({
        "session_id": session.map(|s| s.0), "student_id": session.map(|s| s.1),
        "device_id": device, "batch_id": batch_id, "scores": scores, "incidents": [],
    });
    gzip(serde_json::to_vec(&b).unwrap().as_slice())
}

/// gzip at the best level, as the agent does.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// RFC 3339 UTC with milliseconds for `ms` since the epoch.
pub fn chrono_like(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// POSTs a gzip'd batch body as a box does; the reply.
pub fn post_batch(port: u16, token: &str, batch_id: &str, body: &[u8]) -> Option<Reply> {
    let auth = format!("Bearer {token}");
    request(
        port,
        "POST",
        "/api/exam/analyze-batch",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("Idempotency-Key", batch_id),
        ],
        body,
    )
}
