//! `invigil score` on the real videos: a person at the desk scores high,
//! an empty scene scores low.

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

#[test]
fn carphone_a_person_at_the_desk_scores_50_or_more() {
    let (summary, rows) = score("assets/carphone_pristine.mp4");
    assert_eq!(rows.len(), 120, "every frame is scored once");
    assert!(summary.contains("frames:     120"), "{summary}");
    let high = share(&rows, |r| r["focus_score"].as_u64().unwrap() >= 50);
    assert!(high >= 0.9, "only {:.0}% of frames scored 50 or more", high * 100.0);
    let face = share(&rows, |r| r["num_faces"] == 1);
    assert!(face >= 0.95, "a face in only {:.0}% of frames", face * 100.0);
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
