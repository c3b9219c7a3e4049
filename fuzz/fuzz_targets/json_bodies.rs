//! JSON body extraction for sign-up and posts: `extract::parse` into the
//! routes' own request types (`SignupRequest`, `PostInput`), then the same
//! validation the handlers run (`Email`, `UserName`, `Password` in
//! `accounts::create_account`'s order; `PostInput::validate`).
//!
//! Properties checked, beyond "never panics": a body that fails is a 400
//! (`BadRequest` or field `Validation` errors naming real fields), and every
//! accepted value meets docs/api.md:
//! - email: at most 254 characters after trimming, exactly one `@` with text
//!   on both sides, no whitespace; its key is its lower-cased form;
//! - name: 1..=100 characters after trimming, no control characters;
//! - password: 15..=128 characters, not containing the email's key, its
//!   local part (3+ characters) or the name (3+ characters), case-blind;
//! - title: 1..=200 characters after trimming, no control characters;
//! - body: 1..=8000 characters, not only whitespace, no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::{
    domain::{Email, Password, UserName},
    error::ApiError,
    extract::parse,
    routes::{auth::SignupRequest, posts::PostInput},
};
use secrecy::ExposeSecret;

fuzz_target!(|data: &[u8]| {
    match parse::<SignupRequest>(data) {
        Ok(request) => signup(request),
        Err(error) => assert_client_error(&error, &["email", "password", "name"]),
    }
    match parse::<PostInput>(data) {
        Ok(input) => post(&input),
        Err(error) => assert_client_error(&error, &["title", "body"]),
    }
});

fn assert_client_error(error: &ApiError, fields: &[&str]) {
    match error {
        ApiError::BadRequest(_) => {}
        ApiError::Validation(errors) => {
            assert!(!errors.is_empty());
            for error in errors {
                let known = fields.contains(&error.field.as_str());
                // Unknown fields are named as sent (they are refused, never stored).
                assert!(known || error.message == "is not an accepted field", "{error:?}");
            }
        }
        other => panic!("a body is a client error, not {other:?}"),
    }
}

fn signup(request: SignupRequest) {
    let email = Email::parse(&request.email);
    let name = UserName::parse(&request.name);
    if let Ok(email) = &email {
        let text = email.as_str();
        assert_eq!(text, request.email.trim());
        assert!((1..=254).contains(&text.chars().count()), "{text:?}");
        assert!(!text.chars().any(char::is_whitespace), "{text:?}");
        let (local, domain) = text.split_once('@').expect("an @");
        assert!(!local.is_empty() && !domain.is_empty() && !domain.contains('@'), "{text:?}");
        assert_eq!(email.key(), text.to_lowercase());
    }
    if let Ok(name) = &name {
        let text = name.as_str();
        assert_eq!(text, request.name.trim());
        assert!((1..=100).contains(&text.chars().count()), "{text:?}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    let (Ok(email), Ok(name)) = (email, name) else { return };
    let plain = request.password.expose_secret().to_owned();
    if Password::parse(request.password, &email, &name).is_ok() {
        assert!((15..=128).contains(&plain.chars().count()), "{plain:?}");
        let lower = plain.to_lowercase();
        assert!(!lower.contains(email.key()), "{plain:?} holds the email");
        let local = email.key().split('@').next().unwrap_or_default();
        assert!(local.chars().count() < 3 || !lower.contains(local), "{plain:?} holds the email's local part");
        let name = name.as_str().to_lowercase();
        assert!(name.chars().count() < 3 || !lower.contains(&name), "{plain:?} holds the name");
    }
}

fn post(input: &PostInput) {
    match input.validate() {
        Ok((title, body)) => {
            let title = title.as_str();
            assert_eq!(title, input.title.trim());
            assert!((1..=200).contains(&title.chars().count()), "{title:?}");
            assert!(!title.chars().any(char::is_control), "{title:?}");
            let body = body.as_str();
            assert_eq!(body, input.body);
            assert!((1..=8000).contains(&body.chars().count()));
            assert!(!body.trim().is_empty() && !body.contains('\0'));
        }
        Err(ApiError::Validation(errors)) => {
            assert!(!errors.is_empty());
            assert!(errors.iter().all(|e| e.field == "title" || e.field == "body"), "{errors:?}");
        }
        Err(other) => panic!("post validation failed with {other:?}"),
    }
}
