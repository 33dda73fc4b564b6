//! A real full disk under the spool: the agent's spool folder is a 4 MiB
//! tmpfs in a mount namespace of its own (`unshare -Urm`, no privileges
//! needed), nearly all taken by another file. The disk fills within
//! seconds; the agent must keep running, keep its scores in memory and say
//! so in `/healthz`, then, once the other file is gone, commit them all
//! (none lost, none twice) to an intact spool.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use invigil_e2e::{asset, desk_config, invigil_bin, wait_for};

struct Namespaced(Child);

impl Drop for Namespaced {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on 127.0.0.1:port: the body, if anything answered.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|x| x.1.to_string())
}

fn spool_state(port: u16) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&get(port, "/healthz")?).ok()?;
    v["spool"]["state"].as_str().map(str::to_string)
}

/// A counter or gauge from `/metrics`.
fn metric(port: u16, name: &str) -> Option<u64> {
    let body = get(port, "/metrics")?;
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A copy of the spool (database and WAL) taken through the agent's view
/// of its tmpfs. SQLite itself cannot open it there (it resolves the
/// `/proc/PID/root` link to the test's own view); a copy of a live WAL
/// database is still consistent, as after a power cut.
fn snapshot(inside: &Path, to: &Path) -> rusqlite::Connection {
    std::fs::create_dir_all(to).unwrap();
    for f in ["spool.sqlite", "spool.sqlite-wal"] {
        let _ = std::fs::copy(inside.join(f), to.join(f));
    }
    rusqlite::Connection::open(to.join("spool.sqlite")).unwrap()
}

#[test]
fn a_full_disk_keeps_scores_in_memory_and_writes_them_all_once_space_returns() {
    // Needs unprivileged user and mount namespaces (Debian's default). A
    // machine without them says so loudly rather than failing on it.
    let probe = Command::new("unshare").args(["-Urm", "true"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: no user namespaces here (unshare -Urm true: {probe:?}); the full-disk test did not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("spool");
    std::fs::create_dir(&mount).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spool_line = format!("path = \"{}\"\ncommit_interval_ms = 200", mount.join("spool.sqlite").display());
    let listen = format!("listen = \"127.0.0.1:{port}\"");
    let config = desk_config(
        dir.path(),
        &asset("assets/bikes.mp4"),
        &[("spool", &spool_line), ("server", &listen), ("session", "always_on = true")],
    );
    let child = Command::new("unshare")
        .args(["-Urm", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=4m tmpfs \"$1\" && head -c 3950k /dev/zero > \"$1/filler\" \
             && exec \"$2\" run --config \"$3\"",
        )
        .arg("sh")
        .arg(&mount)
        .arg(invigil_bin())
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs (util-linux)");
    let mut agent = Namespaced(child);
    let pid = agent.0.id();
    // The agent's view of its tmpfs (the test's own view is the empty folder).
    let inside: PathBuf = PathBuf::from(format!("/proc/{pid}/root")).join(mount.strip_prefix("/").unwrap());

    let full = wait_for(Duration::from_secs(60), || {
        spool_state(port).filter(|s| s != "ok").or_else(|| agent.0.try_wait().ok().flatten().map(|_| "exited".into()))
    });
    let alive = agent.0.try_wait().unwrap().is_none();
    // Full for a few seconds: scores wait in memory meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    let still = spool_state(port);
    let before = metric(port, "invigil_spool_committed_total");
    // Space comes back.
    let freed = std::fs::remove_file(inside.join("filler"));
    let recovered = wait_for(Duration::from_secs(60), || {
        let n = metric(port, "invigil_spool_committed_total")?;
        (spool_state(port)? == "ok" && n > before.unwrap_or(u64::MAX - 60) + 60).then_some(n)
    });
    let snap = snapshot(&inside, &dir.path().join("snapshot"));
    let frames: Vec<i64> = snap
        .prepare("SELECT frame FROM scores ORDER BY id")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect::<Result<_, _>>())
        .unwrap_or_default();
    let check: Option<String> = snap.query_row("PRAGMA integrity_check", [], |r| r.get(0)).ok();
    // Read after the snapshot: every gap in it was counted before.
    let skipped = metric(port, "invigil_analysis_skipped_frames_total");
    let spool_dropped = metric(port, "invigil_spool_dropped_total");
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
    let status = wait_for(Duration::from_secs(30), || agent.0.try_wait().ok().flatten());
    let mut stderr = String::new();
    let _ = agent.0.stderr.take().unwrap().read_to_string(&mut stderr);

    assert!(alive, "the agent stopped on a full disk\n{stderr}");
    assert_eq!(full.as_deref(), Some("failed"), "/healthz spool while the disk was full\n{stderr}");
    assert_eq!(still.as_deref(), Some("failed"), "still full, still said\n{stderr}");
    assert!(stderr.contains("disk full") && stderr.contains("spool commits work again"), "{stderr}");
    assert!(freed.is_ok(), "{freed:?}");
    assert!(recovered.is_some(), "no new scores committed after space was freed (before: {before:?})\n{stderr}");
    assert_eq!(check.as_deref(), Some("ok"), "spool integrity");
    // Every frame analysed from the first to the last committed, once: the
    // scores that waited in memory were all written when space came back.
    // A busy machine drops frames before analysis (the leaky analysis
    // queue, counted by the agent); only those may be missing.
    assert!(frames.len() > 100, "{} scores", frames.len());
    let repeated: Vec<_> = frames.windows(2).filter(|w| w[1] <= w[0]).collect();
    assert!(repeated.is_empty(), "frames repeated or out of order: {repeated:?}");
    let gaps: Vec<_> = frames.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    let missing: i64 = gaps.iter().map(|w| w[1] - w[0] - 1).sum::<i64>() + frames[0];
    let skipped = skipped.expect("the agent counts frames skipped before analysis");
    assert!(
        missing as u64 <= skipped,
        "{missing} frames missing around the full disk (gaps {gaps:?}) but only {skipped} dropped before analysis"
    );
    assert_eq!(spool_dropped, Some(0), "records dropped before the spool");
    if missing > 0 {
        eprintln!("{missing} frames dropped before analysis (busy machine): gaps {gaps:?}");
    }
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
}
