//! Retry windows: how long a connector keeps retrying a failure before it
//! gives up and exits (with its position intact, so a restart continues).

use std::time::{Duration, Instant};

/// An attempt that ran this long had recovered: its failure starts a new
/// window.
const RECOVERED_AFTER: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Consecutive failures and their backoff.
#[derive(Debug, Default)]
pub struct Retries {
    since: Option<Instant>,
    backoff: Duration,
}

impl Retries {
    /// Records a failure of an attempt that lasted `attempt`: `Ok(delay)`
    /// to wait before the next attempt, or `Err(failing_for)` when the
    /// failures have lasted `window` or longer.
    pub fn failure(&mut self, attempt: Duration, window: Duration) -> Result<Duration, Duration> {
        if attempt >= RECOVERED_AFTER {
            self.since = None;
        }
        if self.since.is_none() {
            self.backoff = Duration::from_secs(1);
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        let failing = since.elapsed();
        if failing >= window {
            return Err(failing);
        }
        let delay = self.backoff.min(window - failing);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(delay)
    }
}

/// Minutes as a duration.
pub fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_then_gives_up() {
        let mut r = Retries::default();
        let w = Duration::from_secs(3600);
        assert_eq!(r.failure(Duration::ZERO, w), Ok(Duration::from_secs(1)));
        assert_eq!(r.failure(Duration::ZERO, w), Ok(Duration::from_secs(2)));
        assert_eq!(r.failure(Duration::ZERO, w), Ok(Duration::from_secs(4)));
        // An attempt that ran a while had recovered: back to 1 s.
        assert_eq!(
            r.failure(Duration::from_secs(120), w),
            Ok(Duration::from_secs(1))
        );
        assert!(r.failure(Duration::ZERO, Duration::ZERO).is_err());
    }
}
