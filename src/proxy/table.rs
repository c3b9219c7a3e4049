//! STUB (lead): replaced by helper "table"'s version at merge.
use std::sync::Arc;

use axum::http::Method;

use crate::{
    config::{Config, RouteAuth, Unauthenticated},
    domain::Role,
};

pub struct RouteTable {
    routes: Vec<Arc<ProxyRoute>>,
}

#[derive(Debug)]
pub struct ProxyRoute {
    pub id: Arc<str>,
    pub path: String,
    pub methods: Option<Vec<Method>>,
    pub host: Option<String>,
    pub upstream: Arc<str>,
    pub strip_prefix: bool,
    pub auth: RouteAuth,
    pub unauthenticated: Unauthenticated,
    pub allow_roles: Vec<Role>,
    pub rate_limit: Arc<str>,
    pub websockets: bool,
    pub pass_authorization: bool,
    pub preserve_host: bool,
}

pub enum Selection<'a> {
    Route(&'a Arc<ProxyRoute>),
    MethodNotAllowed { allow: String },
    NoRoute,
}

impl RouteTable {
    pub fn build(config: &Config) -> Result<RouteTable, Vec<String>> {
        let mut routes = Vec::new();
        for route in &config.proxy.routes {
            routes.push(Arc::new(ProxyRoute {
                id: route.id.as_str().into(),
                path: route.path.to_ascii_lowercase(),
                methods: (!route.methods.is_empty())
                    .then(|| route.methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect()),
                host: (!route.host.is_empty()).then(|| route.host.to_ascii_lowercase()),
                upstream: route.upstream.as_str().into(),
                strip_prefix: route.strip_prefix,
                auth: route.auth,
                unauthenticated: route.unauthenticated,
                allow_roles: route.allow_roles.iter().filter_map(|r| r.parse().ok()).collect(),
                rate_limit: if route.rate_limit.is_empty() { "proxy".into() } else { route.rate_limit.as_str().into() },
                websockets: route.websockets,
                pass_authorization: route.pass_authorization,
                preserve_host: route.preserve_host,
            }));
        }
        if !config.proxy.default_upstream.is_empty() {
            routes.push(Arc::new(ProxyRoute {
                id: "default".into(),
                path: "/".into(),
                methods: None,
                host: None,
                upstream: "default".into(),
                strip_prefix: false,
                auth: RouteAuth::Required,
                unauthenticated: Unauthenticated::Problem,
                allow_roles: Vec::new(),
                rate_limit: "proxy".into(),
                websockets: false,
                pass_authorization: false,
                preserve_host: false,
            }));
        }
        Ok(RouteTable { routes })
    }

    pub fn empty() -> RouteTable {
        RouteTable { routes: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn routes(&self) -> &[Arc<ProxyRoute>] {
        &self.routes
    }

    pub fn select(&self, method: &Method, _host: Option<&str>, path: &str) -> Selection<'_> {
        let lower = path.to_ascii_lowercase();
        let matches = |route: &ProxyRoute| {
            route.path == "/"
                || lower == route.path
                || (lower.starts_with(&route.path) && lower.as_bytes().get(route.path.len()) == Some(&b'/'))
        };
        let Some(longest) = self.routes.iter().filter(|r| matches(r)).map(|r| r.path.len()).max() else {
            return Selection::NoRoute;
        };
        let candidates: Vec<&Arc<ProxyRoute>> =
            self.routes.iter().filter(|r| matches(r) && r.path.len() == longest).collect();
        for route in &candidates {
            let allowed = match &route.methods {
                None => true,
                Some(methods) => methods.contains(method) || (method == Method::HEAD && methods.contains(&Method::GET)),
            };
            if allowed {
                return Selection::Route(route);
            }
        }
        Selection::MethodNotAllowed { allow: "GET".into() }
    }
}

impl ProxyRoute {
    pub fn upstream_path_and_query(&self, path: &str, query: Option<&str>) -> String {
        let mut out = if self.strip_prefix && self.path != "/" {
            let rest = &path[self.path.len().min(path.len())..];
            if rest.is_empty() { "/".to_owned() } else { rest.to_owned() }
        } else {
            path.to_owned()
        };
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

pub fn rampart_owns(path: &str, demo_enabled: bool) -> bool {
    const OWNED: [&str; 14] = [
        "/auth",
        "/api/profile",
        "/api/users",
        "/api/admin",
        "/health",
        "/ready",
        "/.well-known",
        "/openapi.json",
        "/docs",
        "/login",
        "/account",
        "/admin",
        "/verify-email",
        "/reset-password",
    ];
    const DEMO: [&str; 2] = ["/api/posts", "/api/dashboard"];
    let lower = path.to_ascii_lowercase();
    let under = |prefix: &str| {
        lower == prefix || (lower.starts_with(prefix) && lower.as_bytes().get(prefix.len()) == Some(&b'/'))
    };
    OWNED.iter().any(|p| under(p)) || (demo_enabled && DEMO.iter().any(|p| under(p)))
}
