//! Clips through the hub: a box uploads with its device token only; the
//! hub checks the incident is the box's and the size is sane, picks the
//! object key, streams to storage (a local folder, and real S3 through
//! moto), and serves the clip with Range to console users with rights.

mod support;

#[path = "../../agent/tests/support/moto.rs"]
mod moto;

use std::time::Duration;

use support::{TestHub, batch, body, now_ms};

/// A running exam in hall-a with desk-1 (student s-1) and desk-2, and an
/// incident `desk-1-i1` delivered by desk-1: (exam id, desk-1 token, desk-2 token).
async fn exam_with_incident(h: &TestHub) -> (i64, String, String) {
    let t1 = h.enrol("desk-1", "hall-a").await;
    let t2 = h.enrol("desk-2", "hall-a").await;
    let seats = vec![
        hub::roster::Seat { desk: "desk-1".into(), student_id: "s-1".into(), ..Default::default() },
        hub::roster::Seat { desk: "desk-2".into(), student_id: "s-2".into(), ..Default::default() },
    ];
    let new = hub::db::exams::NewExam {
        room: "hall-a".into(),
        name: None,
        seats,
        start_at: None,
        end_at: None,
        created_by: "t".into(),
        retention_days: None,
    };
    let id = hub::actions::exams::create(&h.running.app.db, "t", &new, true).await.unwrap();
    let session = format!("ex{id}-desk-1");
    let mut b = batch("desk-1", "desk-1-b1", Some((&session, "s-1")), 0, 30, now_ms());
    let t = proto::Timestamp(chrono::Utc::now());
    b.incidents.push(proto::Incident::new("desk-1-i1".into(), t, None, 12, vec![proto::Reason::NoFace], vec![]));
    assert_eq!(h.post_batch(&t1, &b.batch_id, body(&b), &[]).await.0, 200);
    (id, t1, t2)
}

async fn put(h: &TestHub, token: &str, path: &str, data: Vec<u8>) -> (u16, serde_json::Value) {
    let r = h.http.put(h.url(path)).header("authorization", format!("Bearer {token}")).body(data).send().await.unwrap();
    let st = r.status().as_u16();
    (st, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null))
}

/// Files under a folder, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Sends `text` on a raw connection, half-closes it (`close`: after
/// reading the answer's head), and returns what came back.
async fn raw(addr: std::net::SocketAddr, text: &str, read_first: bool) -> String {
    let text = text.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(text.as_bytes()).unwrap();
        let mut out = vec![0u8; 4096];
        let mut n = 0;
        if read_first {
            n = s.read(&mut out).unwrap_or(0);
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        if !read_first {
            n = s.read(&mut out).unwrap_or(0);
        }
        String::from_utf8_lossy(&out[..n]).to_string()
    })
    .await
    .unwrap()
}

fn clip_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_goes_through_the_hub_to_a_key_the_hub_chose_and_plays_back_with_ranges() {
    let h = TestHub::start("clips_local", "").await;
    let (exam, t1, _) = exam_with_incident(&h).await;
    let data = clip_bytes(3 << 20);
    let (st, clip) = put(&h, &t1, "/api/device/incidents/desk-1-i1/clips/0", data.clone()).await;
    assert_eq!(st, 200, "{clip}");
    let key = format!("ex{exam}-desk-1/s-1/desk-1-i1.mp4");
    assert_eq!(clip["key"], key);
    assert_eq!(clip["bytes"], data.len());
    let url = clip["url"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(h.clips_dir().join(&key)).unwrap(), data, "stored as sent");
    // A chained second clip of the same incident.
    let (st, clip1) = put(&h, &t1, "/api/device/incidents/desk-1-i1/clips/1", clip_bytes(1000)).await;
    assert_eq!((st, clip1["key"].as_str()), (200, Some(format!("ex{exam}-desk-1/s-1/desk-1-i1-1.mp4").as_str())));

    // exam show has it.
    let c = h.db().await;
    let show = hub::db::exam_show::show(&**c, exam).await.unwrap().unwrap();
    let d1 = show.desks.iter().find(|d| d.device_id == "desk-1").unwrap();
    assert_eq!(d1.incidents.len(), 1);
    let inc = &d1.incidents[0];
    assert_eq!(inc.clip.as_ref().map(|c| (c.size, c.parts)), Some((data.len() as i64, 2)));
    drop(c);

    // Playback by a user with rights, whole and by range.
    let admin = h.user("ada", "admin", &[]).await;
    let r = h.http.get(h.url(&url)).header("cookie", &admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let r = h.http.get(h.url(&url)).header("cookie", &admin).header("range", "bytes=1000-1999").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 1000-1999/{}", data.len()));
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[1000..2000].to_vec());
    let r = h.http.get(h.url(&url)).header("cookie", &admin).header("range", "bytes=99999999-").send().await.unwrap();
    assert_eq!(r.status(), 416);
    let r = h.http.get(h.url(&format!("{url}?part=1"))).header("cookie", &admin).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
    // Every view is in the audit log.
    let c = h.db().await;
    let audit = hub::db::audit::recent(&**c, 10).await.unwrap();
    assert!(audit.iter().any(|(who, what, _)| who == "ada" && what == "clip.view"), "{audit:?}");
    drop(c);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_cannot_upload_for_another_desk_or_name_a_key_and_bad_sizes_store_nothing() {
    let h = TestHub::start("clips_bad", "[limits]\nmax_clip_mib = 1\n").await;
    let (_, t1, t2) = exam_with_incident(&h).await;
    let small = clip_bytes(1000);
    let cases: Vec<(&str, &str, &str, u16, &str)> = vec![
        ("another desk's incident", &t2, "/api/device/incidents/desk-1-i1/clips/0", 403, "is not desk desk-2's"),
        ("an incident not known yet", &t1, "/api/device/incidents/desk-1-i9/clips/0", 409, "not known yet"),
        ("a wrong token", "nope", "/api/device/incidents/desk-1-i1/clips/0", 401, "unknown or revoked"),
        ("a key as the incident", &t1, "/api/device/incidents/..%2F..%2Fother%2Fkey/clips/0", 400, "is not an id"),
        ("a key as the part", &t1, "/api/device/incidents/desk-1-i1/clips/..%2Fother.mp4", 400, "is not a number 0-99"),
        ("a part out of range", &t1, "/api/device/incidents/desk-1-i1/clips/100", 400, "is not a number 0-99"),
    ];
    for (what, tok, path, status, words) in cases {
        let (st, e) = put(&h, tok, path, small.clone()).await;
        assert_eq!(st, status, "{what}: {e}");
        assert!(e["error"].as_str().unwrap_or("").contains(words), "{what}: {e}");
    }
    // No route lets a box name a storage key.
    let (st, _) = put(&h, &t1, "/api/device/clips/ex1-desk-2/s-2/x.mp4", small.clone()).await;
    assert_eq!(st, 404);
    // Over the size limit, from Content-Length: 8 MiB, more than the
    // socket buffers hold, so the client is still writing when the hub
    // refuses; it must read the 413, not a broken pipe.
    let (st, e) = put(&h, &t1, "/api/device/incidents/desk-1-i1/clips/0", clip_bytes(8 << 20)).await;
    assert_eq!(st, 413, "{e}");
    // Without Content-Length (a chunked stream).
    let reply = raw(h.running.addr, &format!("PUT /api/device/incidents/desk-1-i1/clips/0 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {t1}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"), true).await;
    assert!(reply.starts_with("HTTP/1.1 411"), "{reply}");
    // A body that ends before its Content-Length: nothing kept.
    let head = format!(
        "PUT /api/device/incidents/desk-1-i1/clips/0 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {t1}\r\nContent-Length: 5000\r\n\r\n"
    );
    raw(h.running.addr, &format!("{head}{}", "x".repeat(100)), false).await;
    // Give the hub a moment to finish aborting the upload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.count("clips").await, 0, "no clip recorded");
    assert!(files(&h.clips_dir()).is_empty(), "no object kept: {:?}", files(&h.clips_dir()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_go_to_s3_through_the_hub_without_keys_on_the_box() {
    let m = tokio::task::spawn_blocking(|| {
        let m = moto::Moto::start();
        m.create_bucket("exam-clips");
        m
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("s3.credentials");
    std::fs::write(&creds, "access_key_id=testing\nsecret_access_key=testing\n").unwrap();
    let extra = format!(
        "[storage]\nurl = \"s3://exam-clips/hub\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\ncredentials_file = \"{}\"\n",
        m.endpoint,
        creds.display()
    );
    let h = TestHub::start("clips_s3", &extra).await;
    let (exam, t1, _) = exam_with_incident(&h).await;
    // 10 MiB: more than one 8 MiB part, so a real multipart upload.
    let data = clip_bytes(10 << 20);
    let (st, clip) = put(&h, &t1, "/api/device/incidents/desk-1-i1/clips/0", data.clone()).await;
    assert_eq!(st, 200, "{clip}");
    let key = format!("hub/ex{exam}-desk-1/s-1/desk-1-i1.mp4");
    assert_eq!(clip["key"], key);
    let port = m.port;
    let head = tokio::task::spawn_blocking(move || moto::head(port, &format!("/exam-clips/{key}"))).await.unwrap();
    assert_eq!(head, Some((200, Some(data.len() as u64))), "the object is in the bucket");
    let admin = h.user("ada", "admin", &[]).await;
    let r = h
        .http
        .get(h.url(clip["url"].as_str().unwrap()))
        .header("cookie", &admin)
        .header("range", "bytes=-4096")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[data.len() - 4096..].to_vec());
    h.stop().await;
    drop(m);
}
