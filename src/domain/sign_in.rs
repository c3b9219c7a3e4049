use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;

text_enum! {
    /// How a session's user signed in, stored with the session: what its
    /// requests report as `amr` (API.md's table) to the policy and, in
    /// protect mode, to upstreams.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
    pub enum SignInMethod {
        /// A password (`POST /auth/session`).
        #[default]
        #[serde(rename = "pwd")]
        Password = "pwd",
        /// A provider ("Sign in with …").
        #[serde(rename = "oauth")]
        Provider = "oauth",
    }
    unknown = "must be pwd or oauth";
}

impl SignInMethod {
    /// The `amr` values of a sign-in this way.
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            SignInMethod::Password => &["pwd"],
            SignInMethod::Provider => &["oauth"],
        }
    }
}
