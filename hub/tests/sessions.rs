//! Sessions from the hub: boxes keep one WebSocket (`/api/device/ws`) and
//! learn their exam session within 2 s of a start or stop, whoever starts
//! it (the JSON API, another process through the database, the
//! scheduler); live state flows up and is visible in the rooms API.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proto::device::{DeviceState, FromDevice, ToDevice};
use support::TestHub;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The hub's promise: a session change reaches a connected desk within this.
const WITHIN: Duration = Duration::from_secs(2);

async fn connect(h: &TestHub, token: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}{}", h.running.addr, proto::device::DEVICE_WS_PATH).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

/// The next hub message within `limit` (pings skipped).
async fn next(ws: &mut Ws, limit: Duration) -> Option<ToDevice> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()?;
        match m {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

async fn session_of(ws: &mut Ws, limit: Duration) -> Option<proto::device::DeviceSession> {
    match next(ws, limit).await {
        Some(ToDevice::Session { session }) => session,
        other => panic!("expected a session message within {limit:?}, got {other:?}"),
    }
}

async fn hello(h: &TestHub, token: &str, desk: &str, room: &str) -> Ws {
    let mut ws = connect(h, token).await.unwrap();
    match next(&mut ws, WITHIN).await {
        Some(ToDevice::Welcome { device_id, room: r, .. }) => {
            assert_eq!((device_id.as_str(), r.as_str()), (desk, room))
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    assert_eq!(session_of(&mut ws, WITHIN).await, None, "no exam yet");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exam_started_and_stopped_over_the_api_reaches_its_desks_within_2_s() {
    let h = TestHub::start("sessions_api", "").await;
    let t1 = h.enrol("desk-1", "hall-a").await;
    let t2 = h.enrol("desk-2", "hall-a").await;
    h.enrol("desk-9", "hall-b").await;
    let admin = h.user("ada", "admin", &[]).await;
    let mut w1 = hello(&h, &t1, "desk-1", "hall-a").await;
    let mut w2 = hello(&h, &t2, "desk-2", "hall-a").await;

    // A roster naming a desk of another room is refused, naming the entry.
    let roster =
        serde_json::json!([{"desk": "desk-1", "student_id": "s-100"}, {"desk": "desk-9", "student_id": "s-109"}]);
    let (st, e) =
        h.post_as(&admin, "/api/exams", serde_json::json!({"room": "hall-a", "roster": roster, "start": true})).await;
    assert_eq!(st, 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("roster[1]: desk \"desk-9\" is in room \"hall-b\""), "{e}");

    let roster =
        serde_json::json!([{"desk": "desk-1", "student_id": "s-101"}, {"desk": "desk-2", "student_id": "s-102"}]);
    let (st, exam) =
        h.post_as(&admin, "/api/exams", serde_json::json!({"room": "hall-a", "roster": roster, "start": true})).await;
    assert_eq!(st, 201, "{exam}");
    let id = exam["id"].as_i64().unwrap();
    assert_eq!(exam["state"], "running");
    let s1 = session_of(&mut w1, WITHIN).await.expect("desk-1 got its session");
    assert_eq!((s1.session_id.as_str(), s1.student_id.as_str()), (format!("ex{id}-desk-1").as_str(), "s-101"));
    assert_eq!(s1.exam_id, Some(id.to_string()));
    let s2 = session_of(&mut w2, WITHIN).await.expect("desk-2 got its session");
    assert_eq!(s2.student_id, "s-102");

    // The desk reports its state; the rooms API shows it live.
    let st = DeviceState {
        ts: Some(proto::Timestamp(chrono::Utc::now())),
        session_id: Some(s1.session_id.clone()),
        frame: Some(30),
        focus_score: Some(12),
        reasons: vec![proto::Reason::NoFace],
        alert: true,
        ..Default::default()
    };
    w1.send(Message::Text(serde_json::to_string(&FromDevice::State(st)).unwrap().into())).await.unwrap();
    // A message type this hub does not know is ignored, not fatal.
    w1.send(Message::Text(r#"{"type":"hello_from_the_future","x":1}"#.into())).await.unwrap();
    let mut seen = serde_json::Value::Null;
    for _ in 0..40 {
        let (code, desks) = h.get_as(&admin, "/api/rooms/hall-a/desks").await;
        assert_eq!(code, 200, "{desks}");
        seen = desks["desks"][0].clone();
        if seen["state"]["focus_score"] == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["device_id"], "desk-1");
    assert_eq!(seen["online"], true, "{seen}");
    assert_eq!(seen["state"]["focus_score"], 12, "{seen}");
    assert_eq!(seen["session"]["student_id"], "s-101", "{seen}");

    // The same desk cannot be in two running exams.
    let (st, e) = h
        .post_as(
            &admin,
            "/api/exams",
            serde_json::json!({"room": "hall-a", "roster": [{"desk": "desk-1", "student_id": "s-201"}], "start": true}),
        )
        .await;
    assert_eq!(st, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("desk \"desk-1\" is in session"), "{e}");
    assert!(next(&mut w1, Duration::from_millis(300)).await.is_none(), "nothing pushed for a refused start");

    let (st, e) = h.post_as(&admin, &format!("/api/exams/{id}/stop"), serde_json::json!({})).await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(session_of(&mut w1, WITHIN).await, None, "desk-1 stopped");
    assert_eq!(session_of(&mut w2, WITHIN).await, None, "desk-2 stopped");
    let (st, _) = h.post_as(&admin, &format!("/api/exams/{id}/start"), serde_json::json!({})).await;
    assert_eq!(st, 409, "a stopped exam does not start again");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_from_another_process_and_a_missed_notification_both_arrive() {
    let h = TestHub::start("sessions_db", "").await;
    let t1 = h.enrol("desk-1", "hall-a").await;
    let mut w1 = hello(&h, &t1, "desk-1", "hall-a").await;
    // As `invigil-hub exam start` does from its own process: the database
    // notifies this hub.
    let db = hub::db::Db::connect(&h.db_url, 1).await.unwrap();
    let new = hub::db::exams::NewExam {
        room: "hall-a".into(),
        name: None,
        seats: vec![hub::roster::Seat { desk: "desk-1".into(), student_id: "s-1".into(), ..Default::default() }],
        start_at: None,
        end_at: None,
        created_by: "test".into(),
        retention_days: None,
    };
    let id = hub::actions::exams::create(&db, "test", &new, true).await.unwrap();
    let c = db.get().await.unwrap();
    assert_eq!(session_of(&mut w1, WITHIN).await.unwrap().session_id, format!("ex{id}-desk-1"));
    // A change without a notification (as if it were lost): the periodic
    // reconcile delivers it.
    c.execute("UPDATE sessions SET stopped_at = now()", &[]).await.unwrap();
    let limit = hub::jobs::reconcile::EVERY + WITHIN;
    assert_eq!(session_of(&mut w1, limit).await, None, "the reconcile pushed the stop");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_exam_starts_and_stops_by_itself() {
    let h = TestHub::start("sessions_sched", "").await;
    let t1 = h.enrol("desk-1", "hall-a").await;
    let admin = h.user("ada", "admin", &[]).await;
    let mut w1 = hello(&h, &t1, "desk-1", "hall-a").await;
    let now = chrono::Utc::now();
    let at = |s: i64| proto::Timestamp(now + chrono::Duration::seconds(s)).to_string();
    let (st, exam) = h
        .post_as(
            &admin,
            "/api/exams",
            serde_json::json!({"room": "hall-a", "roster": [{"desk": "desk-1", "student_id": "s-1"}], "start_at": at(1), "end_at": at(3)}),
        )
        .await;
    assert_eq!((st, exam["state"].as_str()), (201, Some("ready")), "{exam}");
    let s = session_of(&mut w1, Duration::from_secs(1) + WITHIN).await.expect("started on schedule");
    assert_eq!(s.student_id, "s-1");
    assert_eq!(session_of(&mut w1, Duration::from_secs(2) + WITHIN).await, None, "stopped on schedule");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_cannot_connect_and_a_revoked_desk_is_disconnected() {
    let h = TestHub::start("sessions_auth", "").await;
    let t1 = h.enrol("desk-1", "hall-a").await;
    match connect(&h, "nope").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    let mut w1 = hello(&h, &t1, "desk-1", "hall-a").await;
    hub::actions::desks::revoke(&h.running.app.db, "t", "desk-1").await.unwrap();
    assert_eq!(next(&mut w1, WITHIN).await, None, "closed after the revocation");
    h.stop().await;
}
