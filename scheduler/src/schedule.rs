//! Job timing as daprd reads it: `schedule` (6-field cron with seconds,
//! `@every <Go duration>`, `@daily`, `@hourly` …), `dueTime` and `ttl`
//! (RFC 3339 or a Go duration from creation), `repeats`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use spar_config::schedule::{CronFields, Schedule as Spec};

use crate::error::SchedError;
use crate::model::{FailurePolicy, JobRecord, JobSpec, DEFAULT_POLICY};

/// A parsed `schedule`.
pub enum Schedule {
    Cron(Box<CronFields>),
    Every(Duration),
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, SchedError> {
        let s = s.trim();
        let bad = |why: &str| SchedError::BadJob(format!("invalid schedule {s:?}: {why}"));
        // Six fields, seconds first, as daprd's scheduler reads them.
        match Spec::parse(s, false).map_err(|e| bad(&e))? {
            Spec::Every(d) => Ok(Schedule::Every(d)),
            Spec::Cron(f) => Ok(Schedule::Cron(Box::new(f))),
        }
    }

    /// The first tick strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::Every(d) => after_ms.checked_add(d.as_millis().try_into().ok()?),
            // Cron ticks fall on whole seconds.
            Schedule::Cron(f) => f.next_after(after_ms.div_euclid(1000))?.checked_mul(1000),
        }
    }

    /// The tick after `due_ms`, skipping ticks that passed while nobody
    /// could fire them (no burst after downtime).
    fn next_tick(&self, due_ms: i64, now_ms: i64) -> Option<i64> {
        let n = self.next_after(due_ms)?;
        if n > now_ms {
            return Some(n);
        }
        match self {
            // Keep the @every phase.
            Schedule::Every(d) => {
                let p = i64::try_from(d.as_millis()).ok()?.max(1);
                let periods = now_ms.checked_sub(due_ms)? / p + 1;
                due_ms.checked_add(periods.checked_mul(p)?)
            }
            Schedule::Cron(_) => self.next_after(now_ms),
        }
    }
}

/// A Go duration (`1h30m`, `500ms`, `1.5s`), as every Dapr duration is read.
pub use spar_config::parse_duration as go_duration;

/// An ISO 8601 duration without years or months (their length depends on
/// the date): `P1W`, `P2DT3H`, `PT1M30.5S`.
pub fn iso_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid ISO 8601 duration {s:?}");
    let body = s.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(bad()),
        None => (body, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(bad());
    }
    let mut secs = 0f64;
    let mut add = |part: &str, units: &[(char, f64)]| -> Result<(), String> {
        let mut rest = part;
        let mut allowed = units;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let n: f64 = rest[..end].parse().map_err(|_| bad())?;
            let unit = rest[end..].chars().next().ok_or_else(bad)?;
            let at = allowed
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(bad)?;
            secs += n * allowed[at].1;
            allowed = &allowed[at + 1..];
            rest = &rest[end + unit.len_utf8()..];
        }
        Ok(())
    };
    add(date, &[('W', 604_800.0), ('D', 86_400.0)])?;
    if let Some(t) = time {
        add(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// A point in time: RFC 3339, or a Go or ISO 8601 duration after `base_ms`.
pub fn point_in_time(s: &str, base_ms: i64, field: &str) -> Result<i64, SchedError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if s.starts_with('P') {
        return iso_duration(s)
            .map(|d| base_ms.saturating_add(d.as_millis().try_into().unwrap_or(i64::MAX)))
            .map_err(|e| SchedError::BadJob(format!("invalid {field} {s:?}: {e}")));
    }
    match go_duration(s) {
        Ok(d) => Ok(base_ms.saturating_add(d.as_millis().try_into().unwrap_or(i64::MAX))),
        Err(e) => Err(SchedError::BadJob(format!(
            "invalid {field} {s:?}: neither RFC 3339 nor a duration ({e})"
        ))),
    }
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Checks a job and computes its first tick and expiry.
pub fn first_tick(spec: &JobSpec, created_ms: i64) -> Result<(i64, Option<i64>), SchedError> {
    if spec.schedule.is_none() && spec.due_time.is_none() {
        return Err(SchedError::BadJob(
            "a job needs a schedule or a dueTime".into(),
        ));
    }
    let schedule = spec.schedule.as_deref().map(Schedule::parse).transpose()?;
    let expires = spec
        .ttl
        .as_deref()
        .map(|t| point_in_time(t, created_ms, "ttl"))
        .transpose()?;
    let next = match (&spec.due_time, &schedule) {
        (Some(d), _) => point_in_time(d, created_ms, "dueTime")?,
        (None, Some(s)) => s
            .next_after(created_ms)
            .ok_or_else(|| SchedError::BadJob("the schedule never fires".into()))?,
        (None, None) => unreachable!("checked above"),
    };
    if let Some(e) = expires {
        if e < next {
            return Err(SchedError::BadJob(
                "the ttl ends before the job's first tick".into(),
            ));
        }
    }
    if let Some(FailurePolicy::Constant { interval_ms: 0, .. }) = spec.failure_policy {
        return Err(SchedError::BadJob(
            "a constant failure policy needs a positive interval".into(),
        ));
    }
    Ok((next, expires))
}

/// What recording a tick does to a job: the record to keep, or `None` when
/// the job is finished (deleted, as daprd's scheduler does).
pub fn after_tick(rec: &JobRecord, due_ms: i64, now_ms: i64, ok: bool) -> Option<JobRecord> {
    let mut r = rec.clone();
    if !ok {
        let policy = rec.spec.failure_policy.as_ref().unwrap_or(&DEFAULT_POLICY);
        if let FailurePolicy::Constant {
            interval_ms,
            max_retries,
        } = policy
        {
            if max_retries.is_none_or(|m| rec.attempt < m) {
                r.attempt += 1;
                r.next_ms = now_ms.saturating_add(i64::try_from(*interval_ms).unwrap_or(i64::MAX));
                return within_ttl(r);
            }
        }
    }
    // The tick is consumed: delivered, dropped, or out of retries.
    r.attempt = 0;
    r.fired = r.fired.saturating_add(1);
    if matches!(r.spec.repeats, Some(n) if n > 0 && r.fired >= n) {
        return None;
    }
    let schedule = Schedule::parse(r.spec.schedule.as_deref()?).ok()?;
    // A retried tick counts from its own due time, not the retry's.
    let base = if rec.attempt > 0 { now_ms } else { due_ms };
    r.next_ms = schedule.next_tick(base, now_ms)?;
    within_ttl(r)
}

fn within_ttl(r: JobRecord) -> Option<JobRecord> {
    match r.expires_ms {
        Some(e) if r.next_ms > e => None,
        _ => Some(r),
    }
}

/// Job names end up in URLs (`/job/{name}`) and keys: no path tricks.
pub fn check_name(name: &str) -> Result<(), SchedError> {
    let bad = |why: &str| SchedError::BadJob(format!("invalid job name {name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > 512 {
        return Err(bad("longer than 512 bytes"));
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") || name.contains("||") {
        return Err(bad("must not contain '/', '\\', '..' or '||'"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobKey;

    fn rec(spec: JobSpec) -> JobRecord {
        let (next, exp) = first_tick(&spec, 1_000_000).unwrap();
        JobRecord {
            key: JobKey {
                namespace: "default".into(),
                app_id: "a".into(),
                name: "j".into(),
            },
            spec,
            created_ms: 1_000_000,
            next_ms: next,
            expires_ms: exp,
            fired: 0,
            attempt: 0,
        }
    }

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration("PT1H").unwrap(), Duration::from_secs(3600));
        assert_eq!(iso_duration("P1DT1M").unwrap(), Duration::from_secs(86_460));
        assert_eq!(iso_duration("P1W").unwrap(), Duration::from_secs(604_800));
        assert_eq!(iso_duration("PT0.5S").unwrap(), Duration::from_millis(500));
        for bad in [
            "P", "PT", "P1Y", "P1M", "PT1D", "PT1S1M", "1H", "P1", "PTxS",
        ] {
            assert!(iso_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(point_in_time("PT2S", 1000, "dueTime").unwrap(), 3000);
    }

    #[test]
    fn schedules() {
        assert!(Schedule::parse("@every 1s").is_ok());
        assert!(Schedule::parse("@daily").is_ok());
        assert!(Schedule::parse("*/2 * * * * *").is_ok());
        assert!(Schedule::parse("0 30 * * * 0").is_ok());
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("not a cron").is_err());
        assert!(Schedule::parse("@every 0s").is_err());
        assert!(Schedule::parse("@often").is_err());
        assert!(Schedule::parse("99 * * * * *").is_err());
        // Periods too long for the clock end the job instead of overflowing.
        let huge = Schedule::parse("@every 2000000000h").unwrap();
        assert_eq!(huge.next_after(i64::MAX - 5), None);
        assert_eq!(huge.next_tick(0, i64::MAX - 5), None);
        let s = Schedule::parse("*/2 * * * * *").unwrap();
        assert_eq!(s.next_after(1_000_000), Some(1_002_000));
    }

    #[test]
    fn every_fires_and_repeats_end() {
        let r = rec(JobSpec {
            schedule: Some("@every 1s".into()),
            repeats: Some(2),
            ..Default::default()
        });
        assert_eq!(r.next_ms, 1_001_000);
        let r2 = after_tick(&r, r.next_ms, r.next_ms + 5, true).unwrap();
        assert_eq!(r2.next_ms, 1_002_000);
        assert!(after_tick(&r2, r2.next_ms, r2.next_ms, true).is_none());
    }

    #[test]
    fn one_shot_and_missed_ticks() {
        let r = rec(JobSpec {
            due_time: Some("2s".into()),
            ..Default::default()
        });
        assert_eq!(r.next_ms, 1_002_000);
        assert!(after_tick(&r, r.next_ms, r.next_ms, true).is_none());
        let e = rec(JobSpec {
            schedule: Some("@every 1s".into()),
            ..Default::default()
        });
        // Ten seconds of downtime: the next tick is in the future, once.
        let n = after_tick(&e, e.next_ms, e.next_ms + 10_500, true).unwrap();
        assert_eq!(n.next_ms, e.next_ms + 11_000);
    }

    #[test]
    fn retries_then_give_up() {
        let r = rec(JobSpec {
            due_time: Some("1s".into()),
            failure_policy: Some(FailurePolicy::Constant {
                interval_ms: 100,
                max_retries: Some(2),
            }),
            ..Default::default()
        });
        let a = after_tick(&r, r.next_ms, r.next_ms, false).unwrap();
        assert_eq!((a.attempt, a.next_ms), (1, r.next_ms + 100));
        let b = after_tick(&a, a.next_ms, a.next_ms, false).unwrap();
        assert_eq!(b.attempt, 2);
        assert!(after_tick(&b, b.next_ms, b.next_ms, false).is_none());
        let d = rec(JobSpec {
            due_time: Some("1s".into()),
            failure_policy: Some(FailurePolicy::Drop),
            ..Default::default()
        });
        assert!(after_tick(&d, d.next_ms, d.next_ms, false).is_none());
    }

    #[test]
    fn bad_input() {
        assert!(first_tick(&JobSpec::default(), 0).is_err());
        assert!(first_tick(
            &JobSpec {
                due_time: Some("tomorrow".into()),
                ..Default::default()
            },
            0
        )
        .is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("..").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("job-1.x").is_ok());
        let t = point_in_time("2030-01-01T00:00:00Z", 0, "dueTime").unwrap();
        assert_eq!(t, 1_893_456_000_000);
    }
}
