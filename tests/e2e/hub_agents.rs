//! Real agents on file sources, enrolled at a real hub on a real
//! PostgreSQL: sessions come from the hub (no call to the agents' local
//! API starts or stops them), scores land with the right session and
//! student, the empty desk's incident and its clip reach the hub's storage
//! through the hub (the agents hold no storage keys), and stopping the exam
//! stops the agents' spooling.

use std::path::Path;
use std::time::{Duration, Instant};

use invigil_e2e::hub::{self, Hub};
use invigil_e2e::{Agent, asset, wait_for};

/// The agent's session as its local API shows it (a read, never a start).
fn session_of(port: u16) -> Option<serde_json::Value> {
    let r = hub::get(port, "/session", &[])?;
    let v = r.json();
    let s = v.get("session")?;
    (!s.is_null()).then(|| s.clone())
}

/// The time of the newest score in a spool.
fn last_score_ts(spool: &Path) -> chrono::DateTime<chrono::Utc> {
    let c = rusqlite::Connection::open_with_flags(spool, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ts: String = c.query_row("SELECT ts FROM scores ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    ts.parse().unwrap()
}

fn exam_show(cfg: &Path, id: &str) -> serde_json::Value {
    let out = hub::cmd(cfg, &["exam", "show", id, "--json"]);
    assert!(out.status.success(), "exam show: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn desk_of<'a>(exam: &'a serde_json::Value, device: &str) -> &'a serde_json::Value {
    exam["desks"].as_array().unwrap().iter().find(|d| d["device_id"] == device).expect("the desk in the exam")
}

#[test]
fn an_exam_started_on_the_hub_drives_real_agents_and_their_clips_reach_the_hub() {
    let db = invigil_e2e::pg::database("hub_agents");
    let dir = tempfile::tempdir().unwrap();
    let hub_cfg = hub::config(dir.path(), &db, "");
    let hub = Hub::start(&hub_cfg);
    let mut agents = vec![];
    for (desk, video) in [("desk-calm", "assets/calm_desk.mp4"), ("desk-empty", "assets/bikes.mp4")] {
        let (home, cfg, port) =
            hub::hub_desk(dir.path(), &hub, desk, "hall-a", &asset(video), "length_s = 2\npreroll_s = 1");
        // No storage keys on the box: the config names no [storage] at all.
        assert!(!std::fs::read_to_string(&cfg).unwrap().contains("[storage]"));
        agents.push((desk, port, home.join("spool.sqlite"), Agent::start(&home, &cfg)));
    }
    // Both boxes are linked to the hub.
    for (desk, port, _, _) in &agents {
        hub::wait_linked(&hub, desk, *port);
        assert!(session_of(*port).is_none(), "{desk} has no session before the exam");
    }

    // The exam, started on the hub.
    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, "desk,student_id\ndesk-calm,s-1001\ndesk-empty,s-1002\n").unwrap();
    let started = Instant::now();
    let out = hub::cmd(&hub_cfg, &["exam", "start", "--room", "hall-a", "--roster", roster.to_str().unwrap()]);
    assert!(out.status.success(), "exam start: {}", String::from_utf8_lossy(&out.stderr));
    let exam_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    for (desk, port, _, _) in &agents {
        let s = wait_for(Duration::from_secs(10), || session_of(*port));
        let s = s.unwrap_or_else(|| panic!("{desk}: no session from the hub\n{}", hub.log_text()));
        eprintln!(
            "hub_agents: {desk} in session {} {} ms after exam start",
            s["session_id"],
            started.elapsed().as_millis()
        );
        let student = if *desk == "desk-calm" { "s-1001" } else { "s-1002" };
        assert_eq!(s["student_id"], student);
    }

    // Scores under the session and student, in PostgreSQL; the empty desk's
    // incident with its clip, stored by the hub.
    let done = wait_for(Duration::from_secs(120), || {
        let exam = exam_show(&hub_cfg, &exam_id);
        let calm = desk_of(&exam, "desk-calm");
        let empty = desk_of(&exam, "desk-empty");
        let clip = empty["incidents"].as_array()?.iter().find_map(|i| i["clip"]["size"].as_u64().filter(|&n| n > 0));
        (calm["scores"].as_u64()? > 60 && empty["scores"].as_u64()? > 60 && clip.is_some()).then_some(exam)
    });
    let exam = done.unwrap_or_else(|| {
        panic!("scores or the clip did not reach the hub: {}\n{}", exam_show(&hub_cfg, &exam_id), hub.log_text())
    });
    assert_eq!(desk_of(&exam, "desk-calm")["student_id"], "s-1001");
    assert_eq!(desk_of(&exam, "desk-empty")["student_id"], "s-1002");
    assert!(desk_of(&exam, "desk-calm")["incidents"].as_array().unwrap().is_empty(), "the calm desk: {exam}");
    let mut pg = invigil_e2e::pg::client(&db);
    let wrong: i64 = pg
        .query_one(
            "SELECT COUNT(*) FROM scores s JOIN batches b ON b.id = s.batch_id JOIN desks d ON d.id = b.desk_id
             WHERE d.device_id = 'desk-calm'
               AND (b.session_id IS DISTINCT FROM $1 OR b.student_id IS DISTINCT FROM 's-1001')",
            &[&desk_of(&exam, "desk-calm")["session_id"].as_str()],
        )
        .map(|r| r.get(0))
        .unwrap_or(-1);
    assert_eq!(wrong, 0, "every score of the calm desk carries its session");
    let mp4s: Vec<_> =
        walk(&dir.path().join("clips")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "mp4")).collect();
    assert!(!mp4s.is_empty(), "the clip is in the hub's storage folder");

    // The exam stops: spooling stops too.
    let out = hub::cmd(&hub_cfg, &["exam", "stop", &exam_id]);
    assert!(out.status.success(), "exam stop: {}", String::from_utf8_lossy(&out.stderr));
    let mut cleared = vec![];
    for (desk, port, _, _) in &agents {
        let stopped = wait_for(Duration::from_secs(10), || session_of(*port).is_none().then(chrono::Utc::now));
        cleared.push(stopped.unwrap_or_else(|| panic!("{desk}: still in a session after the exam stopped")));
    }
    // Stopped (and flushed), each spool holds no score analysed after its
    // box left the session: spooling stopped with it.
    for ((desk, _, spool, agent), cleared) in agents.into_iter().zip(cleared) {
        agent.signal("TERM");
        let out = agent.wait(Duration::from_secs(30));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let last = last_score_ts(&spool);
        assert!(last <= cleared, "{desk}: a score at {last} after the session ended at {cleared}");
    }
    let _ = hub.stop(Duration::from_secs(10));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
