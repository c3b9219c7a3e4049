//! The configuration's duration and size parsers (`HumanDuration`,
//! `ByteSize`): operator input, read from files and environment variables.
//!
//! Properties checked, beyond "never panics":
//! - a parsed value prints as text that parses back to the same value, and
//!   serde (which configuration loading uses) agrees with `FromStr` both ways;
//! - a parsed duration is a whole number of milliseconds;
//! - surrounding whitespace does not change the result;
//! - every failure is a non-empty message;
//! - any millisecond count or byte count (from the input's first 8 bytes)
//!   prints and parses back unchanged.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rampart::config::{ByteSize, HumanDuration};

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = data.get(..8) {
        let n = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        let duration = HumanDuration(Duration::from_millis(n));
        assert_eq!(duration.to_string().parse::<HumanDuration>(), Ok(duration), "{n} ms");
        assert_eq!(ByteSize(n).to_string().parse::<ByteSize>(), Ok(ByteSize(n)), "{n} bytes");
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    check::<HumanDuration>(text, |d| assert_eq!(d.0.subsec_nanos() % 1_000_000, 0, "{d:?} from {text:?}"));
    check::<ByteSize>(text, |_| {});
});

fn check<T>(text: &str, extra: impl Fn(&T))
where
    T: std::str::FromStr<Err = String>
        + std::fmt::Display
        + std::fmt::Debug
        + PartialEq
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let parsed = text.parse::<T>();
    let via_serde = serde_json::from_value::<T>(serde_json::Value::String(text.to_owned())).map_err(|e| e.to_string());
    assert_eq!(parsed.is_ok(), via_serde.is_ok(), "serde and FromStr disagree on {text:?}");
    match parsed {
        Ok(value) => {
            extra(&value);
            assert_eq!(via_serde.as_ref().ok(), Some(&value));
            let printed = value.to_string();
            assert_eq!(printed.parse::<T>().as_ref(), Ok(&value), "{text:?} printed as {printed:?}");
            assert_eq!(serde_json::to_value(&value).ok(), Some(serde_json::Value::String(printed)));
            let padded = format!(" \t{text}\n ");
            assert_eq!(padded.parse::<T>().as_ref(), Ok(&value), "whitespace changed {text:?}");
        }
        Err(message) => assert!(!message.is_empty(), "an empty error for {text:?}"),
    }
}
