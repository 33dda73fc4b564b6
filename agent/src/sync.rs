//! Score sync: batches of spooled scores and incidents, POSTed to
//! `sync.endpoint` as `../shared/CONTRACTS.md` ("Upstream") says.
//!
//! # Guarantees
//! 1. **One batch in flight, in order.** Batches are formed from the spool
//!    in score order and sent one at a time; the next is formed only when
//!    the last was delivered or dead-lettered.
//! 2. **Same key, same bytes.** A batch is stored with its `batch_id` (sent
//!    as `Idempotency-Key`), its score range and its exact JSON body, and
//!    is on disk before its first send (the spool writer's next fsync, or
//!    one of its own when no writer runs). Every retry, also after a crash
//!    or a restart, sends the same key and the same rows; a receiver that
//!    honours the key stores each score once.
//! 3. **Delivered only after a 2xx.** [`classify`] decides, once: 2xx
//!    delivered; 408, 429, 5xx and transport errors (refused, reset,
//!    timeout) retried with exponential backoff (`backoff_min` doubling to
//!    `backoff_max`, "equal jitter": half fixed, half random) and never
//!    sooner than `Retry-After`; any other 4xx dead-lettered (the batch and
//!    its rows get state 2 and stay in the spool), reported by one error
//!    line per status per [`DEAD_LOG_EVERY`] and [`SyncStats`]; 1xx/3xx
//!    (redirects are not followed) are retried, as a misconfiguration must
//!    not lose data.
//! 4. **No hot loop on bad credentials.** After a 401 or 403 the loop
//!    pauses for `auth_pause` (5 min) or until the token file changes, so a
//!    wrong token dead-letters one batch, not the whole backlog.
//! 5. **Bounded.** At most `max_batch_scores` (900: 30 s at 30 FPS) scores
//!    and `max_batch_incidents` (50) incidents per batch; a backlog is sent
//!    batch after batch without waiting for the interval.
//! 6. **gzip when the server accepts it.** Bodies go gzip'd
//!    (`Content-Encoding: gzip`). A server that answers 415 to a gzip'd
//!    body (RFC 7694) gets plain JSON from then on (this run), and the same
//!    batch is re-sent at once.
//! 7. **Incidents and clips.** An incident goes in the batch after it opens
//!    and again after each change (close, clip uploaded: `"clip"` holds the
//!    object's key, URL and size once [`crate::upload`] has stored it).
//!
//! `every_nth_frame = N` sends the scores whose frame number is a multiple
//! of N; the others are marked delivered with their batch.
//!
//! # Layout
//! [`classify`] and [`retry_after`] are pure; [`Syncer::step`] makes one
//! attempt (tests and the benchmark drive it directly); [`spawn`] runs it
//! in a thread of its own (a current-thread tokio runtime) every interval.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::analysis::now_ts;
use crate::config::Validated;
use crate::spool::{Batch, BatchOutcome, BatchRows, IncidentRow, Spool, SpoolError, UploadedClip, WriterStats};
use crate::worker::Worker;

/// A dead-letter of the same status is logged at most this often.
pub const DEAD_LOG_EVERY: Duration = Duration::from_secs(600);
/// Characters of a refusal's reply kept for the log.
const REPLY_CHARS: usize = 200;

/// What the sync loop needs, every default documented.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// `sync.endpoint`: where batches are POSTed.
    pub endpoint: String,
    /// `device_id` in each batch.
    pub device_id: String,
    /// File holding the bearer token (`sync.token_file`, else
    /// `$CREDENTIALS_DIRECTORY/sync-token` if it exists). None: no
    /// `Authorization` header. Read before each attempt, so a rotated token
    /// takes effect without a restart.
    pub token_file: Option<PathBuf>,
    /// `sync.interval_s`. Default 3 s.
    pub interval: Duration,
    /// Default 900 (30 s at 30 FPS).
    pub max_batch_scores: usize,
    /// Default 50.
    pub max_batch_incidents: usize,
    /// `sync.every_nth_frame`. Default 1.
    pub every_nth_frame: u32,
    /// Default 30 s for a whole request; 5 s to connect.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Default 1 s doubling to 60 s.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// `Retry-After` is honoured up to this. Default 10 min.
    pub retry_after_max: Duration,
    /// Pause after a 401/403 unless the token changes. Default 5 min.
    pub auth_pause: Duration,
    /// How long to wait for the spool writer's next fsync before sending a
    /// new batch (else the sync loop fsyncs itself). Default 2 x commit
    /// interval + 0.5 s.
    pub durable_wait: Duration,
    /// Start with gzip'd bodies. Default true.
    pub gzip: bool,
}

impl SyncSettings {
    pub fn new(endpoint: impl Into<String>, device_id: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            device_id: device_id.into(),
            token_file: None,
            interval: Duration::from_secs(3),
            max_batch_scores: 900,
            max_batch_incidents: 50,
            every_nth_frame: 1,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(600),
            auth_pause: Duration::from_secs(300),
            durable_wait: Duration::from_millis(2500),
            gzip: true,
        }
    }

    /// From the config's `[sync]`; `None` when `sync.endpoint` is absent
    /// (scores then stay in the spool). Errors name the field.
    pub fn from_config(cfg: &Validated) -> Result<Option<Self>, SyncError> {
        let s = &cfg.raw.sync;
        let Some(endpoint) = &s.endpoint else { return Ok(None) };
        let bad = |field: &'static str, message: String| SyncError::Config { field, message };
        match reqwest::Url::parse(endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(bad(
                    "sync.endpoint",
                    format!(
                        "{endpoint:?} is not an http(s) URL; use e.g. \"https://exam.example/api/exam/analyze-batch\""
                    ),
                ));
            }
        }
        if !(1..=3600).contains(&s.interval_s) {
            return Err(bad("sync.interval_s", format!("{} is out of range; use 1 to 3600, such as 3", s.interval_s)));
        }
        if s.every_nth_frame == 0 {
            return Err(bad("sync.every_nth_frame", "0 is not allowed; use 1 (every frame) or more".into()));
        }
        let mut out = Self::new(endpoint.clone(), cfg.device_id.clone());
        out.token_file = credential_file(s.token_file.as_deref(), "sync-token");
        out.interval = Duration::from_secs(s.interval_s);
        out.every_nth_frame = s.every_nth_frame;
        out.durable_wait = Duration::from_millis(cfg.commit_interval_ms * 2 + 500);
        Ok(Some(out))
    }
}

/// `configured`, else `$CREDENTIALS_DIRECTORY/NAME` (systemd's
/// `LoadCredential=`) if that file holds something. The unit's
/// `SetCredential=NAME:\n` fallback gives a blank file when the admin set no
/// secret: blank means "not configured".
pub fn credential_file(configured: Option<&Path>, name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    credential_file_in(dir.as_deref(), configured, name)
}

fn credential_file_in(dir: Option<&Path>, configured: Option<&Path>, name: &str) -> Option<PathBuf> {
    configured.map(Path::to_path_buf).or_else(|| {
        let p = dir?.join(name);
        let text = std::fs::read_to_string(&p).ok()?;
        (!text.trim().is_empty()).then_some(p)
    })
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[test]
    fn a_blank_systemd_credential_counts_as_not_configured() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sync-token"), "\n").unwrap();
        std::fs::write(dir.path().join("s3-credentials"), "access_key_id=a\n").unwrap();
        assert_eq!(credential_file_in(Some(dir.path()), None, "sync-token"), None);
        assert_eq!(credential_file_in(Some(dir.path()), None, "missing"), None);
        assert_eq!(
            credential_file_in(Some(dir.path()), None, "s3-credentials"),
            Some(dir.path().join("s3-credentials"))
        );
        // A configured file always wins.
        let own = Path::new("/etc/invigil/own.token");
        assert_eq!(credential_file_in(Some(dir.path()), Some(own), "sync-token"), Some(own.to_path_buf()));
    }
}

/// Sync errors (setup only; failures of a send are [`Step`]s).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{field}: {message}")]
    Config { field: &'static str, message: String },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("sync: HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("sync: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// What to do with a batch after one attempt: the `RetryLogic` of the sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Delivered,
    Retry,
    DeadLetter,
}

/// Classifies an HTTP status (`None`: no answer: refused, reset, timeout).
pub fn classify(status: Option<u16>) -> Class {
    match status {
        None => Class::Retry,
        Some(200..=299) => Class::Delivered,
        Some(408 | 429) => Class::Retry,
        Some(400..=499) => Class::DeadLetter,
        // 5xx, and what should not come at all (1xx, 3xx, nonsense).
        Some(_) => Class::Retry,
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 10.2.3).
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((t.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

/// Exponential backoff with equal jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, next: min }
    }

    /// The next wait: half of the current step plus up to half more at
    /// random; the step doubles up to the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step / 2 + step.mul_f64(fastrand::f64() / 2.0)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Counters for health and metrics. Monotonic unless noted.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Batches delivered (2xx), and the scores and incidents in them.
    pub batches_sent: AtomicU64,
    pub scores_sent: AtomicU64,
    pub incidents_sent: AtomicU64,
    /// Requests made.
    pub attempts: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retried: AtomicU64,
    /// Batches dead-lettered, and the scores in them.
    pub dead_lettered: AtomicU64,
    pub dead_lettered_scores: AtomicU64,
    /// Request bodies as sent (after gzip), delivered or not.
    pub bytes_sent: AtomicU64,
    /// Unix milliseconds of the last 2xx; 0 = never (gauge).
    pub last_success_ms: AtomicU64,
    /// Age of the oldest undelivered score at the last step (gauge).
    pub lag_ms: AtomicU64,
    /// Undelivered scores at the last step (gauge).
    pub pending_scores: AtomicU64,
    /// Last HTTP status; 0 = no answer (gauge).
    pub last_status: AtomicU64,
    /// Set while paused after a 401/403 (gauge).
    pub paused: AtomicBool,
}

/// What one [`Syncer::step`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing to send.
    Idle,
    /// A batch was delivered; `more` when more is waiting.
    Delivered { more: bool },
    /// The batch failed; it is re-sent after `wait`.
    Retry { wait: Duration },
    /// The batch was refused for good.
    DeadLettered { status: u16 },
    /// Paused after a 401/403 for up to `wait` (or until the token changes).
    Paused { wait: Duration },
}

struct Pause {
    until: Instant,
    token: Option<String>,
}

/// One sync connection: spool, HTTP client, backoff state.
pub struct Syncer {
    settings: SyncSettings,
    spool: Spool,
    client: reqwest::Client,
    pub stats: Arc<SyncStats>,
    durable: Option<Arc<WriterStats>>,
    backoff: Backoff,
    gzip: bool,
    /// Start of the current run of failed attempts, and their count.
    failing: Option<(Instant, u64)>,
    last_dead_log: Option<(u16, Instant)>,
    pause: Option<Pause>,
}

impl Syncer {
    /// Opens its own connection to the spool at `spool_path`. `durable`: the
    /// running writer's stats, whose next commit makes a new batch durable;
    /// None: the syncer fsyncs each new batch itself.
    pub fn new(
        settings: SyncSettings,
        spool_path: &Path,
        durable: Option<Arc<WriterStats>>,
    ) -> Result<Syncer, SyncError> {
        let spool = Spool::open(spool_path)?;
        let client = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("invigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SyncError::Client)?;
        Ok(Syncer {
            backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
            gzip: settings.gzip,
            settings,
            spool,
            client,
            stats: Arc::new(SyncStats::default()),
            durable,
            failing: None,
            last_dead_log: None,
            pause: None,
        })
    }

    /// Whether bodies are gzip'd now.
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    fn token(&self) -> Result<Option<String>, String> {
        match &self.settings.token_file {
            None => Ok(None),
            Some(p) => std::fs::read_to_string(p)
                // A blank token file is no token, not an empty bearer.
                .map(|t| Some(t.trim().to_string()).filter(|t| !t.is_empty()))
                .map_err(|e| format!("token file {}: {e}", p.display())),
        }
    }

    /// One attempt: re-sends the pending batch, or forms the next one and
    /// sends it. Never panics on I/O; every failure is a [`Step`].
    pub async fn step(&mut self) -> Step {
        self.update_lag();
        let token = match self.token() {
            Ok(t) => t,
            Err(e) => return self.failed(None, e, None),
        };
        if let Some(p) = &self.pause {
            if token != p.token {
                tracing::info!("sync: the token changed; sending again");
            } else if let Some(wait) = p.until.checked_duration_since(Instant::now()) {
                return Step::Paused { wait };
            }
            self.pause = None;
            self.stats.paused.store(false, Ordering::Relaxed);
        }
        let batch = match self.next_batch() {
            Ok(Some(b)) => b,
            Ok(None) => return Step::Idle,
            Err(e) => return self.failed(None, format!("spool: {e}"), None),
        };
        // Stored gzip'd: a ninth of the bytes on the SD card.
        let (body, gzipped) = if self.gzip { (batch.body.clone(), true) } else { (gunzip(&batch.body), false) };
        let mut req = self
            .client
            .post(&self.settings.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &batch.batch_id);
        if gzipped {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                self.stats.last_status.store(0, Ordering::Relaxed);
                return self.failed(None, error_chain(&e), None);
            }
        };
        let status = resp.status().as_u16();
        self.stats.last_status.store(status as u64, Ordering::Relaxed);
        let wait_at_least = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, chrono::Utc::now()))
            .map(|d| d.min(self.settings.retry_after_max));
        let reply = match tokio::time::timeout(Duration::from_secs(5), resp.bytes()).await {
            Ok(Ok(b)) => {
                String::from_utf8_lossy(&b[..b.len().min(REPLY_CHARS * 4)]).chars().take(REPLY_CHARS).collect()
            }
            _ => String::new(),
        };
        if status == 415 && gzipped {
            tracing::warn!(endpoint = %self.settings.endpoint, "sync: the server refuses gzip (415); sending plain JSON from now on");
            self.gzip = false;
            return Step::Retry { wait: Duration::ZERO };
        }
        match classify(Some(status)) {
            Class::Delivered => self.delivered(&batch),
            Class::Retry => self.failed(Some(status), reply, wait_at_least),
            Class::DeadLetter => self.dead_letter(&batch, status, reply, token),
        }
    }

    /// The pending batch, or a new one made durable before it is sent.
    fn next_batch(&mut self) -> Result<Option<Batch>, SpoolError> {
        if let Some(b) = self.spool.pending_batch()? {
            return Ok(Some(b));
        }
        let s = &self.settings;
        let (device, nth) = (s.device_id.clone(), s.every_nth_frame);
        let now = now_ts();
        let ms = chrono::Utc::now().timestamp_millis();
        let batch = self.spool.form_batch(
            s.max_batch_scores,
            s.max_batch_incidents,
            &now,
            |id| format!("{device}-{ms}-{id}"),
            |rows, id| gzip(&batch_body(&device, nth, rows, id)),
        )?;
        let Some(batch) = batch else { return Ok(None) };
        let waited = match &self.durable {
            Some(w) if !w.closed.load(Ordering::SeqCst) => w.wait_durable(self.settings.durable_wait),
            _ => false,
        };
        if !waited {
            self.spool.make_durable(&batch)?;
        }
        Ok(Some(batch))
    }

    fn delivered(&mut self, batch: &Batch) -> Step {
        if let Err(e) = self.spool.finish_batch(batch, BatchOutcome::Delivered, &now_ts()) {
            // Sent but not marked: it is re-sent with the same key.
            return self.failed(None, format!("spool: {e}"), None);
        }
        let st = &self.stats;
        st.batches_sent.fetch_add(1, Ordering::Relaxed);
        st.scores_sent.fetch_add(batch.scores as u64, Ordering::Relaxed);
        st.incidents_sent.fetch_add(batch.incidents as u64, Ordering::Relaxed);
        st.last_success_ms.store(chrono::Utc::now().timestamp_millis() as u64, Ordering::Relaxed);
        if let Some((since, n)) = self.failing.take() {
            tracing::info!(failed_attempts = n, down_s = since.elapsed().as_secs(), "sync: upstream works again");
        }
        self.backoff.reset();
        self.update_lag();
        Step::Delivered { more: batch.scores >= self.settings.max_batch_scores || self.has_more() }
    }

    fn has_more(&self) -> bool {
        self.spool
            .connection()
            .query_row("SELECT EXISTS (SELECT 1 FROM incidents WHERE delivered = 0)", [], |r| r.get(0))
            .unwrap_or(false)
    }

    fn failed(&mut self, status: Option<u16>, error: String, wait_at_least: Option<Duration>) -> Step {
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        let wait = self.backoff.next_wait().max(wait_at_least.unwrap_or_default());
        match &mut self.failing {
            Some((_, n)) => {
                *n += 1;
                tracing::debug!(status, error = %error, retry_in_ms = wait.as_millis() as u64, "sync: attempt failed");
            }
            None => {
                self.failing = Some((Instant::now(), 1));
                tracing::warn!(
                    endpoint = %self.settings.endpoint, status, error = %error, retry_in_ms = wait.as_millis() as u64,
                    "sync: upstream unavailable; retrying with backoff (scores stay in the spool)"
                );
            }
        }
        Step::Retry { wait }
    }

    fn dead_letter(&mut self, batch: &Batch, status: u16, reply: String, token: Option<String>) -> Step {
        let outcome = BatchOutcome::DeadLettered { status, error: reply.clone() };
        if let Err(e) = self.spool.finish_batch(batch, outcome, &now_ts()) {
            return self.failed(Some(status), format!("spool: {e}"), None);
        }
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.stats.dead_lettered_scores.fetch_add(batch.scores as u64, Ordering::Relaxed);
        self.failing = None;
        self.backoff.reset();
        let auth = matches!(status, 401 | 403);
        let log = match self.last_dead_log {
            Some((s, t)) => s != status || t.elapsed() >= DEAD_LOG_EVERY,
            None => true,
        };
        if log {
            self.last_dead_log = Some((status, Instant::now()));
            let hint = if auth {
                format!(
                    "check sync.token_file; sending pauses for {} s or until the token changes",
                    self.settings.auth_pause.as_secs()
                )
            } else {
                "the batch stays in the spool, marked dead-lettered".into()
            };
            tracing::error!(
                endpoint = %self.settings.endpoint, status, batch_id = %batch.batch_id, scores = batch.scores,
                reply = %reply, "sync: upstream refused a batch (HTTP {status}): dead-lettered; {hint}"
            );
        } else {
            tracing::debug!(status, batch_id = %batch.batch_id, "sync: batch dead-lettered");
        }
        if auth {
            self.pause = Some(Pause { until: Instant::now() + self.settings.auth_pause, token });
            self.stats.paused.store(true, Ordering::Relaxed);
        }
        Step::DeadLettered { status }
    }

    fn update_lag(&self) {
        let lag = self
            .spool
            .oldest_pending()
            .ok()
            .flatten()
            .and_then(|ts| ts.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as u64)
            .unwrap_or(0);
        self.stats.lag_ms.store(lag, Ordering::Relaxed);
        if let Ok(n) = self.spool.pending_scores() {
            self.stats.pending_scores.store(n, Ordering::Relaxed);
        }
    }
}

/// The error and its causes on one line (reqwest hides the useful part).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The JSON of a stored body (plain bytes if it is not gzip'd).
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 8);
    match flate2::read::GzDecoder::new(data).read_to_end(&mut out) {
        Ok(_) => out,
        Err(_) => data.to_vec(),
    }
}

/// gzip at the best level: bodies are small, the uplink is what costs.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::best());
    enc.write_all(data).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

#[derive(Serialize)]
struct BodyOut<'a> {
    session_id: &'a Option<String>,
    student_id: &'a Option<String>,
    device_id: &'a str,
    batch_id: &'a str,
    scores: Vec<ScoreOut<'a>>,
    incidents: Vec<IncidentOut<'a>>,
}

#[derive(Serialize)]
struct ScoreOut<'a> {
    ts: &'a str,
    frame: u64,
    focus_score: u8,
    num_faces: usize,
    yaw_deg: Option<f64>,
    pitch_deg: Option<f64>,
    reasons: serde_json::Value,
}

/// CONTRACTS.md's incident object: in score batches, and on `/live`.
#[derive(Serialize)]
pub(crate) struct IncidentOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    started: &'a str,
    ended: &'a Option<String>,
    min_score: u8,
    reasons: serde_json::Value,
    clip: Option<ClipOut<'a>>,
    clips: Vec<ClipOut<'a>>,
}

impl<'a> IncidentOut<'a> {
    /// `clips`: the incident's clips already in object storage (the first is
    /// `clip`; none yet is `clip: null`).
    pub(crate) fn new(i: &'a IncidentRow, clips: &'a [UploadedClip]) -> Self {
        let clips: Vec<ClipOut> = clips.iter().map(|c| ClipOut { key: &c.key, url: &c.url, bytes: c.bytes }).collect();
        IncidentOut {
            kind: "incident",
            id: &i.id,
            started: &i.started,
            ended: &i.ended,
            min_score: i.min_score,
            reasons: reasons_json(&i.reasons),
            clip: clips.first().cloned(),
            clips,
        }
    }
}

/// A stored reasons list (JSON text) as JSON; `[]` if unreadable.
fn reasons_json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|_| serde_json::json!([]))
}

#[derive(Serialize, Clone)]
struct ClipOut<'a> {
    key: &'a str,
    url: &'a str,
    bytes: u64,
}

/// The JSON body of a batch (CONTRACTS.md "Upstream"). Angles are rounded
/// to 0.1 degree (they are stored as f32; more digits are noise).
pub fn batch_body(device_id: &str, every_nth_frame: u32, rows: &BatchRows, batch_id: &str) -> Vec<u8> {
    let round = |v: Option<f32>| v.map(|v| (v as f64 * 10.0).round() / 10.0);
    let nth = every_nth_frame.max(1) as u64;
    let body = BodyOut {
        session_id: &rows.session_id,
        student_id: &rows.student_id,
        device_id,
        batch_id,
        scores: rows
            .scores
            .iter()
            .filter(|(_, s)| s.frame % nth == 0)
            .map(|(_, s)| ScoreOut {
                ts: &s.ts,
                frame: s.frame,
                focus_score: s.focus_score,
                num_faces: s.num_faces,
                yaw_deg: round(s.yaw_deg),
                pitch_deg: round(s.pitch_deg),
                reasons: reasons_json(&s.reasons),
            })
            .collect(),
        incidents: rows.incidents.iter().map(|(i, clips)| IncidentOut::new(i, clips)).collect(),
    };
    serde_json::to_vec(&body).expect("JSON of plain data")
}

/// The running sync thread.
pub struct SyncHandle {
    worker: Worker,
    grace_ms: Arc<AtomicU64>,
    pub stats: Arc<SyncStats>,
}

impl SyncHandle {
    /// Stops the loop: it first sends what is pending, for at most `grace`
    /// (a request cut short leaves its batch pending, re-sent after the
    /// next start), then the thread ends. Dropping the handle stops it
    /// with no grace.
    pub fn stop(self, grace: Duration) {
        self.grace_ms.store(grace.as_millis() as u64, Ordering::SeqCst);
        self.worker.stop();
    }
}

/// Starts the sync loop in a thread of its own: a step every interval, at
/// once while a backlog lasts, after the backoff on failure.
pub fn spawn(
    settings: SyncSettings,
    spool_path: &Path,
    durable: Option<Arc<WriterStats>>,
) -> Result<SyncHandle, SyncError> {
    let mut syncer = Syncer::new(settings, spool_path, durable)?;
    let stats = syncer.stats.clone();
    let grace_ms = Arc::new(AtomicU64::new(0));
    let grace = grace_ms.clone();
    let worker = Worker::spawn("sync", move |stop| async move {
        let interval = syncer.settings.interval;
        tracing::info!(endpoint = %syncer.settings.endpoint, interval_ms = interval.as_millis() as u64, "sync: started");
        while !stop.is_raised() {
            let step = tokio::select! {
                s = syncer.step() => s,
                _ = stop.raised() => break,
            };
            let wait = match step {
                Step::Delivered { more: true } => Duration::ZERO,
                Step::Retry { wait } => wait,
                Step::Paused { wait } => wait.min(interval),
                // A refused batch waits an interval before the next
                // one: a misconfigured endpoint burns the backlog
                // slowly enough for someone to notice.
                Step::Idle | Step::Delivered { more: false } | Step::DeadLettered { .. } => interval,
            };
            if !wait.is_zero() {
                stop.sleep(wait).await;
            }
        }
        // Last round: what is pending, within the grace period.
        let end = Instant::now() + Duration::from_millis(grace.load(Ordering::SeqCst));
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, syncer.step()).await {
                Ok(Step::Delivered { more: true }) | Ok(Step::Retry { wait: Duration::ZERO }) => continue,
                _ => break,
            }
        }
        tracing::info!(sent = syncer.stats.batches_sent.load(Ordering::Relaxed), "sync: stopped");
    })
    .map_err(SyncError::Thread)?;
    Ok(SyncHandle { worker, grace_ms, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundreds_are_delivered() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify(Some(s)), Class::Delivered, "{s}");
        }
    }

    #[test]
    fn timeouts_throttling_server_errors_and_no_answer_are_retried() {
        for s in [Some(408), Some(429), Some(500), Some(502), Some(503), Some(504), Some(599), None] {
            assert_eq!(classify(s), Class::Retry, "{s:?}");
        }
    }

    #[test]
    fn other_client_errors_are_dead_lettered() {
        for s in [400, 401, 403, 404, 409, 410, 413, 415, 422, 451, 499] {
            assert_eq!(classify(Some(s)), Class::DeadLetter, "{s}");
        }
    }

    #[test]
    fn redirects_and_informational_answers_are_retried_not_dropped() {
        for s in [100, 301, 302, 307, 308] {
            assert_eq!(classify(Some(s)), Class::Retry, "{s}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = "2026-11-24T09:00:00Z".parse().unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("Tue, 24 Nov 2026 09:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Tue, 24 Nov 2026 08:00:00 GMT", now), Some(Duration::ZERO), "a past date");
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_maximum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<Duration> = (0..6).map(|_| b.next_wait()).collect();
        for (w, step) in waits.iter().zip([100u64, 200, 400, 800, 800, 800]) {
            let step = Duration::from_millis(step);
            assert!(*w >= step / 2 && *w <= step, "{w:?} for step {step:?}");
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }

    #[test]
    fn a_body_has_the_contract_fields_and_rounded_angles() {
        use crate::spool::{IncidentRow, ScoreRow, UploadedClip};
        let rows = BatchRows {
            session_id: Some("s1".into()),
            student_id: Some("x1".into()),
            scores: (0..4)
                .map(|f| {
                    (
                        f as i64 + 1,
                        ScoreRow {
                            session_id: Some("s1".into()),
                            student_id: Some("x1".into()),
                            frame: f,
                            ts: "2026-11-24T09:00:00.033Z".into(),
                            focus_score: 87,
                            num_faces: 1,
                            yaw_deg: Some(-4.2),
                            pitch_deg: None,
                            reasons: "[\"looking_away\"]".into(),
                        },
                    )
                })
                .collect(),
            incidents: vec![(
                IncidentRow {
                    id: "i1".into(),
                    session_id: Some("s1".into()),
                    student_id: Some("x1".into()),
                    started: "t0".into(),
                    ended: None,
                    min_score: 12,
                    reasons: "[\"no_face\"]".into(),
                    clip_path: None,
                },
                vec![UploadedClip { key: "p/s1/x1/i1.mp4".into(), url: "s3://b/p/s1/x1/i1.mp4".into(), bytes: 9 }],
            )],
        };
        let v: serde_json::Value = serde_json::from_slice(&batch_body("desk-1", 2, &rows, "b-1")).unwrap();
        assert_eq!(v["session_id"], "s1");
        assert_eq!(v["student_id"], "x1");
        assert_eq!(v["device_id"], "desk-1");
        assert_eq!(v["batch_id"], "b-1");
        let scores = v["scores"].as_array().unwrap();
        assert_eq!(scores.iter().map(|s| s["frame"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 2], "every 2nd");
        assert_eq!(scores[0]["yaw_deg"].to_string(), "-4.2");
        assert!(scores[0]["pitch_deg"].is_null());
        assert_eq!(scores[0]["reasons"][0], "looking_away");
        assert_eq!(scores[0]["focus_score"], 87);
        let i = &v["incidents"][0];
        assert_eq!(i["type"], "incident");
        assert_eq!(i["clip"]["key"], "p/s1/x1/i1.mp4");
        assert!(i["ended"].is_null());
    }
}
