//! Timestamps and durations as CEL has them: `timestamp('2023-12-31T00:00:00Z')`
//! (RFC 3339), `duration('1h30m')` (Go's syntax: a sequence of decimal numbers, each
//! with a unit of `ns`, `us`/`µs`, `ms`, `s`, `m` or `h`), their text, and the
//! calendar fields the `ts.get…()` macros read in a time zone (IANA names, from the
//! time zone database built into the binary, or `UTC`).

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Parses RFC 3339 text.
pub(crate) fn parse_timestamp(text: &str) -> Option<Timestamp> {
    text.trim().parse::<Timestamp>().ok()
}

/// Parses Go's duration syntax (`300ms`, `-1.5h`, `2h45m`).
pub(crate) fn parse_duration(text: &str) -> Option<SignedDuration> {
    let text = text.trim();
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let nanos_per: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut part = whole.checked_mul(nanos_per)?;
        let mut scale = nanos_per;
        for digit in fraction.chars() {
            scale /= 10;
            part += i128::from(digit.to_digit(10)?) * scale;
        }
        total = total.checked_add(part)?;
        rest = after;
    }
    let total = if negative { -total } else { total };
    let secs = i64::try_from(total.div_euclid(1_000_000_000)).ok()?;
    let nanos = total.rem_euclid(1_000_000_000) as i32;
    Some(SignedDuration::new(secs, nanos))
}

/// A time zone by IANA name (or `UTC`); `None` when the database has no such zone.
pub(crate) fn zone(name: &str) -> Option<TimeZone> {
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Some(TimeZone::UTC);
    }
    TimeZone::get(name).ok()
}

/// A calendar field of a timestamp, as the `ts.get…()` macros count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// Day of the month, from 1.
    Date,
    /// Day of the month, from 0.
    DayOfMonth,
    /// Day of the week, from 0 (Sunday).
    DayOfWeek,
    /// Day of the year, from 0.
    DayOfYear,
    FullYear,
    Hours,
    Milliseconds,
    Minutes,
    /// Month, from 0 (January).
    Month,
    Seconds,
}

/// `field` of `at` in `zone`.
pub(crate) fn field(at: Timestamp, zone: &TimeZone, field: Field) -> i64 {
    let civil = at.to_zoned(zone.clone()).datetime();
    match field {
        Field::Date => i64::from(civil.day()),
        Field::DayOfMonth => i64::from(civil.day()) - 1,
        Field::DayOfWeek => i64::from(civil.weekday().to_sunday_zero_offset()),
        Field::DayOfYear => i64::from(civil.day_of_year()) - 1,
        Field::FullYear => i64::from(civil.year()),
        Field::Hours => i64::from(civil.hour()),
        Field::Milliseconds => i64::from(civil.millisecond()),
        Field::Minutes => i64::from(civil.minute()),
        Field::Month => i64::from(civil.month()) - 1,
        Field::Seconds => i64::from(civil.second()),
    }
}

/// `field` of a duration: whole hours, minutes or seconds in it, or its milliseconds
/// part; `None` for fields a duration does not have.
pub(crate) fn duration_field(d: SignedDuration, field: Field) -> Option<i64> {
    Some(match field {
        Field::Hours => d.as_secs() / 3600,
        Field::Minutes => d.as_secs() / 60,
        Field::Seconds => d.as_secs(),
        Field::Milliseconds => i64::from(d.subsec_millis()),
        _ => return None,
    })
}

/// A duration as CEL writes it: seconds with a fraction when there is one (`5400s`,
/// `1.5s`).
pub(crate) fn duration_text(d: SignedDuration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{}s", d.as_secs());
    }
    let sign = if d.is_negative() { "-" } else { "" };
    let fraction = format!("{:09}", nanos.unsigned_abs());
    format!(
        "{sign}{}.{}s",
        d.as_secs().unsigned_abs(),
        fraction.trim_end_matches('0')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_duration(s).map(|d| (d.as_secs(), d.subsec_nanos()));
        assert_eq!(d("1h30m"), Some((5400, 0)));
        assert_eq!(d("1.234s"), Some((1, 234_000_000)));
        assert_eq!(d("300ms"), Some((0, 300_000_000)));
        assert_eq!(d("-1.5h"), Some((-5400, 0)));
        assert_eq!(d("24h"), Some((86_400, 0)));
        assert_eq!(d("0"), Some((0, 0)));
        for bad in ["", "1", "1d", "h", "1.2.3s", "-"] {
            assert_eq!(d(bad), None, "{bad}");
        }
        assert_eq!(duration_text(parse_duration("1h30m").unwrap()), "5400s");
        assert_eq!(duration_text(parse_duration("1.5s").unwrap()), "1.5s");
    }

    #[test]
    fn calendar_fields_in_zones() {
        let t = parse_timestamp("2023-12-25T00:00:00Z").unwrap();
        let la = zone("America/Los_Angeles").unwrap();
        assert_eq!(field(t, &TimeZone::UTC, Field::Date), 25);
        assert_eq!(field(t, &la, Field::Date), 24);
        assert_eq!(field(t, &TimeZone::UTC, Field::DayOfMonth), 24);
        assert_eq!(field(t, &TimeZone::UTC, Field::Month), 11);
        let noon = parse_timestamp("2023-12-25T12:00:00Z").unwrap();
        assert_eq!(field(noon, &TimeZone::UTC, Field::DayOfWeek), 1);
        assert_eq!(field(noon, &TimeZone::UTC, Field::DayOfYear), 358);
        assert_eq!(field(noon, &TimeZone::UTC, Field::FullYear), 2023);
        let tokyo = zone("Asia/Tokyo").unwrap();
        let t = parse_timestamp("2024-01-01T10:00:00Z").unwrap();
        assert_eq!(field(t, &tokyo, Field::Date), 1);
        assert!(zone("Mars/Olympus_Mons").is_none());
        let d = parse_duration("1.234s").unwrap();
        assert_eq!(duration_field(d, Field::Milliseconds), Some(234));
        assert_eq!(
            duration_field(parse_duration("1h30m").unwrap(), Field::Minutes),
            Some(90)
        );
        assert_eq!(duration_field(d, Field::Month), None);
    }
}
