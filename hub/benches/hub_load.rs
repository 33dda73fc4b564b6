//! The hub's load generator (`scripts/bench-hub` runs it): simulated desks
//! replaying real agent scores against one hub, as boxes send them.
//!
//! Each desk sends a batch every `--interval-s` (3 s) of `--rate` (30)
//! scores a second, staggered across the interval; scores are real ones
//! from `invigil score VIDEO --json` (cycled, frame numbers and times
//! continuing), incidents by the agent's rule (see `bodies`). A batch is
//! `proto::Batch` JSON gzip'd at the best level, as `agent/src/sync.rs`
//! builds it, with `Idempotency-Key` and the desk's bearer token, re-sent
//! unchanged until a 2xx (honouring Retry-After), as the agent does. All
//! bodies are built before the clock starts, so the generator's share of
//! the 2 cores during the run is the sending only.
//!
//! Measured over the run: batch acknowledgement time (first send to 2xx,
//! retries included) p50/p99/max, batches and scores delivered, retries;
//! hub CPU and peak RSS (`/proc/PID`), PostgreSQL CPU (postmaster, its
//! children and reaped children); and at the end, from PostgreSQL, that
//! every delivered score is stored exactly once. One JSON line on stdout.
//!
//! ```text
//! cargo bench -p hub --bench hub_load -- --url http://127.0.0.1:8080 --db postgres://… \
//!     --desks 500 --seconds 60 --scores carphone.jsonl --scores bikes.jsonl --hub-pid P --pg-pid Q
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proto::{Batch, Incident, Reason, Score, Timestamp};

struct Args {
    url: String,
    db: String,
    desks: usize,
    seconds: u64,
    interval_s: u64,
    rate: u64,
    scores: Vec<PathBuf>,
    hub_pid: Option<u32>,
    pg_pid: Option<u32>,
    room: String,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        db: String::new(),
        desks: 100,
        seconds: 60,
        interval_s: 3,
        rate: 30,
        scores: vec![],
        hub_pid: None,
        pg_pid: None,
        room: "bench".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--url" => a.url = v(),
            "--db" => a.db = v(),
            "--desks" => a.desks = v().parse().expect("--desks N"),
            "--seconds" => a.seconds = v().parse().expect("--seconds N"),
            "--interval-s" => a.interval_s = v().parse().expect("--interval-s N"),
            "--rate" => a.rate = v().parse().expect("--rate N"),
            "--scores" => a.scores.push(PathBuf::from(v())),
            "--hub-pid" => a.hub_pid = Some(v().parse().expect("--hub-pid PID")),
            "--pg-pid" => a.pg_pid = Some(v().parse().expect("--pg-pid PID")),
            "--room" => a.room = v(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!a.db.is_empty(), "--db URL is required");
    assert!(!a.scores.is_empty(), "--scores FILE.jsonl (from `invigil score VIDEO --json FILE`) is required");
    a
}

/// One analysed frame of a recording.
#[derive(Clone)]
struct Frame {
    score: Score,
}

/// Reads `invigil score --json` output (analysis lines).
fn recording(path: &PathBuf) -> Vec<Frame> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames: Vec<Frame> = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"].as_str() != Some("analysis") {
            continue;
        }
        let reasons: Vec<Reason> =
            v["reasons"].as_array().unwrap().iter().filter_map(|r| Reason::parse(r.as_str()?).ok()).collect();
        let deg = |k: &str| v[k].as_f64().map(|d| ((d * 10.0).round() / 10.0) as f32);
        frames.push(Frame {
            score: Score {
                ts: Timestamp::parse(v["ts"].as_str().unwrap()).unwrap(),
                frame: v["frame"].as_u64().unwrap(),
                focus_score: v["focus_score"].as_u64().unwrap() as u8,
                num_faces: v["num_faces"].as_u64().unwrap_or(0) as u32,
                yaw_deg: deg("yaw_deg"),
                pitch_deg: deg("pitch_deg"),
                reasons,
            },
        });
    }
    assert!(!frames.is_empty(), "{}: no analysis lines", path.display());
    frames
}

/// The bodies desk `d` sends: (batch id, gzip'd JSON, scores). Incidents
/// follow the agent's rule (under 50 for 1.5 s opens one, 50 or more closes
/// it) and ride in the batch where they open and where they close.
fn bodies(
    d: usize,
    device: &str,
    rec: &[Frame],
    batches: u64,
    per_batch: u64,
    rate: u64,
    t0_ms: i64,
) -> Vec<(String, Vec<u8>, u64)> {
    let session = format!("bench-{device}");
    let student = format!("s-{d:05}");
    let offset = (d * 37) % rec.len();
    let persist = rate * 3 / 2;
    let (mut low_run, mut open): (u64, Option<Incident>) = (0, None);
    let mut n_inc = 0;
    (0..batches)
        .map(|n| {
            let mut incidents = vec![];
            let scores: Vec<Score> = (n * per_batch..(n + 1) * per_batch)
                .map(|f| {
                    let src = &rec[(offset + f as usize) % rec.len()];
                    let ts = Timestamp::from_millis(t0_ms + (f * 1000 / rate) as i64).unwrap();
                    if src.score.focus_score < 50 {
                        low_run += 1;
                        if low_run == persist && open.is_none() {
                            n_inc += 1;
                            let inc = Incident::new(
                                format!("{device}-{t0_ms}-i{n_inc}"),
                                ts,
                                None,
                                src.score.focus_score,
                                src.score.reasons.clone(),
                                vec![],
                            );
                            incidents.push(inc.clone());
                            open = Some(inc);
                        }
                        if let Some(o) = open.as_mut() {
                            o.min_score = o.min_score.min(src.score.focus_score);
                        }
                    } else {
                        low_run = 0;
                        if let Some(mut o) = open.take() {
                            o.ended = Some(ts);
                            incidents.push(o);
                        }
                    }
                    Score { ts, frame: f, ..src.score.clone() }
                })
                .collect();
            let b = Batch {
                session_id: Some(session.clone()),
                student_id: Some(student.clone()),
                device_id: device.to_string(),
                batch_id: format!("{device}-{t0_ms}-{n}"),
                scores,
                incidents,
            };
            let json = serde_json::to_vec(&b).unwrap();
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 4), flate2::Compression::best());
            enc.write_all(&json).unwrap();
            (b.batch_id, enc.finish().unwrap(), per_batch)
        })
        .collect()
}

/// utime + stime (+ reaped children's) of a process, in seconds.
fn cpu_s(pid: u32, children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
    // Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 after the name.
    let ticks = n(11) + n(12) + if children { n(13) + n(14) } else { 0.0 };
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// PostgreSQL's CPU: the postmaster with its reaped children, and its live children.
fn pg_cpu_s(postmaster: u32) -> f64 {
    let mut total = cpu_s(postmaster, true);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        if rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(postmaster) {
            total += cpu_s(pid, false);
        }
    }
    total
}

/// CPU seconds the whole machine spent busy (all cores), from /proc/stat.
fn machine_busy_s() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = s.lines().next().and_then(|l| l.strip_prefix("cpu ")) else { return 0.0 };
    let v: Vec<f64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy: f64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// This process's CPU time so far, in seconds.
fn own_cpu_s() -> f64 {
    // SAFETY: `rusage` is a plain C struct of integers; all zeros is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given, a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn peak_rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The upper bound of the histogram bucket holding quantile `q` (seconds),
/// from Prometheus text.
fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    buckets.iter().find(|(_, c)| *c >= total * q).map(|(le, _)| *le)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let a = args();
    let recs: Vec<Vec<Frame>> = a.scores.iter().map(recording).collect();
    let per_batch = a.rate * a.interval_s;
    let batches = a.seconds / a.interval_s + 1;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // Enrol the desks (as `invigil-hub device add` does) in one room.
    eprintln!("hub_load: enrolling {} desks", a.desks);
    let tokens: Vec<(String, String)> = rt.block_on(async {
        let db = hub::db::Db::connect(&a.db, 1).await.unwrap();
        let mut out = vec![];
        for d in 0..a.desks {
            let device = format!("bench-{d:05}");
            let t = hub::actions::desks::enrol(&db, "bench", &device, &a.room, true).await.unwrap();
            out.push((device, t));
        }
        out
    });
    // Build every body first (all cores), then start the clock.
    eprintln!("hub_load: building {} gzip'd batches", a.desks as u64 * batches);
    let t_build = Instant::now();
    let t0_ms = chrono::Utc::now().timestamp_millis() + 5_000;
    let work: Vec<Vec<(String, Vec<u8>, u64)>> = std::thread::scope(|s| {
        let chunks: Vec<_> = (0..2)
            .map(|k| {
                let (tokens, recs) = (&tokens, &recs);
                s.spawn(move || {
                    (0..tokens.len())
                        .filter(|d| d % 2 == k)
                        .map(|d| (d, bodies(d, &tokens[d].0, &recs[d % recs.len()], batches, per_batch, a.rate, t0_ms)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Vec<_>)> = chunks.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, b)| b).collect()
    });
    let body_bytes: usize = work.iter().flatten().map(|(_, b, _)| b.len()).sum();
    eprintln!(
        "hub_load: built in {:.1} s, {:.1} KiB a batch on average",
        t_build.elapsed().as_secs_f64(),
        body_bytes as f64 / 1024.0 / (a.desks as u64 * batches) as f64
    );

    let url = format!("{}/api/exam/analyze-batch", a.url.trim_end_matches('/'));
    let retries = Arc::new(AtomicU64::new(0));
    let (hub_cpu0, pg_cpu0) = (a.hub_pid.map(|p| cpu_s(p, false)), a.pg_pid.map(pg_cpu_s));
    let own_cpu0 = own_cpu_s();
    let machine0 = machine_busy_s();
    let start = Instant::now();
    let interval = Duration::from_secs(a.interval_s);
    let window = Duration::from_secs(a.seconds);
    let results: Vec<(Vec<f64>, u64, u64)> = rt.block_on(async {
        let tasks: Vec<_> = tokens
            .iter()
            .zip(work)
            .enumerate()
            .map(|(d, ((_device, token), work))| {
                let (url, token, retries) = (url.clone(), token.clone(), retries.clone());
                let n_desks = a.desks as u32;
                tokio::spawn(async move {
                    // Each box has its own connection (keep-alive), as a real one.
                    let client =
                        reqwest::Client::builder().timeout(Duration::from_secs(30)).http1_only().build().unwrap();
                    let mut lat = vec![];
                    let (mut sent_batches, mut sent_scores) = (0u64, 0u64);
                    let stagger = interval * d as u32 / n_desks;
                    let first = tokio::time::Instant::now() + stagger;
                    for (n, (batch_id, body, scores)) in work.into_iter().enumerate() {
                        let due = first + interval * n as u32;
                        if due.duration_since(tokio::time::Instant::from_std(start)) >= window {
                            break;
                        }
                        tokio::time::sleep_until(due).await;
                        let t = Instant::now();
                        let body = bytes::Bytes::from(body);
                        loop {
                            let r = client
                                .post(&url)
                                .header("authorization", format!("Bearer {token}"))
                                .header("content-type", "application/json")
                                .header("content-encoding", "gzip")
                                .header("idempotency-key", &batch_id)
                                .body(body.clone())
                                .send()
                                .await;
                            let wait = match r {
                                Ok(r) if r.status().is_success() => break,
                                Ok(r) if r.status() == 429 || r.status().is_server_error() || r.status() == 408 => r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                                    .map(Duration::from_secs)
                                    .unwrap_or(Duration::from_millis(500)),
                                Ok(r) => panic!(
                                    "batch {batch_id} refused: {} {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                ),
                                Err(_) => Duration::from_millis(500),
                            };
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(wait).await;
                        }
                        lat.push(t.elapsed().as_secs_f64());
                        sent_batches += 1;
                        sent_scores += scores;
                    }
                    (lat, sent_batches, sent_scores)
                })
            })
            .collect();
        let mut out = vec![];
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let elapsed = start.elapsed().as_secs_f64();
    let hub_cpu = a.hub_pid.map(|p| cpu_s(p, false) - hub_cpu0.unwrap());
    let pg_cpu = a.pg_pid.map(|p| pg_cpu_s(p) - pg_cpu0.unwrap());
    let own_cpu = own_cpu_s() - own_cpu0;
    let machine = machine_busy_s() - machine0;
    // What other processes (other people's builds on a shared machine) took.
    let others = machine - own_cpu - hub_cpu.unwrap_or(0.0) - pg_cpu.unwrap_or(0.0);
    let mut lat: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    lat.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let batches_sent: u64 = results.iter().map(|r| r.1).sum();
    let scores_sent: u64 = results.iter().map(|r| r.2).sum();

    // Nothing lost, nothing twice: what PostgreSQL holds for these desks.
    let (stored, distinct): (i64, i64) = rt.block_on(async {
        let db = hub::db::Db::connect(&a.db, 1).await.unwrap();
        let c = db.get().await.unwrap();
        let r = c
            .query_one(
                "SELECT count(*), count(DISTINCT (b.desk_id, s.frame)) FROM scores s JOIN batches b ON b.id = s.batch_id
                 WHERE b.batch_key LIKE '%-' || $1::text || '-%'",
                &[&t0_ms.to_string()],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    });
    // Where the time goes on the hub's side, from its own histograms.
    let metrics = rt.block_on(async {
        let r = reqwest::get(format!("{}/metrics", a.url.trim_end_matches('/'))).await.ok()?;
        r.text().await.ok()
    });
    let hub_q = |name: &str, q: f64| {
        metrics.as_deref().and_then(|m| histogram_quantile(m, name, q)).map(|s| (s * 1000.0 * 10.0).round() / 10.0)
    };
    let out = serde_json::json!({
        "desks": a.desks,
        "seconds": a.seconds,
        "elapsed_s": (elapsed * 10.0).round() / 10.0,
        "batches": batches_sent,
        "scores": scores_sent,
        "rows_per_s": (scores_sent as f64 / elapsed).round(),
        "ack_p50_ms": (percentile(&lat, 0.50) * 1000.0).round(),
        "ack_p99_ms": (percentile(&lat, 0.99) * 1000.0).round(),
        "ack_max_ms": (lat.last().copied().unwrap_or(f64::NAN) * 1000.0).round(),
        "retries": retries.load(Ordering::Relaxed),
        "stored": stored,
        "stored_distinct": distinct,
        "lost": scores_sent as i64 - distinct,
        "hub_cpu_pct": hub_cpu.map(|c| (c / elapsed * 1000.0).round() / 10.0),
        "hub_peak_rss_mb": a.hub_pid.map(|p| peak_rss_mb(p).round()),
        "pg_cpu_pct": pg_cpu.map(|c| (c / elapsed * 1000.0).round() / 10.0),
        "loadgen_cpu_pct": (own_cpu / elapsed * 1000.0).round() / 10.0,
        "other_processes_cpu_pct": (others / elapsed * 1000.0).round() / 10.0,
        "hub_batch_p99_ms_le": hub_q("invigil_hub_batch_seconds", 0.99),
        "hub_db_wait_p99_ms_le": hub_q("invigil_hub_db_wait_seconds", 0.99),
        "hub_store_p50_ms_le": hub_q("invigil_hub_batch_store_seconds", 0.50),
        "hub_store_p99_ms_le": hub_q("invigil_hub_batch_store_seconds", 0.99),
    });
    println!("{out}");
}
