//! STUB (lead): replaced by helper "table"'s version at merge.
use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

use super::{ByteSize, HumanDuration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub assertion_header: String,
    pub assertion_ttl: HumanDuration,
    pub assertion_key_file: PathBuf,
    pub strip_request_headers: Vec<String>,
    pub default_upstream: String,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            assertion_header: "X-Rampart-Assertion".into(),
            assertion_ttl: HumanDuration::secs(60),
            assertion_key_file: PathBuf::new(),
            strip_request_headers: Vec::new(),
            default_upstream: String::new(),
            upstreams: BTreeMap::new(),
            routes: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub url: String,
    pub ca_file: PathBuf,
    pub connect_timeout: HumanDuration,
    pub response_timeout: HumanDuration,
    pub idle_timeout: HumanDuration,
    pub max_body: ByteSize,
    pub health_path: String,
    pub health_interval: HumanDuration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: PathBuf::new(),
            connect_timeout: HumanDuration::secs(5),
            response_timeout: HumanDuration::secs(30),
            idle_timeout: HumanDuration::mins(5),
            max_body: ByteSize(10 * 1024 * 1024),
            health_path: String::new(),
            health_interval: HumanDuration::secs(10),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    #[default]
    Required,
    Optional,
    Public,
}

impl RouteAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteAuth::Required => "required",
            RouteAuth::Optional => "optional",
            RouteAuth::Public => "public",
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unauthenticated {
    #[default]
    Problem,
    Login,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub id: String,
    pub path: String,
    pub methods: Vec<String>,
    pub host: String,
    pub upstream: String,
    pub strip_prefix: bool,
    pub auth: RouteAuth,
    pub unauthenticated: Unauthenticated,
    pub allow_roles: Vec<String>,
    pub rate_limit: String,
    pub websockets: bool,
    pub pass_authorization: bool,
    pub preserve_host: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    pub enabled: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}
