use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;

text_enum! {
    /// How a user signed in, stored with the session or refresh family:
    /// what its requests report as `amr` (API.md's table) to the policy
    /// and, in protect mode, to upstreams.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
    pub enum SignInMethod {
        /// A password (`POST /auth/login`, `POST /auth/session`).
        #[default]
        #[serde(rename = "pwd")]
        Password = "pwd",
        /// A provider ("Sign in with …").
        #[serde(rename = "oauth")]
        Provider = "oauth",
        /// A password, then a TOTP or recovery code (`POST /auth/mfa`).
        #[serde(rename = "pwd+otp")]
        PasswordAndCode = "pwd+otp",
        /// A provider, then a TOTP or recovery code.
        #[serde(rename = "oauth+otp")]
        ProviderAndCode = "oauth+otp",
        /// A passkey alone (`POST /auth/passkey/finish`): it proves both
        /// possession and the user's PIN or biometric.
        #[serde(rename = "hwk")]
        Passkey = "hwk",
        /// A password, then a passkey.
        #[serde(rename = "pwd+hwk")]
        PasswordAndPasskey = "pwd+hwk",
        /// A provider, then a passkey.
        #[serde(rename = "oauth+hwk")]
        ProviderAndPasskey = "oauth+hwk",
    }
    unknown = "must be pwd, oauth, pwd+otp, oauth+otp, hwk, pwd+hwk or oauth+hwk";
}

impl SignInMethod {
    /// The `amr` values of a sign-in this way; `mfa` whenever two factors
    /// were used.
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            SignInMethod::Password => &["pwd"],
            SignInMethod::Provider => &["oauth"],
            SignInMethod::PasswordAndCode => &["pwd", "otp", "mfa"],
            SignInMethod::ProviderAndCode => &["oauth", "otp", "mfa"],
            SignInMethod::Passkey => &["hwk", "mfa"],
            SignInMethod::PasswordAndPasskey => &["pwd", "hwk", "mfa"],
            SignInMethod::ProviderAndPasskey => &["oauth", "hwk", "mfa"],
        }
    }

    /// The method an access token's `amr` claim names; a token without
    /// the claim (issued before it existed) was a password's.
    pub fn from_amr(amr: &[String]) -> Self {
        [
            Self::PasswordAndCode,
            Self::ProviderAndCode,
            Self::Provider,
            Self::Passkey,
            Self::PasswordAndPasskey,
            Self::ProviderAndPasskey,
        ]
        .into_iter()
        .find(|method| method.amr().iter().copied().eq(amr.iter().map(String::as_str)))
        .unwrap_or(Self::Password)
    }

    /// This first factor completed by a code.
    pub fn with_code(self) -> Self {
        match self.first_factor() {
            SignInMethod::Provider => SignInMethod::ProviderAndCode,
            _ => SignInMethod::PasswordAndCode,
        }
    }

    /// This first factor completed by a passkey.
    pub fn with_passkey(self) -> Self {
        match self.first_factor() {
            SignInMethod::Provider => SignInMethod::ProviderAndPasskey,
            _ => SignInMethod::PasswordAndPasskey,
        }
    }

    /// The factor a challenge began with: a password or a provider.
    fn first_factor(self) -> Self {
        match self {
            SignInMethod::Provider | SignInMethod::ProviderAndCode | SignInMethod::ProviderAndPasskey => {
                SignInMethod::Provider
            }
            _ => SignInMethod::Password,
        }
    }

    pub fn is_multi_factor(self) -> bool {
        self.amr().contains(&"mfa")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_round_trips_through_the_token_claim() {
        for method in [
            SignInMethod::Password,
            SignInMethod::Provider,
            SignInMethod::PasswordAndCode,
            SignInMethod::ProviderAndCode,
            SignInMethod::Passkey,
            SignInMethod::PasswordAndPasskey,
            SignInMethod::ProviderAndPasskey,
        ] {
            let claim: Vec<String> = method.amr().iter().map(|amr| (*amr).to_owned()).collect();
            assert_eq!(SignInMethod::from_amr(&claim), method);
            assert_eq!(method.as_str().parse::<SignInMethod>(), Ok(method));
        }
        assert_eq!(SignInMethod::from_amr(&[]), SignInMethod::Password);
        assert_eq!(SignInMethod::Provider.with_code().amr(), ["oauth", "otp", "mfa"]);
        assert_eq!(SignInMethod::Password.with_passkey().amr(), ["pwd", "hwk", "mfa"]);
        assert_eq!(SignInMethod::Provider.with_passkey().amr(), ["oauth", "hwk", "mfa"]);
        assert!(SignInMethod::Passkey.is_multi_factor());
        assert!(!SignInMethod::Password.is_multi_factor() && SignInMethod::PasswordAndCode.is_multi_factor());
    }
}
