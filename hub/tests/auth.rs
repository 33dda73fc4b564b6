//! Console users and rights: login sets an HttpOnly, SameSite=Strict
//! cookie; no session is a 401; a proctor sees and changes only the rooms
//! granted (403 elsewhere: desks, exams, incidents, clips); cross-site
//! writes are refused; admin actions are audited.

mod support;

use support::{TestHub, batch, body, now_ms};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_a_strict_cookie_and_wrong_passwords_are_refused() {
    let h = TestHub::start("auth_login", "").await;
    h.add_user("ada", "admin", &[]).await;
    let login = |user: &str, pw: &str| {
        h.http
            .post(h.url("/api/login"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"user": user, "password": pw}).to_string())
            .send()
    };
    for (u, pw) in [("ada", "wrong horse battery"), ("bob", "correct horse battery")] {
        let r = login(u, pw).await.unwrap();
        assert_eq!(r.status(), 401, "{u}");
        assert!(r.headers().get("set-cookie").is_none());
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["error"], "wrong user name or password", "the same answer for a wrong name");
        assert_eq!(body.as_object().unwrap().len(), 2, "error and request_id only: {body}");
    }
    let r = login("ada", "correct horse battery").await.unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("invigil_session=") && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let (st, me) = h.get_as(&cookie, "/api/me").await;
    assert_eq!((st, me["user"].as_str(), me["role"].as_str()), (200, Some("ada"), Some("admin")));
    // The database holds only the hash of the cookie's token.
    let c = h.db().await;
    let tok = cookie.split_once('=').unwrap().1;
    let n: i64 = c
        .query_one("SELECT count(*) FROM login_sessions WHERE token_sha256 = $1", &[&hub::token::hash(tok)])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop(c);
    let r = h.http.post(h.url("/api/logout")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(h.get_as(&cookie, "/api/me").await.0, 401, "logged out");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_throttled_per_name_across_hubs_until_the_failures_age_out() {
    let limits = "[limits]\nlogin_failures = 3\nlogin_window_min = 1\n";
    let h = TestHub::start("auth_throttle", limits).await;
    for name in ["ada", "bob"] {
        h.add_user(name, "admin", &[]).await;
    }
    let login = |h: &TestHub, user: &str, pw: &str| {
        h.http
            .post(h.url("/api/login"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"user": user, "password": pw}).to_string())
            .send()
    };
    for i in 0..3 {
        assert_eq!(login(&h, "ada", &format!("guess {i}")).await.unwrap().status(), 401, "guess {i}");
    }
    // The right password now is refused unchecked, with a time to wait.
    let r = login(&h, "ada", "correct horse battery").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("set-cookie").is_none());
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "retry-after {wait}");
    assert!(r.text().await.unwrap().contains("too many failed logins"));
    // Another name is not affected; a second hub on the database refuses too.
    assert_eq!(login(&h, "bob", "correct horse battery").await.unwrap().status(), 200);
    let h2 = support::TestHub::on(h.db_url.clone(), limits).await;
    assert_eq!(login(&h2, "ada", "correct horse battery").await.unwrap().status(), 429, "through hub B");
    assert_eq!(login(&h2, "ada", "guess 4").await.unwrap().status(), 429);
    let failures = |h: &TestHub| {
        let h = h.running.app.db.clone();
        async move {
            let c = h.get().await.unwrap();
            c.query_one("SELECT count(*) FROM login_failures WHERE user_name = 'ada'", &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(failures(&h).await, 3, "a refused attempt is not checked and not counted");
    // The window passes (PostgreSQL's clock: moved, not waited for).
    h.db().await.execute("UPDATE login_failures SET at = at - interval '61 seconds'", &[]).await.unwrap();
    assert_eq!(login(&h2, "ada", "correct horse battery").await.unwrap().status(), 200);
    assert_eq!(failures(&h).await, 0, "a success clears the count");
    h2.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proctor_sees_only_the_rooms_granted() {
    let h = TestHub::start("auth_rights", "").await;
    let ta = h.enrol("a-1", "hall-a").await;
    let tb = h.enrol("b-1", "hall-b").await;
    let admin = h.user("ada", "admin", &[]).await;
    let pa = h.user("pat", "proctor", &["hall-a"]).await;
    // An exam in each room, each with an incident and a clip.
    let mut ids = vec![];
    for (room, desk, tok) in [("hall-a", "a-1", &ta), ("hall-b", "b-1", &tb)] {
        let (st, exam) = h
            .post_as(&admin, "/api/exams", serde_json::json!({"room": room, "roster": [{"desk": desk, "student_id": format!("s-{desk}")}], "start": true}))
            .await;
        assert_eq!(st, 201, "{exam}");
        let id = exam["id"].as_i64().unwrap();
        let session = format!("ex{id}-{desk}");
        let student = format!("s-{desk}");
        let mut b = batch(desk, &format!("{desk}-b"), Some((&session, &student)), 0, 10, now_ms());
        b.incidents.push(proto::Incident::new(
            format!("{desk}-i"),
            proto::Timestamp(chrono::Utc::now()),
            None,
            5,
            vec![],
            vec![],
        ));
        assert_eq!(h.post_batch(tok, &b.batch_id, body(&b), &[]).await.0, 200);
        let r = h
            .http
            .put(h.url(&format!("/api/device/incidents/{desk}-i/clips/0")))
            .header("authorization", format!("Bearer {tok}"))
            .body(vec![1u8; 100])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let c = h.db().await;
        let inc: i64 = c
            .query_one("SELECT id FROM incidents WHERE incident_key = $1", &[&format!("{desk}-i")])
            .await
            .unwrap()
            .get(0);
        ids.push((id, inc));
    }
    let [(exam_a, inc_a), (exam_b, inc_b)] = ids[..] else { unreachable!() };

    let (st, rooms) = h.get_as(&pa, "/api/rooms").await;
    assert_eq!((st, rooms["rooms"].as_array().unwrap().len()), (200, 1), "{rooms}");
    for (path, want) in [
        ("/api/rooms/hall-a/desks".to_string(), 200),
        (format!("/api/exams/{exam_a}"), 200),
        (format!("/api/exams/{exam_a}/incidents"), 200),
        (format!("/api/incidents/{inc_a}/clip"), 200),
        ("/api/rooms/hall-b/desks".to_string(), 403),
        ("/api/rooms/hall-b/exams".to_string(), 403),
        ("/api/rooms/no-such-room/desks".to_string(), 403),
        (format!("/api/exams/{exam_b}"), 403),
        (format!("/api/exams/{exam_b}/incidents"), 403),
        (format!("/api/incidents/{inc_b}/clip"), 403),
    ] {
        let r = h.http.get(h.url(&path)).header("cookie", &pa).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "proctor GET {path}");
        let r = h.http.get(h.url(&path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "GET {path} without a session");
    }
    let (st, _) = h.post_as(&pa, &format!("/api/exams/{exam_b}/stop"), serde_json::json!({})).await;
    assert_eq!(st, 403);
    let (st, _) = h
        .post_as(
            &pa,
            "/api/exams",
            serde_json::json!({"room": "hall-b", "roster": [{"desk": "b-1", "student_id": "x"}]}),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) =
        h.post_as(&pa, &format!("/api/incidents/{inc_b}/review"), serde_json::json!({"decision": "dismissed"})).await;
    assert_eq!(st, 403);
    let (st, _) =
        h.post_as(&pa, &format!("/api/incidents/{inc_a}/review"), serde_json::json!({"decision": "dismissed"})).await;
    assert_eq!(st, 204);
    assert_eq!(h.get_as(&admin, "/api/rooms/no-such-room/desks").await.0, 404, "an admin learns it does not exist");

    // Cross-site: a page elsewhere cannot stop an exam with the cookie.
    let r = h
        .http
        .post(h.url(&format!("/api/exams/{exam_a}/stop")))
        .header("cookie", &pa)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, exam) = h.get_as(&admin, &format!("/api/exams/{exam_a}")).await;
    assert_eq!(exam["state"], "running", "the cross-site stop changed nothing");
    let (st, _) = h.post_as(&pa, &format!("/api/exams/{exam_a}/stop"), serde_json::json!({})).await;
    assert_eq!(st, 200, "the same request from the console itself");

    let c = h.db().await;
    let audit = hub::db::audit::recent(&**c, 50).await.unwrap();
    for (who, what) in [
        ("ada", "exam.create"),
        ("ada", "exam.start"),
        ("pat", "exam.stop"),
        ("pat", "incident.review"),
        ("pat", "clip.view"),
    ] {
        assert!(audit.iter().any(|(w, a, _)| w == who && a == what), "{who} {what} audited: {audit:?}");
    }
    drop(c);
    h.stop().await;
}
