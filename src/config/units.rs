//! Human-friendly durations ("15m", "1h30m") and byte sizes ("10KiB").
//!
//! These parse operator input, so every failure is a plain message that the
//! configuration loader attaches to the key's name. Arithmetic is checked:
//! a huge number is an error, never an overflow.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as one or more `<integer><unit>` parts, units `ms`,
/// `s`, `m`, `h`, `d` (e.g. `"15m"`, `"1h30m"`, `"500ms"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// A size in bytes written as `<integer>[unit]`, units `B`, `KB`, `MB`, `GB`
/// (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024), any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl HumanDuration {
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
    pub const fn mins(mins: u64) -> Self {
        Self(Duration::from_secs(mins * 60))
    }
    pub const fn hours(hours: u64) -> Self {
        Self(Duration::from_secs(hours * 3600))
    }
    pub const fn days(days: u64) -> Self {
        Self(Duration::from_secs(days * 86_400))
    }
}

impl ByteSize {
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }
    /// The size as a `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input, false)
    }
}

impl HumanDuration {
    /// Like `from_str`, but a well-formed duration too large to represent
    /// becomes the largest one instead of an error (for callers that clamp).
    pub fn parse_saturating(input: &str) -> Result<Self, String> {
        Self::parse(input, true)
    }

    fn parse(input: &str, saturate: bool) -> Result<Self, String> {
        const HINT: &str = "expected a duration such as \"30s\", \"15m\", \"12h\" or \"30d\"";
        let text = input.trim();
        if text.is_empty() {
            return Err(format!("empty duration; {HINT}"));
        }
        let mut total_ms: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("{input:?} is not a duration; {HINT}"));
            }
            let (number, after) = rest.split_at(digits);
            let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (unit, after) = after.split_at(unit_len);
            let factor_ms: u64 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(format!("{input:?} has no unit; {HINT}")),
                other => return Err(format!("unknown duration unit {other:?}; {HINT}")),
            };
            let too_large = || format!("{input:?} is too large");
            let part = match number.parse::<u64>().ok().and_then(|n| n.checked_mul(factor_ms)) {
                Some(part) => part,
                None if saturate => u64::MAX,
                None => return Err(too_large()),
            };
            total_ms = match total_ms.checked_add(part) {
                Some(total) => total,
                None if saturate => u64::MAX,
                None => return Err(too_large()),
            };
            rest = after;
        }
        Ok(Self(Duration::from_millis(total_ms)))
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        const HINT: &str = "expected a size such as \"10KiB\", \"1MiB\" or \"512\" (bytes)";
        let text = input.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{input:?} is not a size; {HINT}"));
        }
        let (number, unit) = text.split_at(digits);
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" => 1 << 10,
            "mb" => 1_000_000,
            "mib" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            _ => return Err(format!("unknown size unit {:?}; {HINT}", unit.trim())),
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .map(Self)
            .ok_or_else(|| format!("{input:?} is too large"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")];
        for (size, name) in units {
            if ms > 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{name}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (size, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
            if self.0 > 0 && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

macro_rules! string_serde {
    ($ty:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visit;
                impl de::Visitor<'_> for Visit {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visit)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

string_serde!(HumanDuration, "a duration string such as \"15m\"");
string_serde!(ByteSize, "a size string such as \"10KiB\"");

#[cfg(test)]
mod tests {
    use super::*;

    fn dur(s: &str) -> Result<Duration, String> {
        s.parse::<HumanDuration>().map(|d| d.0)
    }

    #[test]
    fn durations_parse_each_unit_and_combinations() {
        assert_eq!(dur("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(dur("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(dur("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(dur("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(dur("30d"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(dur("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(dur(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_reject_missing_or_unknown_units_and_overflow() {
        for bad in ["", "15", "m", "15x", "1.5h", "-5s", "15 m", "99999999999999999999d"] {
            assert!(dur(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(dur("18446744073709551615d").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        let size = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(size("10KiB"), Ok(10_240));
        assert_eq!(size("10kib"), Ok(10_240));
        assert_eq!(size("10KB"), Ok(10_000));
        assert_eq!(size("1MiB"), Ok(1_048_576));
        assert_eq!(size("2 GiB"), Ok(2_147_483_648));
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("512B"), Ok(512));
        for bad in ["", "KiB", "10XB", "-1KiB", "1.5MiB", "99999999999999999999GiB"] {
            assert!(size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["15m", "12h", "30d", "10s", "250ms"] {
            assert_eq!(text.parse::<HumanDuration>().map(|d| d.to_string()), Ok(text.into()));
        }
        for text in ["10KiB", "16KiB", "1MiB", "100B"] {
            assert_eq!(text.parse::<ByteSize>().map(|d| d.to_string()), Ok(text.into()));
        }
    }
}
