//! `invigil score` on the real videos: a calm person at the desk scores
//! high, an empty scene low, a man who talks the whole time (carphone)
//! is flagged `talking`, a man in profile `looking_away`. The desk videos
//! are made by `scripts/fetch-assets` from real portraits.

use invigil_e2e::{asset, invigil, root};

fn score(video: &str) -> (String, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.jsonl");
    let out = invigil(&root(), &["score", asset(video).to_str().unwrap(), "--json", json.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{video}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows = std::fs::read_to_string(&json).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (stdout, rows)
}

fn share(rows: &[serde_json::Value], f: impl Fn(&serde_json::Value) -> bool) -> f64 {
    rows.iter().filter(|r| f(r)).count() as f64 / rows.len() as f64
}

fn has(r: &serde_json::Value, reason: &str) -> bool {
    r["reasons"].as_array().unwrap().iter().any(|x| x == reason)
}

/// The incident lines of the summary: (start s, end s or None for "end").
fn incidents(summary: &str) -> Vec<(f64, Option<f64>)> {
    summary
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" s - "))
        .map(|l| {
            let (a, b) = l.trim().split_once(" - ").unwrap();
            let start = a.trim_end_matches(" s").parse().unwrap();
            let end = b.split_whitespace().next().unwrap();
            (start, (end != "end").then(|| end.parse().unwrap()))
        })
        .collect()
}

const NEW_REASONS: [&str; 3] = ["talking", "gaze_away", "hand_at_face"];

#[test]
fn carphone_looped_three_times_is_talking_from_before_4_s_to_the_end() {
    let (summary, rows) = score("assets/carphone_x3.mp4");
    assert_eq!(rows.len(), 360, "every frame is scored once");
    let from_2s: Vec<_> = rows.iter().filter(|r| r["t_ms"].as_u64().unwrap() >= 2000).cloned().collect();
    let talking = share(&from_2s, |r| has(r, "talking"));
    assert!(talking >= 0.8, "talking on only {:.0}% of frames from 2 s on", talking * 100.0);
    let spans = incidents(&summary);
    assert_eq!(spans.len(), 1, "{summary}");
    assert!(spans[0].0 < 4.0 && spans[0].1.is_none(), "{summary}");
    let face = share(&rows, |r| r["num_faces"] == 1);
    assert!(face >= 0.95, "a face in only {:.0}% of frames", face * 100.0);
}

#[test]
fn a_calm_desk_scores_50_or_more_without_incident_or_new_reasons() {
    let (summary, rows) = score("assets/calm_desk.mp4");
    assert_eq!(rows.len(), 600);
    assert!(summary.contains("incidents:  0"), "{summary}");
    let high = share(&rows, |r| r["focus_score"].as_u64().unwrap() >= 50);
    assert!(high >= 0.95, "only {:.0}% of frames scored 50 or more", high * 100.0);
    for reason in NEW_REASONS {
        let on = share(&rows, |r| has(r, reason));
        assert!(on <= 0.02, "{reason} on {:.1}% of frames", on * 100.0);
    }
}

#[test]
fn a_man_in_profile_from_the_first_second_is_looking_away() {
    let (summary, rows) = score("assets/camera_profile.mp4");
    let away = share(&rows, |r| has(r, "looking_away"));
    assert!(away >= 0.3, "looking_away on only {:.0}% of frames\n{summary}", away * 100.0);
    let low = share(&rows, |r| r["focus_score"].as_u64().unwrap() < 50);
    assert!(low >= 0.5, "only {:.0}% under 50\n{summary}", low * 100.0);
}

#[test]
fn astronaut_at_the_desk_carries_none_of_the_new_reasons() {
    let (summary, rows) = score("assets/astronaut_desk.mp4");
    assert!(summary.contains("incidents:  0"), "{summary}");
    for reason in NEW_REASONS {
        assert!(!rows.iter().any(|r| has(r, reason)), "{reason} on astronaut");
    }
}

#[test]
fn carphone_with_talking_off_is_a_person_at_the_desk_scoring_50_or_more() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("quiet.toml");
    std::fs::write(&cfg, "[score]\ntalking = false\n").unwrap();
    let json = dir.path().join("out.jsonl");
    let video = asset("assets/carphone_pristine.mp4");
    let args = ["score", video.to_str().unwrap(), "--json", json.to_str().unwrap(), "--config", cfg.to_str().unwrap()];
    let out = invigil(&root(), &args);
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{summary}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&json).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 120, "every frame is scored once");
    assert!(summary.contains("frames:     120"), "{summary}");
    let high = share(&rows, |r| r["focus_score"].as_u64().unwrap() >= 50);
    assert!(high >= 0.9, "only {:.0}% of frames scored 50 or more", high * 100.0);
    assert!(!rows.iter().any(|r| has(r, "talking")));
    // The contract's fields are all there.
    for key in [
        "type",
        "device_id",
        "session_id",
        "frame",
        "ts",
        "focus_score",
        "face_detected",
        "num_faces",
        "looking_away",
        "yaw_deg",
        "pitch_deg",
        "reasons",
        "recording",
        "latency_ms",
    ] {
        assert!(rows[0].get(key).is_some(), "missing {key} in {}", rows[0]);
    }
}

#[test]
fn bikes_nobody_at_the_desk_scores_under_50() {
    let (summary, rows) = score("assets/bikes.mp4");
    assert_eq!(rows.len(), 250);
    let low = share(&rows, |r| r["focus_score"].as_u64().unwrap() < 50);
    assert!(low >= 0.9, "only {:.0}% of frames scored under 50", low * 100.0);
    let no_face = share(&rows, |r| r["reasons"].as_array().unwrap().iter().any(|x| x == "no_face"));
    assert!(no_face >= 0.95, "no_face in only {:.0}% of frames", no_face * 100.0);
    assert!(summary.contains("incidents:  1"), "{summary}");
}

#[test]
fn score_draws_the_plot_as_svg_and_png_with_threshold_and_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("bikes.svg");
    let png = dir.path().join("bikes.png");
    for out in [&svg, &png] {
        let o =
            invigil(&root(), &["score", asset("assets/bikes.mp4").to_str().unwrap(), "--plot", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "an SVG document");
    assert!(text.contains("threshold 50") && text.contains("incident") && text.contains("video time"), "labels drawn");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 10_000, "a real picture, not an empty canvas");
    let bad = invigil(&root(), &["score", asset("assets/bikes.mp4").to_str().unwrap(), "--plot", "x.pdf"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("x.pdf"));
}
