//! The rate limiter (reference §5, as RRL implements it) and the fault dice. Pure bookkeeping
//! driven by the times it is given (monotonic for windows, unix for `X-RateLimit-Reset` in
//! epoch form); nothing here waits, does I/O or builds responses.
//!
//! Limits are kept per partition — the user, or the client IP for callers without valid
//! credentials — and chained in this order:
//!
//! 1. a **sliding window** of `per_minute` requests over 60 s. An admitted request is recorded;
//!    a refused one is not. A refusal carries `X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`,
//!    `Retry-After` = whole seconds (truncated, as RRL's `(int)TotalSeconds`) until the oldest
//!    recorded request leaves the window, and `X-RateLimit-Reset` as configured;
//! 2. **concurrency**: `concurrent_get` GETs and `concurrent_write` other requests in flight,
//!    no queue. RRL's concurrency lease carries no metadata, so its 429 has no headers unless
//!    `concurrency_headers` is set. The slot is held until the answer is ready (latency
//!    included) and freed when the [`Permit`] is released;
//! 3. a **fixed window** of `post_put_per_day` POST and PUT requests per day, opened by the
//!    first one; its refusal carries the same headers, Reset being the window's end.
//!
//! A request refused by a later limit keeps what an earlier one recorded (the chain acquires
//! in order), except a concurrency slot, which is given back.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use super::state::{Faults, RateLimit, ResetHeader};

/// Whose budget a request spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Partition {
    User(String),
    Ip(IpAddr),
}

/// The sliding window's length.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The daily window's length.
pub const DAY: Duration = Duration::from_secs(86_400);

/// Response headers, in the order they are sent.
pub type Headers = Vec<(&'static str, String)>;

/// An admitted request: release it (once) when its answer is ready.
#[derive(Debug)]
pub struct Permit {
    pub partition: Partition,
    pub get: bool,
    /// Headers to add to the answer (`headers_on_success`).
    pub headers: Headers,
}

#[derive(Debug, Default)]
pub struct Limiter {
    windows: HashMap<Partition, VecDeque<Duration>>,
    in_flight: HashMap<(Partition, bool), u32>,
    days: HashMap<Partition, (Duration, u32)>,
}

impl Limiter {
    /// Admit one request of `partition` (a GET or not; POST or PUT counts toward the daily
    /// limit) at monotonic time `now` and unix time `unix`, or refuse it with the 429's headers.
    pub fn admit(
        &mut self,
        cfg: &RateLimit,
        partition: &Partition,
        get: bool,
        post_or_put: bool,
        now: Duration,
        unix: f64,
    ) -> Result<Permit, Headers> {
        let reset = |until: Duration| -> Option<String> {
            let secs = until.as_secs_f64().ceil();
            match cfg.reset {
                ResetHeader::Seconds => Some(format!("{}", secs as u64)),
                ResetHeader::Epoch => Some(format!("{}", (unix + secs).ceil() as i64)),
                ResetHeader::None => None,
            }
        };
        let refusal = |limit: u32, until: Duration| -> Headers {
            let mut h = vec![
                ("Retry-After", until.as_secs().to_string()),
                ("X-RateLimit-Limit", limit.to_string()),
                ("X-RateLimit-Remaining", "0".to_owned()),
            ];
            if let Some(r) = reset(until) {
                h.push(("X-RateLimit-Reset", r));
            }
            h
        };
        // 1. Sliding window: forget requests at least a window old.
        let window = self.windows.entry(partition.clone()).or_default();
        while window.front().is_some_and(|t| *t + WINDOW <= now) {
            window.pop_front();
        }
        let used = window.len() as u32;
        let first_free = window.front().map_or(now + WINDOW, |t| *t + WINDOW);
        if used >= cfg.per_minute {
            return Err(refusal(cfg.per_minute, first_free.saturating_sub(now)));
        }
        window.push_back(now);
        let mut success = Headers::new();
        if cfg.headers_on_success {
            let first_free = window.front().map_or(now + WINDOW, |t| *t + WINDOW);
            success.push(("X-RateLimit-Limit", cfg.per_minute.to_string()));
            success.push((
                "X-RateLimit-Remaining",
                (cfg.per_minute - used - 1).to_string(),
            ));
            if let Some(r) = reset(first_free.saturating_sub(now)) {
                success.push(("X-RateLimit-Reset", r));
            }
        }
        // 2. Concurrency.
        let limit = if get {
            cfg.concurrent_get
        } else {
            cfg.concurrent_write
        };
        let slots = self.in_flight.entry((partition.clone(), get)).or_default();
        if *slots >= limit {
            return Err(if cfg.concurrency_headers {
                vec![
                    ("Retry-After", "1".to_owned()),
                    ("X-RateLimit-Limit", limit.to_string()),
                    ("X-RateLimit-Remaining", "0".to_owned()),
                ]
            } else {
                Headers::new()
            });
        }
        *slots += 1;
        // 3. The daily fixed window.
        if post_or_put {
            let day = self.days.entry(partition.clone()).or_insert((now, 0));
            if day.0 + DAY <= now {
                *day = (now, 0);
            }
            if day.1 >= cfg.post_put_per_day {
                let until = (day.0 + DAY).saturating_sub(now);
                self.release_slot(partition, get);
                return Err(refusal(cfg.post_put_per_day, until));
            }
            day.1 += 1;
        }
        Ok(Permit {
            partition: partition.clone(),
            get,
            headers: success,
        })
    }

    /// The request's answer is ready: free its concurrency slot.
    pub fn release(&mut self, permit: &Permit) {
        self.release_slot(&permit.partition, permit.get);
    }

    fn release_slot(&mut self, partition: &Partition, get: bool) {
        let key = (partition.clone(), get);
        if let Some(n) = self.in_flight.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&key);
            }
        }
    }

    /// Requests of `get` kind in flight for `partition`.
    pub fn in_flight(&self, partition: &Partition, get: bool) -> u32 {
        self.in_flight
            .get(&(partition.clone(), get))
            .copied()
            .unwrap_or(0)
    }
}

/// An injected fault (see the parent module for what each does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Refuse429,
    Refuse500,
    Lost,
    Gateway502,
    ErrorAfter,
    Truncated,
    Slow(u64),
}

/// Pick at most one fault for a request from one roll in [0, 1): the rates are bands taken in
/// the documented order.
pub fn pick_fault(faults: &Faults, roll: f64) -> Option<Fault> {
    let mut band = 0.0;
    for (i, rate) in faults.rates().iter().enumerate() {
        band += rate;
        if roll < band {
            return Some(match i {
                0 => Fault::Refuse429,
                1 => Fault::Refuse500,
                2 => Fault::Lost,
                3 => Fault::Gateway502,
                4 => Fault::ErrorAfter,
                5 => Fault::Truncated,
                _ => Fault::Slow(faults.slow_ms),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RateLimit {
        RateLimit {
            enabled: true,
            per_minute: 3,
            concurrent_get: 2,
            concurrent_write: 1,
            post_put_per_day: 2,
            ..RateLimit::default()
        }
    }

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn sliding_window_refuses_then_frees_as_requests_age() {
        let c = cfg();
        let p = Partition::User("u".into());
        let mut l = Limiter::default();
        for t in [0.0, 10.0, 20.5] {
            let permit = l.admit(&c, &p, true, false, s(t), 1000.0 + t).unwrap();
            l.release(&permit);
        }
        let h = l.admit(&c, &p, true, false, s(30.0), 1030.0).unwrap_err();
        assert_eq!(header(&h, "Retry-After"), Some("30"));
        assert_eq!(header(&h, "X-RateLimit-Limit"), Some("3"));
        assert_eq!(header(&h, "X-RateLimit-Remaining"), Some("0"));
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some("30"));
        // Truncated like RRL: 0.5 s left reads 0.
        let h = l.admit(&c, &p, true, false, s(59.5), 1059.5).unwrap_err();
        assert_eq!(header(&h, "Retry-After"), Some("0"));
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some("1"));
        // The first request leaves the window at 60 s exactly.
        l.admit(&c, &p, true, false, s(60.0), 1060.0).unwrap();
        // Other users have their own window.
        l.admit(
            &c,
            &Partition::User("v".into()),
            true,
            false,
            s(60.0),
            1060.0,
        )
        .unwrap();
    }

    #[test]
    fn reset_header_modes() {
        let p = Partition::User("u".into());
        for (mode, want) in [
            (ResetHeader::Epoch, Some("1060")),
            (ResetHeader::None, None),
        ] {
            let c = RateLimit {
                per_minute: 1,
                reset: mode,
                ..cfg()
            };
            let mut l = Limiter::default();
            let permit = l.admit(&c, &p, true, false, s(0.0), 1000.0).unwrap();
            l.release(&permit);
            let h = l.admit(&c, &p, true, false, s(0.0), 1000.0).unwrap_err();
            assert_eq!(header(&h, "X-RateLimit-Reset"), want);
            assert_eq!(header(&h, "Retry-After"), Some("60"));
        }
    }

    #[test]
    fn concurrency_is_per_kind_and_has_no_headers() {
        let c = RateLimit {
            per_minute: 100,
            ..cfg()
        };
        let p = Partition::User("u".into());
        let mut l = Limiter::default();
        let w = l.admit(&c, &p, false, false, s(0.0), 0.0).unwrap();
        assert_eq!(
            l.admit(&c, &p, false, false, s(0.0), 0.0).unwrap_err(),
            vec![]
        );
        let g1 = l.admit(&c, &p, true, false, s(0.0), 0.0).unwrap();
        let _g2 = l.admit(&c, &p, true, false, s(0.0), 0.0).unwrap();
        assert!(l.admit(&c, &p, true, false, s(0.0), 0.0).is_err());
        l.release(&w);
        l.release(&g1);
        assert_eq!(l.in_flight(&p, true), 1);
        l.admit(&c, &p, false, false, s(0.0), 0.0).unwrap();
        l.admit(&c, &p, true, false, s(0.0), 0.0).unwrap();
        let c = RateLimit {
            concurrency_headers: true,
            ..c
        };
        let h = l.admit(&c, &p, false, false, s(0.0), 0.0).unwrap_err();
        assert_eq!(header(&h, "Retry-After"), Some("1"));
    }

    #[test]
    fn daily_post_put_window() {
        let c = RateLimit {
            per_minute: 100,
            ..cfg()
        };
        let p = Partition::Ip("127.0.0.1".parse().unwrap());
        let mut l = Limiter::default();
        for t in [0.0, 100.0] {
            let permit = l.admit(&c, &p, false, true, s(t), t).unwrap();
            l.release(&permit);
        }
        // DELETE does not count; POST/PUT are refused until the day is over.
        let permit = l.admit(&c, &p, false, false, s(200.0), 200.0).unwrap();
        l.release(&permit);
        let h = l
            .admit(&c, &p, false, true, s(86_000.0), 86_000.0)
            .unwrap_err();
        assert_eq!(header(&h, "Retry-After"), Some("400"));
        assert_eq!(header(&h, "X-RateLimit-Limit"), Some("2"));
        assert_eq!(
            l.in_flight(&p, false),
            0,
            "the refused request's slot is freed"
        );
        l.admit(&c, &p, false, true, s(86_400.0), 86_400.0).unwrap();
    }

    #[test]
    fn success_headers_when_asked() {
        let c = RateLimit {
            headers_on_success: true,
            ..cfg()
        };
        let p = Partition::User("u".into());
        let mut l = Limiter::default();
        let permit = l.admit(&c, &p, true, false, s(0.0), 0.0).unwrap();
        assert_eq!(header(&permit.headers, "X-RateLimit-Remaining"), Some("2"));
        assert_eq!(header(&permit.headers, "X-RateLimit-Reset"), Some("60"));
        let plain = l.admit(&cfg(), &p, true, false, s(0.0), 0.0).unwrap();
        assert!(plain.headers.is_empty());
    }

    #[test]
    fn fault_bands() {
        let f = Faults {
            rate_429: 0.1,
            rate_lost: 0.2,
            rate_slow: 0.1,
            slow_ms: 5,
            ..Faults::default()
        };
        assert_eq!(pick_fault(&f, 0.05), Some(Fault::Refuse429));
        assert_eq!(pick_fault(&f, 0.15), Some(Fault::Lost));
        assert_eq!(pick_fault(&f, 0.35), Some(Fault::Slow(5)));
        assert_eq!(pick_fault(&f, 0.45), None);
        assert_eq!(pick_fault(&Faults::default(), 0.0), None);
    }
}
