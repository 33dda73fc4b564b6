//! Rate limits kept in memory, per hub process: a token bucket per key
//! (a desk's id for its batches and clips). A refusal says how long to
//! wait, for `Retry-After`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// A token bucket per key: `rate` a second, at most `burst` saved up.
/// Past [`Limiter::MAX_KEYS`] keys the map is cleared (bounded memory; a
/// cleared key starts with a full bucket).
pub struct Limiter<K = i64> {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash> Limiter<K> {
    pub const MAX_KEYS: usize = 200_000;

    pub fn new(rate: f64, burst: u32) -> Limiter<K> {
        Limiter { rate, burst: burst as f64, map: Default::default() }
    }

    /// Takes one token for `key`, or says how many seconds until one is there.
    pub fn take(&self, key: K) -> Result<(), u64> {
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= Self::MAX_KEYS && !g.contains_key(&key) {
            g.clear();
        }
        let now = Instant::now();
        let (tokens, at) = g.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_allows_a_burst_then_the_rate() {
        let l = Limiter::new(1.0, 3);
        assert!(l.take(1).is_ok() && l.take(1).is_ok() && l.take(1).is_ok());
        assert_eq!(l.take(1), Err(1));
        assert!(l.take(2).is_ok(), "desks have buckets of their own");
    }
}
