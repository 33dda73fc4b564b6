//! `invigil run` with a looping real video as its camera: frames flow
//! through GStreamer and the real model into a real SQLite spool, and a
//! SIGINT stops it cleanly with every score committed.

use std::time::Duration;

use invigil_e2e::{Agent, asset, spool_scores, wait_for};

#[test]
fn run_on_carphone_spools_high_scores_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.sqlite");
    let config = dir.path().join("desk.toml");
    std::fs::write(
        &config,
        format!(
            "device_id = \"e2e-desk\"\n[camera]\nsource = \"file:{}\"\n[model]\npath = \"{}\"\n[spool]\npath = \"{}\"\ncommit_interval_ms = 200\n[session]\nalways_on = true\n",
            asset("assets/carphone_pristine.mp4").display(),
            asset("models/face_detection_short_range.tflite").display(),
            spool.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(dir.path(), &config);
    // 150 frames: past the end of the 120-frame file, so looping is exercised.
    let seen = wait_for(Duration::from_secs(60), || {
        let n = spool_scores(&spool).len();
        (n >= 150).then_some(n)
    });
    agent.signal("INT");
    let out = agent.wait(Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(seen.is_some(), "fewer than 150 scores spooled in 60 s\n{stderr}");
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    let rows = spool_scores(&spool);
    let high = rows.iter().filter(|r| r.1 >= 50).count() as f64 / rows.len() as f64;
    assert!(high >= 0.9, "{:.0}% of {} spooled scores at 50 or more", high * 100.0, rows.len());
    let bad: Vec<_> = rows.windows(2).filter(|w| w[1].0 <= w[0].0).collect();
    assert!(bad.is_empty(), "frames spooled out of order: {bad:?}");
    // Printed live scores on stdout.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.contains("score 100") || l.contains("score  99")), "{stdout}");
    let conn = rusqlite::Connection::open(&spool).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
