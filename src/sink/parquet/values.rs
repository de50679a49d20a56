//! Values as drivers print them (decimals, dates, times) parsed into what Parquet columns hold.
//! Each parser takes the whole text or refuses it (`None`): never a value that is only close.

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Reads `count` digits (all of them ASCII digits) as a number.
fn number(text: &[u8], count: usize) -> Option<i64> {
    let digits = text.get(..count)?;
    digits.iter().try_fold(0i64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
    })
}

/// `YYYY-MM-DD` (a year of 1 to 4 digits: FreeTDS prints year 1 as `1-01-01`) at the start of
/// `text`: days since 1970-01-01 and the rest of the text.
fn date_prefix(text: &[u8]) -> Option<(i64, &[u8])> {
    let year_digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=4).contains(&year_digits) {
        return None;
    }
    let year = number(text, year_digits)?;
    let rest = &text[year_digits..];
    if rest.first() != Some(&b'-') || rest.get(3) != Some(&b'-') {
        return None;
    }
    let month = number(&rest[1..], 2)?;
    let day = number(&rest[4..], 2)?;
    let month_days = [
        31,
        28 + i64::from(is_leap(year)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let valid = year >= 1
        && (1..=12).contains(&month)
        && usize::try_from(month - 1)
            .ok()
            .and_then(|m| month_days.get(m))
            .is_some_and(|&last| (1..=last).contains(&day));
    valid.then(|| (days_from_civil(year, month, day), &rest[6..]))
}

/// `HH:MM:SS` and an optional fraction of up to 9 digits at the start of `text`: nanoseconds
/// since midnight and the rest.
fn time_prefix(text: &[u8]) -> Option<(i64, &[u8])> {
    if text.get(2) != Some(&b':') || text.get(5) != Some(&b':') {
        return None;
    }
    let (hour, minute, second) = (
        number(text, 2)?,
        number(&text[3..], 2)?,
        number(&text[6..], 2)?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut nanos = ((hour * 60 + minute) * 60 + second) * 1_000_000_000;
    let mut rest = &text[8..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let value = number(fraction, digits)?;
        nanos += value * 10i64.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    Some((nanos, rest))
}

/// A date: days since 1970-01-01.
pub(crate) fn date(text: &[u8]) -> Option<i32> {
    match date_prefix(text)? {
        (days, []) => i32::try_from(days).ok(),
        _ => None,
    }
}

/// Nanoseconds since midnight of `HH:MM:SS[.fffffffff]`.
pub(crate) fn time_nanos(text: &[u8]) -> Option<i64> {
    match time_prefix(text)? {
        (nanos, []) => Some(nanos),
        _ => None,
    }
}

/// A date and time (`T` or a space between them) as microseconds since 1970-01-01 00:00, and
/// the text after the time. Refused when the fraction has a non-zero digit past microseconds.
fn date_time(text: &[u8]) -> Option<(i64, &[u8])> {
    let (days, rest) = date_prefix(text)?;
    let rest = match rest.split_first() {
        Some((b'T' | b' ', rest)) => rest,
        _ => return None,
    };
    let (nanos, rest) = time_prefix(rest)?;
    if nanos % 1000 != 0 {
        return None;
    }
    let micros = days
        .checked_mul(86_400_000_000)?
        .checked_add(nanos / 1000)?;
    Some((micros, rest))
}

/// A timestamp without time zone: microseconds since 1970-01-01 00:00 of the same wall clock.
pub(crate) fn timestamp_micros(text: &[u8]) -> Option<i64> {
    match date_time(text)? {
        (micros, []) => Some(micros),
        _ => None,
    }
}

/// A timestamp with a UTC offset (`+01`, `-05:30`, `+05:30:15`, `Z`, a space before it
/// allowed): microseconds since 1970-01-01 00:00 UTC.
pub(crate) fn timestamp_utc_micros(text: &[u8]) -> Option<i64> {
    let (local, rest) = date_time(text)?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let offset_seconds = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), offset @ ..] => {
            let (hours, rest) = (number(offset, 2)?, &offset[2..]);
            let (minutes, rest) = match rest {
                [] => (0, rest),
                [b':', rest @ ..] => (number(rest, 2)?, &rest[2..]),
                _ => return None,
            };
            let seconds = match rest {
                [] => 0,
                [b':', rest @ ..] if rest.len() == 2 => number(rest, 2)?,
                _ => return None,
            };
            if minutes > 59 || seconds > 59 {
                return None;
            }
            let magnitude = (hours * 60 + minutes) * 60 + seconds;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    local.checked_sub(offset_seconds.checked_mul(1_000_000)?)
}

/// A decimal's text (`-12.50`, `.5`, `7`) as the unscaled integer of DECIMAL(`precision`,
/// `scale`). Refused when a non-zero digit lies past `scale` or the value needs more than
/// `precision` digits.
pub(crate) fn decimal(text: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (integer, fraction) = match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &[][..]),
    };
    if integer.is_empty() && fraction.is_empty() {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    let (kept, dropped) = fraction.split_at(fraction.len().min(scale));
    if dropped.iter().any(|&b| b != b'0') {
        return None;
    }
    let mut value: i128 = 0;
    for &b in integer.iter().chain(kept).chain(dropped) {
        if !b.is_ascii_digit() {
            return None;
        }
    }
    for &b in integer.iter().chain(kept) {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    for _ in kept.len()..scale {
        value = value.checked_mul(10)?;
    }
    if value >= 10i128.checked_pow(u32::from(precision))? {
        return None;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_the_epoch_across_the_whole_range() {
        assert_eq!(date(b"1970-01-01"), Some(0));
        assert_eq!(date(b"1969-12-31"), Some(-1));
        assert_eq!(date(b"2000-03-01"), Some(11_017));
        assert_eq!(date(b"1840-12-31"), Some(-47_117));
        assert_eq!(date(b"0001-01-01"), Some(-719_162));
        assert_eq!(date(b"1-01-01"), Some(-719_162), "FreeTDS's year 1");
        assert_eq!(date(b"9999-12-31"), Some(2_932_896));
        for bad in [
            &b"2023-02-29"[..],
            b"2024-13-01",
            b"2024-01-32",
            b"0000-01-01",
            b"2024-01-01x",
            b"",
        ] {
            assert_eq!(date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(date(b"2024-02-29"), Some(19_782));
    }

    #[test]
    fn timestamps_keep_every_microsecond_and_refuse_finer_digits() {
        assert_eq!(timestamp_micros(b"1970-01-01 00:00:00"), Some(0));
        assert_eq!(timestamp_micros(b"1970-01-01T00:00:01.5"), Some(1_500_000));
        assert_eq!(timestamp_micros(b"1969-12-31 23:59:59.999999"), Some(-1));
        assert_eq!(
            timestamp_micros(b"1840-12-31 00:00:00.000"),
            Some(-47_117 * 86_400_000_000)
        );
        assert_eq!(
            timestamp_micros(b"9999-12-31 23:59:59.9999990"),
            Some(2_932_896 * 86_400_000_000 + 86_399_999_999),
            "a seventh digit that is zero"
        );
        assert_eq!(timestamp_micros(b"2024-01-01 00:00:00.0000001"), None);
        assert_eq!(timestamp_micros(b"2024-01-01"), None);
        assert_eq!(timestamp_micros(b"2024-01-01 24:00:00"), None);
        assert_eq!(timestamp_micros(b"infinity"), None);
    }

    #[test]
    fn timestamps_with_an_offset_become_utc() {
        assert_eq!(timestamp_utc_micros(b"1970-01-01 01:00:00+01"), Some(0));
        assert_eq!(
            timestamp_utc_micros(b"1970-01-01 00:00:00-05:30"),
            Some(19_800_000_000)
        );
        assert_eq!(
            timestamp_utc_micros(b"1970-01-01T00:00:00.25Z"),
            Some(250_000)
        );
        assert_eq!(
            timestamp_utc_micros(b"1970-01-01 00:00:00 +00:00:30"),
            Some(-30_000_000)
        );
        assert_eq!(
            timestamp_utc_micros(b"1970-01-01 00:00:00"),
            None,
            "no offset"
        );
        assert_eq!(timestamp_utc_micros(b"1970-01-01 00:00:00+1"), None);
    }

    #[test]
    fn times_keep_nanoseconds() {
        assert_eq!(time_nanos(b"00:00:00"), Some(0));
        assert_eq!(time_nanos(b"23:59:59.9999999"), Some(86_399_999_999_900));
        assert_eq!(time_nanos(b"12:00:00.123456789"), Some(43_200_123_456_789));
        assert_eq!(time_nanos(b"24:00:00"), None);
        assert_eq!(time_nanos(b"12:00"), None);
    }

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(decimal(b"12.50", 10, 2), Some(1250));
        assert_eq!(decimal(b"-.5", 10, 2), Some(-50));
        assert_eq!(decimal(b"7", 5, 3), Some(7000));
        assert_eq!(
            decimal(b"1.2300", 10, 2),
            Some(123),
            "trailing zeros past the scale"
        );
        assert_eq!(decimal(b"1.235", 10, 2), None, "a digit past the scale");
        assert_eq!(
            decimal(b"12345", 4, 0),
            None,
            "more digits than the precision"
        );
        assert_eq!(
            decimal(b"99999999999999999999999999999999999999", 38, 0),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(
            decimal(b"-922337203685477.5808", 19, 4),
            Some(-9_223_372_036_854_775_808),
            "money's smallest value"
        );
        for bad in [&b""[..], b"-", b".", b"1e5", b"1.2.3", b"NaN", b" 1"] {
            assert_eq!(
                decimal(bad, 10, 2),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
