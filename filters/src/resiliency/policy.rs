//! Retry policies: back-off and which failures are worth another try.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    Constant(Duration),
    /// Dapr's exponential back-off: starts at 500 ms, ×1.5 per attempt,
    /// ±50% jitter, capped at `max`.
    Exponential {
        max: Duration,
    },
}

impl Backoff {
    /// The wait before retry number `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        match self {
            Backoff::Constant(d) => *d,
            Backoff::Exponential { max } => {
                let base = 0.5 * 1.5f64.powi(n.min(60) as i32);
                // Jitter from the system's randomness (uuid v4), ±50%.
                let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
                let secs = base * (0.5 + r);
                Duration::from_secs_f64(secs.min(max.as_secs_f64()))
            }
        }
    }
}

/// `"429,500-599"` → inclusive ranges; empty means "every failure".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Codes(Vec<(u32, u32)>);

impl Codes {
    pub fn parse(s: &str, lo: u32, hi: u32) -> Result<Codes, String> {
        spar_config::parse_codes(s, lo, hi).map(Codes)
    }

    pub fn matches(&self, code: u32) -> bool {
        self.0.is_empty() || self.0.iter().any(|(a, b)| (*a..=*b).contains(&code))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub backoff: Backoff,
    /// `None` retries forever (`maxRetries: -1`, Dapr's default).
    pub max_retries: Option<u32>,
    pub http_codes: Codes,
    pub grpc_codes: Codes,
}

impl Retry {
    pub fn from_spec(r: &spar_config::RetrySpec) -> Result<Retry, String> {
        let dur = |v: &Option<String>, d: Duration| -> Result<Duration, String> {
            v.as_deref()
                .map(spar_config::parse_duration)
                .transpose()
                .map(|x| x.unwrap_or(d))
        };
        let backoff = match r.policy.as_str() {
            "exponential" => Backoff::Exponential {
                max: dur(&r.max_interval, Duration::from_secs(60))?,
            },
            _ => Backoff::Constant(dur(&r.duration, Duration::from_secs(5))?),
        };
        let m = r.matching.clone().unwrap_or_default();
        Ok(Retry {
            backoff,
            max_retries: match r.max_retries {
                None | Some(-1) => None,
                Some(n) => Some(n.max(0) as u32),
            },
            http_codes: Codes::parse(&m.http_status_codes, 100, 599)?,
            grpc_codes: Codes::parse(&m.grpc_status_codes, 0, 16)?,
        })
    }

    pub fn allows(&self, attempt: u32) -> bool {
        self.max_retries.is_none_or(|m| attempt < m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_and_codes() {
        assert_eq!(
            Backoff::Constant(Duration::from_millis(7)).delay(9),
            Duration::from_millis(7)
        );
        let e = Backoff::Exponential {
            max: Duration::from_secs(2),
        };
        let d0 = e.delay(0);
        assert!(d0 >= Duration::from_millis(250) && d0 <= Duration::from_millis(750));
        assert!(e.delay(30) <= Duration::from_secs(2));
        let c = Codes::parse("429, 500-503", 100, 599).unwrap();
        assert!(c.matches(429) && c.matches(502) && !c.matches(504) && !c.matches(404));
        assert!(Codes::default().matches(404));
        assert!(Codes::parse("x", 100, 599).is_err());
    }
}
