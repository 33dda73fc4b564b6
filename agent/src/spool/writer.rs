//! The writer thread: takes records from the analysis loop without ever
//! blocking it, and commits them in one transaction per interval
//! (guarantees 1, 3 and 4 of the module docs). Sync waits for its next
//! fsync through [`WriterStats::durable_after`], an async wait.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::records::Record;
use super::{Spool, SpoolError, SpoolLimits};
use crate::clock::SharedClock;

/// Records waiting for a commit, at most (10 minutes of scores at 30 FPS).
pub const MAX_PENDING: usize = 18_000;
/// Retention runs at most this often, inside a writer commit.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Scores dropped per attempt when the file is full, at least.
const SHED_CHUNK: usize = 1_000;
/// Shed-and-retry rounds per commit when the file is full.
const SHED_ROUNDS: usize = 3;

/// Where durability stands: the `began` number of the last successful
/// commit, and whether the writer has stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Durable {
    seq: u64,
    closed: bool,
}

/// Counters of the writer thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub committed: AtomicU64,
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Records dropped from the in-memory queue (its bound, [`MAX_PENDING`]).
    pub dropped: AtomicU64,
    /// Set while the last commit failed.
    pub failing: AtomicBool,
    /// Set while the file is at its cap or the disk is full.
    pub full: AtomicBool,
    /// Scores dropped from the file at its cap: delivered or dead-lettered.
    pub shed_delivered: AtomicU64,
    /// Scores dropped from the file at its cap: undelivered.
    pub shed_undelivered: AtomicU64,
    /// Scores deleted by retention.
    pub pruned: AtomicU64,
    /// Commit attempts begun (a sequence number).
    pub began: AtomicU64,
    /// Everything any connection committed before attempt `seq` began is on disk.
    durable: tokio::sync::watch::Sender<Durable>,
}

impl WriterStats {
    /// Waits (without blocking a thread) until a commit that began after
    /// this call has succeeded, at most `limit`. False on timeout or if the
    /// writer has stopped.
    pub async fn durable_after(&self, limit: Duration) -> bool {
        let mark = self.began.load(Ordering::SeqCst);
        let mut rx = self.durable.subscribe();
        let waited = tokio::time::timeout(limit, rx.wait_for(|d| d.seq > mark || d.closed)).await;
        matches!(waited, Ok(Ok(d)) if d.seq > mark)
    }

    /// True once the writer thread has stopped.
    pub fn is_closed(&self) -> bool {
        self.durable.borrow().closed
    }

    fn committed_durably(&self, seq: u64) {
        self.durable.send_modify(|d| d.seq = d.seq.max(seq));
    }
}

struct Queue {
    records: Vec<Record>,
    closed: bool,
    /// A new size cap to apply before the next commit.
    max_bytes: Option<u64>,
}

/// Hands records to a writer thread that commits them every interval.
/// Cloneable; [`SpoolWriter::push`] never blocks on the disk.
#[derive(Clone)]
pub struct SpoolWriter {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    pub stats: Arc<WriterStats>,
}

/// The writer's thread: join it after [`SpoolWriter::close`].
pub struct WriterThread(std::thread::JoinHandle<()>);

impl WriterThread {
    pub fn join(self) -> std::thread::Result<()> {
        self.0.join()
    }
}

impl SpoolWriter {
    /// Starts the writer thread on an open spool, with the real clock.
    pub fn start(spool: Spool, interval: Duration) -> Result<(SpoolWriter, WriterThread), SpoolError> {
        Self::start_with_clock(spool, interval, crate::clock::system())
    }

    /// Starts the writer thread. Its connection fsyncs at each commit
    /// (`synchronous=FULL`); the spool's limits apply; retention asks
    /// `clock` for the time.
    pub fn start_with_clock(
        spool: Spool,
        interval: Duration,
        clock: SharedClock,
    ) -> Result<(SpoolWriter, WriterThread), SpoolError> {
        if let Err(e) = spool.set_fsync_each_commit(true) {
            tracing::error!(error = %e, "spool: cannot set synchronous=FULL; commits may not survive a power cut");
        }
        let queue =
            Arc::new((Mutex::new(Queue { records: Vec::new(), closed: false, max_bytes: None }), Condvar::new()));
        let stats = Arc::new(WriterStats::default());
        let writer = SpoolWriter { queue: queue.clone(), stats: stats.clone() };
        let path = spool.path().to_path_buf();
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer_loop(spool, interval, clock, queue, stats))
            .map_err(|source| SpoolError::Thread { path, source })?;
        Ok((writer, WriterThread(handle)))
    }

    /// Queues a record for the next commit.
    pub fn push(&self, r: Record) {
        let (lock, _) = &*self.queue;
        let mut q = lock.lock().unwrap();
        q.records.push(r);
        shed(&mut q.records, &self.stats);
    }

    /// Changes the size cap of the file before the next commit.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        let (lock, _) = &*self.queue;
        lock.lock().unwrap().max_bytes = Some(max_bytes);
    }

    /// Commits what is queued and stops the writer thread (join its handle).
    pub fn close(&self) {
        let (lock, cv) = &*self.queue;
        lock.lock().unwrap().closed = true;
        cv.notify_all();
    }
}

fn writer_loop(
    mut spool: Spool,
    interval: Duration,
    clock: SharedClock,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    stats: Arc<WriterStats>,
) {
    let mut last_prune: Option<std::time::Instant> = None;
    let mut dropped_saved = 0;
    loop {
        let (batch, closed, max_bytes) = {
            let (lock, cv) = &*queue;
            let mut q = lock.lock().unwrap();
            if !q.closed {
                q = cv.wait_timeout(q, interval).unwrap().0;
            }
            (std::mem::take(&mut q.records), q.closed, q.max_bytes.take())
        };
        if let Some(b) = max_bytes {
            let limits = SpoolLimits { max_bytes: b, ..spool.limits().clone() };
            if let Err(e) = spool.set_limits(limits) {
                tracing::error!(error = %e, "spool: cannot change its size cap");
            }
        }
        if !batch.is_empty() {
            let now = clock.instant();
            let prune_due = last_prune.is_none_or(|t| now.duration_since(t) >= PRUNE_EVERY);
            let dropped = stats.dropped.load(Ordering::Relaxed);
            match commit_or_shed(&mut spool, &batch, &stats, prune_due.then(|| clock.now()), dropped - dropped_saved) {
                Ok(pruned) => {
                    dropped_saved = dropped;
                    if prune_due {
                        last_prune = Some(now);
                        stats.pruned.fetch_add(pruned, Ordering::Relaxed);
                    }
                    stats.committed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    if stats.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("spool commits work again");
                    }
                }
                Err(e) => {
                    stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                    if !stats.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %e, "spool commit failed; keeping records for the next attempt");
                    }
                    if !closed {
                        // Put them back in front, in order, within the bound.
                        let (lock, _) = &*queue;
                        let mut q = lock.lock().unwrap();
                        let newer = std::mem::replace(&mut q.records, batch);
                        q.records.extend(newer);
                        shed(&mut q.records, &stats);
                    }
                }
            }
        }
        if closed {
            break;
        }
    }
    stats.durable.send_modify(|d| d.closed = true);
}

/// One commit; when the file is full, drops per the policy (module docs, 7)
/// and tries again, a bounded number of times. `now`: run retention for
/// batches done before `now - keep_delivered`.
fn commit_or_shed(
    spool: &mut Spool,
    batch: &[Record],
    stats: &WriterStats,
    now: Option<chrono::DateTime<chrono::Utc>>,
    dropped: u64,
) -> Result<u64, SpoolError> {
    let keep = chrono::Duration::from_std(spool.limits().keep_delivered).unwrap_or_default();
    let prune_before = now.map(|t| t - keep);
    let mut rounds = 0;
    loop {
        let seq = stats.began.fetch_add(1, Ordering::SeqCst) + 1;
        match spool.commit_with(batch, prune_before, dropped) {
            Ok(pruned) => {
                stats.committed_durably(seq);
                if rounds == 0 && stats.full.swap(false, Ordering::Relaxed) {
                    tracing::info!(spool = %spool.path().display(), "spool has room again");
                }
                return Ok(pruned);
            }
            Err(e @ SpoolError::Full { .. }) => {
                if rounds >= SHED_ROUNDS {
                    return Err(e);
                }
                rounds += 1;
                let shed = match spool.shed(SHED_CHUNK.max(batch.len() * 2)) {
                    Ok(s) => s,
                    // Not even a delete fits (the disk itself is full): the
                    // records wait in memory.
                    Err(_) => return Err(e),
                };
                stats.shed_delivered.fetch_add(shed.delivered, Ordering::Relaxed);
                stats.shed_undelivered.fetch_add(shed.undelivered, Ordering::Relaxed);
                if !stats.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        spool = %spool.path().display(), max_bytes = spool.limits().max_bytes,
                        delivered = shed.delivered, undelivered = shed.undelivered,
                        "spool full: dropping the oldest delivered scores, then the oldest undelivered ones (never incidents or clips)"
                    );
                }
                if shed.delivered + shed.undelivered == 0 {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Drops the oldest scores (never incidents) beyond [`MAX_PENDING`].
pub(super) fn shed(records: &mut Vec<Record>, stats: &WriterStats) {
    let mut excess = records.len().saturating_sub(MAX_PENDING);
    if excess == 0 {
        return;
    }
    records.retain(|r| {
        if excess > 0 && matches!(r, Record::Score(_)) {
            excess -= 1;
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            true
        }
    });
}
