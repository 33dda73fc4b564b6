//! The room console in headless Chromium (the "Must show"): a real
//! hub on a real PostgreSQL, three real agents on file sources (a calm
//! desk, an empty desk, a desk someone leaves and comes back to), and
//! `tests/browser/console.mjs` driving Debian's chromium through
//! playwright-core: login, roster import, start, the three desks live, the
//! empty desk's alert, the incident's clip playing in the page, dismissed
//! with a note, the audit log listing the view and the decision. Here:
//! the clip's duration in the page against the stored MP4 (ffprobe), and
//! the audit rows in PostgreSQL. Latencies are printed (docs/PERFORMANCE.md),
//! bounded generously. `INVIGIL_CONSOLE_SHOTS=DIR` saves the screenshots.
//!
//! Needs chromium, node and playwright-core: `tests/browser/install.sh`
//! (scripts/test runs it first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use invigil_e2e::hub::{self, Hub};
use invigil_e2e::{Agent, asset};

const PASSWORD: &str = "correct horse battery";

/// carphone (a face), bikes (nobody), carphone again: 4 s, 4 s, 4 s at 320x240.
fn leaves_and_returns(dir: &Path) -> PathBuf {
    let out = dir.join("leaves.mp4");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(asset("assets/carphone_pristine.mp4"))
        .arg("-i")
        .arg(asset("assets/bikes.mp4"))
        .args([
            "-filter_complex",
            "[0]scale=320:240,setsar=1,fps=30,split[a][c];[1]scale=320:240,setsar=1,fps=30,trim=0:4,setpts=PTS-STARTPTS[b];[a][b][c]concat=n=3:v=1:a=0",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg made the leave-and-return video");
    out
}

/// The node folder with playwright-core (tests/browser/install.sh).
fn node_dir() -> PathBuf {
    let out = Command::new(invigil_e2e::root().join("tests/browser/install.sh")).output().unwrap();
    assert!(out.status.success(), "tests/browser/install.sh: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn ffprobe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("ffprobe {}", path.display()))
}

#[test]
fn a_proctor_runs_a_room_and_reviews_the_empty_desks_incident_in_chromium() {
    let node = node_dir();
    let db = invigil_e2e::pg::database("hub_console");
    let dir = tempfile::tempdir().unwrap();
    let hub_cfg = hub::config(dir.path(), &db, "");
    let out = hub::cmd_with_stdin(&hub_cfg, &["user", "add", "pat", "--role", "proctor", "--room", "hall-a"], PASSWORD);
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    let hub = Hub::start(&hub_cfg);
    let leaves = leaves_and_returns(dir.path());
    let desks = [
        ("desk-calm", asset("assets/calm_desk.mp4")),
        ("desk-empty", asset("assets/bikes.mp4")),
        ("desk-leaves", leaves),
    ];
    let mut agents = vec![];
    let mut live = serde_json::Map::new();
    for (desk, video) in &desks {
        let (home, cfg, port) = hub::hub_desk(dir.path(), &hub, desk, "hall-a", video, "length_s = 4\npreroll_s = 1");
        live.insert(desk.to_string(), format!("ws://127.0.0.1:{port}/live").into());
        agents.push((desk.to_string(), port, Agent::start(&home, &cfg)));
    }
    for (desk, port, _) in &agents {
        hub::wait_linked(&hub, desk, *port);
    }
    let roster = dir.path().join("roster.csv");
    std::fs::write(
        &roster,
        "desk,student_id,row,col\ndesk-calm,s-1001,1,1\ndesk-empty,s-1002,1,2\ndesk-leaves,s-1003,2,1\n",
    )
    .unwrap();
    let shots = std::env::var("INVIGIL_CONSOLE_SHOTS").ok();
    let note = "nobody at the desk: the student was excused";
    let args = serde_json::json!({
        "hub": hub.url(), "user": "pat", "password": PASSWORD, "room": "hall-a", "roster": roster,
        "empty_desk": "desk-empty", "desks": desks.iter().map(|d| d.0).collect::<Vec<_>>(),
        "agent_live": live, "shots": shots, "limit_s": 60, "note": note,
    });
    let script = node.join("console.mjs");
    std::fs::copy(invigil_e2e::root().join("tests/browser/console.mjs"), &script).unwrap();
    let out = Command::new("node").arg(&script).arg(args.to_string()).current_dir(&node).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or_default();
    eprintln!("hub_console: report {report}");
    assert!(out.status.success(), "the browser steps failed: {stderr}\n{}", hub.log_text());

    // Latencies (printed for docs/PERFORMANCE.md; bounded generously).
    let live_ms = report["live_ms"].as_object().unwrap();
    assert_eq!(live_ms.len(), 3, "{report}");
    let alert_ms = report["alert_ms"].as_f64().unwrap();
    eprintln!(
        "hub_console: desks live after start (ms) {live_ms:?}; the empty desk's alert {alert_ms} ms after the box opened it"
    );
    assert!(alert_ms < 30_000.0);

    // The clip in the page is the stored clip.
    let incident = report["incident_id"].as_i64().unwrap();
    let mut pg = invigil_e2e::pg::client(&db);
    let key: String =
        pg.query_one("SELECT object_key FROM clips WHERE incident_id = $1 AND part = 0", &[&incident]).unwrap().get(0);
    let stored = ffprobe_duration(&dir.path().join("clips").join(&key));
    let shown = report["video"]["duration"].as_f64().unwrap();
    eprintln!("hub_console: clip {key}: {stored:.3} s stored, {shown:.3} s in the page");
    assert!(report["video"]["readyState"].as_i64().unwrap() >= 3);
    assert!((stored - shown).abs() < 0.1, "the page's clip lasts {shown} s, the stored one {stored} s");

    // PostgreSQL: the view and the decision, by pat, about this incident.
    let rows = pg
        .query(
            "SELECT action, detail::text FROM audit_log WHERE actor = 'pat' AND (detail->>'incident')::bigint = $1 ORDER BY id",
            &[&incident],
        )
        .unwrap();
    let actions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(
        actions.contains(&"clip.view".to_string()) && actions.last().map(String::as_str) == Some("incident.review")
    );
    let detail: serde_json::Value = serde_json::from_str(rows.last().unwrap().get(1)).unwrap();
    assert_eq!((detail["decision"].as_str(), detail["note"].as_str()), (Some("dismissed"), Some(note)));
    for (_, _, agent) in agents {
        agent.signal("TERM");
        let _ = agent.wait(Duration::from_secs(30));
    }
    let _ = hub.stop(Duration::from_secs(10));
}
