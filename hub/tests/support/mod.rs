//! An in-process hub on a fresh database of the test PostgreSQL
//! (`invigil_e2e::pg`), served on 127.0.0.1 with real HTTP, and helpers to
//! talk to it as a box and as a console user.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use hub::config::Config;
use hub::server::Running;

pub struct TestHub {
    pub running: Running,
    pub db_url: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl TestHub {
    /// A hub on a new database named after `name`; `extra` is TOML
    /// appended to the config (whole sections).
    pub async fn start(name: &str, extra: &str) -> TestHub {
        let db_url = tokio::task::spawn_blocking({
            let name = name.to_string();
            move || invigil_e2e::pg::database(&name)
        })
        .await
        .unwrap();
        Self::on(db_url, extra).await
    }

    /// A hub on an existing database.
    pub async fn on(db_url: String, extra: &str) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "[database]\nurl = \"{db_url}\"\npool_size = 4\n[server]\nlisten = \"127.0.0.1:0\"\nsecure_cookies = false\nshutdown_timeout_s = 5\n"
        );
        if !extra.contains("[storage]") {
            text.push_str(&format!("[storage]\nurl = \"file://{}\"\n", dir.path().join("clips").display()));
        }
        text.push_str(extra);
        let cfg = Config::parse(&text, "test.toml").unwrap().validate("test.toml").unwrap();
        let running = hub::server::start(cfg).await.unwrap();
        // Wait for the LISTEN connection, so notifications are not missed.
        for _ in 0..100 {
            if running.app.notify_up.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        TestHub { running, db_url, dir, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.addr)
    }

    pub fn clips_dir(&self) -> PathBuf {
        self.dir.path().join("clips")
    }

    /// A pooled connection of the hub's own pool.
    pub async fn db(&self) -> hub::db::Client {
        self.running.app.db.get().await.unwrap()
    }

    /// Enrols `desk` in `room`; its token.
    pub async fn enrol(&self, desk: &str, room: &str) -> String {
        hub::actions::desks::enrol(&self.running.app.db, "test", desk, room, false).await.unwrap()
    }

    /// Adds a console user (password "correct horse battery").
    pub async fn add_user(&self, name: &str, role: &str, rooms: &[&str]) {
        let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        let role = hub::domain::Role::parse(role).unwrap();
        hub::actions::users::add(&self.running.app.db, "test", name, role, &rooms, "correct horse battery")
            .await
            .unwrap();
    }

    /// Adds a user and logs in; the session cookie.
    pub async fn user(&self, name: &str, role: &str, rooms: &[&str]) -> String {
        self.add_user(name, role, rooms).await;
        let r = self
            .http
            .post(self.url("/api/login"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"user": name, "password": "correct horse battery"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login of {name}");
        let set = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
        set.split(';').next().unwrap().to_string()
    }

    /// GET as a console user: (status, JSON or null).
    pub async fn get_as(&self, cookie: &str, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(self.url(path)).header("cookie", cookie).send().await.unwrap();
        let st = r.status().as_u16();
        (st, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null))
    }

    /// POST JSON as a console user: (status, JSON or null).
    pub async fn post_as(&self, cookie: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("cookie", cookie)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        (st, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null))
    }

    /// POSTs a batch body as a box does (gzip'd unless `plain`).
    pub async fn post_batch(
        &self,
        token: &str,
        batch_id: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .post(self.url("/api/exam/analyze-batch"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("idempotency-key", batch_id)
            .body(body);
        let mut gz = true;
        for (k, v) in extra {
            if k.eq_ignore_ascii_case("content-encoding") && v.is_empty() {
                gz = false;
                continue;
            }
            req = req.header(*k, *v);
        }
        if gz && !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-encoding")) {
            req = req.header("content-encoding", "gzip");
        }
        let r = req.send().await.unwrap();
        let st = r.status().as_u16();
        (st, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null))
    }

    /// Rows in a table.
    pub async fn count(&self, table: &str) -> i64 {
        let c = self.db().await;
        // Table names are the test's own constants.
        c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A batch as the agent builds it (proto::Batch JSON).
pub fn batch(
    device: &str,
    batch_id: &str,
    session: Option<(&str, &str)>,
    first: u64,
    n: u64,
    t0_ms: i64,
) -> proto::Batch {
    let scores = (first..first + n)
        .map(|f| proto::Score {
            ts: proto::Timestamp::from_millis(t0_ms + f as i64 * 1000 / 30).unwrap(),
            frame: f,
            focus_score: (f % 101) as u8,
            num_faces: 1,
            yaw_deg: Some(-4.2),
            pitch_deg: Some(6.0),
            reasons: if f % 7 == 0 {
                vec![proto::Reason::LookingAway, proto::Reason::Other("future_signal".into())]
            } else {
                vec![]
            },
        })
        .collect();
    proto::Batch {
        session_id: session.map(|s| s.0.to_string()),
        student_id: session.map(|s| s.1.to_string()),
        device_id: device.into(),
        batch_id: batch_id.into(),
        scores,
        incidents: vec![],
    }
}

/// The JSON of `b`, gzip'd as the agent sends it.
pub fn body(b: &proto::Batch) -> Vec<u8> {
    invigil_e2e::hub::gzip(&serde_json::to_vec(b).unwrap())
}

/// Now in ms since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
