//! API keys' values: the scopes a key may carry, its name, and the key as
//! presented (`rk_<id>_<secret>`).

use std::{fmt, sync::Arc};

use uuid::Uuid;

use super::UserName;
use crate::config::proxy::{MAX_ROUTE_ID, is_id_byte};

/// What an API key may do (API.md "API keys"). The policy sees a key's
/// scopes as `context.scopes` and forbids every action outside them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    PostsRead,
    PostsWrite,
    PostsDelete,
    ProfileRead,
    ProfileWrite,
    AdminRead,
    AdminWrite,
    /// Every protect-mode route (`routes:*`).
    AllRoutes,
    /// One protect-mode route, by id (`routes:<id>`).
    Route(Arc<str>),
}

impl Scope {
    /// Every scope that is not one route's, in the order API.md lists them.
    pub const FIXED: [Scope; 8] = [
        Scope::PostsRead,
        Scope::PostsWrite,
        Scope::PostsDelete,
        Scope::ProfileRead,
        Scope::ProfileWrite,
        Scope::AdminRead,
        Scope::AdminWrite,
        Scope::AllRoutes,
    ];

    /// A scope by its name; a `routes:<id>` needs an id of route-id
    /// characters (whether such a route exists is the caller's question).
    pub fn parse(name: &str) -> Result<Self, String> {
        if let Some(scope) = Self::FIXED.iter().find(|scope| scope.fixed_name() == Some(name)) {
            return Ok(scope.clone());
        }
        match name.strip_prefix("routes:") {
            // A route id, by the route table's own rule.
            Some(id) if !id.is_empty() && id.len() <= MAX_ROUTE_ID && id.bytes().all(is_id_byte) => {
                Ok(Scope::Route(id.into()))
            }
            _ => Err(format!("{name:?} is not a scope")),
        }
    }

    fn fixed_name(&self) -> Option<&'static str> {
        Some(match self {
            Scope::PostsRead => "posts:read",
            Scope::PostsWrite => "posts:write",
            Scope::PostsDelete => "posts:delete",
            Scope::ProfileRead => "profile:read",
            Scope::ProfileWrite => "profile:write",
            Scope::AdminRead => "admin:read",
            Scope::AdminWrite => "admin:write",
            Scope::AllRoutes => "routes:*",
            Scope::Route(_) => return None,
        })
    }

    /// The route id of a `routes:<id>` scope.
    pub fn route(&self) -> Option<&str> {
        match self {
            Scope::Route(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Route(id) => write!(f, "routes:{id}"),
            fixed => f.write_str(fixed.fixed_name().unwrap_or_default()),
        }
    }
}

/// A key's scopes: sorted, without repeats, at least one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scopes(Arc<[Scope]>);

impl Scopes {
    /// At most this many scopes on one key.
    pub const MAX: usize = 64;

    /// From names; every unknown one is reported, each as it was sent.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, Vec<String>> {
        let mut scopes = Vec::new();
        let mut problems = Vec::new();
        for name in names {
            match Scope::parse(name) {
                Ok(scope) => scopes.push(scope),
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(vec!["must name at least one scope".into()]);
        }
        if scopes.len() > Self::MAX {
            return Err(vec![format!("must name at most {} scopes", Self::MAX)]);
        }
        Ok(Self(scopes.into()))
    }

    /// As stored: the names separated by spaces.
    pub fn from_stored(text: &str) -> Self {
        let mut scopes: Vec<Scope> = text.split(' ').filter_map(|name| Scope::parse(name).ok()).collect();
        scopes.sort();
        scopes.dedup();
        Self(scopes.into())
    }

    pub fn to_stored(&self) -> String {
        self.names().collect::<Vec<_>>().join(" ")
    }

    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(Scope::to_string)
    }

    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }
}

/// A key's name: the rule of a person's name (`UserName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(UserName);

impl ApiKeyName {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        UserName::parse(input).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// `rk_<id>_<secret>` as presented: the id to look the key up by and the
/// secret to compare with its stored hash. Nothing here is checked but
/// the shape.
#[derive(Debug)]
pub struct PresentedKey<'a> {
    pub id: Uuid,
    pub secret: &'a str,
}

/// Every API key starts with this.
pub const API_KEY_PREFIX: &str = "rk_";

impl<'a> PresentedKey<'a> {
    pub fn parse(token: &'a str) -> Option<Self> {
        let (id, secret) = token.strip_prefix(API_KEY_PREFIX)?.split_once('_')?;
        // The hyphenated form only, as keys are made: one spelling per key.
        if id.len() != 36 || secret.is_empty() || secret.len() > 128 {
            return None;
        }
        Some(Self { id: Uuid::try_parse(id).ok()?, secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_sort_and_report_every_unknown_name() {
        let scopes = Scopes::parse(["posts:write", "posts:read", "posts:read", "routes:orders-v2"]).unwrap();
        assert_eq!(scopes.names().collect::<Vec<_>>(), ["posts:read", "posts:write", "routes:orders-v2"]);
        assert_eq!(Scopes::from_stored(&scopes.to_stored()), scopes);
        assert_eq!(
            Scopes::parse(["posts:read", "posts:admin", "routes:", "routes:a b"]).unwrap_err(),
            ["\"posts:admin\" is not a scope", "\"routes:\" is not a scope", "\"routes:a b\" is not a scope"]
        );
        assert!(Scopes::parse([]).is_err());
        for scope in Scope::FIXED {
            assert_eq!(Scope::parse(&scope.to_string()), Ok(scope));
        }
    }

    #[test]
    fn presented_keys_need_the_exact_shape() {
        let id = Uuid::now_v7();
        let key = format!("rk_{id}_c2VjcmV0_-x");
        let presented = PresentedKey::parse(&key).unwrap();
        assert_eq!((presented.id, presented.secret), (id, "c2VjcmV0_-x"));
        for bad in [
            format!("rk_{id}"),
            format!("rk_{id}_"),
            format!("rk_{}_secret", id.simple()),
            format!("rt_{id}_secret"),
            "rk_".into(),
        ] {
            assert!(PresentedKey::parse(&bad).is_none(), "{bad}");
        }
    }
}
