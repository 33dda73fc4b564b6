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
//! `storage.credentials_file`, else `$CREDENTIALS_DIRECTORY/s3-credentials`:
//! `KEY=VALUE` lines (blank lines and `#` comments allowed, values may be
//! quoted) with `access_key_id` and `secret_access_key`, optionally
//! `session_token` (the `aws_`-prefixed names work too). An `s3://` store
//! without credentials is a config error: nothing is ever fetched from an
//! instance-metadata service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use tokio::io::AsyncWriteExt;

use crate::analysis::now_ts;
use crate::config::Validated;
use crate::spool::{PendingClip, Spool, SpoolError};
use crate::sync::{Backoff, credential_file};
use crate::worker::Worker;

/// Placeholder for a missing session or student in an object key.
pub const NO_ID: &str = "none";

/// Where clips go.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreUrl {
    S3 { bucket: String, prefix: String },
    File { dir: PathBuf },
}

impl StoreUrl {
    /// `s3://BUCKET[/PREFIX]` or `file:///ABSOLUTE/DIR` (a relative
    /// `file://DIR` is taken from the working directory).
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{url:?} has no bucket; use e.g. \"s3://exam-clips/desks\""));
            }
            Ok(StoreUrl::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
        } else if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(format!("{url:?} has no folder; use e.g. \"file:///var/lib/invigil/outbox\""));
            }
            Ok(StoreUrl::File { dir: PathBuf::from(dir) })
        } else {
            Err(format!("{url:?} is neither s3:// nor file://; use e.g. \"s3://exam-clips/desks\""))
        }
    }
}

/// S3 credentials.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses the `KEY=VALUE` format of the module docs; `file` names the
    /// source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Credentials, UploadError> {
        let bad = |message: String| UploadError::Credentials { file: file.to_string(), message };
        let (mut id, mut secret, mut token) = (None, None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(bad(format!("line {}: expected KEY=VALUE", n + 1)));
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().trim_start_matches("aws_") {
                "access_key_id" => id = Some(v),
                "secret_access_key" => secret = Some(v),
                "session_token" => token = Some(v),
                other => {
                    return Err(bad(format!(
                        "line {}: unknown key {other:?}; use access_key_id, secret_access_key or session_token",
                        n + 1
                    )));
                }
            }
        }
        Ok(Credentials {
            access_key_id: id.filter(|v| !v.is_empty()).ok_or_else(|| bad("access_key_id is missing".into()))?,
            secret_access_key: secret
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad("secret_access_key is missing".into()))?,
            session_token: token.filter(|v| !v.is_empty()),
        })
    }

    pub fn read(path: &Path) -> Result<Credentials, UploadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| UploadError::Credentials { file: file.clone(), message: e.to_string() })?;
        Self::parse(&text, &file)
    }
}

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
    Spool(#[from] SpoolError),
    #[error("upload: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// What the upload loop needs, every default documented.
#[derive(Clone, Debug)]
pub struct UploadSettings {
    pub url: StoreUrl,
    /// `storage.endpoint` (S3-compatible servers). Default: AWS.
    pub endpoint: Option<String>,
    /// `storage.region`. Default "us-east-1".
    pub region: Option<String>,
    /// Required for `s3://`.
    pub credentials: Option<Credentials>,
    /// `clips.max_disk_mb`. Default 2048 MiB.
    pub clips_max_bytes: u64,
    /// `clips.keep_uploaded_h`: an uploaded clip's local file is deleted
    /// this long after its upload. Default 24 h.
    pub keep_uploaded: Duration,
    /// Poll for new clips this often. Default 2 s.
    pub interval: Duration,
    /// Default 1 s doubling to 5 min.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// One PUT up to this size, else parts of this size. Default 8 MiB.
    pub part_size: usize,
    /// Per request. Default 120 s.
    pub request_timeout: Duration,
    /// The store is the box's own default outbox (`storage.url` unset): its
    /// files are on the same disk, so they are kept under `clips_max_bytes`
    /// too (oldest deleted first). An explicit `file://` is left alone.
    pub bound_outbox: bool,
}

impl UploadSettings {
    pub fn new(url: StoreUrl) -> Self {
        Self {
            url,
            endpoint: None,
            region: None,
            credentials: None,
            clips_max_bytes: 2048 << 20,
            keep_uploaded: Duration::from_secs(24 * 3600),
            interval: Duration::from_secs(2),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            part_size: 8 << 20,
            request_timeout: Duration::from_secs(120),
            bound_outbox: false,
        }
    }

    /// From the config's `[storage]` and `clips.max_disk_mb`. Errors name
    /// the field or the credentials file.
    pub fn from_config(cfg: &Validated) -> Result<Self, UploadError> {
        let st = &cfg.raw.storage;
        let url = match &st.url {
            Some(u) => StoreUrl::parse(u).map_err(|message| UploadError::Config { field: "storage.url", message })?,
            None => StoreUrl::File {
                dir: cfg.spool_path.parent().map(Path::to_path_buf).unwrap_or_default().join("outbox"),
            },
        };
        let mut s = Self::new(url);
        s.bound_outbox = st.url.is_none();
        s.endpoint = st.endpoint.clone();
        s.region = st.region.clone();
        s.clips_max_bytes = cfg.clips_max_disk_mb << 20;
        s.keep_uploaded = Duration::from_secs(cfg.clips_keep_uploaded_h as u64 * 3600);
        if let Some(ep) = &s.endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            return Err(UploadError::Config {
                field: "storage.endpoint",
                message: format!("{ep:?} is not an http(s) URL; use e.g. \"https://s3.example\""),
            });
        }
        if matches!(s.url, StoreUrl::S3 { .. }) {
            let Some(file) = credential_file(st.credentials_file.as_deref(), "s3-credentials") else {
                return Err(UploadError::Config {
                    field: "storage.credentials_file",
                    message: "required for an s3:// storage.url (or $CREDENTIALS_DIRECTORY/s3-credentials)".into(),
                });
            };
            s.credentials = Some(Credentials::read(&file)?);
        }
        Ok(s)
    }

    /// The store, its base URL for object URLs, and the key prefix.
    fn build(&self) -> Result<(Arc<dyn ObjectStore>, String, String), UploadError> {
        match &self.url {
            StoreUrl::File { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| UploadError::Config {
                    field: "storage.url",
                    message: format!("cannot create {}: {e}", dir.display()),
                })?;
                let abs = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)?;
                Ok((Arc::new(store), format!("file://{}", abs.display()), String::new()))
            }
            StoreUrl::S3 { bucket, prefix } => {
                use object_store::aws::AmazonS3Builder;
                let creds = self.credentials.as_ref().ok_or_else(|| UploadError::Config {
                    field: "storage.credentials_file",
                    message: "required for an s3:// storage.url".into(),
                })?;
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(self.region.clone().unwrap_or_else(|| "us-east-1".into()))
                    .with_access_key_id(&creds.access_key_id)
                    .with_secret_access_key(&creds.secret_access_key)
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_timeout(self.request_timeout)
                            .with_connect_timeout(Duration::from_secs(5)),
                    )
                    // Our own loop retries for ever; the client only rides
                    // out a blip.
                    .with_retry(object_store::RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(60),
                        ..Default::default()
                    });
                if let Some(t) = &creds.session_token {
                    b = b.with_token(t);
                }
                if let Some(ep) = &self.endpoint {
                    b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://"));
                }
                Ok((Arc::new(b.build()?), format!("s3://{bucket}"), prefix.clone()))
            }
        }
    }
}

/// `PREFIX/SESSION/STUDENT/FILE`, see the module docs.
pub fn object_key(prefix: &str, session_id: Option<&str>, student_id: Option<&str>, file: &str) -> String {
    let clean = |s: Option<&str>| -> String {
        match s.filter(|s| !s.is_empty()) {
            None => NO_ID.into(),
            Some(s) => s
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
                .collect::<String>()
                .trim_start_matches('.')
                .to_string(),
        }
    };
    let tail = format!("{}/{}/{}", clean(session_id), clean(student_id), clean(Some(file)));
    if prefix.is_empty() { tail } else { format!("{prefix}/{tail}") }
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
pub struct Uploader {
    settings: UploadSettings,
    spool: Spool,
    store: Arc<dyn ObjectStore>,
    base_url: String,
    prefix: String,
    backoff: Backoff,
    failing: Option<(Instant, u64)>,
    pub stats: Arc<UploadStats>,
}

impl Uploader {
    pub fn new(settings: UploadSettings, spool_path: &Path) -> Result<Uploader, UploadError> {
        let (store, base_url, prefix) = settings.build()?;
        Ok(Uploader {
            spool: Spool::open(spool_path)?,
            backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
            settings,
            store,
            base_url,
            prefix,
            failing: None,
            stats: Arc::new(UploadStats::default()),
        })
    }

    /// The store clips go to (tests read objects back through it).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Uploads the oldest pending clip, if any.
    pub async fn step(&mut self) -> UploadStep {
        if let Ok(n) = self
            .spool
            .connection()
            .query_row("SELECT COUNT(*) FROM clips WHERE uploaded = 0", [], |r| r.get::<_, i64>(0))
        {
            self.stats.pending.store(n as u64, Ordering::Relaxed);
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
        let file = clip.path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        let key = object_key(&self.prefix, clip.session_id.as_deref(), clip.student_id.as_deref(), &file);
        match self.put_file(&clip, &key).await {
            Ok((bytes, multipart)) => {
                let url = format!("{}/{key}", self.base_url);
                if let Err(e) = self.spool.clip_uploaded(&clip, &key, &url, &now_ts()) {
                    // Stored but not marked: uploaded again, same key.
                    return self.failed(format!("spool: {e}"));
                }
                let st = &self.stats;
                st.uploaded.fetch_add(1, Ordering::Relaxed);
                st.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
                st.multipart.fetch_add(multipart as u64, Ordering::Relaxed);
                st.last_success_ms.store(chrono::Utc::now().timestamp_millis() as u64, Ordering::Relaxed);
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

    /// Streams the file to `key`; checks the stored size.
    async fn put_file(&self, clip: &PendingClip, key: &str) -> Result<(u64, bool), String> {
        use std::io::Read;
        let location = ObjPath::from(key);
        let mut f = std::fs::File::open(&clip.path).map_err(|e| e.to_string())?;
        let size = f.metadata().map_err(|e| e.to_string())?.len();
        let part = self.settings.part_size.max(5 << 20);
        let multipart = size as usize >= part;
        let mut w = BufWriter::with_capacity(self.store.clone(), location.clone(), part).with_max_concurrency(2);
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
        let meta = self.store.head(&location).await.map_err(|e| e.to_string())?;
        if meta.size != sent {
            return Err(format!("stored {} bytes of {sent}", meta.size));
        }
        Ok((sent, multipart))
    }

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

    /// With [`UploadSettings::bound_outbox`]: deletes the oldest files of
    /// the default outbox while it holds more than `clips_max_bytes`.
    /// Returns the bytes freed.
    pub async fn trim_outbox(&mut self) -> u64 {
        use futures_util::TryStreamExt;
        // Never a remote store, whatever the flag says.
        if !self.settings.bound_outbox || !matches!(self.settings.url, StoreUrl::File { .. }) {
            return 0;
        }
        let Ok(mut objects) = self.store.list(None).try_collect::<Vec<_>>().await else { return 0 };
        objects.sort_by(|a, b| (a.last_modified, &a.location).cmp(&(b.last_modified, &b.location)));
        let mut total: u64 = objects.iter().map(|o| o.size).sum();
        let mut freed = 0;
        for o in objects {
            if total <= self.settings.clips_max_bytes {
                break;
            }
            if self.store.delete(&o.location).await.is_ok() {
                total -= o.size;
                freed += o.size;
            }
        }
        if freed > 0 {
            tracing::info!(outbox = %self.base_url, freed_bytes = freed, max_bytes = self.settings.clips_max_bytes,
                "upload: the local outbox is over clips.max_disk_mb; deleted its oldest clips");
        }
        freed
    }

    /// Deletes the local files of clips uploaded more than `keep_uploaded`
    /// before `now` (their rows stay, `removed = 1`). Returns the bytes freed.
    pub fn expire_uploaded(&mut self, now: chrono::DateTime<chrono::Utc>) -> u64 {
        let Ok(clips) = self.spool.clips_on_disk() else { return 0 };
        let keep = chrono::Duration::from_std(self.settings.keep_uploaded).unwrap_or(chrono::Duration::MAX);
        let mut freed = 0;
        for c in clips {
            let Some(Ok(at)) = c.uploaded_at.as_deref().map(str::parse::<chrono::DateTime<chrono::Utc>>) else {
                continue; // pending: never deleted for its age
            };
            if now - at >= keep && self.delete_local(c.id, &c.path) {
                freed += c.bytes;
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
        if freed > 0 {
            tracing::info!(
                freed_bytes = freed,
                keep_h = self.settings.keep_uploaded.as_secs() / 3600,
                "upload: deleted the local copies of clips uploaded long enough ago"
            );
        }
        freed
    }

    /// Deletes an uploaded clip's local file and records it; true when the
    /// file is gone (also if it already was).
    fn delete_local(&mut self, id: i64, path: &Path) -> bool {
        let gone = std::fs::remove_file(path).is_ok() || !path.exists();
        if gone {
            let _ = self.spool.clip_removed(id);
        }
        gone
    }

    /// Deletes the oldest uploaded clips while the clip files exceed the
    /// quota. Returns the bytes freed.
    pub fn enforce_quota(&mut self) -> u64 {
        let Ok(clips) = self.spool.clips_on_disk() else { return 0 };
        let mut sizes = Vec::with_capacity(clips.len());
        for c in clips {
            let (id, path, bytes, uploaded) = (c.id, c.path, c.bytes, c.uploaded_at.is_some());
            match std::fs::metadata(&path) {
                Ok(m) => sizes.push((id, path, m.len(), uploaded)),
                // Gone already (by hand): only an uploaded one is settled.
                Err(_) if uploaded => {
                    let _ = self.spool.clip_removed(id);
                }
                Err(_) => sizes.push((id, path, bytes, uploaded)),
            }
        }
        let mut total: u64 = sizes.iter().map(|c| c.2).sum();
        let mut freed = 0;
        for (id, path, bytes, uploaded) in &sizes {
            if total <= self.settings.clips_max_bytes {
                break;
            }
            if !uploaded {
                continue;
            }
            if self.delete_local(*id, path) {
                total -= bytes;
                freed += bytes;
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                self.stats.evicted_bytes.fetch_add(*bytes, Ordering::Relaxed);
            }
        }
        if freed > 0 {
            tracing::info!(
                freed_bytes = freed,
                max_bytes = self.settings.clips_max_bytes,
                "upload: clip quota: deleted the oldest uploaded clips"
            );
        }
        let over = total > self.settings.clips_max_bytes;
        if over && !self.stats.over_quota.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                bytes = total,
                max_bytes = self.settings.clips_max_bytes,
                "upload: clips over quota and none left that is uploaded; keeping the pending ones"
            );
        } else if !over {
            self.stats.over_quota.store(false, Ordering::Relaxed);
        }
        freed
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
        tracing::info!(store = %up.base_url, prefix = %up.prefix, "upload: started");
        while !stop.is_raised() {
            let step = tokio::select! {
                s = up.step() => s,
                _ = stop.raised() => break,
            };
            let wait = match step {
                UploadStep::Uploaded { .. } | UploadStep::Lost => {
                    up.expire_uploaded(chrono::Utc::now());
                    up.enforce_quota();
                    up.trim_outbox().await;
                    Duration::ZERO
                }
                UploadStep::Idle => {
                    up.expire_uploaded(chrono::Utc::now());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_or_name_a_good_example() {
        assert_eq!(
            StoreUrl::parse("s3://clips/desks/").unwrap(),
            StoreUrl::S3 { bucket: "clips".into(), prefix: "desks".into() }
        );
        assert_eq!(StoreUrl::parse("s3://clips").unwrap(), StoreUrl::S3 { bucket: "clips".into(), prefix: "".into() });
        assert_eq!(StoreUrl::parse("file:///var/x").unwrap(), StoreUrl::File { dir: "/var/x".into() });
        for bad in ["s3://", "file://", "http://x", "clips"] {
            assert!(StoreUrl::parse(bad).unwrap_err().contains("e.g."), "{bad}");
        }
    }

    #[test]
    fn object_keys_follow_the_contract_with_placeholders() {
        assert_eq!(object_key("p", Some("s1"), Some("x9"), "i1.mp4"), "p/s1/x9/i1.mp4");
        assert_eq!(object_key("", None, Some(""), "i1.mp4"), "none/none/i1.mp4");
        assert_eq!(object_key("a/b", Some("../e v"), Some("x"), "i.mp4"), "a/b/_e_v/x/i.mp4");
    }

    #[test]
    fn credentials_files_take_key_value_lines() {
        let c = Credentials::parse("# s3\naccess_key_id = AK\nAWS_SECRET_ACCESS_KEY=\"sk\"\n\n", "c").unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.as_str()), ("AK", "sk"));
        assert_eq!(c.session_token, None);
        assert!(!format!("{c:?}").contains("sk"), "the secret is not printed");
        let e = Credentials::parse("access_key_id=AK\n", "/etc/c").unwrap_err().to_string();
        assert!(e.starts_with("/etc/c: ") && e.contains("secret_access_key"), "{e}");
        let e = Credentials::parse("acess_key=AK\n", "c").unwrap_err().to_string();
        assert!(e.contains("acess_key") && e.contains("line 1"), "{e}");
    }
}
