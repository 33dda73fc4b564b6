//! The live server with real WebSocket clients on 127.0.0.1:0: `/analyze`
//! with real JPEGs, `/live`, sessions, auth, health and metrics.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agent::server::{AnalyzerFactory, Limits, Shared};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn factory() -> AnalyzerFactory {
    Arc::new(support::analyzer)
}

/// The astronaut photo as a JPEG.
fn astronaut_jpeg() -> Vec<u8> {
    let (w, h, rgb) = support::astronaut_rgb();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85).encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// Frames of the carphone clip as JPEGs (ffmpeg).
fn carphone_jpegs(n: usize) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(support::root().join("assets/carphone_pristine.mp4"))
        .args(["-frames:v", &n.to_string(), "-q:v", "3"])
        .arg(dir.path().join("%03d.jpg"))
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    (1..=n).map(|i| std::fs::read(dir.path().join(format!("{i:03}.jpg"))).unwrap()).collect()
}

struct Server {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: Limits, token: Option<&str>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Shared::new(factory(), token.map(str::to_string), limits));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent::server::serve(listener, shared.clone(), async move {
        let _ = rx.await;
    }));
    Server { addr, shared, stop: Some(tx), task }
}

impl Server {
    async fn ws(&self, path: &str) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}{path}", self.addr)).await.unwrap();
        ws
    }
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let r = tokio::time::timeout(Duration::from_secs(4), self.task).await;
        assert!(r.is_ok(), "shutdown took longer than its 2 s bound");
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("reply in time");
        match m.expect("open").expect("message") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// A plain HTTP/1.1 request: (status, body).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    (status, body)
}

fn data_url(jpeg: &[u8]) -> String {
    use base64::Engine;
    format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(jpeg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_scores_real_frames_in_order_in_all_three_forms() {
    let srv = start(Limits { queue: 64, ..Default::default() }, None).await;
    let mut ws = srv.ws("/analyze").await;
    let jpeg = astronaut_jpeg();
    let n = 12;
    for i in 0..n {
        let m = match i % 3 {
            0 => Message::Binary(jpeg.clone().into()),
            1 => Message::Text(data_url(&jpeg).into()),
            _ => Message::Text(serde_json::json!({ "image": data_url(&jpeg) }).to_string().into()),
        };
        ws.send(m).await.unwrap();
    }
    let mut last = Value::Null;
    for i in 0..n {
        let v = next_json(&mut ws).await;
        assert_eq!(v["type"], "analysis", "{v}");
        assert_eq!(v["frame"], i);
        assert_eq!(v["face_detected"], true, "{v}");
        last = v;
    }
    assert!(last["focus_score"].as_u64().unwrap() >= 50, "{last}");
    // Decoded at 1/4 (512 to 128 px), the box is still in the JPEG's pixels:
    // as a full decode finds it.
    let (w, h, px) = agent::server::decode_jpeg(&jpeg).unwrap();
    let mut full = support::analyzer().unwrap();
    let want = full.analyse(&models::RgbFrame::packed(w, h, &px).unwrap(), 0, 0, chrono::Utc::now()).unwrap();
    let (got, want) = (&last["face_box"], want.face_box.unwrap());
    for (k, v) in want.iter().enumerate() {
        assert!((got[k].as_f64().unwrap() as f32 - v).abs() < 0.05 * w as f32, "{got} vs {want:?}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_connections_at_once_each_in_order() {
    let srv = start(Limits { queue: 64, ..Default::default() }, None).await;
    let frames = Arc::new(carphone_jpegs(20));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut ws = srv.ws("/analyze").await;
        let frames = frames.clone();
        tasks.push(tokio::spawn(async move {
            for f in frames.iter() {
                ws.send(Message::Binary(f.clone().into())).await.unwrap();
            }
            let mut scores = Vec::new();
            for i in 0..frames.len() {
                let v = next_json(&mut ws).await;
                assert_eq!(v["type"], "analysis", "{v}");
                assert_eq!(v["frame"], i as u64);
                scores.push(v["focus_score"].as_u64().unwrap());
            }
            scores
        }));
    }
    for t in tasks {
        let scores = t.await.unwrap();
        assert!(*scores.last().unwrap() >= 50, "{scores:?}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_and_the_connection_stays_open() {
    let srv = start(Limits { queue: 64, ..Default::default() }, None).await;
    let jpeg = astronaut_jpeg();
    let mut other = srv.ws("/analyze").await;
    let mut ws = srv.ws("/analyze").await;
    let bad: Vec<Message> = vec![
        Message::Binary(b"hello, not a jpeg".to_vec().into()),
        Message::Binary(jpeg[..jpeg.len() / 3].to_vec().into()),
        Message::Text("data:image/jpeg;base64,@@@not base64@@@".into()),
        Message::Text("{\"frame\": 12}".into()),
        Message::Text("{not json".into()),
        Message::Binary((0..5000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>().into()),
    ];
    let nbad = bad.len();
    for m in bad {
        ws.send(m).await.unwrap();
    }
    ws.send(Message::Binary(jpeg.clone().into())).await.unwrap();
    for i in 0..nbad {
        let v = next_json(&mut ws).await;
        assert_eq!(v["type"], "error", "message {i}: {v}");
        assert_eq!(v["frame"], i as u64);
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    let v = next_json(&mut ws).await;
    assert_eq!(v["type"], "analysis", "{v}");
    assert_eq!(v["frame"], nbad as u64);

    // 20 MB: a clean close for that client only.
    let _ = ws.send(Message::Binary(vec![0xFFu8; 20 << 20].into())).await;
    let mut closed = false;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        match m {
            Ok(Message::Close(c)) => {
                eprintln!("oversized message: close {c:?}");
                if let Some(c) = c {
                    assert_eq!(u16::from(c.code), 1009, "{c:?}");
                }
                closed = true;
                break;
            }
            Err(e) => {
                eprintln!("oversized message: {e}");
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the oversized message closes the connection");
    other.send(Message::Binary(jpeg.into())).await.unwrap();
    let v = next_json(&mut other).await;
    assert_eq!(v["type"], "analysis");
    assert_eq!(v["frame"], 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_client_gets_dropped_notices_and_one_reply_per_frame() {
    let srv = start(Limits { queue: 2, ..Default::default() }, None).await;
    let mut ws = srv.ws("/analyze").await;
    let frames = carphone_jpegs(5);
    let n = 60u64;
    for i in 0..n {
        ws.send(Message::Binary(frames[i as usize % frames.len()].clone().into())).await.unwrap();
    }
    let (mut seen, mut dropped, mut last_analysis) = (std::collections::BTreeSet::new(), 0, -1i64);
    while seen.len() < n as usize {
        let v = next_json(&mut ws).await;
        let f = v["frame"].as_u64().unwrap();
        assert!(seen.insert(f), "two replies for frame {f}");
        match v["type"].as_str().unwrap() {
            "dropped" => dropped += 1,
            "analysis" => {
                assert!(f as i64 > last_analysis, "analysis replies in order");
                last_analysis = f as i64;
            }
            t => panic!("unexpected {t}: {v}"),
        }
    }
    assert!(dropped > 0, "a client sending faster than scoring sees drops");
    assert_eq!(srv.shared.health.analyze_dropped.load(Ordering::Relaxed), dropped);
    srv.stop().await;
}

fn fake_analysis(frame: u64) -> proto::Analysis {
    proto::Analysis {
        kind: proto::analysis::AnalysisType::Analysis,
        device_id: "test-desk".into(),
        session_id: None,
        frame,
        ts: chrono::Utc::now().into(),
        focus_score: 90,
        face_detected: true,
        num_faces: 1,
        looking_away: false,
        yaw_deg: Some(1.0),
        pitch_deg: Some(2.0),
        reasons: vec![],
        recording: false,
        latency_ms: 3.0,
        face_box: None,
        t_ms: frame * 33,
        alert: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_receives_broadcasts_and_counts_a_slow_clients_lag() {
    let srv = start(Limits::default(), None).await;
    let mut fast = srv.ws("/live").await;
    let mut slow = srv.ws("/live").await;
    // Both subscribed once the upgrade is done; wait for the receiver count.
    for _ in 0..100 {
        if srv.shared.live.receiver_count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..5 {
        srv.shared.publish(&fake_analysis(i));
    }
    for i in 0..5 {
        let v = next_json(&mut fast).await;
        assert_eq!(v["frame"], i);
        assert_eq!(v["type"], "analysis");
    }
    for i in 0..5 {
        assert_eq!(next_json(&mut slow).await["frame"], i);
    }
    // An incident, as the run loop publishes it when one opens.
    let row = agent::domain::Incident {
        id: "desk-1".into(),
        session_id: Some("exam-7".into()),
        student_id: None,
        started: "2026-11-24T09:00:00.000Z".parse().unwrap(),
        ended: None,
        min_score: 12,
        reasons: vec![agent::domain::Reason::NoFace],
        clip_path: None,
    };
    srv.shared.publish_incident("test-desk", &row);
    for ws in [&mut fast, &mut slow] {
        let v = next_json(ws).await;
        assert_eq!(v["type"], "incident", "{v}");
        assert_eq!((v["id"].as_str(), v["session_id"].as_str()), (Some("desk-1"), Some("exam-7")), "{v}");
        assert_eq!((v["min_score"].as_u64(), v["reasons"][0].as_str()), (Some(12), Some("no_face")), "{v}");
        assert!(v["ended"].is_null() && v["clip"].is_null(), "{v}");
    }
    // A page opened while the incident lasts hears of it first.
    let mut late = srv.ws("/live").await;
    let v = next_json(&mut late).await;
    assert_eq!((v["type"].as_str(), v["id"].as_str()), (Some("incident"), Some("desk-1")), "{v}");
    drop(late);
    // The slow client stops reading while 20 000 messages go out.
    for i in 5..20_005 {
        srv.shared.publish(&fake_analysis(i));
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut last = 0;
    while last < 20_004 {
        last = next_json(&mut fast).await["frame"].as_u64().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut n = 0;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(500), slow.next()).await {
        n += 1;
    }
    assert!(n < 20_000, "the slow client skipped messages ({n} received)");
    assert!(srv.shared.health.live_lagged.load(Ordering::Relaxed) > 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_api_start_stop_status_and_errors() {
    let srv = start(Limits::default(), None).await;
    let a = srv.addr;
    let (st, body) = http(a, "GET", "/session", "", None).await;
    assert_eq!((st, serde_json::from_str::<Value>(&body).unwrap()["session"].clone()), (200, Value::Null));
    let (st, body) = http(a, "POST", "/session/start", "{not json", None).await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = http(a, "POST", "/session/start", r#"{"session_id":"exam-1"}"#, None).await;
    assert_eq!(st, 400);
    assert!(body.contains("student_id"), "{body}");
    let (st, body) = http(a, "POST", "/session/start", r#"{"student_id":"s1"}"#, None).await;
    assert_eq!(st, 400);
    assert!(body.contains("session_id"), "{body}");
    let (st, _) = http(a, "POST", "/session/start", r#"{"session_id":"exam-1","student_id":"s1"}"#, None).await;
    assert_eq!(st, 200);
    assert_eq!(srv.shared.current_session().unwrap().student_id, "s1");
    let (st, _) = http(a, "POST", "/session/start", r#"{"session_id":"exam-2","student_id":"s2"}"#, None).await;
    assert_eq!(st, 409);
    let (st, body) = http(a, "GET", "/session", "", None).await;
    assert_eq!(st, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["session"]["session_id"], "exam-1");
    // /analyze replies carry the session.
    let mut ws = srv.ws("/analyze").await;
    ws.send(Message::Binary(astronaut_jpeg().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["session_id"], "exam-1");
    let (st, _) = http(a, "POST", "/session/stop", "", None).await;
    assert_eq!(st, 200);
    assert!(srv.shared.current_session().is_none());
    let (st, _) = http(a, "POST", "/session/stop", "", None).await;
    assert_eq!(st, 409);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_everything_but_healthz() {
    let srv = start(Limits::default(), Some("s3cret")).await;
    let a = srv.addr;
    assert_eq!(http(a, "GET", "/session", "", None).await.0, 401);
    assert_eq!(http(a, "GET", "/session", "", Some("wrong!")).await.0, 401);
    assert_eq!(http(a, "GET", "/metrics", "", None).await.0, 401);
    assert_eq!(http(a, "GET", "/session", "", Some("s3cret")).await.0, 200);
    let (st, body) = http(a, "GET", "/healthz", "", None).await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    for part in ["camera", "model", "spool", "sync", "disk", "clips"] {
        assert!(v[part]["state"].is_string(), "{part}: {v}");
    }
    assert!(tokio_tungstenite::connect_async(format!("ws://{a}/live")).await.is_err());
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{a}/analyze?token=s3cret")).await.unwrap();
    ws.send(Message::Binary(astronaut_jpeg().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "analysis");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_report_the_run_loops_figures() {
    let srv = start(Limits::default(), None).await;
    for i in 0..3 {
        srv.shared.health.frame(&fake_analysis(i), false);
    }
    *srv.shared.health.encoder.lock().unwrap() = Some("x264enc".into());
    *srv.shared.health.model_backend.lock().unwrap() = Some(models::BackendChoice {
        backend: "tflite",
        library: None,
        fallback: Some("libLiteRt.so not found".into()),
    });
    let (st, body) = http(srv.addr, "GET", "/metrics", "", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("invigil_model_backend_info{backend=\"tflite\"} 1"), "{body}");
    assert!(body.contains("invigil_analysed_frames_total 3"), "{body}");
    assert!(body.contains("invigil_encoder_info{encoder=\"x264enc\"} 1"), "{body}");
    assert!(body.contains("invigil_inference_ms_bucket{le=\"5\"} 3"), "{body}");
    let (_, body) = http(srv.addr, "GET", "/healthz", "", None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["camera"]["state"], "ok", "{v}");
    assert_eq!(v["model"]["backend"], "tflite", "{v}");
    assert!(v["model"]["reason"].as_str().unwrap().contains("not found"), "{v}");
    srv.shared.health.frame(&fake_analysis(4), true);
    let (_, body) = http(srv.addr, "GET", "/healthz", "", None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["camera"]["state"], "failed", "{v}");
    assert!(v["clips"]["reason"].is_null(), "{v}");
    // The run loop refused a clip for the session's cap.
    srv.shared.health.clips_refused.fetch_add(1, Ordering::Relaxed);
    srv.shared.health.clips_capped.store(true, Ordering::Relaxed);
    let (_, body) = http(srv.addr, "GET", "/healthz", "", None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["clips"]["reason"].as_str().unwrap().contains("max_per_session"), "{v}");
    let (_, body) = http(srv.addr, "GET", "/metrics", "", None).await;
    assert!(body.contains("invigil_clips_refused_total 1"), "{body}");
    assert!(body.contains("invigil_clips_session_left 0"), "{body}");
    let (st, body) = http(srv.addr, "GET", "/", "", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("/live"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_others_unaffected() {
    let srv = start(Limits { max_connections: 1, ..Default::default() }, None).await;
    let mut first = srv.ws("/analyze").await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/live", srv.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected a 503, got {:?}", other.map(|_| ())),
    }
    first.send(Message::Binary(astronaut_jpeg().into())).await.unwrap();
    assert_eq!(next_json(&mut first).await["type"], "analysis");
    drop(first);
    // The permit comes back when the connection ends.
    let mut ok = false;
    for _ in 0..50 {
        if tokio_tungstenite::connect_async(format!("ws://{}/live", srv.addr)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a new connection is accepted once the first closed");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_is_made_only_while_asked_for() {
    let srv = start(Limits::default(), None).await;
    assert!(!srv.shared.preview_due(), "nobody asked");
    assert_eq!(http(srv.addr, "GET", "/preview.jpg", "", None).await.0, 204);
    assert!(srv.shared.preview_due());
    // A 64x48 frame with padded rows, as capture hands them over.
    let (w, h, stride) = (64usize, 48usize, 64 * 3 + 8);
    let data: Vec<u8> = (0..stride * h).map(|i| (i % 251) as u8).collect();
    srv.shared.set_preview(w, h, stride, &data);
    assert!(!srv.shared.preview_due(), "at most 2 a second");
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /preview.jpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let at = out.windows(4).position(|x| x == b"\r\n\r\n").unwrap() + 4;
    assert!(out.starts_with(b"HTTP/1.1 200"));
    let (pw, ph, _) = agent::server::decode_jpeg(&out[at..]).unwrap();
    assert_eq!((pw, ph), (w, h));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_address_is_retried_until_it_is_free() {
    // Another process holds the port when the agent starts.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = blocker.local_addr().unwrap();
    let shared = Arc::new(Shared::new(factory(), None, Limits::default()));
    let shutdown = agent::shutdown::Shutdown::new();
    let thread = agent::server::spawn(addr, shared, shutdown.clone()).unwrap();
    // Long enough for the first bind to fail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(blocker);
    let mut status = None;
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            status = Some(http(addr, "GET", "/healthz", "", None).await.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.raise();
    tokio::task::spawn_blocking(move || thread.join().unwrap()).await.unwrap();
    assert_eq!(status, Some(200), "the server took the address once it was free");
}
