//! Authorization: "may this caller do this action on this resource?",
//! answered by a Cedar policy.
//!
//! Handlers ask `Authorizer::authorize` and contain no role checks of their
//! own. The schema (`schema.cedarschema`) and the default policy
//! (`default.cedar`, API.md's tables) are embedded in the binary;
//! `[policy] file` replaces the policy. Every policy is validated against
//! the schema before it is used: at start (an invalid one stops the start
//! with the file, line and Cedar's message), by `rampart config check`, and
//! on reload (SIGHUP), where an invalid policy is refused and the old one
//! stays in force.
//!
//! A decision is made from one `DecisionInput` (the principal's attributes,
//! the action, the resource's attributes) and nothing else: Cedar's request
//! and entities are built from it, and remembered decisions are keyed by
//! it. The answer is a `Decision`; a denial says who was denied and what
//! they tried, and `AppState::authorize` turns it into 401 (a guest) or an
//! audited 403. This module knows nothing of HTTP: it imports no error,
//! app, layer, route or OpenAPI type.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex, RwLock},
};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use miette::Diagnostic;
use prometheus_client::{
    encoding::EncodeLabelSet, metrics::counter::Counter, metrics::family::Family, registry::Registry,
};
use uuid::Uuid;

use crate::{
    auth::principal::{Caller, Principal},
    domain::{PostWithAuthor, Role, Scope, Scopes, User},
    proxy::table::ProxyRoute,
};

const SCHEMA: &str = include_str!("schema.cedarschema");
pub const DEFAULT_POLICY: &str = include_str!("default.cedar");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    ListPosts,
    ReadPost,
    CreatePost,
    UpdatePost,
    DeletePost,
    ViewDashboard,
    ViewAudit,
    ListBlocks,
    ManageBlocks,
    /// List and revoke any user's API keys (admins; never with a key).
    ManageApiKeys,
    ListUsers,
    UpdateUser,
    DeleteUser,
    /// Read one's own profile.
    ReadOwnAccount,
    /// Change one's own profile and password.
    ManageOwnAccount,
    /// Send a request through a protect-mode route (`Rampart::Route`).
    Proxy,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::ListPosts,
        Action::ReadPost,
        Action::CreatePost,
        Action::UpdatePost,
        Action::DeletePost,
        Action::ViewDashboard,
        Action::ViewAudit,
        Action::ListBlocks,
        Action::ManageBlocks,
        Action::ManageApiKeys,
        Action::ListUsers,
        Action::UpdateUser,
        Action::DeleteUser,
        Action::ReadOwnAccount,
        Action::ManageOwnAccount,
        Action::Proxy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ListPosts => "ListPosts",
            Action::ReadPost => "ReadPost",
            Action::CreatePost => "CreatePost",
            Action::UpdatePost => "UpdatePost",
            Action::DeletePost => "DeletePost",
            Action::ViewDashboard => "ViewDashboard",
            Action::ViewAudit => "ViewAudit",
            Action::ListBlocks => "ListBlocks",
            Action::ManageBlocks => "ManageBlocks",
            Action::ManageApiKeys => "ManageApiKeys",
            Action::ListUsers => "ListUsers",
            Action::UpdateUser => "UpdateUser",
            Action::DeleteUser => "DeleteUser",
            Action::ReadOwnAccount => "ReadOwnAccount",
            Action::ManageOwnAccount => "ManageOwnAccount",
            Action::Proxy => "Proxy",
        }
    }
}

/// What an action is performed on.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    Posts,
    Post(&'a PostWithAuthor),
    Users,
    User(&'a User),
    AdminArea,
    /// A protect-mode route, for `Action::Proxy`.
    Route(&'a ProxyRoute),
}

impl Resource<'_> {
    fn describe(&self) -> String {
        match self {
            Resource::Posts => "Posts".into(),
            Resource::Post(post) => format!("Post {}", post.post.id),
            Resource::Users => "Users".into(),
            Resource::User(user) => format!("User {}", user.id),
            Resource::AdminArea => "AdminArea".into(),
            Resource::Route(route) => format!("Route {}", route.id),
        }
    }
}

/// The policy's answer to one request.
#[must_use]
#[derive(Debug)]
pub enum Decision<'a> {
    Allow,
    Deny(Denial<'a>),
}

/// A denied request: who was denied and what they tried, for the caller
/// to answer and audit.
#[derive(Debug)]
pub struct Denial<'a> {
    /// The signed-in user denied; `None` for a guest.
    pub user_id: Option<Uuid>,
    pub action: Action,
    pub resource: Resource<'a>,
    /// The `@code` of the rule that denied, when it is one of
    /// `DENIAL_CODES` (API.md's problem `code`).
    pub code: Option<&'static str>,
}

/// The `@code` annotations a denial passes on to its problem body.
pub const DENIAL_CODES: [&str; 2] = ["scope_missing", "key_not_allowed"];

/// Cedar's answer: allowed, or denied with the code of the rule that
/// denied (if it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    allowed: bool,
    code: Option<&'static str>,
}

impl Answer {
    const DENY: Answer = Answer { allowed: false, code: None };
}

impl Denial<'_> {
    /// What was tried, for the audit event: `UpdatePost on Post <id>`.
    pub fn detail(&self) -> String {
        format!("{} on {}", self.action.as_str(), self.resource.describe())
    }
}

/// A policy that could not be loaded; each line names file, line and column.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct PolicyError {
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub action: &'static str,
    pub decision: &'static str,
}

/// Where the policy comes from, for reloads.
#[derive(Debug, Clone)]
enum Source {
    Builtin,
    File(PathBuf),
}

pub struct Authorizer {
    schema: Schema,
    source: Source,
    policies: RwLock<Arc<Loaded>>,
    engine: cedar_policy::Authorizer,
    action_uids: HashMap<Action, EntityUid>,
    types: EntityTypes,
    decisions: Family<DecisionLabels, Counter>,
    /// The counters of `decisions` by action (`Action::ALL` order), allow
    /// then deny: looking one up in the family takes a lock and hashes two
    /// labels, which cost more than the decision when it is remembered.
    counters: [[Counter; 2]; Action::ALL.len()],
}

/// A loaded policy and the decisions made with it.
struct Loaded {
    policies: PolicySet,
    decisions: Mutex<HashMap<DecisionInput, Answer>>,
    /// Whether a policy reads a proxied request's method, path or client
    /// address: then those go into Cedar's context and such decisions are
    /// not remembered (each request would be a new entry).
    reads_request: bool,
}

/// Decisions kept per policy; past this many the memory starts over.
const MAX_REMEMBERED_DECISIONS: usize = 50_000;

impl Loaded {
    fn new(policies: PolicySet) -> Self {
        let reads_request = policies.policies().any(|policy| {
            let text: String = policy.to_string().chars().filter(|c| !c.is_whitespace()).collect();
            ["context.method", "context.path", "context.client_ip", "context[", "contexthasmethod", "contexthaspath"]
                .iter()
                .chain(&["contexthasclient_ip"])
                .any(|needle| text.contains(needle))
        });
        Self { policies, decisions: Mutex::new(HashMap::new()), reads_request }
    }

    fn remembered(&self, input: &DecisionInput) -> Option<Answer> {
        self.decisions.lock().ok()?.get(input).copied()
    }

    fn remember(&self, input: DecisionInput, answer: Answer) {
        if let Ok(mut decisions) = self.decisions.lock() {
            if decisions.len() >= MAX_REMEMBERED_DECISIONS {
                decisions.clear();
            }
            decisions.insert(input, answer);
        }
    }
}

/// Everything a decision is made from. `Authorizer::decide` builds Cedar's
/// request and entities from this value alone, and remembered decisions
/// are keyed by the whole value, so a remembered answer is always one
/// Cedar gave for exactly this input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DecisionInput {
    principal: PrincipalInput,
    action: Action,
    resource: ResourceInput,
    /// Cedar's `context`.
    context: ContextInput,
}

/// A request's context as the policy sees it: how the caller signed in
/// and an API key's scopes; for `Proxy`, also the request's `method`,
/// `path` and `client_ip`, which are left empty when no policy reads
/// them, so that the remembered decisions stay few.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ContextInput {
    /// `Some` for `Proxy` only.
    request: Option<(String, String, String)>,
    amr: &'static [&'static str],
    scopes: Option<Scopes>,
}

/// What the gateway tells the policy about a proxied request beyond the
/// caller and the route (`context` in `Rampart::Action::"Proxy"`).
#[derive(Debug, Clone, Copy)]
pub struct ProxyRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
}

/// A user's attributes as Cedar's `User` entity holds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UserAttributes {
    id: Uuid,
    role: Role,
    department: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PrincipalInput {
    Guest,
    User(UserAttributes),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ResourceInput {
    Posts,
    Users,
    AdminArea,
    User(UserAttributes),
    Post { id: Uuid, author: Uuid, author_department: Option<String>, author_role: Option<Role> },
    Route { id: Arc<str>, path: String, upstream: Arc<str>, auth: &'static str, allow_roles: Vec<Role> },
}

impl DecisionInput {
    fn new(caller: &Caller, action: Action, resource: Resource<'_>) -> Self {
        let context = ContextInput {
            request: None,
            amr: caller.user().map_or(&[], Principal::amr),
            scopes: caller.user().and_then(Principal::scopes).cloned(),
        };
        let principal = match caller {
            Caller::Guest => PrincipalInput::Guest,
            Caller::User(principal) => PrincipalInput::User(UserAttributes {
                id: principal.user_id,
                role: principal.role,
                department: principal.department.clone(),
            }),
        };
        let resource = match resource {
            Resource::Posts => ResourceInput::Posts,
            Resource::Users => ResourceInput::Users,
            Resource::AdminArea => ResourceInput::AdminArea,
            Resource::User(user) => ResourceInput::User(UserAttributes {
                id: user.id,
                role: user.role,
                department: user.department.as_deref().map(str::to_owned),
            }),
            Resource::Post(post) => ResourceInput::Post {
                id: post.post.id,
                author: post.post.author_id,
                author_department: post.author_department.as_deref().map(str::to_owned),
                author_role: post.author_role,
            },
            Resource::Route(route) => ResourceInput::Route {
                id: route.id.clone(),
                path: route.path.clone(),
                upstream: route.upstream.clone(),
                auth: route.auth.as_str(),
                allow_roles: route.allow_roles.clone(),
            },
        };
        Self { principal, action, resource, context }
    }
}

/// Whether an API key's scopes cover `action` (API.md's scope table);
/// `Err` with the problem's code if not. Checked in code before the policy
/// is asked, so that no policy file (one copied before API keys existed,
/// say) lets a key act beyond its scopes; the default policy states the
/// same rules for people to read. Other credentials pass.
fn key_allows(caller: &Caller, action: Action, resource: &Resource<'_>) -> Result<(), &'static str> {
    let Some(scopes) = caller.user().and_then(Principal::scopes) else {
        return Ok(());
    };
    let has = |scope: &Scope| scopes.as_slice().contains(scope);
    let covered = match action {
        Action::ListPosts | Action::ReadPost => has(&Scope::PostsRead),
        Action::CreatePost | Action::UpdatePost => has(&Scope::PostsWrite),
        Action::DeletePost => has(&Scope::PostsDelete),
        Action::ReadOwnAccount => has(&Scope::ProfileRead),
        Action::ManageOwnAccount => has(&Scope::ProfileWrite),
        Action::ViewDashboard | Action::ViewAudit | Action::ListBlocks | Action::ListUsers => has(&Scope::AdminRead),
        Action::ManageBlocks | Action::UpdateUser | Action::DeleteUser => has(&Scope::AdminWrite),
        Action::ManageApiKeys => return Err("key_not_allowed"),
        Action::Proxy => match resource {
            Resource::Route(route) => has(&Scope::AllRoutes) || has(&Scope::Route(route.id.clone())),
            _ => false,
        },
    };
    if covered { Ok(()) } else { Err("scope_missing") }
}

struct EntityTypes {
    guest: EntityTypeName,
    user: EntityTypeName,
    post: EntityTypeName,
    posts: EntityTypeName,
    users: EntityTypeName,
    admin_area: EntityTypeName,
    route: EntityTypeName,
}

fn type_name(name: &str) -> Result<EntityTypeName, PolicyError> {
    EntityTypeName::from_str(name)
        .map_err(|error| PolicyError { problems: vec![format!("entity type {name}: {error}")] })
}

fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|error| PolicyError { problems: vec![format!("built-in schema: {error}")] })
}

/// Parses and validates policy text; `name` is used in messages.
pub fn check_policy(name: &str, text: &str) -> Result<PolicySet, PolicyError> {
    let schema = schema()?;
    parse_and_validate(&schema, name, text)
}

fn parse_and_validate(schema: &Schema, name: &str, text: &str) -> Result<PolicySet, PolicyError> {
    let policies = PolicySet::from_str(text)
        .map_err(|errors| PolicyError { problems: errors.iter().map(|error| located(name, text, error)).collect() })?;
    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    if !result.validation_passed() {
        return Err(PolicyError {
            problems: result.validation_errors().map(|error| located(name, text, error)).collect(),
        });
    }
    Ok(policies)
}

/// `file:line:column: message`, from the diagnostic's first label.
fn located(name: &str, text: &str, diagnostic: &dyn Diagnostic) -> String {
    let offset = diagnostic.labels().and_then(|mut labels| labels.next()).map(|label| label.offset());
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" ({help})"));
    }
    match offset {
        Some(offset) => {
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{name}:{line}:{column}: {message}")
        }
        None => format!("{name}: {message}"),
    }
}

impl Authorizer {
    /// Adds the decision counters to the scrape.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "authz_decisions",
            "Authorization decisions, by action and outcome (allow/deny)",
            self.decisions.clone(),
        );
    }

    /// The built-in policy, or the file when `file` is not empty.
    pub fn load(file: &Path) -> Result<Self, PolicyError> {
        let schema = schema()?;
        let source = if file.as_os_str().is_empty() { Source::Builtin } else { Source::File(file.to_owned()) };
        let policies = Self::read(&schema, &source)?;
        let action_type = type_name("Rampart::Action")?;
        let action_uids = Action::ALL
            .iter()
            .map(|action| {
                let id = EntityId::from_str(action.as_str())
                    .map_err(|error| PolicyError { problems: vec![error.to_string()] })?;
                Ok((*action, EntityUid::from_type_name_and_id(action_type.clone(), id)))
            })
            .collect::<Result<HashMap<_, _>, PolicyError>>()?;
        let types = EntityTypes {
            guest: type_name("Rampart::Guest")?,
            user: type_name("Rampart::User")?,
            post: type_name("Rampart::Post")?,
            posts: type_name("Rampart::Posts")?,
            users: type_name("Rampart::Users")?,
            admin_area: type_name("Rampart::AdminArea")?,
            route: type_name("Rampart::Route")?,
        };
        let decisions = Family::<DecisionLabels, Counter>::default();
        let counters = Action::ALL.map(|action| {
            ["allow", "deny"]
                .map(|decision| decisions.get_or_create(&DecisionLabels { action: action.as_str(), decision }).clone())
        });
        Ok(Self {
            schema,
            source,
            policies: RwLock::new(Arc::new(Loaded::new(policies))),
            engine: cedar_policy::Authorizer::new(),
            action_uids,
            types,
            decisions,
            counters,
        })
    }

    fn read(schema: &Schema, source: &Source) -> Result<PolicySet, PolicyError> {
        match source {
            Source::Builtin => parse_and_validate(schema, "built-in policy", DEFAULT_POLICY),
            Source::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| PolicyError {
                    problems: vec![format!("policy.file: cannot read {}: {error}", path.display())],
                })?;
                parse_and_validate(schema, &path.display().to_string(), &text)
            }
        }
    }

    /// Re-reads the policy file. An invalid policy is refused and the one
    /// in force stays.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let policies = Self::read(&self.schema, &self.source)?;
        *self.policies.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(Loaded::new(policies));
        Ok(())
    }

    fn uid(&self, type_name: &EntityTypeName, id: &str) -> EntityUid {
        // Ids are UUIDs or fixed words; `EntityId::new` accepts any string.
        EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
    }

    fn user_entity(&self, user: &UserAttributes) -> Option<Entity> {
        let mut attributes =
            HashMap::from([("role".to_owned(), RestrictedExpression::new_string(user.role.as_str().to_owned()))]);
        if let Some(department) = &user.department {
            attributes.insert("department".into(), RestrictedExpression::new_string(department.clone()));
        }
        Entity::new(self.uid(&self.types.user, &user.id.to_string()), attributes, HashSet::new()).ok()
    }

    /// The decision alone, without counting (also for benches). Remembered
    /// per `DecisionInput` until the policy is reloaded: Cedar's answer is a
    /// function of the policy and the input.
    pub fn is_allowed(&self, caller: &Caller, action: Action, resource: Resource<'_>) -> bool {
        self.answer(caller, action, resource).allowed
    }

    fn answer(&self, caller: &Caller, action: Action, resource: Resource<'_>) -> Answer {
        if let Err(code) = key_allows(caller, action, &resource) {
            return Answer { allowed: false, code: Some(code) };
        }
        let loaded = self.policies.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        self.decide_remembering(&loaded, DecisionInput::new(caller, action, resource))
    }

    fn decide_remembering(&self, loaded: &Loaded, input: DecisionInput) -> Answer {
        let rememberable = !(input.context.request.is_some() && loaded.reads_request);
        if rememberable && let Some(answer) = loaded.remembered(&input) {
            return answer;
        }
        let answer = self.decide(&loaded.policies, &input);
        if rememberable {
            loaded.remember(input, answer);
        }
        answer
    }

    /// May `caller` send `request` through `route`? (`Action::Proxy`, with
    /// the request's context.) Counted like every decision.
    pub fn authorize_proxy<'a>(
        &self,
        caller: &Caller,
        route: &'a ProxyRoute,
        request: &ProxyRequest<'_>,
    ) -> Decision<'a> {
        if let Err(code) = key_allows(caller, Action::Proxy, &Resource::Route(route)) {
            return self.decision(
                caller,
                Action::Proxy,
                Resource::Route(route),
                Answer { allowed: false, code: Some(code) },
            );
        }
        let loaded = self.policies.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let mut input = DecisionInput::new(caller, Action::Proxy, Resource::Route(route));
        let detail = |text: &str| if loaded.reads_request { text.to_owned() } else { String::new() };
        input.context.request = Some((
            detail(request.method),
            detail(request.path),
            request.client_ip.filter(|_| loaded.reads_request).map(|ip| ip.to_string()).unwrap_or_default(),
        ));
        let answer = self.decide_remembering(&loaded, input);
        self.decision(caller, Action::Proxy, Resource::Route(route), answer)
    }

    /// Counts an answer and makes it a `Decision`.
    fn decision<'a>(&self, caller: &Caller, action: Action, resource: Resource<'a>, answer: Answer) -> Decision<'a> {
        self.count(action, answer.allowed);
        if answer.allowed {
            return Decision::Allow;
        }
        Decision::Deny(Denial {
            user_id: caller.user().map(|principal| principal.user_id),
            action,
            resource,
            code: answer.code,
        })
    }

    /// `is_allowed` without the remembered decisions: what Cedar costs (benches).
    #[doc(hidden)]
    pub fn is_allowed_uncached(&self, caller: &Caller, action: Action, resource: Resource<'_>) -> bool {
        let loaded = self.policies.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        self.decide(&loaded.policies, &DecisionInput::new(caller, action, resource)).allowed
    }

    /// Asks Cedar, with a request and entities built from `input` only.
    fn decide(&self, policies: &PolicySet, input: &DecisionInput) -> Answer {
        let mut entities = Vec::with_capacity(2);
        let principal = match &input.principal {
            PrincipalInput::Guest => self.uid(&self.types.guest, "guest"),
            PrincipalInput::User(user) => {
                let Some(entity) = self.user_entity(user) else {
                    return Answer::DENY;
                };
                let uid = entity.uid();
                entities.push(entity);
                uid
            }
        };
        let resource = match &input.resource {
            ResourceInput::Posts => self.uid(&self.types.posts, "all"),
            ResourceInput::Users => self.uid(&self.types.users, "all"),
            ResourceInput::AdminArea => self.uid(&self.types.admin_area, "dashboard"),
            ResourceInput::User(user) => {
                let uid = self.uid(&self.types.user, &user.id.to_string());
                if uid != principal {
                    let Some(entity) = self.user_entity(user) else {
                        return Answer::DENY;
                    };
                    entities.push(entity);
                }
                uid
            }
            ResourceInput::Post { id, author, author_department, author_role } => {
                let uid = self.uid(&self.types.post, &id.to_string());
                let author = self.uid(&self.types.user, &author.to_string());
                let mut attributes =
                    HashMap::from([("author".to_owned(), RestrictedExpression::new_entity_uid(author))]);
                if let Some(department) = author_department {
                    attributes.insert("author_department".into(), RestrictedExpression::new_string(department.clone()));
                }
                if let Some(role) = author_role {
                    attributes.insert("author_role".into(), RestrictedExpression::new_string(role.as_str().to_owned()));
                }
                let Ok(entity) = Entity::new(uid.clone(), attributes, HashSet::new()) else {
                    return Answer::DENY;
                };
                entities.push(entity);
                uid
            }
            ResourceInput::Route { id, path, upstream, auth, allow_roles } => {
                let uid = self.uid(&self.types.route, id);
                let roles = allow_roles.iter().map(|role| RestrictedExpression::new_string(role.as_str().to_owned()));
                let attributes = HashMap::from([
                    ("path".to_owned(), RestrictedExpression::new_string(path.clone())),
                    ("upstream".to_owned(), RestrictedExpression::new_string(upstream.to_string())),
                    ("auth".to_owned(), RestrictedExpression::new_string((*auth).to_owned())),
                    ("allow_roles".to_owned(), RestrictedExpression::new_set(roles)),
                    // Cedar cannot join strings: the scope an API key needs
                    // for this route comes ready-made.
                    ("scope".to_owned(), RestrictedExpression::new_string(format!("routes:{id}"))),
                ]);
                let Ok(entity) = Entity::new(uid.clone(), attributes, HashSet::new()) else {
                    return Answer::DENY;
                };
                entities.push(entity);
                uid
            }
        };
        let Some(action) = self.action_uids.get(&input.action) else {
            return Answer::DENY;
        };
        // Entities are built from our own typed values, so schema checks on
        // them would only cost time; the policy itself was validated.
        let Ok(entities) = Entities::from_entities(entities, None) else {
            return Answer::DENY;
        };
        let strings = |items: &mut dyn Iterator<Item = String>| {
            RestrictedExpression::new_set(items.map(RestrictedExpression::new_string))
        };
        let context = &input.context;
        let mut pairs = vec![("amr".to_owned(), strings(&mut context.amr.iter().map(|amr| (*amr).to_owned())))];
        if let Some(scopes) = &context.scopes {
            pairs.push(("scopes".to_owned(), strings(&mut scopes.names())));
        }
        if let Some((method, path, client_ip)) = &context.request {
            pairs.push(("method".to_owned(), RestrictedExpression::new_string(method.clone())));
            pairs.push(("path".to_owned(), RestrictedExpression::new_string(path.clone())));
            pairs.push(("client_ip".to_owned(), RestrictedExpression::new_string(client_ip.clone())));
        }
        let Ok(context) = Context::from_pairs(pairs) else {
            return Answer::DENY;
        };
        let Ok(request) = Request::new(principal, action.clone(), resource, context, None) else {
            return Answer::DENY;
        };
        let response = self.engine.is_authorized(&request, policies, &entities);
        if response.decision() == cedar_policy::Decision::Allow {
            return Answer { allowed: true, code: None };
        }
        // A denial by forbid rules names them; the first with a known
        // `@code` gives the problem's code.
        let code = response.diagnostics().reason().find_map(|id| {
            let code = policies.annotation(id, "code")?;
            DENIAL_CODES.iter().copied().find(|known| *known == code)
        });
        Answer { allowed: false, code }
    }

    /// Counts a decision in `decisions` (`rampart_authz_decisions_total`).
    fn count(&self, action: Action, allowed: bool) {
        self.counters[action as usize][usize::from(!allowed)].inc();
    }

    /// May `caller` do `action` on `resource`? Every decision is counted;
    /// what a denial becomes (401, 403, an audit event) is the caller's
    /// business (`AppState::authorize`).
    pub fn authorize<'a>(&self, caller: &Caller, action: Action, resource: Resource<'a>) -> Decision<'a> {
        let answer = self.answer(caller, action, resource);
        self.decision(caller, action, resource, answer)
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::{
        auth::principal::{Credential, Principal},
        domain::{Department, Post},
    };

    fn caller(role: Role, department: Option<&str>) -> (Caller, Uuid) {
        let id = Uuid::now_v7();
        let principal = Principal {
            user_id: id,
            role,
            department: department.map(str::to_owned),
            credential: Credential::Session { id_hash: [0; 32], csrf_hash: [0; 32], sign_in: Default::default() },
        };
        (Caller::User(principal), id)
    }

    fn post(author: Uuid, department: Option<&str>) -> PostWithAuthor {
        let now = OffsetDateTime::now_utc();
        PostWithAuthor {
            post: Post {
                id: Uuid::now_v7(),
                title: "t".into(),
                body: "b".into(),
                author_id: author,
                created_at: now,
                updated_at: now,
            },
            author_department: department.and_then(|d| Department::parse(d).unwrap()),
            author_role: Some(Role::User),
        }
    }

    #[test]
    fn the_default_policy_implements_the_posts_table() {
        let authorizer = Authorizer::load(Path::new("")).expect("built-in policy");
        let (admin, _) = caller(Role::Admin, None);
        let (manager, _) = caller(Role::Manager, Some("sales"));
        let (lone_manager, _) = caller(Role::Manager, None);
        let (user, user_id) = caller(Role::User, Some("sales"));
        let own = post(user_id, Some("sales"));
        let colleague = post(Uuid::now_v7(), Some("sales"));
        let elsewhere = post(Uuid::now_v7(), Some("support"));
        let allowed = |c: &Caller, a: Action, r: Resource<'_>| authorizer.is_allowed(c, a, r);

        for c in [&admin, &manager, &user, &Caller::Guest] {
            assert!(allowed(c, Action::ListPosts, Resource::Posts));
            assert!(allowed(c, Action::ReadPost, Resource::Post(&elsewhere)));
        }
        assert!(!allowed(&Caller::Guest, Action::CreatePost, Resource::Posts));
        assert!(allowed(&user, Action::CreatePost, Resource::Posts));

        assert!(allowed(&admin, Action::UpdatePost, Resource::Post(&elsewhere)));
        assert!(allowed(&manager, Action::UpdatePost, Resource::Post(&colleague)));
        assert!(!allowed(&manager, Action::UpdatePost, Resource::Post(&elsewhere)));
        assert!(!allowed(&lone_manager, Action::UpdatePost, Resource::Post(&post(Uuid::now_v7(), None))));
        assert!(allowed(&user, Action::UpdatePost, Resource::Post(&own)));
        assert!(!allowed(&user, Action::UpdatePost, Resource::Post(&colleague)));

        assert!(allowed(&admin, Action::DeletePost, Resource::Post(&own)));
        assert!(allowed(&manager, Action::DeletePost, Resource::Post(&elsewhere)));
        assert!(!allowed(&user, Action::DeletePost, Resource::Post(&own)));

        assert!(allowed(&admin, Action::ViewDashboard, Resource::AdminArea));
        assert!(!allowed(&manager, Action::ViewDashboard, Resource::AdminArea));
        assert!(!allowed(&user, Action::ListUsers, Resource::Users));
    }

    #[test]
    fn each_decision_is_counted_under_its_action_and_outcome() {
        let authorizer = Authorizer::load(Path::new("")).expect("built-in policy");
        for (index, action) in Action::ALL.into_iter().enumerate() {
            assert_eq!(action as usize, index, "Action::ALL lists the actions in declaration order");
            authorizer.count(action, true);
            authorizer.count(action, false);
            authorizer.count(action, false);
        }
        for action in Action::ALL {
            let count = |decision| {
                authorizer.decisions.get_or_create(&DecisionLabels { action: action.as_str(), decision }).get()
            };
            assert_eq!((count("allow"), count("deny")), (1, 2), "{action:?}");
        }
    }

    /// Every role, by a match that stops compiling when a role is added.
    fn every_role() -> [Role; 3] {
        let roles = [Role::Admin, Role::Manager, Role::User];
        for role in roles {
            match role {
                Role::Admin | Role::Manager | Role::User => {}
            }
        }
        roles
    }

    /// The answer remembered for this exact input, if any.
    fn remembered(authorizer: &Authorizer, caller: &Caller, action: Action, resource: Resource<'_>) -> Option<bool> {
        let loaded = authorizer.policies.read().expect("lock").clone();
        loaded.remembered(&DecisionInput::new(caller, action, resource)).map(|answer| answer.allowed)
    }

    fn route(id: &str, auth: crate::config::RouteAuth, allow_roles: &[Role]) -> ProxyRoute {
        ProxyRoute {
            id: id.into(),
            path: format!("/{id}"),
            methods: None,
            host: None,
            upstream: "app".into(),
            strip_prefix: false,
            auth,
            unauthenticated: crate::config::Unauthenticated::Problem,
            allow_roles: allow_roles.to_vec(),
            rate_limit: "proxy".into(),
            websockets: false,
            pass_authorization: false,
            preserve_host: false,
        }
    }

    fn proxy_allowed(authorizer: &Authorizer, caller: &Caller, route: &ProxyRoute) -> bool {
        let request = ProxyRequest { method: "GET", path: &route.path, client_ip: None };
        matches!(authorizer.authorize_proxy(caller, route, &request), Decision::Allow)
    }

    /// A caller using an API key of `role` with `scopes`.
    fn key_caller(role: Role, scopes: &[&str]) -> Caller {
        let (Caller::User(mut principal), _) = caller(role, None) else { unreachable!() };
        let scopes = Scopes::parse(scopes.iter().copied()).expect("scopes");
        principal.credential = Credential::ApiKey { key_id: Uuid::now_v7(), scopes };
        Caller::User(principal)
    }

    #[test]
    fn the_default_policy_implements_protect_modes_route_rules() {
        use crate::config::RouteAuth::{Optional, Public, Required};
        let authorizer = Authorizer::load(Path::new("")).expect("built-in policy");
        let (admin, _) = caller(Role::Admin, None);
        let (manager, _) = caller(Role::Manager, Some("sales"));
        let (user, _) = caller(Role::User, None);
        let guest = Caller::Guest;
        let allowed = |c: &Caller, r: &ProxyRoute| proxy_allowed(&authorizer, c, r);

        for c in [&guest, &user, &admin] {
            assert!(allowed(c, &route("public", Public, &[Role::Admin])), "public routes are open");
            assert!(allowed(c, &route("optional", Optional, &[])), "optional routes take guests and users");
        }
        let any_user = route("any", Required, &[]);
        assert!(!allowed(&guest, &any_user));
        assert!(allowed(&user, &any_user) && allowed(&manager, &any_user) && allowed(&admin, &any_user));
        let managers = route("reports", Required, &[Role::Manager]);
        assert!(allowed(&manager, &managers));
        assert!(!allowed(&user, &managers));
        assert!(!allowed(&admin, &managers), "allow_roles binds admins too");

        let key = |list: &[&str]| proxy_allowed(&authorizer, &key_caller(Role::User, list), &any_user);
        assert!(key(&["routes:any"]) && key(&["routes:*"]));
        assert!(!key(&["routes:other"]) && !key(&["posts:read"]), "a key needs the route's scope");
        let request = ProxyRequest { method: "GET", path: "/any", client_ip: None };
        let Decision::Deny(denial) =
            authorizer.authorize_proxy(&key_caller(Role::Admin, &["posts:read"]), &any_user, &request)
        else {
            panic!("an admin's key without the route's scope is denied");
        };
        assert_eq!(denial.code, Some("scope_missing"));
    }

    #[test]
    fn a_policy_without_the_scope_rules_still_holds_keys_to_their_scopes() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("policy.cedar");
        std::fs::write(&file, "permit (principal, action, resource);\n").expect("write");
        let authorizer = Authorizer::load(&file).expect("a permissive policy");
        let (person, _) = caller(Role::User, None);
        assert!(authorizer.is_allowed(&person, Action::ViewAudit, Resource::AdminArea), "the policy allows all");
        let key = key_caller(Role::Admin, &["posts:read"]);
        assert!(authorizer.is_allowed(&key, Action::ListPosts, Resource::Posts));
        match authorizer.authorize(&key, Action::ViewAudit, Resource::AdminArea) {
            Decision::Deny(denial) => assert_eq!(denial.code, Some("scope_missing")),
            Decision::Allow => panic!("a key without admin:read"),
        }
        match authorizer.authorize(
            &key_caller(Role::Admin, &["admin:read", "admin:write"]),
            Action::ManageApiKeys,
            Resource::AdminArea,
        ) {
            Decision::Deny(denial) => assert_eq!(denial.code, Some("key_not_allowed")),
            Decision::Allow => panic!("no key manages keys"),
        }
        let route = route("any", crate::config::RouteAuth::Required, &[]);
        let request = ProxyRequest { method: "GET", path: "/any", client_ip: None };
        assert!(matches!(authorizer.authorize_proxy(&key, &route, &request), Decision::Deny(_)));
        let scoped = key_caller(Role::User, &["routes:any"]);
        assert!(matches!(authorizer.authorize_proxy(&scoped, &route, &request), Decision::Allow));
    }

    #[test]
    fn api_keys_act_only_within_their_scopes_whatever_their_owners_role() {
        let authorizer = Authorizer::load(Path::new("")).expect("built-in policy");
        let owner = Uuid::now_v7();
        let own_post = post(owner, None);
        let me = User {
            id: owner,
            email: "me@example.com".into(),
            email_verified: true,
            name: "Me".into(),
            role: Role::Admin,
            department: None,
            disabled: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        let key = |scopes: &[&str]| {
            let Caller::User(mut principal) = key_caller(Role::Admin, scopes) else { unreachable!() };
            principal.user_id = owner;
            Caller::User(principal)
        };
        let checks: [(&str, Action, Resource<'_>); 11] = [
            ("posts:read", Action::ListPosts, Resource::Posts),
            ("posts:read", Action::ReadPost, Resource::Post(&own_post)),
            ("posts:write", Action::CreatePost, Resource::Posts),
            ("posts:write", Action::UpdatePost, Resource::Post(&own_post)),
            ("posts:delete", Action::DeletePost, Resource::Post(&own_post)),
            ("profile:read", Action::ReadOwnAccount, Resource::User(&me)),
            ("profile:write", Action::ManageOwnAccount, Resource::User(&me)),
            ("admin:read", Action::ViewAudit, Resource::AdminArea),
            ("admin:read", Action::ListBlocks, Resource::AdminArea),
            ("admin:write", Action::ManageBlocks, Resource::AdminArea),
            ("admin:write", Action::DeleteUser, Resource::User(&me)),
        ];
        for (scope, action, resource) in checks {
            assert!(authorizer.is_allowed(&key(&[scope]), action, resource), "{scope} allows {action:?}");
            let other = if scope == "posts:read" { "admin:write" } else { "posts:read" };
            match authorizer.authorize(&key(&[other]), action, resource) {
                Decision::Deny(denial) => assert_eq!(denial.code, Some("scope_missing"), "{action:?}"),
                Decision::Allow => panic!("{other} must not allow {action:?}"),
            }
        }
        // A scope never lends what the role lacks: a plain user's admin key.
        let Caller::User(mut user_key) = key_caller(Role::User, &["admin:read"]) else { unreachable!() };
        user_key.user_id = owner;
        match authorizer.authorize(&Caller::User(user_key), Action::ViewAudit, Resource::AdminArea) {
            Decision::Deny(denial) => assert_eq!(denial.code, None),
            Decision::Allow => panic!("a user's key is not an admin"),
        }
    }

    #[test]
    fn remembered_decisions_agree_with_cedar_over_every_role_department_owner_action_and_resource() {
        let authorizer = Authorizer::load(Path::new("")).expect("built-in policy");
        // Fixed ids: one person whose role or department changes must not
        // get an answer remembered for their old attributes.
        let me = Uuid::from_u128(1);
        let someone_else = Uuid::from_u128(2);
        let departments = [None, Some("sales"), Some("support")];
        let now = OffsetDateTime::UNIX_EPOCH;

        let mut callers = vec![Caller::Guest];
        for role in every_role() {
            for department in departments {
                callers.push(Caller::User(Principal {
                    user_id: me,
                    role,
                    department: department.map(str::to_owned),
                    credential: Credential::Session {
                        id_hash: [0; 32],
                        csrf_hash: [0; 32],
                        sign_in: Default::default(),
                    },
                }));
            }
        }
        let mut users = Vec::new();
        let mut posts = Vec::new();
        for owner in [me, someone_else] {
            for role in every_role() {
                for department in departments {
                    users.push(User {
                        id: owner,
                        email: "person@example.com".into(),
                        email_verified: false,
                        name: "Person".into(),
                        role,
                        department: department.and_then(|d| Department::parse(d).unwrap()),
                        disabled: false,
                        created_at: now,
                    });
                }
            }
            for author_role in every_role().map(Some).into_iter().chain([None]) {
                for department in departments {
                    posts.push(PostWithAuthor {
                        post: Post {
                            id: Uuid::from_u128(3),
                            title: "t".into(),
                            body: "b".into(),
                            author_id: owner,
                            created_at: now,
                            updated_at: now,
                        },
                        author_department: department.and_then(|d| Department::parse(d).unwrap()),
                        author_role,
                    });
                }
            }
        }
        let mut resources = vec![Resource::Posts, Resource::Users, Resource::AdminArea];
        resources.extend(users.iter().map(Resource::User));
        resources.extend(posts.iter().map(Resource::Post));

        let (mut allowed, mut denied) = (0, 0);
        for caller in &callers {
            for action in Action::ALL {
                for resource in &resources {
                    let cedar = authorizer.is_allowed_uncached(caller, action, *resource);
                    let first = authorizer.is_allowed(caller, action, *resource);
                    assert_eq!(
                        remembered(&authorizer, caller, action, *resource),
                        Some(first),
                        "{caller:?} {action:?} {resource:?}: the first answer is remembered"
                    );
                    let second = authorizer.is_allowed(caller, action, *resource);
                    assert_eq!((first, second), (cedar, cedar), "{caller:?} {action:?} {resource:?}");
                    if cedar {
                        allowed += 1;
                    } else {
                        denied += 1;
                    }
                }
            }
        }
        assert!(allowed > 100 && denied > 100, "a grid that tells answers apart: {allowed} allowed, {denied} denied");
    }

    #[test]
    fn a_denial_says_who_was_denied_and_what_they_tried() {
        let authorizer = Authorizer::load(Path::new("")).expect("built-in policy");
        let (user, user_id) = caller(Role::User, None);
        let elsewhere = post(Uuid::from_u128(9), None);
        match authorizer.authorize(&user, Action::DeletePost, Resource::Post(&elsewhere)) {
            Decision::Deny(denial) => {
                assert_eq!(denial.user_id, Some(user_id));
                assert_eq!(denial.detail(), format!("DeletePost on Post {}", elsewhere.post.id));
            }
            Decision::Allow => panic!("a user may not delete posts"),
        }
        match authorizer.authorize(&Caller::Guest, Action::CreatePost, Resource::Posts) {
            Decision::Deny(denial) => assert_eq!(denial.user_id, None, "a guest"),
            Decision::Allow => panic!("guests may not write"),
        }
        assert!(matches!(authorizer.authorize(&user, Action::ListPosts, Resource::Posts), Decision::Allow));
    }

    #[test]
    fn a_broken_policy_is_reported_with_its_line() {
        let text = "permit (principal, action, resource);\n\npermit (principal, action, resource) when { resource.nope == 1 };\n";
        let error = check_policy("custom.cedar", text).expect_err("invalid");
        assert!(error.problems[0].starts_with("custom.cedar:3:"), "{error}");
        let syntax =
            check_policy("custom.cedar", "permit (principal, action, resource)\nforbid (").expect_err("syntax");
        assert!(syntax.problems[0].starts_with("custom.cedar:"), "{syntax}");
    }

    #[test]
    fn a_policy_reading_the_request_path_is_asked_for_every_request_and_can_name_a_route() {
        use crate::config::RouteAuth::Required;
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("policy.cedar");
        let text = format!(
            "{DEFAULT_POLICY}\nforbid (principal, action == Rampart::Action::\"Proxy\", resource == Rampart::Route::\"files\")\nwhen {{ context.path like \"/files/secret*\" }};\n"
        );
        std::fs::write(&file, text).expect("write");
        let authorizer = Authorizer::load(&file).expect("custom policy");
        let (user, _) = caller(Role::User, None);
        let files = route("files", Required, &[]);
        let other = route("other", Required, &[]);
        let ask = |route: &ProxyRoute, path: &str| {
            let request = ProxyRequest { method: "GET", path, client_ip: None };
            matches!(authorizer.authorize_proxy(&user, route, &request), Decision::Allow)
        };
        assert!(ask(&files, "/files/a"));
        assert!(!ask(&files, "/files/secret/plan"), "a decision by path");
        assert!(ask(&files, "/files/a"), "not a remembered answer for another path");
        assert!(ask(&other, "/files/secret/plan"), "the rule names one route");
    }
}
