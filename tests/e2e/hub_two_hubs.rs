//! Two hub processes on one database: a desk connected to hub A is seen
//! live through hub B; an exam started on hub B reaches the desk on hub A
//! within 2 s, and a stop from the command line too; when hub A dies the
//! desk shows offline through hub B.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use invigil_e2e::hub::{self, Hub};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Logs in at `port`; the cookie.
fn login(port: u16, user: &str, password: &str) -> String {
    let body = serde_json::json!({"user": user, "password": password}).to_string();
    let r = hub::request(port, "POST", "/api/login", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("set-cookie").unwrap().split(';').next().unwrap().to_string()
}

/// Polls `f` every 100 ms until it gives Some, at most `limit`.
fn until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_desk_on_hub_a_is_seen_and_driven_through_hub_b() {
    let db = invigil_e2e::pg::database("hub_two");
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (hub::free_port(), hub::free_port());
    let cfg_a = hub::config_on(dir.path(), "hub-a.toml", &db, pa, "");
    let cfg_b = hub::config_on(dir.path(), "hub-b.toml", &db, pb, "");
    for (cfg, id) in [(&cfg_a, "hub-a"), (&cfg_b, "hub-b")] {
        let text =
            std::fs::read_to_string(cfg).unwrap().replace("[server]\n", &format!("[server]\nhub_id = \"{id}\"\n"));
        std::fs::write(cfg, text).unwrap();
    }
    let token = hub::enrol(&cfg_a, "desk-1", "hall-a");
    let out = hub::cmd_with_stdin(&cfg_a, &["user", "add", "ada", "--role", "admin"], "correct horse battery\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = Hub::start(&cfg_a);
    let b = Hub::start(&cfg_b);
    let cookie = login(pb, "ada", "correct horse battery");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    // The desk: connected to hub A, a state every 200 ms; session messages
    // go to `sessions` with the time they arrived.
    let (tx, sessions) = std::sync::mpsc::channel::<(Instant, Option<String>)>();
    let url = format!("ws://127.0.0.1:{pa}{}", proto::device::DEVICE_WS_PATH);
    let desk = rt.spawn(async move {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let (mut w, mut r) = ws.split();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        for frame in 0u64..3000 {
            tokio::select! {
                _ = tick.tick() => {
                    let st = proto::device::FromDevice::State(proto::device::DeviceState {
                        ts: Some(proto::Timestamp(chrono::Utc::now())),
                        frame: Some(frame),
                        focus_score: Some(77),
                        ..Default::default()
                    });
                    if w.send(Message::Text(serde_json::to_string(&st).unwrap().into())).await.is_err() { return; }
                }
                m = r.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(proto::device::ToDevice::Session { session }) = serde_json::from_str(t.as_str()) {
                            let _ = tx.send((Instant::now(), session.map(|s| s.session_id)));
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    });
    let first = sessions.recv_timeout(Duration::from_secs(5)).expect("the initial session message");
    assert_eq!(first.1, None);

    // Seen live through hub B.
    let desks = |port: u16| {
        let r = hub::get(port, "/api/rooms/hall-a/desks", &[("Cookie", &cookie)]).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["desks"][0].clone()
    };
    let seen = until(Duration::from_secs(5), || {
        Some(desks(pb)).filter(|d| d["online"] == true && d["state"]["focus_score"] == 77)
    });
    let seen = seen.unwrap_or_else(|| panic!("hub B never showed desk-1 live: {}", desks(pb)));
    assert_eq!(seen["hub"], "hub-a");

    // An exam started on hub B reaches the desk on hub A within 2 s.
    let body =
        serde_json::json!({"room": "hall-a", "roster": [{"desk": "desk-1", "student_id": "s-1"}], "start": true})
            .to_string();
    let sent = Instant::now();
    let r = hub::request(
        pb,
        "POST",
        "/api/exams",
        &[("Content-Type", "application/json"), ("Cookie", &cookie)],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let (at, s) = sessions.recv_timeout(Duration::from_secs(2)).expect("the session within 2 s of the start on hub B");
    assert_eq!(s, Some(format!("ex{id}-desk-1")));
    eprintln!("hub_two_hubs: start on B reached the desk on A after {:?}", at - sent);

    // A stop from the command line (a third process) too.
    let sent = Instant::now();
    let out = hub::cmd(&cfg_b, &["exam", "stop", &id.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (at, s) = sessions.recv_timeout(Duration::from_secs(2)).expect("the stop within 2 s");
    assert_eq!(s, None);
    eprintln!("hub_two_hubs: stop from the CLI reached the desk after {:?}", at - sent);

    // Hub A dies (kill -9: it cannot say goodbye): hub B shows the desk
    // offline once nothing was heard for 10 s.
    a.kill9();
    let off = until(Duration::from_secs(15), || Some(desks(pb)).filter(|d| d["online"] == false));
    assert!(off.is_some(), "hub B still shows desk-1 online: {}", desks(pb));
    desk.abort();
    drop(b);
}
