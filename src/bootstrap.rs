//! `[bootstrap]`: creates the first admin on start when none exists, so a
//! fresh deployment can be administered without a shell on the host.

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    accounts::{AccountError, AccountRequest, create_account},
    auth::password::PasswordHasher,
    config::BootstrapConfig,
    domain::{Role, User},
    store::Store,
};

/// Creates the configured admin if no admin exists yet; `None` otherwise.
pub async fn ensure_admin(
    store: &dyn Store,
    hasher: &PasswordHasher,
    config: &BootstrapConfig,
) -> anyhow::Result<Option<User>> {
    if config.admin_email.trim().is_empty() || store.count_admins().await? > 0 {
        return Ok(None);
    }
    let password = admin_password(config)?;
    let name = if config.admin_name.trim().is_empty() { "Administrator" } else { &config.admin_name };
    // The operator vouches for the configured address.
    let request = AccountRequest {
        email: &config.admin_email,
        name,
        password,
        role: Role::Admin,
        department: None,
        email_verified: true,
    };
    match create_account(store, hasher, request).await {
        Ok(user) => Ok(Some(user)),
        Err(AccountError::Validation(errors)) => {
            let problems: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!("bootstrap.admin_{}: {}", if e.field == "name" { "name" } else { &e.field }, e.message)
                })
                .collect();
            anyhow::bail!("{}", problems.join("\n"))
        }
        Err(AccountError::EmailTaken) => {
            anyhow::bail!("bootstrap.admin_email: a user with this email exists but is not an admin")
        }
        Err(other) => Err(anyhow::anyhow!("creating the bootstrap admin: {other}")),
    }
}

fn admin_password(config: &BootstrapConfig) -> anyhow::Result<SecretString> {
    if !config.admin_password.expose_secret().is_empty() {
        return Ok(config.admin_password.clone());
    }
    let path = &config.admin_password_file;
    if path.as_os_str().is_empty() {
        anyhow::bail!("bootstrap.admin_password: required when bootstrap.admin_email is set (or admin_password_file)");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("bootstrap.admin_password_file: cannot read {}", path.display()))?;
    Ok(SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned()))
}
