//! Sign-in at OAuth 2.0 / OpenID Connect providers: the authorization code
//! flow as RFC 9700 (OAuth 2.0 Security BCP) asks, with `state`, PKCE S256
//! and (OIDC) a nonce on every flow, an exact redirect URI and an HTTP
//! client that follows no redirects (no SSRF through a provider's answer).
//!
//! Three kinds of provider, chosen from `oauth.providers.<name>`:
//! - OIDC, by `issuer` (discovery; `google` needs none): the ID token is
//!   checked by `openidconnect` (signature, `iss`, `aud`, `azp`, expiry,
//!   nonce); claims missing from it are read from the userinfo endpoint,
//!   whose `sub` must match.
//! - `github`: OAuth 2.0 plus GitHub's REST API (`/user`, `/user/emails`,
//!   where GitHub says which addresses are verified).
//! - any other OAuth 2.0 provider with `auth_url`, `token_url` and a
//!   `userinfo_url` answering OIDC-style claims (`sub`, `email`,
//!   `email_verified`, `name`).
//!
//! This module speaks to providers only; which user an account becomes is
//! decided in `accounts::sign_in_with_provider`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use openidconnect::{
    AccessToken, AdditionalProviderMetadata, AuthType, AuthUrl, AuthenticationFlow, AuthorizationCode, ClientId,
    ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, Scope, SubjectIdentifier, TokenResponse, TokenUrl,
    core::{
        CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType,
        CoreSubjectIdentifierType, CoreUserInfoClaims,
    },
    url::Url,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::config::{OAuthConfig, OAuthProviderConfig};

/// How long discovered metadata (endpoints and signing keys) is trusted
/// before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const GITHUB_AUTH_URL: &str = "https://github.com/login/oauth/authorize";
const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
const GITHUB_USER_URL: &str = "https://api.github.com/user";

/// Why a provider round trip failed; `code()` is what `/login?error=` shows.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("the provider's metadata could not be fetched: {0}")]
    Unavailable(String),
    #[error("the authorization code was refused: {0}")]
    Exchange(String),
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    #[error("the provider's user information could not be read: {0}")]
    UserInfo(String),
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "provider_unavailable",
            Self::Exchange(_) => "code_rejected",
            Self::IdToken(_) => "invalid_id_token",
            Self::UserInfo(_) => "userinfo_failed",
        }
    }
}

/// What the browser is sent to, and what must be kept to finish the flow.
pub struct AuthorizationStart {
    pub url: Url,
    pub state: String,
    pub pkce_verifier: String,
    /// Empty for plain OAuth 2.0 providers.
    pub nonce: String,
}

/// The account a provider vouched for.
#[derive(Debug, Clone)]
pub struct ProviderAccount {
    pub subject: String,
    pub email: Option<String>,
    /// Only `true` when the provider says so explicitly.
    pub email_verified: bool,
    pub name: Option<String>,
}

/// RFC 9207: whether the provider sends `iss` with its authorization
/// responses (then a response without it is refused).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct IssParameter {
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for IssParameter {}

type Metadata = ProviderMetadata<
    IssParameter,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A client made from discovered metadata: authorization and token
/// endpoints set, userinfo maybe.
type OidcClient = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A plain OAuth 2.0 client: authorization and token endpoints set.
type PlainClient = oauth2::basic::BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

enum Kind {
    Oidc { issuer: IssuerUrl, metadata: RwLock<Option<(Instant, Box<Metadata>)>> },
    GitHub { auth_url: AuthUrl, token_url: TokenUrl, user_url: Url },
    OAuth2 { auth_url: AuthUrl, token_url: TokenUrl, userinfo_url: Url },
}

pub struct Provider {
    pub name: String,
    pub display_name: String,
    kind: Kind,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect_url: RedirectUrl,
    scopes: Vec<String>,
    auth_type: AuthType,
}

/// The configured providers and one HTTP client for all of them.
pub struct OAuthProviders {
    providers: BTreeMap<String, Provider>,
    http: reqwest::Client,
}

impl OAuthProviders {
    /// Builds every provider; nothing is fetched until a flow starts, so a
    /// provider that is down does not stop the server.
    pub fn from_config(config: &OAuthConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("rampart/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let providers = config
            .providers
            .iter()
            .map(|(name, provider)| Ok((name.clone(), Provider::from_config(name, provider)?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { providers, http })
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    pub async fn start(&self, provider: &Provider) -> Result<AuthorizationStart, OAuthError> {
        provider.start(&self.http).await
    }

    pub async fn finish(
        &self,
        provider: &Provider,
        code: String,
        pkce_verifier: String,
        nonce: &str,
    ) -> Result<ProviderAccount, OAuthError> {
        provider.finish(&self.http, code, pkce_verifier, nonce).await
    }

    /// Checks the RFC 9207 `iss` of an authorization response: when sent it
    /// must name this provider; when the provider announces it, it must be
    /// sent. Plain OAuth 2.0 providers have no issuer to compare.
    pub async fn check_response_issuer(&self, provider: &Provider, iss: Option<&str>) -> Result<bool, OAuthError> {
        let Kind::Oidc { issuer, .. } = &provider.kind else { return Ok(true) };
        let announced = provider
            .metadata(&self.http)
            .await?
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            .unwrap_or(false);
        Ok(match iss {
            Some(iss) => iss == issuer.as_str(),
            None => !announced,
        })
    }
}

fn url(value: &str, key: &str) -> anyhow::Result<Url> {
    Url::parse(value).map_err(|error| anyhow::anyhow!("{key}: {error}"))
}

impl Provider {
    fn from_config(name: &str, config: &OAuthProviderConfig) -> anyhow::Result<Self> {
        let key = |field: &str| format!("oauth.providers.{name}.{field}");
        let endpoint =
            |value: &str, default: &str, field: &str| url(if value.is_empty() { default } else { value }, &key(field));
        let kind = if !config.issuer.is_empty() || (name == "google" && config.auth_url.is_empty()) {
            let issuer = if config.issuer.is_empty() { GOOGLE_ISSUER } else { config.issuer.as_str() };
            Kind::Oidc { issuer: IssuerUrl::new(issuer.to_owned())?, metadata: RwLock::new(None) }
        } else if name == "github" {
            Kind::GitHub {
                auth_url: AuthUrl::from_url(endpoint(&config.auth_url, GITHUB_AUTH_URL, "auth_url")?),
                token_url: TokenUrl::from_url(endpoint(&config.token_url, GITHUB_TOKEN_URL, "token_url")?),
                user_url: endpoint(&config.userinfo_url, GITHUB_USER_URL, "userinfo_url")?,
            }
        } else {
            Kind::OAuth2 {
                auth_url: AuthUrl::from_url(url(&config.auth_url, &key("auth_url"))?),
                token_url: TokenUrl::from_url(url(&config.token_url, &key("token_url"))?),
                userinfo_url: url(&config.userinfo_url, &key("userinfo_url"))?,
            }
        };
        let scopes = if !config.scopes.is_empty() {
            config.scopes.clone()
        } else if matches!(kind, Kind::GitHub { .. }) {
            vec!["read:user".into(), "user:email".into()]
        } else {
            vec!["openid".into(), "email".into(), "profile".into()]
        };
        let secret = config.client_secret.expose_secret();
        Ok(Self {
            name: name.to_owned(),
            display_name: if config.display_name.is_empty() {
                default_display_name(name)
            } else {
                config.display_name.clone()
            },
            kind,
            client_id: ClientId::new(config.client_id.clone()),
            client_secret: (!secret.is_empty()).then(|| ClientSecret::new(secret.to_owned())),
            redirect_url: RedirectUrl::from_url(url(&config.redirect_url, &key("redirect_url"))?),
            scopes,
            auth_type: if config.token_auth == "client_secret_post" {
                AuthType::RequestBody
            } else {
                AuthType::BasicAuth
            },
        })
    }

    /// The issuer for OIDC providers.
    pub fn issuer(&self) -> Option<&str> {
        match &self.kind {
            Kind::Oidc { issuer, .. } => Some(issuer.as_str()),
            _ => None,
        }
    }

    async fn metadata(&self, http: &reqwest::Client) -> Result<Metadata, OAuthError> {
        let Kind::Oidc { issuer, metadata } = &self.kind else {
            return Err(OAuthError::Unavailable("not an OpenID Connect provider".into()));
        };
        if let Some((fetched, cached)) = metadata.read().await.as_ref()
            && fetched.elapsed() < METADATA_TTL
        {
            return Ok(Metadata::clone(cached));
        }
        let fresh = Metadata::discover_async(issuer.clone(), http)
            .await
            .map_err(|error| OAuthError::Unavailable(error_chain(&error)))?;
        *metadata.write().await = Some((Instant::now(), Box::new(fresh.clone())));
        Ok(fresh)
    }

    async fn start(&self, http: &reqwest::Client) -> Result<AuthorizationStart, OAuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = match &self.kind {
            Kind::Oidc { .. } => {
                let client = self.oidc_client(self.metadata(http).await?);
                let (url, state, nonce) = client
                    .authorize_url(
                        AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                        CsrfToken::new_random,
                        Nonce::new_random,
                    )
                    // `openid` is always sent by the library.
                    .add_scopes(self.scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())))
                    .set_pkce_challenge(challenge)
                    .url();
                (url, state, nonce.secret().clone())
            }
            Kind::GitHub { auth_url, token_url, .. } | Kind::OAuth2 { auth_url, token_url, .. } => {
                let client = self.oauth2_client(auth_url, token_url);
                let (url, state) = client
                    .authorize_url(CsrfToken::new_random)
                    .add_scopes(self.scopes.iter().map(|s| Scope::new(s.clone())))
                    .set_pkce_challenge(challenge)
                    .url();
                (url, state, String::new())
            }
        };
        Ok(AuthorizationStart { url, state: state.secret().clone(), pkce_verifier: verifier.secret().clone(), nonce })
    }

    async fn finish(
        &self,
        http: &reqwest::Client,
        code: String,
        pkce_verifier: String,
        nonce: &str,
    ) -> Result<ProviderAccount, OAuthError> {
        let code = AuthorizationCode::new(code);
        let verifier = PkceCodeVerifier::new(pkce_verifier);
        match &self.kind {
            Kind::Oidc { .. } => {
                let client = self.oidc_client(self.metadata(http).await?);
                let tokens = client
                    .exchange_code(code)
                    .map_err(|error| OAuthError::Exchange(error.to_string()))?
                    .set_pkce_verifier(verifier)
                    .request_async(http)
                    .await
                    .map_err(|error| OAuthError::Exchange(error_chain(&error)))?;
                let id_token =
                    tokens.id_token().ok_or_else(|| OAuthError::IdToken("no ID token was returned".into()))?;
                let claims = id_token
                    .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned()))
                    .map_err(|error| OAuthError::IdToken(error_chain(&error)))?;
                let mut account = ProviderAccount {
                    subject: claims.subject().to_string(),
                    email: claims.email().map(|email| email.to_string()),
                    email_verified: claims.email_verified().unwrap_or(false),
                    name: claims.name().and_then(|name| name.get(None)).map(|name| name.to_string()),
                };
                if account.email.is_none() && client.user_info_url().is_some() {
                    let info: CoreUserInfoClaims = client
                        .user_info(tokens.access_token().clone(), Some(SubjectIdentifier::new(account.subject.clone())))
                        .map_err(|error| OAuthError::UserInfo(error.to_string()))?
                        .request_async(http)
                        .await
                        .map_err(|error| OAuthError::UserInfo(error_chain(&error)))?;
                    account.email = info.email().map(|email| email.to_string());
                    account.email_verified = info.email_verified().unwrap_or(false);
                    if account.name.is_none() {
                        account.name = info.name().and_then(|name| name.get(None)).map(|name| name.to_string());
                    }
                }
                Ok(account)
            }
            Kind::GitHub { auth_url, token_url, user_url } => {
                let access = self.exchange_plain(http, auth_url, token_url, code, verifier).await?;
                github_account(http, user_url, &access).await
            }
            Kind::OAuth2 { auth_url, token_url, userinfo_url } => {
                let access = self.exchange_plain(http, auth_url, token_url, code, verifier).await?;
                userinfo_account(http, userinfo_url, &access).await
            }
        }
    }

    fn oidc_client(&self, metadata: Metadata) -> OidcClient {
        CoreClient::from_provider_metadata(metadata, self.client_id.clone(), self.client_secret.clone())
            .set_redirect_uri(self.redirect_url.clone())
            .set_auth_type(self.auth_type.clone())
    }

    fn oauth2_client(&self, auth_url: &AuthUrl, token_url: &TokenUrl) -> PlainClient {
        let client = oauth2::basic::BasicClient::new(self.client_id.clone())
            .set_auth_uri(auth_url.clone())
            .set_token_uri(token_url.clone())
            .set_redirect_uri(self.redirect_url.clone())
            .set_auth_type(self.auth_type.clone());
        match &self.client_secret {
            Some(secret) => client.set_client_secret(secret.clone()),
            None => client,
        }
    }

    async fn exchange_plain(
        &self,
        http: &reqwest::Client,
        auth_url: &AuthUrl,
        token_url: &TokenUrl,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
    ) -> Result<AccessToken, OAuthError> {
        let tokens = self
            .oauth2_client(auth_url, token_url)
            .exchange_code(code)
            .set_pkce_verifier(verifier)
            .request_async(http)
            .await
            .map_err(|error| OAuthError::Exchange(error_chain(&error)))?;
        Ok(tokens.access_token().clone())
    }
}

fn default_display_name(name: &str) -> String {
    match name {
        "github" => "GitHub".into(),
        "google" => "Google".into(),
        other => {
            let mut chars = other.chars();
            chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
        }
    }
}

/// An error with its causes, for the log (never shown to the user).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
    access: &AccessToken,
) -> Result<T, OAuthError> {
    let response = http
        .get(url.clone())
        .bearer_auth(access.secret())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| OAuthError::UserInfo(error_chain(&error)))?;
    if !response.status().is_success() {
        return Err(OAuthError::UserInfo(format!("{url} answered {}", response.status())));
    }
    response.json().await.map_err(|error| OAuthError::UserInfo(error_chain(&error)))
}

/// A subject may be a JSON string or number (GitHub's ids are numbers).
#[derive(Deserialize)]
#[serde(untagged)]
enum SubjectValue {
    Text(String),
    Number(u64),
}

impl SubjectValue {
    fn into_string(self) -> String {
        match self {
            Self::Text(text) => text,
            Self::Number(number) => number.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct GitHubEmail {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

/// The address a GitHub account signs in with, and whether it counts as
/// verified: only when GitHub's emails API marks that address `verified`.
/// The primary address if verified, else any verified one, else the
/// primary one (unverified: it may create an account, never link one).
/// The public `email` of `/user` is never used: GitHub does not say
/// whether it is verified.
fn github_email(emails: &[GitHubEmail]) -> (Option<String>, bool) {
    let chosen = emails
        .iter()
        .find(|e| e.primary && e.verified)
        .or_else(|| emails.iter().find(|e| e.verified))
        .or_else(|| emails.iter().find(|e| e.primary));
    (chosen.map(|e| e.email.clone()), chosen.is_some_and(|e| e.verified))
}

async fn github_account(
    http: &reqwest::Client,
    user_url: &Url,
    access: &AccessToken,
) -> Result<ProviderAccount, OAuthError> {
    #[derive(Deserialize)]
    struct GitHubUser {
        id: SubjectValue,
        login: Option<String>,
        name: Option<String>,
    }
    let user: GitHubUser = get_json(http, user_url, access).await?;
    let emails_url = Url::parse(&format!("{}/emails", user_url.as_str().trim_end_matches('/')))
        .map_err(|error| OAuthError::UserInfo(error.to_string()))?;
    let emails: Vec<GitHubEmail> = get_json(http, &emails_url, access).await?;
    let (email, email_verified) = github_email(&emails);
    Ok(ProviderAccount { subject: user.id.into_string(), email, email_verified, name: user.name.or(user.login) })
}

/// A plain OAuth 2.0 provider's userinfo answer, OIDC-style. Its email
/// counts as verified only with an explicit `"email_verified": true`; a
/// provider without that claim never links an existing account.
#[derive(Deserialize)]
struct UserInfo {
    #[serde(alias = "id")]
    sub: SubjectValue,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
    name: Option<String>,
}

async fn userinfo_account(
    http: &reqwest::Client,
    userinfo_url: &Url,
    access: &AccessToken,
) -> Result<ProviderAccount, OAuthError> {
    let info: UserInfo = get_json(http, userinfo_url, access).await?;
    Ok(ProviderAccount {
        subject: info.sub.into_string(),
        email: info.email,
        email_verified: info.email_verified,
        name: info.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_named_for_people() {
        assert_eq!(default_display_name("github"), "GitHub");
        assert_eq!(default_display_name("google"), "Google");
        assert_eq!(default_display_name("okta"), "Okta");
    }

    #[test]
    fn github_counts_only_an_address_its_emails_api_marks_verified() {
        let emails = |json: &str| github_email(&serde_json::from_str::<Vec<GitHubEmail>>(json).unwrap());
        let primary_unverified = r#"[{"email":"p@x.org","primary":true,"verified":false},
                                     {"email":"v@x.org","primary":false,"verified":true}]"#;
        assert_eq!(emails(primary_unverified), (Some("v@x.org".to_owned()), true));
        let none_verified = r#"[{"email":"p@x.org","primary":true,"verified":false},
                                {"email":"o@x.org","primary":false,"verified":false}]"#;
        assert_eq!(emails(none_verified), (Some("p@x.org".to_owned()), false));
        // No `verified` member: not verified.
        assert_eq!(emails(r#"[{"email":"p@x.org","primary":true}]"#), (Some("p@x.org".to_owned()), false));
        assert_eq!(emails("[]"), (None, false));
        let both = r#"[{"email":"v@x.org","primary":false,"verified":true},
                       {"email":"p@x.org","primary":true,"verified":true}]"#;
        assert_eq!(emails(both), (Some("p@x.org".to_owned()), true));
    }

    #[test]
    fn a_plain_provider_without_the_claim_never_verifies() {
        let info: UserInfo = serde_json::from_str(r#"{"sub":"1","email":"a@x.org"}"#).unwrap();
        assert!(!info.email_verified);
        let info: UserInfo = serde_json::from_str(r#"{"id":2,"email":"a@x.org","email_verified":false}"#).unwrap();
        assert!(!info.email_verified);
        let info: UserInfo = serde_json::from_str(r#"{"sub":"1","email":"a@x.org","email_verified":true}"#).unwrap();
        assert!(info.email_verified);
    }

    #[test]
    fn subjects_may_be_numbers_or_strings() {
        let number: SubjectValue = serde_json::from_str("12345").unwrap();
        let text: SubjectValue = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!((number.into_string(), text.into_string()), ("12345".to_owned(), "abc".to_owned()));
    }
}
