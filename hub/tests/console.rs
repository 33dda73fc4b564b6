//! The room console against a real PostgreSQL and real HTTP: rights on
//! every new page and endpoint (403 for another room, page and API; no
//! session is a 401 or a redirect to the login; another site's POST or
//! WebSocket is refused), the review flow (priority order, decisions, the
//! audit log, the downsampled scores, CSV and the printable page), the
//! live WebSocket, and retention on simulated time (the exam's stop moved
//! into the past in the database, no sleeping).

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{TestHub, batch, body, now_ms};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client that does not follow redirects (to see the 303s).
fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An exam started over the API in `room` from a CSV roster, with one
/// incident (and a 1 KiB clip) on `desk`: (exam id, session id, incident id).
async fn exam_with_clip(h: &TestHub, admin: &str, room: &str, desk: &str, student: &str) -> (i64, String, i64) {
    let token = h.enrol(desk, room).await;
    let csv = format!("desk,student_id,row,col\n{desk},{student},1,2\n");
    let (st, x) =
        h.post_as(admin, "/api/exams", serde_json::json!({"room": room, "roster_csv": csv, "start": true})).await;
    assert_eq!(st, 201, "{x}");
    let exam = x["id"].as_i64().unwrap();
    let session = format!("ex{exam}-{desk}");
    let t0 = now_ms() - 60_000;
    let mut b = batch(desk, &format!("{desk}-b1"), Some((&session, student)), 0, 900, t0);
    let started = proto::Timestamp::from_millis(t0 + 10_000).unwrap();
    let ended = proto::Timestamp::from_millis(t0 + 16_000).unwrap();
    let key = format!("{desk}-i1");
    b.incidents.push(proto::Incident::new(key.clone(), started, Some(ended), 7, vec![proto::Reason::NoFace], vec![]));
    assert_eq!(h.post_batch(&token, &b.batch_id, body(&b), &[]).await.0, 200);
    let r = h
        .http
        .put(h.url(&format!("/api/device/incidents/{key}/clips/0")))
        .header("authorization", format!("Bearer {token}"))
        .body(vec![7u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c = h.db().await;
    let id: i64 = c.query_one("SELECT id FROM incidents WHERE incident_key = $1", &[&key]).await.unwrap().get(0);
    (exam, session, id)
}

async fn ws(h: &TestHub, room: &str, cookie: Option<&str>, origin: Option<&str>) -> Result<WsStream, u16> {
    let url = format!("ws://{}/api/rooms/{room}/live", h.running.addr);
    let mut req = url.into_client_request().unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message of a console WebSocket of type `kind` (at most `limit`).
async fn next_of(w: &mut WsStream, kind: &str, limit: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let m = tokio::time::timeout_at(deadline, w.next()).await.ok()??.ok()?;
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == kind {
                return Some(v);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proctor_of_room_a_is_refused_room_b_in_pages_and_api() {
    let h = TestHub::start("console_rights", "").await;
    h.enrol("desk-a1", "hall-a").await;
    let admin = h.user("ada", "admin", &[]).await;
    let (exam, session, incident) = exam_with_clip(&h, &admin, "hall-b", "desk-b1", "s-b1").await;
    let pa = h.user("pat", "proctor", &["hall-a"]).await;
    let http = plain();
    let get = |path: String, cookie: Option<String>| {
        let mut r = http.get(h.url(&path));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    // Pages and API of room B: 403 for room A's proctor.
    for path in [
        "/console/rooms/hall-b".to_string(),
        format!("/console/exams/{exam}"),
        format!("/console/sessions/{session}/print"),
        "/console/audit?room=hall-b".to_string(),
        "/console/audit".to_string(),
        "/api/rooms/hall-b/desks".to_string(),
        format!("/api/exams/{exam}/review"),
        format!("/api/exams/{exam}/incidents"),
        format!("/api/sessions/{session}/scores"),
        format!("/api/sessions/{session}/incidents.csv"),
        format!("/api/incidents/{incident}/clip"),
        "/api/audit?room=hall-b".to_string(),
        "/api/audit".to_string(),
        "/api/exams/999999/review".to_string(),
        "/api/sessions/nope/scores".to_string(),
    ] {
        let r = get(path.clone(), Some(pa.clone())).await.unwrap();
        assert_eq!(r.status(), 403, "{path} as room A's proctor");
    }
    let (st, _) = h
        .post_as(&pa, &format!("/api/incidents/{incident}/review"), serde_json::json!({"decision": "dismissed"}))
        .await;
    assert_eq!(st, 403, "a decision on room B's incident");
    let (st, _) = h
        .post_as(
            &pa,
            "/api/exams",
            serde_json::json!({"room": "hall-b", "roster_csv": "desk,student_id\ndesk-b1,s-x\n"}),
        )
        .await;
    assert_eq!(st, 403, "an exam in room B");
    assert_eq!(ws(&h, "hall-b", Some(&pa), None).await.err(), Some(403), "room B's live view");
    // Their own room: the page, with the security headers.
    let r = get("/console/rooms/hall-a".into(), Some(pa.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.text().await.unwrap().contains("data-room=\"hall-a\""));
    let mut live = ws(&h, "hall-a", Some(&pa), None).await.expect("room A's live view");
    let snap = next_of(&mut live, "snapshot", Duration::from_secs(5)).await.expect("a snapshot");
    assert_eq!(snap["desks"][0]["desk"], "desk-a1");
    assert_eq!(snap["desks"][0]["state"], "offline");
    // Without a session: pages redirect to the login, the API is a 401.
    let r = get("/console/rooms/hall-a".into(), None).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/console/rooms/hall-a");
    for path in [format!("/api/exams/{exam}/review"), format!("/api/sessions/{session}/scores"), "/api/audit".into()] {
        assert_eq!(get(path.clone(), None).await.unwrap().status(), 401, "{path} without a session");
    }
    assert_eq!(ws(&h, "hall-a", None, None).await.err(), Some(401));
    assert_eq!(get("/login".into(), None).await.unwrap().status(), 200);
    // Another site's POST and WebSocket, even with a valid cookie: 403.
    let r = http
        .post(h.url(&format!("/api/incidents/{incident}/review")))
        .header("cookie", &admin)
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .body(r#"{"decision":"dismissed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(h.url("/api/exams"))
        .header("cookie", &admin)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/json")
        .body(r#"{"room":"hall-a","roster_csv":"desk,student_id\ndesk-a1,s-1\n"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(ws(&h, "hall-a", Some(&admin), Some("http://evil.example")).await.err(), Some(403));
    let c = h.db().await;
    let n: i64 = c.query_one("SELECT count(*) FROM reviews", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "no refused decision was recorded");
    drop(c);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_decides_and_the_audit_log_csv_and_print_page_show_it() {
    let h = TestHub::start("console_review", "").await;
    let admin = h.user("ada", "admin", &[]).await;
    let (exam, session, incident) = exam_with_clip(&h, &admin, "hall-a", "desk-1", "s-1").await;
    let pa = h.user("pat", "proctor", &["hall-a"]).await;
    // A second desk with no incident: it sorts after desk-1.
    let t2 = h.enrol("desk-2", "hall-a").await;
    let _ = t2;
    let (st, r) = h.get_as(&pa, &format!("/api/exams/{exam}/review")).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["sessions"][0]["session_id"], session.as_str());
    let s = &r["sessions"][0];
    assert_eq!(s["incidents"][0]["reasons"], serde_json::json!(["no_face"]));
    assert_eq!(s["incidents"][0]["duration_s"], 6.0);
    assert_eq!(s["incidents"][0]["min_score"], 7);
    assert_eq!(s["priority"], 36.0, "6 s under the threshold + 30 for no_face");
    assert!(r["priority_formula"].as_str().unwrap().contains("seconds under the threshold"));
    assert_eq!(r["exam"]["retention_days"], 30);
    // Scores: 900 frames (30 s) in at most 10 buckets, min and mean each.
    let (st, p) = h.get_as(&pa, &format!("/api/sessions/{session}/scores?buckets=10")).await;
    assert_eq!(st, 200, "{p}");
    let pts = p["points"].as_array().unwrap();
    assert!(!pts.is_empty() && pts.len() <= 11, "{} buckets", pts.len());
    assert_eq!((p["scores"].as_i64(), p["threshold"].as_i64(), p["bucket_s"].as_i64()), (Some(900), Some(50), Some(3)));
    assert!(pts.iter().all(|q| q[1].as_f64().unwrap() <= q[2].as_f64().unwrap()), "min <= mean");
    assert_eq!(p["incidents"][0]["id"], incident);
    // The clip view and the decision, in the room's audit log.
    let r = h.http.get(h.url(&format!("/api/incidents/{incident}/clip"))).header("cookie", &pa).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let note = "a bird <b>flew</b>, \"nothing\"";
    let (st, _) = h
        .post_as(
            &pa,
            &format!("/api/incidents/{incident}/review"),
            serde_json::json!({"decision": "dismissed", "note": note}),
        )
        .await;
    assert_eq!(st, 204);
    let (_, r) = h.get_as(&pa, &format!("/api/exams/{exam}/review")).await;
    let d = &r["sessions"][0]["incidents"][0]["decision"];
    assert_eq!(
        (d["decision"].as_str(), d["note"].as_str(), d["by"].as_str()),
        (Some("dismissed"), Some(note), Some("pat"))
    );
    assert_eq!(r["sessions"][0]["reviewed"], 1);
    let (st, a) = h.get_as(&pa, "/api/audit?room=hall-a").await;
    assert_eq!(st, 200);
    let actions: Vec<(&str, &str)> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(&actions[..2], &[("pat", "incident.review"), ("pat", "clip.view")], "{actions:?}");
    assert!(actions.contains(&("ada", "exam.create")));
    assert_eq!(a["entries"][0]["detail"]["note"], note);
    assert_eq!(a["entries"][0]["room"], "hall-a");
    // CSV and the printable page.
    let r = h
        .http
        .get(h.url(&format!("/api/sessions/{session}/incidents.csv")))
        .header("cookie", &pa)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("incident_id,device_id,student_id,session_id,started,ended,duration_s"));
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(",desk-1,s-1,") && lines[1].contains(",6.0,7,no_face,1024,dismissed,"), "{csv}");
    assert!(lines[1].contains("\"a bird <b>flew</b>, \"\"nothing\"\"\",pat,"), "{csv}");
    let r =
        h.http.get(h.url(&format!("/console/sessions/{session}/print"))).header("cookie", &pa).send().await.unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("a bird &lt;b&gt;flew&lt;/b&gt;, &quot;nothing&quot;"), "the note escaped");
    assert!(!html.contains("<b>flew"), "never raw");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desks_live_state_reaches_the_room_view_and_its_alert_is_listed() {
    let h = TestHub::start("console_live", "").await;
    let admin = h.user("ada", "admin", &[]).await;
    let token = h.enrol("desk-1", "hall-a").await;
    let (st, x) = h
        .post_as(
            &admin,
            "/api/exams",
            serde_json::json!({"room": "hall-a", "roster_csv": "desk,student_id\ndesk-1,s-1\n", "start": true}),
        )
        .await;
    assert_eq!(st, 201, "{x}");
    let mut page = ws(&h, "hall-a", Some(&admin), None).await.unwrap();
    let snap = next_of(&mut page, "snapshot", Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (snap["desks"][0]["state"].as_str(), snap["desks"][0]["student"].as_str()),
        (Some("offline"), Some("s-1"))
    );
    assert_eq!(snap["exam"]["state"], "running");
    // A box connects and reports an open incident.
    let mut req = format!("ws://{}{}", h.running.addr, proto::device::DEVICE_WS_PATH).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut boxws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let state = proto::device::DeviceState {
        ts: Some(proto::Timestamp(chrono::Utc::now())),
        session_id: Some(format!("ex{}-desk-1", x["id"])),
        frame: Some(10),
        focus_score: Some(12),
        reasons: vec![proto::Reason::NoFace],
        alert: true,
        incident: Some(proto::device::OpenIncident {
            id: "desk-1-i9".into(),
            started: proto::Timestamp(chrono::Utc::now()),
        }),
        ..Default::default()
    };
    let msg = serde_json::to_string(&proto::device::FromDevice::State(state)).unwrap();
    boxws.send(Message::Text(msg.into())).await.unwrap();
    let desks = next_of(&mut page, "desks", Duration::from_secs(5)).await.expect("the tile changes");
    let t = &desks["desks"][0];
    assert_eq!((t["state"].as_str(), t["score"].as_i64()), (Some("alert"), Some(12)), "{t}");
    let alerts = next_of(&mut page, "alerts", Duration::from_secs(5)).await.expect("the alert is listed");
    assert_eq!(alerts["alerts"][0]["key"], "desk-1-i9");
    assert_eq!(alerts["alerts"][0]["open"], true);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_an_exams_clips_and_scores_n_days_after_it_stopped() {
    let h = TestHub::start("console_retention", "").await;
    let admin = h.user("ada", "admin", &[]).await;
    let (old, _, old_inc) = exam_with_clip(&h, &admin, "hall-a", "desk-1", "s-1").await;
    let (recent, _, _) = exam_with_clip(&h, &admin, "hall-b", "desk-2", "s-2").await;
    for id in [old, recent] {
        assert_eq!(h.post_as(&admin, &format!("/api/exams/{id}/stop"), serde_json::json!({})).await.0, 200);
    }
    let clip_files = || {
        fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.path().is_dir() { walk(&e.path(), out) } else { out.push(e.path()) }
            }
        }
        let mut v = vec![];
        walk(&h.clips_dir(), &mut v);
        v
    };
    assert_eq!(clip_files().len(), 2);
    let app = h.running.app.clone();
    assert_eq!(
        hub::jobs::retention::purge_due(&app).await.unwrap(),
        hub::jobs::retention::Purged::default(),
        "nothing due yet"
    );
    // Simulated time: one exam stopped 31 days ago, the other 29.
    let c = h.db().await;
    c.execute("UPDATE exams SET stopped_at = now() - interval '31 days' WHERE id = $1", &[&old]).await.unwrap();
    c.execute("UPDATE exams SET stopped_at = now() - interval '29 days' WHERE id = $1", &[&recent]).await.unwrap();
    drop(c);
    let (_, r) = h.get_as(&admin, &format!("/api/exams/{old}/review")).await;
    assert!(r["exam"]["delete_at"].is_string() && r["exam"]["purged_at"].is_null(), "{r}");
    let p = hub::jobs::retention::purge_due(&app).await.unwrap();
    assert_eq!((p.exams, p.clips, p.scores), (1, 1, 900));
    assert_eq!(hub::jobs::retention::purge_due(&app).await.unwrap().exams, 0, "purged once");
    let files = clip_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().contains("desk-2"), "the recent exam's clip stays");
    let c = h.db().await;
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM scores s JOIN batches b ON b.id = s.batch_id JOIN sessions x ON x.id = b.session_id
             WHERE x.exam_id = $1",
            &[&old],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let kept: i64 = c.query_one("SELECT count(*) FROM scores", &[]).await.unwrap().get(0);
    assert_eq!(kept, 900, "the other exam's scores stay");
    drop(c);
    let (_, r) = h.get_as(&admin, &format!("/api/exams/{old}/review")).await;
    assert!(r["exam"]["purged_at"].is_string(), "{r}");
    assert_eq!(r["sessions"][0]["incidents"][0]["id"], old_inc, "the incident stays on record");
    assert!(r["sessions"][0]["incidents"][0]["clip"].is_null(), "its clip is gone");
    let (_, a) = h.get_as(&admin, "/api/audit?room=hall-a").await;
    assert_eq!(a["entries"][0]["action"], "exam.purge");
    assert_eq!(a["entries"][0]["actor"], "retention");
    let r = h.http.get(h.url(&format!("/api/incidents/{old_inc}/clip"))).header("cookie", &admin).send().await.unwrap();
    assert_eq!(r.status(), 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_users_and_desks_from_the_console_and_a_proctor_cannot() {
    let h = TestHub::start("console_admin", "").await;
    let admin = h.user("ada", "admin", &[]).await;
    let pa = h.user("pat", "proctor", &["hall-a"]).await;
    for path in ["/api/admin/users", "/api/admin/desks", "/console/admin"] {
        let r = plain().get(h.url(path)).header("cookie", &pa).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path} as a proctor");
    }
    let (st, _) = h.post_as(&pa, "/api/admin/desks", serde_json::json!({"desk": "d-9", "room": "hall-a"})).await;
    assert_eq!(st, 403);
    let (st, d) = h.post_as(&admin, "/api/admin/desks", serde_json::json!({"desk": "desk-7", "room": "hall-c"})).await;
    assert_eq!(st, 201, "{d}");
    let token = d["token"].as_str().unwrap().to_string();
    let (st, _) = h.post_as(&admin, "/api/admin/desks", serde_json::json!({"desk": "desk-7", "room": "hall-c"})).await;
    assert_eq!(st, 409, "enrolled already");
    let (st, u) = h
        .post_as(
            &admin,
            "/api/admin/users",
            serde_json::json!({"name": "cleo", "role": "proctor", "rooms": ["hall-c"], "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(st, 201, "{u}");
    let (st, e) = h
        .post_as(&admin, "/api/admin/users", serde_json::json!({"name": "dan", "role": "proctor", "password": "short"}))
        .await;
    assert_eq!(st, 400);
    assert!(e["error"].as_str().unwrap().contains("shorter than 10"), "{e}");
    // The new proctor sees the new room's desk, and only that room.
    let r = h
        .http
        .post(h.url("/api/login"))
        .header("content-type", "application/json")
        .body(r#"{"user":"cleo","password":"correct horse battery"}"#)
        .send()
        .await
        .unwrap();
    let cleo = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let (st, d) = h.get_as(&cleo, "/api/rooms/hall-c/desks").await;
    assert_eq!((st, d["desks"][0]["device_id"].as_str()), (200, Some("desk-7")));
    assert_eq!(h.get_as(&cleo, "/api/rooms/hall-a/desks").await.0, 403);
    // The token works until the desk is revoked from the console.
    let b = batch("desk-7", "d7-b1", None, 0, 3, now_ms());
    assert_eq!(h.post_batch(&token, "d7-b1", body(&b), &[]).await.0, 200);
    let r = h.http.post(h.url("/api/admin/desks/desk-7/revoke")).header("cookie", &admin).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let b = batch("desk-7", "d7-b2", None, 3, 3, now_ms());
    assert_eq!(h.post_batch(&token, "d7-b2", body(&b), &[]).await.0, 401, "revoked");
    let (_, a) = h.get_as(&admin, "/api/audit").await;
    let actions: Vec<&str> = a["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(
        actions.starts_with(&["device.revoke"]) && actions.contains(&"user.add") && actions.contains(&"device.add"),
        "{actions:?}"
    );
    h.stop().await;
}
