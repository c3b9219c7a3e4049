//! How a finished message leaves: over SMTP (`email.smtp_url`, lettre with
//! rustls) or, without SMTP, as an `.eml` file under `<data_dir>/outbox/`.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
    address::Envelope,
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
};
use secrecy::ExposeSecret;

use crate::{config::Config, store::OutboxMail};

/// How long one SMTP conversation may take before it counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte (port 465).
    ImplicitTls,
    /// `smtp://…?tls=required`: STARTTLS, and no mail without it.
    StartTls,
    /// Plain `smtp://`: only to a loopback host.
    Plain,
}

/// `email.smtp_url`, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEndpoint {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// The user to authenticate as (the password comes from
    /// `email.smtp_password_file`); empty: no authentication.
    pub user: String,
}

impl SmtpEndpoint {
    /// Parses `smtps://[user@]host[:port]`, `smtp://[user@]host[:port]?tls=required`
    /// or plain `smtp://[user@]host:port` to a loopback host.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url =
            url::Url::parse(text).map_err(|_| "is not a URL (smtps://host:465 or smtp://host:587?tls=required)")?;
        let host = match url.host() {
            Some(url::Host::Domain(domain)) => domain.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("names no host".into()),
        };
        if url.password().is_some() {
            return Err("must not hold the password: use email.smtp_password_file".into());
        }
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err("must be scheme://[user@]host[:port] with no path".into());
        }
        let mut tls_required = false;
        for (name, value) in url.query_pairs() {
            match (name.as_ref(), value.as_ref()) {
                ("tls", "required") if url.scheme() == "smtp" => tls_required = true,
                ("tls", _) => return Err("tls= may only be `required`, and only with smtp://".into()),
                (other, _) => return Err(format!("has an unknown parameter `{other}`")),
            }
        }
        let (security, default_port) = match url.scheme() {
            "smtps" => (SmtpSecurity::ImplicitTls, 465),
            "smtp" if tls_required => (SmtpSecurity::StartTls, 587),
            "smtp" => (SmtpSecurity::Plain, 25),
            _ => return Err("must start with smtps:// or smtp://".into()),
        };
        if security == SmtpSecurity::Plain && !is_loopback(&host) {
            return Err("plain smtp:// only to a loopback host; use smtps:// or ?tls=required".into());
        }
        let user = percent_decode(url.username())?;
        Ok(Self { host, port: url.port().unwrap_or(default_port), security, user })
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3).ok_or("has a broken %-escape in the user")?;
            decoded.push(u8::from_str_radix(hex, 16).map_err(|_| "has a broken %-escape in the user")?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| "has a user that is not UTF-8".into())
}

/// Why a delivery did not happen.
#[derive(Debug)]
pub enum DeliveryError {
    /// Worth trying again later (connection refused, a 4xx, a lost reply).
    Transient(String),
    /// The server refused this message for good (a 5xx).
    Permanent(String),
}

/// Where mail goes.
pub enum Transport {
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
    /// `.eml` files in this folder.
    Files(PathBuf),
}

impl Transport {
    /// The transport `[email]` configures; the configuration was checked
    /// at load (`config_problems`), so errors here are files that went away.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let email = &config.email;
        if email.smtp_url.is_empty() {
            return Ok(Self::Files(config.server.data_dir.join("outbox")));
        }
        let endpoint =
            SmtpEndpoint::parse(&email.smtp_url).map_err(|message| anyhow::anyhow!("email.smtp_url {message}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(endpoint.host.clone())
            .port(endpoint.port)
            .timeout(Some(SMTP_TIMEOUT));
        if endpoint.security != SmtpSecurity::Plain {
            let mut parameters = TlsParameters::builder(endpoint.host.clone());
            if !email.ca_file.as_os_str().is_empty() {
                let pem = std::fs::read(&email.ca_file)
                    .with_context(|| format!("email.ca_file: cannot read {}", email.ca_file.display()))?;
                let certificate = Certificate::from_pem(&pem).context("email.ca_file: not a PEM certificate")?;
                parameters = parameters.add_root_certificate(certificate);
            }
            let parameters = parameters.build_rustls().context("email: TLS settings")?;
            builder = builder.tls(match endpoint.security {
                SmtpSecurity::ImplicitTls => Tls::Wrapper(parameters),
                _ => Tls::Required(parameters),
            });
        }
        if !endpoint.user.is_empty() {
            builder = builder
                .credentials(Credentials::new(endpoint.user.clone(), email.smtp_password.expose_secret().to_owned()));
        }
        Ok(Self::Smtp(Box::new(builder.build())))
    }

    /// Hands `mail` on: accepted by the SMTP server, or written to its file.
    pub async fn deliver(&self, mail: &OutboxMail) -> Result<(), DeliveryError> {
        match self {
            Self::Smtp(smtp) => {
                let envelope = Envelope::new(
                    Some(mail.sender.parse().map_err(|_| DeliveryError::Permanent("bad sender address".into()))?),
                    vec![mail.recipient.parse().map_err(|_| DeliveryError::Permanent("bad recipient address".into()))?],
                )
                .map_err(|error| DeliveryError::Permanent(error.to_string()))?;
                match smtp.send_raw(&envelope, &mail.message).await {
                    Ok(_) => Ok(()),
                    Err(error) if error.is_permanent() => Err(DeliveryError::Permanent(error.to_string())),
                    Err(error) => Err(DeliveryError::Transient(error.to_string())),
                }
            }
            Self::Files(dir) => {
                let dir = dir.clone();
                let (id, message) = (mail.id, mail.message.clone());
                tokio::task::spawn_blocking(move || write_eml(&dir, id, &message))
                    .await
                    .map_err(|error| DeliveryError::Transient(error.to_string()))?
                    .map_err(|error| DeliveryError::Transient(format!("{error:#}")))
            }
        }
    }
}

/// Writes `<dir>/<id>.eml` owner-only, whole or not at all (a temporary
/// file renamed into place).
fn write_eml(dir: &std::path::Path, id: uuid::Uuid, message: &[u8]) -> anyhow::Result<()> {
    crate::fs::create_private_dir(dir)?;
    let partial = dir.join(format!(".{id}.eml.partial"));
    crate::fs::write_private(&partial, message)?;
    std::fs::rename(&partial, dir.join(format!("{id}.eml"))).context("cannot move a mail into the outbox folder")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_understood_or_refused_with_a_reason() {
        let implicit = SmtpEndpoint::parse("smtps://mailer%40example.com@smtp.example.com").expect("smtps");
        assert_eq!(
            implicit,
            SmtpEndpoint {
                host: "smtp.example.com".into(),
                port: 465,
                security: SmtpSecurity::ImplicitTls,
                user: "mailer@example.com".into()
            }
        );
        let starttls = SmtpEndpoint::parse("smtp://smtp.example.com:2587?tls=required").expect("starttls");
        assert_eq!((starttls.port, starttls.security), (2587, SmtpSecurity::StartTls));
        let plain = SmtpEndpoint::parse("smtp://127.0.0.1:2525").expect("loopback");
        assert_eq!((plain.port, plain.security, plain.user.as_str()), (2525, SmtpSecurity::Plain, ""));
        for (url, reason) in [
            ("smtp://smtp.example.com:25", "loopback"),
            ("smtps://u:secret@smtp.example.com", "password"),
            ("smtps://smtp.example.com?tls=required", "tls="),
            ("smtp://127.0.0.1?tls=opportunistic", "tls="),
            ("smtp://127.0.0.1:25?debug=1", "unknown parameter"),
            ("http://127.0.0.1", "smtps://"),
            ("smtps://smtp.example.com/x", "no path"),
            ("not a url", "not a URL"),
        ] {
            let message = SmtpEndpoint::parse(url).expect_err(url);
            assert!(message.contains(reason), "{url}: {message}");
        }
    }
}
