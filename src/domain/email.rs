use std::fmt;

/// An email address as API.md defines it: at most 254 characters (padding
/// included), trimmed, exactly one `@` with text on both sides, no
/// whitespace.
/// `key()` is the form used for uniqueness and lookup (lower-cased), since
/// emails are compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    key: String,
}

impl Email {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let email = input.trim();
        if email.is_empty() {
            return Err("is required");
        }
        // Counted before trimming, so a schema's `maxLength` says the same.
        if input.chars().count() > 254 {
            return Err("must be at most 254 characters");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces");
        }
        let mut parts = email.split('@');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty() => {}
            _ => return Err("must contain exactly one @ with text on both sides"),
        }
        Ok(Self { display: email.to_owned(), key: email.to_lowercase() })
    }

    /// As entered, trimmed.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// Lower-cased: what uniqueness and lookups compare.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_compared_without_case() {
        let email = Email::parse("  Ada@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "Ada@Example.COM");
        assert_eq!(email.key(), "ada@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "two@@example.com",
            "a@b@c",
            "@example.com",
            "ada@",
            "ada lovelace@example.com",
            &long,
            // 254 characters once trimmed, but more as sent.
            &format!("  {}@example.com", "a".repeat(242)),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
