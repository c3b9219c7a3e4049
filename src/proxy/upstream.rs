//! One configured upstream (`[proxy.upstreams.<name>]`): a pooled HTTP/1.1
//! client (rustls for `https://`), its timeouts and body limit, and its
//! health as the active check last saw it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use axum::{
    body::Body,
    http::{Uri, uri::Authority, uri::Scheme},
};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use crate::config::UpstreamConfig;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Idle pooled connections kept per upstream host.
const POOL_IDLE_PER_HOST: usize = 256;

pub struct Upstream {
    pub name: Arc<str>,
    pub scheme: Scheme,
    pub authority: Authority,
    pub client: UpstreamClient,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body: u64,
    /// `health_path` and `health_interval`, when a check is configured.
    pub health: Option<(String, Duration)>,
    up: AtomicBool,
}

impl Upstream {
    pub fn new(name: &str, config: &UpstreamConfig) -> anyhow::Result<Self> {
        let uri: Uri = config.url.parse().with_context(|| format!("proxy.upstreams.{name}.url: not a URL"))?;
        let scheme = uri.scheme().cloned().context("the upstream URL needs http:// or https://")?;
        let authority = uri.authority().cloned().context("the upstream URL needs a host")?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout.0));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if config.ca_file.as_os_str().is_empty() {
            builder.with_provider_and_webpki_roots(provider)?
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(&config.ca_file)
                .with_context(|| format!("proxy.upstreams.{name}.ca_file: cannot read {}", config.ca_file.display()))?
            {
                roots.add(certificate?)?;
            }
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(tls)
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .pool_idle_timeout(Duration::from_secs(30))
            // A pooled connection the upstream closed before our request went
            // out is retried on a fresh one: nothing was sent yet.
            .retry_canceled_requests(true)
            .set_host(false)
            .build(connector);
        let health = (!config.health_path.is_empty())
            .then(|| (config.health_path.clone(), config.health_interval.0.max(Duration::from_millis(100))));
        Ok(Self {
            name: name.into(),
            scheme,
            authority,
            client,
            response_timeout: config.response_timeout.0,
            idle_timeout: config.idle_timeout.0,
            max_body: config.max_body.0,
            health,
            up: AtomicBool::new(true),
        })
    }

    /// The absolute URI of `path_and_query` on this upstream.
    pub fn uri(&self, path_and_query: &str) -> Option<Uri> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .ok()
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Seconds a client should wait before retrying while this is down.
    pub fn retry_after_secs(&self) -> u64 {
        self.health.as_ref().map_or(10, |(_, interval)| interval.as_secs().max(1))
    }

    /// One health check: a 2xx or 3xx within the response timeout is up.
    pub async fn check(&self) -> bool {
        let Some((path, interval)) = &self.health else {
            return true;
        };
        let Some(uri) = self.uri(path) else {
            return false;
        };
        let Ok(request) = axum::http::Request::get(uri)
            .header(axum::http::header::HOST, self.authority.as_str())
            .header(axum::http::header::USER_AGENT, "rampart-health-check")
            .body(Body::empty())
        else {
            return false;
        };
        let limit = self.response_timeout.min(*interval).max(Duration::from_millis(100));
        match tokio::time::timeout(limit, self.client.request(request)).await {
            Ok(Ok(response)) => response.status().is_success() || response.status().is_redirection(),
            _ => false,
        }
    }
}
