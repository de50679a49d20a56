//! The retry policy for transient database errors (deadlocks, lock timeouts, dropped
//! connections, failovers): exponential backoff with full jitter, so the workers of a run that
//! all lost their connections at once do not come back at once.

use std::time::Duration;

use crate::error::Error;
use crate::source::errors::classify;

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// A random delay between zero and `base × 2^(attempt-1)`, capped at five minutes.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor)
        .min(MAX_DELAY)
        .mul_f64(fastrand::f64())
}

/// Runs `attempt` until it succeeds, fails with an error that is not transient, or failed
/// `max_retries + 1` times; logs every retry with the error class and codes.
pub fn with_retries<T>(
    what: &str,
    max_retries: u32,
    base: Duration,
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
        if failures >= max_retries {
            return Err(error);
        }
        failures += 1;
        let delay = backoff(base, failures);
        log::warn!(
            "{what}: {} [{}] (SQLSTATE {}, native error {}); retry {failures} of {max_retries} \
             in {:.1}s",
            crate::source::errors::reason(db),
            classify(db).name(),
            db.state,
            db.native,
            delay.as_secs_f64()
        );
        std::thread::sleep(delay);
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
        let result = with_retries("discovery", 5, Duration::ZERO, || {
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
        let result: Result<(), Error> = with_retries("discovery", 5, Duration::ZERO, || {
            calls += 1;
            Err(db_error("42501", 1))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1, "permission denied is not retried");
        let mut calls = 0;
        let result: Result<(), Error> = with_retries("discovery", 2, Duration::ZERO, || {
            calls += 1;
            Err(db_error("40P01", 1))
        });
        assert!(result.is_err());
        assert_eq!(calls, 3, "one try and two retries");
    }
}
