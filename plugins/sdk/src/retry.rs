//! Bounded retries for HTTP work: exponential backoff on 5xx and transport
//! errors, the source's `Retry-After` on 429 (and 503), a cap on attempts
//! and on the total time spent waiting. Never loops forever.

use std::time::{Duration, SystemTime};

use crate::http::HttpError;

/// How [`Client::fetch`](crate::http::Client::fetch) and
/// [`RetryPolicy::run`] retry transient failures.
///
/// Attempt `n` (1-based) that fails transiently waits `Retry-After` when the
/// source sent one, else `initial_backoff * 2^(n-1)` capped at
/// `max_backoff`, then tries again, until `max_attempts` attempts were made
/// or the next wait would take the total past `max_total_wait`. Then the
/// last error is returned; a 429 then maps to
/// [`AdapterError::RateLimited`](crate::AdapterError::RateLimited) carrying
/// the source's `Retry-After`, so the host waits instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1: no retries).
    pub max_attempts: u32,
    /// Wait after the first failed attempt.
    pub initial_backoff: Duration,
    /// Longest single backoff wait (a `Retry-After` may be longer, up to
    /// `max_total_wait`).
    pub max_backoff: Duration,
    /// Most time spent waiting across all retries of one call.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, backoff 0.5 s, 1 s, 2 s (at most 30 s each), at most
    /// 2 minutes of waiting in total.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_total_wait: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries: every failure is returned at once.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// How long to wait before another attempt after `attempt` attempts
    /// (1-based) failed with `error`, having waited `waited` so far; `None`
    /// to give up.
    pub fn delay_before_retry(
        &self,
        attempt: u32,
        waited: Duration,
        error: &HttpError,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts || !error.is_transient() {
            return None;
        }
        let delay = match error.retry_after() {
            Some(wait) => wait,
            None => {
                let factor = 1u32
                    .checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                self.initial_backoff
                    .checked_mul(factor)
                    .map_or(self.max_backoff, |d| d.min(self.max_backoff))
            }
        };
        (waited.saturating_add(delay) <= self.max_total_wait).then_some(delay)
    }

    /// Runs `operation` until it succeeds, fails for good, or the policy
    /// gives up; waits between attempts on the monotonic clock and logs each
    /// retry at `warn`.
    pub fn run<T>(&self, operation: impl FnMut() -> Result<T, HttpError>) -> Result<T, HttpError> {
        self.run_with(operation, |error, attempt, delay| {
            crate::log::warn(
                "retrying after a transient failure",
                &[
                    ("error", &error.to_string()),
                    ("attempt", &attempt.to_string()),
                    ("wait_ms", &delay.as_millis().to_string()),
                ],
            );
            crate::time::sleep(delay);
        })
    }

    /// [`RetryPolicy::run`] with the waiting supplied, so the loop is tested
    /// natively.
    fn run_with<T>(
        &self,
        mut operation: impl FnMut() -> Result<T, HttpError>,
        mut wait: impl FnMut(&HttpError, u32, Duration),
    ) -> Result<T, HttpError> {
        let mut attempt = 1;
        let mut waited = Duration::ZERO;
        loop {
            match operation() {
                Ok(value) => return Ok(value),
                Err(error) => match self.delay_before_retry(attempt, waited, &error) {
                    Some(delay) => {
                        wait(&error, attempt, delay);
                        waited += delay;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
            }
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), measured from `now`. A date in the
/// past means no wait. Unparseable values give `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate instead of failing.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> HttpError {
        HttpError::Status {
            method: "GET",
            url: "https://h/".into(),
            status: code,
            retry_after: retry_after.map(Duration::from_secs),
            excerpt: String::new(),
        }
    }

    fn transport(transient: bool) -> HttpError {
        HttpError::Transport {
            method: "GET",
            url: "https://h/".into(),
            code: "connection refused".into(),
            transient,
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(3),
            max_total_wait: Duration::from_secs(600),
        };
        let e = status(503, None);
        let delays: Vec<_> = (1..6)
            .map(|a| {
                p.delay_before_retry(a, Duration::ZERO, &e)
                    .unwrap()
                    .as_millis()
            })
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 3000, 3000]);
        assert_eq!(p.delay_before_retry(10, Duration::ZERO, &e), None);
        let unbounded = RetryPolicy {
            max_attempts: u32::MAX,
            ..p
        };
        assert_eq!(
            unbounded.delay_before_retry(40, Duration::ZERO, &e),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let p = RetryPolicy::default();
        assert!(
            p.delay_before_retry(1, Duration::ZERO, &transport(true))
                .is_some()
        );
        assert!(
            p.delay_before_retry(1, Duration::ZERO, &transport(false))
                .is_none()
        );
        assert!(
            p.delay_before_retry(1, Duration::ZERO, &status(404, None))
                .is_none()
        );
        assert!(
            p.delay_before_retry(1, Duration::ZERO, &status(401, None))
                .is_none()
        );
        assert!(
            RetryPolicy::none()
                .delay_before_retry(1, Duration::ZERO, &status(503, None))
                .is_none()
        );
    }

    #[test]
    fn retry_after_is_honoured_within_the_total_cap() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay_before_retry(1, Duration::ZERO, &status(429, Some(45))),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            p.delay_before_retry(1, Duration::from_secs(80), &status(429, Some(45))),
            None
        );
        assert_eq!(
            p.delay_before_retry(1, Duration::ZERO, &status(429, Some(3600))),
            None
        );
        assert_eq!(
            p.delay_before_retry(1, Duration::ZERO, &status(429, None)),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn run_stops_at_success_or_after_the_bound() {
        let p = RetryPolicy::default();
        let mut calls = 0;
        let mut waits = Vec::new();
        let result = p.run_with(
            || {
                calls += 1;
                if calls < 3 {
                    Err(status(502, None))
                } else {
                    Ok(calls)
                }
            },
            |_, attempt, d| waits.push((attempt, d.as_millis())),
        );
        assert_eq!(result, Ok(3));
        assert_eq!(waits, [(1, 500), (2, 1000)]);

        let mut calls = 0;
        let result: Result<(), _> = p.run_with(
            || {
                calls += 1;
                Err(status(500, None))
            },
            |_, _, _| {},
        );
        assert_eq!(calls, 4);
        assert_eq!(result.unwrap_err().status(), Some(500));

        let mut calls = 0;
        let result: Result<(), _> = p.run_with(
            || {
                calls += 1;
                Err(status(429, Some(300)))
            },
            |_, _, _| panic!("must not wait past the cap"),
        );
        assert_eq!(calls, 1);
        assert_eq!(
            result.unwrap_err().retry_after(),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
