//! The path rules of PROTECT.md "Matching": paths that different servers
//! read differently are refused before any other work and never
//! forwarded. An upstream that decodes `%2F`, `%2e%2e` or `%61` itself, or
//! treats `\` or `;` specially, would otherwise see a different path than
//! the one Rampart matched, authorized and rate-limited.
//!
//! The same rules check a route's configured `path`, so a route can never
//! name a path no request may use.

use std::fmt;

/// Why a path was refused: a short sentence for the 400's `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRefusal(pub &'static str);

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

const NOT_ABSOLUTE: PathRefusal = PathRefusal("The path must start with \"/\".");
const DOT_SEGMENT: PathRefusal = PathRefusal("The path contains a \".\" or \"..\" segment.");
const EMPTY_SEGMENT: PathRefusal = PathRefusal("The path contains an empty segment (\"//\").");
const ENCODED_UNRESERVED: PathRefusal =
    PathRefusal("The path percent-encodes a letter, digit or one of \"-._~\", which needs no encoding.");
const ENCODED_SLASH: PathRefusal = PathRefusal("The path contains an encoded slash or backslash (%2F, %5C).");
const BACKSLASH: PathRefusal = PathRefusal("The path contains a backslash.");
const SEMICOLON: PathRefusal = PathRefusal("The path contains a \";\".");
const CONTROL: PathRefusal = PathRefusal("The path contains a control character.");
const BAD_ENCODING: PathRefusal = PathRefusal("The path contains invalid percent-encoding.");
const NON_ASCII: PathRefusal = PathRefusal("The path contains a character outside ASCII that is not percent-encoded.");

/// Accepts a request path (without query) that every server reads the same
/// way, or says why not.
pub fn check(path: &str) -> Result<(), PathRefusal> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(NOT_ABSOLUTE);
    }
    // Segment rules first, so `/%2e%2e/` is named a dot segment rather than
    // an encoded character.
    let segments = &path[1..];
    let mut rest = segments.split('/').peekable();
    while let Some(segment) = rest.next() {
        // A trailing "/" leaves one empty last segment: "/orders/" is fine.
        if segment.is_empty() && rest.peek().is_some() {
            return Err(EMPTY_SEGMENT);
        }
        if is_dot_segment(segment) {
            return Err(DOT_SEGMENT);
        }
    }
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let (Some(high), Some(low)) = (bytes.get(index + 1).and_then(hex), bytes.get(index + 2).and_then(hex))
                else {
                    return Err(BAD_ENCODING);
                };
                let decoded = high << 4 | low;
                if decoded < 0x20 || decoded == 0x7f {
                    return Err(CONTROL);
                }
                if decoded == b'/' || decoded == b'\\' {
                    return Err(ENCODED_SLASH);
                }
                if is_unreserved(decoded) {
                    return Err(ENCODED_UNRESERVED);
                }
                index += 3;
            }
            b'\\' => return Err(BACKSLASH),
            b';' => return Err(SEMICOLON),
            byte if byte < 0x20 || byte == 0x7f => return Err(CONTROL),
            byte if byte >= 0x80 => return Err(NON_ASCII),
            _ => index += 1,
        }
    }
    Ok(())
}

/// `.` or `..`, each dot written plainly or as `%2e`/`%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && rest[2].eq_ignore_ascii_case(&b'e') {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

fn hex(byte: &u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(path: &str) -> PathRefusal {
        match check(path) {
            Ok(()) => panic!("{path:?} was accepted"),
            Err(refusal) => refusal,
        }
    }

    #[test]
    fn ordinary_paths_are_accepted() {
        for path in [
            "/",
            "/orders",
            "/orders/",
            "/orders/7",
            "/a%20b",
            "/%E2%82%AC",
            "/%e2%82%ac",
            "/a:b@c",
            "/a,b=c&d+e!$'()*",
            "/...",
            "/.well-known/jwks.json",
            "/a.b/c..d/.e/f.",
            "/%25",
            "/%3B",
            "/%3F",
            "/%2B",
            "/%20",
            "/%80",
            "/%FF",
        ] {
            assert_eq!(check(path), Ok(()), "{path:?}");
        }
    }

    #[test]
    fn a_path_must_start_with_a_slash() {
        for path in ["", "orders", "*", "http://example.com/", "%2Forders"] {
            assert_eq!(refusal(path), NOT_ABSOLUTE, "{path:?}");
        }
    }

    #[test]
    fn dot_segments_are_refused_plain_or_encoded() {
        for path in [
            "/.",
            "/..",
            "/./",
            "/../",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/a/.",
            "/%2e",
            "/%2E",
            "/%2e%2e",
            "/%2E%2e/",
            "/.%2E",
            "/.%2e/x",
            "/%2e./x",
            "/a/%2e%2E",
        ] {
            assert_eq!(refusal(path), DOT_SEGMENT, "{path:?}");
        }
    }

    #[test]
    fn empty_segments_are_refused() {
        for path in ["//", "//orders", "/orders//7", "/a//", "///"] {
            assert_eq!(refusal(path), EMPTY_SEGMENT, "{path:?}");
        }
    }

    #[test]
    fn encoded_unreserved_characters_are_refused() {
        for path in ["/%61", "/%41dmin", "/%30", "/%39", "/%2D", "/%2d", "/%5F", "/%7E", "/%7e", "/a%2Eb", "/%7A"] {
            assert_eq!(refusal(path), ENCODED_UNRESERVED, "{path:?}");
        }
    }

    #[test]
    fn encoded_slashes_and_backslashes_are_refused() {
        for path in ["/a%2Fb", "/a%2fb", "/%2F", "/a%5Cb", "/a%5cb"] {
            assert_eq!(refusal(path), ENCODED_SLASH, "{path:?}");
        }
    }

    #[test]
    fn backslashes_and_semicolons_are_refused() {
        for path in ["/a\\b", "/\\", "/\\\\evil.example"] {
            assert_eq!(refusal(path), BACKSLASH, "{path:?}");
        }
        for path in ["/a;b", "/orders;jsessionid=1", "/;/admin"] {
            assert_eq!(refusal(path), SEMICOLON, "{path:?}");
        }
    }

    #[test]
    fn control_characters_are_refused_plain_or_encoded() {
        for path in ["/a\0b", "/a\tb", "/a\nb", "/a\rb", "/a\u{7f}", "/%00", "/a%0A", "/%0d", "/%1F", "/%1f", "/%7F"] {
            assert_eq!(refusal(path), CONTROL, "{path:?}");
        }
    }

    #[test]
    fn invalid_percent_encoding_is_refused() {
        for path in ["/%", "/a%", "/%4", "/%G1", "/%1G", "/%%41", "/% 1", "/%-1"] {
            assert_eq!(refusal(path), BAD_ENCODING, "{path:?}");
        }
    }

    #[test]
    fn raw_non_ascii_is_refused() {
        assert_eq!(refusal("/€"), NON_ASCII);
        assert_eq!(refusal("/caf\u{e9}"), NON_ASCII);
    }

    #[test]
    fn refusals_read_as_sentences() {
        for refusal in [
            NOT_ABSOLUTE,
            DOT_SEGMENT,
            EMPTY_SEGMENT,
            ENCODED_UNRESERVED,
            ENCODED_SLASH,
            BACKSLASH,
            SEMICOLON,
            CONTROL,
            BAD_ENCODING,
            NON_ASCII,
        ] {
            assert!(refusal.0.starts_with("The path") && refusal.0.ends_with('.'), "{refusal}");
        }
    }
}
