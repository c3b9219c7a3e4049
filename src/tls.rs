//! TLS with rustls (ring provider): certificates from `[tls]` files, or a
//! self-signed one for `serve --dev-tls`.
//!
//! The development certificate and key are written under `server.data_dir`
//! (key 0600) so a local client can trust the certificate with `--cacert`.

use std::{fs, path::Path, sync::Arc};

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;

/// Builds an acceptor from PEM files: a certificate chain and a private key.
pub fn acceptor_from_files(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("tls.cert_file: cannot read {}", cert_file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert_file: {} is not a PEM certificate chain", cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls.cert_file: {} holds no certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("tls.key_file: {} holds no readable PEM private key", key_file.display()))?;
    acceptor(certs, key)
}

/// A self-signed certificate for `localhost`/`127.0.0.1`/`::1`, written to
/// `dir` as `dev-tls-cert.pem` and `dev-tls-key.pem`.
pub fn acceptor_self_signed(dir: &Path) -> anyhow::Result<(TlsAcceptor, std::path::PathBuf)> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).context("generating the development certificate")?;
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    crate::fs::create_private_dir(dir)?;
    let cert_path = dir.join("dev-tls-cert.pem");
    fs::write(&cert_path, &cert_pem).with_context(|| format!("cannot write {}", cert_path.display()))?;
    crate::fs::write_private(&dir.join("dev-tls-key.pem"), key_pem.as_bytes())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("reading the generated key")?;
    Ok((acceptor(vec![certified.cert.der().clone()], key)?, cert_path))
}

fn acceptor(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol setup")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls: the private key does not match the certificate or is unsupported")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
