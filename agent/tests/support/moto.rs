//! A real S3 server for tests: `moto_server` on 127.0.0.1, started and
//! killed by the test. Found through `$INVIGIL_MOTO_SERVER`, else
//! `${XDG_CACHE_HOME:-$HOME/.cache}/invigil/venv-moto/bin/moto_server`
//! (scripts/setup installs it there). Missing is a failure, not a skip.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    pub endpoint: String,
    pub port: u16,
    child: Child,
}

/// Where `moto_server` is, or a panic that says how to get it.
pub fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("INVIGIL_MOTO_SERVER") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "INVIGIL_MOTO_SERVER={} does not exist", p.display());
        return p;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let p = cache.join("invigil/venv-moto/bin/moto_server");
    assert!(
        p.exists(),
        "moto_server (a real S3 server for the upload tests) is missing: run scripts/setup, which installs \
         moto[server] into {}, or set INVIGIL_MOTO_SERVER to a moto_server binary",
        cache.join("invigil/venv-moto").display()
    );
    p
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends one HTTP/1.1 request to 127.0.0.1:port; returns the status.
pub fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Moto {
    /// Starts moto on `port` and waits (at most 30 s) until it answers.
    pub fn start_on(port: u16) -> Moto {
        let bin = moto_binary();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut m = Moto { endpoint: format!("http://127.0.0.1:{port}"), port, child };
        let end = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/").is_none() {
            if let Ok(Some(st)) = m.child.try_wait() {
                panic!("moto_server exited at start: {st}");
            }
            assert!(Instant::now() < end, "moto_server did not answer on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    pub fn start() -> Moto {
        Self::start_on(free_port())
    }

    pub fn create_bucket(&self, name: &str) {
        let st = http(self.port, "PUT", &format!("/{name}"));
        assert_eq!(st, Some(200), "creating bucket {name}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `HEAD /path` on 127.0.0.1:port: (status, Content-Length).
pub fn head(port: u16, path: &str) -> Option<(u16, Option<u64>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let len = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok());
    Some((status, len))
}
