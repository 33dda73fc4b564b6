//! The hub's command line as school IT scripts it (`../shared/CONTRACTS.md`,
//! "The hub"), run as the built `invigil-hub` against a real PostgreSQL:
//! migrate, device add/revoke, user add (password on stdin), exam
//! start/stop/show --json, and config errors that name the key.

use invigil_e2e::hub::{self, Hub, cmd, cmd_with_stdin, enrol};

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &std::process::Output, code: i32, words: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(err.contains(words), "{what}: {err:?} does not say {words:?}");
    assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
}

#[test]
fn the_command_line_contract_holds() {
    let db = invigil_e2e::pg::database("hub_cli");
    let dir = tempfile::tempdir().unwrap();
    let cfg = hub::config(dir.path(), &db, "");

    assert_eq!(ok(&cmd(&cfg, &["migrate"]), "migrate").trim(), "schema version 3 (was 0)");
    assert_eq!(ok(&cmd(&cfg, &["migrate"]), "migrate again").trim(), "schema version 3 (was 3)");

    let t1 = enrol(&cfg, "desk-1", "hall-a");
    let t2 = enrol(&cfg, "desk-2", "hall-a");
    assert_eq!(t1.len(), 43, "the token, alone on stdout: {t1:?}");
    assert_ne!(t1, t2);
    fails(&cmd(&cfg, &["device", "add", "desk-1", "--room", "hall-a"]), 1, "--rotate", "enrolling twice");
    fails(
        &cmd(&cfg, &["device", "add", "desk/3", "--room", "hall-a"]),
        2,
        "desk: \"desk/3\" is not an id",
        "a bad desk id",
    );
    let listed = ok(&cmd(&cfg, &["device", "list"]), "device list");
    assert_eq!(listed, "desk-1\thall-a\tenrolled\ndesk-2\thall-a\tenrolled\n");

    ok(&cmd_with_stdin(&cfg, &["user", "add", "ada", "--role", "admin"], "correct horse battery\n"), "user add");
    fails(
        &cmd_with_stdin(&cfg, &["user", "add", "pat", "--role", "proctor"], "correct horse battery\n"),
        2,
        "--room",
        "a proctor without rooms",
    );
    fails(
        &cmd_with_stdin(&cfg, &["user", "add", "bob", "--role", "admin"], "short\n"),
        2,
        "shorter than 10",
        "a short password",
    );

    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, "desk,student_id\ndesk-1,s-1\ndesk-7,s-7\n").unwrap();
    let r = roster.to_str().unwrap();
    fails(
        &cmd(&cfg, &["exam", "start", "--room", "hall-a", "--roster", r]),
        2,
        "roster.csv: line 3: desk \"desk-7\" is not enrolled",
        "an unknown desk",
    );
    std::fs::write(&roster, "desk;student_id\n").unwrap();
    fails(
        &cmd(&cfg, &["exam", "start", "--room", "hall-a", "--roster", r]),
        2,
        "line 1: the header must be desk,student_id",
        "a bad header",
    );
    std::fs::write(&roster, "desk,student_id\ndesk-1,s-1\ndesk-2,s-2\n").unwrap();
    let id: i64 =
        ok(&cmd(&cfg, &["exam", "start", "--room", "hall-a", "--roster", r]), "exam start").trim().parse().unwrap();

    // Scores delivered under the session show in `exam show --json`.
    let h = Hub::start(&cfg);
    let session = format!("ex{id}-desk-1");
    let t0 = chrono::Utc::now().timestamp_millis();
    let body = hub::batch_body("desk-1", "desk-1-b1", Some((&session, "s-1")), 0, 30, t0);
    let rep = hub::post_batch(h.port, &t1, "desk-1-b1", &body).unwrap();
    assert_eq!(rep.status, 200, "{}", rep.text());
    let show: serde_json::Value =
        serde_json::from_str(&ok(&cmd(&cfg, &["exam", "show", &id.to_string(), "--json"]), "show")).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    for k in ["id", "room", "state", "desks"] {
        assert!(keys(&show).contains(&k.to_string()), "exam show has {k}: {show}");
    }
    assert_eq!(
        (show["id"].as_i64(), show["room"].as_str(), show["state"].as_str()),
        (Some(id), Some("hall-a"), Some("running"))
    );
    let d1 = &show["desks"][0];
    for k in ["device_id", "student_id", "scores", "first_score_ts", "last_score_ts", "incidents"] {
        assert!(keys(d1).contains(&k.to_string()), "a desk has {k}: {d1}");
    }
    assert_eq!(
        (d1["device_id"].as_str(), d1["student_id"].as_str(), d1["scores"].as_i64()),
        (Some("desk-1"), Some("s-1"), Some(30))
    );
    assert!(d1["first_score_ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(show["desks"][1]["scores"], 0);

    ok(&cmd(&cfg, &["exam", "stop", &id.to_string()]), "exam stop");
    fails(&cmd(&cfg, &["exam", "stop", &id.to_string()]), 1, "already stopped", "stopping twice");
    let show: serde_json::Value =
        serde_json::from_str(&ok(&cmd(&cfg, &["exam", "show", &id.to_string(), "--json"]), "show")).unwrap();
    assert_eq!(show["state"], "stopped");

    // A revoked desk's batches are refused with 401 (the box dead-letters).
    ok(&cmd(&cfg, &["device", "revoke", "desk-2"]), "revoke");
    fails(&cmd(&cfg, &["device", "revoke", "desk-2"]), 1, "not enrolled", "revoking twice");
    let body = hub::batch_body("desk-2", "desk-2-b1", None, 0, 30, t0);
    let mut status = 0;
    for _ in 0..50 {
        status = hub::post_batch(h.port, &t2, "desk-2-b1", &body).unwrap().status;
        if status == 401 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(status, 401);

    // The server stops cleanly on SIGTERM; its log, not a terminal, has
    // no colour codes (journald would keep them as text).
    let log = h.log.clone();
    let st = h.stop(std::time::Duration::from_secs(15));
    assert!(st.success(), "{st}");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("INFO") && !log.contains('\x1b'), "{log:?}");

    // Config errors name the key and exit 2.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("[database]\nurl = \"{db}\"\n[server]\nlisen = \"x\"\n")).unwrap();
    fails(&cmd(&bad, &["migrate"]), 2, "lisen", "an unknown key");
    // With no URL anywhere: required. (On a machine where the hub is
    // installed, /etc/invigil-hub/database.url is the last fallback and
    // would be used: the case cannot be shown there.)
    if !std::path::Path::new("/etc/invigil-hub/database.url").exists() {
        std::fs::write(&bad, "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        fails(&cmd(&bad, &["migrate"]), 2, "database.url: required", "no database");
    }
}
