//! What to do after an attempt, decided once: the status classes of
//! CONTRACTS.md ("Upstream"), `Retry-After`, and exponential backoff with
//! jitter. Pure functions; [`Backoff`] draws its jitter from `fastrand`.

use std::time::Duration;

/// What to do with a batch after one attempt: the `RetryLogic` of the sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Delivered,
    Retry,
    DeadLetter,
}

/// Classifies an HTTP status (`None`: no answer: refused, reset, timeout).
pub fn classify(status: Option<u16>) -> Class {
    match status {
        None => Class::Retry,
        Some(200..=299) => Class::Delivered,
        Some(408 | 429) => Class::Retry,
        Some(400..=499) => Class::DeadLetter,
        // 5xx, and what should not come at all (1xx, 3xx, nonsense).
        Some(_) => Class::Retry,
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 10.2.3).
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((t.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

/// Exponential backoff with equal jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, next: min }
    }

    /// The next wait: half of the current step plus up to half more at
    /// random; the step doubles up to the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step / 2 + step.mul_f64(fastrand::f64() / 2.0)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundreds_are_delivered() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify(Some(s)), Class::Delivered, "{s}");
        }
    }

    #[test]
    fn timeouts_throttling_server_errors_and_no_answer_are_retried() {
        for s in [Some(408), Some(429), Some(500), Some(502), Some(503), Some(504), Some(599), None] {
            assert_eq!(classify(s), Class::Retry, "{s:?}");
        }
    }

    #[test]
    fn other_client_errors_are_dead_lettered() {
        for s in [400, 401, 403, 404, 409, 410, 413, 415, 422, 451, 499] {
            assert_eq!(classify(Some(s)), Class::DeadLetter, "{s}");
        }
    }

    #[test]
    fn redirects_and_informational_answers_are_retried_not_dropped() {
        for s in [100, 301, 302, 307, 308] {
            assert_eq!(classify(Some(s)), Class::Retry, "{s}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = "2026-11-24T09:00:00Z".parse().unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("Tue, 24 Nov 2026 09:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Tue, 24 Nov 2026 08:00:00 GMT", now), Some(Duration::ZERO), "a past date");
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_maximum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<Duration> = (0..6).map(|_| b.next_wait()).collect();
        for (w, step) in waits.iter().zip([100u64, 200, 400, 800, 800, 800]) {
            let step = Duration::from_millis(step);
            assert!(*w >= step / 2 && *w <= step, "{w:?} for step {step:?}");
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }
}
