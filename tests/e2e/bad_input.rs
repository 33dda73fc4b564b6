//! Bad input stops with one clear line naming what is wrong, and the right exit code.

use std::process::Command;

use invigil_e2e::{asset, invigil, root};

fn one_line(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr).to_string();
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {s}");
    lines[0].to_string()
}

#[test]
fn an_unknown_config_key_is_named_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("desk.toml");
    std::fs::write(&cfg, "[camera]\nsource = \"test\"\nresolution = \"hd\"\n").unwrap();
    let out = invigil(dir.path(), &["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_line(&out.stderr);
    assert!(line.contains("desk.toml") && line.contains("resolution"), "{line}");
}

#[test]
fn a_missing_video_is_named_with_exit_code_2() {
    let out = invigil(&root(), &["score", "/nonexistent/exam.mp4"]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_line(&out.stderr);
    assert!(line.contains("/nonexistent/exam.mp4"), "{line}");
}

#[test]
fn a_missing_camera_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("desk.toml");
    std::fs::write(
        &cfg,
        format!(
            "[camera]\nsource = \"file:/nonexistent/cam.mp4\"\n[model]\npath = \"{}\"\n",
            asset("models/face_detection_short_range.tflite").display()
        ),
    )
    .unwrap();
    let out = invigil(dir.path(), &["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&out.stderr);
    assert!(line.contains("/nonexistent/cam.mp4"), "{line}");
}

#[test]
fn a_missing_model_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("desk.toml");
    std::fs::write(&cfg, "[model]\npath = \"/nonexistent/face.tflite\"\n").unwrap();
    let out =
        invigil(dir.path(), &["score", asset("assets/bikes.mp4").to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&out.stderr);
    assert!(line.contains("/nonexistent/face.tflite") && line.contains("fetch-assets"), "{line}");
}

/// Runs a copy of scripts/fetch-assets in a scratch tree with `--check`.
fn fetch_check(tree: &std::path::Path) -> (Option<i32>, String) {
    std::fs::create_dir_all(tree.join("scripts")).unwrap();
    std::fs::copy(root().join("scripts/fetch-assets"), tree.join("scripts/fetch-assets")).unwrap();
    let out = Command::new("bash").arg(tree.join("scripts/fetch-assets")).arg("--check").output().unwrap();
    (out.status.code(), one_line(&out.stderr))
}

#[test]
fn fetch_assets_names_a_missing_asset() {
    let dir = tempfile::tempdir().unwrap();
    let (code, line) = fetch_check(dir.path());
    assert_eq!(code, Some(1));
    assert!(line.contains("models/face_detection_short_range.tflite is missing"), "{line}");
}

#[test]
fn fetch_assets_names_an_asset_with_a_wrong_checksum() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    let mut model = std::fs::read(asset("models/face_detection_short_range.tflite")).unwrap();
    model[1000] ^= 1;
    std::fs::write(dir.path().join("models/face_detection_short_range.tflite"), model).unwrap();
    let (code, line) = fetch_check(dir.path());
    assert_eq!(code, Some(1));
    assert!(line.contains("models/face_detection_short_range.tflite has sha256"), "{line}");
}

#[test]
fn a_truncated_video_fails_with_the_position_and_keeps_the_frames_already_scored() {
    let dir = tempfile::tempdir().unwrap();
    // bikes.mp4 with its index first (as cameras and phones write it), cut at 60%.
    let whole = dir.path().join("whole.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(asset("assets/bikes.mp4"))
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&whole)
        .status()
        .unwrap();
    assert!(ok.success());
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let json = dir.path().join("scores.jsonl");
    let out = invigil(&root(), &["score", cut.to_str().unwrap(), "--json", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&out.stderr);
    assert!(
        line.contains("cut.mp4") && line.contains("truncated or corrupt") && line.contains(" of 10.00 s"),
        "{line}"
    );
    let kept = std::fs::read_to_string(&json).unwrap().lines().count();
    assert!(kept > 100, "the {kept} frames scored before the cut are kept");
    assert!(line.contains(&format!("the {kept} frames before it were scored")), "{line}");
}
