//! TOTP (RFC 6238), the second factor authenticator apps hold: SHA-1, six
//! digits, 30-second steps (what every app accepts), a 160-bit secret.
//! `totp-rs` computes the codes; this module decides which step a code
//! proves, so the caller can accept each step at most once, and draws the
//! `otpauth://` URI as an SVG QR code (`qrcode`).

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

pub const DIGITS: usize = 6;
pub const STEP_SECS: i64 = 30;
/// RFC 4226 asks for at least 128 bits and recommends 160.
pub const SECRET_BYTES: usize = 20;
/// Steps accepted either side of now: one, as RFC 6238 §5.2 recommends for
/// clock drift and typing time.
const SKEW_STEPS: i64 = 1;

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::fill(&mut secret[..]);
    secret
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> TOTP {
    // Unchecked: the digits and the secret's length are this module's own
    // constants, and issuer and account are only used for the URI, whose
    // encoding `get_url` does.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        u8::try_from(SKEW_STEPS).unwrap_or(1),
        STEP_SECS.unsigned_abs(),
        secret.to_vec(),
        Some(issuer.replace(':', "")),
        account.replace(':', ""),
    )
}

/// The secret as authenticator apps take it typed in: base32, no padding.
pub fn secret_base32(secret: &[u8]) -> String {
    totp(secret, "", "").get_secret_base32()
}

/// The secret from its base32 form (as apps and `secret_base32` write it).
pub fn secret_from_base32(text: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::Encoded(text.trim().to_ascii_uppercase()).to_bytes().ok()
}

/// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…` (Key URI Format).
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    totp(secret, issuer, account).get_url()
}

/// The URI as an SVG document of its QR code.
pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
}

/// The time step `unix_secs` falls in.
pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The step `code` proves at `unix_secs` (now, or one step either side),
/// among the steps after `after` (the last one accepted): a code, or an
/// earlier step's, never works twice. `None` for anything else, a
/// malformed code included. Each candidate is compared in constant time.
pub fn matching_step(secret: &[u8], code: &str, unix_secs: i64, after: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let generator = totp(secret, "", "");
    let current = step_at(unix_secs);
    let mut matched = None;
    for step in current - SKEW_STEPS..=current + SKEW_STEPS {
        if step < 0 || after.is_some_and(|last| step <= last) {
            continue;
        }
        let expected = generator.generate(u64::try_from(step * STEP_SECS).unwrap_or(0));
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// The code an authenticator app shows at `unix_secs` (tests compute codes
/// with it, as an app would).
pub fn code_at(secret: &[u8], unix_secs: i64) -> String {
    totp(secret, "", "").generate(u64::try_from(unix_secs.max(0)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 secret and vectors, cut to six digits.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_match_the_rfc_6238_vectors() {
        for (time, eight_digits) in [(59, "94287082"), (1_111_111_109, "07081804"), (2_000_000_000, "69279037")] {
            assert_eq!(code_at(RFC_SECRET, time), eight_digits[2..], "at {time}");
        }
    }

    #[test]
    fn a_code_is_accepted_in_its_step_and_the_neighbours_once() {
        let now = 1_111_111_109;
        let code = code_at(RFC_SECRET, now);
        let step = step_at(now);
        assert_eq!(matching_step(RFC_SECRET, &code, now, None), Some(step));
        // Thirty seconds late or early still works (clock drift)...
        assert_eq!(matching_step(RFC_SECRET, &code, now + 30, None), Some(step));
        assert_eq!(matching_step(RFC_SECRET, &code, now - 30, None), Some(step));
        // ...sixty does not.
        assert_eq!(matching_step(RFC_SECRET, &code, now + 60, None), None);
        // Once its step was accepted, neither it nor an earlier step's code.
        assert_eq!(matching_step(RFC_SECRET, &code, now, Some(step)), None);
        let earlier = code_at(RFC_SECRET, now - 30);
        assert_eq!(matching_step(RFC_SECRET, &earlier, now, Some(step)), None);
        // A later step's code still works.
        let later = code_at(RFC_SECRET, now + 30);
        assert_eq!(matching_step(RFC_SECRET, &later, now, Some(step)), Some(step + 1));
    }

    #[test]
    fn malformed_codes_are_refused() {
        for code in ["", "12345", "1234567", "12345a", "１２３４５６"] {
            assert_eq!(matching_step(RFC_SECRET, code, 59, None), None, "{code}");
        }
    }

    #[test]
    fn the_uri_and_qr_code_carry_the_secret() {
        let secret = new_secret();
        assert_eq!(secret.len(), SECRET_BYTES);
        let uri = otpauth_uri(&secret, "Rampart", "ada@example.com");
        assert!(uri.starts_with("otpauth://totp/Rampart:ada%40example.com?secret="), "{uri}");
        assert!(uri.contains(&secret_base32(&secret)) && uri.contains("issuer=Rampart"), "{uri}");
        assert_eq!(secret_from_base32(&secret_base32(&secret)), Some(secret.clone()));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
