//! The retry policy for transient database errors (deadlocks, lock timeouts, dropped
//! connections, failovers): exponential backoff with full jitter, so the workers of a run that
//! all lost their connections at once do not come back at once.

use std::time::Duration;

use crate::config::Config;
use crate::error::Error;
use crate::source::errors::classify;

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// A random delay between zero and `base × 2^(attempt-1)`, capped at five minutes.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor)
        .min(MAX_DELAY)
        .mul_f64(fastrand::f64())
}

/// How transient failures are retried, by the catalog read and by every worker: at most
/// `max_retries` retries in a row, each after a [`backoff`] delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryPolicy {
    pub(crate) max_retries: u32,
    /// Base of the exponential backoff.
    pub(crate) base: Duration,
}

impl RetryPolicy {
    /// The policy `max_retries` and `retry_sleep_seconds` configure.
    pub(crate) fn of(config: &Config) -> RetryPolicy {
        RetryPolicy {
            max_retries: config.max_retries,
            base: config.retry_sleep,
        }
    }

    /// `failures` in a row (the last one included) are more than the policy retries.
    pub(crate) fn exhausted(&self, failures: u32) -> bool {
        failures > self.max_retries
    }

    /// The wait before the retry that follows `failures` failures in a row, or `None`: give up.
    pub(crate) fn delay(&self, failures: u32) -> Option<Duration> {
        (!self.exhausted(failures)).then(|| backoff(self.base, failures))
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not transient, or failed
    /// `max_retries + 1` times; logs every retry with the error class and codes.
    pub(crate) fn run<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut failures = 0;
        loop {
            let error = match attempt() {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let Some(db) = error.db_error().filter(|db| classify(db).retryable()) else {
                return Err(error);
            };
            failures += 1;
            let Some(delay) = self.delay(failures) else {
                return Err(error);
            };
            log::warn!(
                "{what}: {} [{}] (SQLSTATE {}, native error {}); retry {failures} of {} in \
                 {:.1}s",
                crate::source::errors::reason(db),
                classify(db).name(),
                db.state,
                db.native,
                self.max_retries,
                delay.as_secs_f64()
            );
            std::thread::sleep(delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DbError;

    #[test]
    fn backoff_grows_exponentially_within_the_cap() {
        let base = Duration::from_secs(2);
        for attempt in 1..=30u32 {
            let ceiling = (base * 2u32.pow(attempt.min(20) - 1)).min(MAX_DELAY);
            for _ in 0..50 {
                assert!(backoff(base, attempt) <= ceiling, "attempt {attempt}");
            }
        }
        let spread: Vec<Duration> = (0..50).map(|_| backoff(base, 4)).collect();
        assert!(spread.iter().any(|d| *d != spread[0]), "jittered");
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base: Duration::ZERO,
        }
    }

    #[test]
    fn the_policy_retries_max_retries_times_in_a_row_then_gives_up() {
        let three = RetryPolicy {
            max_retries: 3,
            base: Duration::from_secs(1),
        };
        for failures in 1..=3 {
            let delay = three.delay(failures).expect("retried");
            assert!(
                delay <= Duration::from_secs(1 << (failures - 1)),
                "{delay:?}"
            );
            assert!(!three.exhausted(failures));
        }
        assert_eq!(three.delay(4), None);
        assert!(three.exhausted(4));
        assert_eq!(policy(0).delay(1), None, "max_retries 0: no retry at all");
        assert!(!policy(0).exhausted(0));
    }

    fn db_error(state: &str, native: i32) -> Error {
        Error::Database {
            context: "reading".into(),
            source: DbError {
                state: state.into(),
                native,
                message: "m".into(),
            },
        }
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let mut calls = 0;
        let result = policy(5).run("discovery", || {
            calls += 1;
            if calls < 3 {
                Err(db_error("08S01", 35))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.unwrap(), 3);
    }

    #[test]
    fn permanent_errors_and_exhausted_retries_fail() {
        let mut calls = 0;
        let result: Result<(), Error> = policy(5).run("discovery", || {
            calls += 1;
            Err(db_error("42501", 1))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1, "permission denied is not retried");
        let mut calls = 0;
        let result: Result<(), Error> = policy(2).run("discovery", || {
            calls += 1;
            Err(db_error("40P01", 1))
        });
        assert!(result.is_err());
        assert_eq!(calls, 3, "one try and two retries");
    }
}
