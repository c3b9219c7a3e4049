use std::ops::Deref;

use serde::Serialize;

/// A department: at most `MAX_CHARS` characters after trimming, no control
/// characters anywhere. Empty or only whitespace means no department, so
/// `parse` gives an `Option`.
///
/// Stored and serialised as its text. Read back from the store as stored
/// (it was parsed before it was written).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Department(String);

impl Department {
    /// The longest department, in characters (the OpenAPI pattern says the same).
    pub const MAX_CHARS: usize = 100;

    /// `Ok(None)` for empty or all-whitespace input (no department).
    pub fn parse(input: &str) -> Result<Option<Self>, &'static str> {
        let text = input.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text.chars().count() > Self::MAX_CHARS || input.chars().any(char::is_control) {
            return Err("must be at most 100 characters without control characters");
        }
        Ok(Some(Self(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Department {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departments_are_trimmed_bounded_and_optional() {
        assert_eq!(Department::parse("  sales ").map(|d| d.map(|d| d.0)), Ok(Some("sales".into())));
        assert_eq!(Department::parse(""), Ok(None));
        assert_eq!(Department::parse(" \t\n"), Ok(None), "only whitespace clears it");
        assert!(Department::parse(&"é".repeat(100)).is_ok(), "the limit counts characters, not bytes");
        assert!(Department::parse(&"d".repeat(101)).is_err());
        assert!(Department::parse("a\u{0}b").is_err());
        assert!(Department::parse("\tsales").is_err(), "no control characters anywhere, even trimmed ones");
    }
}
