//! A background loop on a thread of its own (with a current-thread tokio
//! runtime) and the one way to stop it: raise its [`Shutdown`], join the
//! thread. Sync, upload and the hub link each run as one; dropping the
//! handle stops it too, so a loop never outlives its owner.

use std::future::Future;

use crate::shutdown::Shutdown;

/// A running loop; stops and joins when dropped.
pub struct Worker {
    stop: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Runs `body(stop)` to completion on a new thread named `name`.
    pub fn spawn<F, Fut>(name: &str, body: F) -> std::io::Result<Worker>
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let stop = Shutdown::new();
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn stop_wakes_a_sleeping_loop_and_joins_it() {
        let rounds = Arc::new(AtomicU64::new(0));
        let r = rounds.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let w = Worker::spawn("test-loop", move |stop| async move {
            while !stop.is_raised() {
                r.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(());
                // Far longer than the test: only the stop can end this sleep.
                stop.sleep(Duration::from_secs(3600)).await;
            }
            r.store(u64::MAX, Ordering::SeqCst);
        })
        .unwrap();
        rx.recv().unwrap();
        w.stop();
        assert_eq!(rounds.load(Ordering::SeqCst), u64::MAX, "the loop ran to its end before stop returned");
    }

    #[test]
    fn a_stop_asked_while_the_loop_is_busy_is_not_lost() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let w = Worker::spawn("test-busy", move |stop| async move {
            let _ = started_tx.send(());
            // Busy (not waiting on the signal) when the stop comes.
            let _ = rx.recv();
            stop.raised().await;
            d.store(true, Ordering::SeqCst);
        })
        .unwrap();
        started_rx.recv().unwrap();
        let stop = w.stop.clone();
        let stopper = std::thread::spawn(move || w.stop());
        // Once the stop is raised the loop is released; it must still see it.
        while !stop.is_raised() {
            std::thread::yield_now();
        }
        tx.send(()).unwrap();
        stopper.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
    }
}
