//! Time as a dependency. Code that compares against "now" (expiry, windows,
//! lockouts) takes a `Clock`, so tests move time instead of sleeping.

use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Milliseconds since the Unix epoch: what counters and windows need,
    /// without working out the calendar date.
    fn unix_millis(&self) -> i64 {
        i64::try_from(self.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// The real wall clock, in UTC.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn unix_millis(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// `2026-11-28T08:40:07`: the RFC 3339 text of `at` (in UTC) up to the
/// second, digit by digit (`time`'s formatter goes through `fmt` for each
/// part, which showed in profiles of the access log and `/health`).
pub fn rfc3339_seconds(at: OffsetDateTime) -> [u8; 19] {
    fn digits(out: &mut [u8], value: u32) {
        let mut value = value;
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    let at = at.to_offset(time::UtcOffset::UTC);
    let (year, month, day) = at.to_calendar_date();
    let (hour, minute, second) = at.to_hms();
    let mut text = *b"0000-00-00T00:00:00";
    digits(&mut text[0..4], u32::try_from(year).unwrap_or(0));
    digits(&mut text[5..7], u32::from(u8::from(month)));
    digits(&mut text[8..10], u32::from(day));
    digits(&mut text[11..13], u32::from(hour));
    digits(&mut text[14..16], u32::from(minute));
    digits(&mut text[17..19], u32::from(second));
    text
}

/// `at` as RFC 3339 in UTC, the same text as `time`'s `Rfc3339` format
/// (fraction without trailing zeros, none when zero), years 0 to 9999.
pub fn rfc3339(at: OffsetDateTime) -> String {
    let mut text = [0u8; 30];
    text[..19].copy_from_slice(&rfc3339_seconds(at));
    let mut end = 19;
    let mut nanos = at.nanosecond();
    if nanos != 0 {
        let mut width = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            width -= 1;
        }
        text[19] = b'.';
        for slot in text[20..20 + width].iter_mut().rev() {
            *slot = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        end = 20 + width;
    }
    text[end] = b'Z';
    String::from_utf8_lossy(&text[..=end]).into_owned()
}

/// `#[serde(with = "crate::clock::rfc3339_text")]`: `time::serde::rfc3339`
/// with the faster writer above, for the times in every API response.
pub mod rfc3339_text {
    use serde::{Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::rfc3339(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
        time::serde::rfc3339::deserialize(deserializer)
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;

    #[test]
    fn rfc3339_text_is_the_time_crate_s() {
        let base = time::macros::datetime!(2026-11-28 08:40:07 UTC);
        let nanos = [0, 1, 10, 100_000_000, 120_000_000, 226_642_157, 999_999_999, 500_000, 7_000];
        for (step, nano) in nanos.into_iter().enumerate() {
            let at = base + time::Duration::days(step as i64 * 400) + time::Duration::nanoseconds(i64::from(nano));
            assert_eq!(rfc3339(at), at.format(&Rfc3339).unwrap());
        }
        let offset = time::macros::datetime!(2026-01-01 00:30:00 +02:00);
        assert_eq!(rfc3339(offset), "2025-12-31T22:30:00Z");
    }
}
