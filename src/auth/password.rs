//! Argon2id password hashing, run off the async workers on a fixed pool of
//! `max_concurrent` threads: a flood of logins queues here instead of
//! starving every other request of CPU, and memory stays bounded (each
//! hash needs `memory_kib`; a fixed set of threads keeps the allocator from
//! holding a freed 19 MiB block in every blocking thread tokio ever made).
//!
//! Security: hashes are PHC strings carrying their own parameters, so a
//! parameter change needs no migration (`needs_rehash` says when to upgrade).
//! Plain passwords arrive as `SecretString` and are never logged.
//!
//! Passwords are hashed in their Unicode NFKC form
//! (`domain::normalize_password`, NIST SP 800-63B-4). A hash made before
//! that rule from a password that NFKC changes still verifies: `check` tries
//! the normalised form first (every hash made since), then the raw text,
//! and says so, so the login upgrades that hash to the normalised form. A
//! wrong password that NFKC changes thus costs two verifications; that
//! tells an attacker nothing, as they chose the text.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use secrecy::{ExposeSecret, SecretString};

use crate::{config::PasswordHashConfig, domain::normalize_password};

/// What `PasswordHasher::check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Mismatch,
    Match,
    /// Matched the password as typed, not its NFKC form: a hash from before
    /// normalisation, to be replaced.
    MatchedUnnormalised,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    jobs: std::sync::mpsc::SyncSender<Job>,
}

/// Hashing threads run only on otherwise idle CPU (Linux `SCHED_IDLE`):
/// any request that wakes up takes the core at once, so logins never hold
/// reads back, and a machine with spare cores still hashes on all of them.
/// Elsewhere (or if refused) they fall back to a lower nice value; failing
/// both only costs that preference.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        // `Min` is the only priority SCHED_IDLE takes (0).
        if set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle).is_ok() {
            return;
        }
    }
    // 0..=99 maps onto niceness 19..=-20; 25 is niceness 9 (seen with `ps -L -o ni`).
    if let Ok(value) = ThreadPriorityValue::try_from(25u8)
        && let Err(error) = set_current_thread_priority(ThreadPriority::Crossplatform(value))
    {
        tracing::debug!(?error, "could not lower the password hashing threads' priority");
    }
}

impl PasswordHasher {
    pub fn new(config: &PasswordHashConfig) -> anyhow::Result<Self> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|error| anyhow::anyhow!("auth.password_hash: {error}"))?;
        // Waiting jobs are bounded too; callers wait (asynchronously) for room.
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1024);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..config.max_concurrent.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match queue.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job must not take the thread (and
                            // with it the pool) down; its caller sees an error.
                            Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                            Err(_) => return, // every hasher handle is gone
                        }
                    }
                })
                .context("starting password hashing threads")?;
        }
        Ok(Self { params, jobs })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt, of
    /// the password's NFKC form.
    pub async fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let password = normalize_password(password);
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
        Ok(self.check(password, phc).await? != PasswordCheck::Mismatch)
    }

    /// As `verify`, and whether the match was of the password as typed
    /// rather than its NFKC form (see the module documentation).
    pub async fn check(&self, password: &SecretString, phc: &str) -> anyhow::Result<PasswordCheck> {
        let raw = password.clone();
        let normalised = normalize_password(password);
        let phc = phc.to_owned();
        let argon2 = self.argon2();
        self.run_blocking(move || {
            let parsed =
                PasswordHash::new(&phc).map_err(|error| anyhow::anyhow!("stored hash is malformed: {error}"))?;
            let matches =
                |text: &SecretString| argon2.verify_password(text.expose_secret().as_bytes(), &parsed).is_ok();
            Ok(if matches(&normalised) {
                PasswordCheck::Match
            } else if raw.expose_secret() != normalised.expose_secret() && matches(&raw) {
                PasswordCheck::MatchedUnnormalised
            } else {
                PasswordCheck::Mismatch
            })
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
        let (done, result) = tokio::sync::oneshot::channel();
        let mut job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        loop {
            match self.jobs.try_send(job) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(returned)) => {
                    job = returned;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => anyhow::bail!("password hasher stopped"),
            }
        }
        result.await.context("password hashing thread failed")?
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

    /// The scheduling policy of the calling thread: field 41 of
    /// `/proc/thread-self/stat` (0 is `SCHED_OTHER`, 5 `SCHED_IDLE`).
    #[cfg(target_os = "linux")]
    fn current_thread_policy() -> String {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        // The command name (field 2) may hold spaces; fields after its ')' start at 3.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        after_name.split_whitespace().nth(41 - 3).unwrap_or_default().to_owned()
    }

    /// Each job reports the name and policy of the thread it ran on.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_only_on_idle_cpu() {
        let hasher = PasswordHasher::new(&cheap()).expect("params");
        let policy_of_worker = || {
            hasher.run_blocking(|| {
                let name = std::thread::current().name().unwrap_or_default().to_owned();
                Ok((name, current_thread_policy()))
            })
        };
        let (first, second) = tokio::join!(policy_of_worker(), policy_of_worker());
        for (name, policy) in [first.expect("job ran"), second.expect("job ran")] {
            assert!(name.starts_with("password-hash-"), "{name}");
            assert_eq!(policy, "5", "{name} runs under SCHED_IDLE");
        }
        assert_eq!(current_thread_policy(), "0", "other threads keep SCHED_OTHER");
    }

    /// A ligature and fullwidth forms sign in as their NFKC equivalent, and
    /// a hash made (before normalisation) from the raw text still verifies.
    #[tokio::test]
    async fn passwords_are_nfkc_normalised_and_old_raw_hashes_still_verify() {
        let hasher = PasswordHasher::new(&cheap()).expect("params");
        let typed = SecretString::from("the ﬁne ｆｕｌｌｗｉｄｔｈ passphrase");
        let plain = SecretString::from("the fine fullwidth passphrase");
        let phc = hasher.hash(&typed).await.expect("hash");
        assert_eq!(hasher.check(&plain, &phc).await.expect("check"), PasswordCheck::Match);
        assert_eq!(hasher.check(&typed, &phc).await.expect("check"), PasswordCheck::Match);
        let composed = SecretString::from("caf\u{e9} au lait with cream");
        let decomposed = SecretString::from("cafe\u{301} au lait with cream");
        let phc = hasher.hash(&decomposed).await.expect("hash");
        assert!(hasher.verify(&composed, &phc).await.expect("verify"), "é composed or not is one password");

        // What `hash` made before this rule: Argon2 over the raw bytes.
        let raw_phc = hasher
            .run_blocking({
                let argon2 = hasher.argon2();
                move || {
                    argon2
                        .hash_password("the ﬁne ｆｕｌｌｗｉｄｔｈ passphrase".as_bytes())
                        .map(|hash| hash.to_string())
                        .map_err(|error| anyhow::anyhow!("{error}"))
                }
            })
            .await
            .expect("old hash");
        assert_eq!(hasher.check(&typed, &raw_phc).await.expect("check"), PasswordCheck::MatchedUnnormalised);
        assert_eq!(hasher.check(&plain, &raw_phc).await.expect("check"), PasswordCheck::Mismatch);
        let wrong = SecretString::from("the ﬁne ｆｕｌｌｗｉｄｔｈ passphrasf");
        assert_eq!(hasher.check(&wrong, &raw_phc).await.expect("check"), PasswordCheck::Mismatch);
    }

    #[tokio::test]
    async fn a_corrupt_hash_is_an_error_not_a_mismatch() {
        let hasher = PasswordHasher::new(&cheap()).expect("params");
        assert!(hasher.verify(&SecretString::from("whatever password"), "not-a-phc").await.is_err());
    }
}
