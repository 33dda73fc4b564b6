//! A camera whose stream ends mid-exam (a USB camera unplugged, a CSI cable
//! knocked): the agent scores `camera_lost`, opens an incident at once,
//! restarts the camera with backoff, and scores real frames again.
//!
//! The camera is a FIFO fed with real video as raw Y4M: closing the writer
//! ends the stream; the agent's next start opens the FIFO again.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use invigil_e2e::{Agent, desk_config, fifo_camera, spool_scores, wait_for};

const O_NONBLOCK: i32 = 0o4000;

/// Opens the FIFO for writing once the agent has it open for reading
/// (a non-blocking open fails with ENXIO until then), within `limit`.
fn open_when_read(fifo: &Path, limit: Duration) -> std::fs::File {
    wait_for(limit, || std::fs::OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(fifo).ok())
        .expect("the agent opened its camera")
}

/// Writes all of `bytes` to a non-blocking FIFO, waiting while it is full.
fn feed(f: &mut std::fs::File, bytes: &[u8], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut rest = bytes;
    while !rest.is_empty() {
        if Instant::now() > deadline {
            return Err("the agent stopped reading its camera".into());
        }
        match f.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("after {} of {} bytes: {e}", bytes.len() - rest.len(), bytes.len())),
        }
    }
    Ok(())
}

fn lost(reasons: &str) -> bool {
    reasons.contains("camera_lost")
}

#[test]
fn a_camera_stream_that_ends_is_an_incident_then_the_camera_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, video) = fifo_camera(dir.path(), 90);
    let spool = dir.path().join("spool.sqlite");
    let config = desk_config(
        dir.path(),
        &fifo,
        &[
            ("spool", "commit_interval_ms = 200"),
            ("server", "listen = \"127.0.0.1:0\""),
            ("session", "always_on = true"),
            // The camera is carphone, whose man talks the whole time
            // (tests/e2e/score_video.rs); this test is about the camera.
            ("score", "talking = false"),
        ],
    );
    let agent = Agent::start(dir.path(), &config);

    // 3 s of a face, then the writer closes: the stream ends.
    let mut cam = open_when_read(&fifo, Duration::from_secs(30));
    let fed = feed(&mut cam, &video, Duration::from_secs(60));
    drop(cam);
    if let Err(e) = fed {
        agent.signal("KILL");
        panic!("feeding the camera: {e}\n{}", String::from_utf8_lossy(&agent.wait(Duration::from_secs(10)).stderr));
    }
    // The agent saw the end (a camera_lost score is spooled) and has let go
    // of the FIFO; its restart (after a 1 s backoff) opens it again.
    let seen_lost = wait_for(Duration::from_secs(30), || spool_scores(&spool).iter().any(|r| lost(&r.2)).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    let mut cam = seen_lost.map(|_| open_when_read(&fifo, Duration::from_secs(30)));
    // Kept open afterwards: the camera then stalls rather than ends.
    let fed = cam.as_mut().map(|cam| feed(cam, &video, Duration::from_secs(60)));
    // Scores from the restarted camera: a face again, after the lost one.
    let recovered = wait_for(Duration::from_secs(30), || {
        let rows = spool_scores(&spool);
        let i = rows.iter().position(|r| lost(&r.2))?;
        (rows[i..].iter().filter(|r| !lost(&r.2) && r.1 >= 50).count() >= 30).then_some(())
    });
    agent.signal("INT");
    // A FIFO has no way to interrupt a blocked read (a camera device has):
    // closing the writer lets the agent's source stop.
    std::thread::sleep(Duration::from_millis(500));
    drop(cam);
    let out = agent.wait(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(seen_lost.is_some(), "no camera_lost score after the stream ended\n{stderr}");
    assert_eq!(fed, Some(Ok(())), "feeding the restarted camera\n{stderr}");
    assert!(recovered.is_some(), "no scores of 50 or more after the restart\n{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("camera lost; restarting"), "{stderr}");

    let rows = spool_scores(&spool);
    assert!(rows.windows(2).all(|w| w[1].0 > w[0].0), "frame numbers keep increasing across the restart");
    let first_lost = rows.iter().position(|r| lost(&r.2)).unwrap();
    assert!(rows[..first_lost].iter().filter(|r| r.1 >= 50).count() >= 60, "the face scored before the end");
    assert_eq!(rows[first_lost].1, 0, "a lost camera scores 0");
    // The incident: camera_lost, opened at the loss, closed once frames
    // with a face came back.
    let conn = rusqlite::Connection::open(&spool).unwrap();
    let incidents: Vec<(String, Option<String>, i64)> = conn
        .prepare("SELECT reasons, ended, min_score FROM incidents ORDER BY started")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let lost_incident = incidents.iter().find(|i| lost(&i.0)).unwrap_or_else(|| panic!("{incidents:?}"));
    assert!(lost_incident.1.is_some(), "closed: {incidents:?}");
    assert_eq!(lost_incident.2, 0);
}
