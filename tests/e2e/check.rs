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

/// What `invigil run` refuses, `invigil check` fails with the same message:
/// both build the same plan (agent/src/cmds/plan.rs).
#[test]
fn check_fails_every_config_that_run_refuses_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.token");
    std::fs::write(&blank, "\n").unwrap();
    let creds = dir.path().join("s3.credentials");
    std::fs::write(&creds, "access_key_id = a\n").unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("storage", "url = \"ftp://clips\"".into(), "storage.url"),
        ("storage", "url = \"s3://clips/desks\"".into(), "storage.credentials_file"),
        ("storage", format!("url = \"s3://clips\"\ncredentials_file = \"{}\"", creds.display()), "secret_access_key"),
        ("storage", "url = \"file:///tmp\"\nendpoint = \"s3.example\"".into(), "storage.endpoint"),
        ("sync", format!("endpoint = \"http://127.0.0.1:9/b\"\ntoken_file = \"{}\"", blank.display()), "empty"),
        ("server", format!("token_file = \"{}\"", blank.display()), "server.token_file"),
    ];
    for (section, lines, needle) in cases {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let cfg = desk_config(sub.path(), &asset("assets/carphone_pristine.mp4"), &[(section, &lines)]);
        let run = invigil(sub.path(), &["run", "--config", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&run.stderr).trim().to_string();
        assert_eq!(run.status.code(), Some(2), "run with [{section}] {lines}: {err}");
        let message = err.strip_prefix("invigil: error: ").unwrap_or(&err).to_string();
        assert!(message.contains(needle), "[{section}] {lines}: {message}");
        let check = invigil(sub.path(), &["check", "--config", cfg.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&check.stdout);
        assert_eq!(check.status.code(), Some(1), "check passed what run refused ([{section}] {lines}):\n{text}");
        assert!(
            text.lines().any(|l| l.starts_with("FAIL") && l.contains(&message)),
            "check does not say {message:?}:\n{text}"
        );
    }
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
