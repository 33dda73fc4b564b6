//! Desks by the SHA-256 of their token, so most requests of a box cost no
//! database round trip for authentication. Trusted only while this hub's
//! LISTEN connection is up (see `jobs::notify`): any enrolment, rotation or
//! revocation on any hub clears it, and the hub that makes the change
//! clears its own before answering. Entries also expire after [`TTL`], and
//! the whole cache is cleared past [`MAX`] entries (bounded memory).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::desks::Desk;

/// How long an entry is trusted at most.
pub const TTL: Duration = Duration::from_secs(60);
/// More entries than this: the cache is cleared.
pub const MAX: usize = 100_000;

/// See the module docs. A `std` mutex: nothing awaits while it is held.
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<Vec<u8>, (Desk, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, hash: &[u8]) -> Option<Desk> {
        let g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        g.get(hash).filter(|(_, at)| at.elapsed() < TTL).map(|(d, _)| d.clone())
    }

    pub fn put(&self, hash: Vec<u8>, desk: Desk) {
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= MAX {
            g.clear();
        }
        g.insert(hash, (desk, Instant::now()));
    }

    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
