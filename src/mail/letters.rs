//! What Rampart writes: each mail as plain text and HTML, with nothing
//! secret in it but its one link.

use crate::html::escape;

/// A security notice: something changed about how the account signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    PasswordChanged,
    PasswordReset,
    /// A provider account (`google`, `github`...) can now sign in as the user.
    ProviderLinked {
        provider: String,
    },
    ApiKeyCreated {
        key_name: String,
    },
    SecondFactorOn,
    SecondFactorOff,
    PasskeyAdded {
        passkey_name: String,
    },
    PasskeyRemoved {
        passkey_name: String,
    },
}

/// One mail's content, before it is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Letter {
    /// `link` proves the address (`/verify-email?token=`).
    VerifyEmail {
        link: String,
    },
    /// `link` sets a new password (`/reset-password?token=`).
    ResetPassword {
        link: String,
    },
    Notice(Notice),
}

impl Letter {
    /// What the mail is, as the outbox and logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VerifyEmail { .. } => "verify_email",
            Self::ResetPassword { .. } => "reset_password",
            Self::Notice(Notice::PasswordChanged) => "notice_password_changed",
            Self::Notice(Notice::PasswordReset) => "notice_password_reset",
            Self::Notice(Notice::ProviderLinked { .. }) => "notice_provider_linked",
            Self::Notice(Notice::ApiKeyCreated { .. }) => "notice_api_key_created",
            Self::Notice(Notice::SecondFactorOn) => "notice_second_factor_on",
            Self::Notice(Notice::SecondFactorOff) => "notice_second_factor_off",
            Self::Notice(Notice::PasskeyAdded { .. }) => "notice_passkey_added",
            Self::Notice(Notice::PasskeyRemoved { .. }) => "notice_passkey_removed",
        }
    }

    /// The link the mail carries, if any (logged in development when mail
    /// goes to files).
    pub fn link(&self) -> Option<&str> {
        match self {
            Self::VerifyEmail { link } | Self::ResetPassword { link } => Some(link),
            Self::Notice(_) => None,
        }
    }

    /// Subject, plain text and HTML, for `name`; `base` is the server's
    /// public origin (for the "reset your password" hint of notices).
    pub fn render(&self, name: &str, base: &str) -> (String, String, String) {
        let (subject, lines, action): (&str, Vec<String>, Option<(&str, &str)>) = match self {
            Self::VerifyEmail { link } => (
                "Confirm your email address",
                vec![
                    "Please confirm that this is your email address by opening the link below.".into(),
                    "The link works once, for 24 hours. If you did not sign up, ignore this mail.".into(),
                ],
                Some(("Confirm my address", link)),
            ),
            Self::ResetPassword { link } => (
                "Reset your password",
                vec![
                    "Someone asked to reset the password of your account. If it was you, choose a new password \
                     with the link below."
                        .into(),
                    "The link works once, for 30 minutes. If it was not you, ignore this mail: your password \
                     stays as it is."
                        .into(),
                ],
                Some(("Choose a new password", link)),
            ),
            Self::Notice(notice) => {
                let (subject, what) = match notice {
                    Notice::PasswordChanged => ("Your password was changed", "Your password was changed.".to_owned()),
                    Notice::PasswordReset => (
                        "Your password was reset",
                        "Your password was reset with a link sent to this address. Every sign-in, session and \
                         API key of your account was stopped."
                            .to_owned(),
                    ),
                    Notice::ProviderLinked { provider } => (
                        "A new sign-in method was linked",
                        format!("Your {provider} account can now sign in to your account."),
                    ),
                    Notice::ApiKeyCreated { key_name } => {
                        ("A new API key was created", format!("A new API key named \"{key_name}\" was created."))
                    }
                    Notice::SecondFactorOn => (
                        "A second factor was turned on",
                        "A second sign-in factor was turned on for your account.".to_owned(),
                    ),
                    Notice::SecondFactorOff => (
                        "A second factor was turned off",
                        "A second sign-in factor was turned off for your account.".to_owned(),
                    ),
                    Notice::PasskeyAdded { passkey_name } => (
                        "A passkey was added",
                        format!("A passkey named \"{passkey_name}\" can now sign in to your account."),
                    ),
                    Notice::PasskeyRemoved { passkey_name } => (
                        "A passkey was removed",
                        format!("The passkey named \"{passkey_name}\" was removed from your account."),
                    ),
                };
                let hint = format!(
                    "If this was not you, reset your password at {base}/reset-password and tell your administrator."
                );
                (subject, vec![what, hint], None)
            }
        };
        let greeting = format!("Hello {name},");
        let mut text = format!("{greeting}\n\n");
        let mut html = format!("<!doctype html>\n<html><body>\n<p>{}</p>\n", escape(&greeting));
        for line in &lines {
            text.push_str(line);
            text.push_str("\n\n");
            html.push_str(&format!("<p>{}</p>\n", escape(line)));
        }
        if let Some((label, link)) = action {
            text.push_str(&format!("{label}: {link}\n\n"));
            html.push_str(&format!("<p><a href=\"{}\">{}</a></p>\n", escape(link), escape(label)));
        }
        text.push_str("-- \nRampart\n");
        html.push_str("<p>Rampart</p>\n</body></html>\n");
        (subject.to_owned(), text, html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_or_key_name_cannot_inject_html_and_notices_carry_no_link() {
        let letter = Letter::Notice(Notice::ApiKeyCreated { key_name: "<script>x</script>".into() });
        let (subject, text, html) = letter.render("<b>Eve</b>", "https://api.example.com");
        assert_eq!(subject, "A new API key was created");
        assert!(text.contains("\"<script>x</script>\""), "plain text keeps the name as typed");
        assert!(!html.contains("<script>") && !html.contains("<b>Eve"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert_eq!(letter.link(), None);
        assert!(text.contains("https://api.example.com/reset-password"));

        let link = "https://api.example.com/verify-email?token=ev_abc&x=\"";
        let (_, text, html) = Letter::VerifyEmail { link: link.into() }.render("Ada", "https://api.example.com");
        assert!(text.contains(link));
        assert!(html.contains("href=\"https://api.example.com/verify-email?token=ev_abc&amp;x=&quot;\""), "{html}");
    }
}
