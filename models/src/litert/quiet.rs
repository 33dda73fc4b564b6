//! Keeps LiteRT's INFO chatter off stderr.
//!
//! LiteRT 2.1.4 writes half a dozen `INFO: [file.cc:N] …` lines to file
//! descriptor 2 each time a model is loaded or freed, and has no setting to
//! stop it (its logger is not exported). Under systemd each `/analyze`
//! connection would put them in the journal, and a command's one-line error
//! would no longer be one line. So while LiteRT loads or frees a model,
//! [`QuietStderr`] points fd 2 at a pipe; a thread passes every line that
//! is not LiteRT's `INFO: ` on to the real stderr, so other threads' lines
//! written meanwhile are kept (only their order relative to each other may
//! change). One redirect at a time (a process-wide lock).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

thread_local! {
    /// This thread already holds a redirect (a model freed while another
    /// loads): an inner guard does nothing, rather than wait for itself.
    static ACTIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While alive, fd 2 is a pipe filtered as the module docs say.
pub(crate) struct QuietStderr {
    saved: Option<OwnedFd>,
    /// None for an inner guard.
    lock: Option<MutexGuard<'static, ()>>,
}

impl QuietStderr {
    /// Redirects fd 2. When anything fails, stderr is left as it was.
    pub(crate) fn new() -> Self {
        if ACTIVE.get() {
            return Self { saved: None, lock: None };
        }
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        ACTIVE.set(true);
        Self { saved: redirect(), lock: Some(lock) }
    }
}

impl Drop for QuietStderr {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            use std::os::fd::AsRawFd;
            // SAFETY: dup2 of an fd we own onto fd 2; it closes our pipe's
            // write end there, so the filter thread sees the end of input.
            unsafe { libc::dup2(saved.as_raw_fd(), 2) };
        }
        // Released only once fd 2 is back.
        if self.lock.take().is_some() {
            ACTIVE.set(false);
        }
    }
}

/// Points fd 2 at a pipe read by a filter thread; returns the real stderr.
fn redirect() -> Option<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for the new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: pipe2 succeeded: both are new descriptors owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: dup of fd 2, which is open for the life of the process (or -1, checked).
    let saved = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if saved < 0 {
        return None;
    }
    // SAFETY: a new descriptor owned by nobody else.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    let out = saved.try_clone().ok()?;
    let thread = std::thread::Builder::new().name("litert-stderr".into()).spawn(move || {
        let mut out = std::fs::File::from(out);
        // Bounded by the pipe: it ends when the last write end closes.
        for line in BufReader::new(std::fs::File::from(read)).split(b'\n').map_while(Result::ok) {
            if !line.starts_with(b"INFO: ") {
                let _ = out.write_all(&line);
                let _ = out.write_all(b"\n");
            }
        }
    });
    if thread.is_err() {
        return None;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 of the pipe's write end onto fd 2; `write` is closed
    // when it drops at the end of this function, leaving fd 2 its only copy.
    if unsafe { libc::dup2(write.as_raw_fd(), 2) } < 0 {
        return None;
    }
    Some(saved)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stderr_works_again_after_a_quiet_section_also_a_nested_one() {
        {
            let _q = super::QuietStderr::new();
            let _inner = super::QuietStderr::new(); // does not wait for the outer one
            eprintln!("INFO: hidden");
        }
        // fd 2 is a working descriptor again (writing does not fail).
        use std::io::Write;
        assert!(std::io::stderr().write_all(b"").is_ok());
        // SAFETY: fcntl F_GETFD on fd 2 only reads its flags.
        assert!(unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0);
    }
}
