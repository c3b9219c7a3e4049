//! Email: verification, password reset and security notices, read from
//! the delivered messages: `.eml` files in `<data_dir>/outbox/` without
//! SMTP, else a real SMTP server on loopback (`tests/smtp/sink.py`, on
//! aiosmtpd; `.ci/run` installs it and names its python in
//! `SMTP_SINK_PYTHON`; skipped without it on a laptop, failed under CI=true).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use rampart::clock::ManualClock;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResponse, free_port, read, spawn_with};

const PASSWORD: &str = "a sign-up passphrase of mine";
const NEW_PASSWORD: &str = "the brand new passphrase here";

// ---------------------------------------------------------------- mail

/// One delivered message, decoded enough to read its links.
#[derive(Debug, Clone)]
pub struct Mail {
    raw: String,
}

impl Mail {
    fn parse(bytes: &[u8]) -> Self {
        Self { raw: String::from_utf8(bytes.to_vec()).expect("mail is ASCII") }
    }

    /// The body with quoted-printable soft breaks and `=3D` undone (the
    /// only escapes a link of ours can get).
    pub fn text(&self) -> String {
        self.raw.replace("=\r\n", "").replace("=3D", "=")
    }

    fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or_default();
        head.lines()
            .find(|line| line.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())))
            .map(|line| line[name.len() + 1..].trim().to_owned())
    }

    fn message_id(&self) -> String {
        self.header("Message-ID").expect("a Message-ID")
    }

    fn to(&self) -> String {
        self.header("To").expect("a To")
    }

    pub fn subject(&self) -> String {
        self.header("Subject").expect("a Subject")
    }

    /// The token of the link to `page` (`/verify-email`, `/reset-password`).
    pub fn token(&self, page: &str) -> String {
        let text = self.text();
        let start = text.find(&format!("{page}?token=")).unwrap_or_else(|| panic!("no {page} link in {text}"))
            + page.len()
            + "?token=".len();
        text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
    }
}

/// The `.eml` files in `dir`, in no order.
pub fn mails_in(dir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .map(|path| Mail::parse(&std::fs::read(path).expect("readable mail")))
        .collect()
}

/// Waits (up to a minute) until `dir` holds `count` mails, and returns them.
pub async fn wait_for_mails(dir: &Path, count: usize) -> Vec<Mail> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mails = mails_in(dir);
        if mails.len() >= count {
            return mails;
        }
        assert!(Instant::now() < deadline, "{} of {count} mails arrived in {}", mails.len(), dir.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn outbox(app: &TestApp) -> PathBuf {
    app.data_dir().join("outbox")
}

/// The one mail to `email` about `subject` among `mails`.
pub fn mail_to<'a>(mails: &'a [Mail], email: &str, subject: &str) -> &'a Mail {
    let found: Vec<&Mail> =
        mails.iter().filter(|mail| mail.to().contains(email) && mail.subject().contains(subject)).collect();
    assert_eq!(found.len(), 1, "one mail to {email} about {subject:?} in {mails:#?}");
    found[0]
}

// ---------------------------------------------------------------- SMTP sink

fn sink_python() -> Option<String> {
    match std::env::var("SMTP_SINK_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true but SMTP_SINK_PYTHON is not set"),
        _ => {
            eprintln!("skipped: needs SMTP_SINK_PYTHON=$(bash tests/smtp/install.sh)");
            None
        }
    }
}

/// `tests/smtp/sink.py`: a real SMTP server on 127.0.0.1, storing each
/// accepted message as `<n>.eml` in `dir`.
struct Sink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    fn start(python: &str, port: u16, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("sink dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--dir", dir.path().to_str().unwrap(), "--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sink.py starts");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).expect("sink output");
        let port =
            line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("sink said {line:?}")).parse().unwrap();
        // Keep reading, so the sink never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Self { child, port, dir }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many times each `Message-ID` arrived.
fn deliveries(mails: &[Mail]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for mail in mails {
        *counts.entry(mail.message_id()).or_default() += 1;
    }
    counts
}

/// `rampart_email_outbox{state="queued"}` from the admin listener.
async fn queued(app: &TestApp) -> u64 {
    let scrape = read(app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap()).await;
    scrape
        .body
        .lines()
        .find(|line| line.starts_with("rampart_email_outbox{state=\"queued\"}"))
        .and_then(|line| line.split_whitespace().nth(1))
        .map_or_else(|| panic!("no outbox gauge in {}", scrape.body), |value| value.parse().unwrap())
}

/// Waits (up to a minute) until the outbox is empty.
async fn wait_until_sent(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while queued(app).await > 0 {
        assert!(Instant::now() < deadline, "the outbox never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- helpers

async fn sign_up(app: &TestApp, email: &str) -> Value {
    let response =
        app.post_json("/auth/signup", &json!({"email": email, "password": PASSWORD, "name": "Sam Signup"})).await;
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()
}

async fn verify(app: &TestApp, token: &str) -> TestResponse {
    app.post_json("/auth/email/verify", &json!({ "token": token })).await
}

async fn forgot(app: &TestApp, email: &str) -> TestResponse {
    app.post_json("/auth/password/forgot", &json!({ "email": email })).await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> TestResponse {
    app.post_json("/auth/password/reset", &json!({ "token": token, "password": password })).await
}

fn field_error(response: &TestResponse) -> String {
    let problem = response.assert_problem(400);
    problem["errors"][0]["field"].as_str().unwrap_or_default().to_owned()
}

fn events(app: &TestApp, event: &str) -> Vec<Value> {
    app.audit_events().into_iter().filter(|line| line["event"] == event).collect()
}

/// The answer with what differs between any two requests left out.
fn comparable(response: &TestResponse) -> (u16, Vec<(String, String)>, String) {
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id" | "ratelimit"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (response.status, headers, response.body.clone())
}

// ---------------------------------------------------------------- verification

/// Sign-up mails a link (as `.eml` without SMTP); its token verifies the
/// address once, and the user then shows `email_verified: true`.
#[tokio::test]
async fn a_sign_up_is_mailed_a_link_that_verifies_the_address_once() {
    let app = spawn_with(|options| options.config.server.public_url = "https://rampart.example.com".into()).await;
    let user = sign_up(&app, "sam@example.com").await;
    assert_eq!(user["email_verified"], false);

    let mails = wait_for_mails(&outbox(&app), 1).await;
    let mail = mail_to(&mails, "sam@example.com", "Confirm your email");
    assert!(mail.message_id().ends_with("@localhost>"), "{}", mail.message_id());
    assert!(mail.raw.contains("multipart/alternative") && mail.raw.contains("text/html"), "text and HTML");
    let token = mail.token("/verify-email");
    assert!(token.starts_with("ev_"), "{token}");
    // On the server's public origin.
    assert!(mail.text().contains(&format!("https://rampart.example.com/verify-email?token={token}")));

    let verified = verify(&app, &token).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.json()["email_verified"], true);
    assert_eq!(verified.json()["id"], user["id"]);
    assert_eq!(field_error(&verify(&app, &token).await), "token", "single use");
    let login = app.login("sam@example.com", PASSWORD).await;
    let profile = app.get_as("/api/profile", login["access_token"].as_str().unwrap()).await.json();
    assert_eq!(profile["email_verified"], true);
    assert_eq!(events(&app, "email_verified").len(), 1);
    // Development with mail to files: the link is in the log, at hand.
    assert!(app.logs.contents().contains(&format!("verify-email?token={token}")));

    // A verified user asking for a link gets the same 202 and no mail.
    let asked = app
        .send(
            app.client.post(app.url("/auth/email/verify/request")).bearer_auth(login["access_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(asked.status, 202);
    // Bad tokens of every shape are the same 400, never a 500.
    for bad in ["", "ev_", "pr_x", &"ev_".repeat(40), &token.replace("ev_", "pr_"), "ev_ä"] {
        assert_eq!(field_error(&verify(&app, bad).await), "token", "{bad}");
    }
    app.post_json("/auth/email/verify", &json!({})).await.assert_problem(400);
    app.post_json("/auth/email/verify/request", &json!({})).await.assert_problem(401);
    assert_eq!(mails_in(&outbox(&app)).len(), 1, "no mail for a verified address");
}

/// A link works for 24 hours; a new one can be asked for at most once a
/// minute, and any link of the user then proves the address.
#[tokio::test]
async fn a_verification_link_expires_and_new_ones_come_at_most_once_a_minute() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = spawn_with(|options| options.clock = Arc::new(clock.clone())).await;
    sign_up(&app, "late@example.com").await;
    let first = wait_for_mails(&outbox(&app), 1).await[0].token("/verify-email");
    let login = app.login("late@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let ask = || app.send(app.client.post(app.url("/auth/email/verify/request")).bearer_auth(&token));

    // Within the minute: 202, and no second mail.
    assert_eq!(ask().await.status, 202);
    clock.advance(time::Duration::hours(24) + time::Duration::seconds(1));
    assert_eq!(field_error(&verify(&app, &first).await), "token", "expired after 24 h");

    // The token is 15 minutes old no more: a fresh access token.
    let login = app.login("late@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let asked = app.send(app.client.post(app.url("/auth/email/verify/request")).bearer_auth(&token)).await;
    assert_eq!(asked.status, 202);
    let mails = wait_for_mails(&outbox(&app), 2).await;
    assert_eq!(mails.len(), 2, "exactly one more mail");
    let second = mails.iter().map(|mail| mail.token("/verify-email")).find(|t| *t != first).unwrap();
    let again = app.send(app.client.post(app.url("/auth/email/verify/request")).bearer_auth(&token)).await;
    assert_eq!(again.status, 202);
    assert_eq!(verify(&app, &second).await.status, 200);
    assert_eq!(mails_in(&outbox(&app)).len(), 2, "the third request came within the minute");
}

/// `auth.require_verified_email`: until verified, a user may read their
/// profile, verify and sign out; anything else is 403 `email_unverified`.
#[tokio::test]
async fn with_required_verification_an_unverified_user_may_only_verify() {
    let app = spawn_with(|options| {
        options.config.auth.require_verified_email = true;
        // A provider that is never reached: a link's refusal comes first.
        options.config.oauth.providers.insert(
            "plain".into(),
            rampart::config::OAuthProviderConfig {
                client_id: "client".into(),
                client_secret: SecretString::from("client secret"),
                auth_url: "https://provider.invalid/auth".into(),
                token_url: "https://provider.invalid/token".into(),
                userinfo_url: "https://provider.invalid/me".into(),
                redirect_url: "http://127.0.0.1:1/auth/oauth/plain/callback".into(),
                ..Default::default()
            },
        );
    })
    .await;
    sign_up(&app, "wait@example.com").await;
    let login = app.login("wait@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().unwrap();

    assert_eq!(app.get_as("/api/profile", token).await.status, 200);
    let refused = app.get_as("/api/posts", token).await;
    let problem = refused.assert_problem(403);
    assert_eq!(problem["code"], "email_unverified");
    assert_eq!(problem["type"], "about:blank");
    let renamed =
        app.send(app.client.patch(app.url("/api/profile")).bearer_auth(token).json(&json!({"name": "X"}))).await;
    assert_eq!(renamed.assert_problem(403)["code"], "email_unverified");
    let link = app.get_as("/auth/oauth/plain/start?link=true", token).await;
    assert_eq!(link.assert_problem(403)["code"], "email_unverified", "no new way in either");
    // Verified users are unaffected.
    let seeded = app.token_for(&app.users.user).await;
    assert_eq!(app.get_as("/api/posts", &seeded).await.status, 200);

    let link = wait_for_mails(&outbox(&app), 1).await[0].token("/verify-email");
    assert_eq!(verify(&app, &link).await.status, 200);
    assert_eq!(app.get_as("/api/posts", token).await.status, 200, "the same token, now verified");
    let logout = app.send(app.client.post(app.url("/auth/logout")).bearer_auth(token)).await;
    assert_eq!(logout.status, 204);
}

// ---------------------------------------------------------------- reset

/// Over real SMTP: the forgot-password answer is the same for a known and
/// an unknown address; the known one gets a link, which sets a new
/// password once, revokes every token, session and API key, and is
/// followed by a notice. A password that breaks the rules does not spend
/// the link.
#[tokio::test]
async fn a_reset_link_sets_a_new_password_once_and_signs_out_everywhere() {
    let Some(python) = sink_python() else { return };
    let sink = Sink::start(&python, 0, &[]);
    let port = sink.port;
    let app = spawn_with(|options| options.config.email.smtp_url = format!("smtp://127.0.0.1:{port}")).await;
    let user = app.users.user.clone();
    let pair = app.login(&user.email, &user.password).await;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let (_, api_key) = app.api_key(&access, &["profile:read"]).await;
    let session = app
        .send(app.client.post(app.url("/auth/session")).json(&json!({"email": user.email, "password": user.password})))
        .await;
    let cookie = session.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let notices = wait_for_mails(sink.dir(), 1).await; // the new API key's notice
    assert!(mail_to(&notices, &user.email, "API key").text().contains("test key"), "names the key");

    let known = forgot(&app, &user.email).await;
    let unknown = forgot(&app, "nobody-here@example.com").await;
    assert_eq!(known.status, 202);
    assert_eq!(comparable(&known), comparable(&unknown), "nothing tells the addresses apart");
    forgot(&app, "not an address").await.assert_problem(400);

    let mails = wait_for_mails(sink.dir(), 2).await;
    let mail = mail_to(&mails, &user.email, "Reset your password");
    let link = mail.token("/reset-password");
    assert!(link.starts_with("pr_"));

    // A weak password: 400 on `password`, and the link still works.
    assert_eq!(field_error(&reset(&app, &link, "short").await), "password");
    assert_eq!(field_error(&reset(&app, &link, &user.email).await), "password");
    let done = reset(&app, &link, NEW_PASSWORD).await;
    assert_eq!(done.status, 204, "{}", done.body);
    assert_eq!(field_error(&reset(&app, &link, "yet another long passphrase").await), "token", "single use");

    // Everything issued before is void.
    app.get_as("/api/profile", &access).await.assert_problem(401);
    app.get_as("/api/profile", &api_key).await.assert_problem(401);
    app.post_json("/auth/refresh", &json!({"refresh_token": pair["refresh_token"]})).await.assert_problem(401);
    let by_cookie = app.send(app.client.get(app.url("/api/profile")).header("cookie", &cookie)).await;
    by_cookie.assert_problem(401);
    app.post_json("/auth/login", &json!({"email": user.email, "password": user.password})).await.assert_problem(401);
    let fresh = app.login(&user.email, NEW_PASSWORD).await;
    assert_eq!(fresh["user"]["email_verified"], true);

    let mails = wait_for_mails(sink.dir(), 3).await;
    let notice = mail_to(&mails, &user.email, "Your password was reset");
    assert!(!notice.text().contains("token="), "a notice carries no link token");
    assert_eq!(events(&app, "password_reset_requested").len(), 2, "known and unknown");
    assert_eq!(events(&app, "password_reset").len(), 1);
    assert!(!app.logs.contents().contains(&link), "the token is never logged");
}

/// A reset link works for 30 minutes; a newer link replaces older ones.
#[tokio::test]
async fn a_reset_link_expires_after_thirty_minutes() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = spawn_with(|options| options.clock = Arc::new(clock.clone())).await;
    let email = app.users.other.email.clone();
    assert_eq!(forgot(&app, &email).await.status, 202);
    let first = wait_for_mails(&outbox(&app), 1).await[0].token("/reset-password");
    clock.advance(time::Duration::minutes(30) + time::Duration::seconds(1));
    assert_eq!(field_error(&reset(&app, &first, NEW_PASSWORD).await), "token", "expired");

    assert_eq!(forgot(&app, &email).await.status, 202);
    let second =
        wait_for_mails(&outbox(&app), 2).await.iter().map(|m| m.token("/reset-password")).find(|t| *t != first);
    let second = second.unwrap();
    assert_eq!(forgot(&app, &email).await.status, 202);
    let third = wait_for_mails(&outbox(&app), 3)
        .await
        .iter()
        .map(|m| m.token("/reset-password"))
        .find(|t| *t != first && *t != second);
    assert_eq!(field_error(&reset(&app, &second, NEW_PASSWORD).await), "token", "replaced by the newer link");
    assert_eq!(reset(&app, &third.unwrap(), NEW_PASSWORD).await.status, 204);
}

/// Forgot-password requests are limited per client and per address.
#[tokio::test]
async fn forgot_password_is_rate_limited_per_client_and_per_address() {
    let app = spawn_with(|options| {
        options.config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        options.config.rate_limit.get_mut("password_reset").expect("a built-in group").limit = 2;
    })
    .await;
    let from = |ip: &str, email: &str| {
        app.send(
            app.client
                .post(app.url("/auth/password/forgot"))
                .header("x-forwarded-for", ip)
                .json(&json!({ "email": email })),
        )
    };
    // One address from many clients.
    assert_eq!(from("198.51.100.1", "target@example.com").await.status, 202);
    assert_eq!(from("198.51.100.2", "Target@Example.com ").await.status, 202);
    let refused = from("198.51.100.3", "target@example.com").await;
    refused.assert_problem(429);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(from("198.51.100.3", "someone-else@example.com").await.status, 202);
    // One client, many addresses.
    assert_eq!(from("198.51.100.4", "third@example.com").await.status, 202);
    assert_eq!(from("198.51.100.4", "fourth@example.com").await.status, 202);
    let policy = from("198.51.100.4", "fifth@example.com").await;
    policy.assert_problem(429);
    assert!(policy.header("ratelimit-policy").unwrap().contains("\"password_reset\";q=2;w=900"));
}

// ---------------------------------------------------------------- delivery

/// The SMTP server is down while mail is queued, and the mail waits;
/// once it is up, every mail arrives exactly once.
#[tokio::test]
async fn mail_queued_while_the_server_is_down_arrives_once_it_is_up() {
    let Some(python) = sink_python() else { return };
    let port = free_port();
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = spawn_with(|options| {
        options.clock = Arc::new(clock.clone());
        options.config.email.smtp_url = format!("smtp://127.0.0.1:{port}");
    })
    .await;
    for n in 0..3 {
        sign_up(&app, &format!("queued{n}@example.com")).await;
    }
    // Each mail was tried and deferred (nothing listens on the port).
    wait_for_deferrals(&app, 3).await;
    assert_eq!(queued(&app).await, 3);

    let sink = Sink::start(&python, port, &[]);
    clock.advance(time::Duration::seconds(31));
    wait_until_sent(&app).await;
    let mails = mails_in(sink.dir());
    assert_eq!(mails.len(), 3, "{mails:#?}");
    assert!(deliveries(&mails).values().all(|&n| n == 1));
    for n in 0..3 {
        mail_to(&mails, &format!("queued{n}@example.com"), "Confirm your email");
    }
}

/// A reply lost after the message went through (the connection cut before
/// the server's 250): the mail is sent again, with the same `Message-ID`,
/// so the receiving side can tell it is one mail.
#[tokio::test]
async fn a_lost_reply_resends_the_mail_with_the_same_message_id() {
    let Some(python) = sink_python() else { return };
    let sink = Sink::start(&python, 0, &["--drop-first-reply"]);
    let port = sink.port;
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = spawn_with(|options| {
        options.clock = Arc::new(clock.clone());
        options.config.email.smtp_url = format!("smtp://127.0.0.1:{port}");
    })
    .await;
    sign_up(&app, "twice@example.com").await;
    wait_for_mails(sink.dir(), 1).await;
    clock.advance(time::Duration::seconds(31));
    wait_until_sent(&app).await;
    let mails = mails_in(sink.dir());
    assert_eq!(mails.len(), 2);
    assert_eq!(deliveries(&mails).into_values().collect::<Vec<_>>(), [2], "the same Message-ID twice");
}

/// A self-signed CA and a certificate for `localhost` signed by it.
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

/// STARTTLS (`?tls=required`) and implicit TLS (`smtps://`), trusting a
/// private CA through `email.ca_file`, with a user in the URL and a
/// password (`email.smtp_password`). Without the CA, nothing is
/// sent: the mail stays queued.
#[tokio::test]
async fn mail_goes_over_starttls_and_implicit_tls_to_a_private_ca() {
    let Some(python) = sink_python() else { return };
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(certs.path());
    let tls_args =
        ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--auth", "mailer:sink secret"];
    for (mode, url) in
        [("starttls", "smtp://mailer@localhost:{port}?tls=required"), ("implicit", "smtps://mailer@localhost:{port}")]
    {
        let mut args = vec!["--mode", mode];
        args.extend(tls_args);
        let sink = Sink::start(&python, 0, &args);
        let url = url.replace("{port}", &sink.port.to_string());
        let app = spawn_with(|options| {
            let email = &mut options.config.email;
            email.smtp_url = url.clone();
            email.ca_file = ca.clone();
            email.smtp_password = SecretString::from("sink secret");
            email.from = "Rampart Test <rampart@example.org>".into();
        })
        .await;
        sign_up(&app, &format!("tls-{mode}@example.com")).await;
        let mails = wait_for_mails(sink.dir(), 1).await;
        let mail = mail_to(&mails, &format!("tls-{mode}@example.com"), "Confirm your email");
        assert!(mail.message_id().ends_with("@example.org>"), "{mode}: {}", mail.message_id());
        assert!(mail.header("From").unwrap().contains("rampart@example.org"));
        assert_eq!(verify(&app, &mail.token("/verify-email")).await.status, 200, "{mode}");
        assert!(!app.logs.contents().contains("sink secret"), "the SMTP password is never logged");
    }

    // The public roots do not know the private CA: not sent, kept.
    let mut args = vec!["--mode", "implicit"];
    args.extend(tls_args);
    let sink = Sink::start(&python, 0, &args);
    let port = sink.port;
    let app = spawn_with(|options| {
        options.config.email.smtp_url = format!("smtps://mailer@localhost:{port}");
        options.config.email.smtp_password = SecretString::from("sink secret");
    })
    .await;
    sign_up(&app, "untrusted@example.com").await;
    wait_for_deferrals(&app, 1).await;
    assert_eq!(queued(&app).await, 1);
    assert!(mails_in(sink.dir()).is_empty());
}

// ---------------------------------------------------------------- notices

/// A password change is followed by a notice, with nothing secret in it.
#[tokio::test]
async fn a_password_change_is_followed_by_a_notice() {
    let app = spawn_with(|_| {}).await;
    let user = app.users.manager.clone();
    let token = app.token_for(&user).await;
    let changed = app
        .send(
            app.client
                .put(app.url("/api/profile/password"))
                .bearer_auth(&token)
                .json(&json!({"current_password": user.password, "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    let mails = wait_for_mails(&outbox(&app), 1).await;
    let notice = mail_to(&mails, &user.email, "Your password was changed");
    assert!(!notice.raw.contains(NEW_PASSWORD) && !notice.raw.contains("token="));
    assert!(notice.text().contains("/reset-password"), "says where to go if it was not them");
}

/// Waits (up to a minute) until `app` has counted `count` deferred attempts.
async fn wait_for_deferrals(app: &TestApp, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = format!("rampart_emails_total{{outcome=\"deferred\"}} {count}");
    loop {
        let scrape = read(app.client.get(format!("http://{}/metrics", app.admin_address)).send().await.unwrap()).await;
        if scrape.body.contains(&wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "never {wanted}: {}", scrape.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PostgreSQL: mail queued by an instance that stopped while the SMTP
/// server was down is kept, and two instances on the database then send
/// it, and the mail they queue themselves, each exactly once.
#[tokio::test]
async fn two_instances_on_one_postgresql_send_each_mail_once_across_a_restart() {
    let Some(python) = sink_python() else { return };
    let Some(url) = crate::postgres::postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = crate::postgres_schema::TestSchema::create(&url, "rampart_mail_").await;
    let port = free_port();
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let first = spawn_with(|options| {
        options.config.database.url = SecretString::from(schema.url.clone());
        options.config.email.smtp_url = smtp_url.clone();
    })
    .await;
    for n in 0..6 {
        sign_up(&first, &format!("kept{n}@example.com")).await;
    }
    wait_for_deferrals(&first, 6).await;
    first.stop();

    // The SMTP server is up; two instances share the outbox, with clocks
    // past the first retry.
    let sink = Sink::start(&python, port, &[]);
    let clock = ManualClock::new(time::OffsetDateTime::now_utc() + time::Duration::minutes(1));
    let instance = || {
        spawn_with(|options| {
            options.config.database.url = SecretString::from(schema.url.clone());
            options.config.email.smtp_url = smtp_url.clone();
            options.clock = Arc::new(clock.clone());
            options.seed = false;
        })
    };
    let (second, third) = (instance().await, instance().await);
    for n in 0..20 {
        let app = if n % 2 == 0 { &second } else { &third };
        sign_up(app, &format!("shared{n}@example.com")).await;
    }
    wait_until_sent(&second).await;
    let mails = mails_in(sink.dir());
    assert_eq!(mails.len(), 26, "every mail, none twice");
    assert!(deliveries(&mails).values().all(|&n| n == 1), "{:?}", deliveries(&mails));
    for email in (0..6).map(|n| format!("kept{n}@example.com")).chain((0..20).map(|n| format!("shared{n}@example.com")))
    {
        mail_to(&mails, &email, "Confirm your email");
    }
    second.stop();
    third.stop();
    schema.drop().await;
}

/// The pages in Chromium: "Forgot password?" on /login leads to the
/// address form, the mailed link to the new-password form, and the mailed
/// verification link confirms the address on opening.
#[tokio::test]
async fn a_person_resets_a_password_and_verifies_an_address_on_the_pages_in_the_browser() {
    if !crate::browser::browser_available() {
        return;
    }
    let app = spawn_with(|_| {}).await;
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let shot = |name: &str| target.join(name).display().to_string();
    let base = format!("http://{}", app.address);
    let email = app.users.user.email.clone();

    crate::browser::run_browser_script(
        "email-pages.mjs",
        vec!["forgot".into(), base.clone(), email.clone(), shot("email-forgot.png")],
    )
    .await;
    let mails = wait_for_mails(&outbox(&app), 1).await;
    let token = mail_to(&mails, &email, "Reset your password").token("/reset-password");
    let link = format!("{base}/reset-password?token={token}");
    crate::browser::run_browser_script(
        "email-pages.mjs",
        vec!["reset".into(), link, NEW_PASSWORD.into(), shot("email-reset.png")],
    )
    .await;
    let login = app.login(&email, NEW_PASSWORD).await;
    assert_eq!(login["user"]["email"], email.as_str());

    sign_up(&app, "pages@example.com").await;
    let mails = wait_for_mails(&outbox(&app), 3).await; // reset, its notice, the verification
    let token = mail_to(&mails, "pages@example.com", "Confirm your email").token("/verify-email");
    crate::browser::run_browser_script(
        "email-pages.mjs",
        vec!["verify".into(), format!("{base}/verify-email?token={token}"), shot("email-verify.png")],
    )
    .await;
    let signed_in = app.login("pages@example.com", PASSWORD).await;
    assert_eq!(signed_in["user"]["email_verified"], true, "the page confirmed the address");
}
