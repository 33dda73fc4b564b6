//! A 10-minute clean exam at 30 FPS through the real spool writer and the
//! real sync loop, 20 times faster than real time: 18,000 scores, a commit
//! every simulated second (every 50 ms), a batch every simulated 3 s (every
//! 150 ms) to a receiver on loopback. Prints rows per second, bytes written
//! to disk per simulated minute (`/proc/self/io` write_bytes), commits (one
//! fsync each) and upstream bytes per minute. Then the spool alone at full
//! speed (18,000 rows in 600 commits, as fast as the disk allows).
//!
//! ```sh
//! cargo bench -p agent --bench exam_sync
//! # exact fsync count of the whole run:
//! strace -f -c -e trace=fsync,fdatasync $CARGO_TARGET_DIR/release/deps/exam_sync-<hash> --exam-only
//! ```
//! No harness (a plain `main`), so nothing extra is compiled for `cargo test`.

#[path = "../tests/support/receiver.rs"]
mod receiver;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent::domain::Score;
use agent::spool::{Record, Spool, SpoolWriter};
use agent::sync::{self, SyncSettings};

const FPS: u64 = 30;
const MINUTES: u64 = 10;
const SPEEDUP: u32 = 20;

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("write_bytes:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Frame `f` of a clean exam: one face, high scores with a little noise.
fn clean(f: u64, rng: &mut fastrand::Rng, t0: chrono::DateTime<chrono::Utc>) -> Record {
    let ts = t0 + chrono::Duration::milliseconds((f * 1000 / FPS) as i64);
    Record::Score(Score {
        session_id: Some("exam-2026-11-24-math".into()),
        student_id: Some("s-104233".into()),
        frame: f,
        ts,
        focus_score: 88 + rng.u8(0..=12),
        num_faces: 1,
        yaw_deg: Some(rng.f32() * 16.0 - 8.0),
        pitch_deg: Some(rng.f32() * 10.0 - 2.0),
        reasons: vec![],
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = FPS * 60 * MINUTES;
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string()))
            .unwrap();
    let path = dir.path().join("spool.sqlite");
    let rx = receiver::Receiver::start();
    let commit = Duration::from_millis(1000 / SPEEDUP as u64);
    let (writer, writer_thread) = SpoolWriter::start(Spool::open(&path).unwrap(), commit).unwrap();
    let mut s = SyncSettings::new(&rx.url, "desk-017");
    s.interval = Duration::from_millis(3000 / SPEEDUP as u64);
    s.durable_wait = commit * 2 + Duration::from_millis(100);
    let sync = sync::spawn(s, &path, Some(writer.stats.clone())).unwrap();

    let mut rng = fastrand::Rng::with_seed(7);
    let t0 = chrono::Utc::now();
    let w0 = write_bytes();
    let start = Instant::now();
    for second in 0..MINUTES * 60 {
        for k in 0..FPS {
            writer.push(clean(second * FPS + k, &mut rng, t0));
        }
        // Real time of this simulated second.
        let due = start + commit * (second as u32 + 1);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let produced = start.elapsed();
    let drained = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        sync.stats.scores_sent.load(Ordering::Relaxed) >= rows
    });
    let stats = sync.stats.clone();
    sync.stop(Duration::from_secs(1));
    writer.close();
    writer_thread.join().unwrap();
    let disk = write_bytes() - w0;
    let commits = writer.stats.commits.load(Ordering::Relaxed);
    let log = rx.log();
    let wire: usize = log.iter().map(|r| r.wire_bytes).sum();
    let body: usize = log.iter().map(|r| r.body_bytes).sum();
    let sim_min = MINUTES as f64;
    let sim_s = sim_min * 60.0;
    println!("10-minute clean exam at 30 FPS, simulated {SPEEDUP}x faster (real {:.1} s)", produced.as_secs_f64());
    println!(
        "  scores spooled         {} ({} committed, all delivered: {drained})",
        rows,
        writer.stats.committed.load(Ordering::Relaxed)
    );
    println!("  spool rows per second  {:.0} (simulated time)", rows as f64 / sim_s);
    println!(
        "  commits                {commits} = {:.2} per simulated second (one fsync each; sync and upload add none)",
        commits as f64 / sim_s
    );
    println!(
        "  written to disk        {:.0} KiB per simulated minute ({} bytes in all)",
        disk as f64 / 1024.0 / sim_min,
        disk
    );
    println!(
        "  upstream               {} batches, {} requests; body {:.1} KiB/min, with headers {:.1} KiB/min = {:.2} kbit/s",
        stats.batches_sent.load(Ordering::Relaxed),
        log.len(),
        body as f64 / 1024.0 / sim_min,
        wire as f64 / 1024.0 / sim_min,
        wire as f64 * 8.0 / 1000.0 / sim_s
    );
    let raw: usize = log.iter().filter_map(|r| r.body.as_ref()).map(|b| serde_json::to_vec(b).unwrap().len()).sum();
    println!("  gzip                   {:.1}x ({} JSON bytes -> {body})", raw as f64 / body as f64, raw);
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("  spool file             {:.1} MiB for {rows} rows", file as f64 / (1 << 20) as f64);

    if std::env::args().any(|a| a == "--exam-only") {
        return;
    }
    // The spool alone, as fast as it goes.
    let path2 = dir.path().join("alone.sqlite");
    let mut sp = Spool::open(&path2).unwrap();
    sp.set_fsync_each_commit(true).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let recs: Vec<Record> = (0..rows).map(|f| clean(f, &mut rng, t0)).collect();
    let w0 = write_bytes();
    let t = Instant::now();
    for chunk in recs.chunks(FPS as usize) {
        sp.commit(chunk).unwrap();
    }
    let dt = t.elapsed();
    println!(
        "spool alone: {rows} rows in {} commits of 30 with fsync: {:.2} s = {:.0} rows/s, {:.2} ms per commit, {:.0} KiB written",
        rows / FPS,
        dt.as_secs_f64(),
        rows as f64 / dt.as_secs_f64(),
        dt.as_secs_f64() * 1000.0 / (rows / FPS) as f64,
        (write_bytes() - w0) as f64 / 1024.0
    );
}
