//! Dapr's schedule syntax, read once for the cron binding and the
//! scheduler's jobs (robfig/cron with descriptors): `sec min hour dom month
//! dow`, or the five fields without seconds where the reader allows them
//! (the cron binding; the scheduler requires six, as daprd's), `@every
//! <Go duration>`, `@yearly`/`@annually`, `@monthly`, `@weekly`,
//! `@daily`/`@midnight`, `@hourly`. Times are UTC (a sidecar container's
//! clock is); no time zone prefix other than `CRON_TZ=UTC` / `TZ=UTC`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Fires every period (as written; a reader rounds it as it needs).
    Every(Duration),
    Cron(CronFields),
}

/// One bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronFields {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// `*` / `?` in day-of-month or day-of-week: both must match (else
    /// either may), as in Vixie cron and robfig.
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// `five_fields`: a cron spec may leave out the seconds (then 0).
    pub fn parse(spec: &str, five_fields: bool) -> Result<Schedule, String> {
        let mut spec = spec.trim();
        for tz in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = spec.strip_prefix(tz) {
                let (zone, rest) = rest
                    .split_once(' ')
                    .ok_or("a time zone needs a schedule after it")?;
                if !matches!(zone, "UTC" | "Etc/UTC") {
                    return Err(format!("time zone {zone:?} is not supported (UTC only)"));
                }
                spec = rest.trim();
            }
        }
        if let Some(d) = spec.strip_prefix("@every ") {
            let d = crate::parse_duration(d.trim()).map_err(|e| format!("@every: {e}"))?;
            if d.is_zero() {
                return Err("@every needs a positive period".into());
            }
            return Ok(Schedule::Every(d));
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            s if s.starts_with('@') => return Err(format!("unknown descriptor {s:?}")),
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        let f: Vec<&str> = match f.len() {
            5 if five_fields => std::iter::once("0").chain(f).collect(),
            6 => f,
            n if five_fields => return Err(format!("expected 5 or 6 fields, found {n}: {spec:?}")),
            n => {
                return Err(format!(
                    "expected 6 fields (seconds first), found {n}: {spec:?}"
                ))
            }
        };
        let (dom, dom_star) = field(f[3], 1, 31, &[])?;
        let (dow, dow_star) = field(f[5], 0, 7, &DAYS)?;
        // 7 is Sunday too.
        let dow = (dow | (dow >> 7)) & 0x7f;
        Ok(Schedule::Cron(CronFields {
            second: field(f[0], 0, 59, &[])?.0,
            minute: field(f[1], 0, 59, &[])?.0,
            hour: field(f[2], 0, 23, &[])?.0,
            dom,
            month: field(f[4], 1, 12, &MONTHS)?.0,
            dow,
            dom_star,
            dow_star,
        }))
    }
}

/// One field: `*`, `?`, `a`, `a-b`, each with an optional `/step`, in a
/// comma-separated list. Names (`jan`, `mon`) count from `lo`.
fn field(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as u32 + if names.len() == 12 { 1 } else { 0 });
        }
        let n: u32 = v
            .parse()
            .map_err(|_| format!("{v:?} is not a number in {s:?}"))?;
        if n < lo || n > hi {
            return Err(format!("{n} is out of range {lo}-{hi} in {s:?}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("bad step in {part:?}"))?;
                (r, Some(st))
            }
            None => (part, None),
        };
        let (a, b) = match range {
            "*" | "?" => {
                star = star || step.is_none();
                (lo, hi)
            }
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `a/n` runs from a to the end of the range.
                None if step.is_some() => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(format!("range {range:?} runs backwards"));
        }
        let step = step.unwrap_or(1);
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a count of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

impl CronFields {
    fn day_matches(&self, dom: u32, dow: u32) -> bool {
        let d = self.dom & (1 << dom) != 0;
        let w = self.dow & (1 << dow) != 0;
        if self.dom_star || self.dow_star {
            d && w
        } else {
            d || w
        }
    }

    /// The first matching second strictly after `after` (Unix seconds,
    /// UTC); `None` if nothing matches within five years (`0 0 0 30 2 *`).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let mut t = after + 1;
        let limit = after + 5 * 366 * 86_400;
        while t <= limit {
            let days = t.div_euclid(86_400);
            let secs = t.rem_euclid(86_400);
            let (y, mo, d) = civil_from_days(days);
            let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            if self.month & (1 << mo) == 0 {
                let (ny, nm) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
                t = days_from_civil(ny, nm, 1) * 86_400;
                continue;
            }
            // 1970-01-01 was a Thursday.
            let dow = (days + 4).rem_euclid(7) as u32;
            if !self.day_matches(d, dow) {
                t = (days + 1) * 86_400;
                continue;
            }
            if self.hour & (1 << h) == 0 {
                t = days * 86_400 + (h + 1) * 3600;
                continue;
            }
            if self.minute & (1 << mi) == 0 {
                t = days * 86_400 + h * 3600 + (mi + 1) * 60;
                continue;
            }
            if self.second & (1 << s) == 0 {
                t += 1;
                continue;
            }
            return Some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s
    }

    fn next(spec: &str, from: i64) -> i64 {
        match Schedule::parse(spec, true).unwrap() {
            Schedule::Cron(f) => f.next_after(from).unwrap(),
            Schedule::Every(_) => panic!("not a cron spec"),
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-1000, 0, 59, 365, 11_016, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(at(2026, 12, 5, 0, 0, 0), 1_796_428_800);
    }

    #[test]
    fn daprd_examples() {
        let t = at(2026, 12, 5, 10, 0, 10); // a Saturday
                                            // Every 30 seconds (at second 30).
        assert_eq!(next("30 * * * * *", t), at(2026, 12, 5, 10, 0, 30));
        // Five fields: minutes first, second 0.
        assert_eq!(next("15 * * * *", t), at(2026, 12, 5, 10, 15, 0));
        assert_eq!(next("0 15 * * * *", t), at(2026, 12, 5, 10, 15, 0));
        // Every half hour between 3-6 am and 8-11 pm.
        assert_eq!(next("0 30 3-6,20-23 * * *", t), at(2026, 12, 5, 20, 30, 0));
        assert_eq!(next("@hourly", t), at(2026, 12, 5, 11, 0, 0));
        assert_eq!(next("@daily", t), at(2026, 12, 6, 0, 0, 0));
        assert_eq!(next("@weekly", t), at(2026, 12, 6, 0, 0, 0)); // Sunday
        assert_eq!(next("@monthly", t), at(2027, 1, 1, 0, 0, 0));
        assert_eq!(next("@yearly", t), at(2027, 1, 1, 0, 0, 0));
        assert_eq!(next("*/15 * * * * *", t), at(2026, 12, 5, 10, 0, 15));
        assert_eq!(next("0 0 9 * * MON-FRI", t), at(2026, 12, 7, 9, 0, 0));
        assert_eq!(next("0 0 9 * * 7", t), at(2026, 12, 6, 9, 0, 0));
        assert_eq!(next("0 0 0 29 FEB *", t), at(2028, 2, 29, 0, 0, 0));
        assert_eq!(
            next("CRON_TZ=UTC 0 30 4 * * *", t),
            at(2026, 12, 6, 4, 30, 0)
        );
        // Day of month and day of week both restricted: either matches.
        assert_eq!(next("0 0 0 10 * SUN", t), at(2026, 12, 6, 0, 0, 0));
    }

    #[test]
    fn every_and_errors() {
        assert_eq!(
            Schedule::parse("@every 15s", true).unwrap(),
            Schedule::Every(Duration::from_secs(15))
        );
        assert_eq!(
            Schedule::parse("@every 1m30s", true).unwrap(),
            Schedule::Every(Duration::from_secs(90))
        );
        for bad in [
            "",
            "* * * *",
            "61 * * * * *",
            "@sometimes",
            "@every x",
            "5-1 * * * *",
            "*/0 * * * *",
            "TZ=Europe/Paris * * * * *",
        ] {
            assert!(
                Schedule::parse(bad, true).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(Schedule::parse("15 * * * *", false).is_err());
        assert!(Schedule::parse("@every 0s", true).is_err());
        match Schedule::parse("0 0 0 30 2 *", false).unwrap() {
            Schedule::Cron(f) => assert_eq!(f.next_after(0), None),
            _ => unreachable!(),
        }
    }
}
