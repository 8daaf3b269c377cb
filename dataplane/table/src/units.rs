//! Units both command lines accept, and the one time format they write.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let bad = || format!("`{s}` is not a duration like 500ms, 10s, 2m or 1h");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// A time in RFC 3339, UTC: `YYYY-MM-DDTHH:MM:SSZ`, or with milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339 {
    time: SystemTime,
    millis: bool,
}

impl Rfc3339 {
    /// To the second (as `time.now` reads).
    pub fn seconds(time: SystemTime) -> Self {
        Rfc3339 {
            time,
            millis: false,
        }
    }

    /// To the millisecond (as log lines carry it).
    pub fn millis(time: SystemTime) -> Self {
        Rfc3339 { time, millis: true }
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let s = secs % 86_400;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60
        )?;
        if self.millis {
            write!(f, ".{:03}", since.subsec_millis())?;
        }
        f.write_str("Z")
    }
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (the
/// era-based method of H. Hinnant's date algorithms).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
        let t = UNIX_EPOCH + Duration::from_millis(1_796_140_800_123);
        assert_eq!(Rfc3339::millis(t).to_string(), "2026-12-01T16:00:00.123Z");
        assert_eq!(Rfc3339::seconds(t).to_string(), "2026-12-01T16:00:00Z");
    }
}
