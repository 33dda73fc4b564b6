//! A batch receiver for tests: a real HTTP/1.1 server (hyper) on
//! 127.0.0.1:0 that stores batches once per `Idempotency-Key`, logs every
//! request, and injects faults on demand. Shared by `agent/tests` and
//! `tests/e2e` (included by path).
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What the next request gets instead of a plain 200.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this status (not stored).
    Status(u16),
    /// Answer this status with `Retry-After: SECONDS` (not stored).
    RetryAfter(u16, u64),
    /// Close the connection without an answer (not stored).
    Reset,
    /// Store the batch, then answer 200 after this delay.
    Slow(Duration),
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub key: Option<String>,
    pub auth: Option<String>,
    pub gzip: bool,
    pub content_type: Option<String>,
    pub status: u16,
    /// The decoded JSON body, faulted requests too (None if it did not parse).
    pub body: Option<serde_json::Value>,
    /// Bytes on the wire: request line, headers and body.
    pub wire_bytes: usize,
    pub body_bytes: usize,
    pub at: Instant,
    /// A repeat of a key already stored.
    pub duplicate: bool,
}

#[derive(Default)]
struct State {
    faults: VecDeque<Fault>,
    /// Every request gets this while set.
    always: Option<Fault>,
    /// Reset connections at accept (upstream "down").
    down: bool,
    /// Required bearer token (else 401).
    token: Option<String>,
    /// Answer 415 to gzip'd bodies.
    no_gzip: bool,
    stored: Vec<serde_json::Value>,
    keys: HashMap<String, usize>,
    log: Vec<Received>,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let (stream, _) = tokio::select! {
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                        _ = &mut rx => break,
                    };
                    if st.lock().unwrap().down {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        continue;
                    }
                    let st = st.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handle(st.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("receiver did not start");
        Receiver { url: format!("http://{addr}/api/exam/analyze-batch"), state, stop: Some(tx), thread: Some(thread) }
    }

    /// Faults for the next requests, one each, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    pub fn set_always(&self, fault: Option<Fault>) {
        self.state.lock().unwrap().always = fault;
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn require_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.to_string());
    }

    pub fn refuse_gzip(&self, refuse: bool) {
        self.state.lock().unwrap().no_gzip = refuse;
    }

    /// Every request, in arrival order.
    pub fn log(&self) -> Vec<Received> {
        self.state.lock().unwrap().log.clone()
    }

    /// Stored batches (one per key), in the order they were first stored.
    pub fn stored(&self) -> Vec<serde_json::Value> {
        self.state.lock().unwrap().stored.clone()
    }

    /// (batch_id, frame) of every stored score, in order.
    pub fn frames(&self) -> Vec<(String, u64)> {
        self.stored()
            .iter()
            .flat_map(|b| {
                let id = b["batch_id"].as_str().unwrap_or_default().to_string();
                b["scores"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |s| (id.clone(), s["frame"].as_u64().unwrap()))
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn handle(st: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let key = header("idempotency-key");
    let auth = header("authorization");
    let gzip = header("content-encoding").as_deref() == Some("gzip");
    let content_type = header("content-type");
    let head_bytes = req.method().as_str().len()
        + req.uri().to_string().len()
        + 12
        + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>()
        + 2;
    let raw = req.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes();
    let text = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).ok().map(|_| out)
    } else {
        Some(raw.to_vec())
    };
    let mut rec = Received {
        key: key.clone(),
        auth: auth.clone(),
        gzip,
        content_type,
        status: 0,
        body: text.as_deref().and_then(|t| serde_json::from_slice(t).ok()),
        wire_bytes: head_bytes + raw.len(),
        body_bytes: raw.len(),
        at: Instant::now(),
        duplicate: false,
    };
    let fault = {
        let mut s = st.lock().unwrap();
        s.always.clone().or_else(|| s.faults.pop_front())
    };
    let answer = |st: &Arc<Mutex<State>>, mut rec: Received, status: u16| {
        rec.status = status;
        st.lock().unwrap().log.push(rec);
    };
    match fault {
        Some(Fault::Reset) => {
            answer(&st, rec, 0);
            return Err(std::io::Error::other("injected reset"));
        }
        Some(Fault::Status(s)) => {
            answer(&st, rec, s);
            return Ok(reply(s, "{\"error\":\"injected\"}"));
        }
        Some(Fault::RetryAfter(s, secs)) => {
            answer(&st, rec, s);
            let mut r = reply(s, "{\"error\":\"busy\"}");
            r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
            return Ok(r);
        }
        _ => {}
    }
    let (token, no_gzip) = {
        let s = st.lock().unwrap();
        (s.token.clone(), s.no_gzip)
    };
    if let Some(t) = token
        && auth.as_deref() != Some(&format!("Bearer {t}"))
    {
        answer(&st, rec, 401);
        return Ok(reply(401, "{\"error\":\"bad token\"}"));
    }
    if gzip && no_gzip {
        answer(&st, rec, 415);
        return Ok(reply(415, "{\"error\":\"gzip not supported\"}"));
    }
    let Some(body) = rec.body.clone() else {
        answer(&st, rec, 400);
        return Ok(reply(400, "{\"error\":\"bad gzip or JSON\"}"));
    };
    {
        let mut s = st.lock().unwrap();
        let k = key.clone().unwrap_or_default();
        if s.keys.contains_key(&k) {
            rec.duplicate = true;
        } else {
            let n = s.stored.len();
            s.keys.insert(k, n);
            s.stored.push(body);
        }
    }
    if let Some(Fault::Slow(d)) = fault {
        answer(&st, rec, 200);
        tokio::time::sleep(d).await;
        return Ok(reply(200, "{\"ok\":true}"));
    }
    answer(&st, rec, 200);
    Ok(reply(200, "{\"ok\":true}"))
}
