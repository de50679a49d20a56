//! Numbers and durations as people read them, in the plan, the progress lines, `status` and
//! error messages.

/// "1 table", "2,000 tables".
pub(crate) fn tables(count: usize) -> String {
    match count {
        1 => "1 table".to_owned(),
        n => format!("{} tables", group_digits(n as u64)),
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds as `45s`, `12m 05s`, `3h 07m`.
pub(crate) fn duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Rows per second; 0 for no time at all (a table finished within the clock's resolution).
pub(crate) fn rows_per_second(rows: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_and_duration_formatting() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000), "1,000");
        assert_eq!(group_digits(9_412_345_678), "9,412,345,678");
        assert_eq!(duration(45.2), "45s");
        assert_eq!(duration(725.0), "12m 05s");
        assert_eq!(duration(3.0 * 3600.0 + 7.0 * 60.0), "3h 07m");
    }

    #[test]
    fn table_counts() {
        assert_eq!(tables(1), "1 table");
        assert_eq!(tables(0), "0 tables");
        assert_eq!(tables(2_000), "2,000 tables");
    }
}
