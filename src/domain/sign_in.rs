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
    }
    unknown = "must be pwd, oauth, pwd+otp or oauth+otp";
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
        }
    }

    /// The method an access token's `amr` claim names; a token without
    /// the claim (issued before it existed) was a password's.
    pub fn from_amr(amr: &[String]) -> Self {
        [Self::PasswordAndCode, Self::ProviderAndCode, Self::Provider]
            .into_iter()
            .find(|method| method.amr().iter().copied().eq(amr.iter().map(String::as_str)))
            .unwrap_or(Self::Password)
    }

    /// This first factor completed by a code.
    pub fn with_code(self) -> Self {
        match self {
            SignInMethod::Password | SignInMethod::PasswordAndCode => SignInMethod::PasswordAndCode,
            SignInMethod::Provider | SignInMethod::ProviderAndCode => SignInMethod::ProviderAndCode,
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
        ] {
            let claim: Vec<String> = method.amr().iter().map(|amr| (*amr).to_owned()).collect();
            assert_eq!(SignInMethod::from_amr(&claim), method);
            assert_eq!(method.as_str().parse::<SignInMethod>(), Ok(method));
        }
        assert_eq!(SignInMethod::from_amr(&[]), SignInMethod::Password);
        assert_eq!(SignInMethod::Provider.with_code().amr(), ["oauth", "otp", "mfa"]);
        assert!(!SignInMethod::Password.is_multi_factor() && SignInMethod::PasswordAndCode.is_multi_factor());
    }
}
