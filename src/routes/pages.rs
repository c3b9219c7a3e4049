//! `/`, `/login`, `/account`, `/verify-email` and `/reset-password`: small
//! server-rendered pages for people.
//! Plain HTML with one stylesheet and at most one script each, served by
//! Rampart under the same strict CSP as `/admin` (only the page's own
//! files, no inline code).
//!
//! `/verify-email?token=` posts the mailed token to
//! `POST /auth/email/verify` on opening; `/reset-password` asks for the
//! address to mail a reset link to, or (with `?token=`) for the new
//! password. Both share `email.js`; neither renders the token.
//!
//! `/` points a newcomer to `/login` and `/docs` instead of a bare 404; a
//! proxy route at "/" takes it over (the gateway is asked before the
//! router). `/login` posts email and password to `POST /auth/session`
//! (script), then opens `?next=` when it is a path on this site (else
//! `/account`), and links to each provider's `start`; `?error=<code>` from
//! a failed OAuth callback is shown as a sentence from a fixed table, never
//! echoed.
//! `/account` shows who is signed in and links each provider to the account
//! (`start?link=true`), or sends the browser to `/login`. Its "API keys"
//! card is filled by `account.js` from `/api/profile/api-keys`: the list,
//! a form that creates a key and shows its secret once (a copy button, and
//! gone from the page when dismissed), and a "Revoke" button per key.

use axum::{
    extract::{RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::Routes;
use crate::layers::security_headers::{PASSKEY_PAGE_FEATURES, PERMISSIONS_POLICY};
use crate::{
    app::AppState,
    auth::principal::Caller,
    config::HumanDuration,
    domain::Scope,
    error::ApiError,
    html::escape,
    routes::admin_page::{PAGE_CSP, asset},
};

const STYLE: &str = include_str!("pages/pages.css");
const LOGIN_SCRIPT: &str = include_str!("pages/login.js");
const ACCOUNT_SCRIPT: &str = include_str!("pages/account.js");
const EMAIL_SCRIPT: &str = include_str!("pages/email.js");

/// Pages for people, not API operations: registered without OpenAPI
/// descriptions (`tests/api/openapi.rs` lists them).
pub fn router() -> Routes {
    Routes::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/account", get(account))
        .route("/verify-email", get(verify_email))
        .route("/reset-password", get(reset_password))
        .route("/pages/pages.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .route("/pages/login.js", get(|| async { asset(LOGIN_SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/pages/account.js", get(|| async { asset(ACCOUNT_SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/pages/email.js", get(|| async { asset(EMAIL_SCRIPT, "text/javascript; charset=utf-8") }))
}

/// The sentence shown for each `/login?error=` code; anything else gets the
/// generic one.
fn error_message(code: &str) -> &'static str {
    match code {
        "access_denied" => "You cancelled the sign-in at the provider.",
        "email_not_verified" => {
            "An account with this email exists, but the provider has not verified the address, so it was not \
             linked. Sign in with your password, or verify the email at the provider first."
        }
        "account_exists" => {
            "An account with this email already exists, and its address has not been verified, so the provider \
             was not linked to it. Sign in with your password, then link the provider on your account page."
        }
        "already_linked" => "This provider account is already linked to another account.",
        "email_missing" | "email_invalid" => "The provider did not share a usable email address.",
        "account_disabled" => "This account is disabled.",
        "flow_missing" | "flow_expired" | "invalid_state" => {
            "The sign-in could not be matched to this browser or took too long. Please try again."
        }
        "provider_unavailable" => "The sign-in provider could not be reached. Please try again later.",
        _ => "Signing in with the provider failed. Please try again.",
    }
}

/// How wide a page's column is: `Narrow` for a form, `Wide` for a page
/// with a table.
#[derive(Clone, Copy)]
enum Width {
    Narrow,
    Wide,
}

fn page(title: &str, script: Option<&str>, width: Width, body: &str) -> Response {
    let script = script.map(|src| format!("<script src=\"{src}\" defer></script>\n")).unwrap_or_default();
    let main = match width {
        Width::Narrow => "<main>",
        Width::Wide => "<main class=\"wide\">",
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title} · Rampart</title>\n\
         <link rel=\"stylesheet\" href=\"/pages/pages.css\">\n{script}</head>\n\
         <body>\n{main}\n{body}</main>\n</body>\n</html>\n"
    );
    let mut response = html.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page that runs a passkey ceremony: WebAuthn allowed for this origin's
/// own document (every other response denies it, as every other feature).
fn allowing_passkeys(mut response: Response) -> Response {
    response.headers_mut().insert(PERMISSIONS_POLICY, HeaderValue::from_static(PASSKEY_PAGE_FEATURES));
    response
}

/// What a newcomer sees at `/` when no proxy route serves it.
async fn home() -> Response {
    page(
        "Welcome",
        None,
        Width::Narrow,
        "<h1>Rampart</h1>\n<div class=\"card\">\n<p>This is a Rampart server.</p>\n\
         <p><a id=\"home-login\" href=\"/login\">Sign in</a> to your account, or read the \
         <a id=\"home-docs\" href=\"/docs/\">API documentation</a>.</p>\n</div>\n",
    )
}

async fn login(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let error = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or(""))
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(key, _)| key == "error").map(|(_, code)| code));
    let mut body = String::from("<h1>Sign in</h1>\n<div class=\"card\">\n");
    body.push_str(&format!(
        "<p class=\"error\" id=\"message\" role=\"alert\">{}</p>\n",
        error.as_deref().map(error_message).unwrap_or_default()
    ));
    // Without the script the form still never puts the password in a URL.
    body.push_str(
        "<form id=\"password-form\" class=\"card\" method=\"post\" action=\"/auth/session\">\n\
         <label>Email <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required></label>\n\
         <label>Password <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" \
         required></label>\n<button id=\"sign-in\" type=\"submit\">Sign in</button>\n</form>\n\
         <p class=\"hint\"><a id=\"forgot-password\" href=\"/reset-password\">Forgot password?</a></p>\n",
    );
    // The second step (a second factor is on): shown by the script after
    // the password, or at once for `?mfa=` (a provider sign-in's).
    body.push_str(
        "<form id=\"mfa-form\" class=\"card\" hidden>\n<h2>Second step</h2>\n<div id=\"mfa-code-step\">\n\
         <p>Enter the six digits your authenticator app shows, or one of your recovery codes.</p>\n\
         <label>Code <input id=\"mfa-code\" name=\"code\" type=\"text\" autocomplete=\"one-time-code\" \
         spellcheck=\"false\"></label>\n<button id=\"mfa-submit\" type=\"submit\">Continue</button>\n</div>\n\
         <button id=\"mfa-passkey\" type=\"button\" hidden>Use a passkey</button>\n</form>\n",
    );
    // Passwordless: the authenticator offers the passkeys it holds for
    // this site (shown by the script where the browser has WebAuthn).
    if state.passkeys.is_some() {
        body.push_str(
            "<div id=\"passkey-option\" hidden>\n<p class=\"divider\">or</p>\n\
             <button id=\"passkey-sign-in\" type=\"button\" class=\"secondary\">Sign in with a passkey</button>\n\
             </div>\n",
        );
    }
    if !state.oauth.is_empty() {
        body.push_str("<p class=\"divider\">or</p>\n");
        body.push_str(&provider_links(&state, "provider", "", "Sign in with"));
    }
    body.push_str("</div>\n");
    let response = page("Sign in", Some("/pages/login.js"), Width::Narrow, &body);
    if state.passkeys.is_some() { allowing_passkeys(response) } else { response }
}

/// Whether the query string carries a `token` (its value is the script's
/// to read: the server renders no part of it).
fn has_token(raw: Option<&str>) -> bool {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
        .is_ok_and(|pairs| pairs.iter().any(|(key, value)| key == "token" && !value.is_empty()))
}

/// `/verify-email?token=`: confirms the address on opening (the script
/// posts the token to `POST /auth/email/verify`).
async fn verify_email(RawQuery(raw): RawQuery) -> Response {
    let body = if has_token(raw.as_deref()) {
        "<h1>Confirm your email</h1>\n<div class=\"card\">\n\
         <form id=\"verify-form\" class=\"card\" method=\"post\" action=\"/auth/email/verify\">\n\
         <p>Confirming your address…</p>\n<button id=\"verify\" type=\"submit\">Confirm my address</button>\n</form>\n\
         <p id=\"done\" hidden>Your email address is confirmed. <a href=\"/account\">Go to your account</a>.</p>\n\
         <p class=\"error\" id=\"message\" role=\"alert\"></p>\n</div>\n"
    } else {
        "<h1>Confirm your email</h1>\n<div class=\"card\">\n\
         <p class=\"error\" id=\"message\" role=\"alert\">This page needs the link from the mail we sent. Signed \
         in, you can ask for a new one from your account.</p>\n</div>\n"
    };
    page("Confirm your email", Some("/pages/email.js"), Width::Narrow, body)
}

/// `/reset-password`: without a token, asks for the address to mail a
/// link to (`POST /auth/password/forgot`); with one (the mailed link), for
/// the new password (`POST /auth/password/reset`).
async fn reset_password(RawQuery(raw): RawQuery) -> Response {
    let body = if has_token(raw.as_deref()) {
        "<h1>Choose a new password</h1>\n<div class=\"card\">\n\
         <form id=\"reset-form\" class=\"card\" method=\"post\" action=\"/auth/password/reset\">\n\
         <label>New password <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"new-password\" minlength=\"15\" maxlength=\"128\" required></label>\n\
         <label>Again <input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" \
         required></label>\n<p class=\"hint\">At least 15 characters. You will be signed out everywhere.</p>\n\
         <button id=\"reset\" type=\"submit\">Set the new password</button>\n</form>\n\
         <p id=\"done\" hidden>Your password is changed. <a id=\"sign-in\" href=\"/login\">Sign in</a>.</p>\n\
         <p class=\"error\" id=\"message\" role=\"alert\"></p>\n</div>\n"
    } else {
        "<h1>Reset your password</h1>\n<div class=\"card\">\n\
         <form id=\"forgot-form\" class=\"card\" method=\"post\" action=\"/auth/password/forgot\">\n\
         <label>Email <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required></label>\n\
         <button id=\"send-link\" type=\"submit\">Mail me a link</button>\n</form>\n\
         <p id=\"done\" hidden>If an account has this address, a link to reset its password is on its way. It \
         works once, for 30 minutes.</p>\n<p class=\"error\" id=\"message\" role=\"alert\"></p>\n</div>\n"
    };
    page("Reset your password", Some("/pages/email.js"), Width::Narrow, body)
}

/// One link per configured provider to its `start`, as
/// `<a id="{id}-{name}" href=".../start{query}">{verb} {label}</a>`.
fn provider_links(state: &AppState, id: &str, query: &str, verb: &str) -> String {
    state
        .oauth
        .iter()
        .map(|provider| {
            format!(
                "<a class=\"provider\" id=\"{id}-{name}\" href=\"/auth/oauth/{name}/start{query}\">{verb} {label}</a>\n",
                name = escape(&provider.name),
                label = escape(&provider.display_name),
            )
        })
        .collect()
}

async fn account(State(state): State<AppState>, caller: Result<Caller, ApiError>) -> Result<Response, ApiError> {
    // A page for people: an API key (which may not even read the profile)
    // is sent to sign in like a guest.
    let principal = match caller {
        Ok(Caller::User(principal)) if principal.scopes().is_none() => principal,
        _ => {
            return Ok(
                (StatusCode::SEE_OTHER, [(header::LOCATION, HeaderValue::from_static("/login"))]).into_response()
            );
        }
    };
    let user = state.store.user_by_id(principal.user_id).await?;
    // Linking a provider here is how a person whose provider sign-in ended
    // in `account_exists` adds it: signed in, so the account is theirs.
    let mut links = String::new();
    if !state.oauth.is_empty() {
        links.push_str("<p>Sign in with a provider too:</p>\n");
        links.push_str(&provider_links(&state, "link", "?link=true", "Link"));
    }
    let body = format!(
        "<h1>Your account</h1>\n<div class=\"card\">\n<dl id=\"account\">\n\
         <dt>Name</dt><dd id=\"account-name\">{name}</dd>\n<dt>Email</dt><dd id=\"account-email\">{email}</dd>\n\
         <dt>Role</dt><dd id=\"account-role\">{role}</dd>\n<dt>Department</dt><dd>{department}</dd>\n</dl>\n\
         {unverified}{links}<p class=\"error\" id=\"message\" role=\"alert\"></p>\n\
         <button id=\"sign-out\" type=\"button\">Sign out</button>\n</div>\n{second_factor}{passkeys}{keys}",
        name = escape(&user.name),
        email = escape(&user.email),
        role = user.role.as_str(),
        department = escape(user.department.as_deref().unwrap_or("—")),
        keys = api_keys_card(&state),
        second_factor = SECOND_FACTOR_CARD,
        passkeys = if state.passkeys.is_some() { PASSKEYS_CARD } else { "" },
        unverified = if user.email_verified {
            ""
        } else {
            "<p id=\"unverified\" class=\"hint\">Your email address is not confirmed yet: follow the link we \
             mailed you.</p>\n<button id=\"send-verification\" class=\"secondary\" type=\"button\">Send me a new \
             link</button>\n<p id=\"verification-status\" class=\"hint\" role=\"status\"></p>\n"
        },
    );
    let response = page("Your account", Some("/pages/account.js"), Width::Wide, &body);
    Ok(if state.passkeys.is_some() { allowing_passkeys(response) } else { response })
}

/// What a scope lets a key do, in words for its checkbox (API.md, "API
/// keys").
fn scope_purpose(scope: &Scope) -> &'static str {
    match scope {
        Scope::PostsRead => "list and read posts",
        Scope::PostsWrite => "create and edit posts",
        Scope::PostsDelete => "delete posts",
        Scope::ProfileRead => "read your profile",
        Scope::ProfileWrite => "change your profile",
        Scope::AdminRead => "read the dashboard, users, audit trail and blocks",
        Scope::AdminWrite => "change users and blocks",
        Scope::AllRoutes => "call every protected route",
        Scope::Route(_) => "call this protected route",
    }
}

/// How long a key may live, in words: `365 days`, else as configured.
fn lifetime(max: HumanDuration) -> String {
    let seconds = max.0.as_secs();
    match (seconds / 86_400, seconds % 86_400) {
        (1, 0) => "1 day".to_owned(),
        (days, 0) => format!("{days} days"),
        _ => max.to_string(),
    }
}

/// The "Two-factor sign-in" card of `/account`, filled by `account.js`
/// from `GET /api/profile/mfa`: turning TOTP on (the QR code and key come
/// from `POST /api/profile/mfa/totp`, never from the server's HTML), the
/// recovery codes shown once, turning it off with a code.
const SECOND_FACTOR_CARD: &str = "<h2>Two-factor sign-in</h2>\n<div class=\"card\" id=\"second-factor\">\n\
     <p id=\"mfa-status\" role=\"status\"></p>\n\
     <button id=\"totp-start\" type=\"button\" hidden>Set up an authenticator app</button>\n\
     <div id=\"totp-enrol\" hidden>\n\
     <p>Scan this code with your authenticator app, or type the key into it; then enter the six digits it \
     shows.</p>\n<div id=\"totp-qr\" class=\"qr\"></div>\n\
     <p>Key: <code id=\"totp-secret\"></code></p>\n\
     <form id=\"totp-confirm-form\" novalidate>\n<label>Code <input id=\"totp-code\" type=\"text\" \
     inputmode=\"numeric\" autocomplete=\"one-time-code\" required></label>\n\
     <button id=\"totp-confirm\" type=\"submit\">Turn on</button>\n</form>\n</div>\n\
     <div id=\"recovery-panel\" class=\"notice\" hidden>\n\
     <p><strong>Save these recovery codes now: each signs you in once if you lose your app, and they will not \
     be shown again.</strong></p>\n<ul id=\"recovery-codes\"></ul>\n\
     <button id=\"recovery-done\" type=\"button\" class=\"secondary\">Done</button>\n</div>\n\
     <form id=\"totp-off-form\" novalidate hidden>\n<label>Code from your app <input id=\"totp-off-code\" \
     type=\"text\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required></label>\n\
     <button id=\"totp-off\" type=\"submit\" class=\"secondary\">Turn off</button>\n</form>\n\
     <p class=\"error\" id=\"mfa-message\" role=\"alert\"></p>\n</div>\n";

/// The "Passkeys" card of `/account`, filled by `account.js` from `GET
/// /api/profile/passkeys`; adding one runs the browser's WebAuthn
/// ceremony between `register/start` and `register/finish`.
const PASSKEYS_CARD: &str = "<h2>Passkeys</h2>\n<div class=\"card\" id=\"passkeys-card\">\n\
     <p>A passkey signs you in with your device's screen lock or security key: no password, nothing to \
     type. It also serves as the second step after a password.</p>\n\
     <ul id=\"passkeys\"></ul>\n<p id=\"no-passkeys\" class=\"hint\" hidden>No passkeys yet.</p>\n\
     <form id=\"passkey-form\" novalidate>\n<label>Name <input id=\"passkey-name\" type=\"text\" \
     maxlength=\"100\" placeholder=\"Laptop\" required></label>\n\
     <button id=\"passkey-add\" type=\"submit\">Add a passkey</button>\n</form>\n\
     <p class=\"error\" id=\"passkey-message\" role=\"alert\"></p>\n</div>\n";

/// The "API keys" card of `/account`: the table `account.js` fills from
/// `GET /api/profile/api-keys`, the form that creates one, and the panel
/// that shows a new key's secret once (filled by the script, never by the
/// server: the secret is in no page the server renders). Every scope the
/// API takes has a checkbox: the fixed ones, then one per protect-mode
/// route in force.
fn api_keys_card(state: &AppState) -> String {
    let scopes: String = Scope::FIXED
        .into_iter()
        .chain(state.gateway.route_ids().into_iter().map(Scope::Route))
        .map(|scope| {
            format!(
                "<label class=\"check\"><input type=\"checkbox\" name=\"scopes\" value=\"{name}\"> \
                 <code>{name}</code> <span class=\"hint\">{what}</span></label>\n",
                name = escape(&scope.to_string()),
                what = scope_purpose(&scope),
            )
        })
        .collect();
    let lifetime = lifetime(state.config.api_keys.max_lifetime);
    let max_seconds = state.config.api_keys.max_lifetime.0.as_secs();
    format!(
        "<h2>API keys</h2>\n<div class=\"card\" id=\"api-keys\">\n\
         <p>A key lets a program call the API as you (<code>Authorization: Bearer rk_…</code>), limited to the \
         scopes you give it and never more than you may do.</p>\n\
         <div class=\"table-wrap\"><table id=\"keys\" hidden>\n<thead><tr><th>Name</th><th>Scopes</th><th>Created</th>\
         <th>Expires</th><th>Last used</th><th></th></tr></thead>\n<tbody></tbody>\n</table></div>\n\
         <p id=\"no-keys\" class=\"hint\" hidden>You have no API keys.</p>\n\
         <p class=\"error\" id=\"keys-message\" role=\"alert\"></p>\n\
         <div id=\"new-key-panel\" class=\"notice\" hidden>\n\
         <p><strong>Copy your new key now: it will not be shown again.</strong></p>\n\
         <div class=\"copy-row\"><input id=\"new-key\" type=\"text\" readonly autocomplete=\"off\" \
         spellcheck=\"false\" aria-label=\"New API key\">\
         <button id=\"copy-key\" type=\"button\">Copy</button></div>\n\
         <p id=\"copy-status\" class=\"hint\" role=\"status\"></p>\n\
         <button id=\"new-key-done\" type=\"button\" class=\"secondary\">Done</button>\n</div>\n\
         <form id=\"key-form\" novalidate>\n<h3>New key</h3>\n\
         <label>Name <input id=\"key-name\" name=\"name\" type=\"text\" maxlength=\"100\" autocomplete=\"off\" \
         required></label>\n<p class=\"error field-error\" data-field=\"name\"></p>\n\
         <fieldset id=\"key-scopes\"><legend>Scopes</legend>\n{scopes}</fieldset>\n\
         <p class=\"error field-error\" data-field=\"scopes\"></p>\n\
         <label>Valid until <input id=\"key-expires\" name=\"expires_at\" type=\"date\" \
         data-max-seconds=\"{max_seconds}\" aria-describedby=\"key-expires-hint\"></label>\n\
         <p id=\"key-expires-hint\" class=\"hint\">Optional, at most {lifetime} ahead; left empty, the key lives \
         {lifetime}.</p>\n\
         <p class=\"error field-error\" data-field=\"expires_at\"></p>\n\
         <p class=\"error\" id=\"key-form-message\" role=\"alert\"></p>\n\
         <button id=\"create-key\" type=\"submit\">Create key</button>\n</form>\n</div>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn a_key_lifetime_reads_in_days_when_it_is_whole_days() {
        assert_eq!(lifetime(HumanDuration::days(365)), "365 days");
        assert_eq!(lifetime(HumanDuration::days(1)), "1 day");
        assert_eq!(lifetime(HumanDuration(std::time::Duration::from_secs(36 * 3600))), "36h");
    }

    #[test]
    fn unknown_error_codes_get_the_generic_sentence() {
        assert_eq!(error_message("<script>"), error_message("something_else"));
        assert!(error_message("email_not_verified").contains("not verified"));
        assert!(error_message("account_exists").contains("link the provider"));
    }
}
