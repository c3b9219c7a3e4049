//! HTTPS with rustls: a certificate from files, HSTS over TLS.

use rampart::tls;

use crate::helpers::{read, spawn_with};

#[tokio::test]
async fn https_serves_with_a_configured_certificate_and_sends_hsts() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, certified.cert.pem()).unwrap();
    std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();
    let acceptor = tls::acceptor_from_files(&cert_file, &key_file).unwrap();

    let app = spawn_with(|options| options.tls = Some(acceptor)).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", app.address)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/health", app.address.port());
    let response = read(client.get(&url).send().await.unwrap()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("strict-transport-security"), Some("max-age=31536000; includeSubDomains"));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://{}/health", app.address)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn the_development_certificate_is_written_for_clients_to_trust() {
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, cert_path) = tls::acceptor_self_signed(dir.path()).unwrap();
    let key_path = dir.path().join("dev-tls-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let cert_pem = std::fs::read(&cert_path).unwrap();

    let app = spawn_with(|options| options.tls = Some(acceptor)).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert_pem).unwrap())
        .build()
        .unwrap();
    let response =
        read(client.get(format!("https://127.0.0.1:{}/health", app.address.port())).send().await.unwrap()).await;
    assert_eq!(response.status, 200);
    assert!(response.header("strict-transport-security").is_some());
}

#[tokio::test]
async fn session_cookies_are_secure_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, cert_path) = tls::acceptor_self_signed(dir.path()).unwrap();
    let cert_pem = std::fs::read(&cert_path).unwrap();
    let app = spawn_with(|options| options.tls = Some(acceptor)).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert_pem).unwrap())
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/auth/session", app.address.port());
    let body = serde_json::json!({"email": app.users.user.email, "password": app.users.user.password});
    let response = read(client.post(&url).json(&body).send().await.unwrap()).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.header("set-cookie").unwrap().contains("; Secure"));
}
