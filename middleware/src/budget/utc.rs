//! UTC calendar windows from unix time, without a date library.

/// Seconds in a day.
const DAY: i64 = 86_400;

/// The start of the UTC day holding `unix` (seconds).
pub(crate) fn day_start(unix: i64) -> i64 {
    unix - unix.rem_euclid(DAY)
}

/// The start of the UTC month holding `unix` (seconds).
pub(crate) fn month_start(unix: i64) -> i64 {
    let (year, month, _) = civil_from_days(unix.div_euclid(DAY));
    days_from_civil(year, month, 1) * DAY
}

/// The starts of the UTC day and month holding `at_ms`, in unix ms.
pub(crate) fn window_starts_ms(at_ms: i64) -> (i64, i64) {
    let unix = at_ms.div_euclid(1000);
    (day_start(unix) * 1000, month_start(unix) * 1000)
}

/// `2026-11-28T00:00:00Z` for a unix time (seconds).
pub fn rfc3339(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(DAY));
    let secs = unix.rem_euclid(DAY);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// Howard Hinnant's algorithms (public domain): days since 1970-01-01 <-> date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_at_utc_midnight_and_the_first_of_the_month() {
        let t = 1_796_086_800; // 2026-12-01T01:00:00Z
        assert_eq!(rfc3339(t), "2026-12-01T01:00:00Z");
        assert_eq!(rfc3339(day_start(t)), "2026-12-01T00:00:00Z");
        assert_eq!(rfc3339(month_start(t)), "2026-12-01T00:00:00Z");
        assert_eq!(rfc3339(month_start(t - 2 * 3600)), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(month_start(951_782_400)), "2000-02-01T00:00:00Z"); // 2000-02-29
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
