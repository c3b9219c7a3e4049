//! The WebAuthn relying party (webauthn-rs): passkey registration, the
//! passwordless sign-in with discoverable credentials, and the passkey as
//! a second step. Ceremony states come back as JSON for the store, so the
//! instance that finishes a ceremony need not be the one that began it.

use serde_json::Value;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use crate::{config::Config, domain::User};

/// How long an authenticator may take; ceremonies are kept as long.
pub const CEREMONY_TTL: time::Duration = time::Duration::minutes(5);

/// A credential the ceremony refused: not a WebAuthn answer, the wrong
/// origin or challenge, a bad signature, no user verification... The
/// reason is for logs; clients get one answer.
#[derive(Debug, thiserror::Error)]
#[error("passkey refused: {0}")]
pub struct Refused(pub String);

fn refused(error: impl std::fmt::Display) -> Refused {
    Refused(error.to_string())
}

/// A passkey made by a registration: what the store keeps.
pub struct NewPasskey {
    pub credential_id: Vec<u8>,
    /// webauthn-rs's `Passkey` as JSON.
    pub passkey: String,
}

/// A passkey sign-in answer, identified: whose, and which credential.
pub struct Presented {
    credential: PublicKeyCredential,
    pub user_id: Uuid,
    pub credential_id: Vec<u8>,
}

pub struct RelyingParty {
    webauthn: Webauthn,
}

impl RelyingParty {
    /// The relying party of the configuration: `Ok(None)` when passkeys
    /// are off because the origin was derived (no `[webauthn]` keys) from
    /// a `server.public_url` they cannot work with; `Err` when `[webauthn]`
    /// is set and wrong, which stops the start.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        match Self::new(config) {
            Ok(party) => Ok(Some(party)),
            Err(_) if config.webauthn.origin.is_empty() && config.webauthn.rp_id.is_empty() => Ok(None),
            Err(message) => Err(message),
        }
    }

    /// The relying party `[webauthn]` describes (or `server.public_url`
    /// implies); a message naming what is wrong otherwise.
    pub fn new(config: &Config) -> Result<Self, String> {
        let origin_text = config.webauthn_origin();
        let origin = Url::parse(&origin_text).map_err(|_| format!("origin {origin_text:?} is not a URL"))?;
        if !matches!(origin.scheme(), "https" | "http") || origin.path() != "/" || origin.query().is_some() {
            return Err(format!("origin {origin_text:?} is not an origin like \"https://app.example.com\""));
        }
        let Some(host) = origin.domain() else {
            return Err(format!(
                "origin {origin_text:?} has no domain name (browsers refuse passkeys for IP addresses): set \
                 webauthn.origin or server.public_url"
            ));
        };
        let rp_id = if config.webauthn.rp_id.is_empty() { host } else { config.webauthn.rp_id.as_str() };
        let webauthn = WebauthnBuilder::new(rp_id, &origin)
            .map_err(|_| format!("rp_id {rp_id:?} is neither the origin's host {host:?} nor a domain above it"))?
            .rp_name("Rampart")
            .timeout(std::time::Duration::from_secs(CEREMONY_TTL.whole_seconds().unsigned_abs()))
            .build()
            .map_err(|error| format!("{error}"))?;
        Ok(Self { webauthn })
    }

    /// Options for `navigator.credentials.create` (their `publicKey`
    /// member, JSON form) and the ceremony state. A discoverable credential
    /// is required: the passwordless sign-in names no user. `existing` are
    /// the user's credential ids, which the authenticator must not register
    /// twice.
    pub fn start_registration(&self, user: &User, existing: Vec<Vec<u8>>) -> anyhow::Result<(Value, String)> {
        let exclude = (!existing.is_empty()).then_some(existing);
        let (options, state) = self.webauthn.start_passkey_registration(user.id, &user.email, &user.name, exclude)?;
        let mut options = serde_json::to_value(options.public_key)?;
        // webauthn-rs asks for a server-side credential; ask for a passkey.
        if let Some(selection) = options.get_mut("authenticatorSelection").and_then(Value::as_object_mut) {
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
        }
        Ok((options, serde_json::to_string(&state)?))
    }

    /// Checks the authenticator's answer (`credential.toJSON()`) against
    /// the ceremony `state`.
    pub fn finish_registration(&self, credential: Value, state: &str) -> Result<NewPasskey, Refused> {
        let state: PasskeyRegistration = serde_json::from_str(state).map_err(refused)?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(|error| Refused(format!("not a registration: {error}")))?;
        // An authenticator that says it made a server-side credential did
        // not make a passkey: it could not sign in without an email.
        if credential.extensions.cred_props.as_ref().is_some_and(|props| props.rk == Some(false)) {
            return Err(Refused("the authenticator made a non-discoverable credential".into()));
        }
        let passkey = self.webauthn.finish_passkey_registration(&credential, &state).map_err(refused)?;
        Ok(NewPasskey {
            credential_id: passkey.cred_id().to_vec(),
            passkey: serde_json::to_string(&passkey).map_err(refused)?,
        })
    }

    /// Options for `navigator.credentials.get` with no credentials named
    /// (the authenticator offers its own) and the ceremony state.
    pub fn start_sign_in(&self) -> anyhow::Result<(Value, String)> {
        let (options, state) = self.webauthn.start_discoverable_authentication()?;
        Ok((serde_json::to_value(options.public_key)?, serde_json::to_string(&state)?))
    }

    /// Reads whose credential a sign-in answer claims to be (not checked yet).
    pub fn identify(&self, credential: Value) -> Result<Presented, Refused> {
        let credential: PublicKeyCredential =
            serde_json::from_value(credential).map_err(|error| Refused(format!("not an assertion: {error}")))?;
        let (user_id, credential_id) =
            self.webauthn.identify_discoverable_authentication(&credential).map_err(refused)?;
        let credential_id = credential_id.to_vec();
        Ok(Presented { credential, user_id, credential_id })
    }

    /// Checks a sign-in answer against the ceremony `state` and the stored
    /// passkey it names; the passkey's new state (its counter) comes back.
    pub fn finish_sign_in(&self, presented: &Presented, state: &str, stored: &str) -> Result<String, Refused> {
        let state: DiscoverableAuthentication = serde_json::from_str(state).map_err(refused)?;
        let mut passkey: Passkey = serde_json::from_str(stored).map_err(refused)?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(&presented.credential, state, &passkey)
            .map_err(refused)?;
        passkey.update_credential(&result);
        serde_json::to_string(&passkey).map_err(refused)
    }

    /// Options naming the user's `passkeys` (stored JSON), for a second
    /// step, and the ceremony state.
    pub fn start_second_step(&self, passkeys: &[String]) -> anyhow::Result<(Value, String)> {
        let passkeys: Vec<Passkey> =
            passkeys.iter().map(|stored| serde_json::from_str(stored)).collect::<Result<_, _>>()?;
        let (options, state) = self.webauthn.start_passkey_authentication(&passkeys)?;
        Ok((serde_json::to_value(options.public_key)?, serde_json::to_string(&state)?))
    }

    /// Checks a second step's answer against its ceremony `state` (which
    /// names the user's passkeys only).
    pub fn finish_second_step(&self, credential: Value, state: &str) -> Result<Used, Refused> {
        let state: PasskeyAuthentication = serde_json::from_str(state).map_err(refused)?;
        let credential: PublicKeyCredential =
            serde_json::from_value(credential).map_err(|error| Refused(format!("not an assertion: {error}")))?;
        let result = self.webauthn.finish_passkey_authentication(&credential, &state).map_err(refused)?;
        Ok(Used { result })
    }
}

/// A passkey that passed a second step.
pub struct Used {
    result: AuthenticationResult,
}

impl Used {
    pub fn credential_id(&self) -> &[u8] {
        self.result.cred_id()
    }

    /// The stored passkey with this use's counter applied.
    pub fn applied_to(&self, stored: &str) -> Option<String> {
        let mut passkey: Passkey = serde_json::from_str(stored).ok()?;
        passkey.update_credential(&self.result);
        serde_json::to_string(&passkey).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(public_url: &str, origin: &str, rp_id: &str) -> Config {
        let mut config = Config::defaults();
        config.server.public_url = public_url.into();
        config.webauthn.origin = origin.into();
        config.webauthn.rp_id = rp_id.into();
        config
    }

    #[test]
    fn the_relying_party_is_derived_from_the_public_url_and_checked() {
        assert!(RelyingParty::new(&config_with("", "", "")).is_ok(), "development: http://localhost:<port>");
        assert!(RelyingParty::new(&config_with("https://app.example.com", "", "")).is_ok());
        assert!(RelyingParty::new(&config_with("https://app.example.com", "", "example.com")).is_ok());
        let wrong_domain = RelyingParty::new(&config_with("https://app.example.com", "", "other.com")).err();
        assert!(wrong_domain.is_some_and(|message| message.contains("\"other.com\"")));
        let lookalike = RelyingParty::new(&config_with("", "https://myexample.com", "example.com")).err();
        assert!(lookalike.is_some(), "a suffix that is not a domain above");
        let ip = RelyingParty::new(&config_with("http://127.0.0.1:3000", "", "")).err();
        assert!(ip.is_some_and(|message| message.contains("IP")));
        // Derived from such a public URL, passkeys are off; set, it is an error.
        assert!(RelyingParty::from_config(&config_with("http://127.0.0.1:3000", "", "")).is_ok_and(|p| p.is_none()));
        assert!(RelyingParty::from_config(&config_with("", "http://127.0.0.1:3000", "")).is_err());
        // A wrong setting is a configuration problem: the start (and
        // `rampart config check`) names it.
        let problems = config_with("https://app.example.com", "", "other.com").problems();
        assert!(problems.iter().any(|problem| problem.starts_with("webauthn: rp_id \"other.com\"")), "{problems:?}");
        assert!(config_with("http://127.0.0.1:3000", "", "").problems().is_empty());
        assert!(RelyingParty::new(&config_with("", "https://app.example.com/login", "")).is_err());
    }
}
