//! When a failed call is tried again, and after how long.
//!
//! Invariants: a 4xx answer is never retried (the request itself is wrong, or the node
//! refused it for good); every retry loop is bounded by a number of attempts *and* a total
//! time. Retrying writes is safe because every write carries an idempotency id: a write
//! that did commit before its answer was lost comes back as `"status": "existing"`.

use std::time::Duration;

/// What went wrong with one attempt, as far as the retry decision is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The node answered with this non-success status, and perhaps a `Retry-After` delay.
    Status {
        /// The HTTP status.
        status: u16,
        /// The delay from `Retry-After` (seconds form), if any.
        retry_after: Option<Duration>,
    },
    /// The connection could not be made.
    Connect,
    /// The attempt timed out.
    Timeout,
    /// The connection failed while sending the request or reading the answer.
    Interrupted,
    /// Anything else (a redirect loop, a request that cannot be built): not retryable.
    Other,
}

impl AttemptFailure {
    /// Whether trying again can help: connection failures, timeouts, and the statuses a
    /// healthy node answers transiently (500 `internal`, 502, 503 `overloaded`/`not_ready`/
    /// `timeout`, 504). Never a 4xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptFailure::Status { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            AttemptFailure::Connect | AttemptFailure::Timeout | AttemptFailure::Interrupted => true,
            AttemptFailure::Other => false,
        }
    }

    /// The failure of a transport error.
    pub(crate) fn of_transport(e: &reqwest::Error) -> AttemptFailure {
        if e.is_timeout() {
            AttemptFailure::Timeout
        } else if e.is_connect() {
            AttemptFailure::Connect
        } else if e.is_request() || e.is_body() {
            AttemptFailure::Interrupted
        } else {
            AttemptFailure::Other
        }
    }
}

/// Exponential backoff with jitter, bounded in attempts and in total time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts of one call, the first included (1 means never retry).
    pub attempts_max: u32,
    /// Backoff before the first retry; it doubles with each further retry.
    pub backoff_initial_ms: u64,
    /// Largest backoff between two attempts (a longer `Retry-After` still wins, within
    /// `total_ms_max`).
    pub backoff_max_ms: u64,
    /// No retry starts later than this after the first attempt began.
    pub total_ms_max: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_max: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
            total_ms_max: 30_000,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            attempts_max: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delay before the next attempt, or `None` to give up.
    ///
    /// `attempts_made` counts attempts so far (at least 1), `elapsed` is the time since the
    /// first began, and `jitter` in `[0, 1)` picks the delay within the upper half of the
    /// backoff window ("equal jitter"), so that many clients do not retry in lockstep. A
    /// `Retry-After` from the node is a lower bound on the delay.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        failure: &AttemptFailure,
        elapsed: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        if !failure.is_retryable() || attempts_made >= self.attempts_max {
            return None;
        }
        let exponent = attempts_made.saturating_sub(1).min(32);
        let backoff_ms = self
            .backoff_initial_ms
            .saturating_mul(1u64 << exponent)
            .min(self.backoff_max_ms);
        let jitter = jitter.clamp(0.0, 1.0);
        let jittered_ms = backoff_ms / 2 + ((backoff_ms - backoff_ms / 2) as f64 * jitter) as u64;
        let mut delay = Duration::from_millis(jittered_ms);
        if let AttemptFailure::Status {
            retry_after: Some(after),
            ..
        } = failure
        {
            delay = delay.max(*after);
        }
        if elapsed.saturating_add(delay) > Duration::from_millis(self.total_ms_max) {
            return None;
        }
        Some(delay)
    }
}

/// Parses a `Retry-After` header in its delay-seconds form; the HTTP-date form is ignored
/// (the backoff applies instead).
pub(crate) fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> AttemptFailure {
        AttemptFailure::Status {
            status: s,
            retry_after: None,
        }
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        for s in [500, 502, 503, 504] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 415, 422, 429, 501] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert!(AttemptFailure::Connect.is_retryable());
        assert!(AttemptFailure::Timeout.is_retryable());
        assert!(AttemptFailure::Interrupted.is_retryable());
        assert!(!AttemptFailure::Other.is_retryable());
    }

    #[test]
    fn client_errors_are_never_retried() {
        let p = RetryPolicy::default();
        assert_eq!(p.next_delay(1, &status(409), Duration::ZERO, 0.5), None);
        assert_eq!(p.next_delay(1, &status(422), Duration::ZERO, 0.5), None);
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_is_capped() {
        let p = RetryPolicy {
            attempts_max: 20,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            total_ms_max: 1_000_000,
        };
        let f = AttemptFailure::Connect;
        let d = |n, j| p.next_delay(n, &f, Duration::ZERO, j).unwrap().as_millis();
        assert_eq!((d(1, 0.0), d(1, 0.999_999)), (50, 99));
        assert_eq!((d(2, 0.0), d(2, 0.999_999)), (100, 199));
        assert_eq!((d(3, 0.0), d(3, 0.999_999)), (200, 399));
        assert_eq!((d(10, 0.0), d(10, 0.999_999)), (500, 999));
        assert_eq!(d(19, 1.0), 1_000);
    }

    #[test]
    fn attempts_and_total_time_are_bounded() {
        let p = RetryPolicy {
            attempts_max: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 100,
            total_ms_max: 1_000,
        };
        let f = status(503);
        assert!(p.next_delay(2, &f, Duration::ZERO, 0.0).is_some());
        assert_eq!(p.next_delay(3, &f, Duration::ZERO, 0.0), None);
        assert_eq!(p.next_delay(1, &f, Duration::from_millis(990), 0.0), None);
        assert_eq!(
            RetryPolicy::none().next_delay(1, &f, Duration::ZERO, 0.0),
            None
        );
    }

    #[test]
    fn retry_after_is_honoured_as_a_lower_bound() {
        let p = RetryPolicy::default();
        let f = AttemptFailure::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            p.next_delay(1, &f, Duration::ZERO, 0.0),
            Some(Duration::from_secs(2))
        );
        // A Retry-After beyond the total budget ends the retries.
        let f = AttemptFailure::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(p.next_delay(1, &f, Duration::ZERO, 0.0), None);
        assert_eq!(parse_retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }
}
