//! The room console's load (`scripts/bench-console` runs it): `--desks`
//! simulated boxes in one room, each on its own device WebSocket sending
//! its live state every `--every-ms` (a real box sends at least once a
//! second, and at once on an incident), while Chromium shows the room
//! (`tests/browser/console-bench.mjs` measures the page).
//!
//! It enrols the desks (`bench-0001`…), creates and starts an exam with a
//! roster placing them on a grid of `--cols` columns, connects them all,
//! prints `ready` on stdout, and keeps sending for `--seconds`. Scores
//! wander; every 10th desk has an incident open part of the time (alert
//! tiles and alerts listed). At the end one JSON line: states sent and
//! sends that failed.
//!
//! ```text
//! cargo bench -p hub --bench console_load -- --url http://127.0.0.1:8080 --db postgres://… --desks 200 --seconds 60
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use proto::device::{DeviceState, FromDevice, OpenIncident, ToDevice};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Args {
    url: String,
    db: String,
    desks: usize,
    seconds: u64,
    every_ms: u64,
    cols: usize,
    room: String,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        db: String::new(),
        desks: 200,
        seconds: 60,
        every_ms: 500,
        cols: 20,
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
            "--every-ms" => a.every_ms = v().parse().expect("--every-ms N"),
            "--cols" => a.cols = v().parse().expect("--cols N"),
            "--room" => a.room = v(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!a.db.is_empty(), "--db URL is required");
    assert!(a.desks > 0 && a.cols > 0 && a.every_ms >= 50, "--desks, --cols > 0 and --every-ms >= 50");
    a
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let db = hub::db::Db::connect(&a.db, 4).await.expect("the database");
    let mut tokens = Vec::with_capacity(a.desks);
    let mut seats = Vec::with_capacity(a.desks);
    for i in 0..a.desks {
        let desk = format!("bench-{:04}", i + 1);
        tokens.push(hub::actions::desks::enrol(&db, "bench", &desk, &a.room, true).await.expect("enrol"));
        seats.push(hub::roster::Seat {
            desk,
            student_id: format!("s-{:04}", i + 1),
            row: Some((i / a.cols + 1) as u32),
            col: Some((i % a.cols + 1) as u32),
        });
    }
    let new = hub::db::exams::NewExam {
        room: a.room.clone(),
        name: Some("console bench".into()),
        seats,
        start_at: None,
        end_at: None,
        created_by: "bench".into(),
        retention_days: None,
    };
    let exam = hub::actions::exams::create(&db, "bench", &new, true).await.expect("the exam");
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let ws_url = format!("{}{}", a.url.replacen("http", "ws", 1), proto::device::DEVICE_WS_PATH);
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(a.desks);
    let mut tasks = vec![];
    for (i, token) in tokens.into_iter().enumerate() {
        let (url, sent, failed, ready) = (ws_url.clone(), sent.clone(), failed.clone(), ready_tx.clone());
        let every = Duration::from_millis(a.every_ms);
        tasks.push(tokio::spawn(async move {
            let mut req = url.into_client_request().unwrap();
            req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let (mut tx, mut rx) = ws.split();
            // The session pushed by the hub (after the welcome).
            let mut session = None;
            while session.is_none() {
                match tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        if let Ok(ToDevice::Session { session: Some(s) }) = serde_json::from_str(t.as_str()) {
                            session = Some(s.session_id);
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            let _ = ready.send(()).await;
            // Drain what the hub sends (pings, pushes) so its queue never fills.
            tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
            // Staggered: desks do not all send in the same millisecond.
            tokio::time::sleep(every * (i as u32 % 10) / 10).await;
            let mut tick = tokio::time::interval(every);
            let mut n: u64 = 0;
            while Instant::now() < end {
                tick.tick().await;
                n += 1;
                let score = ((n * 7 + i as u64 * 13) % 60 + 40) as u8;
                let alert = i % 10 == 0 && (n / 20) % 2 == 1;
                let state = DeviceState {
                    ts: Some(proto::Timestamp(chrono::Utc::now())),
                    session_id: session.clone(),
                    frame: Some(n * 15),
                    focus_score: Some(if alert { 20 } else { score }),
                    reasons: if alert { vec![proto::Reason::NoFace] } else { vec![] },
                    alert,
                    incident: alert.then(|| OpenIncident {
                        id: format!("bench-{i}-{}", n / 40),
                        started: proto::Timestamp(chrono::Utc::now()),
                    }),
                    ..Default::default()
                };
                let msg = serde_json::to_string(&FromDevice::State(state)).unwrap();
                if tx.send(Message::Text(msg.into())).await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tx.send(Message::Close(None)).await;
        }));
    }
    drop(ready_tx);
    let mut n = 0;
    while n < a.desks && ready_rx.recv().await.is_some() {
        n += 1;
    }
    println!("ready {n}");
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "{}",
        serde_json::json!({"desks": a.desks, "connected": n, "every_ms": a.every_ms, "states_sent": sent.load(Ordering::Relaxed), "failed": failed.load(Ordering::Relaxed), "exam": exam})
    );
}
