//! `invigil run` with a looping real video as its camera: frames flow
//! through GStreamer and the real model into a real SQLite spool, and a
//! SIGINT stops it cleanly with every score committed.

use std::time::Duration;

use invigil_e2e::{Agent, asset, desk_config, spool_scores, wait_for};

#[test]
fn run_on_carphone_spools_high_scores_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.sqlite");
    let config = desk_config(
        dir.path(),
        &asset("assets/carphone_pristine.mp4"),
        // carphone's man talks the whole time (tests/e2e/score_video.rs);
        // this test is about the spool, so it scores head and faces only.
        &[
            ("", "device_id = \"e2e-desk\""),
            ("spool", "commit_interval_ms = 200"),
            ("session", "always_on = true"),
            ("score", "talking = false"),
        ],
    );
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

fn bikes_config(dir: &std::path::Path) -> std::path::PathBuf {
    bikes_config_with(dir, "")
}

/// Nobody at the desk (bikes.mp4), always on; `clips` adds `[clips]` keys.
fn bikes_config_with(dir: &std::path::Path, clips: &str) -> std::path::PathBuf {
    desk_config(
        dir,
        &asset("assets/bikes.mp4"),
        &[
            ("", "device_id = \"e2e-desk\""),
            ("spool", "commit_interval_ms = 200"),
            ("clips", clips),
            ("session", "always_on = true"),
        ],
    )
}

/// Frames ffprobe decodes in a video file (0 if it cannot read it).
fn decodable_frames(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

fn files_with_suffix(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(suffix)).collect())
        .unwrap_or_default()
}

#[test]
fn kill_9_mid_clip_leaves_a_clip_that_decodes_and_the_next_start_recovers_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = bikes_config(dir.path());
    let clips = dir.path().join("clips");
    let agent = Agent::start(dir.path(), &config);
    // Nobody at the desk: an incident at once, and a clip being written.
    // Wait until the partial clip holds a few one-second fragments.
    let partial = wait_for(Duration::from_secs(60), || {
        files_with_suffix(&clips, ".mp4.partial")
            .into_iter()
            .find(|p| std::fs::metadata(p).map(|m| m.len() > 300_000).unwrap_or(false))
    })
    .expect("a clip is being written");
    agent.signal("KILL");
    let out = agent.wait(Duration::from_secs(10));
    assert!(!out.status.success());
    let frames = decodable_frames(&partial);
    assert!(frames >= 30, "the interrupted clip decodes: {frames} frames");

    // A restart recovers it as a finished clip and records it in the spool.
    let agent = Agent::start(dir.path(), &config);
    let recovered = partial.with_extension("");
    let ok = wait_for(Duration::from_secs(30), || recovered.exists().then_some(()));
    agent.signal("INT");
    let out = agent.wait(Duration::from_secs(30));
    assert!(ok.is_some(), "{} was not recovered", recovered.display());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = rusqlite::Connection::open(dir.path().join("spool.sqlite")).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM clips WHERE path = ?1", [recovered.display().to_string()], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "the recovered clip is in the spool");
}

#[test]
fn sigint_during_a_clip_finishes_it_and_keeps_every_committed_score() {
    let dir = tempfile::tempdir().unwrap();
    let config = bikes_config(dir.path());
    let clips = dir.path().join("clips");
    let spool = dir.path().join("spool.sqlite");
    let agent = Agent::start(dir.path(), &config);
    wait_for(Duration::from_secs(60), || {
        (!files_with_suffix(&clips, ".mp4.partial").is_empty() && spool_scores(&spool).len() >= 60).then_some(())
    })
    .expect("clip started and scores spooled");
    let before = spool_scores(&spool).len();
    agent.signal("INT");
    let out = agent.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(files_with_suffix(&clips, ".partial").is_empty(), "no partial clip left");
    let finished = files_with_suffix(&clips, ".mp4");
    assert_eq!(finished.len(), 1);
    assert!(decodable_frames(&finished[0]) >= 60);
    let rows = spool_scores(&spool);
    assert!(rows.len() >= before, "{} scores after stop, {before} committed before", rows.len());
    let conn = rusqlite::Connection::open(&spool).unwrap();
    let (n, ended): (i64, Option<String>) =
        conn.query_row("SELECT COUNT(*), MAX(ended) FROM incidents", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(n, 1);
    assert!(ended.is_some(), "the open incident is closed at shutdown");
    let clip_rows: i64 = conn.query_row("SELECT COUNT(*) FROM clips", [], |r| r.get(0)).unwrap();
    assert_eq!(clip_rows, 1);
}

#[test]
fn with_the_session_clip_cap_spent_incidents_are_kept_without_clips() {
    let dir = tempfile::tempdir().unwrap();
    // A cap of 0: the first incident already gets no clip.
    let config = bikes_config_with(dir.path(), "max_per_session = 0\n");
    let spool = dir.path().join("spool.sqlite");
    let agent = Agent::start(dir.path(), &config);
    let incidents = || -> Option<i64> {
        let conn = rusqlite::Connection::open(&spool).ok()?;
        conn.query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0)).ok()
    };
    // An incident opens after the 1.5 s persistence; wait past the 3 s a
    // clip's pre-roll would have needed to start.
    let seen =
        wait_for(Duration::from_secs(60), || (incidents()? >= 1 && spool_scores(&spool).len() >= 150).then_some(()));
    agent.signal("INT");
    let out = agent.wait(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(seen.is_some(), "no incident spooled in 60 s\n{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("clips.max_per_session reached"), "{stderr}");
    assert!(files_with_suffix(&dir.path().join("clips"), ".mp4").is_empty());
    assert!(files_with_suffix(&dir.path().join("clips"), ".partial").is_empty());
    let conn = rusqlite::Connection::open(&spool).unwrap();
    let clips: i64 = conn.query_row("SELECT COUNT(*) FROM clips", [], |r| r.get(0)).unwrap();
    let kept: i64 = conn.query_row("SELECT COUNT(*) FROM incidents WHERE clip_path IS NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(clips, 0);
    assert!(kept >= 1, "the incident is kept, with no clip");
}
