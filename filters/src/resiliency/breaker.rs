//! A circuit breaker with the semantics Dapr's (sony/gobreaker) has:
//! closed — calls pass and are counted (counts cleared every `interval`
//! when it is set); when `trip` holds it opens — calls fail fast for
//! `timeout`; then half-open — up to `max_requests` calls pass, and that
//! many successes close it while any failure opens it again. State lives
//! behind a plain mutex touched only before and after a call, never across
//! an `.await`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::trip::{Counts, Trip};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    HalfOpen,
    Open,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half-open",
            State::Open => "open",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BreakerSpec {
    pub max_requests: u64,
    pub interval: Duration,
    pub timeout: Duration,
    pub trip: Trip,
}

#[derive(Debug)]
struct Inner {
    state: State,
    generation: u64,
    counts: Counts,
    /// When the closed interval or the open timeout ends.
    expiry: Option<Instant>,
}

#[derive(Debug)]
pub struct Breaker {
    spec: BreakerSpec,
    inner: Mutex<Inner>,
}

/// A call that was let through; report its outcome with [`Breaker::after`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl Breaker {
    pub fn new(spec: BreakerSpec) -> Breaker {
        let expiry = (!spec.interval.is_zero()).then(|| Instant::now() + spec.interval);
        Breaker {
            spec,
            inner: Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                counts: Counts::default(),
                expiry,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn roll(&self, i: &mut Inner, now: Instant) {
        match i.state {
            State::Closed => {
                if i.expiry.is_some_and(|e| e <= now) {
                    self.to(i, State::Closed, now);
                }
            }
            State::Open => {
                if i.expiry.is_some_and(|e| e <= now) {
                    self.to(i, State::HalfOpen, now);
                }
            }
            State::HalfOpen => {}
        }
    }

    fn to(&self, i: &mut Inner, s: State, now: Instant) {
        i.state = s;
        i.generation += 1;
        i.counts = Counts::default();
        i.expiry = match s {
            State::Closed => (!self.spec.interval.is_zero()).then(|| now + self.spec.interval),
            State::Open => Some(now + self.spec.timeout),
            State::HalfOpen => None,
        };
    }

    pub fn state(&self) -> State {
        let mut i = self.lock();
        self.roll(&mut i, Instant::now());
        i.state
    }

    /// Lets a call through, or refuses it while open (or half-open and
    /// already at `max_requests`).
    pub fn before(&self) -> Result<Ticket, State> {
        let mut i = self.lock();
        self.roll(&mut i, Instant::now());
        match i.state {
            State::Open => return Err(State::Open),
            State::HalfOpen if i.counts.requests >= self.spec.max_requests => {
                return Err(State::HalfOpen)
            }
            _ => {}
        }
        i.counts.requests += 1;
        Ok(Ticket(i.generation))
    }

    /// Records a call's outcome; returns the new state when it changed.
    pub fn after(&self, t: Ticket, success: bool) -> Option<State> {
        let now = Instant::now();
        let mut i = self.lock();
        self.roll(&mut i, now);
        if t.0 != i.generation {
            return None; // from before the last state change
        }
        let half_open = i.state == State::HalfOpen;
        let c = &mut i.counts;
        if success {
            c.total_successes += 1;
            c.consecutive_successes += 1;
            c.consecutive_failures = 0;
            if half_open && c.consecutive_successes >= self.spec.max_requests {
                self.to(&mut i, State::Closed, now);
                return Some(State::Closed);
            }
        } else {
            c.total_failures += 1;
            c.consecutive_failures += 1;
            c.consecutive_successes = 0;
            let trip = half_open || self.spec.trip.holds(c);
            if trip {
                self.to(&mut i, State::Open, now);
                return Some(State::Open);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(timeout_ms: u64) -> Breaker {
        Breaker::new(BreakerSpec {
            max_requests: 2,
            interval: Duration::ZERO,
            timeout: Duration::from_millis(timeout_ms),
            trip: Trip::parse("consecutiveFailures > 2").unwrap(),
        })
    }

    #[test]
    fn opens_half_opens_and_closes() {
        let b = breaker(50);
        for _ in 0..2 {
            let t = b.before().unwrap();
            assert_eq!(b.after(t, false), None);
        }
        let t = b.before().unwrap();
        assert_eq!(b.after(t, false), Some(State::Open));
        assert_eq!(b.before().unwrap_err(), State::Open);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.state(), State::HalfOpen);
        // max_requests (2) pass, a third is refused until they report.
        let (t1, t2) = (b.before().unwrap(), b.before().unwrap());
        assert_eq!(b.before().unwrap_err(), State::HalfOpen);
        assert_eq!(b.after(t1, true), None);
        assert_eq!(b.after(t2, true), Some(State::Closed));
        assert!(b.before().is_ok());
    }

    #[test]
    fn a_half_open_failure_reopens_and_stale_tickets_are_ignored() {
        let b = breaker(30);
        let stale = b.before().unwrap();
        for _ in 0..3 {
            let t = b.before().unwrap();
            b.after(t, false);
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.after(stale, true), None);
        std::thread::sleep(Duration::from_millis(40));
        let t = b.before().unwrap();
        assert_eq!(b.after(t, false), Some(State::Open));
        assert_eq!(b.state(), State::Open);
    }
}
