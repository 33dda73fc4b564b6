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
//! Each request also carries `X-Invigil-Sent-At` (the box's clock at the
//! send; additive): a hub compares it with its own clock, since a Pi
//! without a real-time clock may be far off, and the body (stored before the
//! first send) cannot say when it is sent.
//!
//! # Layout
//! - [`settings`]: [`SyncSettings`] and how the config gives them.
//! - [`retry`]: [`classify`], [`retry_after`] and [`Backoff`], pure.
//! - [`body`]: the batch body as `proto::Batch`, gzip.
//! - here: [`Syncer::step`] makes one attempt (tests and the benchmark drive
//!   it directly); [`spawn`] runs it on a [`Worker`] every interval.

pub mod body;
pub mod retry;
pub mod settings;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub use body::{batch_body, gunzip, gzip};
pub use retry::{Backoff, Class, classify, retry_after};
pub use settings::SyncSettings;

use crate::clock::SharedClock;
use crate::credentials::CredentialError;
use crate::spool::{Batch, BatchOutcome, Spool, SpoolError, WriterStats};
use crate::worker::Worker;

/// A dead-letter of the same status is logged at most this often.
pub const DEAD_LOG_EVERY: Duration = Duration::from_secs(600);
/// Characters of a refusal's reply kept for the log.
const REPLY_CHARS: usize = 200;
/// The request header with the box's clock at the send.
pub const SENT_AT_HEADER: &str = "X-Invigil-Sent-At";

/// Sync errors (setup only; failures of a send are [`Step`]s).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{field}: {message}")]
    Config { field: &'static str, message: String },
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("sync: HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("sync: cannot start its thread: {0}")]
    Thread(std::io::Error),
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
    clock: SharedClock,
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
            clock: crate::clock::system(),
            failing: None,
            last_dead_log: None,
            pause: None,
        })
    }

    /// The wall clock batches are stamped with (tests simulate it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether bodies are gzip'd now.
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    fn token(&self) -> Result<Option<String>, String> {
        match &self.settings.token_file {
            None => Ok(None),
            Some(p) => self.settings.token_secret.read(p).map(Some).map_err(|e| e.to_string()),
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
        let batch = match self.next_batch().await {
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
            .header("Idempotency-Key", &batch.batch_id)
            .header(SENT_AT_HEADER, proto::Timestamp(self.clock.now()).to_string());
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
            .and_then(|v| retry_after(v, self.clock.now()))
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
    async fn next_batch(&mut self) -> Result<Option<Batch>, SpoolError> {
        if let Some(b) = self.spool.pending_batch()? {
            return Ok(Some(b));
        }
        let s = &self.settings;
        let (device, nth) = (s.device_id.clone(), s.every_nth_frame);
        let now = self.clock.now();
        let ms = now.timestamp_millis();
        let batch = self.spool.form_batch(
            s.max_batch_scores,
            s.max_batch_incidents,
            now,
            |id| format!("{device}-{ms}-{id}"),
            |rows, id| gzip(&batch_body(&device, nth, rows, id)),
        )?;
        let Some(batch) = batch else { return Ok(None) };
        let waited = match &self.durable {
            Some(w) if !w.is_closed() => w.durable_after(self.settings.durable_wait).await,
            _ => false,
        };
        if !waited {
            self.spool.make_durable(&batch)?;
        }
        Ok(Some(batch))
    }

    fn delivered(&mut self, batch: &Batch) -> Step {
        if let Err(e) = self.spool.finish_batch(batch, BatchOutcome::Delivered, self.clock.now()) {
            // Sent but not marked: it is re-sent with the same key.
            return self.failed(None, format!("spool: {e}"), None);
        }
        let st = &self.stats;
        st.batches_sent.fetch_add(1, Ordering::Relaxed);
        st.scores_sent.fetch_add(batch.scores as u64, Ordering::Relaxed);
        st.incidents_sent.fetch_add(batch.incidents as u64, Ordering::Relaxed);
        st.last_success_ms.store(self.clock.now().timestamp_millis() as u64, Ordering::Relaxed);
        if let Some((since, n)) = self.failing.take() {
            tracing::info!(failed_attempts = n, down_s = since.elapsed().as_secs(), "sync: upstream works again");
        }
        self.backoff.reset();
        self.update_lag();
        let more =
            batch.scores >= self.settings.max_batch_scores || self.spool.has_pending_incidents().unwrap_or(false);
        Step::Delivered { more }
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
        if let Err(e) = self.spool.finish_batch(batch, outcome, self.clock.now()) {
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
                    "check {}; sending pauses for {} s or until the token changes",
                    self.settings.token_secret.key,
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
            .map(|t| (self.clock.now() - t).num_milliseconds().max(0) as u64)
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
