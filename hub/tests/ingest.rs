//! Batch ingest against a real PostgreSQL over real HTTP: every delivered
//! score stored exactly once, replays acknowledged and ignored, bad input
//! refused with a clear error that names what is at fault while nothing
//! is stored from it and nothing already stored changes, and boxes with
//! wrong clocks accepted and placed by the hub's clock.

mod support;

use support::{TestHub, batch, body, now_ms};

/// A bad request: what it is, token, body, extra headers, the status and
/// words the error must contain.
type Case<'a> = (&'a str, String, Vec<u8>, Headers<'a>, u16, &'a str);
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// A digest of everything ingest writes, to prove a refused request changed nothing.
async fn fingerprint(h: &TestHub) -> String {
    let c = h.db().await;
    let mut out = String::new();
    for q in [
        "SELECT count(*)::text || md5(coalesce(string_agg(s::text, ',' ORDER BY s.batch_id, s.frame), '')) FROM scores s",
        "SELECT count(*)::text || md5(coalesce(string_agg(b::text, ',' ORDER BY b.id), '')) FROM batches b",
        "SELECT count(*)::text || md5(coalesce(string_agg(i::text, ',' ORDER BY i.id), '')) FROM incidents i",
        "SELECT count(*)::text || md5(coalesce(string_agg(d::text, ',' ORDER BY d.id), '')) FROM desks d",
    ] {
        out.push_str(&c.query_one(q, &[]).await.unwrap().get::<_, String>(0));
        out.push('|');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_stored_once_and_a_replay_is_acknowledged_as_a_duplicate() {
    let h = TestHub::start("ingest_once", "").await;
    let tok = h.enrol("desk-1", "hall-a").await;
    let b = batch("desk-1", "desk-1-1-0", Some(("s1", "x1")), 0, 90, now_ms());
    let (st, ack) = h.post_batch(&tok, &b.batch_id, body(&b), &[]).await;
    assert_eq!(st, 200, "{ack}");
    assert_eq!(ack, serde_json::json!({"batch_id": "desk-1-1-0", "scores": 90, "incidents": 0, "duplicate": false}));
    for _ in 0..3 {
        let (st, ack) = h.post_batch(&tok, &b.batch_id, body(&b), &[]).await;
        assert_eq!((st, ack["duplicate"].as_bool()), (200, Some(true)));
    }
    // Plain JSON (after a 415 the agent sends it) is the same batch.
    let (st, ack) = h.post_batch(&tok, &b.batch_id, serde_json::to_vec(&b).unwrap(), &[("content-encoding", "")]).await;
    assert_eq!((st, ack["duplicate"].as_bool()), (200, Some(true)));
    let c = h.db().await;
    let rows = c
        .query(
            "SELECT device_id, session_id, student_id, frame, focus_score, reasons FROM score_rows ORDER BY frame",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 90);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(
            (r.get::<_, String>(0), r.get::<_, Option<String>>(1), r.get::<_, Option<String>>(2), r.get::<_, i64>(3)),
            ("desk-1".into(), Some("s1".into()), Some("x1".into()), i as i64)
        );
        assert_eq!(r.get::<_, i16>(4), (i % 101) as i16);
    }
    let other: String = c.query_one("SELECT other_reasons FROM scores WHERE frame = 7", &[]).await.unwrap().get(0);
    assert_eq!(other, "future_signal", "a reason this hub does not know is kept by name");
    drop(c);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let h = TestHub::start("ingest_bad", "").await;
    let tok1 = h.enrol("desk-1", "hall-a").await;
    let tok2 = h.enrol("desk-2", "hall-a").await;
    let good = batch("desk-1", "desk-1-good", None, 0, 30, now_ms());
    assert_eq!(h.post_batch(&tok1, &good.batch_id, body(&good), &[]).await.0, 200);
    let before = fingerprint(&h).await;

    let next = batch("desk-1", "desk-1-next", None, 30, 30, now_ms());
    let json = serde_json::to_vec(&next).unwrap();
    // (what, token, body, extra headers, status, words the error must contain)
    let mut cases: Vec<Case> = vec![
        ("a wrong token", "not-a-token".into(), body(&next), vec![], 401, "unknown or revoked device token"),
        (
            "another desk's device_id",
            tok2.clone(),
            body(&next),
            vec![],
            403,
            "device_id \"desk-1\" is not this token's desk",
        ),
        ("broken gzip", tok1.clone(), b"\x1f\x8b\x08\x00garbage".to_vec(), vec![], 400, "not valid gzip"),
        ("broken JSON", tok1.clone(), invigil_e2e::hub::gzip(b"{\"session_id\": nul"), vec![], 400, "body: "),
        (
            "an unknown encoding",
            tok1.clone(),
            json.clone(),
            vec![("content-encoding", "br")],
            415,
            "Content-Encoding \"br\"",
        ),
        (
            "a key that is not the batch id",
            tok1.clone(),
            body(&next),
            vec![("idempotency-key", "other")],
            400,
            "Idempotency-Key \"other\"",
        ),
    ];
    let mut bad = next.clone();
    bad.scores[3].focus_score = 250;
    cases.push((
        "score 250",
        tok1.clone(),
        body(&bad),
        vec![],
        400,
        "body: scores[3].focus_score: 250 is out of range 0-100",
    ));
    let neg = String::from_utf8(json.clone()).unwrap().replacen("\"frame\":31", "\"frame\":-31", 1);
    cases.push((
        "a negative frame",
        tok1.clone(),
        invigil_e2e::hub::gzip(neg.as_bytes()),
        vec![],
        400,
        "body: scores[1].frame: invalid value: integer `-31`",
    ));
    let mut bad = next.clone();
    bad.scores[2].yaw_deg = Some(720.0);
    cases.push(("yaw out of range", tok1.clone(), body(&bad), vec![], 400, "scores[2].yaw_deg"));
    let mut bad = next.clone();
    bad.device_id = "../etc".into();
    cases.push((
        "a device id with a slash",
        tok1.clone(),
        body(&bad),
        vec![],
        400,
        "device_id: \"../etc\" is not an id",
    ));
    // The same batch id as a stored batch, other content.
    let mut reused = next.clone();
    reused.batch_id = good.batch_id.clone();
    cases.push(("a reused batch id", tok1.clone(), body(&reused), vec![], 409, "stored before with a different body"));

    for (what, tok, b, extra, status, words) in &cases {
        let key = extra.iter().find(|(k, _)| *k == "idempotency-key").map(|(_, v)| *v);
        let batch_id = if *what == "a reused batch id" { good.batch_id.as_str() } else { "desk-1-next" };
        let (st, err) = h.post_batch(tok, key.unwrap_or(batch_id), b.clone(), extra).await;
        assert_eq!(st, *status, "{what}: {err}");
        let msg = err["error"].as_str().unwrap_or_else(|| panic!("{what}: no error message: {err}"));
        assert!(msg.contains(words), "{what}: {msg:?} does not say {words:?}");
        assert_eq!(fingerprint(&h).await, before, "{what}: something changed");
    }

    // A 50 MB body: refused from its Content-Length before a byte of it is
    // read (413), as a client sending `Expect: 100-continue` sees it.
    let reply = tokio::task::spawn_blocking({
        let (addr, tok) = (h.running.addr, tok1.clone());
        move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            write!(
                s,
                "POST /api/exam/analyze-batch HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {tok}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                50 << 20
            )
            .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        }
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("52428800 bytes is over the limit"), "{reply}");
    // A gzip bomb: small on the wire, 40 MB of JSON whitespace inside.
    let mut bomb_json = vec![b' '; 40 << 20];
    bomb_json.extend_from_slice(&json);
    let (st, err) = h.post_batch(&tok1, "desk-1-next", invigil_e2e::hub::gzip(&bomb_json), &[]).await;
    assert_eq!(st, 413, "{err}");
    assert!(err["error"].as_str().unwrap().contains("after gunzip"), "{err}");
    assert_eq!(fingerprint(&h).await, before, "the big bodies changed something");

    // A revoked token is a 401 (the box dead-letters), at once.
    hub::actions::desks::revoke(&h.running.app.db, "t", "desk-1").await.unwrap();
    let mut refused = None;
    for _ in 0..50 {
        let (st, err) = h.post_batch(&tok1, "desk-1-next", body(&next), &[]).await;
        if st == 401 {
            refused = Some(err);
            break;
        }
        assert_eq!(st, 200, "before the revocation reached the hub: {err}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused.is_some(), "a revoked token was still accepted after 1 s");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_with_wrong_clocks_are_accepted_and_placed_by_the_hub_clock() {
    let h = TestHub::start("ingest_clock", "").await;
    let tok = h.enrol("desk-pi", "hall-a").await;
    let day = 86_400_000;
    // A Pi a day behind that says so in X-Invigil-Sent-At.
    let behind = batch("desk-pi", "b-behind", None, 0, 30, now_ms() - day);
    let sent = invigil_e2e::hub::chrono_like(now_ms() - day + 1000);
    let (st, ack) = h.post_batch(&tok, "b-behind", body(&behind), &[("x-invigil-sent-at", &sent)]).await;
    assert_eq!(st, 200, "{ack}");
    // A box in 2099, without the header: the scores are in the future, so
    // the clock is wrong, not the network late.
    let t2099 = 4_070_908_800_000; // 2099-01-01
    let future = batch("desk-pi", "b-2099", None, 30, 30, t2099);
    let (st, ack) = h.post_batch(&tok, "b-2099", body(&future), &[]).await;
    assert_eq!(st, 200, "{ack}");
    // A Pi that booted without a clock (1970) and says nothing more: kept,
    // its skew reported.
    let epoch = batch("desk-pi", "b-1970", None, 60, 30, 5_000);
    let (st, ack) = h.post_batch(&tok, "b-1970", body(&epoch), &[]).await;
    assert_eq!(st, 200, "{ack}");
    let c = h.db().await;
    let skew: i64 = c.query_one("SELECT skew_ms FROM batches WHERE batch_key = 'b-1970'", &[]).await.unwrap().get(0);
    assert!(skew > day * 365 * 50, "skew {skew} ms reported");
    let rows = c
        .query(
            "SELECT b.batch_key, b.skew_ms, b.skew_source, b.offset_ms,
                    (SELECT max(abs(extract(epoch FROM (r.ts - b.received_at))))::float8 FROM score_rows r WHERE r.batch_key = b.batch_key)
             FROM batches b ORDER BY b.id",
            &[],
        )
        .await
        .unwrap();
    let behind_row = &rows[0];
    assert_eq!(behind_row.get::<_, String>(2), "header");
    let skew: i64 = behind_row.get(1);
    assert!((skew - day).abs() < 60_000, "skew {skew} ms is about a day");
    let off: f64 = behind_row.get::<_, f64>(4);
    assert!(off < 10.0, "scores of the day-behind box are placed within seconds of receipt ({off} s)");
    let future_row = &rows[1];
    assert_eq!(future_row.get::<_, String>(2), "scores");
    assert!(future_row.get::<_, i64>(1) < -day * 365 * 70, "skew reported");
    let off: f64 = future_row.get::<_, f64>(4);
    assert!(off < 10.0, "scores of the 2099 box are placed at the hub's time ({off} s)");
    // The box's own timestamps are kept beside.
    let box_ts: chrono::DateTime<chrono::Utc> =
        c.query_one("SELECT min(box_ts) FROM score_rows WHERE batch_key = 'b-2099'", &[]).await.unwrap().get(0);
    assert_eq!(box_ts.timestamp_millis(), t2099 + 30 * 1000 / 30);
    // The skew is reported in the metrics.
    let m = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("invigil_hub_clock_skew_seconds_bucket{le=\"864000.0\"} 1"), "{m}");
    assert!(m.contains("invigil_hub_clock_skew_seconds_count 3"), "{m}");
    drop(c);
    h.stop().await;
}
