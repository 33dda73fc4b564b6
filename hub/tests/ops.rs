//! Operations: `/healthz` and `/metrics` answer without login; a graceful
//! stop lets a request in flight finish (and store) while new connections
//! are refused.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::{TestHub, batch, body, now_ms};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_without_login() {
    let h = TestHub::start("ops_health", "").await;
    let tok = h.enrol("desk-1", "hall-a").await;
    let b = batch("desk-1", "b1", None, 0, 30, now_ms());
    assert_eq!(h.post_batch(&tok, "b1", body(&b), &[]).await.0, 200);
    let r = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((j["state"].as_str(), j["database"]["state"].as_str()), (Some("ok"), Some("ok")), "{j}");
    let r = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let m = r.text().await.unwrap();
    for line in [
        "invigil_hub_batches_total{result=\"stored\"} 1",
        "invigil_hub_scores_stored_total 30",
        "invigil_hub_batch_seconds_count 1",
        "invigil_hub_notify_connected 1",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_a_batch_in_flight_finish() {
    let h = TestHub::start("ops_stop", "").await;
    let tok = h.enrol("desk-1", "hall-a").await;
    let b = batch("desk-1", "b-inflight", None, 0, 90, now_ms());
    let data = body(&b);
    let addr = h.running.addr;
    // Half a batch on the wire…
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/exam/analyze-batch HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {tok}\r\nContent-Encoding: gzip\r\n\
         Idempotency-Key: b-inflight\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    let half = data.len() / 2;
    s.write_all(&data[..half]).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // …then the hub is told to stop.
    let db_url = h.db_url.clone();
    let running = h.running;
    let stopping = tokio::spawn(running.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(std::net::TcpStream::connect(addr).is_err(), "no new connections while stopping");
    s.write_all(&data[half..]).unwrap();
    let reply = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"duplicate\":false"), "{reply}");
    assert!(stopping.await.unwrap(), "a clean stop");
    let n: i64 = tokio::task::spawn_blocking(move || {
        invigil_e2e::pg::client(&db_url).query_one("SELECT count(*) FROM scores", &[]).unwrap().get(0)
    })
    .await
    .unwrap();
    assert_eq!(n, 90, "the batch in flight was stored");
}
