//! Unit tests of the spool on real SQLite files.
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::schema::UPGRADES;
use super::writer::shed;
use super::*;
use crate::domain::{Incident, Score};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn now() -> DateTime<Utc> {
    t("2026-11-24T09:00:00Z")
}

fn row(frame: u64, score: u8) -> Record {
    Record::Score(Score {
        session_id: Some("s1".into()),
        student_id: Some("x".into()),
        frame,
        ts: t("2026-11-24T09:00:00.000Z"),
        focus_score: score,
        num_faces: 1,
        yaw_deg: Some(1.0),
        pitch_deg: None,
        reasons: vec![],
    })
}

#[test]
fn rows_committed_by_the_writer_are_in_the_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/spool.sqlite");
    let (w, h) = SpoolWriter::start(Spool::open(&path).unwrap(), Duration::from_millis(50)).unwrap();
    for f in 0..100 {
        w.push(row(f, (f % 101) as u8));
    }
    w.close();
    h.join().unwrap();
    let s = Spool::open(&path).unwrap();
    let st = s.stats(50).unwrap();
    assert_eq!(st.scores, 100);
    assert_eq!(st.scores_pending, 100);
    assert_eq!(st.scores_below_threshold, 50);
    let frames: Vec<i64> = s
        .conn
        .prepare("SELECT frame FROM scores ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(frames, (0..100).collect::<Vec<_>>());
    s.integrity_check().unwrap();
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    drop(Spool::open(&path).unwrap());
    Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    let e = Spool::open(&path).err().unwrap().to_string();
    assert!(e.contains("newer") && e.contains("spool.sqlite"), "{e}");
}

#[test]
fn reopening_keeps_rows_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    Spool::open(&path).unwrap().commit(&[row(1, 90), row(2, 10)]).unwrap();
    let s = Spool::open(&path).unwrap();
    assert_eq!(s.version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.stats(50).unwrap().scores, 2);
}

#[test]
fn a_file_that_is_not_sqlite_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let e = Spool::open(&path).err().unwrap();
    assert!(matches!(e, SpoolError::Corrupt { .. }), "{e}");
}

/// The schema of a file as SQLite describes it: every table's columns
/// (name, type, not null, default, primary key) and every index's
/// columns, by name. Whitespace in `sqlite_master.sql` is ignored.
fn describe(conn: &Connection) -> Vec<String> {
    let mut out = vec![];
    let objects: Vec<(String, String)> = conn
        .prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (kind, name) in objects {
        out.push(format!("{kind} {name}"));
        let q = if kind == "table" {
            format!(
                "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || IFNULL(dflt_value, '-') || ' ' || pk FROM pragma_table_info('{name}')"
            )
        } else {
            format!("SELECT IFNULL(name, '-') || ' ' || \"desc\" || ' ' || key FROM pragma_index_xinfo('{name}')")
        };
        let cols: Vec<String> =
            conn.prepare(&q).unwrap().query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
        out.extend(cols.into_iter().map(|c| format!("  {c}")));
    }
    out
}

#[test]
fn an_upgraded_v1_spool_equals_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    // A v1 file as the v1 build wrote it, with rows.
    let old = dir.path().join("v1.sqlite");
    {
        let c = Connection::open(&old).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch(UPGRADES[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute_batch(
            "INSERT INTO scores (frame, ts, focus_score, num_faces, reasons) VALUES (1, '2026-11-20T09:00:00.000Z', 90, 1, '[]');
             INSERT INTO incidents (id, started, min_score, reasons) VALUES ('i1', '2026-11-20T09:00:00.000Z', 10, '[]');
             INSERT INTO clips (incident_id, path) VALUES ('i1', '/c/i1.mp4');",
        )
        .unwrap();
    }
    let upgraded = Spool::open(&old).unwrap();
    assert_eq!(upgraded.version().unwrap(), SCHEMA_VERSION);
    let fresh = Spool::open(&dir.path().join("fresh.sqlite")).unwrap();
    assert_eq!(describe(upgraded.connection()), describe(fresh.connection()));
    let st = upgraded.stats(50).unwrap();
    assert_eq!((st.scores, st.incidents, st.clips, st.clips_pending), (1, 1, 1, 1));
    upgraded.integrity_check().unwrap();
}

#[test]
fn every_upgrade_step_is_listed() {
    assert_eq!(UPGRADES.len() as i64, SCHEMA_VERSION);
}

#[test]
fn a_changed_incident_is_sent_again_even_if_its_batch_was_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&dir.path().join("spool.sqlite")).unwrap();
    let inc = |ended: Option<&str>| {
        Record::Incident(Incident {
            id: "i1".into(),
            session_id: Some("s1".into()),
            student_id: Some("x".into()),
            started: t("2026-11-24T09:00:00.000Z"),
            ended: ended.map(t),
            min_score: 10,
            reasons: vec![],
            clip_path: None,
        })
    };
    s.commit(&[row(1, 90), inc(None)]).unwrap();
    let b = s.form_batch(100, 10, now(), |id| format!("b{id}"), |_, _| b"{}".to_vec()).unwrap().unwrap();
    assert_eq!((b.scores, b.incidents), (1, 1));
    // Closed while the batch is in flight.
    s.commit(&[inc(Some("2026-11-24T09:00:05.000Z"))]).unwrap();
    s.finish_batch(&b, BatchOutcome::Delivered, now()).unwrap();
    let st = s.stats(50).unwrap();
    assert_eq!((st.scores_synced, st.incidents_pending), (1, 1));
    let b2 = s.form_batch(100, 10, now(), |id| format!("b{id}"), |_, _| b"{}".to_vec()).unwrap().unwrap();
    assert_eq!((b2.scores, b2.incidents), (0, 1));
    s.finish_batch(&b2, BatchOutcome::Delivered, now()).unwrap();
    assert_eq!(s.stats(50).unwrap().incidents_pending, 0);
    assert!(s.form_batch(100, 10, now(), |id| format!("b{id}"), |_, _| vec![]).unwrap().is_none());
}

#[test]
fn retention_deletes_only_old_delivered_scores_and_never_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&dir.path().join("spool.sqlite")).unwrap();
    s.commit(&(0..10).map(|f| row(f, 90)).collect::<Vec<_>>()).unwrap();
    let b = s.form_batch(5, 10, t("2026-11-24T08:00:00Z"), |id| format!("b{id}"), |_, _| vec![]).unwrap().unwrap();
    s.finish_batch(&b, BatchOutcome::Delivered, t("2026-11-24T09:00:00.000Z")).unwrap();
    assert_eq!(s.prune(t("2026-11-24T08:00:00Z")).unwrap(), 0, "not old enough");
    assert_eq!(s.prune(t("2026-11-25T09:00:00Z")).unwrap(), 5);
    let st = s.stats(50).unwrap();
    assert_eq!((st.scores, st.scores_pending), (5, 5));
    // The next batch still starts after the pruned ones.
    let b2 = s.form_batch(100, 10, t("2026-11-24T08:00:01Z"), |id| format!("b{id}"), |_, _| vec![]).unwrap().unwrap();
    assert_eq!((b2.first_score, b2.last_score), (Some(6), Some(10)));
}

#[test]
fn a_batch_holds_one_session_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&dir.path().join("spool.sqlite")).unwrap();
    let mut other = row(3, 50);
    if let Record::Score(r) = &mut other {
        r.session_id = Some("s2".into());
    }
    s.commit(&[row(1, 90), row(2, 90), other, row(4, 90)]).unwrap();
    let mut sizes = vec![];
    while let Some(b) =
        s.form_batch(100, 10, now(), |id| format!("b{id}"), |r, _| r.session_id.clone().unwrap().into_bytes()).unwrap()
    {
        sizes.push((b.scores, String::from_utf8(b.body.clone()).unwrap()));
        s.finish_batch(&b, BatchOutcome::Delivered, now()).unwrap();
    }
    assert_eq!(sizes, vec![(2, "s1".into()), (1, "s2".into()), (1, "s1".into())]);
}

#[test]
fn the_queue_sheds_oldest_scores_but_keeps_incidents() {
    let stats = WriterStats::default();
    let mut v = vec![Record::Incident(Incident {
        id: "i1".into(),
        session_id: None,
        student_id: None,
        started: t("2026-11-24T09:00:00Z"),
        ended: None,
        min_score: 10,
        reasons: vec![],
        clip_path: None,
    })];
    v.extend((0..MAX_PENDING as u64 + 5).map(|f| row(f, 80)));
    shed(&mut v, &stats);
    assert_eq!(v.len(), MAX_PENDING);
    assert!(matches!(v[0], Record::Incident(_)));
    assert!(matches!(&v[1], Record::Score(s) if s.frame == 6));
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 6);
}

#[test]
fn the_writer_prunes_delivered_scores_once_they_are_older_than_retention_on_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let start = t("2026-11-24T09:00:00Z");
    let clock = crate::clock::SimulatedClock::new(start);
    let mut s = Spool::open(&path).unwrap();
    s.commit(&(0..10).map(|f| row(f, 90)).collect::<Vec<_>>()).unwrap();
    let b = s.form_batch(10, 10, start, |id| format!("b{id}"), |_, _| vec![]).unwrap().unwrap();
    s.finish_batch(&b, BatchOutcome::Delivered, start).unwrap();
    let (w, h) = SpoolWriter::start_with_clock(s, Duration::from_millis(10), clock.clone()).unwrap();
    let committed = |n: u64| {
        for _ in 0..1000 {
            if w.stats.commits.load(Ordering::SeqCst) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the writer did not commit");
    };
    // 23 hours later: not old enough (retention is 24 h).
    clock.advance(Duration::from_secs(23 * 3600));
    w.push(row(10, 90));
    committed(1);
    assert_eq!(w.stats.pruned.load(Ordering::SeqCst), 0);
    // 25 hours after delivery: the ten delivered scores go, the new one stays.
    clock.advance(Duration::from_secs(2 * 3600));
    w.push(row(11, 90));
    w.close();
    h.join().unwrap();
    assert_eq!(w.stats.pruned.load(Ordering::SeqCst), 10);
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.scores, st.scores_pending), (2, 2));
}
