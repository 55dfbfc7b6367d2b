//! HTTP dates (RFC 9110 §5.6.7) and the access log's date, by hand: the
//! crates that do this are only transitive dependencies here, and the
//! calendar arithmetic is a dozen lines (Howard Hinnant's civil algorithms).
//! Times are whole seconds since the Unix epoch: HTTP dates have no finer
//! resolution, so every comparison of validators is done at that grain.

use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Whole seconds since the epoch; times before 1970 (a Pi without RTC before
/// NTP) count as 0 rather than failing.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate, the only form we send).
pub fn format(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `10/Oct/2000:13:55:36 +0000`, the combined log format's time (in UTC:
/// a cluster's logs compare across nodes without time zone arithmetic).
pub fn format_log(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses the three forms a recipient must accept (RFC 9110 §5.6.7):
/// IMF-fixdate, RFC 850 and asctime. `None` for anything else, which the
/// caller then ignores as the RFC asks for invalid dates.
pub fn parse(s: &str) -> Option<u64> {
    let s = s.trim();
    let (_weekday, rest) = s.split_once([',', ' '])?;
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let (year, month, day, time) = match parts.as_slice() {
        // IMF-fixdate: "06 Nov 1994 08:49:37 GMT"
        [d, m, y, t, "GMT"] if s.contains(',') => (y.parse().ok()?, month(m)?, d.parse().ok()?, *t),
        // RFC 850: "06-Nov-94 08:49:37 GMT"
        [dmy, t, "GMT"] => {
            let mut it = dmy.split('-');
            let (d, m, y) = (it.next()?, it.next()?, it.next()?);
            let y: i64 = y.parse().ok()?;
            let y = if y < 70 {
                2000 + y
            } else if y < 100 {
                1900 + y
            } else {
                y
            };
            (y, month(m)?, d.parse().ok()?, *t)
        }
        // asctime: "Nov  6 08:49:37 1994"
        [m, d, t, y] if !s.contains(',') => (y.parse().ok()?, month(m)?, d.parse().ok()?, *t),
        _ => return None,
    };
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days.checked_mul(86_400)? + (h * 3600 + mi * 60 + se) as i64;
    u64::try_from(secs).ok()
}

fn month(name: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let mp = u64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + u64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9110's own example instant.
    const EXAMPLE: u64 = 784_111_777;

    #[test]
    fn formats_the_rfc_example() {
        assert_eq!(format(EXAMPLE), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format_log(EXAMPLE), "06/Nov/1994:08:49:37 +0000");
        assert_eq!(format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn parses_all_three_forms() {
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(EXAMPLE));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trips_across_leap_years_and_centuries() {
        for secs in [0, 951_782_400, 4_107_542_400, 1_709_164_800, 2_000_000_000] {
            assert_eq!(parse(&format(secs)), Some(secs), "{}", format(secs));
        }
    }
}
