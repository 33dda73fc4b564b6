//! A background loop on a thread of its own (with a current-thread tokio
//! runtime) and the one way to stop it: raise the flag, wake the loop, join
//! the thread. Sync and upload each run as one; dropping the handle stops
//! it too, so a loop never outlives its owner.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// What the loop sees of a stop request.
#[derive(Default)]
pub struct StopSignal {
    raised: AtomicBool,
    wake: Notify,
}

impl StopSignal {
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Completes once a stop is asked for (at once if it already was).
    pub async fn raised(&self) {
        if !self.is_raised() {
            self.wake.notified().await;
        }
    }

    /// Sleeps `d`, or less if a stop is asked for meanwhile.
    pub async fn sleep(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.raised() => {}
        }
    }

    fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        // A stored permit: a loop busy elsewhere sees it at its next wait.
        self.wake.notify_one();
    }
}

/// A running loop; stops and joins when dropped.
pub struct Worker {
    stop: Arc<StopSignal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Runs `body(stop)` to completion on a new thread named `name`.
    pub fn spawn<F, Fut>(name: &str, body: F) -> std::io::Result<Worker>
    where
        F: FnOnce(Arc<StopSignal>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let stop = Arc::new(StopSignal::default());
        let signal = stop.clone();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || rt.block_on(body(signal)))?;
        Ok(Worker { stop, thread: Some(thread) })
    }

    /// Asks the loop to stop and waits for its thread to end.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.raise();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn stop_wakes_a_sleeping_loop_and_joins_it() {
        let rounds = Arc::new(AtomicU64::new(0));
        let r = rounds.clone();
        let w = Worker::spawn("test-loop", move |stop| async move {
            while !stop.is_raised() {
                r.fetch_add(1, Ordering::SeqCst);
                // Far longer than the test: only the stop can end this sleep.
                stop.sleep(Duration::from_secs(3600)).await;
            }
            r.store(u64::MAX, Ordering::SeqCst);
        })
        .unwrap();
        while rounds.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        w.stop();
        assert_eq!(rounds.load(Ordering::SeqCst), u64::MAX, "the loop ran to its end before stop returned");
    }

    #[test]
    fn a_stop_asked_while_the_loop_is_busy_is_not_lost() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let w = Worker::spawn("test-busy", move |stop| async move {
            // Busy (not waiting on the signal) when the stop comes.
            let _ = rx.recv();
            stop.raised().await;
            d.store(true, Ordering::SeqCst);
        })
        .unwrap();
        let stopper = std::thread::spawn(move || w.stop());
        std::thread::sleep(Duration::from_millis(50));
        tx.send(()).unwrap();
        stopper.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
    }
}
