//! Rate limits (token buckets): at most `rate` units per second on
//! average, with bursts of up to one second's worth.

use std::time::{Duration, Instant};

/// Debt smaller than this is carried over rather than slept, so that
/// fine-grained takes (one row at a time) cost no timer each.
const MIN_SLEEP: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    /// `None` for a rate of 0 (no limit).
    pub fn new(rate_per_second: f64) -> Option<Self> {
        (rate_per_second > 0.0).then(|| Self {
            rate: rate_per_second,
            tokens: rate_per_second,
            last: Instant::now(),
        })
    }

    /// Takes `n` units at `now`; how long to wait before going on.
    pub fn delay_at(&mut self, n: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate) - n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Takes `n` units from `limiter` (if any), sleeping as needed.
pub async fn take(limiter: &mut Option<Limiter>, n: f64) {
    if let Some(l) = limiter {
        let d = l.delay_at(n, Instant::now());
        if d >= MIN_SLEEP {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_rate_after_a_one_second_burst() {
        let mut l = Limiter::new(100.0).unwrap();
        let t0 = Instant::now();
        l.last = t0;
        // The first second's worth passes at once.
        assert_eq!(l.delay_at(100.0, t0), Duration::ZERO);
        // Then 50 more cost half a second.
        let d = l.delay_at(50.0, t0);
        assert!((d.as_secs_f64() - 0.5).abs() < 1e-9, "{d:?}");
        // After waiting it out, the bucket refills at the rate.
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!(l.delay_at(50.0, t1), Duration::ZERO);
        assert!(Limiter::new(0.0).is_none());
    }
}
