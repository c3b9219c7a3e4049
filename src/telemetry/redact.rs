//! What counts as secret in a log line, and how it is blanked.

use std::borrow::Cow;

pub const REDACTED: &str = "[REDACTED]";

/// Name fragments that mark a field as secret, whatever its value.
const SENSITIVE: [&str; 9] =
    ["password", "passwd", "token", "secret", "key", "authorization", "cookie", "credential", "session_id"];

pub fn is_sensitive_name(name: &str) -> bool {
    // One pass: only where a fragment's first letter is are fragments tried.
    let bytes = name.as_bytes();
    (0..bytes.len()).any(|at| {
        let first = bytes[at].to_ascii_lowercase();
        SENSITIVE.iter().any(|fragment| {
            fragment.as_bytes()[0] == first
                && bytes.len() - at >= fragment.len()
                && bytes[at..at + fragment.len()].eq_ignore_ascii_case(fragment.as_bytes())
        })
    })
}

/// Whether `text` may hold a credential `scrub` would blank: one pass
/// over the bytes, since this runs for every string of every log line.
fn may_hold_credentials(text: &str) -> bool {
    let bytes = text.as_bytes();
    let at_ignoring_case = |at: usize, needle: &[u8]| {
        bytes.len() - at >= needle.len() && bytes[at..at + needle.len()].eq_ignore_ascii_case(needle)
    };
    (0..bytes.len()).any(|at| match bytes[at] {
        b'b' | b'B' => at_ignoring_case(at, b"bearer"),
        b'r' | b'R' => at_ignoring_case(at, b"rampart_session"),
        b'e' => bytes[at..].starts_with(b"eyJ"),
        _ => false,
    })
}

/// Blanks credentials found inside a free-text value: `Bearer <token>`,
/// anything shaped like a JWT (`eyJ...`), and `rampart_session=<id>`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    if !may_hold_credentials(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let lower_rest = rest.to_ascii_lowercase();
        let next = [
            lower_rest.find("bearer ").map(|i| (i, "bearer ".len())),
            rest.find("eyJ").map(|i| (i, 0)),
            lower_rest.find("rampart_session=").map(|i| (i, "rampart_session=".len())),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(index, _)| *index);
        let Some((start, keep)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..start + keep]);
        let secret = &rest[start + keep..];
        let secret_len = secret
            .find(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '"' | '\'' | '}'))
            .unwrap_or(secret.len());
        let candidate = &secret[..secret_len];
        // `eyJ` starts many harmless words; only a dotted token is a JWT.
        let harmless = candidate.is_empty() || (keep == 0 && !candidate.contains('.'));
        if harmless {
            out.push_str(candidate);
            rest = &secret[secret_len..];
            continue;
        }
        out.push_str(REDACTED);
        rest = &secret[secret_len..];
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names_are_recognised() {
        for name in
            ["password", "new_password", "Authorization", "refresh_token", "client_secret", "signing_key", "set_cookie"]
        {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in ["PASSWORD", "x_Token", "apikey", "a_credentials"] {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in ["request_id", "method", "route", "status", "user_id", "client_ip", "k", "passw"] {
            assert!(!is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn credentials_inside_text_are_blanked() {
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let text = format!("header was Bearer {jwt}; cookie rampart_session=abc123; token {jwt}");
        let clean = scrub(&text);
        assert!(!clean.contains("eyJzdWI") && !clean.contains("abc123"), "{clean}");
        assert!(clean.contains("Bearer [REDACTED]") && clean.contains("rampart_session=[REDACTED]"), "{clean}");
        assert_eq!(scrub("nothing to see"), "nothing to see");
        assert_eq!(scrub("ends with bearer "), "ends with bearer ");
        assert_eq!(scrub("eyJ"), "eyJ");
        assert_eq!(scrub("AUTH: BEARER abc"), "AUTH: BEARER [REDACTED]");
        assert_eq!(scrub("RAMPART_SESSION=abc"), "RAMPART_SESSION=[REDACTED]");
        assert_eq!(scrub("b r e"), "b r e");
    }
}
