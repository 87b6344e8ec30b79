//! The `Date` string check: RFC 3339 date-times and the common ISO 8601 forms
//! around them, checked for calendar validity. Syntax only; no time zone
//! database and no dependency.
//!
//! Accepted: `YYYY-MM-DD`, optionally followed by `T` (or `t` or a space) and
//! `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fraction`, optionally followed by `Z`
//! (or `z`) or an offset `+HH:MM` / `-HH:MM`. A missing offset means local
//! time, as in ISO 8601 and JavaScript's `Date`. Seconds may be 60 (a leap
//! second). Not accepted: week dates, ordinal dates, basic format without
//! separators, years outside 0000..=9999.

/// Whether `text` is a date or date-time in one of the accepted forms.
pub(super) fn is_date_time(text: &str) -> bool {
    let mut cursor = Cursor(text.as_bytes());
    date(&mut cursor).is_some() && (cursor.0.is_empty() || time_part(&mut cursor).is_some())
}

fn date(cursor: &mut Cursor<'_>) -> Option<()> {
    let year = cursor.digits(4)?;
    cursor.byte(b'-')?;
    let month = cursor.digits(2)?;
    cursor.byte(b'-')?;
    let day = cursor.digits(2)?;
    ((1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day)).then_some(())
}

/// Separator, time and optional offset, up to the end of the text.
fn time_part(cursor: &mut Cursor<'_>) -> Option<()> {
    cursor.one_of(b"Tt ")?;
    let hour = cursor.digits(2)?;
    cursor.byte(b':')?;
    let minute = cursor.digits(2)?;
    if hour > 23 || minute > 59 {
        return None;
    }
    if cursor.byte(b':').is_some() {
        if cursor.digits(2)? > 60 {
            return None;
        }
        if cursor.byte(b'.').is_some() {
            cursor.digits(1)?;
            while cursor.digits(1).is_some() {}
        }
    }
    match cursor.0.first() {
        None => return Some(()),
        Some(b'Z' | b'z') => {
            cursor.0 = &cursor.0[1..];
        }
        Some(_) => {
            cursor.one_of(b"+-")?;
            let hours = cursor.digits(2)?;
            cursor.byte(b':')?;
            let minutes = cursor.digits(2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
        }
    }
    cursor.0.is_empty().then_some(())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The unread rest of the text.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    /// Exactly `count` ASCII digits, as a number.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let digits = self.0.get(..count)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = &self.0[count..];
        Some(
            digits
                .iter()
                .fold(0, |value, digit| value * 10 + u32::from(digit - b'0')),
        )
    }

    fn byte(&mut self, expected: u8) -> Option<()> {
        self.one_of(&[expected])
    }

    fn one_of(&mut self, expected: &[u8]) -> Option<()> {
        let (first, rest) = self.0.split_first()?;
        if expected.contains(first) {
            self.0 = rest;
            Some(())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_date_time;

    #[test]
    fn accepts_rfc3339_and_common_iso_forms() {
        for text in [
            "2024-02-29",
            "2024-01-02T03:04:05Z",
            "2024-01-02t03:04:05z",
            "2024-01-02 03:04:05Z",
            "2024-01-02T03:04:05.123456789+05:30",
            "2024-01-02T03:04:05-08:00",
            "2024-01-02T03:04",
            "2024-01-02T03:04:05",
            "2016-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
        ] {
            assert!(is_date_time(text), "{text} should be a date-time");
        }
    }

    #[test]
    fn rejects_malformed_and_impossible_dates() {
        for text in [
            "",
            "2024",
            "2024-1-02",
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-04-31",
            "2024-00-10",
            "2024-01-00",
            "2024-01-02T",
            "2024-01-02T24:00:00Z",
            "2024-01-02T03:60:00Z",
            "2024-01-02T03:04:61Z",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05+0530",
            "2024-01-02T03:04:05+24:00",
            "2024-01-02T03:04:05Zjunk",
            "2024-01-02X03:04:05Z",
            "20240102T030405Z",
            "yesterday",
            "２０２４-01-02",
        ] {
            assert!(!is_date_time(text), "{text:?} should not be a date-time");
        }
    }
}
