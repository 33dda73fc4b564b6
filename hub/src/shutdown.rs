//! One way to stop the hub: a [`Shutdown`] is raised once (by the first
//! SIGTERM, or by a test) and seen by every part it is handed to: the HTTP
//! server, each WebSocket, and every background job. Nothing polls a flag:
//! parts wait on [`Shutdown::wait`] or sleep with [`Shutdown::sleep`], which
//! ends early when the hub stops.

use std::time::Duration;

use tokio::sync::watch;

/// Raises the [`Shutdown`] it was made with (held by whoever starts the hub).
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A stop request: cloneable, raised once, never lowered.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A new, unraised signal and its trigger.
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Shutdown(rx))
    }

    /// True once raised.
    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once raised (or once its trigger is gone: nobody can stop
    /// it any more, so the part it guards stops too).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Waits `d`, or less if the hub stops meanwhile; true if it stops.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::time::timeout(d, self.wait()).await.is_ok()
    }
}

impl Trigger {
    pub fn raise(&self) {
        let _ = self.0.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_early_when_raised_and_every_clone_sees_it() {
        let (trigger, s) = Shutdown::new();
        assert!(!s.sleep(Duration::from_secs(5)).await, "not raised: the whole sleep");
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.sleep(Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        trigger.raise();
        assert!(waiter.await.unwrap(), "raised: ends early and says so");
        assert!(s.is_raised());
    }
}
