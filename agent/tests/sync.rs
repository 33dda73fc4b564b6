//! Score sync against a real HTTP receiver on loopback that injects faults:
//! nothing lost, nothing twice, order kept, refusals dead-lettered once.
//! Time is compressed (100 ms intervals, short backoffs).

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent::spool::{Spool, SpoolWriter};
use agent::sync::{self, Step, SyncSettings, Syncer};
use support::receiver::{Fault, Receiver};
use support::{incident, log_lines, score, wait_for};

fn settings(url: &str) -> SyncSettings {
    let mut s = SyncSettings::new(url, "desk-t");
    s.interval = Duration::from_millis(100);
    s.backoff_min = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(300);
    s.request_timeout = Duration::from_millis(500);
    s.connect_timeout = Duration::from_millis(500);
    s.max_batch_scores = 200;
    s.durable_wait = Duration::from_millis(500);
    s
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn spool_with_scores(path: &std::path::Path, n: u64) {
    let mut s = Spool::open(path).unwrap();
    s.commit(&(0..n).map(score).collect::<Vec<_>>()).unwrap();
}

#[test]
fn every_score_arrives_once_and_in_order_after_upstream_is_down_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let rx = Receiver::start();
    rx.set_down(true);
    let (writer, writer_thread) = SpoolWriter::start(Spool::open(&path).unwrap(), Duration::from_millis(100)).unwrap();
    let sync = sync::spawn(settings(&rx.url), &path, Some(writer.stats.clone())).unwrap();
    const N: u64 = 3000;
    let w = writer.clone();
    let producer = std::thread::spawn(move || {
        for f in 0..N {
            w.push(score(f));
            if f % 1000 == 500 {
                w.push(incident(&format!("inc-{f}"), None));
            }
            std::thread::sleep(Duration::from_micros(700));
        }
    });
    // Down (connections reset at accept) for a second, then flaky: errors,
    // a reset mid-request, an answer slower than the client waits (stored,
    // so the retry is a duplicate key), throttling with Retry-After.
    std::thread::sleep(Duration::from_secs(1));
    // While it is down, the backlog shows in the gauge /metrics reports.
    let backlog = wait_for(Duration::from_secs(10), || {
        let n = sync.stats.pending_scores.load(Ordering::Relaxed);
        (n > 0).then_some(n)
    });
    assert!(backlog.is_some(), "no pending scores reported while upstream was down");
    rx.push_faults([
        Fault::Status(500),
        Fault::Reset,
        Fault::Slow(Duration::from_millis(800)),
        Fault::RetryAfter(503, 1),
        Fault::Status(429),
        Fault::Reset,
        Fault::Status(502),
    ]);
    rx.set_down(false);
    producer.join().unwrap();
    let all = wait_for(Duration::from_secs(30), || (rx.frames().len() as u64 >= N).then_some(()));
    // Drained: the gauge comes back to 0 at the next step.
    let drained =
        wait_for(Duration::from_secs(10), || (sync.stats.pending_scores.load(Ordering::Relaxed) == 0).then_some(()));
    sync.stop(Duration::from_secs(2));
    writer.close();
    writer_thread.join().unwrap();
    assert!(all.is_some(), "only {} of {N} scores arrived", rx.frames().len());
    assert!(drained.is_some(), "pending_scores stayed above 0 after every score arrived");

    let frames: Vec<u64> = rx.frames().into_iter().map(|(_, f)| f).collect();
    assert_eq!(frames, (0..N).collect::<Vec<_>>(), "every score, once, in order");
    // Duplicates by frame across different batch ids: none.
    let mut seen = std::collections::HashMap::new();
    for (batch, f) in rx.frames() {
        assert!(seen.insert(f, batch.clone()).is_none(), "frame {f} stored twice (batch {batch})");
    }
    let log = rx.log();
    assert!(log.iter().any(|r| r.duplicate), "the slow answer's retry reused its key");
    assert!(log.iter().any(|r| r.status == 0), "resets were injected");
    let stored_incidents: Vec<String> = rx
        .stored()
        .iter()
        .flat_map(|b| b["incidents"].as_array().cloned().unwrap_or_default())
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    for id in ["inc-500", "inc-1500", "inc-2500"] {
        assert!(stored_incidents.iter().any(|i| i == id), "{id} missing: {stored_incidents:?}");
    }
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.scores_synced, st.scores_pending, st.batches_pending), (N as i64, 0, 0));
    assert!(st.incidents_pending == 0);
}

/// 100 scores in a spool, a receiver that wants the token "right", and
/// settings (40 scores a batch) whose token file says "wrong".
fn wrong_token(
    dir: &std::path::Path,
    auth_pause: Duration,
) -> (std::path::PathBuf, std::path::PathBuf, Receiver, SyncSettings) {
    let path = dir.join("spool.sqlite");
    spool_with_scores(&path, 100);
    let token = dir.join("token");
    std::fs::write(&token, "wrong\n").unwrap();
    let rx = Receiver::start();
    rx.require_token("right");
    let mut s = settings(&rx.url);
    s.max_batch_scores = 40;
    s.token_file = Some(token.clone());
    s.auth_pause = auth_pause;
    (path, token, rx, s)
}

#[test]
fn a_401_dead_letters_one_batch_with_one_log_line_and_no_hot_loop() {
    support::logs();
    let dir = tempfile::tempdir().unwrap();
    let (path, token, rx, mut s) = wrong_token(dir.path(), Duration::from_secs(60));
    s.interval = Duration::from_millis(20);
    let sync = sync::spawn(s, &path, None).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // 75 intervals passed: one request, not 75.
    let log = rx.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].status, 401);
    assert_eq!(log[0].auth.as_deref(), Some("Bearer wrong"));
    assert_eq!(sync.stats.dead_lettered.load(Ordering::Relaxed), 1);
    assert_eq!(sync.stats.dead_lettered_scores.load(Ordering::Relaxed), 40);
    assert!(sync.stats.paused.load(Ordering::Relaxed));
    let lines = log_lines("ERROR", &["401", &rx.url]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("dead-lettered") && lines[0].contains("sync.token_file"), "{}", lines[0]);
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.scores_dead, st.scores_pending, st.batches_dead), (40, 60, 1));

    // A corrected token resumes sending at once, with the rest.
    std::fs::write(&token, "right\n").unwrap();
    let done =
        wait_for(Duration::from_secs(10), || (sync.stats.scores_sent.load(Ordering::Relaxed) == 60).then_some(()));
    sync.stop(Duration::ZERO);
    assert!(done.is_some(), "the rest was not sent after the token changed");
    let frames: Vec<u64> = rx.frames().into_iter().map(|(_, f)| f).collect();
    assert_eq!(frames, (40..100).collect::<Vec<_>>());
    assert_eq!(log_lines("ERROR", &["401", &rx.url]).len(), 1);
}

#[test]
fn a_batch_resent_after_a_restart_keeps_its_key_and_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    spool_with_scores(&path, 50);
    let rx = Receiver::start();
    rx.set_always(Some(Fault::Status(503)));
    let first = block_on(async {
        let mut s = Syncer::new(settings(&rx.url), &path, None).unwrap();
        s.step().await
    });
    assert!(matches!(first, Step::Retry { .. }), "{first:?}");
    // More scores arrive while it is down; the "restart" is a new Syncer.
    Spool::open(&path).unwrap().commit(&(50..80).map(score).collect::<Vec<_>>()).unwrap();
    rx.set_always(None);
    let steps = block_on(async {
        let mut s = Syncer::new(settings(&rx.url), &path, None).unwrap();
        vec![s.step().await, s.step().await, s.step().await]
    });
    assert_eq!(steps, vec![Step::Delivered { more: false }, Step::Delivered { more: false }, Step::Idle]);
    let log = rx.log();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].key, log[1].key, "same Idempotency-Key after the restart");
    assert_eq!(log[0].body, log[1].body, "same rows after the restart");
    assert_ne!(log[1].key, log[2].key);
    let sizes: Vec<usize> = rx.stored().iter().map(|b| b["scores"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, vec![50, 30]);
    assert_eq!(rx.stored()[0]["batch_id"].as_str(), log[0].key.as_deref());
}

#[test]
fn retry_after_sets_the_least_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    spool_with_scores(&path, 5);
    let rx = Receiver::start();
    rx.push_faults([Fault::RetryAfter(429, 2), Fault::Status(500)]);
    let steps = block_on(async {
        let mut s = Syncer::new(settings(&rx.url), &path, None).unwrap();
        vec![s.step().await, s.step().await, s.step().await]
    });
    let Step::Retry { wait } = steps[0] else { panic!("{steps:?}") };
    assert!(wait >= Duration::from_secs(2), "{wait:?}: Retry-After 2 is respected");
    let Step::Retry { wait } = steps[1] else { panic!("{steps:?}") };
    assert!(wait <= Duration::from_millis(300), "{wait:?}: backoff without Retry-After");
    assert_eq!(steps[2], Step::Delivered { more: false });
}

#[test]
fn requests_carry_the_contract_headers_and_a_gzip_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    spool_with_scores(&path, 10);
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cr3t\n").unwrap();
    let rx = Receiver::start();
    let mut s = settings(&rx.url);
    s.token_file = Some(token);
    let step = block_on(async { Syncer::new(s, &path, None).unwrap().step().await });
    assert_eq!(step, Step::Delivered { more: false });
    let r = &rx.log()[0];
    assert!(r.gzip, "Content-Encoding: gzip");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.auth.as_deref(), Some("Bearer s3cr3t"));
    let body = r.body.as_ref().unwrap();
    assert_eq!(r.key.as_deref(), body["batch_id"].as_str());
    for k in ["session_id", "student_id", "device_id", "batch_id", "scores", "incidents"] {
        assert!(body.get(k).is_some(), "{k} missing in {body}");
    }
    assert_eq!(body["device_id"], "desk-t");
    let s0 = &body["scores"][0];
    for k in ["ts", "frame", "focus_score", "num_faces", "yaw_deg", "pitch_deg", "reasons"] {
        assert!(s0.get(k).is_some(), "scores[].{k} missing in {s0}");
    }
}

#[test]
fn a_server_that_refuses_gzip_gets_plain_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    spool_with_scores(&path, 10);
    let rx = Receiver::start();
    rx.refuse_gzip(true);
    let (steps, gz) = block_on(async {
        let mut s = Syncer::new(settings(&rx.url), &path, None).unwrap();
        (vec![s.step().await, s.step().await], s.gzip())
    });
    assert_eq!(steps, vec![Step::Retry { wait: Duration::ZERO }, Step::Delivered { more: false }]);
    assert!(!gz);
    let log = rx.log();
    assert_eq!((log[0].status, log[0].gzip), (415, true));
    assert_eq!((log[1].status, log[1].gzip), (200, false));
    assert_eq!(log[0].key, log[1].key);
}

#[test]
fn other_client_errors_dead_letter_the_batch_and_the_next_one_goes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    spool_with_scores(&path, 30);
    let rx = Receiver::start();
    rx.push_faults([Fault::Status(422)]);
    let mut s = settings(&rx.url);
    s.max_batch_scores = 10;
    let steps = block_on(async {
        let mut s = Syncer::new(s, &path, None).unwrap();
        let mut v = vec![];
        for _ in 0..4 {
            v.push(s.step().await);
        }
        v
    });
    assert_eq!(
        steps,
        vec![
            Step::DeadLettered { status: 422 },
            Step::Delivered { more: true },
            Step::Delivered { more: true },
            Step::Idle
        ]
    );
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.scores_dead, st.scores_synced, st.batches_dead), (10, 20, 1));
}

#[test]
fn a_long_outage_drains_in_full_batches_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    spool_with_scores(&path, 2000);
    let rx = Receiver::start();
    let mut s = settings(&rx.url);
    s.interval = Duration::from_secs(3600);
    let t0 = Instant::now();
    let sync = sync::spawn(s, &path, None).unwrap();
    let done = wait_for(Duration::from_secs(20), || (rx.frames().len() == 2000).then_some(()));
    sync.stop(Duration::ZERO);
    assert!(done.is_some(), "{} of 2000 after {:?}", rx.frames().len(), t0.elapsed());
    assert_eq!(rx.stored().len(), 10, "batches of at most 200");
}

#[test]
fn dead_lettered_scores_requeued_by_hand_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    spool_with_scores(&path, 100);
    let rx = Receiver::start();
    // The first batch is refused for good (a 4xx that is not retried).
    rx.push_faults([Fault::Status(400)]);
    let mut s = settings(&rx.url);
    s.max_batch_scores = 40;
    let first = block_on(async {
        let mut sync = Syncer::new(s.clone(), &path, None).unwrap();
        vec![sync.step().await, sync.step().await, sync.step().await, sync.step().await]
    });
    assert!(matches!(first[0], Step::DeadLettered { .. }), "{first:?}");
    assert_eq!(first[3], Step::Idle);
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.scores_dead, st.batches_dead), (40, 1));

    // Fixed upstream; `invigil spool requeue-dead` puts them back in line.
    assert_eq!(Spool::open(&path).unwrap().requeue_dead().unwrap(), (40, 0));
    let again = block_on(async {
        let mut sync = Syncer::new(s, &path, None).unwrap();
        vec![sync.step().await, sync.step().await]
    });
    assert!(matches!(again[..], [Step::Delivered { .. }, Step::Idle]), "{again:?}");
    let frames: Vec<u64> = rx.frames().into_iter().map(|(_, f)| f).collect();
    let want: Vec<u64> = (40..100).chain(0..40).collect();
    assert_eq!(frames, want, "the refused 40 arrive after the rest, each once");
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.scores_dead, st.scores_pending, st.batches_dead, st.batches_pending), (0, 0, 0, 0));
    assert_eq!(st.scores, 100, "no score lost or doubled in the spool");
}

/// The pause after a 401 on tokio's paused clock: no request is made until
/// it runs out or the token changes; nothing here sleeps.
#[tokio::test(flavor = "current_thread")]
async fn after_a_401_nothing_is_sent_until_the_pause_runs_out_on_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _token, rx, s) = wrong_token(dir.path(), Duration::from_secs(300));
    let mut syncer = Syncer::new(s, &path, None).unwrap();
    assert_eq!(syncer.step().await, Step::DeadLettered { status: 401 });
    tokio::time::pause();
    let Step::Paused { wait } = syncer.step().await else { panic!("not paused after a 401") };
    assert!(wait > Duration::from_secs(299), "{wait:?}");
    tokio::time::advance(Duration::from_secs(299)).await;
    let Step::Paused { wait } = syncer.step().await else { panic!("the pause ended early") };
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    assert_eq!(rx.log().len(), 1, "one request in five simulated minutes");
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::resume();
    // The pause is over: the next batch is tried (and refused: same token).
    assert_eq!(syncer.step().await, Step::DeadLettered { status: 401 });
    assert_eq!(rx.log().len(), 2);
}
