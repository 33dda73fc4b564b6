//! Known errors of the spool file, on real files: damaged, torn, full,
//! too new. Each test names what it shows.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use agent::spool::{BatchOutcome, SCHEMA_VERSION, Spool, SpoolError, SpoolLimits, SpoolWriter};
use support::{incident, score, wait_for};

fn count(path: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_garbage_file_is_reported_corrupt_with_its_path_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let e = Spool::open(&path).err().expect("garbage must not open");
    assert!(matches!(e, SpoolError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("spool.sqlite"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "never overwritten");
}

#[test]
fn a_torn_database_file_fails_its_integrity_check_instead_of_being_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    {
        let mut s = Spool::open(&path).unwrap();
        for chunk in 0..20 {
            s.commit(&(chunk * 500..(chunk + 1) * 500).map(score).collect::<Vec<_>>()).unwrap();
        }
    } // closing checkpoints the WAL into the file
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 64 * 4096, "{len}");
    // Cut the file in the middle of a page, as a torn copy would be.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2 + 100).unwrap();
    drop(f);
    let torn = std::fs::read(&path).unwrap();
    match Spool::open(&path) {
        Err(e) => assert!(matches!(e, SpoolError::Corrupt { .. }), "{e}"),
        Ok(s) => {
            let e = s.integrity_check().expect_err("a torn file must fail integrity_check");
            assert!(matches!(e, SpoolError::Corrupt { .. }), "{e}");
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), torn, "left as it was for inspection");
}

#[test]
fn a_truncated_wal_loses_only_the_commit_it_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let copy = dir.path().join("crash.sqlite");
    let mut s = Spool::open(&path).unwrap();
    s.commit(&(0..100).map(score).collect::<Vec<_>>()).unwrap();
    s.commit(&(100..200).map(score).collect::<Vec<_>>()).unwrap();
    let wal_before_last = std::fs::metadata(format!("{}-wal", path.display())).unwrap().len();
    s.commit(&(200..300).map(score).collect::<Vec<_>>()).unwrap();
    // The files as a crash leaves them (the spool is still open: no
    // checkpoint), with the last commit's WAL frames torn.
    std::fs::copy(&path, &copy).unwrap();
    std::fs::copy(format!("{}-wal", path.display()), format!("{}-wal", copy.display())).unwrap();
    let wal = std::fs::OpenOptions::new().write(true).open(format!("{}-wal", copy.display())).unwrap();
    wal.set_len(wal_before_last + 1000).unwrap();
    drop(wal);
    drop(s);
    let c = Spool::open(&copy).unwrap();
    c.integrity_check().unwrap();
    let st = c.stats(50).unwrap();
    assert_eq!(st.scores, 200, "the first two commits survive whole, the torn third is gone whole");
    assert_eq!(count(&copy, "SELECT MAX(frame) FROM scores"), 199);
}

#[test]
fn a_spool_from_a_newer_build_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    drop(Spool::open(&path).unwrap());
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    let before = std::fs::read(&path).unwrap();
    let e = Spool::open(&path).err().unwrap();
    assert!(matches!(e, SpoolError::TooNew { .. }), "{e}");
    assert!(Spool::open_read_only(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

fn small(path: &std::path::Path, max_bytes: u64) -> Spool {
    let mut s = Spool::open(path).unwrap();
    s.set_limits(SpoolLimits { max_bytes, ..Default::default() }).unwrap();
    s
}

#[test]
fn a_full_spool_drops_delivered_scores_first_then_the_oldest_undelivered_and_never_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let mut s = small(&path, 400 << 10);
    // Half delivered, half pending, and incidents.
    s.commit(&(0..1000).map(score).collect::<Vec<_>>()).unwrap();
    let b = s.form_batch(1000, 0, chrono::Utc::now(), |id| format!("b{id}"), |_, _| vec![]).unwrap().unwrap();
    s.finish_batch(&b, BatchOutcome::Delivered, chrono::Utc::now()).unwrap();
    s.commit(&[incident("i1", None), incident("i2", None)]).unwrap();
    let (w, h) = SpoolWriter::start(s, Duration::from_millis(20)).unwrap();
    // Far more than fits in 400 KiB.
    for f in 1000..12_000 {
        w.push(score(f));
        if f % 500 == 0 {
            w.push(incident(&format!("i{f}"), None));
        }
        if f % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    w.close();
    h.join().unwrap();
    let st = &w.stats;
    let (sd, su) = (st.shed_delivered.load(Ordering::Relaxed), st.shed_undelivered.load(Ordering::Relaxed));
    assert_eq!(sd, 1000, "every delivered score went first");
    assert!(su > 0, "then undelivered ones");
    assert_eq!(st.dropped.load(Ordering::Relaxed), 0, "nothing dropped from memory");
    assert_eq!(st.failed_commits.load(Ordering::Relaxed), 0, "every commit made it after shedding");
    assert!(std::fs::metadata(&path).unwrap().len() <= 400 << 10);
    let sp = Spool::open(&path).unwrap();
    let stats = sp.stats(50).unwrap();
    assert_eq!(stats.incidents, 2 + 22, "no incident dropped");
    assert_eq!(stats.scores_synced, 0);
    assert_eq!((stats.shed_delivered, stats.shed_undelivered), (sd as i64, su as i64), "counted in the file too");
    // What is left is the newest, contiguous, ending with the last pushed.
    let (lo, hi, n) = (
        count(&path, "SELECT MIN(frame) FROM scores"),
        count(&path, "SELECT MAX(frame) FROM scores"),
        count(&path, "SELECT COUNT(*) FROM scores"),
    );
    assert_eq!(hi, 11_999);
    assert_eq!(hi - lo + 1, n, "the oldest were dropped, no holes");
    assert_eq!(n as u64, 12_000 - 1000 - su);
    sp.integrity_check().unwrap();
}

#[test]
fn a_full_spool_keeps_accepting_and_recovers_when_space_returns() {
    support::logs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    // Fill the file with what may never be dropped: incidents.
    let mut s = small(&path, 200 << 10);
    let mut i = 0;
    loop {
        let batch: Vec<_> = (i..i + 50).map(|k| incident(&format!("inc-{k:06}-{}", "x".repeat(200)), None)).collect();
        match s.commit(&batch) {
            Ok(()) => i += 50,
            Err(SpoolError::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(i < 100_000, "never filled");
    }
    let (w, h) = SpoolWriter::start(s, Duration::from_millis(20)).unwrap();
    // Analysis goes on: pushes return (they only queue), the writer reports.
    for f in 0..2000 {
        w.push(score(f));
    }
    let failing = wait_for(Duration::from_secs(5), || w.stats.failing.load(Ordering::Relaxed).then_some(()));
    assert!(failing.is_some(), "a full file is reported");
    assert!(w.stats.full.load(Ordering::Relaxed));
    assert!(w.stats.failed_commits.load(Ordering::Relaxed) >= 1);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM scores"), 0);
    assert!(!support::log_lines("WARN", &["spool full", &path.display().to_string()]).is_empty());
    // Space returns: everything kept in memory is committed, in order.
    w.set_max_bytes(8 << 20);
    let ok = wait_for(Duration::from_secs(5), || {
        (!w.stats.failing.load(Ordering::Relaxed) && count(&path, "SELECT COUNT(*) FROM scores") == 2000).then_some(())
    });
    w.close();
    h.join().unwrap();
    assert!(ok.is_some(), "did not recover: {:?}", w.stats);
    assert_eq!(w.stats.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM incidents"), i as i64);
    assert_eq!(count(&path, "SELECT MAX(frame) - MIN(frame) + 1 FROM scores"), 2000);
}
