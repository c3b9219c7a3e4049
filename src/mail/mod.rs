//! Outgoing mail from a durable outbox.
//!
//! A mail is composed when its cause happens (`Mailer::enqueue`: the
//! finished RFC 5322 message, with a `Message-ID` of its own) and written
//! to the outbox table in the same unit of work as that cause: a sign-up
//! and its verification mail land together or not at all. A worker on
//! every instance claims due mails (`MailStore::claim_mail`: one instance
//! at a time per mail, with a lease), hands them to the transport
//! (`transport.rs`: SMTP, or `.eml` files without SMTP), and deletes them
//! once accepted. A failure is retried with doubling back-off until
//! `email.give_up_after`; a permanent refusal (5xx) is given up at once.
//! Delivery is at least once: a mail is sent again only when the server's
//! answer to it was lost (a crash or a cut connection after the message),
//! and then with the same `Message-ID`.

mod letters;
mod transport;

use std::{sync::Arc, time::Duration};

use lettre::message::{Mailbox, MultiPart};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

pub use letters::{Letter, Notice};
pub use transport::{DeliveryError, SmtpEndpoint, SmtpSecurity, Transport};

use crate::{
    clock::Clock,
    config::Config,
    domain::User,
    metrics::OutcomeLabels,
    store::{OutboxMail, Store, StoreError, UnitOfWork},
};

/// How long a claimed mail is a worker's own before another may take it:
/// longer than a whole batch of SMTP conversations can take.
const LEASE: time::Duration = time::Duration::minutes(10);
/// Mails claimed at once.
const BATCH: u32 = 10;
/// How often the worker looks for due mail it was not told about (another
/// instance's, or a retry coming due).
const POLL: Duration = Duration::from_secs(1);
/// The worker's pause after the store failed.
const PAUSE_AFTER_ERROR: Duration = Duration::from_secs(5);
/// The longest wait between two attempts.
const MAX_BACKOFF: time::Duration = time::Duration::hours(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Composes mail into the outbox and runs the worker that sends it.
pub struct Mailer {
    from: Mailbox,
    /// The part after `@` of `from`, for `Message-ID`s.
    domain: String,
    /// `server.public_url`, or `http://<bind>`.
    base: String,
    /// Whether links are logged (development, mail to files).
    log_links: bool,
    retry_after: time::Duration,
    give_up_after: time::Duration,
    transport: Transport,
    wake: Notify,
    /// Delivery attempts by outcome: sent, deferred, failed.
    outcomes: Family<OutcomeLabels, Counter>,
    /// Mails in the outbox by state (queued, failed), counted at scrape.
    outbox: Family<StateLabels, Gauge>,
}

/// Every problem with `[email]`, each naming its key.
pub fn config_problems(config: &Config) -> Vec<String> {
    let email = &config.email;
    let mut problems = Vec::new();
    if !email.smtp_url.is_empty() {
        match SmtpEndpoint::parse(&email.smtp_url) {
            Ok(endpoint) => {
                if endpoint.user.is_empty() && !secrecy::ExposeSecret::expose_secret(&email.smtp_password).is_empty() {
                    problems.push("email.smtp_password_file: a password needs a user in email.smtp_url".to_owned());
                }
                if endpoint.security == SmtpSecurity::Plain && !email.ca_file.as_os_str().is_empty() {
                    problems.push("email.ca_file: plain smtp:// uses no TLS".to_owned());
                }
            }
            Err(message) => problems.push(format!("email.smtp_url: {message}")),
        }
    }
    if !email.ca_file.as_os_str().is_empty() {
        match std::fs::read(&email.ca_file) {
            Ok(pem) if lettre::transport::smtp::client::Certificate::from_pem(&pem).is_ok() => {}
            Ok(_) => problems.push("email.ca_file: not a PEM certificate".to_owned()),
            Err(error) => problems.push(format!("email.ca_file: cannot read {}: {error}", email.ca_file.display())),
        }
    }
    if let Err(message) = sender(&email.from) {
        problems.push(format!("email.from: {message}"));
    }
    if email.retry_after.0.is_zero() {
        problems.push("email.retry_after: must be longer than zero".to_owned());
    }
    if email.give_up_after.0 < email.retry_after.0 {
        problems.push("email.give_up_after: must be at least email.retry_after".to_owned());
    }
    problems
}

/// `email.from` as a mailbox, and the domain of its address.
fn sender(from: &str) -> Result<(Mailbox, String), String> {
    let mailbox: Mailbox =
        from.parse().map_err(|_| "must be an address, optionally with a name: Rampart <no-reply@example.com>")?;
    let domain = mailbox.email.domain().to_owned();
    Ok((mailbox, domain))
}

impl Mailer {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let (from, domain) = sender(&config.email.from).map_err(|message| anyhow::anyhow!("email.from: {message}"))?;
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        for outcome in ["sent", "deferred", "failed"] {
            drop(outcomes.get_or_create(&OutcomeLabels { outcome }));
        }
        let transport = Transport::from_config(config)?;
        Ok(Self {
            from,
            domain,
            base: config.link_base(),
            log_links: matches!(transport, Transport::Files(_)) && !config.is_production(),
            retry_after: time::Duration::try_from(config.email.retry_after.0)?,
            give_up_after: time::Duration::try_from(config.email.give_up_after.0)?,
            transport,
            wake: Notify::new(),
            outcomes,
            outbox: Family::default(),
        })
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "emails",
            "Mail delivery attempts by outcome (sent, deferred for a retry, failed for good)",
            self.outcomes.clone(),
        );
        registry.register("email_outbox", "Mails in the outbox by state (queued, failed)", self.outbox.clone());
    }

    /// Sets the outbox gauges from the store (at scrape time).
    pub async fn count_outbox(&self, store: &dyn Store) -> Result<(), StoreError> {
        let counts = store.outbox_counts().await?;
        self.outbox
            .get_or_create(&StateLabels { state: "queued" })
            .set(i64::try_from(counts.queued).unwrap_or(i64::MAX));
        self.outbox
            .get_or_create(&StateLabels { state: "failed" })
            .set(i64::try_from(counts.failed).unwrap_or(i64::MAX));
        Ok(())
    }

    /// `path` (with its query) on the server's public origin.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Writes `letter` to `user` into the outbox as part of `work`. An
    /// address the mail library cannot write is logged and skipped, never
    /// a failure of what caused the mail. Call `wake` after the commit.
    pub async fn enqueue(
        &self,
        work: &mut dyn UnitOfWork,
        user: &User,
        letter: &Letter,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mail = match self.compose(user, letter, now) {
            Ok(mail) => mail,
            Err(error) => {
                tracing::warn!(user_id = %user.id, kind = letter.kind(), cause = %error, "a mail could not be composed; not sent");
                return Ok(());
            }
        };
        work.enqueue_mail(&mail).await?;
        if self.log_links
            && let Some(link) = letter.link()
        {
            // Development only, mail to files: the link is at hand in the log.
            tracing::info!(mail_id = %mail.id, kind = letter.kind(), url = %link, "mail queued for data/outbox/");
        }
        Ok(())
    }

    /// Tells this instance's worker that mail is waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn compose(&self, user: &User, letter: &Letter, now: OffsetDateTime) -> anyhow::Result<OutboxMail> {
        let to = Mailbox::new(Some(user.name.clone()), user.email.parse()?);
        let recipient = to.email.to_string();
        let id = Uuid::now_v7();
        let (subject, text, html) = letter.render(&user.name, &self.base);
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .date(std::time::SystemTime::from(now))
            .message_id(Some(format!("<{id}@{}>", self.domain)))
            .multipart(MultiPart::alternative_plain_html(text, html))?;
        Ok(OutboxMail {
            id,
            kind: letter.kind().to_owned(),
            sender: self.from.email.to_string(),
            recipient,
            message: message.formatted(),
            created_at: now,
            attempts: 0,
        })
    }

    /// Starts this instance's worker on the current runtime; it ends with it.
    pub fn spawn_worker(self: &Arc<Self>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
        let mailer = self.clone();
        tokio::spawn(async move {
            loop {
                let pause = match mailer.deliver_due(&*store, &*clock).await {
                    // More may be due: claim again at once.
                    Ok(claimed) if claimed > 0 => continue,
                    Ok(_) => POLL,
                    Err(error) => {
                        tracing::warn!(cause = %error, "the mail outbox is unavailable; retrying");
                        PAUSE_AFTER_ERROR
                    }
                };
                let _ = tokio::time::timeout(pause, mailer.wake.notified()).await;
            }
        });
    }

    /// One round of the worker: claims the mails due now and tries each
    /// once. Returns how many it claimed.
    pub async fn deliver_due(&self, store: &dyn Store, clock: &dyn Clock) -> Result<usize, StoreError> {
        let now = clock.now();
        let mails = store.claim_mail(now, now + LEASE, BATCH).await?;
        for mail in &mails {
            let outcome = match self.transport.deliver(mail).await {
                Ok(()) => {
                    store.mail_sent(mail.id).await?;
                    tracing::info!(mail_id = %mail.id, kind = %mail.kind, attempts = mail.attempts, "mail sent");
                    "sent"
                }
                Err(DeliveryError::Permanent(cause)) => {
                    store.mail_failed(mail.id, clock.now(), &cause).await?;
                    tracing::warn!(mail_id = %mail.id, kind = %mail.kind, cause = %cause, "mail refused for good; given up");
                    "failed"
                }
                Err(DeliveryError::Transient(cause)) => {
                    let now = clock.now();
                    if now - mail.created_at >= self.give_up_after {
                        store.mail_failed(mail.id, now, &cause).await?;
                        tracing::warn!(mail_id = %mail.id, kind = %mail.kind, cause = %cause, "mail undeliverable for too long; given up");
                        "failed"
                    } else {
                        let next = now + self.backoff(mail.attempts);
                        store.mail_deferred(mail.id, next, &cause).await?;
                        tracing::warn!(mail_id = %mail.id, kind = %mail.kind, attempts = mail.attempts, cause = %cause, "mail not sent; will retry");
                        "deferred"
                    }
                }
            };
            self.outcomes.get_or_create(&OutcomeLabels { outcome }).inc();
        }
        Ok(mails.len())
    }

    /// The wait after the `attempts`th failed attempt: `retry_after`,
    /// doubling, at most an hour.
    fn backoff(&self, attempts: u32) -> time::Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        (self.retry_after * 2_i32.pow(doublings)).min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_an_hour() {
        let mut config = Config::defaults();
        config.email.retry_after = crate::config::HumanDuration::secs(30);
        let mailer = Mailer::new(&config).expect("mailer");
        let waits: Vec<i64> = [1, 2, 3, 7, 8, 50].iter().map(|&n| mailer.backoff(n).whole_seconds()).collect();
        assert_eq!(waits, [30, 60, 120, 1920, 3600, 3600]);
    }

    #[test]
    fn links_are_logged_only_in_development_with_mail_to_files() {
        let mut config = Config::defaults();
        assert!(Mailer::new(&config).expect("mailer").log_links, "development, no SMTP");
        config.server.environment = crate::config::Environment::Production;
        assert!(!Mailer::new(&config).expect("mailer").log_links, "never in production");
        config.server.environment = crate::config::Environment::Development;
        config.email.smtp_url = "smtp://127.0.0.1:2525".into();
        assert!(!Mailer::new(&config).expect("mailer").log_links, "mail that goes out is not logged");
    }

    #[test]
    fn email_settings_are_checked_at_start() {
        let mut config = Config::defaults();
        assert!(config_problems(&config).is_empty(), "{:?}", config_problems(&config));
        config.email.smtp_url = "smtp://mail.example.com:25".into();
        config.email.from = "not an address".into();
        config.email.smtp_password = secrecy::SecretString::from("pw");
        let problems = config_problems(&config);
        assert!(problems.iter().any(|p| p.starts_with("email.smtp_url: plain smtp://")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("email.from:")), "{problems:?}");
        config.email.smtp_url = "smtps://mail.example.com".into();
        config.email.from = "Rampart <no-reply@example.com>".into();
        let problems = config_problems(&config);
        assert_eq!(problems, ["email.smtp_password_file: a password needs a user in email.smtp_url"]);
    }
}
