//! Go's duration syntax, which Dapr's YAML uses: `500ms`, `5s`, `1m30s`, `2.5h`.

use std::time::Duration;

/// A duration in component metadata, as Dapr's components read it: a Go
/// duration, or a whole number of seconds (`cleanupInterval: "3600"`).
pub fn parse_metadata_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).or_else(|e| {
        s.trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| e)
    })
}

/// Parses a Go duration. A bare number is rejected (ambiguous), except `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    let mut total = 0f64;
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?} (e.g. 5s, 500ms, 1m)"))?;
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid number in duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > u64::MAX as f64 / 2.0 {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0.0),
            ("5s", 5.0),
            ("500ms", 0.5),
            ("1m30s", 90.0),
            ("2.5s", 2.5),
            ("1h", 3600.0),
            ("1h2m3s", 3723.0),
            ("100us", 0.0001),
        ];
        for (s, want) in ok {
            let got = parse_duration(s).unwrap().as_secs_f64();
            assert!((got - want).abs() < 1e-9, "{s}: {got}");
        }
        for bad in ["", "5", "abc", "5x", "-1s", "s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }
}
