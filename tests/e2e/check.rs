//! `invigil check`: one line per check, exit 1 when any fails.

use invigil_e2e::{asset, desk_config, invigil};

#[test]
fn a_healthy_box_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = desk_config(dir.path(), &asset("assets/carphone_pristine.mp4"), &[]);
    let out = invigil(dir.path(), &["check", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for name in ["config", "model", "camera", "encoder", "spool", "clips", "upstream"] {
        assert!(text.lines().any(|l| l.starts_with("ok") && l.contains(name)), "{name} missing in\n{text}");
    }
}

#[test]
fn an_unreachable_upstream_fails_the_check_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on, on loopback.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("endpoint = \"http://127.0.0.1:{port}/batch\"");
    let cfg = desk_config(dir.path(), &asset("assets/carphone_pristine.mp4"), &[("sync", &endpoint)]);
    let out = invigil(dir.path(), &["check", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = text.lines().find(|l| l.contains("upstream")).unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains(&format!("127.0.0.1:{port}")) && line.contains("unreachable"),
        "{line}"
    );
    // The other checks still ran and passed.
    assert!(text.lines().any(|l| l.starts_with("ok") && l.contains("spool")), "{text}");
}

#[test]
fn a_missing_model_fails_its_line_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("desk.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = \"/nonexistent/m.tflite\"\n[spool]\npath = \"{}\"\n[clips]\ndir = \"{}\"\n",
            dir.path().join("s.sqlite").display(),
            dir.path().join("c").display()
        ),
    )
    .unwrap();
    let out = invigil(dir.path(), &["check", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    let line = text.lines().find(|l| l.contains("model")).unwrap();
    assert!(line.starts_with("FAIL") && line.contains("/nonexistent/m.tflite"), "{line}");
}

#[test]
fn spool_requeue_dead_names_a_missing_spool_and_reports_what_it_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = desk_config(dir.path(), &asset("assets/carphone_pristine.mp4"), &[]);
    let args = ["spool", "requeue-dead", "--config", cfg.to_str().unwrap()];
    let out = invigil(dir.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spool.sqlite") && err.contains("no such file"), "{err}");
    // `check` creates the spool; nothing is dead-lettered in it.
    assert!(invigil(dir.path(), &["check", "--config", cfg.to_str().unwrap()]).status.success());
    let out = invigil(dir.path(), &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("requeued 0 scores and 0 incidents"), "{text}");
}

#[test]
fn check_says_which_backend_runs_the_model_and_why_not_litert() {
    let dir = tempfile::tempdir().unwrap();
    let video = asset("assets/carphone_pristine.mp4");
    let model_line = |extra: &[(&str, &str)]| {
        let cfg = desk_config(dir.path(), &video, extra);
        let out = invigil(dir.path(), &["check", "--config", cfg.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // LiteRT's own INFO lines stay off stderr.
        assert!(!String::from_utf8_lossy(&out.stderr).contains("INFO: ["), "{}", String::from_utf8_lossy(&out.stderr));
        text.lines().find(|l| l.contains("model")).unwrap().to_string()
    };
    // `auto` with the library that scripts/setup fetched.
    let line = model_line(&[]);
    assert!(line.starts_with("ok") && line.contains("on litert (") && line.contains("libLiteRt.so"), "{line}");
    // `auto` without it: the built-in TensorFlow Lite, and the reason.
    let line = model_line(&[("model", "litert_lib = \"/nonexistent/libLiteRt.so\"")]);
    assert!(line.starts_with("ok") && line.contains("on tflite (LiteRT not used"), "{line}");
    assert!(line.contains("/nonexistent/libLiteRt.so"), "{line}");
    // `litert` without it: the check fails and names the library.
    let line = model_line(&[("model", "backend = \"litert\"\nlitert_lib = \"/nonexistent/libLiteRt.so\"")]);
    assert!(line.starts_with("FAIL") && line.contains("/nonexistent/libLiteRt.so"), "{line}");
}
