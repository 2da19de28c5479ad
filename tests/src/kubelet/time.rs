//! Timestamps as the API writes them: `metav1.Time` (RFC 3339, seconds) and `metav1.MicroTime` (microseconds),
//! always UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// UTC now as RFC 3339 with seconds (`metav1.Time`).
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now(), false)
}

/// UTC now as RFC 3339 with microseconds (`metav1.MicroTime`).
pub fn rfc3339_micro_now() -> String {
    rfc3339(SystemTime::now(), true)
}

/// `t` as RFC 3339 in UTC, with microseconds when `micros`. Times before 1970 print as 1970-01-01T00:00:00Z.
pub fn rfc3339(t: SystemTime, micros: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, m, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if micros {
        format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
            d.subsec_micros()
        )
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    }
}

/// (year, month, day) of the `days`-th day after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(at(0, 0), false), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400`: the leap day of a year divisible by 400.
        assert_eq!(rfc3339(at(951_782_400, 0), false), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_709_251_199, 0), false), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(at(4_107_542_400, 0), false), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_796_309_276, 302_270), true), "2026-12-03T14:47:56.302270Z");
        assert_eq!(rfc3339(at(1, 7), true), "1970-01-01T00:00:01.000007Z");
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // 1970 to 2200: day numbers are consecutive and months have their lengths (leap years included).
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for days in 1..84_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let leap = (py % 4 == 0 && py % 100 != 0) || py % 400 == 0;
            let len = match pm {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if pd < len {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {days}");
            prev = (y, m, d);
        }
    }

    #[test]
    fn before_the_epoch_is_the_epoch() {
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(10), false),
            "1970-01-01T00:00:00Z"
        );
    }
}
