//! The timestamp of every line, formatted once per second.

use std::cell::RefCell;

use nix::time::{clock_gettime, ClockId};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// The timestamp of every line: tracing-subscriber's default (`SystemTime`:
/// RFC 3339, UTC, microseconds, e.g. `2026-12-04T22:46:40.485227Z`), with the
/// date and time of day formatted once per second and thread instead of once
/// per line (about 2,400 of the ~15,000 instructions an audit line cost,
/// docs/performance.md).
#[derive(Debug, Clone, Copy)]
pub struct Timestamp;

thread_local! {
    /// The second last formatted on this thread, and the last timestamp
    /// written on it: its first 20 bytes, `YYYY-MM-DDTHH:MM:SS.`, stay
    /// for the rest of that second.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        // The clock `SystemTime::now` reads, without its `Duration` arithmetic.
        let Ok(now) = clock_gettime(ClockId::CLOCK_REALTIME) else {
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        };
        let (Ok(secs), Ok(nanos)) = (u64::try_from(now.tv_sec()), u32::try_from(now.tv_nsec()))
        else {
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        };
        let written = SECOND.try_with(|cell| {
            let Ok(mut cached) = cell.try_borrow_mut() else {
                return None;
            };
            let (second, text) = &mut *cached;
            if *second != secs {
                // Past year 9999: the default formatter's own notation.
                let prefix = date_time(secs)?;
                text.clear();
                text.push_str(std::str::from_utf8(&prefix).ok()?);
                text.push('.');
                *second = secs;
            }
            text.truncate(20);
            let micros = nanos / 1_000;
            for power in [100_000, 10_000, 1_000, 100, 10, 1] {
                text.push(char::from(b'0' + (micros / power % 10) as u8));
            }
            text.push('Z');
            Some(w.write_str(text))
        });
        match written {
            Ok(Some(result)) => result,
            _ => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of `secs` after the Unix epoch; `None` past
/// year 9999. Days to a civil date as in Howard Hinnant's `civil_from_days`.
fn date_time(secs: u64) -> Option<[u8; 19]> {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year > 9999 {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, (rem / 3600) as i64);
    put(14, 2, (rem / 60 % 60) as i64);
    put(17, 2, (rem % 60) as i64);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(secs: u64) -> String {
        String::from_utf8(date_time(secs).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn date_time_of_known_instants() {
        assert_eq!(text(0), "1970-01-01T00:00:00");
        assert_eq!(text(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(text(951_868_799), "2000-02-29T23:59:59");
        assert_eq!(text(951_868_800), "2000-03-01T00:00:00");
        assert_eq!(text(1_709_251_199), "2024-02-29T23:59:59");
        assert_eq!(text(1_798_761_599), "2026-12-31T23:59:59");
        assert_eq!(text(4_102_444_800), "2100-01-01T00:00:00");
        assert_eq!(text(253_402_300_799), "9999-12-31T23:59:59");
        assert_eq!(date_time(253_402_300_800), None);
    }

    #[test]
    fn same_text_as_the_default_timer() {
        // Both read the clock; retry until both calls fell into one second.
        for _ in 0..100 {
            let (mut ours, mut theirs) = (String::new(), String::new());
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            Timestamp.format_time(&mut Writer::new(&mut ours)).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            assert!(ours[20..26].bytes().all(|b| b.is_ascii_digit()), "{ours}");
            if ours[..19] == theirs[..19] {
                return;
            }
        }
        panic!("the two timers never agreed on the second");
    }
}
