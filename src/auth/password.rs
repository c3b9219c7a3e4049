//! Argon2id password hashing, run off the async workers with bounded
//! concurrency: a flood of logins queues here instead of starving every
//! other request of CPU.
//!
//! Security: hashes are PHC strings carrying their own parameters, so a
//! parameter change needs no migration (`needs_rehash` says when to upgrade).
//! Plain passwords arrive as `SecretString` and are never logged.

use std::sync::Arc;

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::PasswordHashConfig;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    pub fn new(config: &PasswordHashConfig) -> anyhow::Result<Self> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|error| anyhow::anyhow!("auth.password_hash: {error}"))?;
        Ok(Self { params, permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))) })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
    pub async fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let password = password.clone();
        let argon2 = self.argon2();
        self.run_blocking(move || {
            argon2
                .hash_password(password.expose_secret().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))
        })
        .await
    }

    /// Whether `password` matches `phc`. A malformed stored hash is an error,
    /// not a mismatch, so corruption is noticed.
    pub async fn verify(&self, password: &SecretString, phc: &str) -> anyhow::Result<bool> {
        let password = password.clone();
        let phc = phc.to_owned();
        let argon2 = self.argon2();
        self.run_blocking(move || {
            let parsed =
                PasswordHash::new(&phc).map_err(|error| anyhow::anyhow!("stored hash is malformed: {error}"))?;
            Ok(argon2.verify_password(password.expose_secret().as_bytes(), &parsed).is_ok())
        })
        .await
    }

    /// True when `phc` was made with other parameters than the configured ones.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        PasswordHash::new(phc).ok().and_then(|parsed| Params::try_from(&parsed).ok()).is_none_or(|params| {
            params.m_cost() != self.params.m_cost()
                || params.t_cost() != self.params.t_cost()
                || params.p_cost() != self.params.p_cost()
        })
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await.context("password hasher closed")?;
        tokio::task::spawn_blocking(work).await.context("password hashing task failed")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHashConfig {
        PasswordHashConfig { memory_kib: 64, iterations: 1, parallelism: 1, max_concurrent: 2 }
    }

    #[tokio::test]
    async fn hashes_verify_and_carry_their_parameters() {
        let hasher = PasswordHasher::new(&cheap()).expect("params");
        let password = SecretString::from("correct horse battery staple");
        let phc = hasher.hash(&password).await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(hasher.verify(&password, &phc).await.expect("verify"));
        assert!(!hasher.verify(&SecretString::from("wrong horse battery staple"), &phc).await.expect("verify"));
        assert!(!hasher.needs_rehash(&phc));

        let stronger = PasswordHasher::new(&PasswordHashConfig { memory_kib: 128, ..cheap() }).expect("params");
        assert!(stronger.needs_rehash(&phc));
        assert!(stronger.verify(&password, &phc).await.expect("old hashes still verify"));
    }

    #[tokio::test]
    async fn a_corrupt_hash_is_an_error_not_a_mismatch() {
        let hasher = PasswordHasher::new(&cheap()).expect("params");
        assert!(hasher.verify(&SecretString::from("whatever password"), "not-a-phc").await.is_err());
    }
}
