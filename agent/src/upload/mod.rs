//! Clip upload: each finished clip to object storage, oldest first.
//!
//! # Guarantees
//! 1. **Pending until stored.** A clip's spool row keeps `uploaded = 0`
//!    until its object is written and its size checked (HEAD); only then is
//!    it marked uploaded, and its incident is queued for the next score
//!    batch with the object's key, URL and size (see [`crate::sync`]). A
//!    crash or a restart in between uploads it again, to the same key.
//! 2. **Order.** Oldest clip first, one at a time; a failing upload is
//!    retried with backoff (1 s doubling to 5 min, jitter) and never given
//!    up; a clip whose file has gone is marked lost (`uploaded = 2`) and
//!    skipped.
//! 3. **Large files in parts.** Up to `part_size` (8 MiB) a clip is one PUT;
//!    past that a multipart upload of `part_size` parts (S3's minimum part
//!    is 5 MiB). An upload cut by a crash leaves its parts to the bucket's
//!    lifecycle rule ("abort incomplete multipart uploads").
//! 4. **Disk quota.** When the clip files on disk exceed `clips.max_disk_mb`,
//!    the oldest already-uploaded clips are deleted first (their rows stay,
//!    `removed = 1`); clips not yet uploaded are never deleted for the
//!    quota (a warning says so).
//! 5. **Footage does not linger.** An uploaded clip's local file is deleted
//!    `clips.keep_uploaded_h` (default 24) hours after its upload; a clip
//!    not yet uploaded is never deleted for its age.
//!
//! # Where
//! `storage.url`: `s3://BUCKET/PREFIX` (AWS S3, MinIO, Supabase Storage's S3
//! endpoint, … with `storage.endpoint` and `storage.region`, default
//! `us-east-1`; plain `http://` endpoints are allowed) or `file:///DIR`; the
//! default is `file://<spool folder>/outbox`, a folder on the box itself,
//! kept under `clips.max_disk_mb` of its own (oldest deleted first), since
//! nothing else would ever empty it. The object key is
//! `PREFIX/SESSION/STUDENT/FILE` where FILE is the clip's file name
//! (`INCIDENT.mp4`, `INCIDENT-1.mp4` for a chained clip); a missing session
//! or student is `none`; characters outside `A-Z a-z 0-9 . _ -` become `_`.
//!
//! # Credentials
//! By [`crate::credentials`]' rule for `storage.credentials_file`
//! (`$CREDENTIALS_DIRECTORY/s3-credentials`, `/etc/invigil/s3.credentials`):
//! `KEY=VALUE` lines (blank lines and `#` comments allowed, values may be
//! quoted) with `access_key_id` and `secret_access_key`, optionally
//! `session_token` (the `aws_`-prefixed names work too). An `s3://` store
//! without credentials is a config error: nothing is ever fetched from an
//! instance-metadata service.
//!
//! # Layout
//! - [`settings`]: [`StoreUrl`], [`Credentials`], [`UploadSettings`], [`object_key`].
//! - `local`: the clip files on the box: quota, age limit, the default outbox.
//! - here: [`Uploader::step`] (one upload) and [`spawn`] (the loop on a [`Worker`]).

mod hub;
mod local;
pub mod settings;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

pub use settings::{Credentials, NO_ID, StoreUrl, UploadSettings, object_key};

use crate::clock::SharedClock;
use crate::spool::{PendingClip, Spool, SpoolError};
use crate::sync::Backoff;
use crate::worker::Worker;

/// Upload errors (setup only; failures of an upload are [`UploadStep`]s).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{field}: {message}")]
    Config { field: &'static str, message: String },
    #[error("{file}: {message}")]
    Credentials { file: String, message: String },
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("upload: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// Counters for health and metrics. Monotonic unless noted.
#[derive(Debug, Default)]
pub struct UploadStats {
    pub uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    /// Uploads done in parts.
    pub multipart: AtomicU64,
    /// Failed attempts (retried).
    pub retried: AtomicU64,
    /// Clips whose file was gone before upload.
    pub lost: AtomicU64,
    /// Uploaded clips deleted locally for the quota, and their bytes.
    pub evicted: AtomicU64,
    /// Uploaded clips deleted locally after `keep_uploaded`.
    pub expired: AtomicU64,
    pub evicted_bytes: AtomicU64,
    /// Clips waiting (gauge).
    pub pending: AtomicU64,
    /// Unix milliseconds of the last upload; 0 = never (gauge).
    pub last_success_ms: AtomicU64,
    /// Set while the clip folder is over quota with nothing to evict (gauge).
    pub over_quota: AtomicBool,
}

/// What one [`Uploader::step`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum UploadStep {
    Idle,
    Uploaded {
        key: String,
        bytes: u64,
        multipart: bool,
    },
    /// The clip's file was gone; marked lost.
    Lost,
    Retry {
        wait: Duration,
    },
}

/// One upload connection: spool, store, backoff state.
/// Where an uploader puts clips.
pub(crate) enum Target {
    Store { store: Arc<dyn ObjectStore>, base_url: String, prefix: String },
    Hub(hub::HubTarget),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Store { base_url, prefix, .. } => format!("{base_url} (prefix {prefix:?})"),
            Target::Hub(h) => h.describe(),
        }
    }
}

pub struct Uploader {
    settings: UploadSettings,
    clock: SharedClock,
    spool: Spool,
    target: Target,
    backoff: Backoff,
    failing: Option<(Instant, u64)>,
    pub stats: Arc<UploadStats>,
}

impl Uploader {
    pub fn new(settings: UploadSettings, spool_path: &Path) -> Result<Uploader, UploadError> {
        let target = settings.build()?;
        Ok(Uploader {
            spool: Spool::open(spool_path)?,
            backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
            settings,
            clock: crate::clock::system(),
            target,
            failing: None,
            stats: Arc::new(UploadStats::default()),
        })
    }

    /// The wall clock uploads are stamped with and local copies aged by.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The object store clips go to (tests read objects back through it);
    /// None when they go through the hub.
    pub fn store(&self) -> Option<Arc<dyn ObjectStore>> {
        match &self.target {
            Target::Store { store, .. } => Some(store.clone()),
            Target::Hub(_) => None,
        }
    }

    /// Uploads the oldest pending clip, if any.
    pub async fn step(&mut self) -> UploadStep {
        if let Ok(n) = self.spool.pending_clips() {
            self.stats.pending.store(n, Ordering::Relaxed);
        }
        let clip = match self.spool.next_clip() {
            Ok(Some(c)) => c,
            Ok(None) => return UploadStep::Idle,
            Err(e) => return self.failed(format!("spool: {e}")),
        };
        if !clip.path.exists() {
            tracing::warn!(clip = %clip.path.display(), incident = %clip.incident_id, "upload: clip file is gone; marked lost");
            return match self.spool.clip_lost(&clip) {
                Ok(()) => {
                    self.stats.lost.fetch_add(1, Ordering::Relaxed);
                    UploadStep::Lost
                }
                Err(e) => self.failed(format!("spool: {e}")),
            };
        }
        let put = match &self.target {
            Target::Store { store, base_url, prefix } => {
                let file = clip.path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
                let key = object_key(prefix, clip.session_id.as_deref(), clip.student_id.as_deref(), &file);
                let part = self.settings.part_size;
                put_file(store, part, &clip, &key).await.map(|(bytes, multipart)| {
                    let url = format!("{base_url}/{key}");
                    (key, url, bytes, multipart)
                })
            }
            Target::Hub(hub) => hub.put(&clip).await.map(|c| (c.key, c.url, c.bytes, false)),
        };
        match put {
            Ok((key, url, bytes, multipart)) => {
                if let Err(e) = self.spool.clip_uploaded(&clip, &key, &url, self.clock.now()) {
                    // Stored but not marked: uploaded again, same key.
                    return self.failed(format!("spool: {e}"));
                }
                let st = &self.stats;
                st.uploaded.fetch_add(1, Ordering::Relaxed);
                st.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
                st.multipart.fetch_add(multipart as u64, Ordering::Relaxed);
                st.last_success_ms.store(self.clock.now().timestamp_millis() as u64, Ordering::Relaxed);
                if let Some((since, n)) = self.failing.take() {
                    tracing::info!(
                        failed_attempts = n,
                        down_s = since.elapsed().as_secs(),
                        "upload: storage works again"
                    );
                }
                self.backoff.reset();
                tracing::info!(clip = %clip.path.display(), url = %url, bytes, multipart, "upload: clip stored");
                UploadStep::Uploaded { key, bytes, multipart }
            }
            Err(e) => self.failed(format!("{}: {e}", clip.path.display())),
        }
    }
}

/// Streams the file to `key`; checks the stored size.
async fn put_file(
    store: &Arc<dyn ObjectStore>,
    part_size: usize,
    clip: &PendingClip,
    key: &str,
) -> Result<(u64, bool), String> {
    {
        use std::io::Read;
        let location = ObjPath::from(key);
        let mut f = std::fs::File::open(&clip.path).map_err(|e| e.to_string())?;
        let size = f.metadata().map_err(|e| e.to_string())?.len();
        let part = part_size.max(5 << 20);
        let multipart = size as usize >= part;
        let mut w = BufWriter::with_capacity(store.clone(), location.clone(), part).with_max_concurrency(2);
        let mut sent = 0u64;
        loop {
            let mut buf = vec![0u8; part.min((size - sent) as usize).max(1)];
            let n = match f.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(e.to_string());
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            sent += n as u64;
            if let Err(e) = w.put(bytes::Bytes::from(buf)).await {
                let _ = w.abort().await;
                return Err(e.to_string());
            }
        }
        // Completes the PUT or the multipart upload (no abort after this:
        // a failed completion leaves parts to the lifecycle rule).
        w.shutdown().await.map_err(|e| e.to_string())?;
        let meta = store.head(&location).await.map_err(|e| e.to_string())?;
        if meta.size != sent {
            return Err(format!("stored {} bytes of {sent}", meta.size));
        }
        Ok((sent, multipart))
    }
}

impl Uploader {
    fn failed(&mut self, error: String) -> UploadStep {
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        let wait = self.backoff.next_wait();
        match &mut self.failing {
            Some((_, n)) => {
                *n += 1;
                tracing::debug!(error = %error, retry_in_ms = wait.as_millis() as u64, "upload: attempt failed");
            }
            None => {
                self.failing = Some((Instant::now(), 1));
                tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64,
                    "upload: storage unavailable; retrying with backoff (the clip stays pending)");
            }
        }
        UploadStep::Retry { wait }
    }
}

/// The running upload thread.
pub struct UploadHandle {
    worker: Worker,
    pub stats: Arc<UploadStats>,
}

impl UploadHandle {
    /// Stops the loop; an upload in progress is abandoned (the clip stays
    /// pending and is uploaded again after the next start). Dropping the
    /// handle does the same.
    pub fn stop(self) {
        self.worker.stop();
    }
}

/// Starts the upload loop in a thread of its own.
pub fn spawn(settings: UploadSettings, spool_path: &Path) -> Result<UploadHandle, UploadError> {
    let mut up = Uploader::new(settings, spool_path)?;
    let stats = up.stats.clone();
    let worker = Worker::spawn("upload", move |stop| async move {
        tracing::info!(store = %up.target.describe(), "upload: started");
        while !stop.is_raised() {
            let step = tokio::select! {
                s = up.step() => s,
                _ = stop.raised() => break,
            };
            let wait = match step {
                UploadStep::Uploaded { .. } | UploadStep::Lost => {
                    up.expire_uploaded(up.clock.now());
                    up.enforce_quota();
                    up.trim_outbox().await;
                    Duration::ZERO
                }
                UploadStep::Idle => {
                    up.expire_uploaded(up.clock.now());
                    up.enforce_quota();
                    up.settings.interval
                }
                UploadStep::Retry { wait } => wait,
            };
            if !wait.is_zero() {
                stop.sleep(wait).await;
            }
        }
        tracing::info!(uploaded = up.stats.uploaded.load(Ordering::Relaxed), "upload: stopped");
    })
    .map_err(UploadError::Thread)?;
    Ok(UploadHandle { worker, stats })
}
