use std::{collections::HashSet, sync::LazyLock};

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

use super::{Email, UserName};

/// A password as it is hashed and checked: Unicode NFKC (NIST SP 800-63B-4
/// §3.1.1.2), so the same password typed on another keyboard or input method
/// (a ligature "ﬁ" for "fi", fullwidth "ｐａｓｓ" for "pass", a composed
/// or decomposed "é") is the same password.
pub fn normalize_password(password: &SecretString) -> SecretString {
    SecretString::from(password.expose_secret().nfkc().collect::<String>())
}

/// A new password that meets NIST SP 800-63B-4 as API.md states it: 15..=128
/// characters, no composition rules, not a commonly used password (the list
/// shipped in `common-passwords.txt`, plus any repetition of a short unit and
/// any straight sequence), and not containing the account's email (or its
/// local part) or name. The text stays wrapped so it cannot be logged or
/// serialised by accident. The rules apply to the NFKC form
/// (`normalize_password`), which is also what is kept and hashed.
#[derive(Debug)]
pub struct Password(SecretString);

const MIN_CHARS: usize = 15;
const MAX_CHARS: usize = 128;

impl Password {
    pub fn parse(input: SecretString, email: &Email, name: &UserName) -> Result<Self, &'static str> {
        let input = normalize_password(&input);
        let text = input.expose_secret();
        let chars = text.chars().count();
        if chars < MIN_CHARS {
            return Err("must be at least 15 characters");
        }
        if chars > MAX_CHARS {
            return Err("must be at most 128 characters");
        }
        let lower = text.to_lowercase();
        if is_common(&lower) {
            return Err("is too common");
        }
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

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// `lower` is already lower-cased; spaces do not make a password stronger.
fn is_common(lower: &str) -> bool {
    let compact: Vec<char> = lower.chars().filter(|c| !c.is_whitespace()).collect();
    let text: String = compact.iter().collect();
    COMMON.contains(text.as_str()) || is_repetition(&compact) || is_sequence(&compact)
}

/// "abcabcabc...", "aaaa...": the whole made of one short unit repeated.
fn is_repetition(chars: &[char]) -> bool {
    (1..=chars.len() / 2)
        .any(|unit| chars.len().is_multiple_of(unit) && chars.chunks(unit).all(|chunk| chunk == &chars[..unit]))
}

/// "123456789012345", "abcdefghijklmnop", "zyxwv...": every step +1 (or
/// every step -1), digits wrapping from 9 to 0.
fn is_sequence(chars: &[char]) -> bool {
    let step = |a: char, b: char| -> Option<i32> {
        match (a.to_digit(10), b.to_digit(10)) {
            (Some(x), Some(y)) => Some(((y as i32 - x as i32) + 10) % 10).map(|d| if d == 9 { -1 } else { d }),
            _ => Some(b as i32 - a as i32),
        }
    };
    let steps: Vec<Option<i32>> = chars.windows(2).map(|pair| step(pair[0], pair[1])).collect();
    !steps.is_empty() && (steps.iter().all(|s| *s == Some(1)) || steps.iter().all(|s| *s == Some(-1)))
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
        assert!(check("éàüöñçßøåæœ€¥£¢").is_ok(), "15 characters, more bytes");
        let long: String = (0..128u32).map(|i| char::from(b'a' + ((i * 7 + i / 26) % 26) as u8)).collect();
        assert!(check(&long).is_ok());
        assert_eq!(check(&format!("{long}x")).err(), Some("must be at most 128 characters"));
    }

    #[test]
    fn common_repeated_and_sequential_passwords_are_refused() {
        for common in [
            "passwordpassword",
            "Password Password",
            "correct horse battery staple",
            "qwertyuiopasdfgh",
            "aaaaaaaaaaaaaaaa",
            "abcabcabcabcabcabc",
            "123456789012345",
            "abcdefghijklmnop",
            "987654321098765",
        ] {
            assert_eq!(check(common).err(), Some("is too common"), "{common}");
        }
        assert!(check("a quiet tuesday of turnips").is_ok());
        assert!(check("1234567890123x5").is_ok());
    }

    #[test]
    fn the_rules_apply_to_the_nfkc_form_which_is_kept() {
        // Fullwidth letters are the common password in disguise.
        assert_eq!(check("ｐａｓｓｗｏｒｄｐａｓｓｗｏｒｄ").err(), Some("is too common"));
        let kept = check("the ﬁne ｆｕｌｌｗｉｄｔｈ passphrase").expect("valid");
        assert_eq!(kept.secret().expose_secret(), "the fine fullwidth passphrase");
    }

    #[test]
    fn passwords_containing_the_email_or_name_are_refused() {
        assert_eq!(check("my ADA.LOVELACE password").err(), Some("must not contain your email address"));
        assert_eq!(check("xx-ada lovelace-xx-yy").err(), Some("must not contain your name"));
    }
}
