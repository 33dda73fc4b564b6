//! What every handler and background job shares: one [`App`] per hub
//! process, behind an `Arc` ([`AppState`]). It holds handles only (the
//! database pool, the clip store, the desks connected here, caches,
//! limits, metrics, the clock and the stop signal); nothing durable lives
//! here: several hub processes on one database must give the same answers.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::clock::SharedClock;
use crate::config::Validated;
use crate::connections::Connections;
use crate::db::Db;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::storage::Store;
use crate::token_cache::TokenCache;

/// Everything a handler needs.
pub struct App {
    pub cfg: Validated,
    pub db: Db,
    pub store: Store,
    /// The desks whose WebSocket is open on this hub.
    pub connections: Connections,
    pub metrics: Metrics,
    /// Desks by token hash (trusted while `notify_up`).
    pub tokens: TokenCache,
    /// Per-desk token bucket for batches and clips.
    pub limiter: Limiter,
    pub shutdown: Shutdown,
    pub clock: SharedClock,
    /// The LISTEN connection is up (the token cache may be trusted).
    pub notify_up: AtomicBool,
    /// When a large clock skew was last logged, per desk (one line a minute).
    pub skew_logged: Mutex<HashMap<i64, Instant>>,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(cfg: Validated, db: Db, store: Store, shutdown: Shutdown, clock: SharedClock) -> App {
        App {
            limiter: Limiter::new(cfg.limits.batches_per_s, cfg.limits.batch_burst),
            cfg,
            db,
            store,
            connections: Connections::new(),
            metrics: Metrics::new(),
            tokens: TokenCache::default(),
            shutdown,
            clock,
            notify_up: AtomicBool::new(false),
            skew_logged: Mutex::default(),
        }
    }
}
