//! The agent under a stand-in for systemd: a NOTIFY_SOCKET datagram socket.
//! READY=1 comes once frames flow; WATCHDOG=1 keeps coming while frames are
//! analysed and stops when the camera stalls (so systemd would restart it).

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use invigil_e2e::{desk_config, fifo_camera, invigil_bin};

/// Messages received on `sock` until `deadline`, each with its arrival time.
fn drain(sock: &UnixDatagram, until: Instant, out: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).to_string()));
        }
    }
}

#[test]
fn ready_then_watchdog_pings_while_frames_flow_and_none_when_the_camera_stalls() {
    let dir = tempfile::tempdir().unwrap();
    // The camera: a FIFO fed with 3 s of real video as raw Y4M, then kept
    // open with nothing more written — a camera that hangs.
    let (fifo, y4m_bytes) = fifo_camera(dir.path(), 90);

    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let config = desk_config(dir.path(), &fifo, &[]);
    let mut child = Command::new(invigil_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Feed the camera; keep the FIFO open afterwards so the source hangs
    // instead of ending.
    let fifo_path = fifo.clone();
    let (keep_tx, keep_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        // Read-write open of a FIFO never blocks (Linux), so this thread
        // cannot hang even if the agent never opens its end; writes block
        // only while the agent is not reading.
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&fifo_path).unwrap();
        let _ = f.write_all(&y4m_bytes);
        let _ = keep_rx.recv_timeout(Duration::from_secs(60));
    });
    let start = Instant::now();
    let mut msgs = Vec::new();
    drain(&sock, start + Duration::from_secs(14), &mut msgs);
    let _ = keep_tx.send(());
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    // Not joined: if the agent died early the writer may block on a full
    // FIFO; the thread ends with the test process.
    drop(writer);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let ready = msgs.iter().position(|(_, m)| m.lines().any(|l| l == "READY=1"));
    let ready = ready.unwrap_or_else(|| panic!("no READY=1 in {msgs:?}\n{stderr}"));
    let pings: Vec<Instant> =
        msgs.iter().filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).map(|(t, _)| *t).collect();
    assert!(pings.len() >= 4, "{} pings while 3 s of frames flowed (every 0.5 s expected): {msgs:?}", pings.len());
    assert!(msgs[..ready].iter().all(|(_, m)| !m.contains("WATCHDOG=1")), "no ping before READY");
    // The stall: the last ping is well before the end of the observation.
    let last = *pings.last().unwrap();
    let quiet = start + Duration::from_secs(14) - last;
    assert!(quiet >= Duration::from_secs(5), "pings went on while the camera stalled (quiet {quiet:?}): {msgs:?}");
    assert!(
        msgs.iter().any(|(_, m)| m.contains("STATUS=no frames from the camera")),
        "status tells the stall: {msgs:?}"
    );
}
