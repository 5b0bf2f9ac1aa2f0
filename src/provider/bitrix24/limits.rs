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

/// The slowest drain rate the pacer learns down to (requests per second). Bitrix24's strictest
/// documented plan drains 2/s; a quarter of that is room for a shared or misreported limit.
pub const MIN_RATE: f64 = 0.5;

/// The share of an observed drain rate the pacer uses: observing is noisy, and every 503 costs
/// one wait.
const OBSERVED_SHARE: f64 = 0.9;

/// The shortest time over which the pacer measures the portal's drain rate.
const OBSERVE_FOR: Duration = Duration::from_secs(1);

/// What a 503 `QUERY_LIMIT_EXCEEDED` taught the pacer, for the one log line worth printing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Learned {
    /// The 503 answered a request sent before the model last changed: no news.
    Nothing,
    /// There was no model (`--rate-limit off`): the portal has a limit after all; pacing from
    /// now on at `per_second`.
    Started { per_second: f64 },
    /// 503s keep coming under the current model: the portal drains slower than assumed.
    Slowed { from: f64, to: f64 },
}

/// The client's model of the portal's leaky bucket, learning from the portal's refusals.
///
/// It starts from the configured profile (or, with none, does not pace at all). A 503 says the
/// portal's bucket is full: the model believes it, and so paces from then on. With no model the
/// first 503 creates one: its burst is what went through before the refusal (less `HEADROOM`),
/// its drain rate Enterprise's 5/s, the fastest documented. A 503 for a request sent under the
/// model (after its last change) means the model is too generous: once at least a second has
/// passed since the last change, the drain rate drops to what was observed meanwhile —
/// requests accepted per second while we sent faster than the portal drains — or halves when
/// almost nothing got through, never below `MIN_RATE` (nor above the configured rate); and the
/// burst shrinks to the level at which the portal said no.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    model: Option<Model>,
    /// Our estimate of the portal's level after the requests we reserved.
    level: f64,
    at: Instant,
    /// When the model last changed (created, slowed or told "full"): a refusal of a request
    /// sent before then is no news.
    since: Instant,
    /// When the current drain rate was set, and how many requests sent since then the portal
    /// accepted: the observation of the portal's real rate.
    window: Instant,
    accepted_since: u32,
    /// Requests accepted while there was no model, for a first guess of the burst.
    accepted_unpaced: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Model {
    /// The burst we allow ourselves.
    capacity: f64,
    per_second: f64,
}

impl Pacer {
    pub fn new(profile: Option<RateProfile>) -> Pacer {
        let now = Instant::now();
        Pacer {
            state: Mutex::new(PacerState {
                model: profile.map(|p| Model {
                    capacity: (p.burst - HEADROOM).max(1.0),
                    per_second: p.per_second,
                }),
                level: 0.0,
                at: now,
                since: now,
                window: now,
                accepted_since: 0,
                accepted_unpaced: 0,
            }),
        }
    }

    /// Reserve room for one request; returns how long to wait before sending it (zero without
    /// a model). Reservations are taken in call order, so concurrent callers queue fairly.
    pub fn reserve(&self) -> Duration {
        let mut s = self.state.lock().expect("pacer lock");
        let Some(m) = s.model else {
            return Duration::ZERO;
        };
        s.drain(m);
        // Room for one more when level <= capacity - 1; otherwise wait until it drains to that.
        let excess = s.level + 1.0 - m.capacity;
        s.level += 1.0;
        if excess > 0.0 {
            Duration::from_secs_f64(excess / m.per_second)
        } else {
            Duration::ZERO
        }
    }

    /// The portal accepted a request sent at `sent` (anything but a 503 `QUERY_LIMIT_EXCEEDED`).
    pub fn accepted(&self, sent: Instant) {
        let mut s = self.state.lock().expect("pacer lock");
        if s.model.is_none() {
            s.accepted_unpaced = s.accepted_unpaced.saturating_add(1);
        } else if sent >= s.window {
            s.accepted_since = s.accepted_since.saturating_add(1);
        }
    }

    /// The portal refused a request sent at `sent` with 503 `QUERY_LIMIT_EXCEEDED`: its bucket
    /// is full. Later reservations wait, and the model learns (see the type's doc).
    pub fn refused(&self, sent: Instant) -> Learned {
        let mut s = self.state.lock().expect("pacer lock");
        let now = Instant::now();
        let learned = match s.model {
            None => {
                let per_second = RateProfile::ENTERPRISE.per_second;
                let burst = f64::from(s.accepted_unpaced).min(RateProfile::ENTERPRISE.burst);
                let m = Model {
                    capacity: (burst - HEADROOM).max(1.0),
                    per_second,
                };
                s.model = Some(m);
                s.level = m.capacity;
                s.at = now;
                s.since = now;
                s.window = now;
                s.accepted_since = 0;
                return Learned::Started { per_second };
            }
            Some(m) if sent >= s.since => {
                s.drain(m);
                // The portal said no at this level (our reservations included): that is its
                // burst.
                let capacity = if s.level + 1.0 < m.capacity {
                    s.level.max(1.0)
                } else {
                    m.capacity
                };
                // Measure over at least `OBSERVE_FOR`: while we send faster than the portal
                // drains, what it accepts per second is its drain rate.
                let elapsed = (now - s.window).as_secs_f64();
                let mut per_second = m.per_second;
                s.since = now;
                if elapsed >= OBSERVE_FOR.as_secs_f64() {
                    let observed = if s.accepted_since >= 2 {
                        f64::from(s.accepted_since) / elapsed * OBSERVED_SHARE
                    } else {
                        m.per_second / 2.0
                    };
                    per_second = observed.min(m.per_second).max(MIN_RATE.min(m.per_second));
                    s.window = now;
                    s.accepted_since = 0;
                }
                s.model = Some(Model {
                    capacity,
                    per_second,
                });
                if per_second < m.per_second {
                    Learned::Slowed {
                        from: m.per_second,
                        to: per_second,
                    }
                } else {
                    Learned::Nothing
                }
            }
            Some(m) => {
                s.drain(m);
                Learned::Nothing
            }
        };
        let m = s.model.expect("a model exists by now");
        s.level = s.level.max(m.capacity);
        learned
    }

    /// The drain rate the pacer uses now (`None`: not pacing).
    pub fn per_second(&self) -> Option<f64> {
        self.state
            .lock()
            .expect("pacer lock")
            .model
            .map(|m| m.per_second)
    }
}

impl PacerState {
    fn drain(&mut self, m: Model) {
        let now = Instant::now();
        let drained = (now - self.at).as_secs_f64() * m.per_second;
        self.level = (self.level - drained).max(0.0);
        self.at = now;
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
        let b = Pacer::new(Some(RateProfile::CLOUD));
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
        let b = Pacer::new(Some(RateProfile::ENTERPRISE));
        for _ in 0..100 {
            b.reserve();
        }
        // Refused at level 100 of a modelled 248: the burst is 100; too soon to measure a rate.
        assert_eq!(b.refused(Instant::now()), Learned::Nothing);
        assert_eq!(b.reserve(), Duration::from_millis(200));
        tokio::time::advance(Duration::from_secs(1)).await;
        // 101 drained by 5 in 1 s: 96, so four fit.
        for _ in 0..4 {
            assert_eq!(b.reserve(), Duration::ZERO);
        }
        assert_eq!(b.reserve(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_profile_the_first_503_starts_pacing() {
        let b = Pacer::new(None);
        let sent = Instant::now();
        for _ in 0..7 {
            assert_eq!(b.reserve(), Duration::ZERO);
            b.accepted(sent);
        }
        assert_eq!(b.per_second(), None);
        assert_eq!(b.refused(sent), Learned::Started { per_second: 5.0 });
        // Seven went through: a burst of five (less headroom), full now.
        assert_eq!(b.reserve(), Duration::from_millis(200));
        assert_eq!(b.reserve(), Duration::from_millis(400));
    }

    /// Against a portal draining 2/s while the model says 5/s, successes per second while full
    /// teach the real rate; refusals of requests sent before the last lesson teach nothing.
    #[tokio::test(start_paused = true)]
    async fn repeated_503s_slow_to_the_observed_rate() {
        let b = Pacer::new(Some(RateProfile::ENTERPRISE));
        let early = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        // Too soon to measure anything: the model stays.
        assert_eq!(b.refused(Instant::now()), Learned::Nothing);
        for _ in 0..8 {
            tokio::time::advance(Duration::from_millis(500)).await;
            b.accepted(Instant::now());
        }
        // Eight accepted in 4.01 s while full: 2/s, of which 90 %.
        let learnt = 8.0 / 4.01 * 0.9;
        assert_eq!(
            b.refused(Instant::now()),
            Learned::Slowed {
                from: 5.0,
                to: learnt
            }
        );
        // In flight before that lesson: no news.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.refused(early), Learned::Nothing);
        assert_eq!(b.per_second(), Some(learnt));
        // Almost nothing gets through: halve, never below the floor.
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(1)).await;
            b.refused(Instant::now());
        }
        assert_eq!(b.per_second(), Some(MIN_RATE));
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
