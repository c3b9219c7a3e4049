//! Account operations shared by the HTTP routes, the CLI and bootstrap, so
//! every way of creating a user applies the same rules.

use secrecy::SecretString;

use crate::{
    auth::password::PasswordHasher,
    domain::{Email, NewUser, Password, Role, User, UserName},
    error::{ApiError, FieldError},
    store::{Store, StoreError},
};

/// Unvalidated input for a new password account.
pub struct AccountRequest<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password: SecretString,
    pub role: Role,
    pub department: Option<String>,
}

/// Validates every field (reporting all failures at once), hashes the
/// password and stores the user. A taken email is `Conflict`.
pub async fn create_account(
    store: &dyn Store,
    hasher: &PasswordHasher,
    request: AccountRequest<'_>,
) -> Result<User, ApiError> {
    let mut errors = Vec::new();
    let email = Email::parse(request.email)
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok();
    let name = UserName::parse(request.name)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok();
    let department = match request.department.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) if text.chars().count() > 100 || text.chars().any(char::is_control) => {
            errors.push(FieldError::new(
                "department",
                "must be at most 100 characters without control characters",
            ));
            None
        }
        Some(text) => Some(text.to_owned()),
    };
    let password = match (&email, &name) {
        (Some(email), Some(name)) => Password::parse(request.password, email, name)
            .map_err(|m| errors.push(FieldError::new("password", m)))
            .ok(),
        _ => None,
    };
    let (Some(email), Some(name), Some(password)) = (email, name, password) else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let password_hash = hasher.hash(password.secret()).await?;
    let new_user = NewUser {
        email,
        name,
        role: request.role,
        department,
        password_hash: Some(password_hash),
    };
    store
        .create_user(new_user)
        .await
        .map_err(|error| match error {
            StoreError::Conflict(_) => {
                ApiError::Conflict("An account with this email already exists.".into())
            }
            other => other.into(),
        })
}
