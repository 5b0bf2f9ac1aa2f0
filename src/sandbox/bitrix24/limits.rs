//! Time and limits (reference §4): the [`Clock`] abstraction, the per-portal leaky bucket, the
//! per-method operating-time budget and the seeded fault dice. Pure bookkeeping driven by the
//! time it is given; apart from [`Clock::sleep`] nothing here waits, does I/O or builds
//! responses.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A boxed future returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where the emulator reads time from and how it waits. Tests drive a [`ManualClock`], whose
/// `sleep` just moves its own time forward, so simulated latency costs no real time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since an arbitrary origin.
    fn monotonic(&self) -> Duration;
    /// Wall-clock time as unix seconds.
    fn unix(&self) -> f64;
    /// Wait for `d` (really, or virtually).
    fn sleep(&self, d: Duration) -> Sleep;
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
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
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
    fn sleep(&self, d: Duration) -> Sleep {
        self.advance(d);
        Box::pin(std::future::ready(()))
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

/// Length of the operating window: 10 buckets of one minute.
pub const OPERATING_WINDOW_S: f64 = 600.0;
const BUCKET_S: f64 = 60.0;

/// Operating time per key (webhook + method): one-minute buckets, each expiring 600 s after it
/// opened. A bucket opens at the first charge after the previous one is a minute old, so an
/// idle method's `reset_at` is "now + 600", as in the documented example.
#[derive(Debug, Default, Clone)]
pub struct OperatingBudget {
    buckets: BTreeMap<String, VecDeque<(f64, f64)>>,
}

impl OperatingBudget {
    fn prune(&mut self, key: &str, now: f64) {
        if let Some(q) = self.buckets.get_mut(key) {
            while q
                .front()
                .is_some_and(|(opened, _)| opened + OPERATING_WINDOW_S <= now)
            {
                q.pop_front();
            }
        }
    }

    /// Seconds used by `key` in the window at `now`.
    pub fn used(&mut self, key: &str, now: f64) -> f64 {
        self.prune(key, now);
        self.buckets
            .get(key)
            .map_or(0.0, |q| q.iter().map(|(_, s)| s).sum())
    }

    /// Unix second at which the oldest bucket expires (`now + 600` when there is none).
    pub fn reset_at(&mut self, key: &str, now: f64) -> i64 {
        self.prune(key, now);
        let opened = self
            .buckets
            .get(key)
            .and_then(|q| q.front())
            .map_or(now, |(opened, _)| *opened);
        (opened + OPERATING_WINDOW_S).floor() as i64
    }

    /// Is `key` blocked: has it used up `limit` seconds?
    pub fn blocked(&mut self, key: &str, now: f64, limit: f64) -> bool {
        self.used(key, now) >= limit
    }

    /// Charge `secs` to `key` at `now`.
    pub fn charge(&mut self, key: &str, now: f64, secs: f64) {
        self.prune(key, now);
        let q = self.buckets.entry(key.to_owned()).or_default();
        match q.back_mut() {
            Some((opened, s)) if now - *opened < BUCKET_S => *s += secs,
            _ => q.push_back((now, secs)),
        }
    }
}

/// Seeded dice for fault injection (SplitMix64): the same seed gives the same faults for the
/// same sequence of requests.
#[derive(Debug, Clone)]
pub struct Dice {
    state: u64,
}

impl Dice {
    pub fn new(seed: u64) -> Self {
        Dice { state: seed }
    }

    /// A uniform number in [0, 1).
    pub fn roll(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
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

    #[test]
    fn operating_budget_window() {
        let mut b = OperatingBudget::default();
        let k = "1:code:user.get";
        assert_eq!(b.used(k, 1000.0), 0.0);
        assert_eq!(b.reset_at(k, 1000.0), 1600);
        b.charge(k, 1000.0, 2.0);
        b.charge(k, 1030.0, 1.5); // same bucket
        b.charge(k, 1070.0, 1.0); // new bucket
        assert_eq!(b.used(k, 1070.0), 4.5);
        assert_eq!(b.reset_at(k, 1070.0), 1600);
        assert!(b.blocked(k, 1070.0, 4.5));
        assert!(!b.blocked(k, 1070.0, 5.0));
        assert!(!b.blocked("other", 1070.0, 0.1));
        // The first bucket expires 600 s after it opened.
        assert_eq!(b.used(k, 1600.0), 1.0);
        assert_eq!(b.reset_at(k, 1600.0), 1670);
        assert_eq!(b.used(k, 1670.0), 0.0);
    }

    #[test]
    fn dice_are_seeded_and_uniform() {
        let a: Vec<f64> = {
            let mut d = Dice::new(7);
            (0..5).map(|_| d.roll()).collect()
        };
        let mut d = Dice::new(7);
        let b: Vec<f64> = (0..5).map(|_| d.roll()).collect();
        assert_eq!(a, b);
        let mut d = Dice::new(1);
        let rolls: Vec<f64> = (0..10_000).map(|_| d.roll()).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let below = rolls.iter().filter(|r| **r < 0.1).count();
        assert!((800..1200).contains(&below), "{below}");
    }

    #[test]
    fn manual_clock_sleep_advances_virtually() {
        let c = ManualClock::new(0.0);
        let fut = c.sleep(Duration::from_millis(250));
        drop(fut);
        assert_eq!(c.monotonic(), Duration::from_millis(250));
    }
}
