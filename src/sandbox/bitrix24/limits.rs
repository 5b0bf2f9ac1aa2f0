//! Time and limits: the [`Clock`] abstraction, the per-portal leaky bucket (reference §4).
//! Pure bookkeeping driven by the time it is given; it must not sleep, do I/O or build
//! responses.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the emulator reads time from. Tests drive a [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since an arbitrary origin.
    fn monotonic(&self) -> Duration;
    /// Wall-clock time as unix seconds.
    fn unix(&self) -> f64;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn unix(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Duration>,
    unix_origin: f64,
}

impl ManualClock {
    pub fn new(unix_origin: f64) -> Self {
        ManualClock {
            now: Mutex::new(Duration::ZERO),
            unix_origin,
        }
    }
    pub fn advance(&self, d: Duration) {
        let mut n = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *n += d;
    }
}

impl Clock for ManualClock {
    fn monotonic(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn unix(&self) -> f64 {
        self.unix_origin + self.monotonic().as_secs_f64()
    }
}

/// Leaky bucket: each request adds one unit; the bucket drains `per_second` units a second;
/// a request that would overflow `burst` is refused (and adds nothing).
#[derive(Debug, Clone)]
pub struct LeakyBucket {
    burst: f64,
    per_second: f64,
    level: f64,
    last: Duration,
}

impl LeakyBucket {
    pub fn new(burst: f64, per_second: f64, now: Duration) -> Self {
        LeakyBucket {
            burst,
            per_second,
            level: 0.0,
            last: now,
        }
    }

    /// Admit one request at `now`, or refuse it.
    pub fn try_acquire(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.level = (self.level - elapsed * self.per_second).max(0.0);
        // A small tolerance keeps float drift from refusing a request that exactly fits.
        if self.level + 1.0 <= self.burst + 1e-9 {
            self.level += 1.0;
            true
        } else {
            false
        }
    }

    pub fn level(&self) -> f64 {
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn bucket_admits_burst_then_refuses() {
        let mut b = LeakyBucket::new(3.0, 1.0, Duration::ZERO);
        let got: Vec<bool> = (0..5).map(|_| b.try_acquire(Duration::ZERO)).collect();
        assert_eq!(got, [true, true, true, false, false]);
        assert_eq!(b.level(), 3.0);
    }

    #[test]
    fn bucket_drains_at_rate() {
        let mut b = LeakyBucket::new(2.0, 2.0, Duration::ZERO);
        assert!(b.try_acquire(secs(0.0)));
        assert!(b.try_acquire(secs(0.0)));
        assert!(!b.try_acquire(secs(0.25)), "only half a unit drained");
        assert!(
            b.try_acquire(secs(0.5)),
            "one unit drained after 0.5 s at 2/s"
        );
        assert!(!b.try_acquire(secs(0.5)));
        assert!(b.try_acquire(secs(10.0)));
        assert!(b.try_acquire(secs(10.0)));
        assert!(
            !b.try_acquire(secs(10.0)),
            "never more than burst after idling"
        );
    }

    #[test]
    fn manual_clock_drives_bucket() {
        let c = ManualClock::new(1_000.0);
        let mut b = LeakyBucket::new(1.0, 1.0, c.monotonic());
        assert!(b.try_acquire(c.monotonic()));
        assert!(!b.try_acquire(c.monotonic()));
        c.advance(Duration::from_secs(1));
        assert!(b.try_acquire(c.monotonic()));
        assert_eq!(c.unix(), 1_001.0);
    }

    #[test]
    fn clock_going_backwards_does_not_refill() {
        let mut b = LeakyBucket::new(1.0, 1.0, secs(5.0));
        assert!(b.try_acquire(secs(5.0)));
        assert!(!b.try_acquire(secs(1.0)));
    }
}
