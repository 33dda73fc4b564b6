//! One way to stop: a [`Shutdown`] is raised once and seen by every loop it
//! is passed to, from plain threads (a blocking wait with a timeout) and
//! from async tasks (a future), without polling.
//!
//! `invigil run` stops in a fixed order (capture, the open clip, the spool,
//! the last sync), so it does not hand one token to everything: the signal
//! handler raises the root; the analysis loop, the server and the GPIO
//! panel watch it (or [`Shutdown::child`] tokens of it); sync and upload run
//! on tokens of their own that `run` raises after the spool is flushed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    raised: AtomicBool,
    /// Guards the condition variable's wait (the flag itself is atomic).
    lock: Mutex<()>,
    cv: Condvar,
    notify: Notify,
    children: Mutex<Vec<Weak<Inner>>>,
}

impl Inner {
    fn raise(&self) {
        if self.raised.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let _g = self.lock.lock().unwrap();
            self.cv.notify_all();
        }
        self.notify.notify_waiters();
        for c in self.children.lock().unwrap().drain(..) {
            if let Some(c) = c.upgrade() {
                c.raise();
            }
        }
    }
}

/// A stop request: cloneable, raised once, never lowered.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").field("raised", &self.is_raised()).finish()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token raised with this one (or on its own, without raising this one).
    pub fn child(&self) -> Shutdown {
        let child = Shutdown::new();
        self.inner.children.lock().unwrap().push(Arc::downgrade(&child.inner));
        // Raised meanwhile: the child must not miss it.
        if self.is_raised() {
            child.raise();
        }
        child
    }

    /// Asks every holder to stop. Idempotent.
    pub fn raise(&self) {
        self.inner.raise();
    }

    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::SeqCst)
    }

    /// Blocks up to `d`, returning early when raised. True if raised.
    pub fn wait_timeout(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        let mut g = self.inner.lock.lock().unwrap();
        while !self.is_raised() {
            let Some(left) = end.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) else { break };
            g = self.inner.cv.wait_timeout(g, left).unwrap().0;
        }
        self.is_raised()
    }

    /// Completes once raised (at once if it already is).
    pub async fn raised(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a raise in between is not lost.
            notified.as_mut().enable();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps `d` (tokio's clock), or less if raised meanwhile. True if raised.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.raised() => {}
        }
        self.is_raised()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_thread_wakes_when_raised_and_a_child_follows_its_parent() {
        let root = Shutdown::new();
        let child = root.child();
        let other = Shutdown::new();
        let c = child.clone();
        let waiter = std::thread::spawn(move || c.wait_timeout(Duration::from_secs(3600)));
        root.raise();
        assert!(waiter.join().unwrap(), "woken by the raise, not the hour");
        assert!(child.is_raised());
        assert!(!other.is_raised());
        // A child made after the raise is raised at once.
        assert!(root.child().is_raised());
    }

    #[test]
    fn raising_a_child_leaves_its_parent_alone() {
        let root = Shutdown::new();
        let child = root.child();
        child.raise();
        assert!(child.is_raised() && !root.is_raised());
        assert!(!root.wait_timeout(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn an_async_wait_ends_on_raise_and_a_sleep_is_cut_short() {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t0 = tokio::time::Instant::now();
        let task = tokio::spawn(async move { s2.sleep(Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        s.raise();
        assert!(task.await.unwrap());
        // Virtual time: had the sleep run out, an hour would have passed.
        assert!(t0.elapsed() < Duration::from_secs(3600), "the sleep ended because of the raise");
        s.raised().await;
    }
}
