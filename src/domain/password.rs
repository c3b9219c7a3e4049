use secrecy::{ExposeSecret, SecretString};

use super::{Email, UserName};

/// A new password that meets NIST SP 800-63B-4 as API.md states it: 15..=128
/// characters, no composition rules, and not containing the account's email
/// (or its local part) or name. The text stays wrapped so it cannot be
/// logged or serialised by accident.
#[derive(Debug)]
pub struct Password(SecretString);

const MIN_CHARS: usize = 15;
const MAX_CHARS: usize = 128;

impl Password {
    pub fn parse(input: SecretString, email: &Email, name: &UserName) -> Result<Self, &'static str> {
        let text = input.expose_secret();
        let chars = text.chars().count();
        if chars < MIN_CHARS {
            return Err("must be at least 15 characters");
        }
        if chars > MAX_CHARS {
            return Err("must be at most 128 characters");
        }
        let lower = text.to_lowercase();
        let local_part = email.key().split('@').next().unwrap_or_default();
        if lower.contains(email.key()) || (local_part.chars().count() >= 3 && lower.contains(local_part)) {
            return Err("must not contain your email address");
        }
        let name = name.as_str().to_lowercase();
        if name.chars().count() >= 3 && lower.contains(&name) {
            return Err("must not contain your name");
        }
        Ok(Self(input))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str) -> Result<Password, &'static str> {
        let email = Email::parse("ada.lovelace@example.com").expect("email");
        let name = UserName::parse("Ada Lovelace").expect("name");
        Password::parse(SecretString::from(password), &email, &name)
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert!(check("fourteen chars").is_err());
        assert!(check("correct horse battery").is_ok());
        assert!(check(&"é".repeat(15)).is_ok());
        assert!(check(&"x".repeat(129)).is_err());
        assert!(check(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn passwords_containing_the_email_or_name_are_refused() {
        assert_eq!(check("my ADA.LOVELACE password").err(), Some("must not contain your email address"));
        assert_eq!(check("xx-ada lovelace-xx-yy").err(), Some("must not contain your name"));
    }
}
