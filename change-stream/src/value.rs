//! Column values, as both sides hold them between MariaDB and Avro.
//!
//! [`Cell`] is lossless for every MariaDB value: temporal values keep zero
//! dates and zero-in-date parts, decimals keep their digits as text, unsigned
//! integers keep their full range, and character data is held as UTF-8.

use std::fmt::{self, Write as _};

/// One column value.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// A decimal number as MariaDB prints it (`-12.50`).
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(Date),
    /// DATETIME as written (no time zone), TIMESTAMP in UTC.
    DateTime(DateTime),
    /// TIME as signed microseconds (-838:59:59.999999 to 838:59:59.999999).
    Time(i64),
}

impl Cell {
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }
}

/// A calendar date; month and day may be zero (`0000-00-00`, `2024-05-00`)
/// where the source's SQL mode allowed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A date and a time of day with microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

impl Date {
    /// True when the date is a real calendar date (no zero parts), so that
    /// it can be written as days since the epoch.
    pub fn is_calendar_date(&self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year as i64, self.month)
    }

    /// Days since 1970-01-01 (proleptic Gregorian). Only for calendar dates.
    pub fn to_days(&self) -> i64 {
        days_from_civil(self.year as i64, self.month as i64, self.day as i64)
    }

    pub fn from_days(days: i64) -> Option<Date> {
        let (y, m, d) = civil_from_days(days);
        (0..=9999).contains(&y).then_some(Date {
            year: y as u16,
            month: m as u8,
            day: d as u8,
        })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        Some(Date {
            year: s[0..4].parse().ok()?,
            month: s[5..7].parse().ok()?,
            day: s[8..10].parse().ok()?,
        })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl DateTime {
    pub fn is_calendar_date(&self) -> bool {
        self.date.is_calendar_date()
    }

    /// Microseconds since 1970-01-01 00:00:00 (as if in UTC). Only for
    /// calendar dates.
    pub fn to_micros(&self) -> i64 {
        let secs = self.date.to_days() * 86_400
            + self.hour as i64 * 3600
            + self.minute as i64 * 60
            + self.second as i64;
        secs * 1_000_000 + self.micros as i64
    }

    pub fn from_micros(micros: i64) -> Option<DateTime> {
        let secs = micros.div_euclid(1_000_000);
        let us = micros.rem_euclid(1_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400);
        Some(DateTime {
            date: Date::from_days(days)?,
            hour: (tod / 3600) as u8,
            minute: (tod / 60 % 60) as u8,
            second: (tod % 60) as u8,
            micros: us,
        })
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    pub fn parse(s: &str) -> Option<DateTime> {
        let (date, time) = s.split_once(' ')?;
        let date = Date::parse(date)?;
        let (hms, frac) = match time.split_once('.') {
            Some((hms, frac)) => (hms, frac),
            None => (time, ""),
        };
        let mut parts = hms.split(':');
        let hour = parts.next()?.parse().ok()?;
        let minute = parts.next()?.parse().ok()?;
        let second = parts.next()?.parse().ok()?;
        Some(DateTime {
            date,
            hour,
            minute,
            second,
            micros: parse_fraction(frac)?,
        })
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:02}:{:02}:{:02}",
            self.date, self.hour, self.minute, self.second
        )?;
        if self.micros != 0 {
            write!(f, ".{:06}", self.micros)?;
        }
        Ok(())
    }
}

/// `.123` -> 123000 microseconds.
fn parse_fraction(frac: &str) -> Option<u32> {
    if frac.is_empty() {
        return Some(0);
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = frac.parse().ok()?;
    Some(n * 10u32.pow(6 - frac.len() as u32))
}

/// Formats TIME microseconds as MariaDB does: `-838:59:59.000001`.
pub fn format_time(micros: i64) -> String {
    let mut s = String::new();
    if micros < 0 {
        s.push('-');
    }
    let m = micros.unsigned_abs();
    let secs = m / 1_000_000;
    let frac = m % 1_000_000;
    let _ = write!(
        s,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let _ = write!(s, ".{frac:06}");
    }
    s
}

/// Parses `[-]HHH:MM:SS[.ffffff]` into signed microseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let mut parts = hms.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: i64 = parts.next()?.parse().ok()?;
    let micros = (h * 3600 + m * 60 + sec) * 1_000_000 + parse_fraction(frac)? as i64;
    Some(if neg { -micros } else { micros })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's civil-from-days algorithms (public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epoch_and_limits() {
        let d = Date {
            year: 1970,
            month: 1,
            day: 1,
        };
        assert_eq!(d.to_days(), 0);
        assert_eq!(Date::from_days(-1).unwrap().to_string(), "1969-12-31");
        assert!(!Date::parse("0000-00-00").unwrap().is_calendar_date());
        assert!(Date::parse("2024-02-29").unwrap().is_calendar_date());
        assert!(!Date::parse("2023-02-29").unwrap().is_calendar_date());
        let dt = DateTime::parse("9999-12-31 23:59:59.999999").unwrap();
        assert_eq!(DateTime::from_micros(dt.to_micros()).unwrap(), dt);
        assert_eq!(dt.to_string(), "9999-12-31 23:59:59.999999");
        assert_eq!(
            DateTime::parse("2024-01-02 03:04:05.5").unwrap().micros,
            500_000
        );
    }

    #[test]
    fn times() {
        assert_eq!(
            format_time(-(838 * 3600 + 59 * 60 + 59) * 1_000_000),
            "-838:59:59"
        );
        assert_eq!(parse_time("-00:00:00.000001"), Some(-1));
        assert_eq!(format_time(-1), "-00:00:00.000001");
        assert_eq!(parse_time("838:59:59.999999"), Some(3_020_399_999_999));
    }

    proptest! {
        #[test]
        fn datetime_micros_round_trip(micros in -62_167_219_200_000_000i64..253_402_300_799_999_999i64) {
            let dt = DateTime::from_micros(micros).unwrap();
            prop_assert_eq!(dt.to_micros(), micros);
            prop_assert_eq!(DateTime::parse(&dt.to_string()).unwrap(), dt);
        }

        #[test]
        fn time_text_round_trip(micros in -3_020_399_999_999i64..=3_020_399_999_999i64) {
            prop_assert_eq!(parse_time(&format_time(micros)), Some(micros));
        }
    }
}
