//! `kill -9` of the hub 5 times while 20 simulated desks send batches:
//! afterwards every score each desk had delivered is in PostgreSQL exactly
//! once (counted by device and frame).
//!
//! Each desk behaves as the agent's sync does: a batch (its id, its
//! gzip'd bytes) is made once and re-sent unchanged until a 2xx; 408, 429,
//! 5xx and no answer are retried after a pause; the next batch is made
//! only after the ack. A batch the hub committed but whose ack was lost to
//! the kill comes back as a replay and must not be stored twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use invigil_e2e::hub::{self, Hub};

const DESKS: usize = 20;
const KILLS: usize = 5;
const PER_BATCH: u64 = 30;

#[test]
fn every_delivered_score_is_stored_exactly_once_across_five_kill_9s() {
    let seed = std::env::var("INVIGIL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("hub_kill9: seed {seed} (INVIGIL_SEED={seed} repeats the kill times)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let db = invigil_e2e::pg::database("hub_kill9");
    let dir = tempfile::tempdir().unwrap();
    // A generous bucket: this test is about kills, not rate limits.
    let cfg = hub::config(dir.path(), &db, "[limits]\nbatches_per_s = 1000.0\nbatch_burst = 1000\n");
    let tokens: Vec<(String, String)> = (0..DESKS)
        .map(|i| {
            let d = format!("k9-desk-{i:02}");
            let t = hub::enrol(&cfg, &d, "hall-k");
            (d, t)
        })
        .collect();
    let mut h = Some(Hub::start(&cfg));
    let port = h.as_ref().unwrap().port;
    let stop = Arc::new(AtomicBool::new(false));
    // Per desk: the frames acknowledged (delivered).
    let acked: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let t0 = chrono::Utc::now().timestamp_millis();
    let desks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, (device, token))| {
            let (stop, acked) = (stop.clone(), acked.clone());
            let mut rng = fastrand::Rng::with_seed(seed ^ i as u64);
            std::thread::spawn(move || {
                let mut n = 0u64;
                let (mut retries, mut replays) = (0u32, 0u32);
                while !stop.load(Ordering::Relaxed) {
                    let batch_id = format!("{device}-{n}");
                    let body =
                        hub::batch_body(&device, &batch_id, Some(("ex-k9", "s-k9")), n * PER_BATCH, PER_BATCH, t0);
                    // Re-sent unchanged until delivered, as the agent does;
                    // bounded: the hub is always back within seconds.
                    let deadline = Instant::now() + Duration::from_secs(120);
                    loop {
                        assert!(Instant::now() < deadline, "{device}: batch {batch_id} not delivered within 120 s");
                        match hub::post_batch(port, &token, &batch_id, &body) {
                            Some(r) if r.status == 200 => {
                                // Stored before the kill, its ack lost.
                                replays += u32::from(r.json()["duplicate"] == true);
                                break;
                            }
                            Some(r) if r.status == 408 || r.status == 429 || r.status >= 500 => {}
                            Some(r) => panic!("{device}: batch {batch_id} refused: {} {}", r.status, r.text()),
                            None => {}
                        }
                        retries += 1;
                        std::thread::sleep(Duration::from_millis(50 + rng.u64(..150)));
                    }
                    acked.lock().unwrap().entry(device.clone()).or_default().extend(n * PER_BATCH..(n + 1) * PER_BATCH);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20 + rng.u64(..60)));
                }
                (device, n, retries, replays)
            })
        })
        .collect();
    for k in 0..KILLS {
        std::thread::sleep(Duration::from_millis(400 + rng.u64(..1200)));
        h.take().unwrap().kill9();
        eprintln!("hub_kill9: kill {} of {KILLS}", k + 1);
        std::thread::sleep(Duration::from_millis(rng.u64(..500)));
        h = Some(Hub::start(&cfg));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (mut total_retries, mut total_replays) = (0, 0);
    for d in desks {
        let (device, n, retries, replays) = d.join().expect("a desk thread failed");
        assert!(n >= 3, "{device} delivered only {n} batches");
        total_retries += retries;
        total_replays += replays;
    }
    assert!(total_retries > 0, "the kills interrupted some batches");

    let mut c = invigil_e2e::pg::client(&db);
    let acked = acked.lock().unwrap();
    let mut stored_total = 0;
    for (device, frames) in acked.iter() {
        let rows = c
            .query(
                "SELECT frame, count(*) FROM score_rows WHERE device_id = $1 GROUP BY frame ORDER BY frame",
                &[device],
            )
            .unwrap();
        let twice: Vec<i64> = rows.iter().filter(|r| r.get::<_, i64>(1) != 1).map(|r| r.get(0)).collect();
        assert!(twice.is_empty(), "{device}: frames stored more than once: {twice:?}");
        let stored: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
        let missing: Vec<&u64> = frames.iter().filter(|f| stored.binary_search(f).is_err()).collect();
        assert!(missing.is_empty(), "{device}: delivered frames missing: {missing:?}");
        assert_eq!(stored.len(), frames.len(), "{device}: a frame stored that was never delivered");
        stored_total += stored.len();
    }
    eprintln!(
        "hub_kill9: {} desks, {stored_total} scores stored once each, {total_retries} retries, {total_replays} replays of batches stored before a kill",
        acked.len()
    );
    drop(h);
}
