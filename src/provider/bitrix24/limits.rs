//! Client-side limits that keep the portal from ever having to say no: a leaky bucket matching
//! the portal's request-intensity limit, and per-method operating-time tracking.
//!
//! Time comes from `tokio::time`, so tests run these on a paused clock that they advance by hand
//! (`#[tokio::test(start_paused = true)]`): no real sleeps.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A portal's leaky bucket: `burst` requests at once, draining `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateProfile {
    pub burst: f64,
    pub per_second: f64,
}

impl RateProfile {
    /// Bitrix24 cloud plans other than Enterprise.
    pub const CLOUD: RateProfile = RateProfile {
        burst: 50.0,
        per_second: 2.0,
    };
    /// Bitrix24 Enterprise.
    pub const ENTERPRISE: RateProfile = RateProfile {
        burst: 250.0,
        per_second: 5.0,
    };

    /// `cloud`, `enterprise`, `BURST/PER_SECOND` (e.g. `50/2`) or `off`.
    pub fn parse(s: &str) -> Result<Option<RateProfile>, String> {
        match s {
            "cloud" => Ok(Some(Self::CLOUD)),
            "enterprise" => Ok(Some(Self::ENTERPRISE)),
            "off" | "none" => Ok(None),
            other => {
                let bad = || {
                    format!(
                        "invalid rate profile {other:?}: expected cloud, enterprise, off or BURST/PER_SECOND (burst 1 to 1e6, per second 0.01 to 1e6)"
                    )
                };
                let (b, r) = other.split_once('/').ok_or_else(bad)?;
                let burst: f64 = b.trim().parse().map_err(|_| bad())?;
                let per_second: f64 = r.trim().parse().map_err(|_| bad())?;
                // Finite and within sane bounds: a tiny rate would overflow a Duration.
                if !(1.0..=1e6).contains(&burst) || !(0.01..=1e6).contains(&per_second) {
                    return Err(bad());
                }
                Ok(Some(RateProfile { burst, per_second }))
            }
        }
    }
}

/// Requests of room the client leaves unused in the portal's bucket. The portal timestamps a
/// request when it starts processing it, so one that queued behind a slow request arrives "late"
/// and the next on-time request finds less drained than we modelled. Two requests absorb a
/// second of such jitter on a cloud portal and cost one second per run.
pub const HEADROOM: f64 = 2.0;

/// The client's model of the portal's bucket: its level after the requests we sent.
#[derive(Debug)]
pub struct Bucket {
    profile: RateProfile,
    /// The burst we allow ourselves: the portal's minus `HEADROOM` (at least 1).
    capacity: f64,
    state: Mutex<Level>,
}

#[derive(Debug)]
struct Level {
    level: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(profile: RateProfile) -> Bucket {
        Bucket {
            profile,
            capacity: (profile.burst - HEADROOM).max(1.0),
            state: Mutex::new(Level {
                level: 0.0,
                at: Instant::now(),
            }),
        }
    }

    /// Reserve room for one request; returns how long to wait before sending it. Reservations
    /// are taken in call order, so concurrent callers queue fairly.
    pub fn reserve(&self) -> Duration {
        let mut s = self.state.lock().expect("bucket lock");
        let now = Instant::now();
        let drained = (now - s.at).as_secs_f64() * self.profile.per_second;
        s.level = (s.level - drained).max(0.0);
        s.at = now;
        // Room for one more when level <= burst - 1; otherwise wait until it drains to that.
        let excess = s.level + 1.0 - self.capacity;
        s.level += 1.0;
        if excess > 0.0 {
            Duration::from_secs_f64(excess / self.profile.per_second)
        } else {
            Duration::ZERO
        }
    }

    /// The portal said the bucket is full (503): believe it, so later reservations wait.
    pub fn mark_full(&self) {
        let mut s = self.state.lock().expect("bucket lock");
        let now = Instant::now();
        let drained = (now - s.at).as_secs_f64() * self.profile.per_second;
        s.level = (s.level - drained).max(self.capacity);
        s.at = now;
    }
}

/// Per-method operating time as the portal reports it (`time.operating`, seconds used in the
/// last 10 minutes, and `time.operating_reset_at`, a unix time). A method close to the limit
/// is paused until its reset.
#[derive(Debug)]
pub struct Operating {
    /// Seconds of budget per method per 10 minutes (480 on cloud portals).
    limit_s: f64,
    /// Pause a method once it has used this much less than the limit.
    margin_s: f64,
    state: Mutex<BTreeMap<String, Usage>>,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    operating_s: f64,
    /// When the budget frees up, in our clock.
    reset: Option<Instant>,
}

impl Operating {
    pub fn new(limit_s: f64, margin_s: f64) -> Operating {
        Operating {
            limit_s,
            margin_s,
            state: Mutex::new(BTreeMap::new()),
        }
    }

    /// Record what a response said about `method`. `reset_in` is `operating_reset_at` minus the
    /// portal's `time.finish`, so clock skew between us and the portal does not matter.
    pub fn observe(&self, method: &str, operating_s: f64, reset_in: Option<Duration>) {
        let reset = reset_in.map(|d| Instant::now() + d);
        self.state
            .lock()
            .expect("operating lock")
            .insert(method.to_owned(), Usage { operating_s, reset });
    }

    /// The portal refused `method` for its budget (429): treat it as spent for `wait`, so every
    /// concurrent caller pauses rather than each finding out on its own.
    pub fn block(&self, method: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut state = self.state.lock().expect("operating lock");
        let usage = state.entry(method.to_owned()).or_insert(Usage {
            operating_s: 0.0,
            reset: None,
        });
        // A reset time reported for a budget that was not exhausted says when the oldest minute
        // expires (up to 10 minutes away), not when this block ends: only a block extends a block.
        let blocking = usage.operating_s >= self.limit_s - self.margin_s;
        usage.reset = match usage.reset {
            Some(r) if blocking && r > until => Some(r),
            _ => Some(until),
        };
        usage.operating_s = usage.operating_s.max(self.limit_s);
    }

    /// How long `method` must wait before its next call (zero when under budget).
    pub fn wait_for(&self, method: &str) -> Duration {
        let mut state = self.state.lock().expect("operating lock");
        let Some(u) = state.get(method).copied() else {
            return Duration::ZERO;
        };
        if u.operating_s < self.limit_s - self.margin_s {
            return Duration::ZERO;
        }
        let now = Instant::now();
        match u.reset {
            Some(reset) if reset > now => reset - now,
            _ => {
                // Reset time passed (or unknown): assume the oldest minute expired.
                state.remove(method);
                Duration::ZERO
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let b = Bucket::new(RateProfile::CLOUD);
        for _ in 0..48 {
            assert_eq!(b.reserve(), Duration::ZERO);
        }
        // With two requests of headroom, the 49th waits one drain interval, the 50th two.
        assert_eq!(b.reserve(), Duration::from_millis(500));
        assert_eq!(b.reserve(), Duration::from_millis(1000));
        tokio::time::advance(Duration::from_secs(10)).await;
        // 50 reserved, 20 drained in 10 s: level 30, so 18 more fit at once.
        for _ in 0..18 {
            assert_eq!(b.reserve(), Duration::ZERO);
        }
        assert_eq!(b.reserve(), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_503_fills_the_model() {
        let b = Bucket::new(RateProfile::ENTERPRISE);
        b.mark_full();
        assert_eq!(b.reserve(), Duration::from_millis(200));
        tokio::time::advance(Duration::from_secs(1)).await;
        // Level 249 (capacity 248, plus one) drained by 5: 244, so four fit.
        for _ in 0..4 {
            assert_eq!(b.reserve(), Duration::ZERO);
        }
        assert_eq!(b.reserve(), Duration::from_millis(200));
    }

    #[test]
    fn profiles() {
        assert_eq!(RateProfile::parse("cloud"), Ok(Some(RateProfile::CLOUD)));
        assert_eq!(
            RateProfile::parse("250/5"),
            Ok(Some(RateProfile::ENTERPRISE))
        );
        assert_eq!(RateProfile::parse("off"), Ok(None));
        assert!(RateProfile::parse("0/2").is_err());
        for bad in ["1/1e-300", "50/nan", "inf/2", "50/0", "50/-1", "50"] {
            assert!(RateProfile::parse(bad).is_err(), "{bad}");
        }
        assert!(RateProfile::parse("fast").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_blocks_the_method_for_everyone() {
        let o = Operating::new(480.0, 5.0);
        // A healthy budget whose oldest minute resets in 9 minutes: the block is not that long.
        o.observe("batch", 20.0, Some(Duration::from_secs(540)));
        o.block("batch", Duration::from_secs(10));
        assert_eq!(o.wait_for("batch"), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(o.wait_for("batch"), Duration::from_secs(6));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(o.wait_for("batch"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn operating_budget_pauses_a_method_until_reset() {
        let o = Operating::new(480.0, 5.0);
        o.observe("batch", 100.0, Some(Duration::from_secs(30)));
        assert_eq!(o.wait_for("batch"), Duration::ZERO);
        o.observe("batch", 476.0, Some(Duration::from_secs(30)));
        assert_eq!(o.wait_for("batch"), Duration::from_secs(30));
        assert_eq!(o.wait_for("user.get"), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(o.wait_for("batch"), Duration::ZERO);
    }
}
