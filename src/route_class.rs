//! What the pipeline treats differently from route to route, as data: each
//! router declares its routes' `RouteClass` where it registers them
//! (`routes::Routes::routes_of`, `Routes::class_under`), and the layers and
//! `openapi::finish` ask the class, never a path.
//!
//! Classes are looked up by the request's path before routing (blocked
//! clients are refused, and rate limits counted, before the router runs),
//! in `RouteClasses`, built once when the router is. Only static paths can
//! therefore be classified one by one; a whole namespace is classified by
//! prefix (every path under it, routed or not, so 404s and 405s there count
//! like its routes). A lookup compares strings and allocates nothing.
//!
//! Paths a configured rate-limit group names (`[rate_limit.*] paths`) come
//! from the operator, not from here.

use axum::http::Method;

/// How the pipeline treats a route. One class per path; each is a fixed set
/// of properties, asked through the methods below.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// The global rate limit (and configured groups) apply; blocked clients
    /// are refused.
    #[default]
    Normal,
    /// A `Normal` route in the API namespace: the built-in `api` rate-limit
    /// group applies too.
    Api,
    /// `POST` signs in with a password: the built-in `login` group applies
    /// (per IP here, per (IP, email) in `accounts::verify_login`), and a 401
    /// is a failed login for active defence. Other methods are `Normal`.
    SignIn,
    /// A readiness check: never rate limited, so load balancers always
    /// reach it; blocked clients are still refused.
    Readiness,
    /// A liveness check: never rate limited and open even to blocked
    /// clients.
    Liveness,
    /// Forward auth (`/auth/forward`): the pipeline's groups do not count
    /// it; the route it asks about counts in its own group.
    ForwardAuth,
}

impl RouteClass {
    /// Whether rate limits count requests to this route.
    pub fn rate_limited(self) -> bool {
        !matches!(self, RouteClass::Readiness | RouteClass::Liveness | RouteClass::ForwardAuth)
    }

    /// Whether a blocked client is refused here.
    pub fn blockable(self) -> bool {
        self != RouteClass::Liveness
    }

    /// Whether the built-in `api` rate-limit group applies.
    pub fn in_api_group(self) -> bool {
        self == RouteClass::Api
    }

    /// Whether a `method` request here is a password sign-in.
    pub fn signs_in(self, method: &Method) -> bool {
        self == RouteClass::SignIn && *method == Method::POST
    }
}

/// The routers' class declarations, by exact path and by prefix. Paths not
/// declared are `Normal`.
#[derive(Debug, Default, Clone)]
pub struct RouteClasses {
    /// A handful of entries: a linear scan beats hashing the path.
    exact: Vec<(Box<str>, RouteClass)>,
    prefixes: Vec<(Box<str>, RouteClass)>,
}

impl RouteClasses {
    /// Declares `path`'s class.
    ///
    /// # Panics
    /// On a path template (`{id}`): classes are looked up before routing,
    /// by the literal path. And on a path declared twice with different
    /// classes. Both are mistakes in a router, found by any test that
    /// builds it.
    pub fn declare(&mut self, path: &str, class: RouteClass) {
        assert!(!path.contains('{'), "{path}: only static paths can be given a route class (use a prefix)");
        match self.exact.iter().find(|(declared, _)| &**declared == path) {
            Some((_, existing)) => {
                assert_eq!(*existing, class, "{path} is declared with two route classes");
            }
            None => self.exact.push((path.into(), class)),
        }
    }

    /// Declares the class of every path that starts with `prefix` and has
    /// no class of its own.
    pub fn declare_prefix(&mut self, prefix: &str, class: RouteClass) {
        self.prefixes.push((prefix.into(), class));
    }

    /// Adds `other`'s declarations (see `declare` for conflicts).
    pub fn merge(&mut self, other: RouteClasses) {
        for (path, class) in other.exact {
            self.declare(&path, class);
        }
        self.prefixes.extend(other.prefixes);
    }

    /// The class of a request to `path` (or of a documented path template):
    /// its own, else the longest declared prefix's, else `Normal`.
    pub fn classify(&self, path: &str) -> RouteClass {
        if let Some((_, class)) = self.exact.iter().find(|(declared, _)| &**declared == path) {
            return *class;
        }
        self.prefixes
            .iter()
            .filter(|(prefix, _)| path.starts_with(&**prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(RouteClass::Normal, |(_, class)| *class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteClasses {
        let mut classes = RouteClasses::default();
        classes.declare("/live", RouteClass::Liveness);
        classes.declare("/v1/ready", RouteClass::Readiness);
        classes.declare_prefix("/v1/", RouteClass::Api);
        classes
    }

    #[test]
    fn a_path_takes_its_own_class_then_its_prefix_class_then_normal() {
        let classes = table();
        assert_eq!(classes.classify("/live"), RouteClass::Liveness);
        assert_eq!(classes.classify("/live/"), RouteClass::Normal, "exact paths match exactly");
        assert_eq!(classes.classify("/v1/ready"), RouteClass::Readiness, "its own class wins over the prefix");
        assert_eq!(classes.classify("/v1/anything/{id}"), RouteClass::Api);
        assert_eq!(classes.classify("/v1"), RouteClass::Normal);
        assert_eq!(classes.classify("/elsewhere"), RouteClass::Normal);
    }

    #[test]
    fn the_classes_carry_the_properties_the_layers_ask() {
        let properties = |class: RouteClass| {
            (class.rate_limited(), class.blockable(), class.in_api_group(), class.signs_in(&Method::POST))
        };
        assert_eq!(properties(RouteClass::Normal), (true, true, false, false));
        assert_eq!(properties(RouteClass::Api), (true, true, true, false));
        assert_eq!(properties(RouteClass::SignIn), (true, true, false, true));
        assert_eq!(properties(RouteClass::Readiness), (false, true, false, false));
        assert_eq!(properties(RouteClass::Liveness), (false, false, false, false));
        assert!(!RouteClass::SignIn.signs_in(&Method::DELETE), "only POST signs in");
    }

    #[test]
    #[should_panic(expected = "two route classes")]
    fn one_path_cannot_have_two_classes() {
        let mut classes = table();
        classes.declare("/live", RouteClass::Readiness);
    }

    #[test]
    #[should_panic(expected = "only static paths")]
    fn a_template_cannot_be_classified() {
        RouteClasses::default().declare("/v1/items/{id}", RouteClass::Liveness);
    }
}
